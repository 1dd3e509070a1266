"""Block pruning against the baselines (notebook 07): which compacted models to time
(`latency_variants`; `utils.measurement.timing.time_compacted` times them in groups), speedups against the
dense model timed in the same group (`attach_latency`), the Pareto front and its dominance check,
the comparison table at matched sparsity and the generated discussion (its figures:
`utils.face.plots.plot_methods_sparsity` and `plot_pareto`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from utils import saved
from utils.common import io
from utils.measurement import dominance

LEVELS = (0.5, 0.7, 0.9)


# ------------------------------------------------------------------ latency

def latency_variants(sweep_frame, model_dirs, dense_dir, cost_methods=()):
    """{variant name: model directory} for the dense model and every retrained point of
    `sweep_frame` whose directory exists: model_dirs = {method: directory holding
    sparsity_XX}, or cost_XX for the methods in `cost_methods` (block pruning to latency
    targets, whose target is a share of dense latency). Also returns the
    (method, target_sparsity) of each variant."""
    variants, keys = {"dense": Path(dense_dir)}, {"dense": ("dense", 0.0)}
    retrained = sweep_frame[sweep_frame.retrained.astype(bool)]
    for (method, target), _ in retrained.groupby(["method", "target_sparsity"]):
        if method not in model_dirs:
            continue
        by_cost = method in cost_methods
        directory = Path(model_dirs[method]) / (io.cost_dir_name if by_cost
                                                else io.sparsity_dir_name)(target)
        if saved.is_model_dir(directory):
            name = f"{method} @ {target:g}x latency" if by_cost else f"{method} @ {target:.0%}"
            variants[name], keys[name] = directory, (method, float(target))
    return variants, keys


def attach_latency(sweep_frame, latency, keys, dense_metrics):
    """Retrained rows of `sweep_frame` joined with their timings, plus a 'dense' row;
    speedups relative to dense.

    With `time_compacted`'s in-group columns (`dense_latency_ms_in_group`,
    `dense_throughput_in_group`) each speedup is against the dense model timed in the same
    group as the variant (timings drift between groups): latency_speedup_vs_dense =
    dense_latency_ms_in_group / latency_ms_median, throughput_speedup_vs_dense =
    throughput_ex_per_s / dense_throughput_in_group. Without them, against the dense row."""
    latency = latency.copy()
    latency["method"] = [keys[v][0] for v in latency.variant]
    latency["target_sparsity"] = [keys[v][1] for v in latency.variant]
    points = sweep_frame[sweep_frame.retrained.astype(bool)].copy()
    points["target_sparsity"] = points.target_sparsity.astype(float)
    dense = pd.DataFrame([{"method": "dense", "target_sparsity": 0.0, "retrained": True,
                           "sparsity_encoder_linear": 0.0, "sparsity_total": 0.0,
                           **{k: dense_metrics[k] for k in
                              ("accuracy", "macro_f1", "macro_recall")}}])
    merged = pd.concat([dense, points], ignore_index=True).merge(
        latency, on=["method", "target_sparsity"], how="inner")
    if {"dense_latency_ms_in_group", "dense_throughput_in_group"} <= set(merged.columns):
        dense_latency = merged.dense_latency_ms_in_group
        dense_throughput = merged.dense_throughput_in_group
    else:
        base = merged[merged.method == "dense"].iloc[0]
        dense_latency, dense_throughput = base.latency_ms_median, base.throughput_ex_per_s
    merged["latency_speedup_vs_dense"] = dense_latency / merged.latency_ms_median
    merged["throughput_speedup_vs_dense"] = merged.throughput_ex_per_s / dense_throughput
    return merged


# ------------------------------------------------------------------ comparison table

def block_train_examples(points, reached, batch_size, retrain):
    """Training examples each row of a block-pruning sweep (`points`: target_sparsity, final)
    has seen: the pruning run up to its snapshot (optimizer steps x `batch_size`, the step from
    the run's `reached` records), plus its recovery (`retrain`: examples x epochs) for the
    final, recovered rows."""
    steps = {float(r["target"]): int(r["step"]) for r in reached}
    missing = sorted(set(points.target_sparsity.astype(float)) - set(steps))
    if missing:
        raise ValueError(f"targets {missing} are not in the run's reached records "
                         f"({sorted(steps)}): the sweep and the run do not match")
    recovery = retrain["examples"] * retrain["epochs"]
    return [steps[float(t)] * batch_size + (recovery if final else 0)
            for t, final in zip(points.target_sparsity, points.final.astype(bool))]


def comparison_table(points, dense_metrics, levels=LEVELS, latency=None):
    """Each method's point at each matched sparsity level, chosen on validation: among its
    `final` points whose encoder-linear sparsity is at least the level, the highest
    val_macro_f1 (ties: the sparser); test scores are reported for it. Methods that never
    reach a level get a row with reached=False and their highest sparsity.
    latency: `attach_latency` output, to add each chosen point's timings."""
    missing = {"final", "val_macro_f1"} - set(points.columns)
    if missing:
        raise ValueError(f"points lack the columns {sorted(missing)}: rerun the sweeps that "
                         "wrote them (notebooks 04 and 07) with the current code")
    rows = []
    final = points[points.final.astype(bool)]
    for method, part in final.groupby("method", sort=False):
        for level in levels:
            above = part[part.sparsity_encoder_linear >= level - 1e-9]
            row = {"level": level, "method": method, "reached": bool(len(above)),
                   "max_sparsity_encoder_linear": float(part.sparsity_encoder_linear.max())}
            if len(above):
                best = above.sort_values(["val_macro_f1", "sparsity_encoder_linear"]).iloc[-1]
                row.update({k: float(best[k]) for k in
                            ("target_sparsity", "sparsity_encoder_linear", "sparsity_total",
                             "accuracy", "macro_f1", "macro_recall", "val_macro_f1")})
                for k in ("diff_low", "diff_high", "train_examples_total"):
                    if k in best.index and pd.notna(best[k]):
                        row[k] = float(best[k])
                row["gap_to_dense_points"] = 100 * (dense_metrics["macro_f1"] - best.macro_f1)
                if latency is not None:
                    # a target that reproduced an earlier target's masks was saved (and
                    # timed) under that earlier target only
                    timed = best.get("same_masks_as_target", np.nan)
                    timed = best.target_sparsity if pd.isna(timed) else float(timed)
                    match = latency[(latency.method == method)
                                    & np.isclose(latency.target_sparsity, timed)]
                    if len(match):
                        row.update({k: float(match.iloc[0][k]) for k in
                                    ("latency_ms_median", "latency_speedup_vs_dense",
                                     "throughput_ex_per_s", "throughput_speedup_vs_dense",
                                     "parameters")})
            rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table["rank"] = table.groupby("level").macro_f1.rank(ascending=False, method="min")
        table = table.sort_values(["level", "rank", "method"], na_position="last")
    return table.reset_index(drop=True)


def write_table(table, path):
    return io.write_csv(table, path)


# ------------------------------------------------------------------ discussion

def _gap(row):
    gap = row.gap_to_dense_points
    if abs(gap) < 0.05:
        return "level with dense"
    return f"{abs(gap):.1f} points {'below' if gap > 0 else 'above'} dense"


def budget_sentence(table, block="block"):
    """How many training examples each chosen point saw, where the table records it, and
    whether that is the same budget as block pruning's (`report.budgets_equal`)."""
    if "train_examples_total" not in table.columns:
        return ""
    parts = []
    for level, part in table[table.reached].groupby("level"):
        mine = part[part.method == block].train_examples_total.dropna()
        others = part[part.method != block].train_examples_total.dropna()
        if len(mine) and len(others):
            parts.append(f"≥{level:.0%}: block pruning {mine.iloc[0]:,.0f}, the others "
                         + (f"{others.min():,.0f}" if others.min() == others.max()
                            else f"{others.min():,.0f}-{others.max():,.0f}"))
    if not parts:
        return ""
    equal = budgets_equal(table[table.reached].to_dict("records"), block)
    verdict = (f"equal within {BUDGET_TOLERANCE:.0%}, the pruning phase included" if equal
               else "block pruning's include its pruning run up to the snapshot, so the "
                    "budgets are not equal")
    return (f" Training examples behind each chosen point ({verdict}): "
            + "; ".join(parts) + ".")


def discussion(table, latency, dense_metrics, block="block", unstructured="magnitude_global"):
    """Sentences (markdown) generated from the comparison table and the timings."""
    lines = [f"Dense baseline: test macro-F1 {100 * dense_metrics['macro_f1']:.1f}%."]
    for level, part in table.groupby("level"):
        reached = part[part.reached].sort_values("macro_f1", ascending=False)
        missing = part[~part.reached]
        if not len(reached):
            lines.append(f"- At ≥{level:.0%} encoder-linear sparsity no method has a point.")
            continue
        top = reached.iloc[0]
        text = (f"- At ≥{level:.0%} encoder-linear sparsity the best point (each method's "
                f"chosen on validation) is "
                f"**{top.method}** (macro-F1 {100 * top.macro_f1:.1f}%, {_gap(top)})")
        if block in set(reached.method):
            b = reached[reached.method == block].iloc[0]
            if top.method != block:
                text += (f"; block pruning is rank {int(b['rank'])} of {len(reached)} with "
                         f"{100 * b.macro_f1:.1f}% ({100 * (top.macro_f1 - b.macro_f1):.1f} "
                         f"points behind)")
            if "latency_speedup_vs_dense" in b and pd.notna(b.latency_speedup_vs_dense):
                text += (f"; block pruning's compacted model runs at "
                         f"{b.latency_speedup_vs_dense:.2f}x dense speed (batch-1 latency)")
        elif block in set(missing.method):
            text += "; block pruning has no point this sparse"
        if len(missing):
            text += (". Not reachable: " + ", ".join(
                f"{m.method} (max {m.max_sparsity_encoder_linear:.0%})"
                for m in missing.itertuples()))
        lines.append(text + ".")
    if latency is not None and len(latency):
        dense = latency[latency.method == "dense"].iloc[0]
        close = latency[(latency.method != "dense")
                        & (latency.macro_f1 >= dense.macro_f1 - 0.01)]
        if len(close):
            fast = close.sort_values("latency_ms_median").iloc[0]
            lines.append(f"- Fastest compacted variant within 1 point of dense macro-F1: "
                         f"**{fast.variant}**, {fast.latency_ms_median:.2f} ms at batch 1 "
                         f"({fast.latency_speedup_vs_dense:.2f}x dense, "
                         f"{fast.throughput_speedup_vs_dense:.2f}x throughput).")
        else:
            lines.append("- No pruned variant stays within 1 point of dense macro-F1.")
        magnitude = latency[latency.method == unstructured]
        if len(magnitude):
            m = magnitude.sort_values("sparsity_encoder_linear").iloc[-1]
            text = (f"- Unstructured magnitude pruning at {m.sparsity_encoder_linear:.0%} "
                    f"sparsity keeps {m.parameters:,.0f} of {dense.parameters:,.0f} parameters "
                    f"after compaction and measures {m.latency_speedup_vs_dense:.2f}x dense "
                    f"speed (batch-1 latency)")
            if m.parameters == dense.parameters:
                text += (": its zeros are scattered inside matrices that keep their shapes, so "
                         "dense kernels do the same work"
                         + (" (the difference from 1.00x is timing noise)"
                            if abs(m.latency_speedup_vs_dense - 1) > 0.05 else ""))
            lines.append(text + ".")
        front = dominance.pareto_front_of_frame(latency)
        lines.append("- Pareto front (latency vs macro-F1): " + ", ".join(
            f"{r.variant} ({r.latency_ms_median:.2f} ms, {100 * r.macro_f1:.1f}%)"
            for r in front.itertuples()) + ".")
    lines.append("- Caveats: one seed; each method's point is chosen on validation and reported "
                 "on test; CPU timings of this machine." + budget_sentence(table, block))
    return "\n".join(lines)


BUDGET_TOLERANCE = 0.10   # training budgets within 10% of block pruning's count as equal


def budgets_equal(comparison, block="block"):
    """Whether every reached point of comparison.csv trained on block pruning's number of
    examples at its level (within BUDGET_TOLERANCE); False when a count is missing."""
    def examples(row):
        n = row.get("train_examples_total")
        return float(n) if n not in (None, "") and float(n) == float(n) else None
    for level in {r["level"] for r in comparison}:
        reached = [r for r in comparison if r["level"] == level and r["reached"]]
        ours = [examples(r) for r in reached if r["method"] == block]
        if not ours or not ours[0]:
            return False
        if any(examples(r) is None or abs(examples(r) - ours[0]) > BUDGET_TOLERANCE * ours[0]
               for r in reached):
            return False
    return True
