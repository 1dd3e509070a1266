"""utils.units: heads and FFN neurons as groups spanning Q/K/V/O (and FFN input/output)."""
import numpy as np
import pytest
from keras import ops

import utils  # noqa: F401  (sets KERAS_BACKEND)
from utils import compact as C
from utils import model as M
from utils import units as U
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
    masks = U.unit_masks(model)
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
