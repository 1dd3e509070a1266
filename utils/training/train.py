"""Fine-tuning with AdamW, linear warm-up and decay, early stopping on validation macro-F1,
resumable atomic checkpoints and a guard against NaN losses."""
import contextlib
import dataclasses
import logging
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from utils.data import batching
from utils.training import backend, checkpoint, evaluation

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 128
    warmup_fraction: float = 0.1
    max_length: int = 64
    patience: int = 1          # epochs without a better validation macro-F1 before stopping
    max_grad_norm: float = 1.0
    seed: int = 42
    # XLA: True, False, or "auto" (the default; `resolve_jit_compile`): Keras' choice on a GPU,
    # and on a CPU XLA for fits long enough to repay its compilation.
    jit_compile: bool | str = dataclasses.field(default_factory=lambda: _jit_from_environment())

    def __post_init__(self):
        positive = {"learning_rate": self.learning_rate, "epochs": self.epochs,
                    "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size,
                    "max_grad_norm": self.max_grad_norm}
        for name, value in positive.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"TrainConfig.{name}={value!r}: must be a positive number")
        for name in ("epochs", "batch_size", "eval_batch_size", "max_length"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: must be an int")
        if self.max_length < 3:
            raise ValueError(f"TrainConfig.max_length={self.max_length}: must be >= 3")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"TrainConfig.warmup_fraction={self.warmup_fraction!r}: "
                             "must be in [0, 1)")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay={self.weight_decay!r}: must be >= 0")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ValueError(f"TrainConfig.patience={self.patience!r}: must be an int >= 0")
        if self.jit_compile not in (True, False, "auto"):
            raise ValueError(f"TrainConfig.jit_compile={self.jit_compile!r}: "
                             "must be True, False or 'auto'")


PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "auto")


def auto_precision():
    """mixed_bfloat16 on GPUs of compute capability 8.0 and newer (A100, L4, H100),
    mixed_float16 on older ones (T4, V100), float32 without a GPU (on every backend)."""
    if not backend.gpu_count():
        return "float32"
    capability = backend.gpu_compute_capability()
    return "mixed_bfloat16" if capability and capability >= (8, 0) else "mixed_float16"


def set_precision(precision):
    """Keras' dtype policy for every model built or loaded after this call; returns it.

    "float32" (CPU); "mixed_float16" (T4/V100-class GPUs: float16 compute, float32 weights,
    and `compile_for_training` then scales the loss); "mixed_bfloat16" (A100 and newer);
    "auto" picks one of them for the visible GPU (`auto_precision`). The encoder keeps
    softmax, LayerNorm and the logits in float32 under every policy. The pipeline's GPU
    profile sets it through the environment variable UTILS_PRECISION, read when this module
    is imported.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = auto_precision()
    keras.config.set_dtype_policy(precision)
    return precision


def _jit_from_environment():
    """TrainConfig.jit_compile's default: UTILS_JIT_COMPILE (true | false | auto), else auto."""
    value = os.environ.get("UTILS_JIT_COMPILE", "auto").strip().lower()
    choices = {"true": True, "1": True, "false": False, "0": False, "auto": "auto"}
    if value not in choices:
        raise ValueError(f"UTILS_JIT_COMPILE={value!r}: use true, false or auto")
    return choices[value]


# On this project's 2-core CPU (scripts/measure_xla_cpu.py -> results/exploratory/xla_cpu.json,
# one process): an XLA training step took 0.41 s against 0.85 s without, but compiling the padded
# batch shapes cost about a minute per fit, so a 50-step fit took 78 s against 32 s: XLA repays
# its compilation after roughly 250 steps. Fits of at least twice that many steps use it.
XLA_MIN_STEPS_CPU = 500
# XLA keeps one compiled program per padded batch shape, for the life of the process
# (scripts/measure_xla_shapes.py -> results/exploratory/xla_shapes.json: a 150-step fit peaked
# at 3,854 MB padded to multiples of 8, 7 shapes, and 2,932 MB padded to multiples of 16, 4
# shapes, at 12% more padded tokens and less compilation time). XLA-compiled models get
# batches padded to this multiple.
XLA_PAD_MULTIPLE = 16


def pad_for(batches, model):
    """`batches` (a batching.TweetBatches) padded for `model`: to XLA_PAD_MULTIPLE when it is
    compiled with XLA, else the default. Padding is masked, so predictions do not depend on it.
    Returns `batches`."""
    xla = getattr(model, "jit_compile", None) is True
    batches.pad_multiple = XLA_PAD_MULTIPLE if xla else batching.PAD_MULTIPLE
    return batches


def resolve_jit_compile(jit_compile, total_steps):
    """What model.compile gets for TrainConfig.jit_compile: True or False as given; "auto" is
    Keras' own choice where a GPU is visible, and on a CPU XLA (True) for a fit of at least
    XLA_MIN_STEPS_CPU optimizer steps, else False."""
    if jit_compile != "auto":
        return jit_compile
    # JAX always compiles its step, PyTorch's "auto" is eager: Keras' choice
    if not backend.is_tensorflow() or backend.gpu_count(logical=True):
        return "auto"
    return total_steps >= XLA_MIN_STEPS_CPU


@keras.saving.register_keras_serializable(package="utils")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate rising linearly from 0 to `peak` over `warmup_steps`, then linearly to 0."""

    def __init__(self, peak, warmup_steps, total_steps):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = step / max(self.warmup_steps, 1)
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        return self.peak * keras.ops.maximum(0.0, keras.ops.minimum(warmup, decay))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


@keras.saving.register_keras_serializable(package="utils")
class AdamW(keras.optimizers.AdamW):
    """Keras' AdamW, with global-norm clipping of the whole batch's gradient under a
    distribution strategy.

    Keras clips each replica's gradient (of its share of the batch) before the replicas'
    gradients are summed, so with N replicas the clipped step is not one device's. Here the
    replicas' gradients are summed first, clipped by their global norm, and handed on divided
    by N (Keras then sums the N equal shares). On one device nothing changes.
    """

    def _clip_gradients(self, grads):
        clipped = None if not self.global_clipnorm else \
            backend.clip_across_replicas(grads, super()._clip_gradients)
        return super()._clip_gradients(grads) if clipped is None else clipped


def distribution_scope(strategy=None):
    """Build the model inside this scope: `strategy` (any tf.distribute strategy, e.g.
    MultiWorkerMirroredStrategy on several hosts), else MirroredStrategy over all GPUs when
    more than one is visible, else nothing. `fine_tune` then creates the optimizer and
    compiles inside the same strategy (the model remembers it)."""
    if strategy is not None:
        return strategy.scope()
    return backend.multi_gpu_scope()


def distribution_scope_of(model):
    """The scope of the strategy `model` was built under (a no-op scope when none)."""
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def inner_optimizer(optimizer):
    """The optimizer that holds the Adam moments (inside a LossScaleOptimizer, if wrapped)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def optimizer_steps(optimizer):
    """Steps `optimizer` has applied, as an int (also for a MirroredVariable counter; a step a
    LossScaleOptimizer skipped is not counted)."""
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


class _KerasBatches(keras.utils.PyDataset):
    """Adapter so model.fit re-buckets the training batches every epoch."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]

    def on_epoch_end(self):
        self.batches.next_epoch()


def fit_input(batches):
    """What model.fit iterates over: the batches of every epoch from the current one on.

    On TensorFlow, the generator below in a typed tf.data pipeline (`backend.typed_input`:
    one traced step for every padded length); on JAX and PyTorch, the batches as a
    keras.utils.PyDataset (no TensorFlow needed), re-bucketed at every epoch's end. Each pass
    over the generator starts again at the current epoch's first batch: under a distribution
    strategy Keras 3's fit first draws one batch to build the model
    (TensorFlowTrainer._maybe_symbolic_build), and training must still start at batch 1 and
    see what it would see on one device.
    """
    first_epoch = batches.epoch

    def generate():
        epoch = first_epoch
        while True:   # fit's steps_per_epoch ends the epochs
            for indices in batches.epoch_batches(epoch):
                yield batches.batch(indices)
            epoch += 1
    teacher = batches.teacher_logits
    typed = backend.typed_input(generate, None if teacher is None else teacher.shape[1])
    return _KerasBatches(batches) if typed is None else typed


def compile_for_training(model, config, steps_per_epoch, make_optimizer=None, no_decay=()):
    """An AdamW with warm-up/decay (or `make_optimizer(**its options)`, a caller's subclass:
    block pruning's masked one), its slots built, inside the distribution strategy `model` was
    built under. Under a mixed_float16 policy Keras wraps it in a LossScaleOptimizer (a step
    with non-finite gradients is skipped and the scale halved). Returns model.optimizer (the
    wrapper, when there is one).
    no_decay: more variable-name parts kept out of weight decay (besides bias / LayerNorm)."""
    with distribution_scope_of(model):
        return _compile_for_training(model, config, steps_per_epoch, make_optimizer or AdamW,
                                     no_decay)


def _compile_for_training(model, config, steps_per_epoch, make_optimizer, no_decay):
    total_steps = steps_per_epoch * config.epochs
    schedule = WarmupLinearDecay(config.learning_rate,
                                 round(config.warmup_fraction * total_steps), total_steps)
    optimizer = make_optimizer(learning_rate=schedule, weight_decay=config.weight_decay,
                               global_clipnorm=config.max_grad_norm)
    # Decaying LayerNorm scales and biases towards zero only hurts (BERT's recipe).
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", *no_decay])
    # A model that defines compute_loss (the pruning wrapper, the binarized model) brings its
    # own loss.
    loss = None if type(model).compute_loss is not keras.Model.compute_loss else \
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=optimizer, loss=loss,
                  jit_compile=resolve_jit_compile(config.jit_compile, total_steps))
    model.optimizer.build(model.trainable_variables)
    return model.optimizer


def predict_logits(model, batches):
    """Logits for every example of `batches`, in the original example order."""
    pad_for(batches, model)
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        # predict_on_batch under several replicas gives every replica the whole batch and
        # concatenates their outputs; one plain call on the batch is what is wanted here
        def predict(x):
            return keras.ops.convert_to_numpy(model(x, training=False))
    else:
        predict = model.predict_on_batch
    parts = [np.asarray(predict(b[0] if isinstance(b, tuple) else b)) for b in batches]
    logits = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
    out = np.empty_like(logits)
    out[batches.order()] = logits
    return out


def evaluate(model, tokenizer, split, max_length=64, batch_size=128, return_predictions=False):
    """Metrics of `model` on a dataset split (columns text, label), plus inference speed
    (and the predicted class of every example, in split order, under "predictions")."""
    batches, truncated = batching.make_batches(tokenizer, split["text"], split["label"],
                                               max_length=max_length, batch_size=batch_size)
    pad_for(batches, model)
    if len(batches):
        model.predict_on_batch(batches[0][0])  # trace/compile outside the timing
    start = time.perf_counter()
    logits = predict_logits(model, batches)
    seconds = time.perf_counter() - start
    metrics = evaluation.classification_metrics(split["label"], logits.argmax(-1))
    metrics.update({"examples": len(batches.encoded), "truncated": truncated,
                    "inference_seconds": seconds,
                    "inference_examples_per_s": len(batches.encoded) / seconds})
    if return_predictions:
        metrics["predictions"] = logits.argmax(-1)
    return metrics


# ---------------------------------------------------------------- the fit loop

class _EpochMonitor(keras.callbacks.Callback):
    """Progress, NaN guard, validation macro-F1, checkpoints and early stopping."""

    def __init__(self, classifier, fit_state, val_batches, val_labels, checkpoint_dir,
                 progress):
        super().__init__()
        self.classifier = classifier
        self.state = fit_state
        self.val_batches = val_batches
        self.val_labels = np.asarray(val_labels)
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress
        self.bad_loss = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])
        steps = self.params["steps"]
        # a line at every quarter of the epoch: progress in the terminal and log of `make run`
        if self.progress and steps >= 8 and (batch + 1) % -(-steps // 4) == 0 \
                and batch + 1 < steps:
            minutes = (time.perf_counter() - self.epoch_start) / 60
            log.info("epoch %d: %d/%d batches, loss %.4f, %.1f min", self.state["epoch"] + 1,
                     batch + 1, steps, loss, minutes)
        if not math.isfinite(loss):
            self.bad_loss = (self.state["epoch"] + 1, batch, loss)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.bad_loss:
            return
        train_seconds = time.perf_counter() - self.epoch_start
        logits = predict_logits(self.classifier, self.val_batches)
        val = evaluation.classification_metrics(self.val_labels, logits.argmax(-1))
        record = {"epoch": epoch + 1, "train_loss": float(logs["loss"]),
                  "train_seconds": train_seconds,
                  "train_examples_per_s": self.state["train_examples"] / train_seconds,
                  "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"],
                  "val_macro_recall": val["macro_recall"]}
        if logs is not None:   # seen by the CSVLogger that follows this callback
            logs.update({k: v for k, v in record.items() if k != "epoch"})
        state = self.state
        state["history"].append(record)
        state["epoch"] = epoch + 1
        improved = val["macro_f1"] > state["best_val_macro_f1"]
        if improved:
            state["best_val_macro_f1"] = val["macro_f1"]
            state["best_epoch"] = epoch + 1
            state["epochs_without_improvement"] = 0
            self.best_weights = [np.asarray(w) for w in self.classifier.get_weights()]
        else:
            state["epochs_without_improvement"] += 1
        if state["epochs_without_improvement"] > state["patience"]:
            state["stopped_early"] = True
            self.model.stop_training = True
        if self.progress:
            log.info("epoch %d: loss %.4f  val macro-F1 %.4f  acc %.4f  (%.0f s, %.0f ex/s)%s",
                     epoch + 1, record["train_loss"], val["macro_f1"], val["accuracy"],
                     train_seconds, record["train_examples_per_s"],
                     "  *best*" if improved else "")
        if self.checkpoint_dir is not None:
            if improved:
                checkpoint.save_weights(Path(self.checkpoint_dir) / "best", self.classifier)
            checkpoint.save(Path(self.checkpoint_dir) / "last", self.classifier, state,
                            self.model.optimizer.variables)


class EpochLogger(keras.callbacks.Callback):
    """One log line per epoch (its loss and minutes), instead of Keras' progress bar, whose
    redraws fill a saved notebook."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        log.info("epoch %d/%d: loss %.4f, %.1f min", epoch + 1, self.params["epochs"],
                 float((logs or {}).get("loss", float("nan"))),
                 (time.perf_counter() - self.start) / 60)


def _recorded(run_config):
    """A run's settings as a checkpoint records them: dataclasses (TrainConfig, a caller's
    config) as dicts."""
    return {key: dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
            for key, value in run_config.items()}


def _with_defaults(recorded, run_config):
    """A checkpoint's recorded settings with the fields added to TrainConfig or to a caller's
    config dataclass since it was written set to their defaults (which reproduce the old
    behaviour), so that an older checkpoint still resumes."""
    filled = {**dataclasses.asdict(TrainConfig()), **recorded}
    for key, value in run_config.items():
        if dataclasses.is_dataclass(value) and isinstance(recorded.get(key), dict):
            filled[key] = {**dataclasses.asdict(type(value)()), **recorded[key]}
    return filled


def reseed_dropout(model, seed):
    """Give every random-number generator inside `model` (Keras' SeedGenerators: dropout) a
    state that depends on `seed` and its place in the model only.

    Why: a Keras layer built without a seed draws its generator's seed from Python's `random`
    when it is built, so the same model loaded in two fresh processes (the notebooks' steps)
    drops different units and two runs of one commit diverge. After this, a fit is a function
    of the weights, the data and `seed` alone, however and wherever the model was built."""
    from keras.src.random.seed_generator import SeedGenerator   # no public accessor
    generators = [value for layer in model._flatten_layers(include_self=True, recursive=True)
                  for value in vars(layer).values() if isinstance(value, SeedGenerator)]
    seeds = np.random.SeedSequence(seed).generate_state(max(len(generators), 1)) % (2 ** 31 - 1)
    for generator, value in zip(generators, seeds):
        generator.state.assign(np.array([int(value), 0], dtype=generator.state.dtype))
    return len(generators)


def fine_tune(model, tokenizer, dataset, config=None, checkpoint_dir=None, progress=True,
              callbacks=(), fit_model=None, make_optimizer=None, teacher_logits=None,
              run_config=None):
    """Fine-tune every weight of `model` on dataset["train"], early-stopping on validation.

    The caller composes what is not plain cross-entropy with AdamW (block pruning does:
    `utils.pruning.block.penalized_fine_tune`):
    fit_model: `fit_model(model, total_steps)` -> the keras.Model that `fit` trains, a wrapper
        around `model` with its own `compute_loss` (built inside the model's strategy scope).
    make_optimizer: `make_optimizer(**AdamW options)` -> the optimizer (default AdamW).
    callbacks: more Keras callbacks, after the loop's own.
    teacher_logits: the teacher's logits, one row per training example; the batches' targets
        are then {"label", "teacher"}, for a fit_model whose loss distils.
    run_config: {name: a config dataclass or a plain value} recorded in the checkpoint beside
        `config`; a resume with other settings is refused.
    If `checkpoint_dir` holds a checkpoint of an interrupted run that started from this same
    model (`checkpoint.resumes_from`), training resumes from it.
    On return the model holds the weights of the best validation epoch. Returns the training
    state: per-epoch history, best epoch, total train seconds.
    """
    config = config or TrainConfig()
    if teacher_logits is not None and fit_model is None:
        raise ValueError("teacher_logits need a fit_model whose loss distils towards them "
                         "(utils.pruning.block.penalized_fine_tune builds one)")
    keras.utils.set_random_seed(config.seed)
    reseed_dropout(model, config.seed)
    train_batches, truncated = batching.make_batches(
        tokenizer, dataset["train"]["text"], dataset["train"]["label"],
        max_length=config.max_length, batch_size=config.batch_size, shuffle=True,
        seed=config.seed, teacher_logits=teacher_logits)
    val_batches, _ = batching.make_batches(
        tokenizer, dataset["validation"]["text"], max_length=config.max_length,
        batch_size=config.eval_batch_size)
    steps = len(train_batches) * config.epochs
    with distribution_scope_of(model):   # the wrapper and the optimizer live in the model's strategy
        trained = model if fit_model is None else fit_model(model, steps)
        optimizer = compile_for_training(trained, config, len(train_batches),
                                         make_optimizer=make_optimizer)
    pad_for(train_batches, trained)

    run_config = run_config or {}
    recorded = {**dataclasses.asdict(config), **_recorded(run_config)}
    last = Path(checkpoint_dir) / "last" if checkpoint_dir is not None else None
    source = checkpoint.weights_fingerprint(model) if last is not None else None
    state = {"epoch": 0, "history": [], "best_val_macro_f1": -1.0, "best_epoch": 0,
             "epochs_without_improvement": 0, "patience": config.patience,
             "stopped_early": False, "train_examples": len(train_batches.encoded),
             "train_truncated": truncated, "config": recorded, "source": source}
    saved_state = checkpoint.read_state(last) if last is not None else None
    if saved_state is not None and checkpoint.resumes_from(saved_state, source, last):
        restored = checkpoint.restore(last, model, optimizer.variables)
        if _with_defaults(restored["config"], run_config) != recorded:
            raise ValueError(f"checkpoint in {checkpoint_dir} was made with config "
                             f"{restored['config']}, not {recorded}; "
                             "delete it or pass the same config to resume")
        state = restored
        for _ in range(state["epoch"]):
            train_batches.next_epoch()
        log.info("resuming from %s after epoch %d", last, state["epoch"])

    monitor = _EpochMonitor(model, state, val_batches, dataset["validation"]["label"],
                            checkpoint_dir, progress)
    all_callbacks = [monitor, *callbacks]
    if checkpoint_dir is not None:   # the per-epoch log, readable without this repository
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        all_callbacks.insert(1, keras.callbacks.CSVLogger(
            str(Path(checkpoint_dir) / "training_log.csv"), append=True))
    done = state["stopped_early"] or state["epoch"] >= config.epochs
    if not done:
        trained.fit(fit_input(train_batches), epochs=config.epochs,
                    steps_per_epoch=len(train_batches), initial_epoch=state["epoch"],
                    verbose=0, callbacks=all_callbacks,
                    shuffle=False)   # the batches come shuffled
    if monitor.bad_loss:
        epoch, batch, loss = monitor.bad_loss
        if last is not None and checkpoint.read_state(last) is not None:
            checkpoint.restore(last, model, optimizer.variables)
            where = f"the model holds the last good checkpoint ({last})"
        else:
            where = "no earlier checkpoint exists"
        raise FloatingPointError(f"training loss became {loss} at epoch {epoch}, batch {batch}; "
                                 f"{where}. Lower the learning rate or check the inputs.")
    if hasattr(monitor, "best_weights"):
        model.set_weights(monitor.best_weights)
    elif checkpoint_dir is not None and (Path(checkpoint_dir) / "best").exists():
        checkpoint.load_weights(Path(checkpoint_dir) / "best", model)
    state["train_seconds"] = sum(r["train_seconds"] for r in state["history"])
    return state


def predict_texts(model, tokenizer, texts, max_length=64, batch_size=128):
    """Logits for a list of texts, in their order."""
    batches, _ = batching.make_batches(tokenizer, texts, max_length=max_length,
                                       batch_size=batch_size)
    return predict_logits(model, batches)


if os.environ.get("UTILS_PRECISION"):
    set_precision(os.environ["UTILS_PRECISION"])
