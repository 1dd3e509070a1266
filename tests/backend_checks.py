"""The training path's checks under one Keras backend, run by tests/test_backends.py in a fresh
process with KERAS_BACKEND set (Keras fixes its backend at import):

    KERAS_BACKEND=jax python tests/backend_checks.py OUT.json [CHECK ...]

Writes {check: result} to OUT.json: the forward logits of a fixed random model (compared across
backends by the test), and for each training check the numbers the test asserts on. CPU only;
under JAX and PyTorch `import tensorflow` fails, as on a GPU machine that has none.
"""
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")     # CPU only, whatever the machine has
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parent))          # helpers
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # utils

import numpy as np
from helpers import random_model, toy_dataset

# the forward-parity model and inputs: every backend builds the same weights from this seed
FORWARD_SEED = 3


def numpy(tensor):
    """A backend tensor as numpy (a torch output that requires grad included)."""
    import keras
    return keras.ops.convert_to_numpy(tensor)


def forward_inputs(config):
    rng = np.random.default_rng(1)
    ids = rng.integers(1, config.vocab_size, size=(3, 9)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 6:] = 0     # padding is masked
    ids[1, 6:] = config.pad_token_id
    return {"input_ids": ids, "attention_mask": mask}


def forward(results, tokenizer):
    from utils.encoder import model as model_lib
    config = model_lib.tiny_config(tokenizer.vocab_size)
    model = random_model(config, seed=FORWARD_SEED)
    results["forward_logits"] = numpy(model(forward_inputs(config), training=False)).tolist()


def masked_fit(results, tokenizer):
    """A fit with masks held by MaskedAdamW: masked weights stay exactly 0, the others move."""
    from utils.encoder import model as model_lib
    from utils.pruning import block
    from utils.training import train
    model = random_model(model_lib.tiny_config(tokenizer.vocab_size), seed=4)
    kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
    masks, _ = block.threshold_masks(kernels, 1, "inner", target_sparsity=0.4)
    before = {name: np.array(k) for name, k in kernels.items()}
    config = train.TrainConfig(learning_rate=1e-3, epochs=1, batch_size=16, max_length=16)
    block.penalized_fine_tune(model, tokenizer, toy_dataset(n_train=64, n_val=16), config,
                              masks=masks, progress=False)
    after = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
    results["masked_fit"] = {
        "masked_nonzero": int(sum(np.count_nonzero(after[n][masks[n] == 0]) for n in masks)),
        "masked_weights": int(sum((masks[n] == 0).sum() for n in masks)),
        "unmasked_changed": float(np.mean([np.mean(after[n][masks[n] == 1]
                                                   != before[n][masks[n] == 1])
                                           for n in masks]))}


def penalized_fit(results, tokenizer):
    """Block pruning's regularised fit (penalties ramped in, as notebook 03): the loss falls."""
    from utils.encoder import model as model_lib
    from utils.pruning import block
    from utils.training import train
    model = random_model(model_lib.tiny_config(tokenizer.vocab_size), seed=5)
    config = train.TrainConfig(learning_rate=2e-3, epochs=3, batch_size=16, max_length=16,
                               patience=3, warmup_fraction=0.0)
    pruning = block.PruningConfig(lambda_group=1e-3, lambda_polar=1e-3,
                                  lambda_warmup_fraction=0.5)
    state = block.penalized_fine_tune(model, tokenizer, toy_dataset(n_train=96, n_val=24),
                                      config, pruning=pruning, progress=False)
    results["penalized_fit"] = {
        "epoch_losses": [r["train_loss"] for r in state["history"]],
        "val_accuracy": state["history"][-1]["val_accuracy"],
        "loss_terms": state["loss_terms"]}


def progressive(results, tokenizer):
    """The proximal step (units shrunk between optimizer steps by a callback) and the period
    ends that zero units: switched-off units are exactly 0 after the fit, the rest are not."""
    from utils.encoder import model as model_lib
    from utils.pruning import units
    from utils.training import train
    config = model_lib.EncoderConfig(vocab_size=tokenizer.vocab_size, hidden_size=16,
                                     num_heads=[4, 4], intermediate_sizes=[64, 64], head_size=4,
                                     max_position_embeddings=32)
    model = random_model(config, seed=6)
    fit = train.TrainConfig(learning_rate=1e-3, epochs=2, batch_size=8, max_length=16)
    pruner = units.ProgressiveUnitPruning(model, [0.2, 0.5], total_steps=20, prune_fraction=0.5,
                                          every=2)
    train.fine_tune(model, tokenizer, toy_dataset(n_train=80, n_val=16), fit, progress=False,
                    callbacks=[pruner.keras_callback()])
    norms = units.unit_norms(model)
    results["progressive"] = {
        "reached": [r["target"] for r in pruner.reached],
        "off_nonzero": int(sum(np.count_nonzero(norms[k][~a]) for k, a in pruner.alive.items())),
        "off_units": int(sum((~a).sum() for a in pruner.alive.values())),
        "alive_zero": int(sum((norms[k][a] == 0).sum() for k, a in pruner.alive.items())),
        "sparsity": pruner.sparsity()}
    # the compacted model (pruned units removed) gives the masked model's logits
    from utils.compression import compact
    small = compact.compact_model(model)
    inputs = forward_inputs(config)
    results["compaction"] = {
        "heads": [int(h) for h in small.encoder_config.num_heads],
        "neurons": [int(n) for n in small.encoder_config.intermediate_sizes],
        "max_abs_diff": float(np.max(np.abs(numpy(small(inputs, training=False))
                                            - numpy(model(inputs, training=False)))))}


def fisher(results, tokenizer):
    """The Fisher information of the unit masks (gradients outside fit, notebook 03's unit
    selection) of the forward-parity model on labelled toy batches."""
    from utils.encoder import model as model_lib
    from utils.pruning import importance
    model = random_model(model_lib.tiny_config(tokenizer.vocab_size), seed=FORWARD_SEED)
    batches = importance.labelled_batches(tokenizer, toy_dataset(n_train=40)["train"], None,
                                          max_length=16, batch_size=16, seed=0)
    information = importance.fisher_information(model, batches)
    results["fisher"] = {kind: {str(layer): values.tolist()
                                for layer, values in information[kind].items()}
                         for kind in ("heads", "neurons")}


CHECKS = (forward, fisher, masked_fit, penalized_fit, progressive)


def main(out, names=()):
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        # the other backends must not need it: `import tensorflow` now fails as where it is
        # not installed, and find_spec says it is absent
        sys.modules["tensorflow"] = None
    import keras

    from utils.encoder import hub
    tokenizer = hub.load_tokenizer(hub.DEFAULT_MODEL)
    results = {"backend": keras.backend.backend(), "seconds": {}}
    for check in [c for c in CHECKS if not names or c.__name__ in names]:
        started = time.perf_counter()
        check(results, tokenizer)
        results["seconds"][check.__name__] = time.perf_counter() - started
    Path(out).write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
