"""Attention heads and FFN neurons as pruning groups that span every weight of the unit.

A head of layer i is one group across its query, key and value columns (and their biases) and
its attention-output rows; an FFN neuron is one group across its input column, its input bias
and its output row. Zeroing such a group is the same as removing the unit (compaction then
drops it: see tests/test_units.py), so a group norm of zero means "removable", unlike the
per-matrix row/column groups of `utils.pruning.block`, where a head is only removable if every one of
its four matrices happens to lose it.

`SPANS` is the one definition of what a unit spans; two views read it:

- over named kernels, the masks format every method shares (`Unit`, `head_units`,
  `neuron_units`, `units_masks`, `select_for_target`), for the peers and the baselines;
- over a model's variables, biases included (`unit_parts`, `unit_norms`, `scale_units`,
  `alive_units`), for block pruning's proximal step: `unit_norms` works on numpy (`xp=np`) and
  on Keras tensors (`xp=keras.ops`, differentiable), as `block.group_norms` does;
  `prox_scale` is the group soft-threshold (the proximal operator of the group lasso) and
  `scale_units` applies per-unit factors (0 = pruned) in place.

Then progressive unit pruning through the targets (`ProgressiveUnitPruning`).
"""
import dataclasses
import re
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from utils import saved
from utils.common.io import cost_dir_name, sparsity_dir_name
from utils.data import batching
from utils.encoder import model as model_lib
from utils.measurement import latency
from utils.pruning import block as pruning
from utils.pruning.importance import (
    FISHER_BATCH_SIZE,
    FISHER_EXAMPLES,
    fisher_information,
    labelled_batches,
)
from utils.training import train
from utils.training.train import inner_optimizer, optimizer_steps

KINDS = ("heads", "neurons")
SELECTIONS = ("rms", "fisher")   # how ProgressiveUnitPruning picks the units of a period

# What a unit spans, the one definition every view below reads: {kind: ((kernel, axis), ...)}
# with axis 1 = the unit's columns of that kernel (and its bias entries), 0 = its rows.
SPANS = {"heads": (("attention/query", 1), ("attention/key", 1), ("attention/value", 1),
                   ("attention/output", 0)),
         "neurons": (("ffn/input", 1), ("ffn/output", 0))}


# ------------------------------------------------------------------ units over named kernels
# (the masks format of every method: {kernel name: 0/1 array of the kernel's shape})

_LAYER = re.compile(r"layer_(\d+)/")


def masks_sparsity(masks):
    """Share of zeros in `masks` (over all their entries)."""
    return sum(float((m == 0).sum()) for m in masks.values()) / sum(m.size for m in masks.values())


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


def layer_ids(kernels):
    return sorted({int(_LAYER.match(n).group(1)) for n in kernels if _LAYER.match(n)})


def head_units(kernels, head_size):
    """One unit per attention head: query/key/value columns and attention-output rows."""
    units = []
    for i in layer_ids(kernels):
        if f"layer_{i}/attention/value" not in kernels:
            continue
        for h in range(kernels[f"layer_{i}/attention/value"].shape[1] // head_size):
            cols = slice(h * head_size, (h + 1) * head_size)
            units.append(Unit((i, h), [(f"layer_{i}/{name}", axis, cols)
                                       for name, axis in SPANS["heads"]]))
    return units


def head_masks(kernels, heads, head_size):
    """Masks pruning `heads` (iterable of (layer, head))."""
    by_key = {u.key: u for u in head_units(kernels, head_size)}
    return units_masks(kernels, [by_key[tuple(h)] for h in heads])


def neuron_units(kernels):
    """One unit per FFN neuron j of each layer: column j of ffn/input and row j of ffn/output."""
    units = []
    for i in layer_ids(kernels):
        if f"layer_{i}/ffn/input" not in kernels:
            continue
        for j in range(kernels[f"layer_{i}/ffn/input"].shape[1]):
            units.append(Unit((i, j), [(f"layer_{i}/{name}", axis, [j])
                                       for name, axis in SPANS["neurons"]]))
    return units


def layer_units(kernels):
    """One unit per encoder layer: all of its kernels, whole."""
    return [Unit((i,), [(n, 0, slice(None)) for n in kernels if n.startswith(f"layer_{i}/")])
            for i in layer_ids(kernels)]


def layer_masks(kernels, layers):
    """Masks removing the encoder layers `layers` (every kernel of each masked)."""
    by_key = {u.key[0]: u for u in layer_units(kernels)}
    return units_masks(kernels, [by_key[i] for i in layers])


def search_masks(head_importance, neuron_importance, head_cost, neuron_cost, budget):
    """The heads and neurons to keep: indices into `head_importance` and `neuron_importance`
    (1-D, any order) maximising the total importance kept with
    n_heads * head_cost + n_neurons * neuron_cost <= budget (the reference's search_mac)."""
    head_importance = np.asarray(head_importance, np.float64)
    neuron_importance = np.asarray(neuron_importance, np.float64)
    if head_cost <= 0 or neuron_cost <= 0:
        raise ValueError(f"unit costs must be positive, got head_cost={head_cost}, "
                         f"neuron_cost={neuron_cost}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    head_order = np.argsort(-head_importance, kind="stable")
    neuron_order = np.argsort(-neuron_importance, kind="stable")
    head_kept = np.concatenate([[0.0], np.cumsum(head_importance[head_order])])
    neuron_kept = np.concatenate([[0.0], np.cumsum(neuron_importance[neuron_order])])
    best = (-np.inf, 0, 0)
    for n_heads in range(len(head_order) + 1):
        rest = budget - n_heads * head_cost
        if rest < 0:
            break
        n_neurons = min(int(rest // neuron_cost), len(neuron_order))
        total = head_kept[n_heads] + neuron_kept[n_neurons]
        if total > best[0]:
            best = (total, n_heads, n_neurons)
    _, n_heads, n_neurons = best
    return np.sort(head_order[:n_heads]), np.sort(neuron_order[:n_neurons])


class UnreachableSparsity(ValueError):
    """Even pruning every unit of a structured method leaves the target out of reach."""


# ------------------------------------------------------------------ units over a model's variables


def unit_parts(model):
    """{(layer, kind): (unit width, [(variable, axis the units run along)])} for every layer
    with heads / neurons left, from SPANS: the kernels' columns, then the biases of those
    columns, then the kernels' rows. A head's width is head_size; a neuron's is 1."""
    parts = {}
    for i, layer in enumerate(model_lib.transformer_layers(model)):
        attention, ffn = layer.attention, layer.ffn
        dense = {"attention/query": attention.query, "attention/key": attention.key,
                 "attention/value": attention.value, "attention/output": attention.output_dense,
                 "ffn/input": ffn.input_dense, "ffn/output": ffn.output_dense}
        for kind, present, width in (("heads", attention.num_heads > 0,
                                      model.encoder_config.head_size),
                                     ("neurons", ffn.intermediate_size > 0, 1)):
            if present:
                spans = SPANS[kind]
                parts[(i, kind)] = (width, [
                    *((dense[name].kernel, 1) for name, axis in spans if axis == 1),
                    *((dense[name].bias, 0) for name, axis in spans if axis == 1),
                    *((dense[name].kernel, 0) for name, axis in spans if axis == 0)])
    return parts


def _per_unit(array, axis, width, xp):
    """`array` with the units along `axis` -> (units, everything else of one unit)."""
    if axis == 1:
        array = xp.transpose(array)
    return xp.reshape(array, (array.shape[0] // width, -1))


def unit_norms(model, xp=np):
    """{(layer, kind): L2 norm of every unit's weights, shape (units,)}."""
    norms = {}
    for key, (width, parts) in unit_parts(model).items():
        squares = 0.0
        for variable, axis in parts:
            values = np.asarray(variable) if xp is np else variable
            squares = squares + xp.sum(_per_unit(values, axis, width, xp) ** 2, axis=1)
        norms[key] = xp.sqrt(squares)
    return norms


def prox_scale(norms, threshold):
    """Group soft-threshold factors max(0, 1 - threshold / ||g||): multiplying group g by its
    factor is the proximal step of threshold * ||g||_2 (exactly 0 for ||g|| <= threshold)."""
    norms = np.asarray(norms, dtype=np.float64)
    if not np.all(np.isfinite(threshold)) or np.any(np.asarray(threshold) < 0):
        raise ValueError(f"threshold = {threshold!r}: must be finite and >= 0")
    with np.errstate(divide="ignore", invalid="ignore"):
        factors = np.where(norms > threshold, 1.0 - threshold / np.where(norms > 0, norms, 1.0),
                           0.0)
    return factors


def scale_units(model, factors):
    """Multiply every weight of unit u of (layer, kind) by factors[(layer, kind)][u], in place
    (factor 0 zeroes the unit exactly; 1 leaves it)."""
    for key, (width, parts) in unit_parts(model).items():
        if key not in factors:
            continue
        factor = np.asarray(factors[key], dtype=np.float32)
        for variable, axis in parts:
            per_element = np.repeat(factor, width)
            shape = [1] * len(variable.shape)
            shape[axis] = per_element.size
            variable.assign(ops.convert_to_numpy(variable) * per_element.reshape(shape))


def alive_units(model):
    """{(layer, kind): 1.0 for units with any non-zero weight, 0.0 for empty ones}."""
    return {key: (norms > 0).astype(np.float32) for key, norms in unit_norms(model).items()}


# ------------------------------------------------------------------ progressive unit pruning

def unit_weight_counts(model):
    """{(layer, kind): encoder-linear (kernel) weights per unit}: 4 * hidden * head_size for a
    head (its Q/K/V columns and output rows), 2 * hidden for a neuron. Biases are not counted,
    as in `pruning.sparsity_summary`'s encoder-linear sparsity."""
    config = model.encoder_config
    return {key: (4 if key[1] == "heads" else 2) * config.hidden_size * (width if key[1] == "heads" else 1)
            for key, (width, _) in unit_parts(model).items()}


def select_units(norms, counts, alive, target, total):
    """Units to switch off so that pruned encoder-linear weights reach `target` * `total`:
    the alive units with the smallest RMS weight (norm / sqrt(weights), comparable between
    heads and neurons), fewest first until the target is met. Returns {key: bool array}."""
    pruned = sum(counts[k] * float(np.sum(~alive[k])) for k in alive)
    candidates = sorted((norms[k][u] / np.sqrt(counts[k]), k, u)
                        for k in alive for u in np.flatnonzero(alive[k]))
    chosen = {k: np.zeros_like(alive[k]) for k in alive}
    for _, key, unit in candidates:
        if pruned >= target * total - 1e-9:
            break
        chosen[key][unit] = True
        pruned += counts[key]
    return chosen


def select_by_importance(importance, counts, alive, target, total):
    """Units to switch off so that pruned encoder-linear weights reach `target` * `total`,
    keeping the alive units of the largest total `importance` that fit in the remaining
    (1 - target) * total weights: the exact knapsack of Kwon et al.'s mask search
    (`fisher_mask.search_masks`), over the units still alive. Needs one weight count for every
    head and one for every neuron (the unit groups of an uncompacted model). Returns
    {key: bool array}."""
    flat = {kind: [(k, u) for k in sorted(alive) if k[1] == kind
                   for u in np.flatnonzero(alive[k])] for kind in KINDS}
    costs = {kind: {counts[k] for k in alive if k[1] == kind} for kind in KINDS}
    if any(len(c) > 1 for c in costs.values()):
        raise ValueError(f"unit weight counts {costs}: importance selection needs every head "
                         "(and every neuron) to have the same size")
    cost = {kind: (c.pop() if c else 1) for kind, c in costs.items()}
    keep_heads, keep_neurons = search_masks(
        [importance[k][u] for k, u in flat["heads"]],
        [importance[k][u] for k, u in flat["neurons"]],
        cost["heads"], cost["neurons"], (1 - target) * total)
    chosen = {k: np.array(a, bool) for k, a in alive.items()}   # alive and not kept -> off
    for kind, kept in (("heads", keep_heads), ("neurons", keep_neurons)):
        for index in kept:
            key, unit = flat[kind][index]
            chosen[key][unit] = False
    return chosen


def fisher_importance(batches):
    """importance(model) -> {(layer, kind): diagonal Fisher information of each unit's mask}
    over labelled `batches` (`fisher_mask.fisher_information`, Kwon et al. 2022), for
    `ProgressiveUnitPruning(importance=...)`. Recomputed on the model as it is at each
    period's start."""

    def importance(model):
        fisher = fisher_information(model, batches)
        return {(layer, kind): values for kind in KINDS
                for layer, values in fisher[kind].items()}
    return importance


def fisher_batches(tokenizer, split, examples=None, max_length=64, seed=42):
    """Labelled batches for `fisher_importance`: `examples` stratified tweets of `split`
    (default the reference's 2,048; all of a smaller split) in the reference's batches of 32."""
    return labelled_batches(tokenizer, split, examples or FISHER_EXAMPLES, max_length,
                             FISHER_BATCH_SIZE, seed)


def selection_on_validation(runs):
    """The selection ("rms" or "fisher") whose block run scored the higher mean validation
    macro-F1 after recovery over its targets, from `runs`, the record
    scripts/explore_fisher_selection.py writes (results/exploratory/fisher_selection.json):
    {"validation_macro_f1": [{"target", "fisher_val_after_recovery",
    "rms_val_after_recovery"}, ...]}. Ties keep "rms", the simpler rule."""
    rows = runs.get("validation_macro_f1") if isinstance(runs, dict) else None
    if not rows:
        raise ValueError("the selection runs hold no 'validation_macro_f1' rows: re-run "
                         "`.venv/bin/python scripts/explore_fisher_selection.py` or set the "
                         "selection explicitly")
    means = {}
    for selection in SELECTIONS:
        values = [row.get(f"{selection}_val_after_recovery") for row in rows]
        if any(not isinstance(v, (int, float)) or not np.isfinite(v) for v in values):
            raise ValueError(f"the selection runs lack a finite '{selection}_val_after_recovery'"
                             f" for some target ({values}): re-run "
                             "scripts/explore_fisher_selection.py")
        means[selection] = float(np.mean(values))
    return max(SELECTIONS, key=lambda name: (means[name], name == "rms"))


def adam_moments(optimizer, variable):
    """[first moment, second moment] of `variable` in a Keras 3 Adam(W) (unwrapped from a
    LossScaleOptimizer); [] without an optimizer or before it is built."""
    optimizer = inner_optimizer(optimizer)
    if optimizer is None or not getattr(optimizer, "_momentums", None):
        return []
    index = optimizer._get_variable_index(variable)
    return [optimizer._momentums[index], optimizer._velocities[index]]


def zero_units(model, off, optimizer=None):
    """Set every weight of the units in `off` ({key: bool array}) to exactly 0, and their Adam
    moments too: a unit whose weights are all 0 gets exactly 0 gradient (its value columns and
    output rows are 0, so nothing flows through it), so with clean moments it stays 0."""
    parts = unit_parts(model)
    for key, units in off.items():
        if not np.any(units):
            continue
        width, variables = parts[key]
        keep = np.repeat(~np.asarray(units), width).astype(np.float32)
        for variable, axis in variables:
            shape = [1] * len(variable.shape)
            shape[axis] = keep.size
            targets = [variable]
            targets += adam_moments(optimizer, variable)
            for target in targets:
                target.assign(ops.convert_to_numpy(target) * keep.reshape(shape))


# ------------------------------------------------------------------ group families

class UnitGroups:
    """Heads and FFN neurons, each one group across all its weights (method `block`). A unit
    whose weights are all 0 gets exactly 0 gradient, so a zeroed unit stays zero."""
    name = "block"
    zero_is_stable = True

    def norms(self, model):
        return unit_norms(model)

    def counts(self, model):
        return unit_weight_counts(model)

    def scale(self, model, factors):
        scale_units(model, factors)

    def zero(self, model, off, optimizer=None):
        zero_units(model, off, optimizer)


class MatrixGroups:
    """The proposal's literal groups (equations 13/14, method `block_seed`): rows of K column
    blocks or columns of K row blocks of every encoder kernel, each kernel on its own
    (`pruning.group_kinds`; kernel weights only, no biases). A zeroed group still receives
    gradient through the input it multiplies, so it is held at zero after every step."""
    name = "block_seed"
    zero_is_stable = False

    def __init__(self, num_blocks=1, mode="inner"):
        if mode not in ("inner", "row", "column"):
            raise ValueError(f"mode = {mode!r}: MatrixGroups needs groups that do not overlap "
                             "('inner', 'row' or 'column'), so that their weights add up")
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"num_blocks (K) = {num_blocks!r}: must be a positive int")
        self.num_blocks, self.mode = num_blocks, mode

    def _kernels(self, model):
        """{(kernel name, kind): kernel variable} of the encoder (no pooler)."""
        kernels = model_lib.prunable_kernels(model, include_pooler=False)
        for name, kernel in kernels.items():
            pruning.check_divisible(kernel.shape, self.num_blocks, self.mode, name)
        return {(name, kind): kernel for name, kernel in kernels.items()
                for kind in pruning.group_kinds(self.mode, name)}

    def norms(self, model):
        return {key: pruning.group_norms(np.asarray(kernel), self.num_blocks, key[1],
                                         xp=np).ravel()
                for key, kernel in self._kernels(model).items()}

    def counts(self, model):
        return {key: (kernel.shape[1] if key[1] == "row" else kernel.shape[0]) // self.num_blocks
                for key, kernel in self._kernels(model).items()}

    def _expand(self, values, shape, kind):
        """Per-group values (flat) -> per-weight array of the kernel's shape."""
        n_in, n_out = shape
        k = self.num_blocks
        if kind == "row":    # (n_in, K) groups, each over n_out / K columns
            return np.repeat(np.reshape(values, (n_in, k)), n_out // k, axis=1)
        return np.repeat(np.reshape(values, (k, n_out)), n_in // k, axis=0)

    def scale(self, model, factors):
        for key, kernel in self._kernels(model).items():
            if key in factors:
                kernel.assign(np.asarray(kernel) * self._expand(
                    np.asarray(factors[key], np.float32), kernel.shape, key[1]))

    def zero(self, model, off, optimizer=None):
        for key, kernel in self._kernels(model).items():
            if key not in off or not np.any(off[key]):
                continue
            keep = self._expand((~np.asarray(off[key])).astype(np.float32), kernel.shape, key[1])
            targets = [kernel]
            targets += adam_moments(optimizer, kernel)
            for target in targets:
                target.assign(ops.convert_to_numpy(target) * keep)


def _check_importance_groups(importance, groups):
    if importance is not None and not isinstance(groups, UnitGroups):
        raise ValueError(f"importance selection works on heads and neurons (UnitGroups), "
                         f"not on {groups.name!r} groups: pass importance=None")


def one_shot_prune(model, target, groups=None, importance=None):
    """Zero, with no training, groups of `model` (heads and neurons unless `groups` says
    otherwise) until `target` of its encoder-linear weights are pruned, chosen as
    ProgressiveUnitPruning chooses at a period's start: the smallest by RMS weight, or, with
    `importance` (e.g. `fisher_importance(batches)`), the least important by the knapsack of
    `select_by_importance`. The contrast that shows what pruning during training buys."""
    groups = groups if groups is not None else UnitGroups()
    _check_importance_groups(importance, groups)
    norms = groups.norms(model)
    alive = {key: value > 0 for key, value in norms.items()}
    if importance is None:
        off = select_units(norms, groups.counts(model), alive, target,
                           model_lib.encoder_linear_weights(model))
    else:
        off = select_by_importance(importance(model), groups.counts(model), alive, target,
                                   model_lib.encoder_linear_weights(model))
    groups.zero(model, off)
    return off


def norms_by_kind(model):
    """{"heads": norms of every head group, "neurons": of every FFN-neuron group}, all layers."""
    norms = unit_norms(model)
    return {kind: np.concatenate([v for k, v in norms.items() if k[1] == kind] or [np.zeros(0)])
            for kind in KINDS}


def share_exactly_zero(model):
    """{kind: share of unit groups whose weights are all exactly 0}."""
    return {kind: float(np.mean(v == 0)) for kind, v in norms_by_kind(model).items()}


class ProgressiveUnitPruning:
    """Reach each target sparsity in turn by switching off whole heads and neurons, gently.

    Training is split into one period per target (over the first `prune_fraction` of the
    steps). At a period's start the smallest units (RMS weight) that bring the pruned share of
    encoder-linear weights to the period's target are chosen; during the period they are
    shrunk towards 0 (a linear ramp, applied every `every` steps outside Adam's scaling) while
    the rest of the network trains (with distillation) and takes over their work; at the
    period's end they are set to exactly 0 with their Adam moments, and `on_target(target)`
    is called (e.g. to save a snapshot). `groups` is the group family: `UnitGroups()` (heads and
    neurons, method `block`, the default) or `MatrixGroups(K, mode)` (the proposal's per-matrix
    row/column groups, method `block_seed`). As in HESSO (Chen et al. 2023), which removes groups
    progressively over periods instead of trusting a threshold after the fact.

    importance: None chooses the smallest units by RMS weight (`select_units`); a callable
    model -> {key: per-unit importance} (e.g. `fisher_importance(batches)`) chooses, at each
    period's start, the alive units of least total importance that reach the target
    (`select_by_importance`; unit groups only).

    cost_table: a `utils.measurement.latency` table; the targets are then shares of the dense model's
    predicted cost (`cost`, e.g. 0.5 = half the latency) instead of sparsities, and each period
    keeps the alive units of greatest importance whose predicted cost fits
    (`latency.select_under_cost`: a sublayer's fixed part is saved when it is emptied). Needs
    `importance`.
    """

    def __init__(self, classifier, targets, total_steps, prune_fraction=0.8, every=4,
                 on_target=None, groups=None, importance=None, cost_table=None,
                 cost="latency_ms"):
        targets = sorted(targets)
        if not targets or not all(0 < t < 1 for t in targets):
            raise ValueError(f"targets = {targets!r}: give sparsities (or, with cost_table, "
                             f"shares of the dense cost) in (0, 1), e.g. [0.3, 0.5]")
        if not 0 < prune_fraction <= 1:
            raise ValueError(f"prune_fraction = {prune_fraction!r}: must be in (0, 1]")
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every = {every!r}: must be a positive int")
        if total_steps < len(targets):
            raise ValueError(f"total_steps = {total_steps}: at least one step per target "
                             f"({len(targets)}) is needed")
        self.classifier, self.targets, self.every = classifier, targets, every
        self.on_target = on_target
        self.groups = groups if groups is not None else UnitGroups()
        _check_importance_groups(importance, self.groups)
        self.importance = importance
        self.cost_table, self.cost = cost_table, cost
        if cost_table is not None:
            if importance is None:
                raise ValueError("cost targets choose units by importance: pass importance= "
                                 "(e.g. fisher_importance(batches)) with cost_table")
            config = classifier.encoder_config
            self.dense_cost = latency.predict(cost_table, config.num_heads,
                                              config.intermediate_sizes, cost)
            floor = cost_table[cost]["base"] / self.dense_cost
            if min(targets) * self.dense_cost < cost_table[cost]["base"]:
                raise ValueError(f"target {min(targets)} x dense {cost} is below the cost of a "
                                 f"model with no sublayers ({floor:.3f} x dense): give targets "
                                 f"above {floor:.3f}")
            targets = sorted(targets, reverse=True)   # the cost falls period by period
            self.targets = targets
        span = max(len(targets), int(prune_fraction * total_steps))
        # period p covers steps [ends[p-1], ends[p])
        self.ends = [round(span * (p + 1) / len(targets)) for p in range(len(targets))]
        self.counts = self.groups.counts(classifier)
        self.total = model_lib.encoder_linear_weights(classifier)
        self.alive = {k: np.ones(n.shape, bool) for k, n in self.groups.norms(classifier).items()}
        self.step, self.period, self.shrinking, self.reached = 0, 0, None, []
        self.last_iterations = None   # the optimizer's step count at the last after_step
        self.seconds = 0.0        # time spent in after_step: the cost of the step outside Adam

    def _start_period(self):
        target = self.targets[self.period]
        if self.cost_table is not None:
            self.shrinking = latency.select_under_cost(
                self.importance(self.classifier), self.alive, self.cost_table,
                target * self.dense_cost, self.cost)
        elif self.importance is None:
            self.shrinking = select_units(self.groups.norms(self.classifier), self.counts,
                                          self.alive, target, self.total)
        else:
            self.shrinking = select_by_importance(self.importance(self.classifier), self.counts,
                                                  self.alive, target, self.total)
        self.period_start = self.step
        self.scale = 1.0          # the ramp's value at the last application

    def after_step(self, optimizer=None):
        """Call after every optimizer step (`keras_callback` does). A step the optimizer
        skipped (a LossScaleOptimizer does on non-finite gradients under float16; its
        `iterations` then stays put) is skipped here too, so the schedule counts real steps."""
        if optimizer is not None:
            iterations = optimizer_steps(optimizer)
            if iterations == self.last_iterations:
                return
            self.last_iterations = iterations
        started = time.perf_counter()
        try:
            self._after_step(optimizer)
        finally:
            self.seconds += time.perf_counter() - started

    def _after_step(self, optimizer):
        if self.period >= len(self.targets):
            return
        if self.shrinking is None:
            self._start_period()
        self.step += 1
        end = self.ends[self.period]
        if not self.groups.zero_is_stable:   # hold the groups already off at exactly 0
            self.groups.zero(self.classifier, {k: ~a for k, a in self.alive.items()})
        if self.step >= end:
            self.groups.zero(self.classifier, self.shrinking, optimizer)
            for key, units in self.shrinking.items():
                self.alive[key] &= ~units
            self.reached.append({"target": self.targets[self.period], "step": self.step,
                                 "sparsity": self.sparsity(),
                                 **({"cost_ratio": self.cost_ratio()}
                                    if self.cost_table is not None else {})})
            if self.on_target is not None:
                self.on_target(self.targets[self.period])
            self.period, self.shrinking = self.period + 1, None
        elif (self.step - self.period_start) % self.every == 0:
            # The proximal step of the group lasso on the penalised set, g <- max(0, 1 -
            # tau_g / ||g||) g, with tau_g adapted so that g reaches 0 exactly at the
            # period's end: the factor is the ramp's ratio to its last value.
            ramp = 1.0 - (self.step - self.period_start) / (end - self.period_start)
            factor = ramp / self.scale
            self.groups.scale(self.classifier, {k: np.where(u, factor, 1.0)
                                                for k, u in self.shrinking.items() if u.any()})
            self.scale = ramp

    def sparsity(self):
        """Pruned share of encoder-linear weights, from the units switched off so far."""
        return sum(self.counts[k] * float(np.sum(~a)) for k, a in self.alive.items()) / self.total

    def cost_ratio(self):
        """Predicted cost of the units still alive, as a share of the dense model's."""
        layers = sorted({key[0] for key in self.alive})
        heads = [int(self.alive[(i, "heads")].sum()) for i in layers]
        neurons = [int(self.alive[(i, "neurons")].sum()) for i in layers]
        return latency.predict(self.cost_table, heads, neurons, self.cost) / self.dense_cost

    def keras_callback(self):
        pruner = self

        class _Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                pruner.after_step(self.model.optimizer)
        return _Callback()


def progressive_prune(classifier, tokenizer, dataset, targets, train_config, save_dir,
                      teacher_logits=None, distill_alpha=0.5, temperature=2.0,
                      prune_fraction=0.8, every=4, groups=None, selection="rms",
                      fisher_examples=None, cost_table=None, cost="latency_ms"):
    """One training run (task loss + distillation from `teacher_logits`) that passes through
    every target with `ProgressiveUnitPruning`, saving a snapshot at each to
    save_dir/sparsity_XX. Returns (pruner, training state).

    selection: "rms" (the smallest units by RMS weight) or "fisher" (the least important by
    the Fisher information of their masks on `fisher_examples` stratified training tweets,
    default the reference's 2,048 in batches of 32, recomputed at each period's start; those
    tweets are read without any update, so they add no training examples).

    cost_table: a `utils.measurement.latency` table; `targets` are then shares of the dense model's
    predicted `cost` (needs selection="fisher"), and the snapshots go to save_dir/cost_XX."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection = {selection!r}: choose one of {SELECTIONS}")
    steps = len(batching.make_batches(tokenizer, dataset["train"]["text"],
                                      dataset["train"]["label"], train_config.max_length,
                                      train_config.batch_size)[0]) * train_config.epochs
    importance = None
    if selection == "fisher":
        importance = fisher_importance(fisher_batches(
            tokenizer, dataset["train"], fisher_examples, train_config.max_length,
            train_config.seed))

    if cost_table is not None and selection != "fisher":
        raise ValueError(f"cost targets choose units by importance: pass selection='fisher', "
                         f"not {selection!r}, with cost_table")

    def save(target):
        name = (sparsity_dir_name(target) if cost_table is None
                else cost_dir_name(target))
        saved.save(classifier, Path(save_dir) / name)

    pruner = ProgressiveUnitPruning(classifier, targets, steps, prune_fraction, every, save,
                                    groups, importance, cost_table, cost)
    config = pruning.PruningConfig(lambda_group=0.0, lambda_polar=0.0, polarization="none",
                                   distill_alpha=distill_alpha if teacher_logits is not None
                                   else 0.0, temperature=temperature)
    state = pruning.penalized_fine_tune(classifier, tokenizer, dataset, train_config, pruning=config,
                            teacher_logits=teacher_logits, callbacks=[pruner.keras_callback()])
    return pruner, state


def progressive_prune_saved(model_dir, tokenizer, dataset, targets, train_config, save_dir,
                            distill=True, teacher_logits=None, **options):
    """`progressive_prune` of the model saved in `model_dir`, distilled (with `distill`) from
    `teacher_logits`, by default that model's own logits on the training split, as notebooks 03
    and 04 run it; the form `isolation.run_in_fresh_process` can run, so the fit's compiled
    programs leave with its process. Returns {"reached": the pruner's records, "state": the
    training state, "prox_seconds", "period_ends"}."""
    classifier = saved.load_model(model_dir)
    if distill and teacher_logits is None:
        teacher_logits = train.predict_texts(classifier, tokenizer, dataset["train"]["text"],
                                             max_length=train_config.max_length)
    pruner, state = progressive_prune(classifier, tokenizer, dataset, targets, train_config,
                                      save_dir, teacher_logits=teacher_logits if distill else None,
                                      **options)
    return {"reached": pruner.reached, "state": state, "prox_seconds": pruner.seconds,
            "period_ends": pruner.ends}

