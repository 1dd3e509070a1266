"""Figures saved to figures/, every axis labelled with its unit.

Conventions every figure follows:
  - scores stored as fractions are drawn x100 on axes labelled "(%)"; differences of scores
    are "points"; times in ms, sizes in MB (10^6 bytes);
  - a method has one colour and marker in every figure: `METHOD_STYLE` (its label is the name
    the report's tables use); a line's style says the stage of its points (`STAGE_LINE`);
  - a score axis shows the region near the dense model (`focus_limits`: the dense +/- 1 point
    band and the points within REACH_POINTS of it); points outside it are drawn as an arrow at
    the axis edge with their value (`mark_off_axis`), never dropped silently;
  - 95% intervals, where a results file has them (diff_low/diff_high: paired-bootstrap
    interval of the difference to dense), are drawn as bars;
  - legends sit outside the axes.
`python -m utils.face.figures` redraws from results/ every figure whose inputs are committed.
"""
from pathlib import Path
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from utils.common import io
from utils.measurement import dominance


class Style(NamedTuple):
    color: str
    marker: str
    label: str


# One entry per method name found in results/ (`method` columns and fields); the label is the
# name in the report's tables ("block, no regulariser" is its sparsity table's column
# "dense, cut one-shot"). Colours and markers are both unique, so a method is recognisable
# in grey print too.
METHOD_STYLE = {
    "dense": Style("#000000", "*", "dense"),
    "block": Style("#1f77b4", "o", "block"),
    "block_latency": Style("#9467bd", "s", "block_latency"),
    "block_seed": Style("#17becf", "D", "block_seed"),
    "block, no regulariser": Style("#7f7f7f", "v", "dense, cut one-shot"),
    "penalty in the loss": Style("#bcbd22", "P", "penalty in the loss"),
    "magnitude_global": Style("#2ca02c", "^", "magnitude_global"),
    "magnitude_per_matrix": Style("#98df8a", "<", "magnitude_per_matrix"),
    "magnitude_gradual": Style("#0b5d1e", ">", "magnitude_gradual"),
    "heads": Style("#8c564b", "h", "heads"),
    "layers": Style("#e377c2", "8", "layers"),
    "ffn_neurons": Style("#ff7f0e", "p", "ffn_neurons"),
    "fisher_mask": Style("#d62728", "X", "fisher_mask"),
    "cofi": Style("#b8860b", "d", "cofi"),
}

# a point's stage (the `retrained` column): its line style and its name in legends, as the
# report's sparsity table names its columns
STAGE_LINE = {True: "-", False: "--"}
STAGE_LABEL = {True: "final (recovered)", False: "as saved (no recovery)"}

REACH_POINTS = 12.0   # a focused score axis shows at most this many points around dense
DODGE_POINTS = 1.2    # widest sideways shift of a method's points in the comparison figure
LABEL_COLORS = {"negative": "#d62728", "neutral": "#7f7f7f", "positive": "#2ca02c"}
STORAGE_MARKERS = {"float32": "o", "int8": "s", "binary": "D"}


def method_style(method):
    """METHOD_STYLE[method]; a method without an entry is an error, so that no figure invents
    a colour another figure gives someone else."""
    try:
        return METHOD_STYLE[method]
    except KeyError:
        raise KeyError(f"method {method!r} has no entry in utils.face.plots.METHOD_STYLE: add "
                       "one with a colour and marker no other method uses") from None


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


# ------------------------------------------------------------------ shared pieces

def focus_limits(values, reference, reach=REACH_POINTS, pad=1.0, room=0.25):
    """y-limits (percent) holding `reference` +/- 1 point and every value within `reach`
    points of it, `pad` points of margin: the region where the methods differ, not stretched
    by a collapsed point (those get `mark_off_axis`, with `room` (share of the span) left
    free at that edge for its arrow and value)."""
    values = np.asarray([v for v in values if v is not None], dtype=float)
    values = values[np.isfinite(values)]
    near = values[np.abs(values - reference) <= reach]
    low, high = min(reference - 1, *near) - pad, max(reference + 1, *near) + pad
    span = high - low
    return (low - room * span * bool(np.any(values < low)),
            high + room * span * bool(np.any(values > high)))


def mark_off_axis(ax, xs, ys, color, fmt="{:.1f}%", placed=None, x_fmt="{:,.0f}"):
    """An arrow at the top or bottom edge, above/below each point outside the y-limits,
    labelled with its value (and its x, formatted by `x_fmt`, when that is outside the
    x-limits too: the arrow then stands at the nearer x edge); labels closer than 40 pixels
    to one already placed (`placed`: a list shared between calls on the same axes) are
    stacked above it. Returns how many points were off the axis."""
    low, high = ax.get_ylim()
    left, right = sorted(ax.get_xlim())
    placed = [] if placed is None else placed
    count = 0
    for x, y in sorted(zip(xs, ys)):
        if not np.isfinite(y) or low <= y <= high:
            continue
        below = y < low
        text, align = fmt.format(y), "center"
        if not left <= x <= right:   # text inside the axes, beside the arrow at the edge
            text += f"\nat {x_fmt.format(x)} {'→' if x > right else '←'}"
            align = "right" if x > right else "left"
            x = min(max(x, left), right)
        pixel = ax.transData.transform((x, low))[0]
        level = sum(1 for p, b in placed if b == below and abs(p - pixel) < 40)
        placed.append((pixel, below))
        offset = 16 + 10 * level
        ax.annotate(text, xy=(x, low if below else high),
                    xytext=(0, offset if below else -offset), textcoords="offset points",
                    ha=align, va="bottom" if below else "top", fontsize=7, color=color,
                    arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1},
                    annotation_clip=False)
        count += 1
    return count


def dense_band(ax, value, label="dense"):
    """The dense model's score (percent) as a dotted line inside its +/- 1 point band."""
    ax.axhspan(value - 1, value + 1, color="0.85", alpha=0.6, lw=0, zorder=0)
    ax.axhline(value, color="k", lw=1, ls=":", zorder=1)
    return [Line2D([], [], color="k", lw=1, ls=":", label=label),
            Patch(color="0.85", alpha=0.6, label=f"{label} ± 1 point")]


def interval_bars(ax, xs, ys, lows, highs, color):
    """Vertical 95% interval bars [low, high] (percent) at each point that has one."""
    keep = [i for i, (lo, hi) in enumerate(zip(lows, highs))
            if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi)]
    if not keep:
        return False
    y = np.asarray(ys, dtype=float)[keep]
    ax.errorbar(np.asarray(xs, dtype=float)[keep], y,
                yerr=[y - np.asarray(lows, dtype=float)[keep],
                      np.asarray(highs, dtype=float)[keep] - y],
                fmt="none", ecolor=color, elinewidth=0.9, capsize=2.5, alpha=0.7, zorder=2)
    return True


def _interval(part, dense_macro_f1):
    """Percent bounds of each row's macro-F1 95% interval (dense + diff_low/high), None
    where a row has none."""
    if not {"diff_low", "diff_high"} <= set(part.columns):
        return [None] * len(part), [None] * len(part)

    def bound(diff):
        return None if diff is None or np.isnan(diff) else 100 * (dense_macro_f1 + diff)
    return [bound(v) for v in part.diff_low], [bound(v) for v in part.diff_high]


def method_handle(method):
    style = method_style(method)
    return Line2D([], [], color=style.color, marker=style.marker, ls="none", markersize=7,
                  label=style.label)


def stage_handles(stages):
    return [Line2D([], [], color="0.3", ls=STAGE_LINE[s], marker="o", markersize=5,
                   markerfacecolor="0.3" if s else "white", label=STAGE_LABEL[s])
            for s in (True, False) if s in stages]


def legend_outside(ax, handles, title=None):
    return ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                     fontsize=8, title=title, title_fontsize=8, frameon=False)


def off_axis_handle(count):
    return Line2D([], [], color="0.3", marker=r"$\downarrow$", ls="none", markersize=8,
                  label=f"{count} point{'s' if count != 1 else ''} off the axis (value shown)")


def _stage(value):
    return value if isinstance(value, bool) else str(value) == "True"


# ------------------------------------------------------------------ data (notebook 01)

def plot_class_balance(splits, path=None, title="Class balance per split"):
    """Share of each label per split; `splits` = data/stats.json's "splits"
    ({split: {"rows": n, label: n, ...}})."""
    order = ("train", "validation", "test")
    names = sorted(splits, key=lambda s: order.index(s) if s in order else len(order))
    labels = [k for k in splits[names[0]] if k != "rows"]
    fig, ax = plt.subplots(figsize=(6.8, 3.2))
    width = 0.8 / len(labels)
    for j, label in enumerate(labels):
        shares = [100 * splits[s][label] / splits[s]["rows"] for s in names]
        bars = ax.bar(np.arange(len(names)) + (j - (len(labels) - 1) / 2) * width, shares,
                      width, color=LABEL_COLORS.get(label), label=label)
        ax.bar_label(bars, labels=[f"{v:.0f}%" for v in shares], fontsize=7, padding=2)
    ax.set_xticks(range(len(names)), [f"{s}\n({splits[s]['rows']:,} tweets)" for s in names])
    ax.set_ylim(0, 1.2 * max(100 * splits[s][k] / splits[s]["rows"]
                             for s in names for k in labels))
    ax.set(ylabel="share of the split's tweets (%)", title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="label", fontsize=8, title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.02, 1.0), frameon=False)
    return finish_figure(fig, path)


def plot_token_lengths(lengths, max_length, path=None, title="Token lengths of the training tweets"):
    """Histogram of tokens per tweet (with [CLS]/[SEP]) up to a little past the longest of
    max_length and the 99.9th percentile; the max_length line says how many tweets it cuts,
    and the tweets right of the axis are counted, not hidden."""
    lengths = np.asarray(lengths)
    p95, p99, p999 = np.percentile(lengths, [95, 99, 99.9])
    right = int(np.ceil(1.15 * max(max_length, p999)))
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.hist(np.minimum(lengths, right + 1), bins=np.arange(0, right + 1) + 0.5, color="#1f77b4")
    truncated = int(np.sum(lengths > max_length))
    handles = [
        ax.axvline(p95, color="0.3", ls="--", lw=1, label=f"95th percentile: {p95:.0f}"),
        ax.axvline(p99, color="0.3", ls=":", lw=1.2, label=f"99th percentile: {p99:.0f}"),
        ax.axvline(max_length, color="#d62728", lw=1.5,
                   label=f"max_length {max_length}: cuts\n{truncated:,} tweets "
                         f"({100 * truncated / len(lengths):.2f}%)")]
    beyond = int(np.sum(lengths > right))
    if beyond:
        handles.append(Patch(color="none", label=f"{beyond:,} tweets > {right} tokens\n"
                                                  f"(max {lengths.max()}) off the axis"))
    ax.set_xlim(0, right)
    ax.set(xlabel="tokens per tweet (MiniLM WordPiece, with [CLS] and [SEP])",
           ylabel="training tweets", title=title)
    ax.grid(axis="y", alpha=0.3)
    legend_outside(ax, handles)
    return finish_figure(fig, path)


# ------------------------------------------------------------------ baseline (notebook 02)

def plot_training_curves(history, path=None):
    """Training loss and validation metrics per epoch."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", color="#1f77b4")
    ax_loss.set(xlabel="epoch", ylabel="training cross-entropy (nats)", title="Training loss")
    for (key, label), marker in zip((("val_macro_f1", "macro-F1"), ("val_accuracy", "accuracy"),
                                     ("val_macro_recall", "macro-recall")), "os^"):
        ax_val.plot(epochs, [100 * r[key] for r in history], marker=marker, label=label)
    ax_val.set(xlabel="epoch", ylabel="validation score (%)", title="Validation")
    legend_outside(ax_val, ax_val.get_legend_handles_labels()[0])
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


# ------------------------------------------------------------------ block pruning (03, 09)

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
                    label=f"{label} ({100 * np.mean(values == 0):.0f}% exactly 0)")
        ax.set(xlabel=f"log10 L2 norm of a {kind} group", ylabel="groups",
               title=f"{kind} groups")
        ax.legend(fontsize=7)
    return finish_figure(fig, path)


def plot_lambda_k_sweep(sweep_frame, dense_val_macro_f1, path=None):
    """Validation macro-F1 after thresholding (no retraining) against λ1, a line per K, a panel
    per target sparsity (utils.pruning.sweep.lambda_k_sweep)."""
    targets = sorted(sweep_frame.target.unique())
    lambdas = sorted(sweep_frame.lambda1.unique())
    fig, axes = plt.subplots(1, len(targets), figsize=(4.6 * len(targets) + 2, 3.4),
                             sharey=True, squeeze=False)
    for ax, target in zip(axes[0], targets):
        for (k, part), marker in zip(sweep_frame[sweep_frame.target == target].groupby("K"),
                                     "os^vD"):
            ax.plot(part.lambda1, 100 * part.val_macro_f1, marker=marker, label=f"K = {k}")
        dense = dense_band(ax, 100 * dense_val_macro_f1, "dense (validation)")
        ax.set(xscale="log", xlabel="λ1, group-lasso weight (log scale)",
               title=f"thresholded to {100 * target:.0f}% encoder sparsity")
        ax.set_xticks(lambdas, [f"{v:g}" for v in lambdas])
        ax.minorticks_off()
        ax.margins(x=0.15)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation macro-F1, no retraining (%)")
    axes[0][0].set_ylim(0, 100)
    legend_outside(axes[0][-1], axes[0][-1].get_legend_handles_labels()[0] + dense)
    return finish_figure(fig, path)


# ------------------------------------------------------------------ sparsity (04, 10)

X_LABELS = {"sparsity_encoder_linear": "sparsity of encoder linear weights (%)",
            "sparsity_total": "sparsity of all model parameters (%)"}


def _method_lines(ax, frame, x, dense_macro_f1, dodge=0.0):
    """One line per (method, stage) of `frame` (method, retrained, x, macro_f1 and, where
    known, diff_low/diff_high): METHOD_STYLE colour and marker, STAGE_LINE style (hollow
    markers for points as saved), 95% interval bars; each method's x shifted by `dodge`
    points per place in the method order (centred), so equal points stay visible. Returns
    (methods, stages, whether any interval was drawn)."""
    methods, stages, any_interval = [], set(), False
    frame = frame.assign(retrained=[_stage(v) for v in frame.retrained])
    order = list(dict.fromkeys(frame.method))
    for (method, retrained), part in frame.groupby(["method", "retrained"], sort=False):
        style = method_style(method)
        part = part.sort_values(x)
        shift = dodge * (order.index(method) - (len(order) - 1) / 2)
        xs, ys = 100 * part[x].to_numpy(float) + shift, 100 * part.macro_f1.to_numpy(float)
        ax.plot(xs, ys, color=style.color, marker=style.marker, ls=STAGE_LINE[retrained],
                markersize=6, markerfacecolor=style.color if retrained else "white",
                alpha=1 if retrained else 0.8, zorder=3)
        any_interval |= interval_bars(ax, xs, ys, *_interval(part, dense_macro_f1), style.color)
        methods.append(method)
        stages.add(retrained)
    return list(dict.fromkeys(methods)), stages, any_interval


def _scores(frame, dense_macro_f1):
    """Percent macro-F1 of every row of `frame` and the bounds of its 95% intervals: what a
    focused axis must hold."""
    lows, highs = _interval(frame, dense_macro_f1)
    return [*(100 * frame.macro_f1.to_numpy(float)), *lows, *highs]


def _focus(ax, frame, x, dense_macro_f1):
    """focus_limits on the macro-F1 (and intervals) of `frame`, its far points marked;
    returns their count."""
    ax.set_ylim(*focus_limits(_scores(frame, dense_macro_f1), 100 * dense_macro_f1))
    count, placed = 0, []
    for method, part in frame.groupby("method", sort=False):
        count += mark_off_axis(ax, 100 * part[x].to_numpy(float),
                               100 * part.macro_f1.to_numpy(float), method_style(method).color,
                               placed=placed)
    return count


def plot_sparsity_curves(frame, dense_macro_f1, path=None, x="sparsity_encoder_linear",
                         title=None):
    """Test macro-F1 against sparsity, a line per method and stage (as saved: dashed, final:
    solid), 95% intervals of the final points against dense as bars; the y-axis shows the
    dense +/- 1 point band and the points near it, collapsed points as arrows at its edge."""
    fig, ax = plt.subplots(figsize=(8.6, 4.0))
    dense = dense_band(ax, 100 * dense_macro_f1, "dense")
    methods, stages, any_interval = _method_lines(ax, frame, x, dense_macro_f1)
    off = _focus(ax, frame, x, dense_macro_f1)
    ax.set(xlabel=X_LABELS[x], ylabel="test macro-F1 (%)", title=title)
    ax.grid(alpha=0.3)
    handles = [method_handle(m) for m in methods] + stage_handles(stages) + dense
    if any_interval:
        handles.append(Line2D([], [], color="0.3", marker="|", ls="none", markersize=12,
                              label="95% interval (paired bootstrap vs dense)"))
    if off:
        handles.append(off_axis_handle(off))
    legend_outside(ax, handles)
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


def _label_points(ax, xs, ys, texts, color="0.2", side="alternate"):
    """Small labels beside points. side="alternate": above and below in turn in x order, so
    neighbours along a curve do not overlap; "right": right of each point (the rightmost
    one left of it, clear of a legend outside the axes)."""
    order = np.argsort(xs)
    for rank, i in enumerate(order):
        if side == "right":
            last = rank == len(order) - 1
            place = {"xytext": (-8 if last else 8, 0), "ha": "right" if last else "left",
                     "va": "center"}
        else:
            above = rank % 2 == 0
            place = {"xytext": (0, 7 if above else -8), "ha": "center",
                     "va": "bottom" if above else "top"}
        ax.annotate(texts[i], (xs[i], ys[i]), textcoords="offset points", fontsize=7,
                    color=color, bbox={"fc": "white", "ec": "none", "alpha": 0.75, "pad": 0.5},
                    **place)


def plot_speed_curves(points, dense_val_macro_f1, path=None):
    """Validation macro-F1 against measured CPU speedup over dense, one line per curve
    (`curve` column: block pruning to sparsity targets, to latency targets; `method` its
    METHOD_STYLE): batch-1 latency on the left, time per example at batch 32 on the right."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.9), sharey=True)
    for ax, x, label in zip(axes, ("speedup_batch1", "speedup_batched"),
                            ("speedup over dense, batch-1 latency (x)",
                             "speedup over dense, batch-32 time per tweet (x)")):
        dense = dense_band(ax, 100 * dense_val_macro_f1, "dense (1.0x)")
        handles = []
        for (curve, method), part in points.groupby(["curve", "method"], sort=False):
            style = method_style(method)
            part = part.sort_values(x)
            line, = ax.plot(part[x], 100 * part.val_macro_f1, marker=style.marker,
                            color=style.color, label=f"{style.label} ({curve})")
            handles.append(line)
            _label_points(ax, part[x].to_numpy(), 100 * part.val_macro_f1.to_numpy(),
                          list(part.label), style.color)
        ax.set(xlabel=label)
        ax.margins(y=0.12)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation macro-F1 (%)")
    legend_outside(axes[1], handles + dense)
    return finish_figure(fig, path)


# ------------------------------------------------------------------ comparison (notebook 07)

def plot_methods_sparsity(points, dense_macro_f1, path=None, x="sparsity_encoder_linear"):
    """Test macro-F1 against encoder-linear sparsity for every method, one colour and marker
    per method, one panel per stage: the final (recovered) points the comparison ranks, with
    their 95% intervals, on an axis around dense (far points as arrows at its edge); and the
    same models as saved, before recovery, on the whole 0-100% axis. Methods are dodged
    sideways by up to DODGE_POINTS so that equal points at one target stay visible."""
    points = points.assign(retrained=[_stage(v) for v in points.retrained])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), sharex=True)
    off = any_interval = False
    for ax, stage in zip(axes, (True, False)):
        part = points[points.retrained == stage]
        dense = dense_band(ax, 100 * dense_macro_f1, "dense")
        _, _, drawn = _method_lines(ax, part, x, dense_macro_f1,
                                    dodge=2 * DODGE_POINTS / max(points.method.nunique() - 1, 1))
        any_interval |= drawn
        if stage:
            off = _focus(ax, part, x, dense_macro_f1)
        else:
            ax.set_ylim(0, 100)
        ax.set(xlabel=X_LABELS[x], ylabel=f"test macro-F1, {STAGE_LABEL[stage]} (%)",
               title=("final points (recovered): the comparison" if stage
                      else "the same models as saved, before recovery"))
        ax.grid(alpha=0.3)
    handles = [method_handle(m) for m in dict.fromkeys(points.method)] + dense
    handles.append(Patch(color="none", label=f"(x dodged by up to ±{DODGE_POINTS:g} points\n"
                                             "so equal points stay visible)"))
    if any_interval:
        handles.append(Line2D([], [], color="0.3", marker="|", ls="none", markersize=12,
                              label="95% interval (paired bootstrap vs dense)"))
    if off:
        handles.append(off_axis_handle(off))
    legend_outside(axes[1], handles, title="method")
    return finish_figure(fig, path)


def plot_pareto(latency, path=None):
    """Measured CPU latency (batch 1) and throughput (batch 32) against test macro-F1 of every
    compacted recovered variant (latency_pareto.csv), 95% intervals as bars, the Pareto front
    as a step line (the report's front table names its points); the axes show the region near
    dense, points far below it as arrows at the edge."""
    dense_f1 = float(latency[latency.method == "dense"].macro_f1.iloc[0])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    panels = (("latency_ms_median", "CPU latency per tweet, batch 1, median (ms)", True,
               "{:.2g} ms"),
              ("throughput_ex_per_s", "CPU throughput, batch 32 (tweets/s)", False,
               "{:,.0f} tweets/s"))
    for ax, (cost, label, lower_better, x_fmt) in zip(axes, panels):
        band = dense_band(ax, 100 * dense_f1, "dense")
        for method, part in latency.groupby("method", sort=False):
            style = method_style(method)
            xs, ys = part[cost].to_numpy(float), 100 * part.macro_f1.to_numpy(float)
            ax.scatter(xs, ys, color=style.color, marker=style.marker,
                       s=160 if method == "dense" else 45, zorder=4,
                       edgecolors="white", linewidths=0.5)
            interval_bars(ax, xs, ys, *_interval(part, dense_f1), style.color)
        frame = latency.assign(_cost=latency[cost] if lower_better else -latency[cost])
        front = dominance.pareto_front_of_frame(frame, cost="_cost").sort_values(cost)
        # best macro-F1 attainable at this cost or better: constant until the next front point
        ax.step(front[cost], 100 * front.macro_f1, where="post" if lower_better else "pre",
                color="k", lw=1, alpha=0.6, zorder=3)
        ax.set_ylim(*focus_limits(_scores(latency, dense_f1), 100 * dense_f1))
        low, high = ax.get_ylim()
        shown = latency[cost][(100 * latency.macro_f1).between(low, high)]
        margin = 0.06 * (shown.max() - shown.min()) or 0.05 * abs(shown.max()) or 1.0
        ax.set_xlim(shown.min() - margin, shown.max() + margin)
        placed = []
        off = sum(mark_off_axis(ax, part[cost].to_numpy(float),
                                100 * part.macro_f1.to_numpy(float), method_style(m).color,
                                placed=placed, x_fmt=x_fmt)
                  for m, part in latency.groupby("method", sort=False))
        ax.set(xlabel=label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test macro-F1 (%)")
    handles = [method_handle(m) for m in dict.fromkeys(latency.method)]
    handles += [Line2D([], [], color="k", lw=1, alpha=0.6,
                       label="Pareto front"),
                Line2D([], [], color="0.3", marker="|", ls="none", markersize=12,
                       label="95% interval (paired bootstrap vs dense)"), *band]
    if off:
        handles.append(off_axis_handle(off))
    legend_outside(axes[1], handles, title="method")
    return finish_figure(fig, path)


# ------------------------------------------------------------------ storage (06, 08)

def storage_of(variant):
    """'binary', 'int8' or 'float32': how a binarization.csv variant stores its weights."""
    return ("binary" if "binary" in variant else "int8" if "int8" in variant else "float32")


def plot_size_vs_f1(rows, dense_macro_f1, path=None):
    """Test macro-F1 (%) against bits on disk per weight of the dense model (log2 scale):
    colour = the model (dense, or block-pruned compact), marker = how its weights are stored;
    binarized-but-not-retrained variants as grey crosses, at the axis edge with their value
    when far below."""
    fig, ax = plt.subplots(figsize=(8.8, 4.2))
    kept = [r for r in rows if _stage(r.get("trained", True))]
    untrained = [r for r in rows if not _stage(r.get("trained", True))]
    dense = dense_band(ax, 100 * dense_macro_f1, "dense float32")
    for r in kept:
        model = "block" if r["variant"].startswith("pruned") else "dense"
        ax.scatter(r["bits_per_dense_weight"], 100 * r["macro_f1"], s=60, zorder=4,
                   color=method_style(model).color, marker=STORAGE_MARKERS[storage_of(r["variant"])])
    ax.scatter([r["bits_per_dense_weight"] for r in untrained],
               [100 * r["macro_f1"] for r in untrained], marker="x", s=50, color="0.5", zorder=4)
    order = sorted(kept, key=lambda r: r["bits_per_dense_weight"])
    _label_points(ax, np.array([r["bits_per_dense_weight"] for r in order]),
                  np.array([100 * r["macro_f1"] for r in order]), [r["variant"] for r in order],
                  side="right")
    ax.set_xscale("log", base=2)
    ax.margins(x=0.1)
    ax.set_ylim(*focus_limits([100 * r["macro_f1"] for r in rows], 100 * dense_macro_f1,
                              pad=1.5))
    off = mark_off_axis(ax, [r["bits_per_dense_weight"] for r in untrained],
                        [100 * r["macro_f1"] for r in untrained], "0.4")
    ax.set(xlabel="bits on disk per weight of the dense model (log2 scale)",
           ylabel="test macro-F1 (%)", title="Accuracy against storage")
    ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=method_style(m).color, marker="o", ls="none", label=text)
               for m, text in (("dense", "dense model"), ("block", "block-pruned, compact"))]
    handles += [Line2D([], [], color="0.3", marker=marker, ls="none", markerfacecolor="white",
                       label=f"{kind} weights") for kind, marker in STORAGE_MARKERS.items()]
    handles += [Line2D([], [], color="0.5", marker="x", ls="none",
                       label="binarized, not retrained"), *dense]
    if off:
        handles.append(off_axis_handle(off))
    legend_outside(ax, handles)
    return finish_figure(fig, path)


def plot_demo_latency(rows, path=None):
    """Median per-tweet latency (ms) next to the size on disk (MB) of the demo's models
    (results/demo.json "models")."""
    names = [r["model"] for r in rows]
    fig, (ax_ms, ax_mb) = plt.subplots(1, 2, figsize=(9.5, 0.45 * len(rows) + 1.9),
                                       sharey=True)
    ax_ms.barh(names, [r["latency_ms_median"] for r in rows], color="#1f77b4")
    ax_ms.set(xlabel="median latency per tweet, batch 1 (ms)", title="CPU latency")
    ax_mb.barh(names, [r["disk_mb"] for r in rows], color="#2ca02c")
    ax_mb.set(xlabel="model files on disk (MB = 10⁶ bytes)", title="Size")
    ax_ms.invert_yaxis()   # shared: the first model on top in both panels
    for ax in (ax_ms, ax_mb):
        ax.bar_label(ax.containers[0], fmt="%.1f", padding=3, fontsize=8)
        ax.margins(x=0.2)
        ax.grid(axis="x", alpha=0.3)
    return finish_figure(fig, path)


# ------------------------------------------------------------------ replicates (notebook 12)

def plot_replicates(finals, table, dense_macro_f1, levels, path=None):
    """Test macro-F1 (%) of each replicated method at each level: every seed's recovered point
    as a small dot, the mean over seeds as the method's marker with its 95% interval (Student
    t over seeds), methods side by side within a level; the dense model's line and band."""
    fig, ax = plt.subplots(figsize=(9, 4.4))
    methods = list(dict.fromkeys(table.method))
    width = 0.7 / max(table.groupby("level").method.nunique().max(), 1)
    dense = dense_band(ax, 100 * dense_macro_f1, "dense")
    level_key = [round(float(x), 4) for x in levels]
    for method in methods:
        style = method_style(method)
        mine = table[table.method == method]
        for row in mine.itertuples():
            here = list(table[table.level.round(4) == round(row.level, 4)].method)   # side by side
            offset = (here.index(method) - (len(here) - 1) / 2) * width
            x = level_key.index(round(row.level, 4)) + offset
            seeds = finals[(finals.method == method) & (finals.target_sparsity.round(4) == round(row.level, 4))]
            ax.scatter(np.full(len(seeds), x), 100 * seeds.macro_f1, s=14, color=style.color,
                       alpha=0.45, linewidths=0, zorder=3)
            ax.plot([x], [100 * row.macro_f1_mean], marker=style.marker, color=style.color,
                    markersize=8, ls="none", zorder=4)
            if row.macro_f1_low is not None and np.isfinite(row.macro_f1_low):
                interval_bars(ax, [x], [100 * row.macro_f1_mean], [100 * row.macro_f1_low],
                              [100 * row.macro_f1_high], style.color)
    ax.set_xticks(range(len(levels)), [f"{x:.0%}" for x in levels])
    ax.set(xlabel="target sparsity of the encoder's linear weights",
           ylabel="test macro-F1, recovered (%)",
           title=f"Replicates: mean over seeds with its 95% interval; dots are single seeds")
    ax.grid(alpha=0.3, axis="y")
    handles = [method_handle(m) for m in methods] + dense
    handles.append(Line2D([], [], color="0.3", marker="o", ls="none", markersize=4, alpha=0.45,
                          label="one seed"))
    handles.append(Line2D([], [], color="0.3", marker="|", ls="none", markersize=12,
                          label="95% interval of the mean"))
    legend_outside(ax, handles, title="method")
    return finish_figure(fig, path)
