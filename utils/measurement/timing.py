"""Timing models on this CPU: `time_variants` times loaded models round-robin in one process
(latency at batch 1, throughput at a batch size); `time_compacted` loads, compacts and times
model directories in groups of `group_size`, each group with its own copy of dense, releasing
one group before loading the next, so memory stays bounded by group_size + 1 models instead of
growing with the number of variants (all ≈38 at once took 22 GB). Timings drift between
groups, so speedups divide by the dense model timed in the same group
(`dense_latency_ms_in_group`, `dense_throughput_in_group`). Used by the benchmark
(`utils.face.bench`), the latency table (`utils.measurement.latency`) and the comparison (`utils.face.comparison`)."""
from __future__ import annotations

import gc
import logging
import statistics
import time

import numpy as np
import pandas as pd

from utils import saved
from utils.data import batching
from utils.measurement import intervals

log = logging.getLogger(__name__)


def median_ms(call, repeats):
    """Median wall time of `call()` over `repeats` calls, in milliseconds; and its last result
    (one forward pass of a model, as every timing here measures it)."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), result


def time_variants(loaded, texts, max_length, rounds, throughput_texts=(), batch_size=32):
    """Latency at batch 1 and throughput at `batch_size`, round-robin over variants.

    loaded: {name: utils.saved.SavedModel} (anything with `logits(input_ids,
    attention_mask)` and `tokenizer`). throughput_texts: none -> latency only. Returns
    {name: {"latency_ms_median", "latency_ms_p90", "latency_ms_per_text" (each text's median
    over the rounds, in `texts` order), "throughput_ex_per_s", per-round lists}}.
    """
    inputs = {}
    for name, model in loaded.items():
        fn, tokenizer = model.logits, model.tokenizer
        encoded, _ = batching.encode_texts(tokenizer, texts, max_length)
        singles = [batching.pad_batch([ids], tokenizer.pad_token_id) for ids in encoded]
        batches = []
        if len(throughput_texts):
            made, _ = batching.make_batches(tokenizer, throughput_texts, max_length=max_length,
                                            batch_size=batch_size)
            batches = [made[i] for i in range(len(made))]
        inputs[name] = (singles, batches)
        for x in singles[:3] + batches[:1]:                       # warm-up
            np.asarray(fn(x["input_ids"], x["attention_mask"]))
    names = list(loaded)
    latencies = {n: [] for n in names}
    per_text = {n: [[] for _ in texts] for n in names}
    round_medians = {n: [] for n in names}
    throughputs = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]   # rotate the order
        for name in order:
            fn = loaded[name].logits
            singles, batches = inputs[name]
            times = []
            for i, x in enumerate(singles):
                ms, _ = median_ms(lambda: np.asarray(fn(x["input_ids"], x["attention_mask"])), 1)
                times.append(ms / 1000)
                per_text[name][i].append(ms)
            latencies[name].extend(times)
            round_medians[name].append(1000 * statistics.median(times))
            if batches:
                start = time.perf_counter()
                for x in batches:
                    np.asarray(fn(x["input_ids"], x["attention_mask"]))
                throughputs[name].append(len(throughput_texts) / (time.perf_counter() - start))
        log.info(f"timing round {r + 1}/{rounds}: " + ", ".join(
            f"{n} {round_medians[n][-1]:.2f} ms" for n in names))
    return {n: {"latency_ms_median": 1000 * statistics.median(latencies[n]),
                "latency_ms_p90": 1000 * float(np.percentile(latencies[n], 90)),
                "latency_ms_round_medians": round_medians[n],
                "latency_ms_per_text": [statistics.median(t) for t in per_text[n]],
                **({"throughput_ex_per_s": statistics.median(throughputs[n]),
                    "throughput_rounds": throughputs[n]} if throughputs[n] else {})}
            for n in names}


def _check_group_size(group_size):
    if (isinstance(group_size, (bool, np.bool_)) or not isinstance(group_size, (int, np.integer))
            or group_size < 1):
        raise ValueError(f"group_size = {group_size!r}: must be an int >= 1 (how many non-dense "
                         f"variants are loaded and timed together with dense)")
    return int(group_size)


def _timing_groups(variants, group_size):
    """[[non-dense names of group 1], ...]: `variants` order, at most `group_size` each; one
    empty group when dense is the only variant."""
    others = [name for name in variants if name != "dense"]
    return [others[i:i + group_size] for i in range(0, len(others), group_size)] or [[]]


def _load_for_timing(source, compact):
    """The model to time: `source` (directory or keras model) loaded and, with `compact`,
    compacted. The loaded masked model is garbage once compacted; it is part of reference
    cycles (functional model), so collect it now rather than when Python's gc gets to it."""
    from utils.compression import (
        compact as compact_lib,  # Keras: loaded only when timing
    )
    model = source if hasattr(source, "encoder_config") else saved.load_model(source)
    if compact:
        model = compact_lib.compact_model(model)
        gc.collect()
    return model


def _describe(name, model):
    from utils.encoder import model as model_lib  # Keras: loaded only when timing
    config = model.encoder_config
    return {"variant": name, "parameters": model_lib.count_parameters(model),
            "nonzero_parameters": int(sum(np.count_nonzero(np.asarray(w))
                                          for w in model.weights)),
            "heads": int(sum(config.num_heads)),
            "ffn_neurons": int(sum(config.intermediate_sizes))}


TIMING_COLUMNS = ("latency_ms_median", "latency_ms_p90", "throughput_ex_per_s")


def time_compacted(variants, tokenizer, texts, rounds=3, max_length=64, batch_size=32,
                   compact=True, group_size=6, runtime="keras"):
    """Latency (batch 1, median over `texts`) and throughput (batch `batch_size` over the same
    `texts`) of every variant after `utils.compression.compact.compact_model`, timed in groups.

    variants: {name: model directory or keras model}, with a "dense" entry (as
    `latency_variants` returns). A masked model whose zeros do not form whole heads/neurons
    (unstructured magnitude) compacts to its own shapes: same cost as dense.

    Why groups: holding every compacted variant at once (≈38 MiniLM models in notebook 07)
    took 22 GB of RSS. So the non-dense variants are split, in `variants` order, into groups of
    at most `group_size`; each group is loaded and compacted together with a fresh copy of the
    dense model, timed round-robin in this process by `time_variants`, then
    released (references dropped, `gc.collect()`) before the next group is loaded. At most
    group_size + 1 compacted models are alive at a time.
    (`keras.backend.clear_session()` is not called: once the references are gone the models and
    their tf.function traces are freed by gc anyway, and clear_session would reset the caller's
    global Keras state -- dtype policy, `keras.utils.set_random_seed` generator, layer names.)

    Why the dense copy in every group: timings drift between groups (thermal state, other load
    on the machine), so each variant is compared with the dense model timed in the same rounds:
    columns `dense_latency_ms_in_group` and `dense_throughput_in_group`, which
    `attach_latency` uses for the speedups. The "dense" row reports the median over groups of
    its latency median / p90 / throughput, and its in-group columns equal those medians.

    runtime: "keras" (the compacted Keras models), or "tflite" / "onnx" (each exported to that
    runtime with dynamic-range int8 weights, as a bundle ships it: `saved.in_memory`).

    Returns a DataFrame, one row per variant in `variants` order (variant, parameters after
    compaction, non-zero parameters, heads, FFN neurons, latency_ms_median, latency_ms_p90,
    throughput_ex_per_s, dense_latency_ms_in_group, dense_throughput_in_group,
    latency_speedup_rounds: each round's speedup over the dense copy of its group, so that a
    speed comparison can use the spread of repeated timings, `intervals.format_rounds`).
    """
    group_size = _check_group_size(group_size)
    if "dense" not in variants:
        raise ValueError(f"variants has no 'dense' entry (names: {list(variants)}): every "
                         f"group is timed against the dense model")
    texts = list(texts)
    groups = _timing_groups(variants, group_size)
    info, rows, dense_runs = {}, {}, []
    for index, group in enumerate(groups):
        log.info(f"latency group {index + 1}/{len(groups)}: dense + {len(group)} variant(s)")
        loaded = {}
        try:
            for name in ["dense", *group]:
                model = _load_for_timing(variants[name], compact)
                if name not in info:
                    info[name] = _describe(name, model)
                loaded[name] = saved.in_memory(model, tokenizer, runtime)
                del model
            timings = time_variants(loaded, texts, max_length, rounds, texts, batch_size)
        finally:
            loaded.clear()          # the predictors hold the models: drop them all
            del loaded
            gc.collect()
        dense = timings["dense"]
        dense_runs.append(dense)
        for name in group:
            rows[name] = {**{k: timings[name][k] for k in TIMING_COLUMNS},
                          "dense_latency_ms_in_group": dense["latency_ms_median"],
                          "dense_throughput_in_group": dense["throughput_ex_per_s"],
                          "latency_speedup_rounds": intervals.format_rounds(
                              d / v for d, v in zip(dense["latency_ms_round_medians"],
                                                    timings[name]["latency_ms_round_medians"]))}
    rows["dense"] = {k: float(np.median([run[k] for run in dense_runs])) for k in TIMING_COLUMNS}
    rows["dense"]["dense_latency_ms_in_group"] = rows["dense"]["latency_ms_median"]
    rows["dense"]["dense_throughput_in_group"] = rows["dense"]["throughput_ex_per_s"]
    rows["dense"]["latency_speedup_rounds"] = intervals.format_rounds([1.0] * rounds)
    return pd.DataFrame([{**info[n], **rows[n]} for n in variants])
