"""Figures saved to figures/, every axis labelled with its unit."""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from utils.common import io


def save_figure(fig, path):
    """Write `fig` as PNG atomically (a crash never leaves half a file)."""
    path = Path(path)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def finish_figure(fig, path=None):
    """Lay `fig` out, write it to `path` when one is given, and return it."""
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


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
    return finish_figure(fig, path)


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
    return finish_figure(fig, path)


def plot_loss_terms(records, lambdas, path=None):
    """Task loss and the two penalties (raw, before multiplying by lambda) over steps."""
    steps = [r["step"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, label in zip(axes, ("task_loss", "group_lasso", "polarization"),
                              ("task loss (nats)", "group lasso  sum ||g||_2",
                               "polarisation  sum n(1-n)")):
        ax.plot(steps, [r[key] for r in records], "-")
        ax.set(xlabel="optimizer step", ylabel=label)
        ax.grid(alpha=0.3)
    axes[1].set_title(f"lambda1 = {lambdas[0]:g}")
    axes[2].set_title(f"lambda2 = {lambdas[1]:g}")
    axes[0].set_title("running mean per epoch")
    return finish_figure(fig, path)


def plot_group_norm_histograms(norms_by_model, path=None, bins=60):
    """log10 group norms of several models ({label: {kind: norms}}), one panel per kind.
    Exactly-zero groups have no logarithm: their share is given in the legend instead."""
    kinds = list(next(iter(norms_by_model.values())))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 3.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        nonzero = np.concatenate([n[kind][n[kind] > 0] for n in norms_by_model.values()])
        edges = np.linspace(np.log10(nonzero.min()), np.log10(nonzero.max()), bins)
        for label, norms in norms_by_model.items():
            values = np.asarray(norms[kind])
            ax.hist(np.log10(values[values > 0]), bins=edges, alpha=0.55,
                    label=f"{label} ({np.mean(values == 0):.0%} exactly 0)")
        ax.set(xlabel=f"log10 L2 norm of a {kind} group", ylabel="groups",
               title=f"{kind} groups")
        ax.legend(fontsize=7)
    return finish_figure(fig, path)


def plot_sparsity_curves(frame, baseline, path=None, x="sparsity_encoder_linear"):
    """macro-F1 and accuracy against sparsity, before and after retraining, per method."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric, name in zip(axes, ("macro_f1", "accuracy"), ("macro-F1", "accuracy")):
        for (method, retrained), part in frame.groupby(["method", "retrained"]):
            part = part.sort_values(x)
            ax.plot(100 * part[x], 100 * part[metric], "o-" if retrained else "s--",
                    label=f"{method}, {'retrained' if retrained else 'not retrained'}")
        ax.axhline(100 * baseline[metric], color="k", lw=1, ls=":", label="dense baseline")
        xlabel = {"sparsity_encoder_linear": "sparsity of encoder linear weights (%)",
                  "sparsity_total": "sparsity of all model parameters (%)"}[x]
        ax.set(xlabel=xlabel, ylabel=f"test {name} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return finish_figure(fig, path)


def plot_sparsity_heatmap(per_matrix, num_layers, path=None, title="Sparsity per matrix"):
    """Share of zero weights (%) per layer (rows) and matrix (columns)."""
    matrices = ["attention/query", "attention/key", "attention/value", "attention/output",
                "ffn/input", "ffn/output"]
    grid = np.full((num_layers, len(matrices)), np.nan)
    for i in range(num_layers):
        for j, m in enumerate(matrices):
            grid[i, j] = 100 * per_matrix.get(f"layer_{i}/{m}", np.nan)
    fig, ax = plt.subplots(figsize=(7, 0.5 * num_layers + 1.6))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(num_layers):
        for j in range(len(matrices)):
            ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center",
                    color="white" if grid[i, j] < 60 else "black", fontsize=8)
    ax.set_xticks(range(len(matrices)), matrices, rotation=30, ha="right")
    ax.set_yticks(range(num_layers), [f"layer {i}" for i in range(num_layers)])
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="zero weights (%)")
    return finish_figure(fig, path)


def plot_lambda_k_sweep(sweep_frame, dense_val_macro_f1, path=None):
    """Validation macro-F1 after thresholding (no retraining) against λ1, a line per K, a panel
    per target sparsity (utils.pruning.sweep.lambda_k_sweep)."""
    targets = sorted(sweep_frame.target.unique())
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.4), sharey=True,
                             squeeze=False)
    for ax, target in zip(axes[0], targets):
        for k, part in sweep_frame[sweep_frame.target == target].groupby("K"):
            ax.plot(part.lambda1, 100 * part.val_macro_f1, "o-", label=f"K={k}")
        ax.axhline(100 * dense_val_macro_f1, color="k", ls=":", lw=1, label="dense baseline")
        ax.set(xscale="log", xlabel="λ1 (group-lasso weight)", ylabel="validation macro-F1 (%)",
               title=f"threshold to {target:.0%} encoder sparsity, no retraining")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return finish_figure(fig, path)


def plot_speed_curves(points, dense_val_macro_f1, path=None):
    """Validation macro-F1 against measured CPU speedup over dense, one line per curve
    (`curve` column: block pruning to sparsity targets, to latency targets): batch-1 latency
    on the left, time per example at batch 32 on the right."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, x, label in zip(axes, ("speedup_batch1", "speedup_batched"),
                            ("speedup over dense, batch-1 latency (x)",
                             "speedup over dense, batch-32 time per tweet (x)")):
        for curve, part in points.groupby("curve", sort=False):
            part = part.sort_values(x)
            ax.plot(part[x], 100 * part.val_macro_f1, "o-", label=curve)
            for row in part.itertuples():
                ax.annotate(row.label, (getattr(row, x), 100 * row.val_macro_f1), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.axhline(100 * dense_val_macro_f1, color="k", lw=1, ls=":", label="dense (1.0x)")
        ax.set(xlabel=label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation macro-F1 (%)")
    axes[0].legend(fontsize=7)
    return finish_figure(fig, path)


def plot_size_vs_f1(rows, dense_macro_f1, path=None):
    """Macro-F1 against bits on disk per weight of the dense model (log scale): retrained or
    saved variants labelled, binarized-but-not-retrained ones as grey crosses."""
    fig, ax = plt.subplots(figsize=(8, 4.4))
    kept = [r for r in rows if r.get("trained", True)]
    untrained = [r for r in rows if not r.get("trained", True)]
    ax.scatter([r["bits_per_dense_weight"] for r in kept], [r["macro_f1"] for r in kept],
               s=50, color="#3465a4", zorder=3, label="saved / after STE training")
    ax.scatter([r["bits_per_dense_weight"] for r in untrained], [r["macro_f1"] for r in untrained],
               marker="x", s=50, color="grey", label="binarized, not retrained")
    for i, row in enumerate(sorted(kept, key=lambda r: r["bits_per_dense_weight"])):
        ax.annotate(row["variant"], (row["bits_per_dense_weight"], row["macro_f1"]),
                    textcoords="offset points", xytext=(0, 9 if i % 2 == 0 else -14),
                    ha="center", fontsize=8)
    ax.axhline(dense_macro_f1, color="grey", ls="--", lw=1, label="dense float32")
    ax.set_xscale("log", base=2)
    ax.margins(x=0.12, y=0.08)
    ax.set(xlabel="bits on disk per weight of the dense model (log2 scale)",
           ylabel="test macro-F1", title="Accuracy against storage")
    ax.legend(loc="center right", fontsize=8)
    return finish_figure(fig, path)
