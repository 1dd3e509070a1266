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

import logging
import math

import numpy as np

from utils.encoder import model as model_lib
from utils.pruning import block as pruning
from utils.pruning.importance import (
    head_gate_gradients_fn,
    serving_batches,
    task_loss_fn,
)
from utils.pruning.units import (
    head_masks,
    head_units,
    layer_ids,
    layer_masks,
    layer_units,
    neuron_units,
    select_for_target,
    units_masks,
)

log = logging.getLogger(__name__)

MAGNITUDE_SCOPES = ("global", "per_matrix")
ATTENTION = ("query", "key", "value", "output")


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



# ------------------------------------------------------------------ 4. FFN neurons

def ffn_neuron_scores(kernels):
    """{layer: L2 norm of each neuron's input column and output row together}."""
    return {i: np.sqrt((np.asarray(kernels[f"layer_{i}/ffn/input"], np.float64) ** 2).sum(0)
                       + (np.asarray(kernels[f"layer_{i}/ffn/output"], np.float64) ** 2).sum(1))
            for i in layer_ids(kernels) if f"layer_{i}/ffn/input" in kernels}


def ffn_neuron_masks(kernels, sparsity):
    """Prune whole FFN neurons, lowest score (`ffn_neuron_scores`) first over all layers,
    until `sparsity` of all weights in `kernels` are zero."""
    kernels = {n: np.asarray(k) for n, k in kernels.items()}
    scores = ffn_neuron_scores(kernels)
    units = sorted(neuron_units(kernels), key=lambda u: (scores[u.key[0]][u.key[1]], u.key))
    return units_masks(kernels, select_for_target(units, kernels, sparsity, "FFN neurons"))


# ------------------------------------------------------------------ 2. head importance



def head_importance(model, batches, normalize=True, gate_fn=None):
    """Michel et al.'s I_h = sum over batches of n_b |dL_b/dg_h| / N, per layer
    ({layer: array of heads}); with `normalize`, divided by the layer's L2 norm.
    `batches`: a labelled `utils.data.batching.TweetBatches` (or list of (inputs, labels))."""
    gate_fn = gate_fn or head_gate_gradients_fn(model)
    layer_ids = [i for i, layer in enumerate(model_lib.transformer_layers(model))
                 if layer.attention.num_heads > 0]
    totals, count = None, 0
    for x, y in (batches if isinstance(batches, list) else serving_batches(batches)):
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
        self.batches = batches if isinstance(batches, list) else serving_batches(batches)
        self.step_fraction = step_fraction
        self.normalize = normalize
        self.progress = progress
        self.order, self.history = [], []
        self._gate_fn = None

    def extend(self, model, num_heads):
        config = model.encoder_config
        kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
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
                          f"{len(self.order)}/{len(all_heads)} heads")
        finally:
            model.set_weights(start)

    def __call__(self, model, target):
        kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
        size = model.encoder_config.head_size
        units = head_units(kernels, size)
        needed = len(select_for_target(units, kernels, target, "attention heads"))
        self.extend(model, needed)
        return head_masks(kernels, self.order[:needed], size)


# ------------------------------------------------------------------ 3. layer dropping

def mean_loss(model, batches, loss_fn=None):
    """Mean cross-entropy of `model` (dropout off) over labelled `batches`."""
    loss_fn = loss_fn or task_loss_fn(model)
    total, count = 0.0, 0
    for x, y in (batches if isinstance(batches, list) else serving_batches(batches)):
        total += len(y) * float(loss_fn(x["input_ids"], x["attention_mask"],
                                        np.asarray(y, np.int32)))
        count += len(y)
    return total / count


def layer_removal_increases(model, batches, removed=(), loss_fn=None):
    """{layer: training-loss increase when that layer (too) is removed}, relative to the model
    with the layers `removed` already removed. The model's weights are restored."""
    loss_fn = loss_fn or task_loss_fn(model)
    kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
    start = model.get_weights()
    try:
        pruning.apply_masks(model, layer_masks(kernels, removed))
        base = mean_loss(model, batches, loss_fn)
        increases = {}
        for i in layer_ids(kernels):
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
        self.batches = batches if isinstance(batches, list) else serving_batches(batches)
        self.greedy = greedy
        self.order, self.increases = None, []

    def compute_order(self, model):
        loss_fn = task_loss_fn(model)
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
        kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
        if self.order is None:
            self.compute_order(model)
        by_key = {u.key[0]: u for u in layer_units(kernels)}
        units = [by_key[i] for i in self.order]
        return units_masks(kernels, select_for_target(units, kernels, target, "layers"))


# ------------------------------------------------------------------ the methods, by name



# ------------------------------------------------------------------ the recovery-budget study


