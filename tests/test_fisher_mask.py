"""The Fisher mask search (utils/fisher_mask.py) against finite differences and brute force."""
import itertools

import numpy as np
import pytest

from utils import baselines, fisher_mask, pruning
from utils import model as model_lib
from test_baselines import toy_batches, toy_model


def _finite_difference_gates(model, batch, delta=1e-3):
    """dL/dm for each head and neuron mask of layer 0, by scaling the head's output rows and
    the neuron's FFN-output row by 1 +- delta (float64 central differences of the loss)."""
    x, y = batch
    loss = baselines._loss_fn(model)
    kernels = model_lib.prunable_kernels(model)
    head_size = model.encoder_config.head_size

    def derivative(kernel, rows):
        start = np.asarray(kernel).astype(np.float64)
        values = []
        for sign in (1, -1):
            scaled = start.copy()
            scaled[rows] *= 1 + sign * delta
            kernel.assign(scaled.astype(np.float32))
            values.append(float(loss(x["input_ids"], x["attention_mask"], y)))
        kernel.assign(start.astype(np.float32))
        return (values[0] - values[1]) / (2 * delta)
    output = kernels["layer_0/attention/output"]
    heads = [derivative(output, slice(h * head_size, (h + 1) * head_size))
             for h in range(output.shape[0] // head_size)]
    ffn_output = kernels["layer_0/ffn/output"]
    neurons = [derivative(ffn_output, [j]) for j in range(ffn_output.shape[0])]
    return np.array(heads), np.array(neurons)


def test_fisher_information_is_the_sum_of_squared_batch_gradients():
    model = toy_model(num_heads=(2,), widths=(6,), scale=0.3)
    batches = toy_batches(3)
    fisher = fisher_mask.fisher_information(model, batches)
    heads, neurons = 0.0, 0.0
    for batch in batches:
        h, n = _finite_difference_gates(model, batch)
        heads, neurons = heads + h ** 2, neurons + n ** 2
    assert np.all(neurons > 0)
    np.testing.assert_allclose(fisher["heads"][0], heads, rtol=5e-2, atol=1e-6)
    np.testing.assert_allclose(fisher["neurons"][0], neurons, rtol=5e-2, atol=1e-6)


def _brute_force(head_imp, neuron_imp, head_cost, neuron_cost, budget):
    best = -1.0
    for n_heads in range(len(head_imp) + 1):
        for heads in itertools.combinations(range(len(head_imp)), n_heads):
            for n_neurons in range(len(neuron_imp) + 1):
                if n_heads * head_cost + n_neurons * neuron_cost > budget:
                    break
                for neurons in itertools.combinations(range(len(neuron_imp)), n_neurons):
                    best = max(best, sum(head_imp[list(heads)]) + sum(neuron_imp[list(neurons)]))
    return best


@pytest.mark.parametrize("budget", [0, 5, 13, 24, 31, 60])
def test_search_masks_is_the_optimum_under_the_budget(budget):
    rng = np.random.default_rng(budget)
    head_imp, neuron_imp = rng.exponential(size=4), rng.exponential(size=6) / 3
    heads, neurons = fisher_mask.search_masks(head_imp, neuron_imp, 8, 3, budget)
    assert 8 * len(heads) + 3 * len(neurons) <= budget
    assert len(set(heads)) == len(heads) and len(set(neurons)) == len(neurons)
    kept = head_imp[heads].sum() + neuron_imp[neurons].sum()
    assert kept == pytest.approx(_brute_force(head_imp, neuron_imp, 8, 3, budget))


def test_search_masks_rejects_bad_costs_and_budgets():
    with pytest.raises(ValueError, match="head_cost=0"):
        fisher_mask.search_masks([1.0], [1.0], 0, 1, 5)
    with pytest.raises(ValueError, match="budget must be >= 0"):
        fisher_mask.search_masks([1.0], [1.0], 1, 1, -1)


def test_pruner_reaches_the_target_with_whole_heads_and_neurons():
    model = toy_model(num_heads=(2, 2), widths=(8, 8), scale=0.3)
    pruner = fisher_mask.FisherMaskPruner(toy_batches(2))
    kernels = baselines.numpy_kernels(model)
    for target in (0.3, 0.6):
        masks = pruner(model, target)
        assert baselines.masks_sparsity(masks) >= target - 1e-9
        pruning.apply_masks(model, masks)
        summary = pruning.sparsity_summary(model)
        # every zero belongs to a whole head or neuron: removable units explain the sparsity
        removed = (summary["fully_removable_heads"] * 4 * 16 * 8
                   + summary["fully_removable_neurons"] * 2 * 16)
        assert removed == pytest.approx(summary["sparsity_encoder_linear"]
                                        * sum(k.size for k in kernels.values()))
        model.set_weights(toy_model(num_heads=(2, 2), widths=(8, 8), scale=0.3).get_weights())
    record = pruner.record()
    assert set(record["chosen"]) == {0.3, 0.6}
    kept = record["chosen"][0.6]
    assert sum(kept["heads_kept"].values()) * 512 + sum(kept["neurons_kept"].values()) * 32 \
        <= 0.4 * sum(k.size for k in kernels.values())
    with pytest.raises(ValueError, match="target sparsity"):
        pruner(model, 1.0)
