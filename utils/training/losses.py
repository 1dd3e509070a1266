"""The losses a fit minimises besides the penalties a compression method adds: cross-entropy,
distillation towards a teacher's logits or hidden states, each replica's share under a
distribution strategy. Shared by block pruning, binarization and CoFi."""
from __future__ import annotations

import keras
from keras import ops

from utils.training import backend


def per_replica(loss):
    """A replica's share of the loss under a distribution strategy (1/replicas: the replicas'
    gradients are summed), as Keras' own compiled losses do; unchanged on one device."""
    replicas = backend.replicas_in_sync()
    return loss / replicas if replicas > 1 else loss


def task_loss(y, logits, distill_alpha=0.0, temperature=2.0):
    """Cross-entropy, or (1 - a) CE + a T^2 KL(teacher || student) when a = distill_alpha > 0;
    y is the labels, or {"label", "teacher"} with the teacher's logits."""
    labels = y["label"] if isinstance(y, dict) else y
    loss = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    if distill_alpha > 0:
        kd = distillation_loss(y["teacher"], logits, temperature)
        loss = (1.0 - distill_alpha) * loss + distill_alpha * kd
    return loss


def hidden_state_loss(student_hidden, teacher_hidden, attention_mask):
    """Layer-wise distillation: the sum over layers of the mean squared difference between
    the student's and the teacher's hidden states, averaged over the hidden size and the real
    (attention_mask = 1) tokens of the batch; padding positions do not count.
    student_hidden, teacher_hidden: sequences of (batch, tokens, hidden) arrays, paired."""
    if len(student_hidden) != len(teacher_hidden):
        raise ValueError(f"{len(student_hidden)} student layers against "
                         f"{len(teacher_hidden)} teacher layers: pair every layer")
    mask = ops.cast(attention_mask, "float32")[:, :, None]
    tokens = ops.maximum(ops.sum(mask), 1.0)
    total = 0.0
    for s, t in zip(student_hidden, teacher_hidden):
        diff = ops.cast(s, "float32") - ops.cast(t, "float32")
        total = total + ops.sum(ops.mean(diff * diff, axis=-1, keepdims=True) * mask) / tokens
    return total


def distillation_loss(teacher_logits, student_logits, temperature):
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), averaged over the batch."""
    t = temperature
    teacher = ops.softmax(ops.cast(teacher_logits, "float32") / t, axis=-1)
    log_student = ops.log_softmax(student_logits / t, axis=-1)
    log_teacher = ops.log(ops.maximum(teacher, 1e-12))
    return t * t * ops.mean(ops.sum(teacher * (log_teacher - log_student), axis=-1))
