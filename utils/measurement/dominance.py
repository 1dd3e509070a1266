"""Which points beat which on a cost/quality plane: the one rule behind the comparison's front
check (block pruning's points against the others), the report's peer check and the latency
curve's validation front. A point weakly dominates another when it is at least as fast (not
slower beyond the spread of repeated round-robin timings, `at_least_as_fast`; older records: within
a fixed speed ratio) and at least as good (within a margin)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from utils.measurement import intervals


def dominators(point, rows, speed_ratio=1.0, margin=0.0, strictly_better=False,
               speed="latency_speedup_vs_dense", quality="macro_f1"):
    """The rows (dicts) that weakly dominate `point` on the speed/quality plane: at least
    `speed_ratio` x its speedup vs dense (higher is faster) and a quality >= its quality -
    `margin` (> with `strictly_better`). One rule for the comparison's front check (block
    points against the others) and the report's peer check (simple methods against peers)."""
    fast = [r for r in rows if r[speed] >= speed_ratio * point[speed]]
    if strictly_better:
        return [r for r in fast if r[quality] > point[quality] - margin]
    return [r for r in fast if r[quality] >= point[quality] - margin]


def pareto_front(rows, cost="latency_ms_median", quality="macro_f1"):
    """Rows no other row beats on both cost and quality, cheapest first."""
    front, best = [], float("-inf")
    for row in sorted(rows, key=lambda r: (r[cost], -r[quality])):
        if row[quality] > best:
            front.append(row)
            best = row[quality]
    return front


def pareto_front_of_frame(frame, cost="latency_ms_median", quality="macro_f1"):
    """Rows not dominated by another (no other is at most as costly and at least as good, and
    strictly better in one), sorted by cost."""
    rows = [{"index": i, cost: c, quality: q}
            for i, c, q in zip(frame.index, frame[cost], frame[quality])]
    return frame.loc[[r["index"] for r in pareto_front(rows, cost, quality)]]


def speed_verdict(a, b, speed="latency_speedup_vs_dense"):
    """Is point `a` faster than `b`? From their per-round speedups over dense
    (`latency_speedup_rounds`, round i of each against the dense copy timed in its own group):
    `intervals.ratio_summary` of a_i / b_i, "higher" (faster beyond the rounds' spread),
    "lower" or "tie". None when either point has fewer than two rounds (older records)."""
    ra, rb = intervals.parse_rounds(a.get("latency_speedup_rounds")), intervals.parse_rounds(b.get("latency_speedup_rounds"))
    if min(len(ra), len(rb)) < 2:
        return None
    return intervals.ratio_summary([x / y for x, y in zip(ra, rb)])["verdict"]


def at_least_as_fast(a, b, speed_ratio=0.95, speed="latency_speedup_vs_dense"):
    """`a` is at least as fast as `b` unless the spread of repeated round-robin timings says it
    is slower (`speed_verdict` is "lower"); for points without rounds, when its speedup is at
    least speed_ratio x b's (the fixed margin of older records)."""
    verdict = speed_verdict(a, b, speed)
    if verdict is None:
        return a[speed] >= speed_ratio * b[speed]
    return verdict != "lower"


def front_check(latency, floor, block_methods=("block", "block_latency"), speed_ratio=0.95,
                margin=0.003):
    """The latency issue's target, point by point: every `final` point of another method whose
    test macro-F1 is at least `floor` (the TF-IDF model's) should be weakly dominated by a
    final block-pruning point (any method in `block_methods`), one at least as fast
    (`at_least_as_fast`: not slower beyond the spread of the per-round speedups, or, without
    rounds, >= speed_ratio x its speedup vs dense) and whose macro-F1 is >= the other's -
    margin. One row per such point: its method, variant, speedup and macro-F1, `dominated`,
    the speed rule used, and the dominating block point closest in speed (or, when none
    dominates, the block point of highest macro-F1 among those at least as fast; "" when no
    block point is that fast)."""
    points = latency[latency.method != "dense"]
    if "final" in points.columns:
        points = points[points.final.astype(bool)]
    block = points[points.method.isin(block_methods)].to_dict("records")
    rows = []
    for other in points[~points.method.isin(block_methods)
                        & (points.macro_f1 >= floor)].to_dict("records"):
        fast = [b for b in block if at_least_as_fast(b, other, speed_ratio)]
        good = [b for b in fast if b["macro_f1"] >= other["macro_f1"] - margin]
        rounds = bool(block) and all(speed_verdict(b, other) is not None for b in block)
        best = (min(good, key=lambda r: r["latency_speedup_vs_dense"]) if good
                else max(fast, key=lambda r: r["macro_f1"]) if fast else None)
        rows.append({"method": other["method"], "variant": other["variant"],
                     "latency_speedup_vs_dense": other["latency_speedup_vs_dense"],
                     "macro_f1": other["macro_f1"], "dominated": bool(good),
                     "speed_rule": "rounds" if rounds else "ratio",
                     "block_variant": "" if best is None else best["variant"],
                     "block_speedup": np.nan if best is None else best["latency_speedup_vs_dense"],
                     "block_macro_f1": np.nan if best is None else best["macro_f1"]})
    return pd.DataFrame(rows, columns=["method", "variant", "latency_speedup_vs_dense",
                                       "macro_f1", "dominated", "speed_rule", "block_variant",
                                       "block_speedup", "block_macro_f1"])
