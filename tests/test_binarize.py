"""Binarized weights (utils.compression.binarize) against numpy references."""
import numpy as np
import pytest
import tensorflow as tf

from utils.data import batching
from utils.compression import binarize
from utils.encoder import model as model_lib
from utils import saved
from utils.training import train

TEXTS = ["good flight", "bad flight delayed again", "on my way to LAX", "love it"] * 6
LABELS = [2, 0, 1, 2] * 6


@pytest.fixture()
def tiny(tokenizer):
    return model_lib.build_classifier(model_lib.tiny_config(len(tokenizer)))


def batch_of(tokenizer, texts):
    ids, _ = batching.encode_texts(tokenizer, texts, 64)
    return batching.pad_batch(ids, tokenizer.pad_token_id)


def test_ste_sign_forward_and_gradient():
    w = tf.Variable([-2.0, -0.5, 0.0, 0.3, 1.5])
    with tf.GradientTape() as tape:
        out = binarize.ste_sign(w, clip=1.0)
        loss = tf.reduce_sum(out * tf.constant([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_array_equal(out.numpy(), [-1, -1, 1, 1, 1])
    # identity inside |w| <= clip, zero outside: upstream gradient passes or is blocked
    np.testing.assert_array_equal(tape.gradient(loss, w).numpy(), [0, 2, 3, 4, 0])


def test_scale_and_shift_are_the_least_squares_fit():
    rng = np.random.default_rng(0)
    w = rng.normal(0.02, 0.05, size=(16, 5)).astype(np.float32)
    w[:, 4] = np.abs(w[:, 4]) + 0.01                  # one column of a single sign
    alpha, gamma = binarize.fit_scale_shift(w, per_row=True)
    for j in range(4):
        b = np.where(w[:, j] >= 0, 1.0, -1.0)
        (a_ref, g_ref), *_ = np.linalg.lstsq(np.stack([b, np.ones_like(b)], 1), w[:, j], rcond=None)
        assert alpha[j] == pytest.approx(a_ref, rel=1e-5) and gamma[j] == pytest.approx(g_ref, abs=1e-6)
    assert gamma[4] == 0 and alpha[4] == pytest.approx(np.abs(w[:, 4]).mean(), rel=1e-6)
    a_all, g_all = binarize.fit_scale_shift(w, per_row=False)
    assert a_all.shape == () and g_all.shape == ()


@pytest.mark.parametrize("granularity, embeddings", [("row", False), ("layer", True)])
def test_forward_matches_a_numpy_binarized_copy(tiny, tokenizer, granularity, embeddings):
    binarized = binarize.BinarizedClassifier(tiny, embeddings=embeddings, granularity=granularity)
    reference = model_lib.build_classifier(tiny.encoder_config)
    reference.set_weights(tiny.get_weights())
    targets = binarize.binarization_targets(reference, embeddings)
    assert (binarize.WORD_EMBEDDINGS in targets) == embeddings
    for name, variable in targets.items():
        w = np.asarray(variable, dtype=np.float64)
        per_row = granularity == "row" or name == binarize.WORD_EMBEDDINGS
        b = np.where(w >= 0, 1.0, -1.0)
        # independent fit: per group, closed-form simple regression of w on b
        axis = 0 if per_row else None
        cov = ((w - w.mean(axis)) * (b - b.mean(axis))).mean(axis)
        alpha = cov / b.var(axis)
        gamma = w.mean(axis) - alpha * b.mean(axis)
        variable.assign((b * alpha + gamma).astype(np.float32))
    batch = batch_of(tokenizer, TEXTS[:4])
    np.testing.assert_allclose(np.asarray(binarized.predict_on_batch(batch)),
                               np.asarray(reference.predict_on_batch(batch)), atol=2e-5)
    # the latent weights themselves are untouched by the forward pass
    np.testing.assert_array_equal(np.asarray(binarized.targets["layer_0/attention/query"]),
                                  np.asarray(model_lib.prunable_kernels(tiny)["layer_0/attention/query"]))


def test_save_load_round_trip_and_exact_size(tiny, tokenizer, tmp_path):
    binarized = binarize.BinarizedClassifier(tiny, embeddings=True)
    batch = batch_of(tokenizer, TEXTS[:4])
    before = np.asarray(binarized.predict_on_batch(batch))
    spec = saved.save(binarized, tmp_path / "b")
    meta = {**spec["binarization"], "parameters": spec["parameters"]}
    loaded = saved.load_model(tmp_path / "b")
    np.testing.assert_array_equal(np.asarray(loaded.predict_on_batch(batch)), before)
    np.testing.assert_array_equal(np.asarray(binarized.to_float().predict_on_batch(batch)), before)
    assert meta["npz_bytes"] == (tmp_path / "b" / saved.PACKED_FILE).stat().st_size
    assert saved.load(tmp_path / "b", tokenizer).disk_bytes == sum(
        f.stat().st_size for f in (tmp_path / "b").iterdir())
    targets = binarize.binarization_targets(tiny, embeddings=True)
    assert meta["binarized_weights"] == sum(int(np.prod(v.shape)) for v in targets.values())
    float_bytes = 4 * (meta["parameters"] - meta["binarized_weights"])
    # one bit per binarized weight, plus float32 for the rest and for alpha/gamma, plus headers
    assert float_bytes + meta["binarized_weights"] / 8 < meta["npz_bytes"] < \
        float_bytes + meta["binarized_weights"] / 8 + 200_000
    assert meta["bits_per_parameter"] < 32 / 4


def test_packed_signs_round_trip_for_odd_sizes(tmp_path):
    rng = np.random.default_rng(1)
    for n in (1, 7, 9, 1001):
        w = rng.normal(size=n).astype(np.float32)
        bits = np.packbits(w >= 0)
        assert bits.nbytes == -(-n // 8)
        np.testing.assert_array_equal(np.unpackbits(bits, count=n).astype(bool), w >= 0)


def test_training_moves_latent_weights_and_scales_and_resumes(tiny, tokenizer, tmp_path):
    start = tiny.get_weights()
    binarized = binarize.BinarizedClassifier(tiny, distill_alpha=0.5)
    teacher = np.random.default_rng(0).normal(size=(len(TEXTS), 3)).astype(np.float32)
    before = [np.asarray(v).copy() for v in binarized.trainable_variables]
    config = train.TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2)
    history = binarize.train_binarized(binarized, tokenizer, TEXTS, LABELS, config,
                                       teacher_logits=teacher, checkpoint_dir=tmp_path / "ckpt",
                                       progress=False)
    assert len(history["loss"]) == 2 and all(np.isfinite(history["loss"]))
    moved = [not np.allclose(b, np.asarray(v)) for b, v in zip(before, binarized.trainable_variables)]
    assert all(moved)
    trained = [np.asarray(v).copy() for v in binarized.trainable_variables]

    def train_again(weights):   # a fresh process: the same source model, binarized anew
        tiny.set_weights(weights)
        again = binarize.BinarizedClassifier(tiny, distill_alpha=0.5)
        history = binarize.train_binarized(again, tokenizer, TEXTS, LABELS, config,
                                           teacher_logits=teacher,
                                           checkpoint_dir=tmp_path / "ckpt", progress=False)
        return history, again
    history, again = train_again(start)
    assert history == {"resumed_after_epoch": 2, "loss": []}
    for t, v in zip(trained, again.trainable_variables):
        np.testing.assert_array_equal(t, np.asarray(v))
    # A checkpoint trained from another model (another snapshot) is ignored, not loaded.
    other = [w + 0.01 if w.ndim == 2 else w for w in start]
    history, _ = train_again(other)
    assert history["resumed_after_epoch"] == 0 and len(history["loss"]) == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"granularity": "column"}, "granularity"), ({"clip": 0}, "clip"), ({"clip": -1.0}, "clip"),
    ({"distill_alpha": 1.5}, "distill_alpha")])
def test_bad_options_are_named(tiny, kwargs, message):
    with pytest.raises(ValueError, match=message):
        binarize.BinarizedClassifier(tiny, **kwargs)


def test_distillation_needs_teacher_logits_and_missing_files_are_named(tiny, tokenizer, tmp_path):
    with pytest.raises(ValueError, match="teacher_logits"):
        binarize.train_binarized(binarize.BinarizedClassifier(tiny, distill_alpha=0.5), tokenizer,
                                 TEXTS, LABELS, train.TrainConfig(epochs=1))
    with pytest.raises(saved.SavedModelError, match="not a saved model"):
        saved.load_model(tmp_path)
