"""How much the task loss depends on each attention head and FFN neuron: gradients of gates on
the units (Michel et al. 2019's head importance), and the diagonal Fisher information of the
unit masks (Kwon et al. 2022), over labelled batches of tweets drawn for the purpose."""
from __future__ import annotations

import numpy as np

from utils.data import batching
from utils.data import corpus as data_lib
from utils.encoder import model as model_lib
from utils.training import losses


def serving_batches(batches):
    return [batches[i] for i in range(len(batches))]


def task_loss_fn(model):
    import tensorflow as tf
    ids = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[ids, ids, tf.TensorSpec([None], tf.int32)])
    def loss(input_ids, attention_mask, labels):
        logits = model({"input_ids": input_ids, "attention_mask": attention_mask},
                       training=False)
        return losses.task_loss(labels, logits)
    return loss


def head_gate_gradients_fn(model, neurons=False):
    """A compiled function (input_ids, attention_mask, labels) -> [per layer: dL/dg_h for each
    head] at gates g = 1, L = mean cross-entropy of the batch, dropout off (on every Keras
    backend: `backend.gradient_function`).

    neurons=True: returns (heads, neurons), neurons = [per layer: dL/dg_j for each FFN neuron
    j]; a gate on neuron j's activation equals scaling row j of the FFN output kernel (its
    bias is added after the sum over neurons), so dL/dg_j = <W_out[j], dL/dW_out[j]>."""
    from keras import ops

    from utils.training import backend
    config = model.encoder_config
    layers = model_lib.transformer_layers(model)
    head_kernels = [l.attention.output_dense.kernel for l in layers if l.attention.num_heads > 0]
    shapes = [(l.attention.num_heads, config.head_size) for l in layers
              if l.attention.num_heads > 0]
    neuron_kernels = [l.ffn.output_dense.kernel for l in layers
                      if neurons and l.ffn.intermediate_size > 0]

    def gates(kernels, grads):
        heads = []
        for kernel, grad, (count, size) in zip(kernels, grads, shapes):
            product = ops.reshape(ops.convert_to_tensor(kernel) * grad, (count, size, -1))
            heads.append(ops.sum(product, axis=(1, 2)))
        if not neurons:
            return heads
        return heads, [ops.sum(ops.convert_to_tensor(kernel) * grad, axis=1)
                       for kernel, grad in zip(kernels[len(head_kernels):],
                                               grads[len(head_kernels):])]
    return backend.gradient_function(model, head_kernels + neuron_kernels,
                                     lambda labels, logits: losses.task_loss(labels, logits),
                                     gates)


def labelled_batches(tokenizer, split, examples, max_length, batch_size, seed):
    if examples is not None and examples < len(split):
        split = data_lib.subsample({"train": split}, examples, seed=seed)["train"]
    batches, _ = batching.make_batches(tokenizer, split["text"], split["label"],
                                       max_length=max_length, batch_size=batch_size)
    return serving_batches(batches)


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
    gradients = {"heads": {i: [] for i in head_layers}, "neurons": {i: [] for i in neuron_layers}}
    for x, y in batches:
        head_grads, neuron_grads = gate_fn(x["input_ids"], x["attention_mask"],
                                           np.asarray(y, np.int32))
        for i, g in zip(head_layers, head_grads):
            gradients["heads"][i].append(np.asarray(g, np.float64))
        for i, g in zip(neuron_layers, neuron_grads):
            gradients["neurons"][i].append(np.asarray(g, np.float64))
    gradients = {kind: {i: np.stack(g) for i, g in by_layer.items()}
                 for kind, by_layer in gradients.items()}
    # the per-batch gradients [batches, units] stay for the mask rearrangement
    return {kind: {i: np.sum(g ** 2, axis=0) for i, g in gradients[kind].items()}
            for kind in ("heads", "neurons")} | {"gradients": gradients}
