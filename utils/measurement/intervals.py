"""Means over replicates and whether two methods differ: the numbers a claim over seeds rests on.

`summary` gives a mean, the sample standard deviation and the Student-t interval of the mean;
`paired_difference` the same for per-seed differences of two methods run on the same seeds (the
pairing removes what the seeds share: data order, the Fisher sample, the dense model), with a
`verdict` that is a tie whenever the interval covers zero; `ratio_summary` does it on the log
scale for speed ratios measured round by round in one process, so "faster" is a claim about the
spread of repeated timings, not a fixed margin. Each function also takes plain lists, so the
report can compute its sentences from results/*.json.
"""
from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95


def _t_quantile(confidence, dof):
    from scipy import stats  # scipy: only when an interval is asked for
    return float(stats.t.ppf(0.5 + confidence / 2, dof))


def summary(values, confidence=CONFIDENCE):
    """{"n", "mean", "std", "low", "high"} of `values` (NaN dropped): the mean, the sample standard
    deviation (ddof 1) and the two-sided Student-t `confidence` interval of the mean. With one
    value, std and the interval are None: one draw says nothing about spread."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if x.size == 0:
        raise ValueError("summary of no values: give at least one replicate")
    out = {"n": int(x.size), "mean": float(x.mean()), "std": None, "low": None, "high": None}
    if x.size > 1:
        std = float(x.std(ddof=1))
        half = _t_quantile(confidence, x.size - 1) * std / math.sqrt(x.size)
        out.update(std=std, low=out["mean"] - half, high=out["mean"] + half)
    return out


def verdict(interval):
    """"higher" / "lower" when the interval of a difference lies wholly above / below zero,
    "tie" when it covers zero, "unknown" without an interval (a single replicate)."""
    if interval["low"] is None:
        return "unknown"
    if interval["low"] > 0:
        return "higher"
    if interval["high"] < 0:
        return "lower"
    return "tie"


def paired_difference(a, b, confidence=CONFIDENCE):
    """`summary` of a[i] - b[i] over the replicates both have (a and b: {seed: value}, or
    equal-length lists in seed order), with its `verdict` (a against b) and the seeds used."""
    if isinstance(a, dict) and isinstance(b, dict):
        seeds = sorted(set(a) & set(b))
        pairs = [(a[s], b[s]) for s in seeds]
    else:
        if len(a) != len(b):
            raise ValueError(f"paired difference of {len(a)} and {len(b)} values: pair them "
                             "by seed (give dicts {seed: value})")
        seeds = list(range(len(a)))
        pairs = list(zip(a, b))
    out = summary([x - y for x, y in pairs], confidence)
    return {**out, "verdict": verdict(out), "seeds": seeds}


def ratio_summary(ratios, confidence=CONFIDENCE):
    """Speed ratios measured round by round (each round times both variants, so its ratio
    cancels that round's drift): the geometric mean and the interval of the mean log ratio,
    mapped back to ratios, with the verdict against 1 ("higher": faster in every plausible
    reading, "tie": the rounds' spread covers equal speed)."""
    logs = [math.log(r) for r in ratios if r and r > 0]
    out = summary(logs, confidence)
    back = {k: (math.exp(out[k]) if out[k] is not None else None) for k in ("mean", "low", "high")}
    return {"n": out["n"], "ratio": back["mean"], "low": back["low"], "high": back["high"],
            "verdict": verdict(out)}


def format_rounds(speedups):
    """Per-round batch-1 speedups vs dense (each round's median, dense timed in the same round
    of the same group) as one CSV cell: "1.712;1.690;1.733"."""
    return ";".join(f"{x:.4f}" for x in speedups)


def parse_rounds(cell):
    """The speedups `format_rounds` wrote ([] for an empty cell, as in a CSV of older code)."""
    if cell is None or (isinstance(cell, float) and cell != cell) or cell == "":
        return []
    if isinstance(cell, (list, tuple)):
        return [float(x) for x in cell]
    return [float(x) for x in str(cell).split(";")]
