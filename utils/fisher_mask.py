"""Post-training mask search with Fisher information, a peer of block pruning.

Kwon et al., "A Fast Post-Training Pruning Framework for Transformers" (NeurIPS 2022; github
WoosukKwon/retraining-free-pruning), in this project's masks format (`utils.baselines`):

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

Not built: the reference's mask rearrangement (per-layer swaps using the block-diagonal Fisher)
and its least-squares mask tuning. Both repair a model that is never retrained. In this
comparison, every method's masks get the same recovery fine-tune (`utils.sweep.recover`).
"""
from __future__ import annotations

import numpy as np

from . import model as model_lib
from .baselines import (head_gate_gradients_fn, head_units, neuron_units,
                        numpy_kernels, units_masks)

FISHER_EXAMPLES = 2048   # the reference's --num_samples
FISHER_BATCH_SIZE = 32   # its sample batch size for BERT-base classification


def fisher_information(model, batches, gate_fn=None):
    """Diagonal Fisher information of the head and neuron masks over labelled `batches` (a list
    of (inputs, labels)): {"heads": {layer: array}, "neurons": {layer: array}}, each entry
    sum over batches of (dL_b/dm)^2 at m = 1, dropout off."""
    gate_fn = gate_fn or head_gate_gradients_fn(model, neurons=True)
    layers = model_lib.transformer_layers(model)
    head_layers = [i for i, l in enumerate(layers) if l.attention.num_heads > 0]
    neuron_layers = [i for i, l in enumerate(layers) if l.ffn.intermediate_size > 0]
    heads = {i: 0.0 for i in head_layers}
    neurons = {i: 0.0 for i in neuron_layers}
    for x, y in batches:
        head_grads, neuron_grads = gate_fn(x["input_ids"], x["attention_mask"],
                                           np.asarray(y, np.int32))
        for i, g in zip(head_layers, head_grads):
            heads[i] = heads[i] + np.asarray(g, np.float64) ** 2
        for i, g in zip(neuron_layers, neuron_grads):
            neurons[i] = neurons[i] + np.asarray(g, np.float64) ** 2
    return {"heads": heads, "neurons": neurons}


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


class FisherMaskPruner:
    """masks_fn(model, target) for the Fisher mask search. The Fisher information is computed
    once, on the model as it is at the first call (the sweep calls it with the dense start
    weights every time). `chosen` records the kept heads and neurons per layer for each target.
    """

    def __init__(self, batches):
        self.batches = list(batches)
        self.fisher = None
        self.chosen = {}

    def __call__(self, model, target):
        if not 0 <= target < 1:
            raise ValueError(f"target sparsity must be in [0, 1), got {target}")
        kernels = numpy_kernels(model)
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
        pruned = [u for k, u in enumerate(heads) if k not in set(keep_heads)] + \
                 [u for k, u in enumerate(neurons) if k not in set(keep_neurons)]
        layer_ids = sorted({u.key[0] for u in heads + neurons})
        self.chosen[float(target)] = {
            "heads_kept": {i: sum(heads[k].key[0] == i for k in keep_heads) for i in layer_ids},
            "neurons_kept": {i: sum(neurons[k].key[0] == i for k in keep_neurons)
                             for i in layer_ids}}
        return units_masks(kernels, pruned)

    def record(self):
        """What the search decided, for the run record (per-layer sums of the Fisher
        information, and the units kept per layer at each target)."""
        if self.fisher is None:
            return {}
        return {"fisher_heads": {i: v.tolist() for i, v in self.fisher["heads"].items()},
                "fisher_neurons_sum": {i: float(v.sum())
                                       for i, v in self.fisher["neurons"].items()},
                "chosen": self.chosen}
