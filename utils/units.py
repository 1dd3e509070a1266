"""Attention heads and FFN neurons as pruning groups that span every weight of the unit.

A head of layer i is one group across its query, key and value columns (and their biases) and
its attention-output rows; an FFN neuron is one group across its input column, its input bias
and its output row. Zeroing such a group is the same as removing the unit (compaction then
drops it: see tests/test_units.py), so a group norm of zero means "removable", unlike the
per-matrix row/column groups of `utils.pruning`, where a head is only removable if every one of
its four matrices happens to lose it.

`unit_norms` works on numpy (`xp=np`) and on Keras tensors (`xp=keras.ops`, differentiable), as
`pruning.group_norms` does; `prox_scale` is the group soft-threshold (the proximal operator of
the group lasso) and `scale_units` applies per-unit factors (0 = pruned) in place.
"""
import numpy as np
from keras import ops

from . import model as model_lib

KINDS = ("heads", "neurons")


def unit_parts(model):
    """{(layer, kind): (unit width, [(variable, axis the units run along)])} for every layer
    with heads / neurons left. A head's width is head_size (its columns in Q/K/V, rows in the
    output); a neuron's is 1."""
    parts = {}
    size = model.encoder_config.head_size
    for i, layer in enumerate(model_lib.transformer_layers(model)):
        attention, ffn = layer.attention, layer.ffn
        if attention.num_heads > 0:
            parts[(i, "heads")] = (size, [
                *((dense.kernel, 1) for dense in (attention.query, attention.key, attention.value)),
                *((dense.bias, 0) for dense in (attention.query, attention.key, attention.value)),
                (attention.output_dense.kernel, 0)])
        if ffn.intermediate_size > 0:
            parts[(i, "neurons")] = (1, [(ffn.input_dense.kernel, 1), (ffn.input_dense.bias, 0),
                                         (ffn.output_dense.kernel, 0)])
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


def unit_masks(model):
    """{(layer, kind): 1.0 for units with any non-zero weight, 0.0 for empty ones}."""
    return {key: (norms > 0).astype(np.float32) for key, norms in unit_norms(model).items()}
