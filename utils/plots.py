"""Figures saved to figures/, every axis labelled with its unit."""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import io


def save_figure(fig, path):
    """Write `fig` as PNG atomically (a crash never leaves half a file)."""
    path = Path(path)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def plot_training_curves(history, path=None):
    """Training loss and validation metrics per epoch."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-")
    ax_loss.set(xlabel="epoch", ylabel="training cross-entropy (nats)", title="Training loss")
    for key, label in (("val_macro_f1", "macro-F1"), ("val_accuracy", "accuracy"),
                       ("val_macro_recall", "macro-recall")):
        ax_val.plot(epochs, [100 * r[key] for r in history], "o-", label=label)
    ax_val.set(xlabel="epoch", ylabel="validation score (%)", title="Validation")
    ax_val.legend()
    for ax in (ax_loss, ax_val):
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_confusion_matrix(matrix, labels, path=None, title="Confusion matrix (test)"):
    """Counts with row-normalised shading: row = true class, column = prediction."""
    matrix = np.asarray(matrix)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    image = ax.imshow(100 * shares, cmap="Blues", vmin=0, vmax=100)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{matrix[i, j]}\n{100 * shares[i, j]:.0f}%", ha="center",
                    va="center", color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.colorbar(image, ax=ax, label="share of true class (%)")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
