"""Baselines (utils/pruning/baselines.py) on small hand-checkable cases, and the comparison helpers."""
import math

import keras
import numpy as np
import pandas as pd
import pytest

from utils import saved
from utils.pruning import baselines
from utils.pruning import units
from utils.pruning import methods as methods_lib
from utils.face import comparison
from utils.measurement import dominance
from utils.pruning import block as pruning
from utils.pruning import sweep
from utils.training import train
from utils.encoder import model as model_lib
from utils.pruning.sweep import UnreachableSparsity
from helpers import toy_dataset


def toy_model(num_heads=(2,), widths=(8,), hidden=16, head_size=8, seed=0, scale=0.5):
    keras.utils.set_random_seed(seed)
    config = model_lib.EncoderConfig(vocab_size=40, hidden_size=hidden, num_heads=list(num_heads),
                                     intermediate_sizes=list(widths), head_size=head_size,
                                     hidden_dropout=0.0, attention_dropout=0.0)
    model = model_lib.build_classifier(config)
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "layer_norm" not in w.path:
            w.assign(rng.normal(0, scale, size=w.shape).astype("float32"))
    return model


def toy_batches(n_batches=3, batch=8, length=6, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n_batches):
        ids = rng.integers(1, 40, size=(batch, length)).astype(np.int32)
        mask = np.ones_like(ids)
        mask[:, length - 1 - b % 2:] = 0                      # some padding
        y = rng.integers(0, 3, size=batch).astype(np.int32) if labels is None else labels[b]
        out.append(({"input_ids": ids, "attention_mask": mask.astype(np.int32)}, y))
    return out


def check_masks_format(masks, kernels):
    assert set(masks) == set(kernels)
    for name, mask in masks.items():
        assert mask.shape == tuple(np.shape(kernels[name])) and mask.dtype == np.float32
        assert set(np.unique(mask)) <= {0.0, 1.0}


# ------------------------------------------------------------------ magnitude

def test_magnitude_global_vs_per_matrix_on_4x4():
    a = -np.arange(1, 17, dtype=np.float32).reshape(4, 4)     # |a| = 1..16, negative signs
    b = 0.01 * np.arange(1, 17, dtype=np.float32).reshape(4, 4)
    kernels = {"a": a, "b": b}
    glob = baselines.magnitude_masks(kernels, 0.5, "global")
    check_masks_format(glob, kernels)
    assert glob["a"].all() and not glob["b"].any()           # the 16 smallest are all of b
    per = baselines.magnitude_masks(kernels, 0.5, "per_matrix")
    expected = np.repeat([[0.0], [1.0]], 8).reshape(4, 4)     # 1..8 off, 9..16 on, row-major
    np.testing.assert_array_equal(per["a"], expected)
    np.testing.assert_array_equal(per["b"], expected)
    # 25% globally: the 8 smallest of all 32 = b's 0.01..0.08
    quarter = baselines.magnitude_masks(kernels, 0.25, "global")
    assert quarter["a"].all()
    np.testing.assert_array_equal(quarter["b"], expected)
    assert baselines.magnitude_masks(kernels, 0.0)["a"].all()
    # ceil: 10% of 32 weights -> 4 zeroed
    assert units.masks_sparsity(baselines.magnitude_masks(kernels, 0.1)) == 4 / 32
    with pytest.raises(ValueError, match="scope"):
        baselines.magnitude_masks(kernels, 0.5, "per_layer")


def test_cubic_schedule_values():
    np.testing.assert_allclose(sweep.cubic_schedule(0.8, 4),
                               [0.8 * (1 - 0.75 ** 3), 0.8 * 0.875, 0.8 * (1 - 0.25 ** 3), 0.8])
    np.testing.assert_allclose(sweep.cubic_schedule(0.8, 4), [0.4625, 0.7, 0.7875, 0.8])
    assert sweep.cubic_schedule(0.5, 1) == [0.5]
    steps = sweep.cubic_schedule(0.9, 10)
    assert all(x < y for x, y in zip(steps, steps[1:])) and steps[-1] == pytest.approx(0.9)
    # the increments shrink: fast pruning early, slow near the end
    increments = np.diff([0.0] + steps)
    assert all(x > y for x, y in zip(increments, increments[1:]))


# ------------------------------------------------------------------ FFN neurons

def test_ffn_neurons_by_joint_norm():
    w_in = np.zeros((4, 3), np.float32)
    w_out = np.zeros((3, 4), np.float32)
    w_in[:, 0], w_out[0, :] = 1.0, 1.0        # norm sqrt(8) = 2.83
    w_in[:, 1], w_out[1, :] = 0.1, 3.0        # norm sqrt(0.04 + 36) = 6.0: small input column
    w_in[:, 2], w_out[2, :] = 0.5, 0.5        # norm sqrt(2) = 1.41: the weakest
    kernels = {"layer_0/ffn/input": w_in, "layer_0/ffn/output": w_out}
    np.testing.assert_allclose(baselines.ffn_neuron_scores(kernels)[0],
                               [math.sqrt(8), math.sqrt(36.04), math.sqrt(2)], rtol=1e-6)
    # each neuron is 8 of the 24 weights: 1/3 -> neuron 2; 0.4 -> neurons 2 and 0
    one = baselines.ffn_neuron_masks(kernels, 1 / 3)
    check_masks_format(one, kernels)
    assert not one["layer_0/ffn/input"][:, 2].any() and not one["layer_0/ffn/output"][2].any()
    assert one["layer_0/ffn/input"][:, [0, 1]].all() and one["layer_0/ffn/output"][[0, 1]].all()
    two = baselines.ffn_neuron_masks(kernels, 0.4)
    assert two["layer_0/ffn/input"].any(axis=0).tolist() == [False, True, False]
    with pytest.raises(UnreachableSparsity):
        baselines.ffn_neuron_masks({**kernels, "layer_0/attention/value": np.ones((4, 4))}, 0.9)


def test_structured_masks_on_a_model_are_removable_units():
    model = toy_model(num_heads=(2, 2), widths=(8, 8))
    kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
    assert "pooler/dense" not in kernels
    config = model.encoder_config
    masks = baselines.head_masks(kernels, [(1, 0)], config.head_size)
    check_masks_format(masks, kernels)
    pruning.apply_masks(model, masks)
    summary = pruning.sparsity_summary(model)
    assert summary["removable_heads"] == {0: [], 1: [0]}
    # one head = q, k, v columns + output rows = 3*16*8 + 8*16 of 2 * (4*16*16 + 2*16*8)
    assert summary["sparsity_encoder_linear"] == pytest.approx(512 / 2560)
    units = baselines.head_units(kernels, config.head_size)
    assert [u.size(kernels) for u in units] == [512] * 4
    # heads are 80% of this toy's linear weights: 90% is out of reach
    with pytest.raises(UnreachableSparsity, match="attention heads"):
        baselines.HeadImportancePruner(toy_batches())(model, 0.9)
    layers = baselines.layer_masks(kernels, [0])
    check_masks_format(layers, kernels)
    assert not any(layers[n].any() for n in kernels if n.startswith("layer_0/"))
    assert all(layers[n].all() for n in kernels if n.startswith("layer_1/"))


# ------------------------------------------------------------------ head importance

def test_gate_gradient_is_the_derivative_of_scaling_the_heads_output_rows():
    model = toy_model(num_heads=(2,), widths=(8,))
    (x, y), = toy_batches(1)
    gates = baselines.head_gate_gradients_fn(model)(x["input_ids"], x["attention_mask"], y)
    loss = baselines.task_loss_fn(model)
    kernel = model_lib.prunable_kernels(model)["layer_0/attention/output"]
    start = np.asarray(kernel).astype(np.float64)
    delta = 1e-3
    for h in range(2):
        values = []
        for sign in (1, -1):
            scaled = start.copy()
            scaled[h * 8:(h + 1) * 8] *= 1 + sign * delta
            kernel.assign(scaled.astype(np.float32))
            values.append(float(loss(x["input_ids"], x["attention_mask"], y)))
        kernel.assign(start.astype(np.float32))
        finite_difference = (values[0] - values[1]) / (2 * delta)
        assert float(gates[0][h]) == pytest.approx(finite_difference, rel=2e-2, abs=1e-4)


def test_useless_head_has_zero_importance_and_is_pruned_first():
    model = toy_model(num_heads=(2, 2), widths=(8, 8))
    layer = model_lib.transformer_layers(model)[1].attention
    # head 1 of layer 1 is useless: its value columns and value bias are zero, so its context
    # is 0 at every position
    for variable in (layer.value.kernel, layer.value.bias):
        value = np.asarray(variable).copy()
        value[..., 8:16] = 0
        variable.assign(value)
    batches = toy_batches()
    raw = baselines.head_importance(model, batches, normalize=False)
    assert raw[1][1] == pytest.approx(0.0, abs=1e-12)
    assert min(raw[0].min(), raw[1][0]) > 1e-6
    normalised = baselines.head_importance(model, batches)
    for i in (0, 1):
        assert np.linalg.norm(normalised[i]) == pytest.approx(1.0)
    pruner = baselines.HeadImportancePruner(batches, step_fraction=0.25)
    kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
    masks = pruner(model, 0.1)                        # 0.1 of 2560 weights: one 512-weight head
    assert pruner.order == [(1, 1)]
    assert pruning.removable_heads_and_neurons(
        {n: k * masks[n] for n, k in kernels.items()}, model.encoder_config)[0] == {0: [], 1: [1]}
    np.testing.assert_array_equal(np.asarray(layer.value.kernel)[:, :8],
                                  kernels["layer_1/attention/value"][:, :8])  # restored
    # a larger target extends the same order, one head per step (25% of 4), recomputing
    pruner(model, 0.3)
    assert pruner.order[0] == (1, 1) and len(pruner.order) == 2 and len(pruner.history) == 2
    assert pruner.history[1]["importance"][1][1] == 0.0


# ------------------------------------------------------------------ layer dropping

def test_layer_ranking_drops_the_identity_like_layer_first():
    model = toy_model(num_heads=(2, 2, 2), widths=(8, 8, 8), seed=1)
    kernels = model_lib.prunable_kernels(model)
    for name, kernel in kernels.items():                  # layer 1 is nearly the identity
        if name.startswith("layer_1/"):
            kernel.assign(np.asarray(kernel) * 1e-4)
    for layer in model_lib.transformer_layers(model):     # LayerNorms and biases neutral
        for sub in (layer.attention, layer.ffn):
            sub.layer_norm.gamma.assign(np.ones(16, np.float32))
            sub.layer_norm.beta.assign(np.zeros(16, np.float32))
        layer.attention.output_dense.bias.assign(np.zeros(16, np.float32))
        layer.ffn.output_dense.bias.assign(np.zeros(16, np.float32))
    classifier = model.get_layer("classifier")
    classifier.kernel.assign(np.asarray(classifier.kernel) * 20)   # confident predictions
    batches = toy_batches(4)
    # labels = the model's own predictions: the full model's loss is near 0, so removing any
    # layer that matters raises it
    labels = [np.argmax(np.asarray(model.predict_on_batch(x)), -1).astype(np.int32)
              for x, _ in batches]
    batches = [(x, y) for (x, _), y in zip(batches, labels)]
    increases = baselines.layer_removal_increases(model, batches)
    assert abs(increases[1]) < 1e-3
    assert increases[0] > 100 * abs(increases[1]) and increases[2] > 100 * abs(increases[1])
    # reference: mask by hand and recompute the mean cross-entropy
    start = model.get_weights()
    base = baselines.mean_loss(model, batches)
    pruning.apply_masks(model, baselines.layer_masks(model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True), [2]))
    logits = [np.asarray(model.predict_on_batch(x), np.float64) for x, _ in batches]
    model.set_weights(start)
    ce = np.mean([np.log(np.exp(l).sum(-1)) - l[np.arange(len(y)), y]
                  for l, (_, y) in zip(logits, batches)])
    assert increases[2] == pytest.approx(ce - base, rel=1e-3, abs=1e-5)
    dropper = baselines.LayerDropper(batches)
    masks = dropper(model, 0.3)                           # one layer = 1/3 of the weights
    assert dropper.order[0] == 1
    removed = [i for i in range(3) if not masks[f"layer_{i}/ffn/input"].any()]
    assert removed == [1]
    greedy = baselines.LayerDropper(batches, greedy=True)
    greedy(model, 0.5)
    assert greedy.order[0] == 1 and sorted(greedy.order) == [0, 1, 2]
    assert len(greedy.increases) == 3
    assert units.masks_sparsity(dropper(model, 1.0)) == 1.0


# ------------------------------------------------------------------ the sweep

def test_mask_sweep_rows_retraining_and_gradual(tokenizer, tmp_path):
    keras.utils.set_random_seed(0)
    model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    data = toy_dataset(n_train=64, n_val=24)
    start = [np.asarray(w).copy() for w in model.get_weights()]
    config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16)
    methods = methods_lib.make_methods(["magnitude_gradual", "ffn_neurons"], tokenizer,
                                     data["train"], gradual_steps=2, max_length=16)
    frame = methods_lib.run_baselines(model, tokenizer, data, methods, [0.45], config,
                                    retrain_examples=48, csv_path=tmp_path / "b.csv",
                                    save_root=tmp_path / "models", progress=False)
    written = pd.read_csv(tmp_path / "b.csv")
    assert list(written.columns[:len(sweep.SWEEP_COLUMNS)]) == sweep.SWEEP_COLUMNS
    counts = frame.groupby(["method", "retrained"]).size().to_dict()
    # gradual: only the retrained row
    assert counts == {("magnitude_gradual", True): 1, ("ffn_neurons", False): 1,
                      ("ffn_neurons", True): 1}
    assert (frame.sparsity_encoder_linear >= frame.target_sparsity - 1e-9).all()
    assert frame.epsilon.isna().all() and frame.lambda1.isna().all()
    final = frame[frame.final.astype(bool)]
    # every recovered point: validation scores, its interval vs dense, its training budget
    assert final.val_macro_f1.between(0, 1).all() and (final.diff_low <= final.diff_high).all()
    assert final.train_examples_total.tolist() == [48, 48]   # gradual: 2 shards of 24
    assert (frame[~frame.final.astype(bool)].train_examples_total == 0).all()
    assert set(frame[frame.method == "ffn_neurons"].K) == {1}
    for w0, w1 in zip(start, model.get_weights()):           # the model is restored
        np.testing.assert_array_equal(w0, w1)
    ffn = saved.load_model(tmp_path / "models" / "ffn_neurons" / "sparsity_45")
    summary = pruning.sparsity_summary(ffn)                  # masks held through retraining
    assert summary["sparsity_encoder_linear"] >= 0.45 - 1e-9
    assert summary["fully_removable_neurons"] == 116         # ceil(0.45 * 16384 / 64)
    gradual = saved.load_model(tmp_path / "models" / "magnitude_gradual" / "sparsity_45")
    assert pruning.sparsity_summary(gradual)["sparsity_encoder_linear"] == pytest.approx(
        0.45, abs=1e-3)
    # resume: nothing left to run
    again = methods_lib.run_baselines(model, tokenizer, data, methods, [0.45], config,
                                    retrain_examples=48, csv_path=tmp_path / "b.csv",
                                    resume=True, progress=False)
    assert len(again) == len(frame)


def test_recovery_for_draws_the_budget_from_the_pool():
    data = toy_dataset(n_train=64, n_val=8)
    logits = np.arange(64 * 3, dtype=np.float32).reshape(64, 3)    # row i says i
    config = train.TrainConfig(epochs=1, patience=0)
    sample, teacher, one = sweep.recovery_for((data, logits), 48, config, seed=3)
    # the budget fits one pass: retrain_sample's stratified sample of that size
    assert sample["train"]["text"] == sweep.retrain_sample(data, 48, 3)["train"]["text"]
    rows = (teacher[:, 0] / 3).astype(int)
    assert [data["train"]["text"][i] for i in rows] == sample["train"]["text"]
    assert (one.epochs, one.patience) == (1, 1)
    # more than the training split: the fewest passes, over a sample that fills the budget
    sample, teacher, two = sweep.recovery_for((data, None), 100, config)
    assert (two.epochs, len(sample["train"]), teacher) == (2, 50, None)
    assert two.patience >= 2                                   # no early stop inside the budget
    with pytest.raises(ValueError, match="positive"):
        sweep.recovery_for((data, None), 0, config)


class ExamplesFor:
    """A masks function that says it trained on 30 examples (as CoFi does)."""

    def __call__(self, model, target):
        return baselines.ffn_neuron_masks(model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True), target)

    def examples_for(self, target):
        return 30


def test_mask_sweep_spends_the_equal_budget(tokenizer):
    keras.utils.set_random_seed(0)
    model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    data = toy_dataset(n_train=64, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16)
    budget = {0.45: 100}
    methods = methods_lib.make_methods(["ffn_neurons"], tokenizer, data["train"], max_length=16)
    methods["trains"] = methods_lib.Method("trains", ExamplesFor(), "neuron")
    frame = methods_lib.run_baselines(model, tokenizer, data, methods, [0.45], config,
                                    retrain_examples=48, progress=False, train_budget=budget)
    final = frame[frame.final.astype(bool)].set_index("method")
    # scoring methods recover on the whole budget: 2 passes over 50 of the 64 tweets; the
    # method that trained for 30 recovers on the other 70 (2 passes over 35)
    assert final.train_examples_total.to_dict() == {"ffn_neurons": 100, "trains": 100}
    assert frame[~frame.final.astype(bool)].set_index("method").train_examples_total.to_dict() \
        == {"ffn_neurons": 0, "trains": 30}
    with pytest.raises(ValueError, match="no entry for targets"):
        sweep.mask_sweep(model, tokenizer, data, "ffn_neurons", methods["ffn_neurons"].masks_fn,
                             [0.7], config, train_budget=budget, progress=False)
    # chained: the scoring method runs as a chain, the one that trains its masks per target not
    chained = methods_lib.run_baselines(model, tokenizer, data, methods, [0.45], config,
                                      retrain_examples=48, progress=False, train_budget=budget,
                                      chained=True)
    assert chained.groupby("method").chained.last().to_dict() == {"ffn_neurons": True,
                                                                 "trains": False}
    assert chained[chained.final.astype(bool)].set_index("method").train_examples_total \
        .to_dict() == {"ffn_neurons": 100, "trains": 100}


def test_chained_sweep_spends_each_budget_once_and_masks_only_grow(tokenizer, tmp_path):
    keras.utils.set_random_seed(0)
    model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    start = [np.array(w) for w in model.get_weights()]
    data = toy_dataset(n_train=64, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16)
    budget = {0.3: 40, 0.6: 100}
    seen_by_masks_fn = []

    def magnitude(model, target):   # records the zeros of the weights it is given
        kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
        seen_by_masks_fn.append(units.masks_sparsity(
            {n: (k != 0).astype(np.float32) for n, k in kernels.items()}))
        return baselines.magnitude_masks(kernels, target)
    pool = sweep.recovery_data(data, tokenizer, model, None, 42, 16)
    frame = sweep.mask_sweep(model, tokenizer, data, "magnitude_global", magnitude, [0.3, 0.6],
                             config, train_budget=budget, recovery=pool, chained=True,
                             progress=False, save_dir=tmp_path)
    final = frame[frame.final.astype(bool)].set_index("target_sparsity")
    before = frame[~frame.final.astype(bool)].set_index("target_sparsity")
    # 0.6 starts from 0.3's recovered model (its 30% zeros) and recovers on 100 - 40 = 60
    assert seen_by_masks_fn[0] == pytest.approx(0.0)
    assert seen_by_masks_fn[1] == pytest.approx(final.loc[0.3, "sparsity_encoder_linear"], abs=1e-6)
    assert final.train_examples_total.to_dict() == {0.3: 40, 0.6: 100}
    assert before.train_examples_total.to_dict() == {0.3: 0, 0.6: 40}
    assert final.loc[0.6, "train_seconds"] > final.loc[0.3, "train_seconds"]   # cumulative
    assert frame.chained.dropna().astype(bool).all()
    first = model_lib.prunable_kernels(saved.load_model(tmp_path / "sparsity_30"), include_pooler=False, as_numpy=True)
    second = model_lib.prunable_kernels(saved.load_model(tmp_path / "sparsity_60"), include_pooler=False, as_numpy=True)
    for name in first:   # what 0.3 pruned stays pruned at 0.6
        assert np.all(second[name][first[name] == 0] == 0)
    # the model comes back as it started
    for w, w0 in zip(model.get_weights(), start):
        np.testing.assert_array_equal(w, w0)
    with pytest.raises(ValueError, match="ascending"):
        sweep.mask_sweep(model, tokenizer, data, "m", magnitude, [0.6, 0.3], config,
                         train_budget=budget, recovery=pool, chained=True, progress=False)
    with pytest.raises(ValueError, match="trains its own masks"):
        sweep.mask_sweep(model, tokenizer, data, "m", ExamplesFor(), [0.3], config,
                         train_budget=budget, recovery=pool, chained=True, progress=False)


def test_isolated_sweep_equals_the_in_process_one(tokenizer, tmp_path):
    keras.utils.set_random_seed(0)
    model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    data = toy_dataset(n_train=32, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16)
    runs = {}
    for isolate in (False, True):
        methods = methods_lib.make_methods(["magnitude_global", "layers"], tokenizer,
                                         data["train"], importance_examples=16, max_length=16)
        frame = methods_lib.run_baselines(model, tokenizer, data, methods, [0.45], config,
                                        retrain_examples=16, progress=False, isolate=isolate,
                                        save_root=tmp_path / str(isolate),
                                        csv_path=tmp_path / f"{isolate}.csv")
        runs[isolate] = (frame, methods_lib.method_records(methods))
    (local, local_records), (isolated, isolated_records) = runs[False], runs[True]
    # the child rebuilt each method from its recipe and started from the same weights
    assert isolated_records == local_records and isolated_records["layers"]["order"]
    assert methods["layers"].decisions == local_records["layers"]
    columns = ["method", "target_sparsity", "final", "sparsity_encoder_linear",
               "train_examples_total"]
    pd.testing.assert_frame_equal(isolated[columns], local[columns])
    before = ~local.final.astype(bool)          # pruned, not yet trained: the same scores
    np.testing.assert_allclose(isolated[before].macro_f1, local[before].macro_f1)
    assert (tmp_path / "True" / "layers" / "sparsity_45" / "model_spec.json").exists()
    assert len(pd.read_csv(tmp_path / "True.csv")) == len(isolated)


def test_isolated_sweep_needs_a_recipe(tokenizer):
    method = methods_lib.Method("made_by_hand", lambda model, target: {}, "unstructured")
    with pytest.raises(ValueError, match="no recipe"):
        methods_lib._sweep_in_process("unused", method, {})


def test_mask_sweep_structured_skips_and_repeats(tokenizer):
    keras.utils.set_random_seed(0)
    model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    data = toy_dataset(n_train=32, n_val=16)
    methods = methods_lib.make_methods(["heads", "layers"], tokenizer, data["train"],
                                     importance_examples=16, max_length=16)
    rows = {name: sweep.mask_sweep(model, tokenizer, data, name, m.masks_fn,
                                       [0.3, 0.45, 0.6], mode=m.mode, progress=False)
            for name, m in methods.items()}
    heads = rows["heads"].set_index("target_sparsity")
    # heads: 4 x 12.5% of the linear weights; 60% is out of reach and skipped
    assert list(heads.index) == [0.3, 0.45]
    assert heads.fully_removable_heads.tolist() == [3, 4]
    layers = rows["layers"].set_index("target_sparsity")
    # one of two layers reaches both 30% and 45%: the second point copies the first
    assert layers.sparsity_encoder_linear.tolist() == [0.5, 0.5, 1.0]
    assert layers.loc[0.45, "same_masks_as_target"] == 0.3
    assert layers.loc[0.45, "macro_f1"] == layers.loc[0.3, "macro_f1"]
    assert (rows["layers"]["mode"] == "layer").all()
    records = methods_lib.method_records(methods)
    assert len(records["heads"]["order"]) == 4 and len(records["layers"]["order"]) == 2


# ------------------------------------------------------------------ comparison helpers

def test_comparison_table_pareto_and_discussion():
    rows = []
    for method, f1s in (("block", [0.84, 0.82, 0.75]), ("magnitude_global", [0.85, 0.80, 0.6]),
                        ("heads", [0.7])):
        for s, f1 in zip((0.5, 0.7, 0.9), f1s):
            rows.append({"method": method, "target_sparsity": s, "retrained": True,
                         "final": True, "val_macro_f1": f1,
                         "sparsity_encoder_linear": s + 0.001, "sparsity_total": s / 2,
                         "accuracy": f1, "macro_f1": f1, "macro_recall": f1})
    points = pd.DataFrame(rows)
    dense = {"macro_f1": 0.86, "accuracy": 0.87, "macro_recall": 0.86}
    table = comparison.comparison_table(points, dense)
    at50 = table[table.level == 0.5].set_index("method")
    assert at50.loc["magnitude_global", "rank"] == 1 and at50.loc["block", "rank"] == 2
    assert at50.loc["magnitude_global", "gap_to_dense_points"] == pytest.approx(1.0)
    at90 = table[table.level == 0.9].set_index("method")
    assert not at90.loc["heads", "reached"]
    assert at90.loc["heads", "max_sparsity_encoder_linear"] == pytest.approx(0.501)
    latency = pd.DataFrame({"variant": ["dense", "a", "b", "c"],
                            "method": ["dense", "block", "block", "magnitude_global"],
                            "target_sparsity": [0.0, 0.5, 0.7, 0.5],
                            "sparsity_encoder_linear": [0.0, 0.5, 0.7, 0.5],
                            "macro_f1": [0.86, 0.855, 0.80, 0.85],
                            "latency_ms_median": [10.0, 6.0, 4.0, 10.5],
                            "throughput_ex_per_s": [100.0, 170.0, 250.0, 95.0],
                            "parameters": [100, 60, 40, 100]})
    latency["latency_speedup_vs_dense"] = 10.0 / latency.latency_ms_median
    latency["throughput_speedup_vs_dense"] = latency.throughput_ex_per_s / 100.0
    assert list(dominance.pareto_front_of_frame(latency).variant) == ["b", "a", "dense"]
    text = comparison.discussion(table, latency, dense)
    assert "**magnitude_global**" in text and "block pruning is rank 2" in text
    assert "heads (max 50%)" in text and "Fastest compacted variant within 1 point" in text
    assert "**a**" in text and "0.95x dense speed" in text and "timing noise" not in text


def test_comparison_table_times_a_repeated_point_under_its_first_target():
    """layers at 80% reproduces the masks of 70% (one more layer is all or nothing): the
    model was saved and timed as the 70% point only, and the table must find that timing."""
    points = pd.DataFrame([
        {"method": "layers", "target_sparsity": t, "retrained": True,
         "sparsity_encoder_linear": 0.833, "sparsity_total": 0.39, "accuracy": 0.75,
         "macro_f1": 0.74, "macro_recall": 0.73, "same_masks_as_target": same,
         "final": True, "val_macro_f1": 0.7}
        for t, same in ((0.7, np.nan), (0.8, 0.7))])
    latency = pd.DataFrame({"variant": ["layers @ 70%"], "method": ["layers"],
                            "target_sparsity": [0.7], "latency_ms_median": [4.1],
                            "latency_speedup_vs_dense": [3.3], "throughput_ex_per_s": [900.0],
                            "throughput_speedup_vs_dense": [4.5], "parameters": [13853571]})
    table = comparison.comparison_table(points, {"macro_f1": 0.85}, levels=[0.7, 0.8], latency=latency)
    assert table.latency_ms_median.tolist() == [4.1, 4.1]


def test_comparison_table_chooses_on_validation_and_reports_test():
    """Of two points above 50%, the one with the better validation score is chosen even though
    the other has the better test score; budgets and intervals come along; a table without
    validation scores is refused."""
    points = pd.DataFrame([
        {"method": "ffn_neurons", "target_sparsity": t, "retrained": True, "final": True,
         "sparsity_encoder_linear": t, "sparsity_total": t / 2, "accuracy": test,
         "macro_f1": test, "macro_recall": test, "val_macro_f1": val, "diff_low": -0.02,
         "diff_high": 0.0, "train_examples_total": 4000}
        for t, val, test in ((0.5, 0.80, 0.83), (0.6, 0.81, 0.78))]
        + [{"method": "ffn_neurons", "target_sparsity": 0.7, "retrained": True, "final": False,
            "sparsity_encoder_linear": 0.7, "sparsity_total": 0.35, "accuracy": 0.9,
            "macro_f1": 0.9, "macro_recall": 0.9, "val_macro_f1": 0.9}])
    table = comparison.comparison_table(points, {"macro_f1": 0.85}, levels=[0.5, 0.7])
    at50 = table[table.level == 0.5].iloc[0]
    assert at50.target_sparsity == 0.6 and at50.macro_f1 == 0.78 and at50.val_macro_f1 == 0.81
    assert at50.train_examples_total == 4000 and at50.diff_low == -0.02
    assert not table[table.level == 0.7].iloc[0].reached   # a non-final point is no deliverable
    with pytest.raises(ValueError, match="val_macro_f1"):
        comparison.comparison_table(points.drop(columns="val_macro_f1"), {"macro_f1": 0.85})


def test_block_train_examples_and_budget_sentence():
    reached = [{"target": 0.5, "step": 182}, {"target": 0.7, "step": 365}]
    points = pd.DataFrame({"target_sparsity": [0.5, 0.5, 0.7], "final": [False, True, True]})
    totals = comparison.block_train_examples(points, reached, 32, {"examples": 4000, "epochs": 1})
    assert totals == [182 * 32, 182 * 32 + 4000, 365 * 32 + 4000]
    with pytest.raises(ValueError, match=r"targets \[0.9\] are not in the run"):
        comparison.block_train_examples(pd.DataFrame({"target_sparsity": [0.9], "final": [True]}),
                                        reached, 32, {"examples": 4000, "epochs": 1})
    seen = {0.5: totals[1]}
    table = pd.DataFrame([{"level": 0.5, "method": "block", "reached": True,
                           "train_examples_total": seen[0.5]},
                          {"level": 0.5, "method": "heads", "reached": True,
                           "train_examples_total": 4000.0}])
    unequal = comparison.budget_sentence(table)
    assert "≥50%: block pruning 9,824, the others 4,000" in unequal and "not equal" in unequal
    table.loc[1, "train_examples_total"] = 9824 * 1.09               # within 10%: equal
    assert "equal within 10%" in comparison.budget_sentence(table)
    table.loc[1, "train_examples_total"] = 9824 * 1.11
    assert "not equal" in comparison.budget_sentence(table)
    assert comparison.budget_sentence(table.drop(columns="train_examples_total")) == ""


def test_cofi_budget_by_target_mapping():
    pruner = methods_lib.CoFiPruner(None, None, None, examples_for={"0.5": 5824, 0.7: 11680})
    assert pruner.examples_for(0.5) == 5824 and pruner.examples_for(0.70000001) == 11680
    with pytest.raises(ValueError, match="no pruning budget for target 0.9"):
        pruner.examples_for(0.9)


def test_budget_start_names_bad_methods_and_a_missing_penalty(tmp_path):
    with pytest.raises(ValueError, match="choose among"):
        methods_lib.budget_start("nope", 0.5, tmp_path, tmp_path)
    with pytest.raises(ValueError, match="needs `penalty_dir`"):
        methods_lib.budget_start("penalty in the loss", 0.5, tmp_path, tmp_path)
    with pytest.raises(ValueError, match="needs `penalty_dir`"):
        methods_lib.budget_start("penalty in the loss", 0.5, tmp_path, tmp_path, penalty_dir=tmp_path)
