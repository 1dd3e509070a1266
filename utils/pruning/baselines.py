"""The methods block pruning has to beat, in the same masks format as `utils.pruning.block`.

Every method returns masks {kernel name ("layer_0/attention/value", ...): 0/1 float32 array of
the kernel's Keras shape (in, out)} over the encoder's linear kernels (the pooler is not
pruned, as in block pruning), so applying, retraining with masks fixed (`MaskedAdamW`),
compaction (`utils.compression.compact`) and the benchmark reuse one code path. Sparsity targets are shares
of the encoder's linear weights, as for block pruning; a structured method reaches at least the
target with whole units (the smallest number of lowest-scoring units), or raises
`UnreachableSparsity` when even all its units are not enough (heads are only the attention
third of the encoder's linear weights, FFN neurons two thirds).

1. Unstructured magnitude pruning: the smallest |w|, over all kernels together ("global") or
   within each kernel ("per_matrix"); one-shot, or gradual with the cubic schedule of Zhu &
   Gupta (2017), s_t = s_f (1 - (1 - t/T)^3), t = 1..T (as in Chen et al. 2020, lottery
   tickets for BERT) -- see `utils.pruning.sweep.mask_sweep(gradual_steps=T)`.
2. Attention heads by importance (Michel et al. 2019): I_h = E_batches |dL/d gate_h|. Our model
   has no gates, but a gate g_h multiplying head h's context equals scaling the rows of the
   attention-output kernel W_o that belong to h (the bias is added once, after the sum over
   heads), so dL/dg_h at g = 1 is <W_o[rows of h], dL/dW_o[rows of h]>. Importances are
   normalised per layer by their L2 norm (as Michel et al.), the least important heads are
   pruned globally, 10% of all heads at a time, and importance is recomputed with the pruned
   heads masked. A pruned head has its query/key/value columns and output rows zeroed.
3. Encoder layers, ranked by the increase in training loss when the layer alone is removed
   (optionally greedily, re-ranking after each removal). A removed layer has all six kernels
   masked. NOTE: this is not the same as skipping the layer: the layer still computes
   LayerNorm(LayerNorm(x + b_attention_output) + b_ffn_output) with its (retrained) biases and
   LayerNorm parameters, which is also what compaction keeps (widths 0).
4. FFN neurons by magnitude: score_j = sqrt(||W_in[:, j]||^2 + ||W_out[j, :]||^2) (the input
   column and output row together), lowest first, over all layers; comparable with K=1 block
   pruning, which removes the same units.

5. Fisher mask search (Kwon et al. 2022), heads and FFN neurons together: `utils.pruning.fisher_mask`.

They run in the one sweep engine, `utils.pruning.sweep.mask_sweep`: any masks function over a grid of
targets, every point given the recovery block pruning's snapshots get (`utils.pruning.sweep.recover`:
same sample, same distillation from the dense model), rows in `utils.pruning.sweep.SWEEP_COLUMNS` with
validation scores; `run_baselines` runs it for every method, each in its own process.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from utils import saved
from utils.data import corpus as data_lib
from utils.encoder import model as model_lib
from utils.pruning import block as pruning
from utils.pruning import sweep

# the methods raise UnreachableSparsity; the sweep engine they run in is utils.pruning.sweep's
from utils.pruning.sweep import UnreachableSparsity, budget_of, mask_sweep
from utils.training import losses, train

log = logging.getLogger(__name__)

MAGNITUDE_SCOPES = ("global", "per_matrix")
ATTENTION = ("query", "key", "value", "output")
_LAYER = re.compile(r"layer_(\d+)/")


def numpy_kernels(model, include_pooler=False):
    """The prunable kernels of `model` as numpy arrays (the pooler excluded by default)."""
    return {n: np.asarray(k) for n, k in pruning.prunable_kernels(model, include_pooler).items()}


def masks_sparsity(masks):
    """Share of zeros in `masks` (over all their entries)."""
    return sum(float((m == 0).sum()) for m in masks.values()) / sum(m.size for m in masks.values())


def _count_for(share, size):
    """Smallest count of `size` items that is at least `share` of them (float-safe)."""
    return min(size, max(0, math.ceil(share * size - 1e-9)))


# ------------------------------------------------------------------ 1. magnitude

def magnitude_masks(kernels, sparsity, scope="global"):
    """Zero the `sparsity` share of weights with the smallest |w|: over all `kernels`
    together (scope="global") or in each kernel separately ("per_matrix"). Ties are broken by
    position, so exactly ceil(sparsity * n) weights are zeroed."""
    if scope not in MAGNITUDE_SCOPES:
        raise ValueError(f"scope = {scope!r}: must be one of {MAGNITUDE_SCOPES}")
    if not 0 <= sparsity <= 1:
        raise ValueError(f"sparsity = {sparsity!r}: must be in [0, 1]")
    kernels = {n: np.asarray(k) for n, k in kernels.items()}

    def off_smallest(values):
        off = np.zeros(values.size, dtype=bool)
        count = _count_for(sparsity, values.size)
        if count:
            off[np.argsort(np.abs(values), kind="stable")[:count]] = True
        return off
    if scope == "per_matrix":
        return {n: (~off_smallest(k.ravel())).reshape(k.shape).astype(np.float32)
                for n, k in kernels.items()}
    off = off_smallest(np.concatenate([k.ravel() for k in kernels.values()]))
    masks, start = {}, 0
    for name, k in kernels.items():
        masks[name] = (~off[start:start + k.size]).reshape(k.shape).astype(np.float32)
        start += k.size
    return masks


# ------------------------------------------------------------------ structured units

@dataclasses.dataclass
class Unit:
    """A structured unit: the parts of kernels it zeroes, as (kernel, axis, indices) with axis
    1 = columns (outputs) and 0 = rows (inputs)."""
    key: tuple
    parts: list

    def size(self, kernels):
        total = 0
        for name, axis, index in self.parts:
            n_in, n_out = kernels[name].shape
            total += len(np.arange(n_out if axis == 1 else n_in)[index]) * \
                (n_in if axis == 1 else n_out)
        return total


def units_masks(kernels, units):
    """Masks (ones everywhere) with every part of every unit zeroed."""
    masks = {n: np.ones(np.shape(k), dtype=np.float32) for n, k in kernels.items()}
    for unit in units:
        for name, axis, index in unit.parts:
            if axis == 1:
                masks[name][:, index] = 0
            else:
                masks[name][index, :] = 0
    return masks


def select_for_target(units, kernels, target, what="units"):
    """The shortest prefix of `units` (already in pruning order) whose weights reach `target`
    (share of all weights in `kernels`); raises UnreachableSparsity when all are too few."""
    if target <= 0:
        return []
    total = sum(np.size(k) for k in kernels.values())
    cumulative = np.cumsum([u.size(kernels) for u in units])
    need = target * total - 1e-6
    if not len(units) or cumulative[-1] < need:
        reachable = (cumulative[-1] if len(units) else 0) / total
        raise UnreachableSparsity(f"target {target:.0%} cannot be reached by pruning {what}: "
                                  f"all of them are {reachable:.1%} of the weights")
    return list(units[:int(np.searchsorted(cumulative, need)) + 1])


def _layer_ids(kernels):
    return sorted({int(_LAYER.match(n).group(1)) for n in kernels if _LAYER.match(n)})


def head_units(kernels, head_size):
    """One unit per attention head: query/key/value columns and attention-output rows."""
    units = []
    for i in _layer_ids(kernels):
        if f"layer_{i}/attention/value" not in kernels:
            continue
        for h in range(kernels[f"layer_{i}/attention/value"].shape[1] // head_size):
            cols = slice(h * head_size, (h + 1) * head_size)
            units.append(Unit((i, h), [(f"layer_{i}/attention/{m}", 1, cols)
                                       for m in ("query", "key", "value")]
                              + [(f"layer_{i}/attention/output", 0, cols)]))
    return units


def head_masks(kernels, heads, head_size):
    """Masks pruning `heads` (iterable of (layer, head))."""
    by_key = {u.key: u for u in head_units(kernels, head_size)}
    return units_masks(kernels, [by_key[tuple(h)] for h in heads])


def neuron_units(kernels):
    """One unit per FFN neuron j of each layer: column j of ffn/input and row j of ffn/output."""
    units = []
    for i in _layer_ids(kernels):
        if f"layer_{i}/ffn/input" not in kernels:
            continue
        for j in range(kernels[f"layer_{i}/ffn/input"].shape[1]):
            units.append(Unit((i, j), [(f"layer_{i}/ffn/input", 1, [j]),
                                       (f"layer_{i}/ffn/output", 0, [j])]))
    return units


def layer_units(kernels):
    """One unit per encoder layer: all of its kernels, whole."""
    return [Unit((i,), [(n, 0, slice(None)) for n in kernels if n.startswith(f"layer_{i}/")])
            for i in _layer_ids(kernels)]


def layer_masks(kernels, layers):
    """Masks removing the encoder layers `layers` (every kernel of each masked)."""
    by_key = {u.key[0]: u for u in layer_units(kernels)}
    return units_masks(kernels, [by_key[i] for i in layers])


# ------------------------------------------------------------------ 4. FFN neurons

def ffn_neuron_scores(kernels):
    """{layer: L2 norm of each neuron's input column and output row together}."""
    return {i: np.sqrt((np.asarray(kernels[f"layer_{i}/ffn/input"], np.float64) ** 2).sum(0)
                       + (np.asarray(kernels[f"layer_{i}/ffn/output"], np.float64) ** 2).sum(1))
            for i in _layer_ids(kernels) if f"layer_{i}/ffn/input" in kernels}


def ffn_neuron_masks(kernels, sparsity):
    """Prune whole FFN neurons, lowest score (`ffn_neuron_scores`) first over all layers,
    until `sparsity` of all weights in `kernels` are zero."""
    kernels = {n: np.asarray(k) for n, k in kernels.items()}
    scores = ffn_neuron_scores(kernels)
    units = sorted(neuron_units(kernels), key=lambda u: (scores[u.key[0]][u.key[1]], u.key))
    return units_masks(kernels, select_for_target(units, kernels, sparsity, "FFN neurons"))


# ------------------------------------------------------------------ 2. head importance

def _serving_batches(batches):
    return [batches[i] for i in range(len(batches))]


def _loss_fn(model):
    import tensorflow as tf
    ids = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[ids, ids, tf.TensorSpec([None], tf.int32)])
    def loss(input_ids, attention_mask, labels):
        logits = model({"input_ids": input_ids, "attention_mask": attention_mask},
                       training=False)
        return losses.task_loss(labels, logits)
    return loss


def head_gate_gradients_fn(model, neurons=False):
    """A tf.function (input_ids, attention_mask, labels) -> [per layer: dL/dg_h for each head]
    at gates g = 1, L = mean cross-entropy of the batch, dropout off.

    neurons=True: returns (heads, neurons), neurons = [per layer: dL/dg_j for each FFN neuron
    j]; a gate on neuron j's activation equals scaling row j of the FFN output kernel (its
    bias is added after the sum over neurons), so dL/dg_j = <W_out[j], dL/dW_out[j]>."""
    import tensorflow as tf
    from keras import ops
    config = model.encoder_config
    layers = model_lib.transformer_layers(model)
    head_kernels = [l.attention.output_dense.kernel for l in layers if l.attention.num_heads > 0]
    shapes = [(l.attention.num_heads, config.head_size) for l in layers
              if l.attention.num_heads > 0]
    neuron_kernels = [l.ffn.output_dense.kernel for l in layers
                      if neurons and l.ffn.intermediate_size > 0]
    ids = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[ids, ids, tf.TensorSpec([None], tf.int32)])
    def gate_gradients(input_ids, attention_mask, labels):
        with tf.GradientTape() as tape:
            logits = model({"input_ids": input_ids, "attention_mask": attention_mask},
                           training=False)
            loss = losses.task_loss(labels, logits)
        grads = tape.gradient(loss, head_kernels + neuron_kernels)
        heads = []
        for kernel, grad, (count, size) in zip(head_kernels, grads, shapes):
            product = ops.reshape(ops.convert_to_tensor(kernel) * grad, (count, size, -1))
            heads.append(ops.sum(product, axis=(1, 2)))
        if not neurons:
            return heads
        return heads, [ops.sum(ops.convert_to_tensor(kernel) * grad, axis=1)
                       for kernel, grad in zip(neuron_kernels, grads[len(head_kernels):])]
    return gate_gradients


def head_importance(model, batches, normalize=True, gate_fn=None):
    """Michel et al.'s I_h = sum over batches of n_b |dL_b/dg_h| / N, per layer
    ({layer: array of heads}); with `normalize`, divided by the layer's L2 norm.
    `batches`: a labelled `utils.data.batching.TweetBatches` (or list of (inputs, labels))."""
    gate_fn = gate_fn or head_gate_gradients_fn(model)
    layer_ids = [i for i, layer in enumerate(model_lib.transformer_layers(model))
                 if layer.attention.num_heads > 0]
    totals, count = None, 0
    for x, y in (batches if isinstance(batches, list) else _serving_batches(batches)):
        grads = gate_fn(x["input_ids"], x["attention_mask"], np.asarray(y, np.int32))
        values = [len(y) * np.abs(np.asarray(g, np.float64)) for g in grads]
        totals = values if totals is None else [t + v for t, v in zip(totals, values)]
        count += len(y)
    importance = {i: t / count for i, t in zip(layer_ids, totals)}
    if normalize:
        importance = {i: v / (np.linalg.norm(v) + 1e-20) for i, v in importance.items()}
    return importance


class HeadImportancePruner:
    """masks_fn(model, target) for Michel et al.'s iterative head pruning.

    The pruning order is computed on the model as it is at the first call (the sweep calls
    it with the dense start weights every time) and extended as larger targets need more
    heads: each step masks the heads pruned so far, recomputes the normalised importances on
    `batches` and prunes the `step_fraction` share of all heads with the lowest importance
    (the last step only as many as the target needs). `history` records each step.
    """

    def __init__(self, batches, step_fraction=0.1, normalize=True, progress=False):
        self.batches = batches if isinstance(batches, list) else _serving_batches(batches)
        self.step_fraction = step_fraction
        self.normalize = normalize
        self.progress = progress
        self.order, self.history = [], []
        self._gate_fn = None

    def extend(self, model, num_heads):
        config = model.encoder_config
        kernels = numpy_kernels(model)
        all_heads = [u.key for u in head_units(kernels, config.head_size)]
        num_heads = min(num_heads, len(all_heads))
        if len(self.order) >= num_heads:
            return
        step = max(1, round(self.step_fraction * len(all_heads)))
        start = model.get_weights()
        self._gate_fn = self._gate_fn or head_gate_gradients_fn(model)
        try:
            while len(self.order) < num_heads:
                model.set_weights(start)
                pruning.apply_masks(model, head_masks(kernels, self.order, config.head_size))
                importance = head_importance(model, self.batches, self.normalize,
                                             self._gate_fn)
                pruned = set(self.order)
                ranked = sorted((float(importance[i][h]), (i, h)) for i, h in all_heads
                                if (i, h) not in pruned)
                chosen = [key for _, key in ranked[:min(step, num_heads - len(self.order))]]
                self.order += chosen
                self.history.append({"pruned_before": len(pruned), "pruned_now": chosen,
                                     "importance": {i: v.tolist()
                                                    for i, v in importance.items()}})
                if self.progress:
                    log.info(f"head importance step {len(self.history)}: pruned "
                          f"{len(self.order)}/{len(all_heads)} heads", flush=True)
        finally:
            model.set_weights(start)

    def __call__(self, model, target):
        kernels = numpy_kernels(model)
        size = model.encoder_config.head_size
        units = head_units(kernels, size)
        needed = len(select_for_target(units, kernels, target, "attention heads"))
        self.extend(model, needed)
        return head_masks(kernels, self.order[:needed], size)


# ------------------------------------------------------------------ 3. layer dropping

def mean_loss(model, batches, loss_fn=None):
    """Mean cross-entropy of `model` (dropout off) over labelled `batches`."""
    loss_fn = loss_fn or _loss_fn(model)
    total, count = 0.0, 0
    for x, y in (batches if isinstance(batches, list) else _serving_batches(batches)):
        total += len(y) * float(loss_fn(x["input_ids"], x["attention_mask"],
                                        np.asarray(y, np.int32)))
        count += len(y)
    return total / count


def layer_removal_increases(model, batches, removed=(), loss_fn=None):
    """{layer: training-loss increase when that layer (too) is removed}, relative to the model
    with the layers `removed` already removed. The model's weights are restored."""
    loss_fn = loss_fn or _loss_fn(model)
    kernels = numpy_kernels(model)
    start = model.get_weights()
    try:
        pruning.apply_masks(model, layer_masks(kernels, removed))
        base = mean_loss(model, batches, loss_fn)
        increases = {}
        for i in _layer_ids(kernels):
            if i in removed:
                continue
            model.set_weights(start)
            pruning.apply_masks(model, layer_masks(kernels, [*removed, i]))
            increases[i] = mean_loss(model, batches, loss_fn) - base
    finally:
        model.set_weights(start)
    return increases


class LayerDropper:
    """masks_fn(model, target) removing whole encoder layers, the smallest training-loss
    increase first. greedy=False ranks once on the full model (the criterion as stated);
    greedy=True re-ranks the remaining layers after each removal. The order is computed at
    the first call (dense start weights) and reused."""

    def __init__(self, batches, greedy=False):
        self.batches = batches if isinstance(batches, list) else _serving_batches(batches)
        self.greedy = greedy
        self.order, self.increases = None, []

    def compute_order(self, model):
        loss_fn = _loss_fn(model)
        increases = layer_removal_increases(model, self.batches, (), loss_fn)
        self.increases = [increases]
        if not self.greedy:
            self.order = sorted(increases, key=lambda i: (increases[i], i))
            return self.order
        order = []
        while increases:
            order.append(min(increases, key=lambda i: (increases[i], i)))
            increases = layer_removal_increases(model, self.batches, order, loss_fn)
            if increases:
                self.increases.append(increases)
        self.order = order
        return order

    def __call__(self, model, target):
        kernels = numpy_kernels(model)
        if self.order is None:
            self.compute_order(model)
        by_key = {u.key[0]: u for u in layer_units(kernels)}
        units = [by_key[i] for i in self.order]
        return units_masks(kernels, select_for_target(units, kernels, target, "layers"))


# ------------------------------------------------------------------ the methods, by name

@dataclasses.dataclass
class Method:
    name: str
    masks_fn: object          # (model, target sparsity) -> masks
    mode: str                 # granularity, written to the sweep CSV's "mode" column
    gradual_steps: int = 1    # > 1: prune -> retrain steps on the cubic schedule
    K: float = float("nan")   # comparable block count, where one exists
    recipe: dict = None       # make_methods' arguments that rebuild it (in another process)
    decisions: dict = None    # what it decided when it ran in another process


METHODS = ("magnitude_global", "magnitude_per_matrix", "magnitude_gradual", "heads",
           "layers", "ffn_neurons", "fisher_mask", "cofi")


class CoFiPruner:
    """masks_fn(model, target) for CoFi (`utils.pruning.cofi`): trains the gates and the weights of the
    model it is given (the sweep passes the dense start weights) for `examples_for(target)`
    training tweets, distilled from that model's logits, folds the gates and returns the masks
    of what was pruned. `records` keeps each target's run."""

    def __init__(self, tokenizer, dataset, train_config, examples_for, distill_alpha=0.5,
                 temperature=2.0, reg_learning_rate=0.01, progress=False):
        self.tokenizer, self.dataset, self.train_config = tokenizer, dataset, train_config
        self._examples = examples_for
        self.reg_learning_rate = reg_learning_rate
        self.distill_alpha, self.temperature, self.progress = distill_alpha, temperature, progress
        self.teacher = None
        self.records = {}

    def __call__(self, model, target):
        from utils.pruning import cofi
        if self.teacher is None and self.distill_alpha > 0:
            self.teacher = train.predict_texts(model, self.tokenizer,
                                               self.dataset["train"]["text"],
                                               max_length=self.train_config.max_length)
        self.records[float(target)] = cofi.cofi_prune(
            model, self.tokenizer, self.dataset, target, self.train_config,
            self.examples_for(target), teacher_logits=self.teacher,
            distill_alpha=self.distill_alpha, temperature=self.temperature,
            reg_learning_rate=self.reg_learning_rate, progress=self.progress)
        return pruning.current_masks(model)

    def examples_for(self, target):
        """Training tweets of the pruning phase at `target` (examples_for: a callable or a
        {target: examples} mapping, which pickles)."""
        if callable(self._examples):
            return self._examples(target)
        examples = budget_of(self._examples, target)
        if examples is None:
            raise ValueError(f"CoFi has no pruning budget for target {target}: examples_for "
                             f"covers {sorted(map(float, self._examples))}")
        return examples

    def record(self):
        return {"runs": self.records}


def _labelled_batches(tokenizer, split, examples, max_length, batch_size, seed):
    from utils.data import batching
    if examples is not None and examples < len(split):
        split = data_lib.subsample({"train": split}, examples, seed=seed)["train"]
    batches, _ = batching.make_batches(tokenizer, split["text"], split["label"],
                                       max_length=max_length, batch_size=batch_size)
    return _serving_batches(batches)


def make_methods(names, tokenizer, importance_split, importance_examples=1024,
                 head_step_fraction=0.1, gradual_steps=4, greedy_layers=False, max_length=64,
                 batch_size=32, seed=42, progress=False, fisher_examples=None, cofi=None,
                 fisher_options=None):
    """The methods `names` (from METHODS) as `Method`s. Head importance and layer losses are
    computed on `importance_examples` tweets of `importance_split` (the training split); the
    Fisher mask search on `fisher_examples` of them (default: the reference's 2,048, in its
    batches of 32), with `fisher_options` ({"rearrange", "tune"} of FisherMaskPruner; default
    neither). cofi: {"dataset", "train_config", "examples_for": training tweets of its
    pruning phase, {target: examples} or a callable, "distill_alpha", "temperature",
    "reg_learning_rate"} for the method "cofi". Each Method keeps these arguments as its
    `recipe`, so `run_baselines(isolate=True)` can rebuild it in a fresh process."""
    from utils.pruning import fisher_mask
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}: choose among {METHODS}")
    batches = None
    if {"heads", "layers"} & set(names):
        batches = _labelled_batches(tokenizer, importance_split, importance_examples,
                                    max_length, batch_size, seed)

    def magnitude(scope):
        return lambda model, target: magnitude_masks(numpy_kernels(model), target, scope)
    factories = {
        "magnitude_global": lambda: Method("magnitude_global", magnitude("global"),
                                           "unstructured"),
        "magnitude_per_matrix": lambda: Method("magnitude_per_matrix", magnitude("per_matrix"),
                                               "unstructured"),
        "magnitude_gradual": lambda: Method("magnitude_gradual", magnitude("global"),
                                            "unstructured", gradual_steps),
        "heads": lambda: Method("heads", HeadImportancePruner(batches, head_step_fraction,
                                                              progress=progress), "head"),
        "layers": lambda: Method("layers", LayerDropper(batches, greedy_layers), "layer"),
        "ffn_neurons": lambda: Method("ffn_neurons", lambda model, target: ffn_neuron_masks(
            numpy_kernels(model), target), "neuron", K=1),
        "fisher_mask": lambda: Method("fisher_mask", fisher_mask.FisherMaskPruner(
            _labelled_batches(tokenizer, importance_split,
                              fisher_examples or fisher_mask.FISHER_EXAMPLES, max_length,
                              fisher_mask.FISHER_BATCH_SIZE, seed),
            **(fisher_options or {})), "head+neuron"),
        "cofi": lambda: Method("cofi", CoFiPruner(tokenizer, progress=progress, **cofi),
                               "head+neuron+sublayer"),
    }
    if "cofi" in names and not cofi:
        raise ValueError("the method 'cofi' trains: pass cofi={'dataset', 'train_config', "
                         "'examples_for', ...}")
    options = {"importance_examples": importance_examples,
               "head_step_fraction": head_step_fraction, "gradual_steps": gradual_steps,
               "greedy_layers": greedy_layers, "max_length": max_length,
               "batch_size": batch_size, "seed": seed, "progress": progress,
               "fisher_examples": fisher_examples, "fisher_options": fisher_options}
    methods = {}
    for name in names:
        methods[name] = factories[name]()
        methods[name].recipe = {"names": [name], "tokenizer": tokenizer,
                                "importance_split": importance_split, **options,
                                "cofi": cofi if name == "cofi" else None}
    return methods


def method_records(methods):
    """What the data-driven methods decided, for the run record: the head pruning order and
    importance steps, the layer order and loss increases, the Fisher search ({name: {...}})."""
    records = {}
    for name, method in methods.items():
        fn = method.masks_fn
        if method.decisions is not None:
            records[name] = method.decisions
        elif isinstance(fn, HeadImportancePruner):
            records[name] = {"order": [list(k) for k in fn.order], "steps": fn.history}
        elif isinstance(fn, LayerDropper):
            records[name] = {"order": fn.order, "loss_increases": fn.increases}
        elif hasattr(fn, "record"):
            records[name] = fn.record()
    return records


def run_baselines(model, tokenizer, dataset, methods, targets, retrain_config,
                  retrain_examples, csv_path=None, save_root=None, seed=42, resume=False,
                  progress=True, distill_alpha=0.5, temperature=2.0, eval_split="test",
                  train_budget=None, isolate=False, chained=False):
    """`mask_sweep` of every `Method` in `methods` ({name: Method}) over `targets`, all with
    the same recovery sample (with `train_budget`, {target: examples}: the same pool and
    budgets, see `mask_sweep`), teacher logits (the dense start model's) and dense reference
    predictions; the CSV at `csv_path` is rewritten after each method, so a crash loses at most
    one method. With `resume`, methods already in that CSV are not run again. Returns the rows
    of all methods.

    chained: every method that prunes the weights it is given in one shot runs as one chain
    through the targets (`mask_sweep(chained=True)`: each target pruned from the previous one's
    recovered model, recovering on what the budget adds); CoFi, which trains its masks from dense
    per target, and gradual methods run per target as before.

    isolate: run each method's sweep in a fresh process (rebuilt from its `recipe`), so the
    memory TensorFlow keeps after every fine-tune (~280 MB, results/exploratory/
    recovery_memory.json) is returned when the method ends; what it decided comes back as
    `method.decisions`.
    """
    frames, done = [], set()
    if resume and csv_path is not None and Path(csv_path).exists():
        previous = pd.read_csv(csv_path)
        previous = previous[previous.method.isin(list(methods))]
        frames.append(previous)
        done = set(previous.method)
        log.info(f"resuming: {sorted(done)} already in {csv_path}")
    todo = [name for name in methods if name not in done]
    if not todo:
        return pd.concat(frames, ignore_index=True)
    max_length = retrain_config.max_length
    recovery = sweep.recovery_data(dataset, tokenizer, model if distill_alpha > 0 else None,
                                   None if train_budget else retrain_examples, seed, max_length)
    reference = train.evaluate(model, tokenizer, dataset[eval_split], max_length=max_length,
                               return_predictions=True)["predictions"]
    shared = {"tokenizer": tokenizer, "dataset": dataset, "targets": targets,
              "retrain_config": retrain_config, "retrain_examples": retrain_examples,
              "seed": seed, "eval_split": eval_split, "progress": progress,
              "distill_alpha": distill_alpha, "temperature": temperature,
              "recovery": recovery, "reference_predictions": reference,
              "train_budget": train_budget}
    with contextlib.ExitStack() as stack:
        if isolate:   # the children start from the same weights, read from disk
            start_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "start"
            saved.save(model, start_dir)
        for name in todo:
            method = methods[name]
            started = time.perf_counter()
            args = {**shared, "method": name, "gradual_steps": method.gradual_steps,
                    "chained": chained and sweep.can_chain(method.masks_fn,
                                                           method.gradual_steps),
                    "mode": method.mode, "K": method.K,
                    "save_dir": None if save_root is None else Path(save_root) / name}
            if isolate:
                frame, method.decisions = _sweep_in_process(start_dir, method, args)
            else:
                frame = mask_sweep(model, masks_fn=method.masks_fn, **args)
            frames.append(frame)
            log.info(f"{name}: {len(frame)} rows in {time.perf_counter() - started:.0f} s",
                  flush=True)
            if csv_path is not None:
                sweep.write_sweep_csv(pd.concat(frames, ignore_index=True), csv_path)
    return pd.concat(frames, ignore_index=True)


def _sweep_in_process(start_dir, method, args):
    """mask_sweep(**args) of `method` in a spawned process (a fresh TensorFlow): its rows and
    decisions."""
    from utils.common.isolation import run_in_fresh_process
    if method.recipe is None:
        raise ValueError(f"method {method.name!r} has no recipe to rebuild it in another "
                         "process: make it with make_methods, or run without isolate")
    try:
        result = run_in_fresh_process(_sweep_child, {"start_dir": str(start_dir),
                                                     "recipe": method.recipe, "args": args},
                                      name=f"the {method.name} sweep")
    except RuntimeError as error:
        raise RuntimeError(f"{error}; the methods before it are saved: rerun with "
                           "resume=True") from None
    return result["frame"], result["decisions"]


def _sweep_child(start_dir, recipe, args):
    """The child's side of `_sweep_in_process`: rebuild the method, sweep, return the rows."""
    model = saved.load_model(start_dir)
    name = recipe["names"][0]
    method = make_methods(**recipe)[name]
    frame = mask_sweep(model, masks_fn=method.masks_fn, **args)
    return {"frame": frame, "decisions": method_records({name: method}).get(name)}


# ------------------------------------------------------------------ the recovery-budget study

BUDGET_STARTS = ("block", "penalty in the loss", "ffn_neurons", "magnitude_global")


def budget_start(method, target, block_dir, baseline_dir, penalty=None):
    """A pruned start point at `target` for notebook 11's recovery-budget study: the block run's
    snapshot (`block_dir`/snapshots), Algorithm 1's threshold on notebook 03's penalty-in-the-
    loss model (`penalty`: its PruningConfig record, for num_blocks and mode), or the dense
    model in `baseline_dir` pruned one-shot by FFN-neuron or global magnitude masks."""
    if method not in BUDGET_STARTS:
        raise ValueError(f"method {method!r}: choose among {BUDGET_STARTS}")
    if method == "block":
        return saved.load_model(Path(block_dir) / "snapshots" / sweep.sparsity_dir_name(target))
    if method == "penalty in the loss":
        if penalty is None:
            raise ValueError("the penalty-in-the-loss start needs `penalty`, the PruningConfig "
                             "record of notebook 03's comparison run")
        model = saved.load_model(Path(block_dir) / "penalty_in_loss" / "best")
        masks, _ = pruning.threshold_masks(numpy_kernels(model), penalty["num_blocks"],
                                           penalty["mode"], target_sparsity=target)
    else:
        model = saved.load_model(baseline_dir)
        kernels = numpy_kernels(model)
        masks = (ffn_neuron_masks(kernels, target) if method == "ffn_neurons"
                 else magnitude_masks(kernels, target, "global"))
    pruning.apply_masks(model, masks)
    return model


def budget_row(method, target, block_dir, baseline_dir, tokenizer, dataset, sample, logits,
               retrain_config, distill_alpha, temperature, reference_predictions, seed=42,
               penalty=None, hidden_alpha=0.0):
    """One recovered point of the recovery-budget study: `budget_start`, the recovery every
    pruned point gets (`sweep.recover` on `sample`, distilled from the dense model's `logits`
    on it, and with hidden_alpha > 0 from its hidden states), then `sweep.scored_row`, with
    recovery_examples and seconds. Picklable in and out, for `isolation.run_in_fresh_process`:
    each point in its own process keeps the study's memory that of one fine-tune."""
    started = time.perf_counter()
    model = budget_start(method, target, block_dir, baseline_dir, penalty)
    teacher = saved.load_model(baseline_dir) if hidden_alpha > 0 else None
    sweep.recover(model, tokenizer, sample, retrain_config, logits, distill_alpha, temperature,
                  teacher=teacher, hidden_alpha=hidden_alpha)
    row = sweep.scored_row(model, tokenizer, dataset, {"method": method}, target, True,
                           reference_predictions=reference_predictions, seed=seed)
    return {**row, "recovery_examples": len(sample["train"]),
            "seconds": time.perf_counter() - started}
