"""What differs between Keras 3's backends, in one place: TensorFlow (the default: `import utils`
sets KERAS_BACKEND=tensorflow unless the environment chose), JAX and PyTorch.

Everything else of the training path (the encoder, fit with `compute_loss`, the callbacks and
the optimizer hooks of block pruning, compaction, evaluation, the latency table) is written once
in `keras.ops` and runs on all three. Here: which GPUs are visible and what they are, the
TensorFlow distribution strategy (several GPUs) and its per-replica arithmetic, the typed
`tf.data` input TensorFlow's traced step wants, and the compiled serving function. Each
function imports its backend's library only when that backend runs, so under JAX or PyTorch
nothing here needs TensorFlow.

Only TensorFlow: TFLite export (`utils.compression.tflite`), the gradient tapes of CoFi
(`utils.pruning.cofi`) and of the baselines' loss (`importance.task_loss_fn`), and multi-GPU
training through tf.distribute (README, "Keras backends"). Gradients outside `fit` for the
Fisher information go through `gradient_function` on every backend.
"""
from __future__ import annotations

import contextlib
import importlib

import keras

BACKENDS = ("tensorflow", "jax", "torch")


def name():
    """The Keras backend this process runs on ("tensorflow", "jax" or "torch")."""
    return keras.backend.backend()


def is_tensorflow():
    return name() == "tensorflow"


def version():
    """The backend library's version, e.g. "2.21.0"."""
    return importlib.import_module(name()).__version__


def gpu_count(logical=False):
    """GPUs the backend can compute on (0 on a CPU-only machine). logical: on TensorFlow,
    its logical GPUs (a physical one may be split in several; listing them starts TensorFlow's
    runtime, after which devices can no longer be configured)."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf
        return len(tf.config.list_logical_devices("GPU") if logical
                   else tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch
        return torch.cuda.device_count()
    if backend == "jax":
        import jax
        return sum(device.platform == "gpu" for device in jax.devices())
    return 0


def gpu_compute_capability():
    """(major, minor) of the first GPU, or None without a GPU (or when the backend cannot
    tell)."""
    if not gpu_count():
        return None
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf
        gpu = tf.config.list_physical_devices("GPU")[0]
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        return tuple(capability) if capability else None
    if backend == "torch":
        import torch
        return tuple(torch.cuda.get_device_capability(0))
    import jax
    capability = getattr(jax.devices()[0], "compute_capability", None)
    return tuple(int(part) for part in str(capability).split(".")[:2]) if capability else None


def device_description():
    """What this process computes on, e.g. "NVIDIA H100 80GB HBM3" or "cpu"."""
    if not gpu_count():
        return "cpu"
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf
        gpu = tf.config.list_physical_devices("GPU")[0]
        return tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
    if backend == "torch":
        import torch
        return torch.cuda.get_device_name(0)
    import jax
    return jax.devices()[0].device_kind


# ------------------------------------------------------------------ several GPUs (TensorFlow)

def multi_gpu_scope():
    """MirroredStrategy's scope over all GPUs when TensorFlow sees more than one, else a no-op
    scope (JAX and PyTorch train on one device here)."""
    if is_tensorflow() and gpu_count(logical=True) > 1:
        import tensorflow as tf
        return tf.distribute.MirroredStrategy().scope()
    return contextlib.nullcontext()


def replicas_in_sync():
    """Replicas the current TensorFlow distribution strategy trains on; 1 elsewhere."""
    if not is_tensorflow():
        return 1
    import tensorflow as tf
    return tf.distribute.get_strategy().num_replicas_in_sync


def clip_across_replicas(grads, clip):
    """`clip(grads)` (the optimizer's global-norm clipping) applied to the whole batch's
    gradient under a TensorFlow distribution strategy, or None when there is one replica (the
    caller then clips as usual).

    Keras clips each replica's gradient (of its share of the batch) before the replicas'
    gradients are summed, so with N replicas the clipped step is not one device's. Here the
    replicas' gradients are summed first, clipped by their global norm, and handed on divided
    by N (Keras then sums the N equal shares)."""
    if not is_tensorflow():
        return None
    import tensorflow as tf
    replica = tf.distribute.get_replica_context()
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replica is None or replicas == 1:
        return None
    # Embedding gradients stay sparse: summed across replicas their slices are the ones
    # one device has, so the global norm is one device's too.
    total = replica.all_reduce(tf.distribute.ReduceOp.SUM, [g for g in grads if g is not None])
    clipped = iter(clip(total))

    def share(g):
        if isinstance(g, tf.IndexedSlices):
            return tf.IndexedSlices(g.values / replicas, g.indices, g.dense_shape)
        return g / replicas
    return [None if g is None else share(next(clipped)) for g in grads]


# ------------------------------------------------------------------ input and serving

def typed_input(generate, teacher_width=None):
    """On TensorFlow, `generate()` (endless (x, y) batches of any padded length) as a tf.data
    pipeline with an explicit (batch, length) = (None, None) signature, so that one traced step
    serves every length; None on the other backends (fit then takes the keras.utils.PyDataset
    of the batches).

    A PyDataset's tensor shapes are guessed by TensorFlow from its first two batches, and when
    both have the same padded length every longer batch is then rejected."""
    if not is_tensorflow():
        return None
    import tensorflow as tf
    ids = tf.TensorSpec((None, None), tf.int32)
    x_spec = {"input_ids": ids, "attention_mask": ids}
    y_spec = tf.TensorSpec((None,), tf.int32)
    if teacher_width is not None:
        y_spec = {"label": y_spec, "teacher": tf.TensorSpec((None, teacher_width), tf.float32)}
    # prefetch pads the next batches while the current step runs; what each step sees does
    # not depend on it
    return tf.data.Dataset.from_generator(generate, output_signature=(x_spec, y_spec)) \
        .prefetch(tf.data.AUTOTUNE)


def serving_function(model):
    """(input_ids, attention_mask) -> logits of a Keras classifier, inference mode, compiled
    once: on TensorFlow one tf.function for every batch shape (no retracing per padded length);
    on JAX Keras' jitted predict step (one program per shape); on PyTorch eager, without
    gradients."""
    if not is_tensorflow():
        return lambda ids, mask: model.predict_on_batch({"input_ids": ids,
                                                         "attention_mask": mask})
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
    def predict(input_ids, attention_mask):
        return model({"input_ids": input_ids, "attention_mask": attention_mask},
                     training=False)
    return predict


# ------------------------------------------------------------------ gradients outside fit

def gradient_function(model, variables, loss, reduce):
    """A compiled (input_ids, attention_mask, labels) -> reduce(gradients) where gradients are
    d loss(labels, model(inputs, training=False)) / d v for every v in `variables` (trainable
    variables of `model`), as backend tensors, and `reduce(variables, gradients)` combines them
    in `keras.ops` inside the compiled function. For measurements that need a gradient but no
    optimizer step (the Fisher information of unit masks): TensorFlow's GradientTape in one
    tf.function for every batch shape, JAX's grad of the model's stateless call (jitted, one
    program per shape), PyTorch's autograd."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf
        ids = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[ids, ids, tf.TensorSpec([None], tf.int32)])
        def tape_gradients(input_ids, attention_mask, labels):
            with tf.GradientTape() as tape:
                logits = model({"input_ids": input_ids, "attention_mask": attention_mask},
                               training=False)
                value = loss(labels, logits)
            return reduce(variables, tape.gradient(value, variables))
        return tape_gradients
    if backend == "jax":
        import jax
        trainable = model.trainable_variables
        positions = [next(i for i, t in enumerate(trainable) if t is v) for v in variables]

        @jax.jit
        def jax_gradients(trainable_values, non_trainable_values, input_ids, attention_mask,
                          labels):
            def value(values):
                logits, _ = model.stateless_call(
                    values, non_trainable_values,
                    {"input_ids": input_ids, "attention_mask": attention_mask}, training=False)
                return loss(labels, logits)
            grads = jax.grad(value)(trainable_values)
            return reduce([trainable_values[i] for i in positions],
                          [grads[i] for i in positions])

        def gradients(input_ids, attention_mask, labels):
            return jax_gradients([v.value for v in trainable],
                                 [v.value for v in model.non_trainable_variables],
                                 input_ids, attention_mask, labels)
        return gradients
    import torch

    def torch_gradients(input_ids, attention_mask, labels):
        inputs = {"input_ids": keras.ops.convert_to_tensor(input_ids, "int32"),
                  "attention_mask": keras.ops.convert_to_tensor(attention_mask, "int32")}
        value = loss(keras.ops.convert_to_tensor(labels, "int32"), model(inputs, training=False))
        grads = torch.autograd.grad(value, [v.value for v in variables])
        with torch.no_grad():
            return reduce([v.value for v in variables], list(grads))
    return torch_gradients
