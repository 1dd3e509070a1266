"""A latency table: what an attention head, an FFN neuron and each sublayer's fixed part cost on
this machine, measured once and recorded (results/latency_table.json, with the machine it is
valid for: `cached_table`), so that a compacted model's latency can be predicted from
its per-layer widths (as Kwon et al. 2022 and ZipLM prune against a measured latency table).

The model of a compacted encoder's cost at one batch size, per example:

    cost = base + sum over layers l of [attention(h_l) + ffn(n_l)]
    attention(h) = 0 if h == 0 else attention_fixed + head * h
    ffn(n)       = 0 if n == 0 else ffn_fixed + neuron * n

`base` is the model with every sublayer removed (embeddings, the LayerNorms a layer keeps, the
pooler and the classifier); a removed sublayer costs nothing, which is why removing the last head
of a layer buys more than removing one of several (its fixed part: reshapes, the softmax, kernel
launches). The coefficients come from whole classifiers of uniform widths timed round-robin in
one process (`utils.measurement.timing.time_variants`): the model with no sublayers, with only attention at
several head counts, with only the FFN at several widths. Weights are random: latency does not
depend on their values.

At batch 1 the cost is the median latency (ms); at `batch_size` it is milliseconds per example
(1000 / throughput), so both are additive over sublayers.

runtime: where the models are timed: "keras" (the Keras models), or "tflite" / "onnx" (each
exported with dynamic-range int8 weights to the runtime a bundle ships on, so that pruning
removes what costs time there; `saved.in_memory`). A cached table is valid for one runtime.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import platform
import sys
from pathlib import Path

import numpy as np

from utils import saved
from utils.common import cli, io, machine
from utils.data import corpus as data
from utils.encoder import hub
from utils.measurement import dominance, timing

log = logging.getLogger("utils.measurement.latency")   # also under `python -m`

COEFFICIENTS = ("base", "attention_fixed", "head", "ffn_fixed", "neuron")
COSTS = ("latency_ms", "ms_per_example_batched")   # batch 1; batch `batch_size`


def uniform_config(config, heads, neurons):
    """`config` with every layer at `heads` heads and `neurons` FFN neurons."""
    return dataclasses.replace(config, num_heads=[heads] * config.num_layers,
                               intermediate_sizes=[neurons] * config.num_layers)


def grid(config, points=4):
    """Head counts and FFN widths to time: `points` evenly spaced values in (0, full]."""
    if not isinstance(points, int) or points < 2:
        raise ValueError(f"points = {points!r}: need an int >= 2 to fit a line per sublayer")
    full_heads, full_neurons = max(config.num_heads), max(config.intermediate_sizes)
    heads = sorted({max(1, round(full_heads * (i + 1) / points)) for i in range(points)})
    neurons = sorted({max(1, round(full_neurons * (i + 1) / points)) for i in range(points)})
    if len(heads) < 2 or len(neurons) < 2:
        raise ValueError(f"the model has {full_heads} heads and {full_neurons} neurons per "
                         "layer: too few distinct widths to fit a line")
    return heads, neurons


def variants(config, points=4):
    """{name: (heads, neurons)} of the uniform models to time: "base" (no sublayers), attention
    only at each head count, FFN only at each width."""
    heads, neurons = grid(config, points)
    return {"base": (0, 0), **{f"heads_{h}": (h, 0) for h in heads},
            **{f"neurons_{n}": (0, n) for n in neurons}}


def fit_table(rows, num_layers):
    """The table's coefficients from timed uniform models.

    rows: [{"heads", "neurons", "latency_ms", "ms_per_example_batched"}], one with 0 heads and
    0 neurons (the base), at least two with only heads and two with only neurons.
    Returns {cost: {coefficient: value}} for each cost in COSTS: each sublayer's line is the
    least-squares fit of (cost - base) / num_layers against its width, with intercept and slope
    held >= 0 (`nonnegative_line`): a sublayer cannot save time by existing, and a negative cost
    from timing noise would break the knapsack of `select_under_cost`."""
    base = [r for r in rows if r["heads"] == 0 and r["neurons"] == 0]
    if len(base) != 1:
        raise ValueError(f"need exactly one timed model with no sublayers, got {len(base)}")
    table = {}
    for cost in COSTS:
        entry = {"base": float(base[0][cost])}
        for kind, fixed, slope, other in (("heads", "attention_fixed", "head", "neurons"),
                                          ("neurons", "ffn_fixed", "neuron", "heads")):
            points = [(r[kind], (r[cost] - entry["base"]) / num_layers)
                      for r in rows if r[kind] > 0 and r[other] == 0]
            if len({w for w, _ in points}) < 2:
                raise ValueError(f"need models at two or more {kind} widths (and nothing else) "
                                 f"to fit the {kind} line, got {sorted(w for w, _ in points)}")
            entry[fixed], entry[slope] = nonnegative_line(*np.array(points, dtype=float).T)
        table[cost] = entry
    return table


def nonnegative_line(widths, values):
    """(intercept, slope) >= 0 minimizing the squared error of intercept + slope * widths
    against values. The problem is convex in two variables, so its optimum is the
    unconstrained fit when that is feasible, else the best of the fits on the faces
    (intercept = 0, slope = 0, both = 0), each clipped at zero."""
    widths, values = np.asarray(widths, dtype=float), np.asarray(values, dtype=float)
    design = np.stack([np.ones_like(widths), widths], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, values, rcond=None)
    candidates = [(0.0, max(0.0, float(widths @ values / (widths @ widths)))),
                  (max(0.0, float(values.mean())), 0.0), (0.0, 0.0)]
    if intercept >= 0 and slope >= 0:
        candidates.append((float(intercept), float(slope)))
    return min(candidates, key=lambda c: float(np.sum((c[0] + c[1] * widths - values) ** 2)))


def predict(table, num_heads, intermediate_sizes, cost="latency_ms"):
    """Predicted cost of a model with these per-layer widths (see the module docstring)."""
    if cost not in table:
        raise ValueError(f"cost = {cost!r}: the table has {sorted(table)}")
    if len(num_heads) != len(intermediate_sizes):
        raise ValueError(f"{len(num_heads)} head counts but {len(intermediate_sizes)} FFN "
                         "widths: give one of each per layer")
    c = table[cost]
    total = c["base"]
    for heads, neurons in zip(num_heads, intermediate_sizes):
        if heads < 0 or neurons < 0:
            raise ValueError(f"widths must be >= 0, got {heads} heads and {neurons} neurons")
        total += (c["attention_fixed"] + c["head"] * heads) if heads else 0.0
        total += (c["ffn_fixed"] + c["neuron"] * neurons) if neurons else 0.0
    return total


def machine_key(config, max_length, batch_size, runtime="keras"):
    """What a cached table is valid for: this machine (its CPU model and vector extensions, so
    a table recorded in results/ on one CPU type is measured again on another), this software
    (the Keras backend and its version, e.g. "tensorflow": "2.21.0"), these shapes, and the
    runtime when it is not Keras."""
    from utils.training import backend  # Keras: `--help` answers without it
    facts = machine.machine_facts()
    return {**({"runtime": runtime} if runtime != "keras" else {}),
            "cpu": facts["cpu"], "vector_extensions": facts["vector_extensions"],
            "platform": platform.platform(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "python": sys.version.split()[0],
            backend.name(): backend.version(), "hidden_size": config.hidden_size,
            "head_size": config.head_size, "num_layers": config.num_layers,
            "full_heads": max(config.num_heads), "full_neurons": max(config.intermediate_sizes),
            "vocab_size": config.vocab_size, "max_length": max_length, "batch_size": batch_size}


def measure(config, tokenizer, texts, max_length=64, batch_size=32, rounds=3, points=4,
            seed=0, runtime="keras"):
    """Time the uniform models of `variants(config, points)` round-robin in this process on
    `texts` (batch 1 each, then all of them at `batch_size`) and return their rows."""
    import keras

    from utils.encoder import model as model_lib  # Keras: `--help` answers without it
    keras.utils.set_random_seed(seed)
    shapes = variants(config, points)
    loaded = {}
    for name, (heads, neurons) in shapes.items():
        model = model_lib.build_classifier(uniform_config(config, heads, neurons))
        loaded[name] = saved.in_memory(model, tokenizer, runtime)
    timings = timing.time_variants(loaded, texts, max_length, rounds, texts, batch_size)
    return [{"variant": name, "heads": heads, "neurons": neurons,
             "latency_ms": timings[name]["latency_ms_median"],
             "ms_per_example_batched": 1000.0 / timings[name]["throughput_ex_per_s"]}
            for name, (heads, neurons) in shapes.items()]


# The fields of `machine_key` that describe the timed model and runtime, not the machine
SHAPE_FIELDS = ("runtime", "hidden_size", "head_size", "num_layers", "full_heads", "full_neurons",
                "vocab_size", "max_length", "batch_size")


def cached_table(path, config, tokenizer, texts, max_length=64, batch_size=32, rounds=3,
                 points=4, runtime="keras", any_machine=False):
    """The table for this machine: the timed models cached in `path`, fitted by `fit_table`
    (so a change of the fit applies to cached timings), measured (and written there) when the
    file is missing, unreadable, or was made on another machine or for other shapes.
    any_machine: a table recorded on another machine is used as recorded if it is for the same
    shapes and runtime (to repeat a recorded run elsewhere: its decisions then follow that
    machine's timings, said in a warning)."""
    path = Path(path)
    key = machine_key(config, max_length, batch_size, runtime)
    if path.exists():
        try:
            cached = io.read_json(path)
        except ValueError as error:
            log.warning(f"{path} is unreadable ({error}); measuring the latency table again")
            cached = None
        if cached is not None and cached.get("key") == key and "rows" in cached:
            return fit_table(cached["rows"], config.num_layers)   # the timings, fitted by this code
        recorded = (cached or {}).get("key") or {}
        if any_machine and "rows" in (cached or {}) and \
                all(recorded.get(f) == key.get(f) for f in SHAPE_FIELDS):
            log.warning(f"{path} was measured on another machine ({recorded.get('cpu')}, "
                        f"{', '.join(recorded.get('vector_extensions') or [])}); used as recorded, "
                        "so this run repeats the recorded one")
            return fit_table(cached["rows"], config.num_layers)
        if cached is not None:
            log.warning(f"{path} was measured for another machine or model shape; measuring again")
    rows = measure(config, tokenizer, texts, max_length, batch_size, rounds, points,
                   runtime=runtime)
    table = fit_table(rows, config.num_layers)
    io.write_json(path, {"key": key, "rows": rows, "table": table,
                         "texts": len(texts), "rounds": rounds})
    return table


def prediction_check(table, directories, tokenizer, texts, max_length=64, batch_size=32,
                     rounds=3, group_size=4, runtime="keras"):
    """Predicted against measured cost of the compacted models in `directories` ({name:
    model directory}, with a "dense" entry).

    Timed by `timing.time_compacted`: in groups of at most `group_size` models, each group
    round-robin with its own copy of dense, then released. Holding all of notebook 04's 11
    compacted models at once took its peak to 7.7 GB; the in-group dense times make the
    speedups (`speedups`) comparisons within one set of rounds, as timings drift between groups.

    Returns one row per model: its per-layer widths, both costs measured and predicted, the
    relative errors, and dense's measured costs in the same group."""
    from utils.compression import compact  # Keras: `--help` answers without it
    widths = {}
    for name, directory in directories.items():     # widths from the plan: no model is built
        config = compact.compaction_plan(saved.load_model(directory))[0]
        widths[name] = (config.num_heads, config.intermediate_sizes)
    timed = timing.time_compacted(directories, tokenizer, texts, rounds, max_length,
                                  batch_size, group_size=group_size,
                                  runtime=runtime).set_index("variant")
    rows = []
    for name, (heads, neurons) in widths.items():
        t = timed.loc[name]
        measured = {"latency_ms": t.latency_ms_median,
                    "ms_per_example_batched": 1000.0 / t.throughput_ex_per_s}
        row = {"model": name, "num_heads": heads, "intermediate_sizes": neurons,
               "dense_latency_ms_in_group": float(t.dense_latency_ms_in_group),
               "dense_ms_per_example_batched_in_group": 1000.0 / t.dense_throughput_in_group}
        for cost in COSTS:
            predicted = predict(table, heads, neurons, cost)
            row.update({f"{cost}_measured": float(measured[cost]), f"{cost}_predicted": predicted,
                        f"{cost}_relative_error": predicted / measured[cost] - 1})
        rows.append(row)
    return rows


def speedups(rows, dense="dense"):
    """`prediction_check` rows as a DataFrame with each model's measured and predicted speedup
    over the model named `dense`: speedup_batch1 (batch-1 latency), speedup_batched (time per
    example at the batch size) and predicted_speedup_batch1. The measured ones are against
    dense timed in the same group (`dense_*_in_group`), as timings drift between groups."""
    import pandas as pd
    frame = pd.DataFrame(rows)
    if dense not in set(frame.get("model", [])):
        raise ValueError(f"no model named {dense!r} among {list(frame.get('model', []))}: "
                         "time the dense model with the others")
    missing = {"dense_latency_ms_in_group", "dense_ms_per_example_batched_in_group"} - set(frame)
    if missing:
        raise ValueError(f"rows without {sorted(missing)}: time the models with "
                         "prediction_check, which times dense within every group")
    base = frame[frame.model == dense].iloc[0]
    frame["speedup_batch1"] = frame.dense_latency_ms_in_group / frame.latency_ms_measured
    frame["speedup_batched"] = (frame.dense_ms_per_example_batched_in_group
                                / frame.ms_per_example_batched_measured)
    frame["predicted_speedup_batch1"] = base.latency_ms_predicted / frame.latency_ms_predicted
    return frame


def speed_points(timed, finals, keys):
    """Validation macro-F1 against measured speedup, for choosing between curves.

    timed: `speedups` rows; finals: the curves' final sweep rows (method, target_sparsity,
    sparsity_encoder_linear, val_macro_f1, macro_f1); keys: {timed model name: (method,
    target_sparsity, curve, label)} naming the timed models that are curve points. Returns one
    row per point with `on_validation_front`: no other point is at least as fast (batch 1) and
    at least as good on validation and better in one. Test macro-F1 is carried, never used."""
    speed = timed[timed.model.isin(list(keys))].copy()
    missing = set(keys) - set(speed.model)
    if missing:
        raise ValueError(f"no timings for {sorted(missing)}: time every curve point")
    speed[["method", "target_sparsity", "curve", "label"]] = [list(keys[m]) for m in speed.model]
    columns = ["method", "target_sparsity", "sparsity_encoder_linear", "val_macro_f1", "macro_f1"]
    speed = speed.merge(finals[columns], on=["method", "target_sparsity"], validate="one_to_one")
    front = dominance.pareto_front_of_frame(speed.assign(_cost=-speed.speedup_batch1), cost="_cost",
                                    quality="val_macro_f1")
    speed["on_validation_front"] = speed.index.isin(front.index)
    return speed


def main(argv=None):
    """python -m utils.measurement.latency: measure (or read) this machine's latency table and check its
    predictions on the dense model and block pruning's recovered snapshots."""
    parser = cli.argument_parser("utils.measurement.latency", __doc__)
    parser.add_argument("--dense", default="checkpoints/baseline/best")
    parser.add_argument("--snapshots-dir", default="checkpoints/pruned",
                        help="directory of sparsity_XX models to check the predictions on")
    parser.add_argument("--data", default="data", help="directory of the CSV splits")
    parser.add_argument("--cache", default="results/latency_table.json",
                        help="the recorded table (notebook 04 writes it; measured when missing or from another machine)")
    parser.add_argument("--out", default="results/latency_check.json",
                        help="where the prediction check goes")
    parser.add_argument("--examples", type=int, default=200, help="test tweets timed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--runtime", choices=saved.TIMING_RUNTIMES, default="keras",
                        help="time the Keras models, or each exported with int8 weights to "
                             "the runtime a bundle ships on")
    args = parser.parse_args(argv)
    try:
        if args.examples < 1 or args.rounds < 1:
            raise ValueError(f"--examples {args.examples} / --rounds {args.rounds}: both must "
                             "be >= 1")
        for path in (Path(args.dense, saved.SPEC_FILE), Path(args.snapshots_dir)):
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: run `make run` first")
        texts = data.load_splits(args.data)["test"]["text"][:args.examples]
        tokenizer = hub.load_tokenizer(hub.DEFAULT_MODEL)
        config = saved.load_model(args.dense).encoder_config
        table = cached_table(args.cache, config, tokenizer, texts, args.max_length,
                             rounds=args.rounds, runtime=args.runtime)
        directories = {"dense": args.dense, **{
            d.name: d for d in sorted(Path(args.snapshots_dir).glob("sparsity_*"))
            if saved.is_model_dir(d)}}
        rows = prediction_check(table, directories, tokenizer, texts, args.max_length,
                                rounds=args.rounds, runtime=args.runtime)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2)
    io.write_json(args.out, {"table": table, "key": machine_key(config, args.max_length, 32, args.runtime),
                             "checked_on": rows, "examples": len(texts), "rounds": args.rounds,
                             "command": "python -m utils.measurement.latency", "git_commit": io.git_commit()})
    for row in rows:
        print(f"{row['model']}: batch 1 {row['latency_ms_measured']:.2f} ms measured, "
              f"{row['latency_ms_predicted']:.2f} predicted "
              f"({100 * row['latency_ms_relative_error']:+.0f}%); batched "
              f"{row['ms_per_example_batched_measured']:.3f} ms/example, "
              f"{row['ms_per_example_batched_predicted']:.3f} predicted "
              f"({100 * row['ms_per_example_batched_relative_error']:+.0f}%)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()


# ------------------------------------------------------------------ selection under a cost budget

def sublayer_cost(table, kind, units, cost="latency_ms"):
    """Predicted cost of one sublayer (kind "heads" or "neurons") keeping `units` units."""
    c = table[cost]
    if units == 0:
        return 0.0
    return (c["attention_fixed"] + c["head"] * units if kind == "heads"
            else c["ffn_fixed"] + c["neuron"] * units)


def select_under_cost(importance, alive, table, budget, cost="latency_ms", step=None):
    """Units to switch off so that the predicted cost (`predict`) is at most `budget`, keeping
    the alive units of the largest total `importance`.

    Within a sublayer the most important alive units are the ones worth keeping, so the choice
    is how many to keep in each sublayer: a multiple-choice knapsack (one option per count, its
    value the sum of the top-k importances, its cost the sublayer's predicted cost, 0 for k = 0),
    solved exactly by dynamic programming over costs in multiples of `step` (default: 1/2000 of
    the budget), each option's cost rounded up, so the budget always holds.

    importance, alive: {(layer, kind): per-unit arrays}, kind "heads" or "neurons". Returns
    {key: bool array} of the alive units to switch off. Raises ValueError when even removing
    every sublayer does not fit (the budget is below the table's base cost)."""
    keys = sorted(alive)
    negative = {k: v for k, v in table[cost].items() if k != "base" and v < 0}
    if negative:
        raise ValueError(f"the latency table's {cost} coefficients {negative} are negative: "
                         f"re-measure it (delete the cached table) with the current fit_table, "
                         f"which holds them >= 0")
    room = budget - table[cost]["base"]
    if room < 0:
        raise ValueError(f"budget {budget:.3f} is below the cost of a model with no sublayers "
                         f"({table[cost]['base']:.3f} {cost}): no selection reaches it")
    step = step if step is not None else max(room, 1e-12) / 2000
    if not step > 0:
        raise ValueError(f"step = {step!r}: must be positive")
    bins = int(np.floor(room / step + 1e-9))
    best = np.zeros(bins + 1)              # best value within each cost (in steps)
    choices = []
    orders = {}
    for key in keys:
        alive_units = np.flatnonzero(alive[key])
        order = alive_units[np.argsort(-np.asarray(importance[key])[alive_units], kind="stable")]
        orders[key] = order
        values = np.concatenate([[0.0], np.cumsum(np.asarray(importance[key])[order])])
        costs = [int(np.ceil(sublayer_cost(table, key[1], k, cost) / step - 1e-9))
                 for k in range(len(order) + 1)]
        new = np.full(bins + 1, -np.inf)
        choice = np.zeros(bins + 1, dtype=int)
        for k, (value, c) in enumerate(zip(values, costs)):
            if c > bins:
                continue
            candidate = np.full(bins + 1, -np.inf)
            candidate[c:] = best[:bins + 1 - c] + value
            better = candidate > new
            new[better], choice[better] = candidate[better], k
        best = new
        choices.append(choice)
    # back-track from the full budget
    kept, b = {}, bins
    for key, choice in zip(reversed(keys), reversed(choices)):
        k = int(choice[b])
        kept[key] = k
        b -= int(np.ceil(sublayer_cost(table, key[1], k, cost) / step - 1e-9))
    off = {}
    for key in keys:
        units = np.zeros(len(alive[key]), dtype=bool)
        units[orders[key][kept[key]:]] = True
        off[key] = units
    return off
