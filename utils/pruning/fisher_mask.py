"""Post-training mask search with Fisher information, a peer of block pruning.

Kwon et al., "A Fast Post-Training Pruning Framework for Transformers" (NeurIPS 2022; github
WoosukKwon/retraining-free-pruning), in this project's masks format (`utils.pruning.baselines`):

1. **Fisher information of the masks.** A mask m_h on each head's context and m_j on each FFN
   neuron's activation, all 1. Their gradients are those of scaling the head's attention-output
   rows and the neuron's FFN-output row (`baselines.head_gate_gradients_fn(neurons=True)`).
   As in the reference (prune/fisher.py: collect_mask_grads, compute_fisher_info), the diagonal
   Fisher of mask i is sum_b (dL_b/dm_i)^2, with L_b the mean cross-entropy of batch b. It uses
   the reference's defaults: 2,048 training tweets in batches of 32.
2. **Mask search under a budget** (prune/search.py: search_mac). Heads and neurons are ranked
   globally by Fisher importance. For every number n_h of kept heads, the most important neurons
   that fit in the rest of the budget are kept. The (n_h, n_n) with the largest total importance
   wins. With one cost per head and one per neuron this is the exact optimum of the knapsack
   (see the brute-force test).
   - The reference's budget is MACs at a sequence length. Ours is the encoder's linear weights:
     a head is 4 * hidden * head_size weights and a neuron 2 * hidden. That is the quantity every
     method of the comparison is matched on, and it equals the linear layers' MACs per token.

3. **Least-squares mask tuning** (prune/rescale.py: rescale_mask), optional (`tune=True`):
   layer by layer, the kept heads' and neurons' masks become real numbers, chosen by linear
   least squares so that each sublayer's output (before its LayerNorm) on the pruned model's
   own inputs matches the dense model's (`least_squares_mask_tuning`). The tuned values are
   returned as the mask's entries on the heads' output rows and the neurons' FFN-output rows
   (0 stays 0), so every tool that applies masks applies them.

4. **Mask rearrangement** (prune/rearrange.py), optional (`rearrange=True`, applied before
   the tuning as in the reference): per layer, the same number of units kept, chosen again with
   the block-diagonal Fisher (`greedy_rearrange`).

The rearrangement and the tuning repair a model that is never retrained; in this comparison
every method's masks get the same recovery fine-tune (`utils.pruning.sweep.recover`) afterwards, and
notebook 07 runs the variant that scored best on validation before recovery
(`options_on_validation` of scripts/explore_fisher_tuning.py's runs).
"""
from __future__ import annotations

import numpy as np

from utils.encoder import model as model_lib
from utils.pruning.block import apply_masks
from utils.pruning.importance import fisher_information
from utils.pruning.units import head_units, neuron_units, search_masks, units_masks

MAX_ABS_SCALE = 10.0     # the reference stops tuning when a tuned mask leaves [-10, 10]


def greedy_rearrange(keep, gradients):
    """Kwon et al.'s mask rearrangement of one layer (prune/rearrange.py): the same number of
    units kept, but which ones chosen with the block-diagonal Fisher of the layer, i.e. the
    loss increase of pruning a set S taken as ||sum over S of g_i||^2 (g_i: unit i's mask
    gradients, one entry per batch) instead of sum ||g_i||^2. Greedy, as the reference: start
    from the units of least ||g_i||^2, add the others one at a time in that order, each time
    dropping from the pruned set the unit whose removal leaves the smallest norm.
    keep: bool [units]; gradients: [batches, units]. Returns the new keep mask."""
    keep = np.asarray(keep, bool)
    pruned_count = int(np.sum(~keep))
    if pruned_count in (0, len(keep)):
        return keep.copy()
    vectors = np.asarray(gradients, np.float64).T              # [units, batches]
    order = np.argsort(np.sum(vectors ** 2, axis=1), kind="stable")
    pruned = list(order[:pruned_count])
    for unit in order[pruned_count:]:
        pruned.append(unit)
        members = vectors[pruned]
        without = members.sum(axis=0) - members
        del pruned[int(np.argmin(np.sum(without ** 2, axis=1)))]
    rearranged = np.ones_like(keep)
    rearranged[pruned] = False
    return rearranged


def rearrange_masks(keep, gradients):
    """`greedy_rearrange` for every layer: keep {layer: bool [units]}, gradients {layer:
    [batches, units]} -> {layer: bool [units]}."""
    return {i: greedy_rearrange(k, gradients[i]) for i, k in keep.items()}


def _solve(gram, right):
    """The least-squares solution of gram @ x = right (the normal equations; lstsq copes with
    a singular gram, e.g. a unit whose output is always 0)."""
    return np.linalg.lstsq(gram, right, rcond=None)[0]


def _tokens(array, mask, cls_only=False):
    """[B, T, D] activations -> [N, D] rows of the real (not padding) tokens, or of the first
    token only."""
    array = np.asarray(array, np.float64)
    if cls_only:
        return array[:, 0, :]
    return array[np.asarray(mask, bool)]


def attention_normal_equations(attention, teacher, hidden_s, hidden_t, batches, heads):
    """(A^T A, A^T b) of the least-squares problem for the masks of `heads` (kept head indices)
    of `attention` (the pruned model's SelfAttention): A's columns are each head's output
    (context_h @ W_O[rows of h]) at every real token of the pruned model's inputs `hidden_s`,
    plus a column of ones (the reference's free offset); b is the dense sublayer's output
    (`teacher`, before LayerNorm, on its own inputs `hidden_t`) minus the output bias and the
    pruned model's residual input."""
    size = attention.head_size
    kernel = np.asarray(attention.output_dense.kernel, np.float64)
    bias = np.asarray(attention.output_dense.bias, np.float64)
    n = len(heads)
    gram, right = np.zeros((n + 1, n + 1)), np.zeros(n + 1)
    for (x, _), h_s, h_t in zip(batches, hidden_s, hidden_t):
        mask = x["attention_mask"]
        context = _tokens(attention.context(h_s, mask), mask)
        outputs = np.stack([context[:, h * size:(h + 1) * size] @ kernel[h * size:(h + 1) * size]
                            for h in heads] + [np.ones((len(context), kernel.shape[1]))])
        dense = _tokens(h_t + teacher.output_dense(teacher.context(h_t, mask)), mask)
        target = dense - bias - _tokens(h_s, mask)
        gram += np.einsum("itd,jtd->ij", outputs, outputs)
        right += np.einsum("itd,td->i", outputs, target)
    return gram, right


def ffn_normal_equations(ffn, teacher, hidden_s, hidden_t, batches, neurons, cls_only=False):
    """(A^T A, A^T b) for the masks of `neurons` (kept indices) of `ffn` (the pruned model's
    FeedForward): A's column j is activation_j * W_out[j] at every real token (or only the first,
    `cls_only`, for the last layer of a classifier, as the reference does); b is the dense
    sublayer's output before LayerNorm minus the output bias and the pruned model's residual.
    Built as the reference does, without A: A^T A = (W W^T) * (H^T H), A^T b_j = sum_t
    H_tj (W_j . b_t)."""
    weights = np.asarray(ffn.output_dense.kernel, np.float64)[neurons]
    bias = np.asarray(ffn.output_dense.bias, np.float64)
    n = len(neurons)
    activation_gram, right = np.zeros((n, n)), np.zeros(n)
    for (x, _), h_s, h_t in zip(batches, hidden_s, hidden_t):
        mask = x["attention_mask"]
        activations = _tokens(ffn.inner(h_s), mask, cls_only)[:, neurons]
        dense = _tokens(h_t + teacher.output_dense(teacher.inner(h_t)), mask, cls_only)
        target = dense - bias - _tokens(h_s, mask, cls_only)
        activation_gram += activations.T @ activations
        right += np.sum(activations * (target @ weights.T), axis=0)
    return (weights @ weights.T) * activation_gram, right


def least_squares_mask_tuning(model, teacher, batches, max_abs_scale=MAX_ABS_SCALE):
    """Kwon et al.'s mask tuning, in place: `model` is the pruned model (masked weights zero,
    same shapes as `teacher`, the dense model). Layer by layer, from the embeddings, the kept
    heads' masks (attention-output rows; not in layer 0, as the reference) and then the kept
    neurons' masks (FFN-output rows; in the last layer on the [CLS] token only) are set to the
    least-squares solution, the pruned model's inputs to each layer coming from its already
    tuned layers. Stops, as the reference, at the first solution outside
    [-max_abs_scale, max_abs_scale] or not finite. Returns {(layer, "heads"|"neurons"):
    (kept indices, scales)} of what it applied."""
    layers, dense_layers = (model_lib.transformer_layers(m) for m in (model, teacher))
    hidden_s = [model.get_layer("encoder").embeddings(x["input_ids"]) for x, _ in batches]
    hidden_t = [teacher.get_layer("encoder").embeddings(x["input_ids"]) for x, _ in batches]
    applied = {}

    def accept(key, kept, scales, kernel):
        if not np.all(np.isfinite(scales)) or np.max(np.abs(scales)) > max_abs_scale:
            return False
        width = model.encoder_config.head_size if key[1] == "heads" else 1
        rows = np.asarray(kernel)
        kernel.assign(rows * _row_factors(rows.shape[0], kept, scales, width)[:, None])
        applied[key] = (np.asarray(kept), np.asarray(scales))
        return True

    for i, (layer, dense) in enumerate(zip(layers, dense_layers)):
        attention, ffn = layer.attention, layer.ffn
        if attention.num_heads > 0 and i > 0:
            size = attention.head_size
            rows = np.asarray(attention.output_dense.kernel)
            heads = [h for h in range(attention.num_heads)
                     if np.any(rows[h * size:(h + 1) * size])]
            if heads:
                scales = _solve(*attention_normal_equations(
                    attention, dense.attention, hidden_s, hidden_t, batches, heads))[:-1]
                if not accept((i, "heads"), heads, scales, attention.output_dense.kernel):
                    return applied
        masks = [x["attention_mask"] for x, _ in batches]
        hidden_s = [attention(h, m) for h, m in zip(hidden_s, masks)]
        hidden_t = [dense.attention(h, m) for h, m in zip(hidden_t, masks)]
        if ffn.intermediate_size > 0:
            rows = np.asarray(ffn.output_dense.kernel)
            neurons = [j for j in range(ffn.intermediate_size) if np.any(rows[j])]
            if neurons:
                scales = _solve(*ffn_normal_equations(
                    ffn, dense.ffn, hidden_s, hidden_t, batches, neurons,
                    cls_only=i == len(layers) - 1))
                if not accept((i, "neurons"), neurons, scales, ffn.output_dense.kernel):
                    return applied
        hidden_s = [ffn(h) for h in hidden_s]
        hidden_t = [dense.ffn(h) for h in hidden_t]
    return applied


def _row_factors(rows, kept, scales, width):
    """Per-row factors of an output kernel: unit u's `width` rows get its scale, others 1."""
    factor = np.ones(rows, np.float32)
    for unit, scale in zip(kept, scales):
        factor[unit * width:(unit + 1) * width] = scale
    return factor


def tuned_masks(masks, applied, head_size):
    """`masks` (binary) with the tuned scales of `least_squares_mask_tuning` on the rows they
    multiply: a head's attention-output rows, a neuron's FFN-output row."""
    masks = {name: np.array(m, np.float32) for name, m in masks.items()}
    for (layer, kind), (kept, scales) in applied.items():
        name = f"layer_{layer}/" + ("attention/output" if kind == "heads" else "ffn/output")
        width = head_size if kind == "heads" else 1
        masks[name] *= _row_factors(len(masks[name]), kept, scales, width)[:, None]
    return masks


def options_on_validation(runs):
    """{"rearrange": bool, "tune": bool}: the FisherMaskPruner variant with the highest mean
    validation macro-F1 over its targets in `runs`, the record scripts/explore_fisher_tuning.py
    writes (results/exploratory/fisher_tuning.json: {"rows": [{"target", "rearranged",
    "tuned", "val_macro_f1"}, ...]}). Only variants measured at every target compete; ties go
    to the variant with fewer steps."""
    rows = runs.get("rows") if isinstance(runs, dict) else None
    if not rows:
        raise ValueError("the tuning runs hold no 'rows': re-run `.venv/bin/python "
                         "scripts/explore_fisher_tuning.py` or set the options explicitly")
    scores, targets = {}, set()
    for row in rows:
        value = row.get("val_macro_f1")
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"a tuning run has no finite 'val_macro_f1' ({row}): re-run "
                             "scripts/explore_fisher_tuning.py")
        variant = (bool(row.get("rearranged")), bool(row.get("tuned")))
        scores.setdefault(variant, {})[row["target"]] = value
        targets.add(row["target"])
    complete = {v: float(np.mean(list(s.values()))) for v, s in scores.items()
                if set(s) == targets}
    best = max(complete, key=lambda v: (complete[v], -sum(v)))
    return {"rearrange": best[0], "tune": best[1]}


class FisherMaskPruner:
    """masks_fn(model, target) for the Fisher mask search. The Fisher information is computed
    once, on the model as it is at the first call (the sweep calls it with the dense start
    weights every time). `chosen` records the kept heads and neurons per layer for each target.
    """

    def __init__(self, batches, tune=False, rearrange=False):
        self.batches = list(batches)
        self.tune, self.rearrange = tune, rearrange
        self.fisher = None
        self.chosen = {}

    def __call__(self, model, target):
        if not 0 <= target < 1:
            raise ValueError(f"target sparsity must be in [0, 1), got {target}")
        kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
        if self.fisher is None:
            self.fisher = fisher_information(model, self.batches)
        heads = head_units(kernels, model.encoder_config.head_size)
        neurons = neuron_units(kernels)
        head_costs = {u.size(kernels) for u in heads}
        neuron_costs = {u.size(kernels) for u in neurons}
        if len(head_costs) > 1 or len(neuron_costs) > 1:
            raise ValueError("the Fisher mask search needs every head (and every neuron) to "
                             "cost the same: run it on the dense model, not a compacted one")
        total = sum(np.size(k) for k in kernels.values())
        head_imp = [self.fisher["heads"][i][h] for i, h in (u.key for u in heads)]
        neuron_imp = [self.fisher["neurons"][i][j] for i, j in (u.key for u in neurons)]
        keep_heads, keep_neurons = search_masks(head_imp, neuron_imp, head_costs.pop(),
                                                neuron_costs.pop(), (1 - target) * total)
        kept = {"heads": {heads[k].key for k in keep_heads},
                "neurons": {neurons[k].key for k in keep_neurons}}
        if self.rearrange:   # the same count per layer, other units (block-diagonal Fisher)
            for kind, units in (("heads", heads), ("neurons", neurons)):
                by_layer = {}
                for unit in units:
                    by_layer.setdefault(unit.key[0], []).append(unit.key in kept[kind])
                new = rearrange_masks({i: np.array(k) for i, k in by_layer.items()},
                                      self.fisher["gradients"][kind])
                kept[kind] = {(i, j) for i, k in new.items() for j in np.flatnonzero(k)}
        pruned = [u for u in heads if u.key not in kept["heads"]] + \
                 [u for u in neurons if u.key not in kept["neurons"]]
        layer_ids = sorted({u.key[0] for u in heads + neurons})
        self.chosen[float(target)] = {
            f"{kind}_kept": {i: sum(key[0] == i for key in kept[kind]) for i in layer_ids}
            for kind in ("heads", "neurons")}
        masks = units_masks(kernels, pruned)
        if not self.tune:
            return masks
        # tune on the same tweets, on a copy of the model with the masks applied; `model`
        # itself (dense, untouched) is the teacher
        student = model_lib.build_classifier(model.encoder_config)
        student.set_weights(model.get_weights())
        apply_masks(student, masks)
        applied = least_squares_mask_tuning(student, model, self.batches)
        self.chosen[float(target)]["tuned"] = {
            f"{layer}/{kind}": {"min": float(np.min(s)), "max": float(np.max(s))}
            for (layer, kind), (_, s) in applied.items()}
        return tuned_masks(masks, applied, model.encoder_config.head_size)

    def record(self):
        """What the search decided, for the run record (per-layer sums of the Fisher
        information, and the units kept per layer at each target)."""
        if self.fisher is None:
            return {}
        return {"fisher_heads": {i: v.tolist() for i, v in self.fisher["heads"].items()},
                "fisher_neurons_sum": {i: float(v.sum())
                                       for i, v in self.fisher["neurons"].items()},
                "chosen": self.chosen}
