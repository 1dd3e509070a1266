"""Binarized weights: every chosen weight matrix W becomes sign(W) * scale + shift.

    W_hat = sign(W) * alpha + gamma        sign(0) = +1

alpha and gamma are learned, one pair per matrix ("layer") or per output unit ("row": per
column of a Keras (in, out) kernel). The word-embedding matrix (vocab, hidden), when included,
gets one pair per hidden dimension. Both start at the least-squares fit of W by
a * sign(W) + g for each group.

Training keeps the float "latent" W and trains through the sign with the straight-through
estimator: d sign(W) / dW = 1 where |W| <= clip, 0 outside (`ste_sign`). The classifier's
own layers are untouched: `BinarizedClassifier.call` runs them inside a `keras.StatelessScope`
that substitutes W_hat for W, so gradients reach W, alpha and gamma. The loss is cross-entropy,
or with distillation (1 - a) CE + a T^2 KL(teacher || student) towards the dense model's logits.

Storage (utils.saved, kind "binarized", written with `pack`): one bit per binarized weight (numpy.packbits of W >= 0) plus alpha
and gamma in float32, every other weight (LayerNorm, biases, position embeddings, classifier
head) in float32, all in one uncompressed .npz whose size is reported exactly.
Loading (`utils.saved.load_model`, through `unpack_into`) rebuilds a plain float classifier
holding W_hat, which predicts what the BinarizedClassifier predicted before saving.
"""
from __future__ import annotations

import logging

import keras
import numpy as np
from keras import ops

from utils.data import batching
from utils.encoder import model as model_lib
from utils.training import checkpoint, losses, train

log = logging.getLogger(__name__)

GRANULARITIES = ("layer", "row")
WORD_EMBEDDINGS = "embeddings/word"


def check_options(granularity, clip):
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity={granularity!r}: choose one of {GRANULARITIES}")
    if not clip > 0:
        raise ValueError(f"clip={clip!r}: the straight-through range must be positive")


# ------------------------------------------------------------------------------ the maths

def ste_sign(w, clip=1.0):
    """sign(w) (with sign(0) = +1) forward; gradient 1 for |w| <= clip, 0 outside."""
    clipped = ops.clip(w, -clip, clip)
    sign = ops.where(w >= 0, ops.ones_like(w), -ops.ones_like(w))
    return clipped + ops.stop_gradient(sign - clipped)


def fit_scale_shift(w, per_row):
    """Least-squares alpha, gamma of w ~ alpha * sign(w) + gamma, over the whole matrix or per
    column (axis 0 reduced). A group whose weights all share one sign gets gamma = 0 and
    alpha = mean |w| (the regression is then degenerate)."""
    w = np.asarray(w, dtype=np.float64)
    b = np.where(w >= 0, 1.0, -1.0)
    axis = 0 if per_row else None
    b_mean, w_mean = b.mean(axis=axis), w.mean(axis=axis)
    b_var = (b * b).mean(axis=axis) - b_mean ** 2
    covariance = (w * b).mean(axis=axis) - w_mean * b_mean
    degenerate = b_var < 1e-12
    alpha = np.where(degenerate, np.abs(w).mean(axis=axis), covariance / np.where(degenerate, 1, b_var))
    gamma = np.where(degenerate, 0.0, w_mean - alpha * b_mean)
    return alpha.astype(np.float32), gamma.astype(np.float32)


def binarized_numpy(w, alpha, gamma):
    """The numpy reference of the forward pass: sign(w) * alpha + gamma in float32."""
    w = np.asarray(w, dtype=np.float32)
    return np.where(w >= 0, np.float32(1), np.float32(-1)) * alpha + gamma


def binarization_targets(model, embeddings=False):
    """{name: variable} of what gets binarized: every encoder weight matrix and the pooler
    (utils.encoder.model.prunable_kernels), plus the word embeddings if `embeddings`."""
    targets = dict(model_lib.prunable_kernels(model))
    if embeddings:
        targets[WORD_EMBEDDINGS] = model.get_layer("encoder").embeddings.word_embeddings.embeddings
    return targets


# ------------------------------------------------------------------------------ the model

class BinarizedClassifier(keras.Model):
    """`classifier` computed with binarized weights; its own variables hold the latent W."""

    def __init__(self, classifier, embeddings=False, granularity="row", clip=1.0,
                 distill_alpha=0.0, temperature=2.0, **kwargs):
        super().__init__(**kwargs)
        check_options(granularity, clip)
        if not 0 <= distill_alpha <= 1:
            raise ValueError(f"distill_alpha={distill_alpha!r}: must lie in [0, 1]")
        self.classifier = classifier
        self.encoder_config = classifier.encoder_config
        self.embeddings, self.granularity, self.clip = embeddings, granularity, float(clip)
        self.distill_alpha, self.temperature = float(distill_alpha), float(temperature)
        self.targets = binarization_targets(classifier, embeddings)
        self.scales, self.shifts = [], []
        for i, (name, variable) in enumerate(self.targets.items()):
            per_row = granularity == "row" or name == WORD_EMBEDDINGS
            alpha, gamma = fit_scale_shift(variable, per_row)
            self.scales.append(keras.Variable(alpha, name=f"binary_scale_{i}"))
            self.shifts.append(keras.Variable(gamma, name=f"binary_shift_{i}"))

    def binarized_weights(self):
        """[(latent variable, W_hat)] -- differentiable in the latent W, alpha and gamma."""
        return [(w, ste_sign(w, self.clip) * a + g)
                for w, a, g in zip(self.targets.values(), self.scales, self.shifts)]

    def call(self, inputs, training=False):
        with keras.StatelessScope(state_mapping=self.binarized_weights()) as scope:
            logits = self.classifier(inputs, training=training)
        # the scope collects every assignment, the dropout seed's included: keep it advancing
        for variable in self.classifier.non_trainable_variables:
            value = scope.get_current_value(variable)
            if value is not None:
                variable.assign(value)
        return logits

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return losses.per_replica(losses.task_loss(y, y_pred, self.distill_alpha, self.temperature))

    def to_float(self):
        """A plain classifier (utils.encoder.model) whose weights are W_hat: serves and saves as usual."""
        float_model = model_lib.build_classifier(self.encoder_config)
        float_model.set_weights(self.classifier.get_weights())
        by_path = {v.path: v for v in float_model.weights}
        for (w, _), a, g in zip(self.binarized_weights(), self.scales, self.shifts):
            by_path[w.path].assign(binarized_numpy(w, np.asarray(a), np.asarray(g)))
        return float_model


# ------------------------------------------------------------------------------ training

class _EpochCheckpoint(keras.callbacks.Callback):
    """Latent weights, alpha/gamma and the optimizer's slots after every epoch, atomically;
    NaN losses stop training with a clear error instead of saving them."""

    def __init__(self, directory, source):
        super().__init__()
        self.directory, self.source = directory, source

    def on_train_batch_end(self, batch, logs=None):
        if logs and not np.isfinite(logs.get("loss", 0.0)):
            self.model.stop_training = True
            raise FloatingPointError(f"binarized training: loss {logs['loss']} at step {batch}; "
                                     "lower the learning rate or the clip range")

    def on_epoch_end(self, epoch, logs=None):
        if self.directory is not None:
            checkpoint.save(self.directory, self.model,
                            {"epoch": epoch + 1, "loss": float(logs["loss"]),
                             "source": self.source}, self.model.optimizer.variables)


def train_binarized(binarized, tokenizer, texts, labels, config, teacher_logits=None,
                    checkpoint_dir=None, progress=True):
    """Fit `binarized` for config.epochs on (texts, labels) with AdamW + warm-up/decay;
    resumes from `checkpoint_dir` if an earlier run saved epochs there. Returns the history."""
    if binarized.distill_alpha > 0 and teacher_logits is None:
        raise ValueError("distill_alpha > 0 needs teacher_logits (the dense model's logits "
                         "on these texts)")
    keras.utils.set_random_seed(config.seed)
    batches, _ = batching.make_batches(
        tokenizer, texts, labels, max_length=config.max_length, batch_size=config.batch_size,
        shuffle=True, seed=config.seed,
        teacher_logits=teacher_logits if binarized.distill_alpha > 0 else None)
    binarized(batches[0][0])   # build before the optimizer builds its slots
    train.compile_for_training(binarized, config, len(batches), no_decay=["binary_"])
    start_epoch, source = 0, checkpoint.weights_fingerprint(binarized)
    state = checkpoint.read_state(checkpoint_dir) if checkpoint_dir else None
    if state is not None and checkpoint.resumes_from(state, source, checkpoint_dir):
        start_epoch = checkpoint.restore(checkpoint_dir, binarized, binarized.optimizer.variables)["epoch"]
        log.info("resuming binarized training from %s after epoch %d", checkpoint_dir,
                 start_epoch)
    if start_epoch >= config.epochs:
        return {"resumed_after_epoch": start_epoch, "loss": []}
    history = binarized.fit(train.fit_input(batches), epochs=config.epochs,
                            initial_epoch=start_epoch, steps_per_epoch=len(batches),
                            verbose=0, shuffle=False,   # the batches come shuffled
                            callbacks=[_EpochCheckpoint(checkpoint_dir, source),
                                       *([train.EpochLogger()] if progress else [])])
    return {"resumed_after_epoch": start_epoch, "loss": history.history.get("loss", [])}


# ------------------------------------------------------------------------------ storage

def _key(path):
    return path.replace("/", "__")


def pack(binarized):
    """({name: array} for utils.saved's binary.npz, metadata): packed signs (numpy.packbits of
    W >= 0), alpha and gamma of every binarized weight, float32 for every other weight."""
    arrays, bits = {}, 0
    targets = {w.path: (a, g) for (w, _), a, g in
               zip(binarized.binarized_weights(), binarized.scales, binarized.shifts)}
    for variable in binarized.classifier.weights:
        value = np.asarray(variable)
        if variable.path in targets:
            alpha, gamma = targets[variable.path]
            arrays[_key(variable.path) + "::bits"] = np.packbits(value.ravel() >= 0)
            arrays[_key(variable.path) + "::scale"] = np.asarray(alpha, dtype=np.float32)
            arrays[_key(variable.path) + "::shift"] = np.asarray(gamma, dtype=np.float32)
            bits += value.size
        else:
            arrays[_key(variable.path)] = value.astype(np.float32)
    return arrays, {"granularity": binarized.granularity, "embeddings": binarized.embeddings,
                    "clip": binarized.clip, "binarized_weights": int(bits)}


def unpack_into(model, arrays):
    """Assign W_hat (and every float weight) from `pack`'s arrays to the plain classifier
    `model`, which then predicts what the BinarizedClassifier predicted."""
    for variable in model.weights:
        key = _key(variable.path)
        if key + "::bits" in arrays:
            size = int(np.prod(variable.shape))
            signs = np.unpackbits(arrays[key + "::bits"], count=size).reshape(variable.shape)
            value = binarized_numpy(np.where(signs == 1, 1.0, -1.0), arrays[key + "::scale"],
                                    arrays[key + "::shift"])
        elif key in arrays:
            value = arrays[key]
        else:
            raise ValueError(f"the packed weights have nothing for {variable.path}")
        variable.assign(value)
    return model
