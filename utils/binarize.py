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

from pathlib import Path

import keras
import numpy as np
from keras import ops

from . import batching, model as model_lib, train
from .io import atomic_path, read_json, write_json

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
    (utils.model.prunable_kernels), plus the word embeddings if `embeddings`."""
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
        from .pruning import per_replica, task_loss
        return per_replica(task_loss(y, y_pred, self.distill_alpha, self.temperature))

    def to_float(self):
        """A plain classifier (utils.model) whose weights are W_hat: serves and saves as usual."""
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
        if self.directory is None:
            return
        with atomic_path(self.directory) as tmp:
            tmp.mkdir()
            # a compiled model's .weights.h5 holds the optimizer slots too: a full checkpoint
            self.model.save_weights(str(tmp / "model.weights.h5"))
            write_json(tmp / "state.json", {"epoch": epoch + 1, "loss": float(logs["loss"]),
                                            "source": self.source})


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
    start_epoch, source = 0, train.weights_fingerprint(binarized)
    state_file = Path(checkpoint_dir, "state.json") if checkpoint_dir else None
    if state_file is not None and state_file.exists():
        state = read_json(state_file)
        if train.resumes_from(state, source, checkpoint_dir):
            binarized.load_weights(str(Path(checkpoint_dir) / "model.weights.h5"))
            start_epoch = state["epoch"]
            print(f"resuming binarized training from {checkpoint_dir} after epoch {start_epoch}")
    if start_epoch >= config.epochs:
        return {"resumed_after_epoch": start_epoch, "loss": []}
    history = binarized.fit(train._fit_input(batches), epochs=config.epochs,
                            initial_epoch=start_epoch, steps_per_epoch=len(batches),
                            verbose=1 if progress else 0,
                            callbacks=[_EpochCheckpoint(checkpoint_dir, source)])
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


# ------------------------------------------------------------------------------ comparison

def variant_row(name, loaded, test_split, dense_parameters, **extra):
    """One row of the bits-per-weight comparison: test metrics of the utils.saved.SavedModel
    `loaded` and the exact bytes of its model files (as utils.bench counts them)."""
    from .evaluation import classification_metrics
    metrics = classification_metrics(test_split["label"],
                                     loaded.predict_logits(test_split["text"]).argmax(-1))
    disk = loaded.disk_bytes
    return {"variant": name, "macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"],
            "macro_recall": metrics["macro_recall"], "disk_bytes": disk,
            "disk_mb": disk / 1e6, "bits_per_dense_weight": 8 * disk / dense_parameters, **extra}


def plot_size_vs_f1(rows, dense_macro_f1, path=None):
    """Macro-F1 against bits on disk per weight of the dense model (log scale): retrained or
    saved variants labelled, binarized-but-not-retrained ones as grey crosses."""
    import matplotlib.pyplot as plt
    from .plots import finish_figure
    fig, ax = plt.subplots(figsize=(8, 4.4))
    kept = [r for r in rows if r.get("trained", True)]
    untrained = [r for r in rows if not r.get("trained", True)]
    ax.scatter([r["bits_per_dense_weight"] for r in kept], [r["macro_f1"] for r in kept],
               s=50, color="#3465a4", zorder=3, label="saved / after STE training")
    ax.scatter([r["bits_per_dense_weight"] for r in untrained], [r["macro_f1"] for r in untrained],
               marker="x", s=50, color="grey", label="binarized, not retrained")
    for i, row in enumerate(sorted(kept, key=lambda r: r["bits_per_dense_weight"])):
        ax.annotate(row["variant"], (row["bits_per_dense_weight"], row["macro_f1"]),
                    textcoords="offset points", xytext=(0, 9 if i % 2 == 0 else -14),
                    ha="center", fontsize=8)
    ax.axhline(dense_macro_f1, color="grey", ls="--", lw=1, label="dense float32")
    ax.set_xscale("log", base=2)
    ax.margins(x=0.12, y=0.08)
    ax.set(xlabel="bits on disk per weight of the dense model (log2 scale)",
           ylabel="test macro-F1", title="Accuracy against storage")
    ax.legend(loc="center right", fontsize=8)
    return finish_figure(fig, path)


def binarize_variant(name, model, tokenizer, train_split, teacher_logits, config, directory,
                     test_split, dense_parameters, embeddings, granularity="row", clip=1.0,
                     distill_alpha=0.5, temperature=2.0, progress=True):
    """Binarize `model` (its weights are the latent start), score it as is, train it with the
    STE (and distillation), save it packed and score what loads back. Two comparison rows."""
    import time
    binarized = BinarizedClassifier(model, embeddings=embeddings, granularity=granularity,
                                    clip=clip, distill_alpha=distill_alpha, temperature=temperature)
    from . import saved, vocab
    options = {"embeddings": embeddings, "granularity": granularity}
    base = tokenizer.base if isinstance(tokenizer, vocab.RemappedTokenizer) else tokenizer
    rows = []
    saved.save(binarized, Path(directory) / "untrained", tokenizer)
    rows.append(variant_row(name, saved.load(Path(directory) / "untrained", base), test_split,
                            dense_parameters, trained=False, **options))
    start = time.perf_counter()
    train_binarized(binarized, tokenizer, train_split["text"], train_split["label"], config,
                    teacher_logits=teacher_logits, checkpoint_dir=Path(directory) / "last",
                    progress=progress)
    seconds = time.perf_counter() - start
    saved.save(binarized, Path(directory) / "trained", tokenizer)
    rows.append(variant_row(name, saved.load(Path(directory) / "trained", base), test_split,
                            dense_parameters, trained=True, train_seconds=seconds, **options))
    return rows
