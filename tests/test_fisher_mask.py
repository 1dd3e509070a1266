"""The Fisher mask search (utils/pruning/fisher_mask.py) against finite differences and brute force."""
import itertools

import numpy as np
import pytest

from utils.pruning import baselines
from utils.pruning import methods as methods_lib
from utils.pruning import fisher_mask
from utils.pruning import block as pruning
from utils.encoder import model as model_lib
from utils.pruning import units
from test_baselines import toy_batches, toy_model


def _finite_difference_gates(model, batch, delta=1e-3):
    """dL/dm for each head and neuron mask of layer 0, by scaling the head's output rows and
    the neuron's FFN-output row by 1 +- delta (float64 central differences of the loss)."""
    x, y = batch
    loss = baselines.task_loss_fn(model)
    kernels = model_lib.prunable_kernels(model)
    head_size = model.encoder_config.head_size

    def derivative(kernel, rows):
        start = np.asarray(kernel).astype(np.float64)
        values = []
        for sign in (1, -1):
            scaled = start.copy()
            scaled[rows] *= 1 + sign * delta
            kernel.assign(scaled.astype(np.float32))
            values.append(float(loss(x["input_ids"], x["attention_mask"], y)))
        kernel.assign(start.astype(np.float32))
        return (values[0] - values[1]) / (2 * delta)
    output = kernels["layer_0/attention/output"]
    heads = [derivative(output, slice(h * head_size, (h + 1) * head_size))
             for h in range(output.shape[0] // head_size)]
    ffn_output = kernels["layer_0/ffn/output"]
    neurons = [derivative(ffn_output, [j]) for j in range(ffn_output.shape[0])]
    return np.array(heads), np.array(neurons)


def test_fisher_information_is_the_sum_of_squared_batch_gradients():
    model = toy_model(num_heads=(2,), widths=(6,), scale=0.3)
    batches = toy_batches(3)
    fisher = fisher_mask.fisher_information(model, batches)
    heads, neurons = 0.0, 0.0
    for batch in batches:
        h, n = _finite_difference_gates(model, batch)
        heads, neurons = heads + h ** 2, neurons + n ** 2
    assert np.all(neurons > 0)
    np.testing.assert_allclose(fisher["heads"][0], heads, rtol=5e-2, atol=1e-6)
    np.testing.assert_allclose(fisher["neurons"][0], neurons, rtol=5e-2, atol=1e-6)


def _brute_force(head_imp, neuron_imp, head_cost, neuron_cost, budget):
    best = -1.0
    for n_heads in range(len(head_imp) + 1):
        for heads in itertools.combinations(range(len(head_imp)), n_heads):
            for n_neurons in range(len(neuron_imp) + 1):
                if n_heads * head_cost + n_neurons * neuron_cost > budget:
                    break
                for neurons in itertools.combinations(range(len(neuron_imp)), n_neurons):
                    best = max(best, sum(head_imp[list(heads)]) + sum(neuron_imp[list(neurons)]))
    return best


@pytest.mark.parametrize("budget", [0, 5, 13, 24, 31, 60])
def test_search_masks_is_the_optimum_under_the_budget(budget):
    rng = np.random.default_rng(budget)
    head_imp, neuron_imp = rng.exponential(size=4), rng.exponential(size=6) / 3
    heads, neurons = fisher_mask.search_masks(head_imp, neuron_imp, 8, 3, budget)
    assert 8 * len(heads) + 3 * len(neurons) <= budget
    assert len(set(heads)) == len(heads) and len(set(neurons)) == len(neurons)
    kept = head_imp[heads].sum() + neuron_imp[neurons].sum()
    assert kept == pytest.approx(_brute_force(head_imp, neuron_imp, 8, 3, budget))


def test_search_masks_rejects_bad_costs_and_budgets():
    with pytest.raises(ValueError, match="head_cost=0"):
        fisher_mask.search_masks([1.0], [1.0], 0, 1, 5)
    with pytest.raises(ValueError, match="budget must be >= 0"):
        fisher_mask.search_masks([1.0], [1.0], 1, 1, -1)


def test_pruner_reaches_the_target_with_whole_heads_and_neurons():
    model = toy_model(num_heads=(2, 2), widths=(8, 8), scale=0.3)
    pruner = fisher_mask.FisherMaskPruner(toy_batches(2))
    kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
    for target in (0.3, 0.6):
        masks = pruner(model, target)
        assert units.masks_sparsity(masks) >= target - 1e-9
        pruning.apply_masks(model, masks)
        summary = pruning.sparsity_summary(model)
        # every zero belongs to a whole head or neuron: removable units explain the sparsity
        removed = (summary["fully_removable_heads"] * 4 * 16 * 8
                   + summary["fully_removable_neurons"] * 2 * 16)
        assert removed == pytest.approx(summary["sparsity_encoder_linear"]
                                        * sum(k.size for k in kernels.values()))
        model.set_weights(toy_model(num_heads=(2, 2), widths=(8, 8), scale=0.3).get_weights())
    record = pruner.record()
    assert set(record["chosen"]) == {0.3, 0.6}
    kept = record["chosen"][0.6]
    assert sum(kept["heads_kept"].values()) * 512 + sum(kept["neurons_kept"].values()) * 32 \
        <= 0.4 * sum(k.size for k in kernels.values())
    with pytest.raises(ValueError, match="target sparsity"):
        pruner(model, 1.0)


def _valid(array, mask):
    return np.asarray(array, np.float64)[np.asarray(mask, bool)]


def _tuning_setup():
    from utils.pruning import units
    teacher = toy_model(num_heads=(2, 2), widths=(8, 8), scale=0.3, seed=3)
    student = toy_model(num_heads=(2, 2), widths=(8, 8), scale=0.3, seed=3)
    # prune neurons 1, 4, 6 of layer 0 and 0, 5 of layer 1, and head 0 of layer 1
    units.zero_units(student, {(0, "neurons"): np.isin(np.arange(8), [1, 4, 6]),
                               (1, "neurons"): np.isin(np.arange(8), [0, 5]),
                               (1, "heads"): np.array([True, False])})
    return teacher, student


def test_least_squares_mask_tuning_solves_each_sublayer_as_numpy_lstsq():
    import math
    teacher, student = _tuning_setup()
    before = [np.array(w) for w in student.get_weights()]
    batches = toy_batches(3, length=6, seed=1)
    applied = fisher_mask.least_squares_mask_tuning(student, teacher, batches)
    assert set(applied) == {(0, "neurons"), (1, "heads"), (1, "neurons")}   # no layer-0 heads
    erf = np.vectorize(math.erf)
    t_layers, s_layers = model_lib.transformer_layers(teacher), model_lib.transformer_layers(student)

    # layer 0's neurons: explicit A (one column per kept neuron, every real token and output
    # dimension), from a numpy forward of the FFN with the untuned weights
    ffn_t, ffn_s = t_layers[0].ffn, s_layers[0].ffn
    w_in, b_in = np.asarray(ffn_s.input_dense.kernel, np.float64), np.asarray(ffn_s.input_dense.bias, np.float64)
    w_out = np.asarray(before[[w.path for w in student.weights].index(ffn_s.output_dense.kernel.path)], np.float64)
    kept = applied[(0, "neurons")][0]
    assert kept.tolist() == [0, 2, 3, 5, 7]
    columns, targets = [], []
    for x, _ in batches:
        mask = x["attention_mask"]
        emb = teacher.get_layer("encoder").embeddings(x["input_ids"])
        a_t = t_layers[0].attention(emb, mask)
        a_s = _valid(s_layers[0].attention(emb, mask), mask)      # layer-0 heads untouched
        inner = a_s @ w_in + b_in
        inner = 0.5 * inner * (1 + erf(inner / np.sqrt(2)))
        columns.append(np.stack([(inner[:, [j]] * w_out[j]).ravel() for j in kept], axis=1))
        dense = _valid(a_t + ffn_t.output_dense(ffn_t.inner(a_t)), mask)
        targets.append((dense - np.asarray(ffn_s.output_dense.bias) - a_s).ravel())
    expected = np.linalg.lstsq(np.concatenate(columns), np.concatenate(targets), rcond=None)[0]
    np.testing.assert_allclose(applied[(0, "neurons")][1], expected, rtol=1e-4, atol=1e-6)

    # layer 1's heads, on the inputs of the tuned layer 0: columns context_h @ W_O[h] + ones
    att_t, att_s = t_layers[1].attention, s_layers[1].attention
    w_o = np.asarray(before[[w.path for w in student.weights].index(att_s.output_dense.kernel.path)], np.float64)
    assert applied[(1, "heads")][0].tolist() == [1]
    columns, targets = [], []
    for x, _ in batches:
        mask = x["attention_mask"]
        h_s, h_t = (s_layers[0](m.get_layer("encoder").embeddings(x["input_ids"]), mask)
                    for m, s_layers in ((student, s_layers), (teacher, t_layers)))
        context = _valid(att_s.context(h_s, mask), mask)
        head = (context[:, 8:16] @ w_o[8:16]).ravel()
        columns.append(np.stack([head, np.ones_like(head)], axis=1))
        dense = _valid(h_t + att_t.output_dense(att_t.context(h_t, mask)), mask)
        targets.append((dense - np.asarray(att_s.output_dense.bias) - _valid(h_s, mask)).ravel())
    expected = np.linalg.lstsq(np.concatenate(columns), np.concatenate(targets), rcond=None)[0]
    np.testing.assert_allclose(applied[(1, "heads")][1], expected[:-1], rtol=1e-4, atol=1e-6)
    # the tuned values are on the output rows: head 1's rows scaled, pruned rows still 0
    after = np.asarray(att_s.output_dense.kernel)
    np.testing.assert_allclose(after[8:16], w_o[8:16] * expected[0], rtol=1e-4, atol=1e-6)
    assert not after[:8].any()


def test_least_squares_mask_tuning_stops_at_out_of_range_scales_and_changes_nothing():
    teacher, student = _tuning_setup()
    before = [np.array(w) for w in student.get_weights()]
    applied = fisher_mask.least_squares_mask_tuning(student, teacher, toy_batches(2),
                                                    max_abs_scale=1e-6)
    assert applied == {}
    for a, b in zip(before, student.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_tuned_pruner_returns_the_same_zeros_with_tuned_output_rows():
    model = toy_model(num_heads=(2, 2), widths=(8, 8), scale=0.3, seed=4)
    start = [np.array(w) for w in model.get_weights()]
    plain = fisher_mask.FisherMaskPruner(toy_batches(2))(model, 0.5)
    pruner = fisher_mask.FisherMaskPruner(toy_batches(2), tune=True)
    tuned = pruner(model, 0.5)
    for a, b in zip(start, model.get_weights()):      # the model it was given is unchanged
        np.testing.assert_array_equal(a, b)
    assert set(tuned) == set(plain)
    changed = set()
    for name in plain:
        np.testing.assert_array_equal(tuned[name] == 0, plain[name] == 0)
        if not np.array_equal(tuned[name], plain[name]):
            changed.add(name.split("/", 1)[1])
    assert changed and changed <= {"attention/output", "ffn/output"}
    assert pruner.record()["chosen"][0.5]["tuned"]


def test_mask_rearrangement_matches_the_reference_implementation():
    """tests/fixtures/kwon_rearrange.npz: prune/rearrange.py's rearrange_mask (PyTorch) on random
    masks and per-batch gradients (tests/fixtures/make_rearrange_fixture.py)."""
    from pathlib import Path
    fixture = np.load(Path(__file__).parent / "fixtures" / "kwon_rearrange.npz")
    changed = 0
    for case in range(3):
        mask, grads, expected = (fixture[f"{name}_{case}"] for name in ("mask", "grads", "rearranged"))
        keep = {i: mask[i] > 0 for i in range(mask.shape[0])}
        result = fisher_mask.rearrange_masks(keep, {i: grads[:, i, :] for i in keep})
        for i in keep:
            np.testing.assert_array_equal(result[i], expected[i] > 0)
            assert result[i].sum() == keep[i].sum()
            changed += int((result[i] != keep[i]).sum())
    assert changed > 0          # the cases do move units


def test_rearranged_pruner_keeps_the_count_per_layer_and_the_fisher_sums_its_gradients():
    model = toy_model(num_heads=(2, 2), widths=(8, 8), scale=0.3, seed=5)
    batches = toy_batches(4)
    plain = fisher_mask.FisherMaskPruner(batches)
    moved = fisher_mask.FisherMaskPruner(batches, rearrange=True)
    plain(model, 0.5)
    moved(model, 0.5)
    for kind in ("heads", "neurons"):
        for i, g in plain.fisher["gradients"][kind].items():
            assert g.shape[0] == 4
            np.testing.assert_allclose(plain.fisher[kind][i], (g ** 2).sum(axis=0))
    assert moved.chosen[0.5] == plain.chosen[0.5]      # the same counts per layer


def _tuning_rows(scores):
    return {"rows": [{"target": t, "rearranged": r, "tuned": u, "val_macro_f1": v}
                     for (r, u), values in scores.items() for t, v in zip([0.5, 0.7, 0.9], values)]}


def test_options_on_validation_takes_the_best_mean_variant_measured_at_every_target():
    scores = {(False, False): [0.81, 0.77, 0.65], (False, True): [0.81, 0.78, 0.67],
              (True, False): [0.81, 0.78, 0.69], (True, True): [0.81, 0.78, 0.65]}
    assert fisher_mask.options_on_validation(_tuning_rows(scores)) == {"rearrange": True, "tune": False}
    # a variant missing a target does not compete, however well it scored
    runs = _tuning_rows(scores)
    runs["rows"].append({"target": 0.5, "rearranged": True, "tuned": True, "val_macro_f1": 0.99})
    runs["rows"] = [r for r in runs["rows"] if not (r["rearranged"] and r["tuned"] and r["target"] == 0.9)]
    assert fisher_mask.options_on_validation(runs) == {"rearrange": True, "tune": False}
    # ties go to the simpler variant
    tied = {v: [0.8, 0.8, 0.8] for v in scores}
    assert fisher_mask.options_on_validation(_tuning_rows(tied)) == {"rearrange": False, "tune": False}


@pytest.mark.parametrize("runs, match", [({}, "rows"), ({"rows": []}, "rows"),
                                         ({"rows": [{"target": 0.5, "val_macro_f1": float("nan")}]}, "finite")])
def test_options_on_validation_rejects_incomplete_runs(runs, match):
    with pytest.raises(ValueError, match=match):
        fisher_mask.options_on_validation(runs)


def test_make_methods_passes_the_options_to_the_pruner_and_its_recipe(tokenizer):
    from helpers import toy_dataset
    split = toy_dataset(n_train=40, n_val=8)["train"]
    methods = methods_lib.make_methods(["fisher_mask"], tokenizer, split, fisher_examples=32,
                                     fisher_options={"rearrange": True, "tune": False})
    pruner = methods["fisher_mask"].masks_fn
    assert (pruner.rearrange, pruner.tune) == (True, False)
    rebuilt = methods_lib.make_methods(**methods["fisher_mask"].recipe)["fisher_mask"].masks_fn
    assert (rebuilt.rearrange, rebuilt.tune) == (True, False)
