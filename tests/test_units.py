"""utils.pruning.units: heads and FFN neurons as groups spanning Q/K/V/O (and FFN input/output)."""
import keras
import numpy as np
import pytest
from keras import ops

import utils  # noqa: F401  (sets KERAS_BACKEND)
from utils.common import io
from utils import saved
from utils.compression import compact as C
from utils.encoder import model as M
from utils.pruning import units as U
from utils.pruning import importance as importance_lib
from helpers import random_model

CONFIG = M.EncoderConfig(vocab_size=40, hidden_size=8, num_heads=[2, 2], intermediate_sizes=[6, 5],
                         head_size=4, max_position_embeddings=16)


def reference_norms(model):
    """An independent loop: gather each unit's weights by hand from the named layers."""
    out = {}
    s = model.encoder_config.head_size
    for i, layer in enumerate(M.transformer_layers(model)):
        a, f = layer.attention, layer.ffn
        w = lambda v: np.asarray(v)  # noqa: E731
        out[(i, "heads")] = np.array([np.sqrt(
            sum((w(d.kernel)[:, h * s:(h + 1) * s] ** 2).sum() + (w(d.bias)[h * s:(h + 1) * s] ** 2).sum()
                for d in (a.query, a.key, a.value))
            + (w(a.output_dense.kernel)[h * s:(h + 1) * s, :] ** 2).sum()) for h in range(a.num_heads)])
        out[(i, "neurons")] = np.array([np.sqrt(
            (w(f.input_dense.kernel)[:, j] ** 2).sum() + w(f.input_dense.bias)[j] ** 2
            + (w(f.output_dense.kernel)[j, :] ** 2).sum()) for j in range(f.intermediate_size)])
    return out


def random_inputs(seed=0, batch=3, length=7):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, CONFIG.vocab_size, size=(batch, length))
    mask = np.ones((batch, length), dtype=np.int32)
    ids[1, 4:], mask[1, 4:] = CONFIG.pad_token_id, 0
    return {"input_ids": ids, "attention_mask": mask}


def test_unit_norms_match_a_hand_written_loop_in_numpy_and_keras_ops():
    model = random_model(CONFIG, seed=3)
    expected = reference_norms(model)
    got = U.unit_norms(model)
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6)
    for key, value in U.unit_norms(model, xp=ops).items():
        np.testing.assert_allclose(ops.convert_to_numpy(value), expected[key], rtol=1e-5)


def test_zeroing_a_unit_group_equals_removing_the_unit():
    """Compaction parity: zero head 1 of layer 0 and neurons 0, 3 of layer 1 through their
    unit groups; the compacted model has those units gone and gives the same logits."""
    model = random_model(CONFIG, seed=4)
    inputs = random_inputs()
    U.scale_units(model, {(0, "heads"): [1, 0], (1, "neurons"): [0, 1, 1, 0, 1]})
    norms = U.unit_norms(model)
    assert norms[(0, "heads")][1] == 0 and norms[(0, "heads")][0] > 0
    assert list(np.flatnonzero(norms[(1, "neurons")] == 0)) == [0, 3]
    compact = C.compact_model(model)
    assert compact.encoder_config.num_heads == [1, 2]
    assert compact.encoder_config.intermediate_sizes == [6, 3]
    np.testing.assert_allclose(np.asarray(compact(inputs)), np.asarray(model(inputs)),
                               atol=1e-5, rtol=0)
    masks = U.alive_units(model)
    assert masks[(0, "heads")].tolist() == [1, 0] and masks[(1, "neurons")].tolist() == [0, 1, 1, 0, 1]


def test_prox_scale_is_the_group_soft_threshold():
    norms = np.array([0.0, 0.5, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(U.prox_scale(norms, 1.0), [0, 0, 0, 0.5, 0.75])
    # prox_{t||.||}(v) = argmin_x 1/2 ||x - v||^2 + t ||x||: no random x does better
    rng = np.random.default_rng(0)
    t = 0.7
    for _ in range(20):
        v = rng.normal(size=5) * rng.uniform(0.1, 2)
        x = U.prox_scale([np.linalg.norm(v)], t)[0] * v
        objective = lambda z: 0.5 * np.sum((z - v) ** 2) + t * np.linalg.norm(z)  # noqa: E731
        assert all(objective(x) <= objective(x + rng.normal(size=5) * 1e-2) + 1e-12 for _ in range(20))
        assert objective(x) <= objective(np.zeros(5)) + 1e-12


def test_ista_with_prox_scale_solves_group_lasso_least_squares():
    """min 1/2||Xw - y||^2 + lam * sum_g ||w_g||: the proximal-gradient (ISTA) solution meets
    the optimality conditions, checked independently: for w_g != 0,
    X_g'(Xw - y) + lam w_g / ||w_g|| = 0; for w_g = 0, ||X_g'(Xw - y)|| <= lam."""
    rng = np.random.default_rng(1)
    groups, size, n = 6, 3, 60
    X = rng.normal(size=(n, groups * size))
    truth = np.zeros((groups, size))
    truth[[0, 3]] = rng.normal(size=(2, size)) * 3
    y = X @ truth.ravel() + 0.1 * rng.normal(size=n)
    lam, step = 8.0, 1.0 / np.linalg.norm(X, 2) ** 2
    w = np.zeros((groups, size))
    for _ in range(5000):
        w = w - step * (X.T @ (X @ w.ravel() - y)).reshape(groups, size)
        w = U.prox_scale(np.linalg.norm(w, axis=1), step * lam)[:, None] * w
    gradient = (X.T @ (X @ w.ravel() - y)).reshape(groups, size)
    zero = np.linalg.norm(w, axis=1) == 0
    assert zero.sum() >= 3 and not zero[[0, 3]].any()     # exact zeros, true groups kept
    for g in range(groups):
        if zero[g]:
            assert np.linalg.norm(gradient[g]) <= lam + 1e-6
        else:
            np.testing.assert_allclose(gradient[g] + lam * w[g] / np.linalg.norm(w[g]), 0, atol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_prox_scale_rejects_bad_thresholds(bad):
    with pytest.raises(ValueError, match="threshold"):
        U.prox_scale([1.0], bad)


def test_select_units_takes_the_smallest_rms_until_the_target():
    norms = {(0, "heads"): np.array([4.0, 1.0]), (0, "neurons"): np.array([0.5, 3.0, 0.2, 2.0])}
    counts = {(0, "heads"): 16, (0, "neurons"): 4}       # RMS: heads 1.0, 0.25; neurons .25,1.5,.1,1
    alive = {k: np.ones(len(v), bool) for k, v in norms.items()}
    # total 48: neuron 2 (RMS 0.1) = 4 weights, then head 1 / neuron 0 (0.25, tie: heads first)
    chosen = U.select_units(norms, counts, alive, target=0.3, total=48)
    assert chosen[(0, "neurons")].tolist() == [False, False, True, False]
    assert chosen[(0, "heads")].tolist() == [False, True]      # 4 + 16 = 20 >= 14.4
    alive[(0, "neurons")][2] = False                          # already pruned counts too
    chosen = U.select_units(norms, counts, alive, target=0.05, total=48)
    assert not any(c.any() for c in chosen.values())          # 4 / 48 = 8% >= 5%


PROGRESSIVE = M.EncoderConfig(vocab_size=30522, hidden_size=16, num_heads=[4, 4],
                              intermediate_sizes=[64, 64], head_size=4, max_position_embeddings=32)


def test_progressive_pruning_reaches_each_target_and_pruned_units_stay_exactly_zero(tokenizer):
    from helpers import toy_dataset
    from utils.pruning import block as P
    from utils.training import train
    model = random_model(PROGRESSIVE, seed=5)
    data = toy_dataset(n_train=160, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, epochs=2, batch_size=8, max_length=16)
    seen = []
    pruner = U.ProgressiveUnitPruning(model, [0.2, 0.5], total_steps=40, prune_fraction=0.5,
                                      every=2, on_target=lambda t: seen.append(
                                          (t, P.sparsity_summary(model)["sparsity_encoder_linear"])))
    train.fine_tune(model, tokenizer, data, config, progress=False, callbacks=[pruner.keras_callback()])
    assert [t for t, _ in seen] == [0.2, 0.5] and pruner.ends == [10, 20]
    largest_unit = max(U.unit_weight_counts(model).values()) / M.encoder_linear_weights(model)
    for (target, measured), reached in zip(seen, pruner.reached):
        # the weights really are zero: measured sparsity is at least the units' share
        assert target <= reached["sparsity"] <= measured + 1e-9
        assert reached["sparsity"] < target + largest_unit
    # 20 more steps of training after the last period: switched-off units are still exactly 0
    norms = U.unit_norms(model)
    for key, alive in pruner.alive.items():
        assert np.all(norms[key][~alive] == 0) and np.all(norms[key][alive] > 0)
    assert P.sparsity_summary(model)["sparsity_encoder_linear"] == pytest.approx(pruner.sparsity())


@pytest.mark.parametrize("kwargs, match", [({"targets": []}, "targets"),
                                           ({"targets": [0.5, 1.0]}, "targets"),
                                           ({"prune_fraction": 0}, "prune_fraction"),
                                           ({"every": 0}, "every"),
                                           ({"total_steps": 1}, "total_steps")])
def test_progressive_pruning_rejects_bad_settings(kwargs, match):
    model = random_model(PROGRESSIVE, seed=0)
    settings = {"targets": [0.3, 0.5], "total_steps": 100, **kwargs}
    with pytest.raises(ValueError, match=match):
        U.ProgressiveUnitPruning(model, **settings)


def test_progressive_prune_saves_a_snapshot_per_target_and_the_sweep_recovers_them(tokenizer, tmp_path):
    from helpers import toy_dataset
    from utils.pruning import block as P
    from utils.pruning import sweep
    from utils.training import train
    model = random_model(PROGRESSIVE, seed=6)
    data = toy_dataset(n_train=96, n_val=16)
    config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=8, max_length=16)
    teacher = np.random.default_rng(0).normal(size=(96, 3)).astype("float32")
    pruner, state = U.progressive_prune(model, tokenizer, data, [0.3, 0.6], config, tmp_path,
                                        teacher_logits=teacher, prune_fraction=1.0, every=1)
    dirs = {t: tmp_path / io.sparsity_dir_name(t) for t in (0.3, 0.6)}
    on_disk = {t: P.sparsity_summary(saved.load_model(d))["sparsity_encoder_linear"] for t, d in dirs.items()}
    assert [r["sparsity"] for r in pruner.reached] == pytest.approx([on_disk[0.3], on_disk[0.6]])
    dense = random_model(PROGRESSIVE, seed=6)
    reference = train.evaluate(dense, tokenizer, data["test"], max_length=16, return_predictions=True)
    frame = sweep.snapshot_sweep(dirs, tokenizer, data, config, method="block_progressive",
                                 teacher=dense, reference_predictions=reference["predictions"],
                                 save_dir=tmp_path / "recovered")
    assert list(frame.retrained) == [False, True, False, True] == list(frame.final)
    final = frame[frame.final]
    assert np.allclose(final.diff_macro_f1, final.macro_f1 - reference["macro_f1"])
    assert (final.diff_low <= final.diff_macro_f1).all() and (final.diff_macro_f1 <= final.diff_high).all()
    for target in (0.3, 0.6):   # recovered models are saved with their zeros
        recovered = saved.load_model(tmp_path / "recovered" / io.sparsity_dir_name(target))
        assert P.sparsity_summary(recovered)["sparsity_encoder_linear"] == pytest.approx(on_disk[target])
    # retraining keeps every zero: sparsity after equals sparsity before
    for target in (0.3, 0.6):
        rows = frame[frame.target_sparsity == target]
        assert rows.sparsity_encoder_linear.nunique() == 1
        assert rows.sparsity_encoder_linear.iloc[0] == pytest.approx(on_disk[target])
    assert frame.val_macro_f1.between(0, 1).all()


def test_one_shot_prune_zeroes_the_smallest_units_to_the_target():
    model = random_model(PROGRESSIVE, seed=3)
    norms, counts = U.unit_norms(model), U.unit_weight_counts(model)
    off = U.one_shot_prune(model, 0.5)
    from utils.pruning import block as P
    assert P.sparsity_summary(model)["sparsity_encoder_linear"] == pytest.approx(
        sum(counts[k] * v.sum() for k, v in off.items()) / M.encoder_linear_weights(model))
    assert 0.5 <= P.sparsity_summary(model)["sparsity_encoder_linear"] < 0.5 + 0.01 + max(counts.values()) / M.encoder_linear_weights(model)
    # every unit left is at least as large (RMS) as every unit cut
    rms = {k: norms[k] / np.sqrt(counts[k]) for k in norms}
    cut = [rms[k][u] for k, v in off.items() for u in np.flatnonzero(v)]
    kept = [rms[k][u] for k, v in off.items() for u in np.flatnonzero(~v)]
    assert max(cut) <= min(kept)
    share = U.share_exactly_zero(model)
    for kind in U.KINDS:
        assert share[kind] == pytest.approx(np.mean(np.concatenate(
            [off[k] for k in off if k[1] == kind])))


def test_matrix_groups_are_the_proposals_groups_and_partition_the_kernels():
    from utils.pruning import block as P
    model = random_model(PROGRESSIVE, seed=2)
    groups = U.MatrixGroups(num_blocks=2, mode="inner")
    norms, counts = groups.norms(model), groups.counts(model)
    kernels = M.prunable_kernels(model, include_pooler=False)
    for (name, kind), values in norms.items():   # the norms are pruning.group_norms'
        np.testing.assert_allclose(values, P.group_norms(np.asarray(kernels[name]), 2, kind,
                                                         xp=np).ravel(), rtol=1e-6)
    # in `inner` mode every encoder weight is in exactly one group
    assert sum(counts[k] * len(v) for k, v in norms.items()) == M.encoder_linear_weights(model)
    off = {k: np.arange(len(v)) % 3 == 0 for k, v in norms.items()}
    groups.zero(model, off)
    after = groups.norms(model)
    for key in norms:
        assert (after[key][off[key]] == 0).all() and (after[key][~off[key]] > 0).all()
    masks = {name: np.asarray(k) != 0 for name, k in M.prunable_kernels(model, include_pooler=False).items()}
    zeros = sum((~m).sum() for m in masks.values())
    assert zeros == sum(counts[k] * off[k].sum() for k in off)
    # notebook 10 hands the groups to a fresh process
    import pickle
    copy = pickle.loads(pickle.dumps(groups))
    assert (copy.num_blocks, copy.mode) == (2, "inner")
    for key, values in copy.norms(model).items():
        np.testing.assert_array_equal(values, after[key])
    with pytest.raises(ValueError, match="overlap"):
        U.MatrixGroups(mode="row+column")
    with pytest.raises(ValueError, match="K"):
        U.MatrixGroups(num_blocks=0)


def test_progressive_pruning_with_matrix_groups_reaches_targets_and_holds_zeros(tokenizer):
    from helpers import toy_dataset
    from utils.pruning import block as P
    from utils.training import train
    model = random_model(PROGRESSIVE, seed=4)
    groups = U.MatrixGroups(num_blocks=1, mode="inner")
    pruner = U.ProgressiveUnitPruning(model, [0.3, 0.6], total_steps=12, prune_fraction=1.0,
                                      every=1, groups=groups)
    seen = []

    class Check(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            dead = {k: ~a for k, a in pruner.alive.items()}
            norms = groups.norms(model)
            seen.append(all((norms[k][d] == 0).all() for k, d in dead.items()))
    config = train.TrainConfig(learning_rate=1e-2, epochs=1, batch_size=8, max_length=16)
    train.fine_tune(model, tokenizer, toy_dataset(n_train=96, n_val=16), config,
                    callbacks=[pruner.keras_callback(), Check()], progress=False)
    assert [r["target"] for r in pruner.reached] == [0.3, 0.6]
    for r in pruner.reached:   # within 1 point of sparsity (a group here is 16 weights)
        assert r["target"] <= r["sparsity"] < r["target"] + 0.01
    assert all(seen) and len(seen) == 12
    assert P.sparsity_summary(model)["sparsity_encoder_linear"] == pytest.approx(pruner.sparsity())


def _best_kept_importance(values, costs, budget):
    """Brute force: the largest total importance of any set of units within `budget`."""
    import itertools
    best = 0.0
    for n in range(len(values) + 1):
        for kept in itertools.combinations(range(len(values)), n):
            if sum(costs[i] for i in kept) <= budget:
                best = max(best, sum(values[i] for i in kept))
    return best


@pytest.mark.parametrize("target", [0.2, 0.45, 0.7])
def test_select_by_importance_keeps_the_most_important_alive_units_within_the_target(target):
    rng = np.random.default_rng(int(target * 100))
    keys = [(0, "heads"), (1, "heads"), (0, "neurons"), (1, "neurons")]
    sizes = {(0, "heads"): 2, (1, "heads"): 2, (0, "neurons"): 3, (1, "neurons"): 3}
    counts = {k: (16 if k[1] == "heads" else 4) for k in keys}
    importance = {k: rng.exponential(size=sizes[k]) for k in keys}
    alive = {k: np.ones(sizes[k], bool) for k in keys}
    alive[(1, "neurons")][0] = alive[(0, "heads")][1] = False        # already switched off
    total = sum(counts[k] * sizes[k] for k in keys)                  # 64 + 24 = 88
    chosen = U.select_by_importance(importance, counts, alive, target, total)
    for k in keys:
        assert not (chosen[k] & ~alive[k]).any()                    # only alive units are cut
    kept = [(k, u) for k in keys for u in np.flatnonzero(alive[k] & ~chosen[k])]
    pruned = total - sum(counts[k] for k, _ in kept)
    assert pruned >= target * total - 1e-9
    candidates = [(k, u) for k in keys for u in np.flatnonzero(alive[k])]
    best = _best_kept_importance([importance[k][u] for k, u in candidates],
                                 [counts[k] for k, _ in candidates], (1 - target) * total)
    assert sum(importance[k][u] for k, u in kept) == pytest.approx(best)


def test_select_by_importance_needs_one_size_per_kind():
    counts = {(0, "heads"): 16, (1, "heads"): 8, (0, "neurons"): 4}
    alive = {k: np.ones(2, bool) for k in counts}
    with pytest.raises(ValueError, match="same size"):
        U.select_by_importance({k: np.ones(2) for k in counts}, counts, alive, 0.5, 56)


def test_progressive_pruning_by_fisher_cuts_the_least_important_units_at_each_period(tokenizer):
    from helpers import toy_dataset
    from utils.pruning import importance as importance_lib
    from utils.training import train
    model = random_model(PROGRESSIVE, seed=7)
    data = toy_dataset(n_train=96, n_val=16)
    batches = importance_lib.labelled_batches(tokenizer, data["train"], 32, 16, 8, seed=0)
    fisher = U.fisher_importance(batches)
    calls = []

    def importance(m):
        calls.append({k: v.copy() for k, v in fisher(m).items()})
        return calls[-1]
    alive_after = []
    pruner = U.ProgressiveUnitPruning(model, [0.3, 0.6], total_steps=12, prune_fraction=1.0,
                                      every=1, importance=importance,
                                      on_target=lambda t: alive_after.append(
                                          {k: a.copy() for k, a in pruner.alive.items()}))
    config = train.TrainConfig(learning_rate=1e-2, epochs=1, batch_size=8, max_length=16)
    start = {k: a.copy() for k, a in pruner.alive.items()}
    train.fine_tune(model, tokenizer, data, config, callbacks=[pruner.keras_callback()],
                    progress=False)
    assert len(calls) == 2 and [r["target"] for r in pruner.reached] == [0.3, 0.6]
    counts, total = U.unit_weight_counts(model), M.encoder_linear_weights(model)
    # each period cut exactly what select_by_importance picks from that period's Fisher
    for period, (target, alive) in enumerate(zip([0.3, 0.6], [start, alive_after[0]])):
        expected = U.select_by_importance(calls[period], counts, alive, target, total)
        after = alive_after[period]
        for key in alive:
            assert (alive[key] & ~after[key] == expected[key]).all()
    # a switched-off unit has exactly zero Fisher information at the next period's start
    for key, alive in alive_after[0].items():
        assert (calls[1][key][~alive] == 0).all()
    for r in pruner.reached:
        assert r["target"] <= r["sparsity"] < r["target"] + max(counts.values()) / total


def test_importance_selection_rejects_matrix_groups_and_unknown_selections(tokenizer):
    from helpers import toy_dataset
    from utils.training import train
    model = random_model(PROGRESSIVE, seed=0)
    with pytest.raises(ValueError, match="UnitGroups"):
        U.ProgressiveUnitPruning(model, [0.5], total_steps=10, groups=U.MatrixGroups(),
                                 importance=lambda m: {})
    config = train.TrainConfig(epochs=1, batch_size=8, max_length=16)
    with pytest.raises(ValueError, match="selection = 'l0'"):
        U.progressive_prune(model, tokenizer, toy_dataset(n_train=16, n_val=8), [0.5], config,
                            "/nonexistent", selection="l0")


def test_one_shot_prune_by_importance_cuts_the_knapsack_choice_on_the_dense_model():
    model = random_model(PROGRESSIVE, seed=5)
    rng = np.random.default_rng(5)
    importance = {k: rng.exponential(size=v.shape) for k, v in U.unit_norms(model).items()}
    counts, total = U.unit_weight_counts(model), M.encoder_linear_weights(model)
    alive = {k: np.ones(v.shape, bool) for k, v in importance.items()}
    expected = U.select_by_importance(importance, counts, alive, 0.5, total)
    off = U.one_shot_prune(model, 0.5, importance=lambda m: importance)
    norms = U.unit_norms(model)
    for key in expected:
        assert (off[key] == expected[key]).all()
        assert (norms[key][off[key]] == 0).all() and (norms[key][~off[key]] > 0).all()
    with pytest.raises(ValueError, match="UnitGroups"):
        U.one_shot_prune(model, 0.5, groups=U.MatrixGroups(), importance=lambda m: importance)


def _selection_runs(fisher, rms):
    return {"validation_macro_f1": [
        {"target": t, "fisher_val_after_recovery": f, "rms_val_after_recovery": r}
        for t, f, r in zip([0.5, 0.7, 0.9], fisher, rms)]}


def test_selection_on_validation_takes_the_higher_mean_and_keeps_rms_on_ties():
    # Fisher loses at 50% and 70% but wins on the mean (the 90% point dominates)
    assert U.selection_on_validation(_selection_runs([0.80, 0.79, 0.78], [0.81, 0.80, 0.70])) == "fisher"
    assert U.selection_on_validation(_selection_runs([0.80, 0.79, 0.70], [0.81, 0.80, 0.70])) == "rms"
    assert U.selection_on_validation(_selection_runs([0.8, 0.8, 0.8], [0.8, 0.8, 0.8])) == "rms"


@pytest.mark.parametrize("runs, match", [
    ({}, "validation_macro_f1"), ([], "validation_macro_f1"),
    ({"validation_macro_f1": [{"target": 0.5, "fisher_val_after_recovery": 0.8}]}, "rms_val_after_recovery"),
    (_selection_runs([0.8, float("nan"), 0.8], [0.8, 0.8, 0.8]), "fisher_val_after_recovery"),
])
def test_selection_on_validation_rejects_incomplete_runs(runs, match):
    with pytest.raises(ValueError, match=match):
        U.selection_on_validation(runs)


def test_the_committed_selection_runs_choose_a_known_rule():
    from utils.common import io
    runs = io.read_json(io.REPO_ROOT / "results" / "exploratory" / "fisher_selection.json")
    assert U.selection_on_validation(runs) in U.SELECTIONS


COST_TABLE = {"latency_ms": {"base": 1.0, "attention_fixed": 0.6, "head": 0.2,
                             "ffn_fixed": 0.3, "neuron": 0.02}}


def test_progressive_pruning_to_cost_targets_cuts_the_knapsack_choice_and_reaches_each_cost(tokenizer):
    from helpers import toy_dataset
    from utils.measurement import latency
    from utils.training import train
    model = random_model(PROGRESSIVE, seed=11)
    data = toy_dataset(n_train=96, n_val=16)
    fisher = U.fisher_importance(importance_lib.labelled_batches(tokenizer, data["train"], 32, 16, 8, seed=0))
    calls, alive_after = [], []

    def importance(m):
        calls.append({k: v.copy() for k, v in fisher(m).items()})
        return calls[-1]
    pruner = U.ProgressiveUnitPruning(model, [0.5, 0.8], total_steps=12, prune_fraction=1.0,
                                      every=1, importance=importance, cost_table=COST_TABLE,
                                      on_target=lambda t: alive_after.append(
                                          {k: a.copy() for k, a in pruner.alive.items()}))
    assert pruner.targets == [0.8, 0.5]          # the cost falls period by period
    start = {k: a.copy() for k, a in pruner.alive.items()}
    config = train.TrainConfig(learning_rate=1e-2, epochs=1, batch_size=8, max_length=16)
    train.fine_tune(model, tokenizer, data, config, callbacks=[pruner.keras_callback()],
                    progress=False)
    assert [r["target"] for r in pruner.reached] == [0.8, 0.5]
    for period, (target, alive) in enumerate(zip([0.8, 0.5], [start, alive_after[0]])):
        expected = latency.select_under_cost(calls[period], alive, COST_TABLE,
                                             target * pruner.dense_cost)
        for key in alive:
            assert (alive[key] & ~alive_after[period][key] == expected[key]).all()
        assert pruner.reached[period]["cost_ratio"] <= target + 1e-9
    # the zeros are real: the model's unit norms are 0 exactly where units are off
    norms = U.unit_norms(model)
    for key, alive in pruner.alive.items():
        assert (norms[key][~alive] == 0).all()


def test_cost_targets_need_importance_and_a_reachable_target(tokenizer):
    model = random_model(PROGRESSIVE, seed=0)
    with pytest.raises(ValueError, match="pass importance="):
        U.ProgressiveUnitPruning(model, [0.5], total_steps=10, cost_table=COST_TABLE)
    with pytest.raises(ValueError, match="below the cost of a model with no sublayers"):
        U.ProgressiveUnitPruning(model, [0.01], total_steps=10, cost_table=COST_TABLE,
                                 importance=lambda m: {})
    from helpers import toy_dataset
    from utils.training import train
    with pytest.raises(ValueError, match="selection='fisher'"):
        U.progressive_prune(model, tokenizer, toy_dataset(n_train=16, n_val=8), [0.5],
                            train.TrainConfig(epochs=1, batch_size=8, max_length=16),
                            "/nonexistent", cost_table=COST_TABLE)


@pytest.mark.parametrize("targets", [[0.0], [-0.2], [1.0], [1.3], [0.5, float("nan")]])
def test_latency_targets_at_or_below_zero_or_at_or_above_dense_are_rejected(targets):
    """A latency target is a share of the dense model's predicted latency: 0 or less cannot be
    reached, 1 or more is the dense model itself."""
    model = random_model(PROGRESSIVE, seed=0)
    with pytest.raises(ValueError, match=r"shares of the dense cost\) in \(0, 1\)"):
        U.ProgressiveUnitPruning(model, targets, total_steps=10, cost_table=COST_TABLE,
                                 importance=lambda m: {})


def test_block_pruning_and_its_recovery_repeat_exactly_with_the_same_seed(tokenizer, tmp_path):
    """Issue 39's repeatable runs: notebook 03's run (Fisher unit selection, proximal steps,
    snapshots) and notebook 04's recovery, twice with one seed, give bit-identical snapshots,
    recovered weights and scores; another seed gives other weights (the seed reaches them)."""
    import random

    from helpers import toy_dataset
    from utils.pruning import sweep
    from utils.training import train
    data = toy_dataset(n_train=64, n_val=16)
    teacher = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")

    def run(seed, name):
        random.seed(seed + len(name))      # what a fresh process would hold: not the run's seed
        model = random_model(PROGRESSIVE, seed=6)
        config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=8, max_length=16, seed=seed)
        U.progressive_prune(model, tokenizer, data, [0.3, 0.6], config, tmp_path / name, teacher_logits=teacher,
                            prune_fraction=1.0, every=1, selection="fisher", fisher_examples=16)
        dirs = {t: tmp_path / name / io.sparsity_dir_name(t) for t in (0.3, 0.6)}
        frame = sweep.snapshot_sweep(dirs, tokenizer, data, config, retrain_examples=32, seed=seed,
                                     teacher=random_model(PROGRESSIVE, seed=6), progress=False,
                                     save_dir=tmp_path / name / "recovered")
        weights = [saved.load_model(d).get_weights() for d in
                   [*dirs.values(), *(tmp_path / name / "recovered" / io.sparsity_dir_name(t) for t in (0.3, 0.6))]]
        return frame, weights

    first, again, other = run(7, "a"), run(7, "b"), run(8, "c")
    for a, b in zip(first[1], again[1]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    columns = ["target_sparsity", "sparsity_encoder_linear", "macro_f1", "val_macro_f1", "accuracy"]
    assert first[0][columns].equals(again[0][columns])
    assert any(not np.array_equal(x, y) for a, b in zip(first[1], other[1]) for x, y in zip(a, b))
