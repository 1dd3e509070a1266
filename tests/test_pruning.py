"""Block pruning against independent numpy references (explicit loops over blocks/groups)."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from utils.encoder import model as model_lib
from utils.pruning import block as pruning
from utils.pruning.block import PruningConfig
from utils.training import losses

# ------------------------------------------------------------------ numpy references


def ref_groups(kernel, k, kind):
    """Every group of `kernel` as a flat array, by explicit slicing."""
    n_in, n_out = kernel.shape
    groups = []
    if kind == "row":     # K column blocks; each row of each block
        width = n_out // k
        for b in range(k):
            for r in range(n_in):
                groups.append(kernel[r, b * width:(b + 1) * width])
    else:                 # K row blocks; each column of each block
        height = n_in // k
        for b in range(k):
            for c in range(n_out):
                groups.append(kernel[b * height:(b + 1) * height, c])
    return groups


def ref_kinds(mode, name):
    if mode == "inner":
        return ("column",) if name.split("/")[-1] in ("query", "key", "value", "input") \
            else ("row",)
    return ("row", "column") if mode == "row+column" else (mode,)


def ref_penalties(kernels, k, mode, polarization="normalized"):
    lasso = polar = 0.0
    for name, w in kernels.items():
        kinds = ref_kinds(mode, name)
        w = np.asarray(w, np.float64)
        if polarization == "elementwise":
            polar += np.sum(w * (1 - w))
        for kind in kinds:
            norms = np.array([np.sqrt(np.sum(g ** 2)) for g in ref_groups(w, k, kind)])
            lasso += norms.sum()
            if polarization == "normalized":
                n = norms / norms.max()
                polar += np.sum(n * (1 - n))
    return lasso, polar


def random_kernels(seed=0, shapes=((8, 12), (12, 8), (8, 4))):
    rng = np.random.default_rng(seed)
    return {f"m{i}": rng.normal(size=s).astype(np.float32) for i, s in enumerate(shapes)}


def layer_kernels(seed=0, hidden=8, inner=12):
    """One layer's six kernels, named as the model names them."""
    rng = np.random.default_rng(seed)
    shapes = {"attention/query": (hidden, hidden), "attention/key": (hidden, hidden),
              "attention/value": (hidden, hidden), "attention/output": (hidden, hidden),
              "ffn/input": (hidden, inner), "ffn/output": (inner, hidden)}
    return {f"layer_0/{n}": rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}


# ------------------------------------------------------------------ norms and penalties

@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("kind", ["row", "column"])
def test_group_norms_match_reference(k, kind):
    w = random_kernels()["m0"]
    expected = [np.linalg.norm(g) for g in ref_groups(w, k, kind)]
    got_np = pruning.group_norms(w, k, kind, xp=np)
    got_keras = np.asarray(pruning.group_norms(keras.ops.convert_to_tensor(w), k, kind))
    # layout: row -> (n_in, K) listed block-major in the reference; column -> (K, n_out)
    order = got_np.T.ravel() if kind == "row" else got_np.ravel()
    np.testing.assert_allclose(order, expected, rtol=1e-6)
    np.testing.assert_allclose(got_keras, got_np, rtol=1e-5)


@pytest.mark.parametrize("mode", ["row", "column", "row+column", "inner"])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_penalties_match_reference(mode, k):
    kernels = layer_kernels(seed=k)
    config = PruningConfig(num_blocks=k, mode=mode)
    lasso, polar = ref_penalties(kernels, k, mode)
    tensors = {n: keras.ops.convert_to_tensor(w) for n, w in kernels.items()}
    assert float(pruning.group_lasso_penalty(tensors, config)) == pytest.approx(lasso, rel=1e-5)
    assert float(pruning.polarization_penalty(tensors, config)) == pytest.approx(polar, rel=1e-5)


def test_elementwise_polarization_is_the_literal_form_and_unbounded_below():
    kernels = random_kernels()
    config = PruningConfig(polarization="elementwise")
    tensors = {n: keras.ops.convert_to_tensor(w) for n, w in kernels.items()}
    _, polar = ref_penalties(kernels, 1, "row+column", "elementwise")
    value = float(pruning.polarization_penalty(tensors, config))
    assert value == pytest.approx(polar, rel=1e-5)
    # sum theta(1-theta) = sum theta - sum theta^2: growing every weight lowers it without bound
    grown = {n: 10 * t for n, t in tensors.items()}
    assert float(pruning.polarization_penalty(grown, config)) < 50 * value < 0


def test_normalized_polarization_is_zero_at_the_poles():
    w = np.zeros((4, 6), np.float32)
    w[0], w[2] = 1.0, 1.0      # rows either fully on (same norm) or off
    config = PruningConfig(mode="row", polarization="normalized")
    value = float(pruning.polarization_penalty({"w": keras.ops.convert_to_tensor(w)}, config))
    assert value == pytest.approx(0.0, abs=1e-5)


def test_reweighted_lasso_uses_inverse_norms():
    kernels = random_kernels()
    config = PruningConfig(mode="row", num_blocks=2, reweight=True)
    factors = pruning.reweighting_factors(kernels, config)
    tensors = {n: keras.ops.convert_to_tensor(w) for n, w in kernels.items()}
    weighted = float(pruning.group_lasso_penalty(tensors, config, factors))
    expected = sum(np.sum(pruning.group_norms(w, 2, "row", xp=np)
                          / (pruning.group_norms(w, 2, "row", xp=np) + 1e-3))
                   for w in kernels.values())
    assert weighted == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("polarization", ["normalized", "elementwise"])
def test_penalty_gradient_matches_finite_differences(polarization):
    w0 = random_kernels(seed=3, shapes=((4, 6),))["m0"].astype(np.float64)
    config = PruningConfig(num_blocks=2, mode="row+column", polarization=polarization)

    def numpy_penalty(w):
        lasso, polar = ref_penalties({"w": w}, 2, "row+column", polarization)
        return lasso + 0.5 * polar

    variable = tf.Variable(w0.astype(np.float32))
    with tf.GradientTape() as tape:
        value = (pruning.group_lasso_penalty({"w": variable}, config)
                 + 0.5 * pruning.polarization_penalty({"w": variable}, config))
    grad = tape.gradient(value, variable).numpy()
    h = 1e-5
    numeric = np.zeros_like(w0)
    for idx in np.ndindex(w0.shape):
        plus, minus = w0.copy(), w0.copy()
        plus[idx] += h
        minus[idx] -= h
        if polarization == "normalized":
            # the max norm is a stop-gradient reference point: hold it fixed, as the code does
            numeric[idx] = (fixed_scale_penalty(plus, w0) - fixed_scale_penalty(minus, w0)) / (2 * h)
        else:
            numeric[idx] = (numpy_penalty(plus) - numpy_penalty(minus)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=2e-4)


def fixed_scale_penalty(w, w_ref):
    total = 0.0
    for kind in ("row", "column"):
        norms = np.array([np.linalg.norm(g) for g in ref_groups(w, 2, kind)])
        scale = max(np.linalg.norm(g) for g in ref_groups(w_ref, 2, kind))
        n = norms / scale
        total += norms.sum() + 0.5 * np.sum(n * (1 - n))
    return total


# ------------------------------------------------------------------ thresholding

def test_threshold_gives_exactly_the_predicted_sparsity():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 12)).astype(np.float32)
    eps = np.median(pruning.group_norms(w, 1, "row", xp=np))
    masks, _ = pruning.threshold_masks({"w": w}, 1, "row+column", epsilon=eps)
    rows_off = sum(np.linalg.norm(g) <= eps for g in ref_groups(w, 1, "row"))
    cols_off = sum(np.linalg.norm(g) <= eps for g in ref_groups(w, 1, "column"))
    predicted = rows_off * 12 + cols_off * 8 - rows_off * cols_off
    assert int((masks["w"] == 0).sum()) == predicted
    assert rows_off > 0 and cols_off >= 0


@pytest.mark.parametrize("k,mode", [(1, "row"), (2, "column"), (4, "row+column"), (1, "inner")])
def test_target_sparsity_is_reached_with_the_smallest_threshold(k, mode):
    kernels = random_kernels(seed=7)
    masks, eps = pruning.threshold_masks(kernels, k, mode, target_sparsity=0.5)
    total = sum(w.size for w in kernels.values())
    zeros = sum(int((m == 0).sum()) for m in masks.values())
    assert zeros / total >= 0.5
    # one group norm less and the target is missed
    norms = np.unique(np.concatenate([pruning.group_norms(w, k, kind, xp=np).ravel()
                                      for n, w in kernels.items()
                                      for kind in ref_kinds(mode, n)]))
    below = norms[norms < eps["m0"]].max()
    fewer, _ = pruning.threshold_masks(kernels, k, mode, epsilon=below)
    assert sum(int((m == 0).sum()) for m in fewer.values()) / total < 0.5


def test_inner_mode_zeroes_only_heads_and_neurons():
    from utils.encoder.model import EncoderConfig
    kernels = layer_kernels(seed=2)
    masks, _ = pruning.threshold_masks(kernels, 1, "inner", target_sparsity=0.4)
    for name, mask in masks.items():
        whole = mask.all(axis=0) | ~mask.any(axis=0) if ref_kinds("inner", name) == ("column",) \
            else mask.all(axis=1) | ~mask.any(axis=1)
        assert whole.all(), name  # every column (or row) is either kept or gone entirely
    pruned = {n: k * masks[n] for n, k in kernels.items()}
    config = EncoderConfig(vocab_size=10, hidden_size=8, num_heads=[4], intermediate_sizes=[12],
                           head_size=2)
    heads, neurons = pruning.removable_heads_and_neurons(pruned, config)
    zero_ffn_in = int((~masks["layer_0/ffn/input"].any(axis=0)).sum())
    zero_ffn_out = int((~masks["layer_0/ffn/output"].any(axis=1)).sum())
    assert len(neurons[0]) >= max(zero_ffn_in, zero_ffn_out) > 0


def test_per_matrix_target_sparsity():
    kernels = random_kernels(seed=1)
    masks, eps = pruning.threshold_masks(kernels, 1, "column", target_sparsity=0.3,
                                         scope="per_matrix")
    for name, m in masks.items():
        assert (m == 0).mean() >= 0.3
    assert len(set(eps.values())) == len(kernels)


def test_block_mask_zeroes_whole_block_groups():
    w = np.ones((4, 6), np.float32)
    w[1, 3:] = 0.0   # row 1 of the second of K=2 column blocks
    masks, _ = pruning.threshold_masks({"w": w}, 2, "row", epsilon=0.0)
    expected = np.ones_like(w)
    expected[1, 3:] = 0
    np.testing.assert_array_equal(masks["w"], expected)


# ------------------------------------------------------------------ invalid configs

@pytest.mark.parametrize("kwargs,match", [
    ({"num_blocks": 0}, "num_blocks"), ({"num_blocks": 2.0}, "num_blocks"),
    ({"mode": "diagonal"}, "mode"), ({"polarization": "bimodal"}, "polarization"),
    ({"lambda_group": -1e-4}, "lambda_group"), ({"lambda_polar": float("nan")}, "lambda_polar"),
    ({"lambda_warmup_fraction": 2.0}, "lambda_warmup_fraction"),
    ({"distill_alpha": 1.5}, "distill_alpha"), ({"temperature": 0}, "temperature"),
    ({"reweight_every_steps": 0}, "reweight_every_steps"),
])
def test_invalid_pruning_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PruningConfig(**kwargs)


def test_k_must_divide_the_split_dimension():
    with pytest.raises(ValueError, match="K=5 does not divide the output dimension \\(12\\)"):
        pruning.threshold_masks({"w": np.ones((8, 12))}, 5, "row", epsilon=0.1)
    with pytest.raises(ValueError, match="K=3 does not divide the input dimension \\(8\\)"):
        pruning.check_divisible((8, 12), 3, "column")


@pytest.mark.parametrize("kwargs,match", [
    ({"epsilon": -0.1}, "epsilon"), ({"target_sparsity": 1.0}, "target_sparsity"),
    ({}, "exactly one"), ({"epsilon": 0.1, "target_sparsity": 0.5}, "exactly one"),
    ({"epsilon": 0.1, "scope": "layer"}, "scope"),
])
def test_invalid_threshold_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pruning.threshold_masks({"w": np.ones((4, 4))}, 1, "row", **kwargs)


# ------------------------------------------------------------------ distillation, removability

def test_distillation_loss_matches_numpy():
    rng = np.random.default_rng(0)
    teacher, student = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    t = 2.0

    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    p, q = softmax(teacher / t), softmax(student / t)
    expected = t * t * np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1))
    got = float(losses.distillation_loss(teacher.astype(np.float32),
                                          student.astype(np.float32), t))
    assert got == pytest.approx(expected, rel=1e-5)


def test_removable_heads_and_neurons():
    from utils.encoder.model import EncoderConfig
    config = EncoderConfig(vocab_size=10, hidden_size=4, num_heads=[2], intermediate_sizes=[3],
                           head_size=2)
    ones = np.ones
    kernels = {"layer_0/attention/value": ones((4, 4)), "layer_0/attention/output": ones((4, 4)),
               "layer_0/ffn/input": ones((4, 3)), "layer_0/ffn/output": ones((3, 4))}
    kernels["layer_0/attention/value"][:, 2:] = 0     # head 1: value columns empty
    kernels["layer_0/ffn/output"][0] = 0              # neuron 0: output row empty
    kernels["layer_0/ffn/input"][:, 2] = 0            # neuron 2: input column empty
    kernels["layer_0/ffn/input"][1, 1] = 0            # a single zero does not free neuron 1
    heads, neurons = pruning.removable_heads_and_neurons(kernels, config)
    assert heads == {0: [1]} and neurons == {0: [0, 2]}


# ------------------------------------------------------------------ training with the model

def tiny_setup(tokenizer, seed=0):
    import datasets
    keras.utils.set_random_seed(seed)
    model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    rng = np.random.default_rng(seed)
    words = {0: "awful hate", 1: "table monday", 2: "lovely great"}

    def split(n):
        labels = rng.integers(0, 3, size=n)
        return datasets.Dataset.from_dict({"text": [f"{words[y]} tweet {rng.integers(50)}"
                                                    for y in labels], "label": labels.tolist()})
    return model, datasets.DatasetDict(train=split(96), validation=split(32), test=split(32))


def test_masked_retraining_keeps_zeros_at_zero(tokenizer):
    from utils.training import train
    model, data = tiny_setup(tokenizer)
    kernels = model_lib.prunable_kernels(model, include_pooler=False)
    masks, _ = pruning.threshold_masks({n: np.asarray(k) for n, k in kernels.items()}, 1,
                                       "row+column", target_sparsity=0.5)
    before = {n: np.asarray(k).copy() for n, k in kernels.items()}
    config = train.TrainConfig(learning_rate=1e-2, epochs=4, batch_size=8, max_length=16,
                               patience=10, warmup_fraction=0.0)
    pruning.penalized_fine_tune(model, tokenizer, data, config, masks=masks, progress=False)
    assert int(model.optimizer.iterations) == 48  # many steps at a large learning rate
    changed = 0
    for name, kernel in model_lib.prunable_kernels(model, include_pooler=False).items():
        w = np.asarray(kernel)
        assert np.all(w[masks[name] == 0] == 0), name
        changed += np.sum(w[masks[name] == 1] != before[name][masks[name] == 1])
    assert changed > 0
    # Adam moments of pruned weights never moved
    paths = pruning.masks_by_variable_path(model, masks)
    for var in model.optimizer.variables:
        for path, mask in paths.items():
            if var.path.endswith(path.replace("/", "_")) and var.shape == mask.shape:
                assert np.all(np.asarray(var)[np.asarray(mask) == 0] == 0)


def test_regularized_training_shrinks_group_norms_and_logs_terms(tokenizer):
    from utils.training import train
    model, data = tiny_setup(tokenizer)
    config = PruningConfig(lambda_group=5e-2, lambda_polar=1e-3, lambda_warmup_fraction=0.0)
    kernels = model_lib.prunable_kernels(model, include_pooler=False)
    start = float(pruning.group_lasso_penalty(kernels, config))
    state = pruning.penalized_fine_tune(model, tokenizer, data,
                            train.TrainConfig(learning_rate=3e-3, epochs=3, batch_size=8,
                                              max_length=16, patience=10, warmup_fraction=0),
                            pruning=config, progress=False)
    end = float(pruning.group_lasso_penalty(model_lib.prunable_kernels(model, include_pooler=False), config))
    assert end < 0.9 * start
    terms = state["loss_terms"]
    assert terms and {"task_loss", "group_lasso", "polarization"} <= set(terms[0])
    assert state["config"]["pruning"] == dataclasses.asdict(config)


def test_distillation_needs_teacher_logits(tokenizer):
    from utils.training import train
    model, data = tiny_setup(tokenizer)
    with pytest.raises(ValueError, match="teacher_logits"):
        pruning.penalized_fine_tune(model, tokenizer, data, train.TrainConfig(epochs=1),
                        pruning=PruningConfig(distill_alpha=0.5), progress=False)


def test_hidden_state_loss_matches_numpy_and_ignores_padding():
    rng = np.random.default_rng(1)
    student = [rng.normal(size=(3, 5, 4)) for _ in range(2)]
    teacher = [rng.normal(size=(3, 5, 4)) for _ in range(2)]
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    expected = 0.0
    for s, t in zip(student, teacher):           # explicit loop over the real tokens
        errors = [np.mean((s[b, i] - t[b, i]) ** 2) for b in range(3) for i in range(5)
                  if mask[b, i]]
        expected += np.mean(errors)
    got = float(losses.hidden_state_loss([x.astype("f4") for x in student],
                                          [x.astype("f4") for x in teacher], mask))
    assert got == pytest.approx(expected, rel=1e-5)
    # what stands at padded positions does not matter
    noisy = [s.copy() for s in student]
    for s in noisy:
        s[mask == 0] = 1e3
    assert float(losses.hidden_state_loss([x.astype("f4") for x in noisy],
                                           [x.astype("f4") for x in teacher], mask)) \
        == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="pair every layer"):
        losses.hidden_state_loss(student[:1], teacher, mask)


@pytest.mark.parametrize("value", [-0.1, float("nan"), "1"])
def test_hidden_alpha_must_be_a_finite_number_at_least_zero(value):
    with pytest.raises(ValueError, match="hidden_alpha"):
        PruningConfig(hidden_alpha=value)


def test_hidden_state_distillation_gives_the_classifiers_logits_and_pulls_towards_the_teacher(
        tokenizer):
    """The wrapper's training forward (encoder run for its hidden states, then the head) is
    the classifier itself (parity, dropout off); a student that is a copy of the teacher has
    no hidden loss; training with hidden_alpha lowers the hidden loss of a perturbed copy."""
    from utils.data import batching
    from utils.training import train
    config = dataclasses.replace(model_lib.tiny_config(tokenizer.vocab_size),
                                 hidden_dropout=0.0, attention_dropout=0.0)
    teacher = model_lib.build_classifier(config)
    student = model_lib.build_classifier(config)
    student.set_weights(teacher.get_weights())
    wrapper = pruning.PenalizedClassifier(student, PruningConfig(hidden_alpha=1.0), 10,
                                          teacher=teacher)
    batches, _ = batching.make_batches(tokenizer, ["lovely great tweet", "awful", "a b c d e"],
                                       max_length=16, batch_size=3)
    inputs = batches[0][0] if isinstance(batches[0], tuple) else batches[0]
    np.testing.assert_allclose(np.asarray(wrapper(inputs, training=True)),
                               np.asarray(student(inputs, training=False)), atol=1e-5)
    assert float(wrapper.hidden_term) == pytest.approx(0.0, abs=1e-10)

    _, data = tiny_setup(tokenizer)
    rng = np.random.default_rng(0)
    student.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype)
                         for w in teacher.get_weights()])

    def hidden_loss():
        s, t = model_lib.encode(student, inputs), model_lib.encode(teacher, inputs)
        return float(losses.hidden_state_loss(s[1:], t[1:], inputs["attention_mask"]))
    before = hidden_loss()
    teacher_weights = [np.array(w) for w in teacher.get_weights()]
    state = pruning.penalized_fine_tune(student, tokenizer, data,
                            train.TrainConfig(epochs=1, batch_size=16, learning_rate=1e-3),
                            pruning=PruningConfig(lambda_group=0.0, lambda_polar=0.0,
                                                  polarization="none", hidden_alpha=10.0),
                            teacher=teacher, progress=False)
    assert hidden_loss() < 0.8 * before
    assert all(np.array_equal(a, b) for a, b in zip(teacher_weights, teacher.get_weights()))
    assert any(t.get("hidden_distillation", 0) > 0 for t in state["loss_terms"])


def test_hidden_state_distillation_needs_a_matching_teacher(tokenizer):
    model, _ = tiny_setup(tokenizer)
    with pytest.raises(ValueError, match="needs teacher="):
        pruning.PenalizedClassifier(model, PruningConfig(hidden_alpha=1.0), 10)
    other = model_lib.build_classifier(dataclasses.replace(
        model.encoder_config, num_heads=[2], intermediate_sizes=[64]))
    with pytest.raises(ValueError, match="layer l is distilled towards layer l"):
        pruning.PenalizedClassifier(model, PruningConfig(hidden_alpha=1.0), 10, teacher=other)


def test_sparsity_summary_counts_zeros(tokenizer):
    model, _ = tiny_setup(tokenizer)
    kernels = model_lib.prunable_kernels(model, include_pooler=False)
    masks, _ = pruning.threshold_masks({n: np.asarray(k) for n, k in kernels.items()}, 1,
                                       "column", target_sparsity=0.4)
    pruning.apply_masks(model, masks)
    summary = pruning.sparsity_summary(model)
    zeros = sum(int((m == 0).sum()) for m in masks.values())
    assert summary["sparsity_encoder_linear"] == pytest.approx(
        zeros / sum(m.size for m in masks.values()))
    assert 0 < summary["sparsity_total"] < summary["sparsity_encoder_linear"]


def test_recovery_passes_the_teacher_for_hidden_state_distillation(tokenizer):
    from utils.pruning import sweep
    from utils.training import train
    model, data = tiny_setup(tokenizer)
    teacher = model_lib.build_classifier(model.encoder_config)
    short = train.TrainConfig(epochs=1, batch_size=32, max_length=16)
    state = sweep.recover(model, tokenizer, data, short, teacher=teacher, hidden_alpha=0.5)
    assert state["config"]["pruning"]["hidden_alpha"] == 0.5
    assert state["config"]["pruning"]["distill_alpha"] == 0.0     # no teacher logits given
    assert all(t["hidden_distillation"] > 0 for t in state["loss_terms"])
    with pytest.raises(ValueError, match="needs teacher="):
        sweep.recover(model, tokenizer, data, short, hidden_alpha=0.5)
    plain = sweep.recover(model, tokenizer, data, short)              # unchanged default
    assert plain["config"]["pruning"] is None
