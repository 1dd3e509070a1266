"""The GPU path, checked on CPU: MirroredStrategy over two logical devices, mixed precision,
loss scaling's skipped steps, and the parameters that choose them."""
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils.training import train
from utils.pruning import units

REPO = Path(__file__).resolve().parent.parent

# Runs in a fresh process: logical devices must be set before TensorFlow starts.
MIRRORED_SCRIPT = r"""
import dataclasses, json, sys, tempfile
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
sys.path[:0] = [".", "tests"]
from utils.encoder import model as model_lib
from utils.encoder import hub
from utils.training import train
from utils.pruning import units
from helpers import toy_dataset

tokenizer = hub.load_tokenizer(hub.DEFAULT_MODEL)
data = toy_dataset(n_train=64, n_val=16)
# no dropout: replicas draw their own dropout masks, one device draws others
config = dataclasses.replace(model_lib.tiny_config(tokenizer.vocab_size),
                             hidden_dropout=0.0, attention_dropout=0.0)

def run(strategy):
    keras.utils.set_random_seed(0)
    with train.distribution_scope(strategy):
        model = model_lib.build_classifier(config)
    train_config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16,
                                     max_length=16, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        pruner, _ = units.progressive_prune(model, tokenizer, data, [0.5], train_config, tmp,
                                            prune_fraction=0.5, every=1)
    norms = units.unit_norms(model)
    return {"weights": [np.asarray(w).tolist() for w in model.get_weights()],
            "pruned_norms": [float(norms[k][~a].max()) for k, a in pruner.alive.items()
                             if (~a).any()],
            "replicas": model.distribute_strategy.num_replicas_in_sync,
            "steps": pruner.last_iterations, "reached": [r["target"] for r in pruner.reached]}

mirrored = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
single = run(None)
print("RESULT" + json.dumps({"mirrored": mirrored, "single": single}))
"""


def test_mirrored_strategy_matches_one_device():
    """A few fine-tuning steps and the pruning steps on two replicas give one device's
    weights (within float tolerance), and the pruned units stay exactly 0."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT"))
    result = json.loads(line[len("RESULT"):])
    mirrored, single = result["mirrored"], result["single"]
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    assert mirrored["steps"] == single["steps"] == 4  # 64 tweets / 16 per batch
    assert mirrored["reached"] == single["reached"] == [0.5]
    assert mirrored["pruned_norms"] and max(mirrored["pruned_norms"]) == 0.0
    assert max(single["pruned_norms"]) == 0.0
    for a, b in zip(mirrored["weights"], single["weights"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-4)


@pytest.fixture
def precision():
    """Set a dtype policy for one test and restore float32 after it."""
    import keras
    yield train.set_precision
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("policy,tolerance", [("mixed_float16", 2e-2), ("mixed_bfloat16", 1e-1)])
def test_mixed_precision_forward_matches_float32(tokenizer, precision, policy, tolerance):
    """Same weights, same tweets: mixed-precision logits within `tolerance` of float32 ones
    (float16 keeps 11 significant bits, bfloat16 8), and still float32."""
    import keras
    from helpers import TWEETS, random_model
    from utils.data import batching
    from utils.encoder import model as model_lib
    config = model_lib.tiny_config(tokenizer.vocab_size)
    reference = random_model(config)
    inputs = batching.make_batches(tokenizer, TWEETS, max_length=32,
                                   batch_size=len(TWEETS))[0][0]
    expected = np.asarray(reference(inputs, training=False))
    precision(policy)
    mixed = model_lib.build_classifier(config)
    mixed.set_weights(reference.get_weights())
    assert mixed.layers[-1].dtype_policy.name == "float32"
    assert any(layer.dtype_policy.name == policy for layer in mixed.layers)
    got = mixed(inputs, training=False)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    np.testing.assert_allclose(np.asarray(got), expected, atol=tolerance * np.abs(expected).max())


def test_skipped_loss_scale_step_skips_the_pruning_step(tokenizer, precision):
    """Under mixed_float16 the optimizer is a LossScaleOptimizer: a step with non-finite
    gradients changes nothing, the pruner does not count it, and masked weights stay 0."""
    import keras
    from utils.encoder import model as model_lib
    from utils.pruning import block as pruning
    precision("mixed_float16")
    model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    kernels = model_lib.prunable_kernels(model, include_pooler=False)
    name = next(iter(kernels))
    mask = np.ones(kernels[name].shape, np.float32)
    mask[:, ::2] = 0.0
    pruning.apply_masks(model, {name: mask})
    optimizer = train.compile_for_training(
        model, train.TrainConfig(learning_rate=1e-2), steps_per_epoch=10,
        make_optimizer=functools.partial(pruning.MaskedAdamW,
                                         pruning.masks_by_variable_path(model, {name: mask})))
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(train.inner_optimizer(optimizer), pruning.MaskedAdamW)
    pruner = units.ProgressiveUnitPruning(model, [0.5], total_steps=8, every=1)
    variables = model.trainable_variables
    before = [np.asarray(v) for v in variables]

    def step(value):
        optimizer.apply([keras.ops.full(v.shape, value, "float32") for v in variables],
                        variables)
        pruner.after_step(optimizer)

    step(1.0)
    assert train.optimizer_steps(optimizer) == 1 and pruner.step == 1
    after_one = [np.asarray(v) for v in variables]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after_one))
    step(np.inf)     # overflow: skipped by the optimizer, and so by the pruner
    assert train.optimizer_steps(optimizer) == 1 and pruner.step == 1
    for a, b in zip(after_one, (np.asarray(v) for v in variables)):
        np.testing.assert_array_equal(a, b)
    step(1.0)
    assert pruner.step == 2
    assert np.all(np.asarray(kernels[name])[mask == 0] == 0)


def test_zeroed_units_clear_adam_moments_inside_the_loss_scale_optimizer(tokenizer, precision):
    import keras
    from utils.encoder import model as model_lib
    precision("mixed_float16")
    model = model_lib.build_classifier(model_lib.tiny_config(tokenizer.vocab_size))
    optimizer = train.compile_for_training(model, train.TrainConfig(), steps_per_epoch=4)
    variables = model.trainable_variables
    optimizer.apply([keras.ops.ones(v.shape, "float32") for v in variables], variables)
    key = next(iter(units.unit_norms(model)))
    off = {key: np.array([True] + [False] * (len(units.unit_norms(model)[key]) - 1))}
    units.zero_units(model, off, optimizer)
    width, parts = units.unit_parts(model)[key]
    variable, axis = parts[0]
    moments = units.adam_moments(optimizer, variable)
    assert len(moments) == 2
    for array in [variable, *moments]:
        first = np.take(np.asarray(array), range(width), axis=axis)
        assert np.all(first == 0)


@pytest.mark.parametrize("bad,match", [(dict(jit_compile="yes"), "jit_compile"),
                                       (dict(batch_size=0), "batch_size")])
def test_bad_gpu_parameters(bad, match):
    with pytest.raises(ValueError, match=match):
        train.TrainConfig(**bad)


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        train.set_precision("fp16")
