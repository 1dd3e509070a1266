"""The results files the report reads: where each lives, what writes it, and what it must hold.

`SOURCES` names every file; `SCHEMAS` (JSON) and `COLUMNS` (CSV) list what `utils.face.report`
reads from it without first checking that it is there, with its JSON type. `read` returns a
file validated against them (None when it is missing), `write` refuses a record that would not
pass, and `validate` raises ResultsSchemaError naming the file, the key path at fault and the
notebook to re-run. So a results file from an older version of the code, or a mistyped key,
is reported as such, not as a KeyError deep inside a report section.

Schema notation (plain data, checked by `problems`):
  str, bool, NUMBER, list, dict   a value of that JSON type (NUMBER: int or float, not bool)
  {key: spec}                     an object holding every key listed; the key EVERY_KEY ("*")
                                  gives the spec of every value not listed by name
  [spec]                          a list whose every item matches spec
  IfPresent(spec)                 a key the report reads only after `.get(...)` or an `in`
                                  test: it may be absent (or null, unless null_ok=False),
                                  else it must match spec
Leaves the report only reads through `.get(...)` or after an `in` test are left out. No
TensorFlow here: the report builds without it.
"""
import csv
import json
from pathlib import Path

from utils.common import io

# key -> (file, directory argument it lives in, what produces it)
SOURCES = {
    "stats": ("stats.json", "data", "`notebooks/01_data_prep.ipynb` (`make data`)"),
    "baseline": ("baseline.json", "results", "`notebooks/02_baseline_finetune.ipynb`"),
    "block_pruning": ("block_pruning.json", "results", "`notebooks/03_block_pruning.ipynb`"),
    "thresholding": ("thresholding.json", "results", "`notebooks/04_thresholding.ipynb`"),
    "sweep": ("sparsity_sweep.csv", "results", "`notebooks/04_thresholding.ipynb`"),
    "comparison": ("comparison.csv", "results", "`notebooks/07_comparison.ipynb`"),
    "latency": ("latency_pareto.csv", "results", "`notebooks/07_comparison.ipynb`"),
    "baselines": ("baselines.json", "results", "`notebooks/07_comparison.ipynb`"),
    "benchmark": ("benchmark.json", "results",
                  "`notebooks/05_benchmark.ipynb` (or `python -m utils.face.bench`; after notebooks "
                  "02-04)"),
    "demo": ("demo.json", "results", "`notebooks/06_demo.ipynb` (after notebooks 02-05)"),
    "binarization": ("binarization.csv", "results",
                     "`notebooks/08_binarization.ipynb` (`make study`, after `make run`)"),
    "binarization_meta": ("binarization.json", "results",
                          "`notebooks/08_binarization.ipynb` (`make study`, after `make run`)"),
    "pipeline": ("pipeline.json", "results", "`make run` / `make study` (utils.face.pipeline)"),
    "lambda_k": ("lambda_k_sweep.json", "results",
                 "`notebooks/09_lambda_k_sweep.ipynb` (`make study`, after `make run`)"),
    "grouping": ("grouping.json", "results",
                 "`notebooks/10_block_seed.ipynb` (`make study`, after `make run`)"),
    "recovery_budget": ("recovery_budget.json", "results",
                        "`notebooks/11_recovery_budget.ipynb` (`make study`, after `make run`)"),
    "replicates": ("replicates.json", "results",
                   "`notebooks/12_replicates.ipynb` (`make study`, after `make run` and notebook 07)"),
}

NUMBER = (int, float)   # a JSON number; bool is an int subclass in Python and is refused
EVERY_KEY = "*"


class IfPresent:
    """A key the report reads only when it is there: absent (or null, when null_ok) passes;
    otherwise the value must match `spec`."""

    def __init__(self, spec, null_ok=True):
        self.spec, self.null_ok = spec, null_ok


# ------------------------------------------------------------------ what the report reads

METRICS = {"accuracy": NUMBER, "macro_f1": NUMBER, "macro_recall": NUMBER}
SPLIT_COUNTS = {"rows": NUMBER, EVERY_KEY: NUMBER}   # tweets per label besides the total
STEP_COST = {"ratio": NUMBER, "regularized_step_seconds": NUMBER, "plain_step_seconds": NUMBER}
BEFORE_RECOVERY_ROW = {"model": str, "sparsity_encoder_linear": NUMBER, "val_macro_f1": NUMBER,
                       "gap_points": NUMBER}
BENCHMARK_VARIANT = {key: NUMBER for key in (
    "parameters", "disk_bytes", "disk_bytes_gzip", "weight_bytes", "latency_ms_median",
    "latency_speedup_vs_dense", "throughput_ex_per_s", "throughput_speedup_vs_dense",
    "flops_per_token", "macro_f1")}
# results/pipeline.json's records, as utils.face.pipeline writes and resumes them
PIPELINE_RECORD = {"commit": str, "started_clean": bool, "total_seconds": NUMBER,
                   "steps": [{"name": str, "started": str, "seconds": NUMBER,
                              "max_rss_mb": NUMBER, "parameters": dict}]}

SCHEMAS = {
    # CrowdFlower is cleaned and split here (its counts are top-level); TweetEval keeps its
    # official splits, cleaned one by one (per_split_cleaning)
    "stats": {"source": str, "final_rows": NUMBER,
              "raw_rows": IfPresent(NUMBER), "deflategate_rows": IfPresent(NUMBER),
              "include_deflategate": IfPresent(bool), "empty_rows": IfPresent(NUMBER),
              "duplicate_rows": IfPresent(NUMBER), "seed": IfPresent(NUMBER),
              "per_split_cleaning": IfPresent({EVERY_KEY: {
                  "raw_rows": NUMBER, "empty_rows": NUMBER, "duplicate_rows": NUMBER,
                  "removed_as_in_earlier_split": NUMBER, "final_rows": NUMBER}}),
              "splits": {"train": SPLIT_COUNTS, EVERY_KEY: SPLIT_COUNTS}},
    "baseline": {"model": str, "dataset": str, "parameters": NUMBER, "epochs_run": NUMBER,
                 "max_length": NUMBER, "train_seconds": NUMBER, "train_examples_per_s": NUMBER,
                 "train_config": {"learning_rate": NUMBER, "batch_size": NUMBER, "seed": NUMBER},
                 "test": METRICS, "tfidf_logreg_test": METRICS,
                 "split_sizes": {"test": NUMBER}},
    # method_section tests `"settings" in` the record; a record without it is the older one
    # (with "config", before the progressive run), so here it is required: the report then
    # names that file as from an older version instead of as missing.
    "block_pruning": {
        "settings": {"targets": [NUMBER], "prune_fraction": NUMBER, "every": NUMBER,
                     "distill_alpha": NUMBER, "temperature": NUMBER,
                     "train": {"epochs": NUMBER, "learning_rate": NUMBER, "batch_size": NUMBER}},
        "step_cost": {EVERY_KEY: STEP_COST},
        "train_seconds": NUMBER, "prox_seconds": NUMBER, "before_recovery_target": NUMBER,
        "before_recovery": [BEFORE_RECOVERY_ROW],
        "baseline_val": {"macro_f1": NUMBER}},
    "thresholding": {
        "baseline_test": {"macro_f1": NUMBER},
        "retrain": {"epochs": NUMBER, "examples": NUMBER, "learning_rate": NUMBER},
        "targets": {EVERY_KEY: {"sparsity_encoder_linear": NUMBER, "val_macro_f1": NUMBER,
                                "macro_f1": NUMBER, "gap_points": NUMBER}},
        "latency_run": IfPresent({
            "points": [{"curve": str, "label": str, "sparsity_encoder_linear": NUMBER,
                        "speedup_batch1": NUMBER, "speedup_batched": NUMBER,
                        "predicted_speedup_batch1": NUMBER, "val_macro_f1": NUMBER,
                        "macro_f1": NUMBER, "on_validation_front": bool}],
            "reached": [{"target": NUMBER, "sparsity": NUMBER}],
            "train_seconds": NUMBER, "timing": {"examples": NUMBER, "rounds": NUMBER},
            "median_abs_prediction_error": NUMBER})},
    "baselines": {
        "methods": [str],
        # read with .get("retrain", {}), so null would break it; examples/epochs are read
        # as they are when the record has no train_budget
        "retrain": IfPresent({"examples": NUMBER, "epochs": NUMBER}, null_ok=False),
        "train_budget": IfPresent({EVERY_KEY: NUMBER}),   # sparsity level -> examples
        "front_check": IfPresent({
            "floor": NUMBER, "speed_ratio": NUMBER, "margin": NUMBER,
            "points": [{"variant": str, "dominated": bool, "latency_speedup_vs_dense": NUMBER,
                        "macro_f1": NUMBER}]})},
    "benchmark": {
        "meta": {"pruned_dir": str, "dense_dir": str, "cpu_count": NUMBER, "tensorflow": str,
                 "keras": str, "latency_examples": NUMBER, "rounds": NUMBER,
                 "throughput_examples": NUMBER},
        "variants": {"dense": {**BENCHMARK_VARIANT, "num_heads": [NUMBER],
                               "intermediate_sizes": [NUMBER]},
                     "compact": {**BENCHMARK_VARIANT, "flop_reduction_vs_dense": NUMBER},
                     EVERY_KEY: BENCHMARK_VARIANT},
        "compaction": {"heads_removed": NUMBER, "neurons_removed": NUMBER,
                       "parameters_before": NUMBER, "parameters_after": NUMBER,
                       "residual_totals": {"zeros": NUMBER}}},
    # each model also has speedup_vs_<reference> and label_agreement_with_<reference> (the
    # demo's REFERENCE, dense-int8, when it was timed),
    # named after the data, so not listed
    "demo": {"time_to_first_answer_s": NUMBER, "load_seconds": NUMBER, "timing_tweets": NUMBER,
             "max_length": NUMBER, "repeats": NUMBER,
             "models": [{"model": str, "description": str, "latency_ms_median": NUMBER,
                         "latency_ms_p90": NUMBER, "disk_mb": NUMBER, "parameters": NUMBER}]},
    "binarization_meta": {"dense_parameters": NUMBER, "train_examples": NUMBER,
                          "epochs": NUMBER, "learning_rate": NUMBER, "distill_alpha": NUMBER,
                          "temperature": NUMBER, "granularity": str, "clip": NUMBER,
                          "notebook_seconds": NUMBER},
    "pipeline": {"run": IfPresent(PIPELINE_RECORD), "study": IfPresent(PIPELINE_RECORD)},
    # penalty_run: notebook 09's comparison run at block pruning's budget (a record from before
    # it moved there from notebook 03 has none)
    "lambda_k": {"examples": NUMBER,
                 "rows": [{"K": NUMBER, "lambda1": NUMBER, "target": NUMBER,
                           "val_macro_f1": NUMBER}],
                 "penalty_run": IfPresent({
                     "config": {"pruning": {"mode": str, "num_blocks": NUMBER,
                                            "lambda_group": NUMBER, "lambda_polar": NUMBER,
                                            "polarization": str,
                                            "lambda_warmup_fraction": NUMBER}},
                     "train_seconds": NUMBER, "history": list, "step_cost": STEP_COST,
                     "before_recovery_target": NUMBER,
                     "before_recovery": [BEFORE_RECOVERY_ROW]})},
    "grouping": {"seed_groups": {"mode": str, "num_blocks": NUMBER},
                 "block_train_seconds": NUMBER, "seed_run": {"train_seconds": NUMBER},
                 "rows": [{"final": bool, "method": str, "target_sparsity": NUMBER,
                           "sparsity_encoder_linear": NUMBER, "fully_removable_heads": NUMBER,
                           "fully_removable_neurons": NUMBER, "val_macro_f1": NUMBER,
                           "macro_f1": NUMBER}]},
    "recovery_budget": {
        "target": NUMBER, "dense_test_macro_f1": NUMBER, "dense_val_macro_f1": NUMBER,
        "rows": [{"method": str, "recovery_examples": NUMBER, "macro_f1": NUMBER,
                  "val_macro_f1": NUMBER}],
        "hidden_distillation": IfPresent({
            "rows": [{"method": str, "hidden_alpha": NUMBER, "macro_f1": NUMBER,
                      "val_macro_f1": NUMBER}],
            "chosen": {EVERY_KEY: {"helps": bool, "hidden_alpha": NUMBER,
                                   "val_gain_points": NUMBER}}})},
    "replicates": {
        "seeds": [NUMBER], "dense_test_macro_f1": NUMBER, "not_replicated": {EVERY_KEY: str},
        "points": [{"method": str, "level": NUMBER, "n": NUMBER, "macro_f1_mean": NUMBER,
                    "gap_points_mean": NUMBER, "val_macro_f1_mean": NUMBER}],
        "paired": [{"method": str, "level": NUMBER, "test_diff_points": NUMBER,
                    "test_verdict": str, "val_verdict": str}],
        "targets": {EVERY_KEY: {"target_sparsity": NUMBER, "gap_points": NUMBER,
                                "limit_points": NUMBER, "met": bool}},
        "recommendation": {EVERY_KEY: {"method": str, "macro_f1_mean": NUMBER,
                                       "gap_points_mean": NUMBER}}},
}

# CSV sources: the columns the report reads from every row (cells are not typed: an empty
# cell is a point a method did not reach)
COLUMNS = {
    "sweep": ("method", "retrained", "target_sparsity", "sparsity_encoder_linear",
              "sparsity_total", "fully_removable_heads", "fully_removable_neurons",
              "val_macro_f1", "macro_f1"),
    "comparison": ("level", "method", "reached", "rank", "sparsity_encoder_linear",
                   "max_sparsity_encoder_linear", "macro_f1", "gap_to_dense_points"),
    "latency": ("variant", "sparsity_encoder_linear", "parameters", "latency_ms_median",
                "latency_speedup_vs_dense", "macro_f1"),
    "binarization": ("variant", "trained", "macro_f1", "gap_to_dense_points", "disk_mb",
                     "disk_bytes", "smaller_than_dense", "bits_per_dense_weight"),
}


# ------------------------------------------------------------------ checking

class ResultsSchemaError(ValueError):
    """A results file that does not hold what the report reads; the message names the file,
    each key path at fault, and what to re-run."""

    def __init__(self, key, problems):
        name, _, producer = SOURCES[key]
        shown = "; ".join(problems[:3]) + (
            f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        super().__init__(f"{name}: {shown}. The file is from an older version of the code (or "
                         f"was edited): re-run {producer} to rewrite it.")
        self.key, self.problems = key, list(problems)


def key_path(path):
    """("retrain", "examples") -> '"retrain" -> "examples"'; list positions as [3]."""
    if not path:
        return "the top level"
    return " -> ".join(f"[{part}]" if isinstance(part, int) else json.dumps(part)
                       for part in path)


TYPE_NAMES = {str: "a string", bool: "true/false", NUMBER: "a number", int: "a number",
              float: "a number", list: "a list", dict: "an object", type(None): "null"}


def type_name(kind):
    return TYPE_NAMES[kind] if kind in TYPE_NAMES else kind.__name__


def matches(value, kind):
    if kind is NUMBER:
        return isinstance(value, NUMBER) and not isinstance(value, bool)
    return isinstance(value, kind)


def mistyped(path, value, kind):
    """'"rows" -> [2] -> "macro_f1" is "0.8" (a string), expected a number'."""
    found = type_name(type(value))
    if not (isinstance(value, (dict, list)) or value is None):
        found = f"{json.dumps(value)[:40]} ({found})"
    return f"{key_path(path)} is {found}, expected {type_name(kind)}"


def problems(value, spec, path=()):
    """Every way `value` differs from `spec` (the notation of the module docstring), as
    messages naming the key path; [] when it matches."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return [mistyped(path, value, dict)]
        found = []
        for key, item_spec in spec.items():
            if key == EVERY_KEY:
                continue
            if isinstance(item_spec, IfPresent):
                if value.get(key) is not None or (key in value and not item_spec.null_ok):
                    found += problems(value[key], item_spec.spec, path + (key,))
            elif key not in value:
                found.append(f"{key_path(path + (key,))} is missing")
            else:
                found += problems(value[key], item_spec, path + (key,))
        if EVERY_KEY in spec:
            for key, item in value.items():
                if key not in spec:
                    found += problems(item, spec[EVERY_KEY], path + (key,))
        return found
    if isinstance(spec, list):
        if not isinstance(value, list):
            return [mistyped(path, value, list)]
        return [problem for i, item in enumerate(value)
                for problem in problems(item, spec[0], path + (i,))]
    return [] if matches(value, spec) else [mistyped(path, value, spec)]


def csv_problems(rows, columns):
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        return ["the top level is not a table (a list of rows as dicts)"]
    return [f"column {json.dumps(column)} is missing" for column in columns
            if any(column not in row for row in rows)]


def validate(key, record):
    """`record` (a parsed JSON file, or a CSV's rows as dicts) unchanged when it holds what the
    report reads from source `key`; else ResultsSchemaError."""
    if key not in SOURCES:
        raise KeyError(f"unknown results source {key!r}; known: {', '.join(SOURCES)}")
    found = (csv_problems(record, COLUMNS[key]) if key in COLUMNS
             else problems(record, SCHEMAS[key]))
    if found:
        raise ResultsSchemaError(key, found)
    return record


# ------------------------------------------------------------------ reading and writing

def read_csv(path):
    """Rows as dicts, with numbers, booleans and empty cells (None) converted."""
    def convert(value):
        if value in ("True", "False"):
            return value == "True"
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
        return value if value != "" else None
    with open(path, newline="") as handle:
        return [{k: convert(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def path_of(key, dirs):
    """Where source `key` lives; dirs = {"results": ..., "data": ...}."""
    name, where, _ = SOURCES[key]
    return Path(dirs[where]) / name


def read(key, dirs):
    """Source `key` parsed and validated, or None when the file is missing; a file that is
    not valid JSON or lacks what the report reads raises ResultsSchemaError."""
    path = path_of(key, dirs)
    if not path.exists():
        return None
    if key in COLUMNS:
        return validate(key, read_csv(path))
    try:
        record = io.read_json(path)
    except ValueError as error:   # json.JSONDecodeError: a truncated or hand-broken file
        raise ResultsSchemaError(key, [f"is not valid JSON ({error})"]) from error
    return validate(key, record)


def write(key, record, results_dir):
    """Validate `record` for JSON source `key`, then write it atomically to
    results_dir/<its file> (for "stats", results_dir is the data directory); returns the
    path. An invalid record raises ResultsSchemaError and leaves any existing file as it was."""
    if key in COLUMNS:
        raise ValueError(f"{SOURCES[key][0]} is a CSV: write its DataFrame with "
                         "utils.common.io.write_csv")
    # checked as it will be read back: numpy scalars and arrays, which io.write_json turns
    # into numbers and lists, are what notebooks put in their records
    validate(key, json.loads(json.dumps(record, default=io._json_default)))
    path = Path(results_dir) / SOURCES[key][0]
    io.write_json(path, record)
    return path
