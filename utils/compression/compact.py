"""Physical removal of pruned attention heads and FFN neurons: a masked model -> a smaller dense one.

After thresholding, whole groups of weights are exactly zero. A head whose value columns or whose
attention-output rows are all zero, and an FFN neuron whose input column or output row is all
zero, contribute at most a constant to their sublayer's output:

* head h with value columns zero: its value vectors all equal b_v[h]; softmax rows sum to 1, so
  its context is b_v[h] at every position and it adds b_v[h] @ W_o[h rows] -- folded into the
  attention-output bias. (With output rows zero the same formula gives 0.)
* neuron j with input column zero: its activation is gelu(b_in[j]) everywhere (exact erf GELU),
  so it adds gelu(b_in[j]) * W_out[j, :] -- folded into the FFN-output bias. (Output row zero: 0.)

`compact_model` builds a new `build_classifier` model whose config lists the surviving widths per
layer (0 = sublayer gone: LayerNorm(x + folded bias)); everything else is copied exactly, so it
saves/loads with `utils.saved.save` / `load_model` and predicts what the masked model does.

`compaction_report` says what was removed, the parameter counts, and -- for the zeros that
cannot be removed (zeros inside kept rows/columns, e.g. block-sparse rows of a query kernel) --
how many bytes they would take in a block-sparse format compared with dense storage.

`first_token_classifier` is an inference-only view of a classifier that computes the last
layer's query, attention output and FFN only at position 0 (the only position the pooler reads).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math

import keras
import numpy as np
from keras import ops
from scipy import sparse, special

from utils.encoder import model as model_lib

# Candidate BSR block shapes for storing leftover zeros; (1, 1) is plain CSR.
BSR_BLOCKSIZES = ((1, 1), (1, 4), (4, 1), (1, 16), (16, 1), (1, 32), (32, 1), (4, 4), (8, 8),
                  (16, 16), (32, 32))


def _gelu(x):
    """Exact (erf) GELU in float64, as keras.ops.gelu(approximate=False)."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + special.erf(x / math.sqrt(2.0)))


def _weights_by_path(model):
    return {w.path: np.asarray(w) for w in model.weights}


def _check_float(model):
    dtypes = {w.path: str(w.dtype) for w in model.weights}
    bad = [p for p, d in dtypes.items() if not d.startswith("float")]
    if bad:
        raise ValueError(f"compaction needs a float model, but {bad[0]} is {dtypes[bad[0]]}: "
                         "compact first, then quantize")


def compaction_plan(model):
    """What `compact_model` would build, without building it.

    Returns (new EncoderConfig, {variable path: numpy array} for every weight of the new model,
    per-layer removal records).
    """
    _check_float(model)
    config = model.encoder_config
    old = _weights_by_path(model)
    new = {}
    layers_info = []
    size = config.head_size
    new_heads, new_widths = [], []
    for i in range(config.num_layers):
        prefix = f"encoder/layer_{i}"
        info = {"layer": i}
        # ---------------------------------------------------------------- attention
        att = f"{prefix}/attention"
        n_heads = config.num_heads[i]
        info["heads_before"] = n_heads
        if n_heads == 0:
            keep_heads, removed, folded = [], [], []
            out_bias = old[f"{att}/output_bias"].astype(np.float64)
        else:
            w = {m: (old[f"{att}/{m}/kernel"], old[f"{att}/{m}/bias"])
                 for m in ("query", "key", "value", "output")}
            value_zero = [not w["value"][0][:, h * size:(h + 1) * size].any()
                          for h in range(n_heads)]
            output_zero = [not w["output"][0][h * size:(h + 1) * size, :].any()
                           for h in range(n_heads)]
            removed = [h for h in range(n_heads) if value_zero[h] or output_zero[h]]
            keep_heads = [h for h in range(n_heads) if h not in removed]
            # heads that still add a constant: value columns zero, output rows not
            folded = [h for h in removed if value_zero[h] and not output_zero[h]]
            out_bias = w["output"][1].astype(np.float64)
            for h in folded:
                rows = slice(h * size, (h + 1) * size)
                out_bias = out_bias + (w["value"][1][rows].astype(np.float64)
                                       @ w["output"][0][rows].astype(np.float64))
            if keep_heads:
                cols = np.concatenate([np.arange(h * size, (h + 1) * size) for h in keep_heads])
                for m in ("query", "key", "value"):
                    new[f"{att}/{m}/kernel"] = w[m][0][:, cols]
                    new[f"{att}/{m}/bias"] = w[m][1][cols]
                new[f"{att}/output/kernel"] = w["output"][0][cols, :]
        _sublayer_output(new, old, att, bool(keep_heads), out_bias)
        new_heads.append(len(keep_heads))
        info.update(heads_after=len(keep_heads), removed_heads=removed,
                    folded_heads=folded)
        # ---------------------------------------------------------------- FFN
        ffn = f"{prefix}/ffn"
        width = config.intermediate_sizes[i]
        info["neurons_before"] = width
        if width == 0:
            keep = np.zeros(0, dtype=int)
            removed_n = folded_n = np.zeros(0, dtype=int)
            out_bias = old[f"{ffn}/output_bias"].astype(np.float64)
        else:
            k_in, b_in = old[f"{ffn}/input/kernel"], old[f"{ffn}/input/bias"]
            k_out, b_out = old[f"{ffn}/output/kernel"], old[f"{ffn}/output/bias"]
            in_zero, out_zero = ~k_in.any(axis=0), ~k_out.any(axis=1)
            removed_mask = in_zero | out_zero
            keep = np.flatnonzero(~removed_mask)
            removed_n = np.flatnonzero(removed_mask)
            folded_n = np.flatnonzero(in_zero & ~out_zero)
            out_bias = b_out.astype(np.float64) + (
                _gelu(b_in[folded_n]) @ k_out[folded_n].astype(np.float64))
            if len(keep):
                new[f"{ffn}/input/kernel"] = k_in[:, keep]
                new[f"{ffn}/input/bias"] = b_in[keep]
                new[f"{ffn}/output/kernel"] = k_out[keep, :]
        _sublayer_output(new, old, ffn, bool(len(keep)), out_bias)
        new_widths.append(len(keep))
        info.update(neurons_after=len(keep), removed_neurons=removed_n.tolist(),
                    folded_neurons=folded_n.tolist())
        layers_info.append(info)

    # embeddings, pooler, classifier: copied as they are
    for path, value in old.items():
        if not path.startswith("encoder/layer_"):
            new[path] = value
    new_config = dataclasses.replace(config, num_heads=new_heads,
                                     intermediate_sizes=new_widths)
    return new_config, new, layers_info


def _sublayer_output(new, old, path, kept, out_bias):
    """A sublayer's output bias (with the folded constants; a sublayer left with no unit keeps
    it as `output_bias`, its Dense layers gone) and its LayerNorm, unchanged."""
    new[f"{path}/output/bias" if kept else f"{path}/output_bias"] = out_bias.astype(np.float32)
    for p in ("gamma", "beta"):
        new[f"{path}/layer_norm/{p}"] = old[f"{path}/layer_norm/{p}"]


def build_from_weights(config, weights):
    """A `build_classifier(config)` model holding `weights` ({variable path: array})."""
    model = model_lib.build_classifier(config)
    variables = {v.path: v for v in model.weights}
    if set(variables) != set(weights):
        missing, extra = sorted(set(variables) - set(weights)), sorted(set(weights) - set(variables))
        raise ValueError(f"weights do not fit the config: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}")
    for path, variable in variables.items():
        value = weights[path]
        if tuple(variable.shape) != tuple(value.shape):
            raise ValueError(f"{path}: model wants {tuple(variable.shape)}, "
                             f"got {tuple(value.shape)}")
        variable.assign(value.astype(variable.dtype))
    return model


def compact_model(model) -> keras.Model:
    """A new, smaller dense classifier equivalent to the masked `model` (see module doc)."""
    config, weights, _ = compaction_plan(model)
    return build_from_weights(config, weights)


def _kept(before, removed, width):
    """Indices, along a sublayer's axis, of the units of `width` each that compaction kept."""
    keep = [u for u in range(before) if u not in set(removed)]
    return np.concatenate([np.arange(u * width, (u + 1) * width) for u in keep]) if keep \
        else np.zeros(0, dtype=int)


def _folded(layers_info):
    """(layer, kind) of every sublayer whose compaction folded units into its output bias."""
    return [(i["layer"], kind) for i in layers_info for kind in ("folded_heads", "folded_neurons")
            if len(i[kind])]


def expand_into(model, small, layers_info):
    """Write the weights of `small` -- `compact_model(model)`, `layers_info` its plan's removal
    records, trained since -- back into the full-width `model`: each kept head's and neuron's
    weights to their place, every other weight (embeddings, LayerNorms, biases, pooler,
    classifier) as it is in `small`. The removed units keep their weights in `model`.

    The inverse of compaction where nothing was folded: a folded unit's constant lives in
    `small`'s output bias and cannot be split back out, so such a plan is refused."""
    folded = _folded(layers_info)
    if folded:
        raise ValueError(f"compaction folded units into biases ({folded[:3]}): their weights "
                         "cannot be written back; train the masked model itself")
    full = {v.path: v for v in model.weights}
    trained = _weights_by_path(small)
    size = model.encoder_config.head_size
    for info in layers_info:
        prefix = f"encoder/layer_{info['layer']}"
        for sub, before, removed, width, parts in (
                ("attention", info["heads_before"], info["removed_heads"], size,
                 {"query": 1, "key": 1, "value": 1, "output": 0}),
                ("ffn", info["neurons_before"], info["removed_neurons"], 1,
                 {"input": 1, "output": 0})):
            keep = _kept(before, removed, width)
            base = f"{prefix}/{sub}"
            for part, axis in parts.items():
                if len(keep) == 0:
                    continue
                kernel = np.asarray(full[f"{base}/{part}/kernel"]).copy()
                index = (slice(None), keep) if axis == 1 else (keep, slice(None))
                kernel[index] = trained[f"{base}/{part}/kernel"]
                full[f"{base}/{part}/kernel"].assign(kernel)
                if axis == 1:   # the output bias is not per unit: copied below
                    bias = np.asarray(full[f"{base}/{part}/bias"]).copy()
                    bias[keep] = trained[f"{base}/{part}/bias"]
                    full[f"{base}/{part}/bias"].assign(bias)
            # the sublayer's output bias: a plain bias, or `output_bias` when no unit is left
            out = f"{base}/output/bias" if len(keep) else f"{base}/output_bias"
            full_out = f"{base}/output/bias" if before else f"{base}/output_bias"
            full[full_out].assign(trained[out])
            for p in ("gamma", "beta"):
                full[f"{base}/layer_norm/{p}"].assign(trained[f"{base}/layer_norm/{p}"])
    for path, value in trained.items():
        if not path.startswith("encoder/layer_"):
            full[path].assign(value)


def smallest_equivalent(model):
    """The model to evaluate in place of the masked `model`: `compact_model(model)` (the same
    predictions for less compute), or `model` itself when compaction would remove nothing."""
    config, weights, _ = compaction_plan(model)
    return model if config == model.encoder_config else build_from_weights(config, weights)


@contextlib.contextmanager
def compacted_for_training(model):
    """Yields the model to train in place of the masked `model`: its compaction (the removed
    units' weights are zero and get zero gradient in `model`, so training the smaller model is
    the same optimisation, at the cost of the units that are left), written back into `model`
    on exit. Yields `model` itself when compaction would remove nothing or would fold units."""
    config, weights, layers_info = compaction_plan(model)
    if config == model.encoder_config or _folded(layers_info):
        yield model
        return
    strategy = getattr(model, "distribute_strategy", None)
    with (strategy.scope() if strategy is not None else contextlib.nullcontext()):
        small = build_from_weights(config, weights)
    yield small
    expand_into(model, small, layers_info)


# ------------------------------------------------------------------------------ reporting

def sparse_storage(matrix, blocksizes=BSR_BLOCKSIZES):
    """Bytes of `matrix` stored dense vs in the cheapest BSR block shape that divides it.

    BSR bytes = data (the non-zero blocks, zeros inside them included) + block column indices
    + row pointers; blocksize (1, 1) is CSR.
    """
    matrix = np.asarray(matrix)
    dense_bytes = int(matrix.nbytes)
    best = None
    for r, c in blocksizes:
        if matrix.shape[0] % r or matrix.shape[1] % c:
            continue
        bsr = sparse.bsr_matrix(matrix, blocksize=(r, c))
        bsr.eliminate_zeros()
        nbytes = int(bsr.data.nbytes + bsr.indices.nbytes + bsr.indptr.nbytes)
        if best is None or nbytes < best["sparse_bytes"]:
            best = {"format": "csr" if (r, c) == (1, 1) else "bsr", "blocksize": [r, c],
                    "sparse_bytes": nbytes, "stored_blocks": int(bsr.indices.size)}
    return {"shape": list(matrix.shape), "zeros": int((matrix == 0).sum()),
            "sparsity": float((matrix == 0).mean()), "dense_bytes": dense_bytes, **best,
            "sparse_saves_bytes": max(0, dense_bytes - best["sparse_bytes"])}


def compaction_report(model, include_pooler=True):
    """What compaction removes from the masked `model`, and what zeros it leaves behind.

    Returns {"layers": per-layer heads/neurons before/after, removed and folded indices,
    "heads_removed", "neurons_removed", "parameters_before/after", "nonzero_before/after",
    "config_after": per-layer widths, "residual_zeros": {kernel: sparse_storage(...)} for
    kernels of the compact model that still hold zeros, "residual_totals": dense vs best
    sparse bytes summed over all kernels (sparse only where it is smaller)}.
    """
    config, weights, layers = compaction_plan(model)
    before = _weights_by_path(model)
    residual = {}
    prefix = "encoder/"
    for path, value in weights.items():
        if value.ndim != 2 or not path.endswith("/kernel") or "embeddings" in path:
            continue
        if path.startswith("pooler/") and not include_pooler:
            continue
        if path.startswith("classifier/"):
            continue
        if (value == 0).any():
            name = path[len(prefix):] if path.startswith(prefix) else path
            residual[name.rsplit("/kernel", 1)[0]] = sparse_storage(value)
    dense_bytes = sum(_kernel_bytes(weights, include_pooler))
    sparse_saving = sum(r["sparse_saves_bytes"] for r in residual.values())
    return {
        "layers": layers,
        "heads_removed": int(sum(len(l["removed_heads"]) for l in layers)),
        "heads_folded": int(sum(len(l["folded_heads"]) for l in layers)),
        "neurons_removed": int(sum(len(l["removed_neurons"]) for l in layers)),
        "neurons_folded": int(sum(len(l["folded_neurons"]) for l in layers)),
        "parameters_before": int(sum(v.size for v in before.values())),
        "parameters_after": int(sum(v.size for v in weights.values())),
        "nonzero_before": int(sum(np.count_nonzero(v) for v in before.values())),
        "nonzero_after": int(sum(np.count_nonzero(v) for v in weights.values())),
        "config_after": {"num_heads": config.num_heads,
                         "intermediate_sizes": config.intermediate_sizes},
        "residual_zeros": residual,
        "residual_totals": {
            "kernels_with_zeros": len(residual),
            "zeros": int(sum(r["zeros"] for r in residual.values())),
            "linear_dense_bytes": int(dense_bytes),
            "linear_best_bytes": int(dense_bytes - sparse_saving),
            "sparse_saves_bytes": int(sparse_saving),
        },
    }


def _kernel_bytes(weights, include_pooler):
    for path, value in weights.items():
        if path.startswith("encoder/layer_") and path.endswith("/kernel"):
            yield value.nbytes
        elif include_pooler and path == "pooler/dense/kernel":
            yield value.nbytes


def format_report(report):
    """A few readable lines summarising `compaction_report`."""
    lines = [f"parameters {report['parameters_before']:,} -> {report['parameters_after']:,} "
             f"({report['parameters_after'] / report['parameters_before']:.1%}); heads removed "
             f"{report['heads_removed']} (bias-folded {report['heads_folded']}), FFN neurons "
             f"removed {report['neurons_removed']} (bias-folded {report['neurons_folded']})"]
    for l in report["layers"]:
        lines.append(f"  layer {l['layer']}: heads {l['heads_before']} -> {l['heads_after']}, "
                     f"FFN {l['neurons_before']} -> {l['neurons_after']}")
    t = report["residual_totals"]
    lines.append(f"leftover zeros in kept weights: {t['zeros']:,} in {t['kernels_with_zeros']} "
                 f"kernels; block-sparse storage would save {t['sparse_saves_bytes']:,} of "
                 f"{t['linear_dense_bytes']:,} linear-weight bytes")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ inference view

class FirstTokenClassifier(keras.Model):
    """Inference-only view of a `build_classifier` model that computes the last layer only
    where the pooler reads it: keys/values over all positions, but the query, attention
    output, residual, LayerNorms and FFN at position 0 alone (~T times less work in that
    layer). Shares the variables (and quantization) of `model`; logits equal the model's up
    to float rounding."""

    def __init__(self, model, **kwargs):
        super().__init__(name=f"{model.name}_first_token", **kwargs)
        self.base = model
        self.encoder_config = model.encoder_config
        self.encoder = model.get_layer("encoder")
        self.pooler = model.get_layer("pooler")
        self.classifier = model.get_layer("classifier")

    def call(self, inputs, training=False):
        input_ids = ops.convert_to_tensor(inputs["input_ids"], dtype="int32")
        attention_mask = ops.convert_to_tensor(inputs["attention_mask"], dtype="int32")
        hidden = self.encoder.embeddings(input_ids)
        layers = self.encoder.transformer_layers
        for layer in layers[:-1]:
            hidden = layer(hidden, attention_mask)
        last = layers[-1]
        first = _first_token_attention(last.attention, hidden, attention_mask)
        first = last.ffn(first)                     # [B, 1, H]: FFN is position-wise
        pooled = self.pooler.dense(first[:, 0, :])
        return self.classifier(pooled)


def _first_token_attention(attention, hidden, attention_mask):
    """SelfAttention's output at position 0 only, [B, 1, H] (same maths as SelfAttention.call)."""
    first = hidden[:, :1, :]
    if attention.num_heads == 0:
        return attention.layer_norm(first + attention.output_bias)
    heads, size = attention.num_heads, attention.head_size

    def split_heads(x):
        x = ops.reshape(x, (ops.shape(x)[0], ops.shape(x)[1], heads, size))
        return ops.transpose(x, (0, 2, 1, 3))

    query = split_heads(attention.query(first))          # [B, h, 1, s]
    key = split_heads(attention.key(hidden))             # [B, h, T, s]
    value = split_heads(attention.value(hidden))
    scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))
    scores = ops.cast(scores, "float32") / math.sqrt(size)
    # [B, T] -> [B, 1, 1, T] with ExpandDims (a None-index lowers to a StridedSlice that
    # TFLite cannot run with both dims dynamic)
    key_is_pad = 1.0 - ops.expand_dims(ops.cast(attention_mask, "float32"), (1, 2))
    probs = ops.softmax(scores + key_is_pad * -1e9, axis=-1)
    probs = ops.cast(probs, attention.compute_dtype)
    context = ops.transpose(ops.matmul(probs, value), (0, 2, 1, 3))
    context = ops.reshape(context, (ops.shape(context)[0], 1, heads * size))
    return attention.layer_norm(first + attention.output_dense(context))


def first_token_classifier(model) -> keras.Model:
    """`FirstTokenClassifier(model)`, built by one call on a dummy batch."""
    view = FirstTokenClassifier(model)
    view({"input_ids": np.zeros((1, 8), np.int32), "attention_mask": np.ones((1, 8), np.int32)})
    return view
