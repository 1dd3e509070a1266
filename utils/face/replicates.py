"""The comparison's key points over seeds (notebook 12): block pruning, fisher_mask and
ffn_neurons at 50 / 70 / 90% encoder-linear sparsity, each run again with other seeds on the
same dense model, so every claim rests on a mean with its spread instead of one draw.

A seed fixes everything a run draws: the order of the training data and the dropout masks
(`TrainConfig.seed`), the Fisher sample of block pruning's unit selection and of fisher_mask's
search, the recovery sample. Seed 42's rows are the ones notebooks 04 and 07 wrote; the
replicates repeat their procedures with the recorded settings, nothing else changed
(`utils.pruning.methods.block_replicate` and `method_replicates` run them). This module reads
rows only (pandas, no TensorFlow), so the report can recompute its sentences.

From the rows (one per method, target, seed; recovered points only):
  * `point_table`: per method and level, mean, standard deviation and 95% interval of test
    and validation macro-F1 and of the gap to dense, and the training behind the point;
  * `paired_table`: per level, block pruning minus each other method, seed by seed, with the
    interval of the mean difference and its verdict (`intervals.verdict`: a tie when it
    covers zero), on test and on validation;
  * `block_targets`: issue 39's targets for block pruning, at each level the target with the
    best mean validation macro-F1 among those at or above it;
  * `recommendation`: at each level the method to choose, made on validation (the best mean,
    or among those tied with it the cheapest in training time), reported on test;
  * `discussion`: the sentences of notebook 12 and the report, generated from these.
"""
from __future__ import annotations

import pandas as pd

from utils.face import comparison
from utils.measurement import intervals

SEEDS = (42, 43, 44)
METHODS = ("fisher_mask", "ffn_neurons")      # replicated beside block pruning
NOT_REPLICATED = {"block_latency": "a second pruning run per seed (as long as block pruning's)",
                  "cofi": "a gate-training run per target and seed (about 10 min each on the "
                          "record's CPU)",
                  "magnitude_global": "not a contender at these levels in the committed study",
                  "layers": "not a contender at these levels in the committed study"}
BLOCK = "block"
TARGET_GAPS = {0.5: 0.5, 0.7: 1.0, 0.9: 2.5}  # issue 39: block within these points of dense
SCORES = ("macro_f1", "val_macro_f1")


# ------------------------------------------------------------------ the numbers

def with_block_cost(rows, run_record, batch_size, run_examples, retrain):
    """`rows` of one block-pruning run (notebook 04's, or `methods.block_replicate`'s) with
    train_examples_total (`comparison.block_train_examples`: the run up to each snapshot's
    step, plus the recovery, `retrain`: examples x epochs, for the final rows) and
    train_seconds: the run's training time (`run_record`: reached, train_seconds) pro-rated by
    examples, `run_examples` in all, plus the row's own seconds of recovery."""
    reached = run_record["reached"]
    run_part = comparison.block_train_examples(rows.assign(final=False), reached, batch_size, retrain)
    per_example = run_record["train_seconds"] / run_examples
    seconds = [n * per_example + (float(s) if final else 0.0)
               for n, s, final in zip(run_part, rows.seconds, rows.final.astype(bool))]
    return rows.assign(
        train_examples_total=comparison.block_train_examples(rows, reached, batch_size, retrain),
        train_seconds=seconds)


def final_points(rows, levels):
    """The recovered rows of `rows` at the comparison's `levels` (one candidate per method and
    level, as notebook 07's table has)."""
    final = rows[rows.final.astype(bool)].copy()
    final["level"] = final.target_sparsity.round(4)
    return final[final.level.isin([round(float(x), 4) for x in levels])]


def point_table(rows, dense_test_macro_f1, levels):
    """Per method and level: the seeds, mean / std / 95% interval of test and validation
    macro-F1 and of the test gap to dense (points), mean encoder-linear sparsity, training
    examples and seconds behind the point. Methods in the order they first appear."""
    out = []
    points = final_points(rows, levels)
    for (method, level), part in points.groupby(["method", "level"], sort=False):
        test = intervals.summary(part.macro_f1)
        gap = intervals.summary(100 * (dense_test_macro_f1 - part.macro_f1))
        val = intervals.summary(part.val_macro_f1)
        out.append({"method": method, "level": float(level), "seeds": sorted(int(s) for s in part.seed),
                    "n": test["n"], "macro_f1_mean": test["mean"], "macro_f1_std": test["std"],
                    "macro_f1_low": test["low"], "macro_f1_high": test["high"],
                    "val_macro_f1_mean": val["mean"], "val_macro_f1_std": val["std"],
                    "gap_points_mean": gap["mean"], "gap_points_low": gap["low"],
                    "gap_points_high": gap["high"],
                    "sparsity_encoder_linear": float(part.sparsity_encoder_linear.mean()),
                    "train_examples_total": float(part.train_examples_total.mean())
                    if "train_examples_total" in part and part.train_examples_total.notna().all() else None,
                    "train_seconds": float(part.train_seconds.mean())
                    if "train_seconds" in part and part.train_seconds.notna().all() else None})
    return pd.DataFrame(out).sort_values(["level", "method"], kind="stable", ignore_index=True)


def _by_seed(part, score):
    return {int(s): float(v) for s, v in zip(part.seed, part[score])}


def paired_table(rows, levels, reference=BLOCK):
    """Per level and other method: `reference` minus it, paired by seed, on test and on
    validation macro-F1 (points), with the 95% interval of the mean and its verdict."""
    points = final_points(rows, levels)
    out = []
    for level, at_level in points.groupby("level", sort=True):
        mine = at_level[at_level.method == reference]
        if mine.empty:
            continue
        for method, theirs in at_level[at_level.method != reference].groupby("method", sort=False):
            row = {"level": float(level), "method": method, "reference": reference}
            for score in SCORES:
                diff = intervals.paired_difference(_by_seed(mine, score), _by_seed(theirs, score))
                prefix = "test" if score == "macro_f1" else "val"
                row.update({f"{prefix}_diff_points": 100 * diff["mean"],
                            f"{prefix}_diff_low": None if diff["low"] is None else 100 * diff["low"],
                            f"{prefix}_diff_high": None if diff["high"] is None else 100 * diff["high"],
                            f"{prefix}_verdict": diff["verdict"], "seeds": diff["seeds"]})
            out.append(row)
    return pd.DataFrame(out)


def block_targets(rows, dense_test_macro_f1, limits=TARGET_GAPS, method=BLOCK):
    """Issue 39's targets on the means: at each level the recovered block-pruning target with
    the best mean validation macro-F1 among those whose mean sparsity is at or above the
    level, its mean test gap to dense with the interval over seeds, and whether the mean gap
    is within the limit."""
    final = rows[(rows.method == method) & rows.final.astype(bool)]
    means = final.groupby("target_sparsity").agg(val=("val_macro_f1", "mean"),
                                                 sparsity=("sparsity_encoder_linear", "mean"),
                                                 n=("seed", "nunique"))
    out = {}
    for level, limit in limits.items():
        eligible = means[means.sparsity >= level - 1e-9]
        if eligible.empty:
            continue
        target = float(eligible.val.idxmax())
        part = final[final.target_sparsity == target]
        gap = intervals.summary(100 * (dense_test_macro_f1 - part.macro_f1))
        out[f">={level:.0%}"] = {"level": level, "target_sparsity": target, "n": gap["n"],
                                 "gap_points": gap["mean"], "gap_low_points": gap["low"],
                                 "gap_high_points": gap["high"], "limit_points": limit,
                                 "met": gap["mean"] <= limit}
    return out


def recommendation(table, paired, levels, reference=BLOCK):
    """At each level, the method to choose: the best mean validation macro-F1, unless another
    method is tied with it on validation (paired interval covering zero), in which case the
    cheapest of the tied in training seconds (every method trained on the same number of
    examples). Needs `reference` paired with every method; ties among other methods are read
    through it only when one of the pair is the reference. Returns {level: {...}}."""
    out = {}
    for level in levels:
        here = table[table.level.round(4) == round(float(level), 4)]
        if here.empty:
            continue
        best = here.sort_values("val_macro_f1_mean", ascending=False).iloc[0]
        pairs = paired[paired.level.round(4) == round(float(level), 4)] if len(paired) else paired

        def tied_with_best(method):
            if method == best.method:
                return True
            if reference not in (method, best.method):
                return False   # two non-reference methods were not paired
            other = method if best.method == reference else best.method
            row = pairs[pairs.method == other]
            return len(row) == 1 and row.iloc[0].val_verdict == "tie"

        tied = here[[tied_with_best(m) for m in here.method]]
        timed = tied[tied.train_seconds.notna()]
        chosen = timed.sort_values("train_seconds").iloc[0] if len(timed) else best
        out[float(level)] = {"method": chosen.method, "best_on_validation": best.method,
                             "tied_on_validation": sorted(tied.method),
                             "macro_f1_mean": float(chosen.macro_f1_mean),
                             "gap_points_mean": float(chosen.gap_points_mean),
                             "train_seconds": None if pd.isna(chosen.train_seconds)
                             else float(chosen.train_seconds),
                             "why": ("best on validation" if len(tied) == 1 else
                                     f"tied on validation with {', '.join(m for m in sorted(tied.method) if m != chosen.method)}; "
                                     "the least training time")}
    return out


def _signed(x):
    return f"{x:+.2f}"


def _interval_text(low, high):
    return "no interval (one seed)" if low is None or pd.isna(low) else f"[{low:+.2f}, {high:+.2f}]"


def discussion(table, paired, targets, chosen, seeds, reference=BLOCK):
    """Markdown sentences from the replicate numbers (nothing typed by hand)."""
    lines = [f"Over {len(seeds)} seeds ({', '.join(map(str, seeds))}), test macro-F1 as the "
             "mean with its 95% interval; differences paired by seed."]
    for row in paired.itertuples():
        verdict = {"higher": "ahead of", "lower": "behind", "tie": "tied with",
                   "unknown": "one draw against"}[row.test_verdict]
        lines.append(f"- At {row.level:.0%}, {reference} is {verdict} {row.method} on test: "
                     f"{_signed(row.test_diff_points)} points "
                     f"{_interval_text(row.test_diff_low, row.test_diff_high)}"
                     + (" (the interval covers zero: a tie)." if row.test_verdict == "tie" else "."))
    for key, t in targets.items():
        side = "below" if t["gap_points"] >= 0 else "above"
        lines.append(f"- Target {key}: block pruning's {t['target_sparsity']:.0%} snapshot (best mean "
                     f"validation) is {abs(t['gap_points']):.2f} points {side} dense on test "
                     f"{_interval_text(t['gap_low_points'], t['gap_high_points'])}, "
                     f"limit {t['limit_points']:g}: {'met' if t['met'] else 'not met'}.")
    for level, c in chosen.items():
        minutes = "" if c["train_seconds"] is None else f", {c['train_seconds'] / 60:.1f} min of training"
        side = "below" if c["gap_points_mean"] >= 0 else "above"
        lines.append(f"- Choose **{c['method']}** at {level:.0%} ({c['why']}{minutes}; "
                     f"test {100 * c['macro_f1_mean']:.2f}, {abs(c['gap_points_mean']):.2f} points {side} dense).")
    return "\n".join(lines)
