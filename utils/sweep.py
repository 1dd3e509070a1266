"""Threshold sweeps: prune a regularised model at several sparsities, evaluate, retrain, repeat.

Every point becomes one row of results/sparsity_sweep.csv.
"""
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import data as data_lib
from . import evaluation, io, pruning, train
from . import saved

SWEEP_COLUMNS = ["method", "K", "mode", "lambda1", "lambda2", "epsilon",
                 "target_sparsity", "sparsity_encoder_linear", "sparsity_total",
                 "fully_removable_heads", "fully_removable_neurons", "accuracy", "macro_f1",
                 "macro_recall", "retrained"]
SNAPSHOT_TOLERANCE_POINTS = 1.0   # benchmark/demo model: within this much val macro-F1 of dense


def sparsity_dir_name(target):
    """0.7 -> 'sparsity_70': the directory of a pruned model saved at that target."""
    return f"sparsity_{round(target * 100):02d}"



def metrics_row(model, tokenizer, split, fields, target, retrained, max_length=64,
                include_pooler=False, metrics=None):
    """One sweep row for any pruning method: `fields` (method, K, mode, lambda1, lambda2,
    epsilon; missing ones are NaN), the target, the measured sparsity and removable units
    (`pruning.sparsity_summary`: encoder linear weights) and the metrics on `split` (computed
    here unless `metrics`, train.evaluate's, are given)."""
    summary = pruning.sparsity_summary(model, include_pooler)
    if metrics is None:
        metrics = train.evaluate(model, tokenizer, split, max_length=max_length)
    descriptor = {k: fields.get(k, np.nan)
                  for k in ("method", "K", "mode", "lambda1", "lambda2", "epsilon")}
    return {**descriptor, "target_sparsity": target,
            **{k: summary[k] for k in ("sparsity_encoder_linear", "sparsity_total",
                                       "fully_removable_heads", "fully_removable_neurons")},
            **{k: metrics[k] for k in ("accuracy", "macro_f1", "macro_recall")},
            "retrained": retrained}


def sweep_row(model, tokenizer, split, pruning_config, method, epsilon, target, retrained,
              max_length=64):
    fields = {"method": method, "K": pruning_config.num_blocks, "mode": pruning_config.mode,
              "lambda1": pruning_config.lambda_group, "lambda2": pruning_config.lambda_polar,
              "epsilon": epsilon}
    return metrics_row(model, tokenizer, split, fields, target, retrained, max_length,
                       pruning_config.include_pooler)


def retrain_sample(dataset, retrain_examples=None, seed=42):
    """`dataset` with its train split cut to a stratified sample of `retrain_examples` tweets
    (the same sample for every point and every method, given the seed)."""
    if retrain_examples is not None and retrain_examples < len(dataset["train"]):
        return data_lib.subsample(dataset, {"train": retrain_examples}, seed=seed)
    return dataset


def threshold_sweep(model, tokenizer, dataset, pruning_config, targets, retrain_config=None,
                    retrain_examples=None, method="block", scope="global", save_dir=None,
                    seed=42, eval_split="test", progress=True, validate_retrained=True):
    """For each target sparsity: threshold the groups of `model`'s current (regularised)
    weights, evaluate, then (if `retrain_config`) retrain with the masks fixed and evaluate
    again. `model` is restored to its starting weights at the end.

    retrain_examples: retrain on a stratified sample of this many training tweets (the same
    sample for every point), to bound the cost of a long sweep on a CPU.
    save_dir: if given, each retrained model is saved to save_dir/sparsity_XX (save_model).
    validate_retrained: record each retrained model's validation scores (`val_macro_f1`,
    `val_accuracy`, from fine_tune's evaluation of the weights it kept), the numbers every
    later choice of snapshot is made on.
    Returns a DataFrame with SWEEP_COLUMNS (+ seconds, val_*).
    """
    start_weights = model.get_weights()
    kernels = {n: np.asarray(k) for n, k in
               pruning.prunable_kernels(model, pruning_config.include_pooler).items()}
    retrain_data = retrain_sample(dataset, retrain_examples, seed)
    max_length = retrain_config.max_length if retrain_config else 64
    rows = []
    for target in tqdm(targets, desc="threshold sweep", disable=not progress):
        started = time.perf_counter()
        model.set_weights(start_weights)
        masks, epsilons = pruning.threshold_masks(kernels, pruning_config.num_blocks,
                                                  pruning_config.mode, target_sparsity=target,
                                                  scope=scope)
        pruning.apply_masks(model, masks)
        epsilon = float(np.mean(list(epsilons.values())))
        rows.append(sweep_row(model, tokenizer, dataset[eval_split], pruning_config, method,
                              epsilon, target, False, max_length))
        if retrain_config is not None and target > 0:
            state = train.fine_tune(model, tokenizer, retrain_data, retrain_config, masks=masks,
                                    progress=False)
            rows.append(sweep_row(model, tokenizer, dataset[eval_split], pruning_config,
                                  method, epsilon, target, True, max_length))
            if validate_retrained:   # fine_tune scored the weights it kept on validation
                best = next(h for h in state["history"] if h["epoch"] == state["best_epoch"])
                rows[-1].update(val_accuracy=best["val_accuracy"],
                                val_macro_f1=best["val_macro_f1"])
            if save_dir is not None:
                saved.save(model, Path(save_dir) / sparsity_dir_name(target))
        rows[-1]["seconds"] = time.perf_counter() - started
    model.set_weights(start_weights)
    return pd.DataFrame(rows)


def write_sweep_csv(frame, path, append=False):
    """Write (or append to) the sweep CSV atomically, keeping the documented column order."""
    path = Path(path)
    if append and path.exists():
        frame = pd.concat([pd.read_csv(path), frame], ignore_index=True)
    columns = SWEEP_COLUMNS + [c for c in frame.columns if c not in SWEEP_COLUMNS]
    return io.write_csv(frame[columns], path)


def config_record(pruning_config, train_config):
    return {"pruning": dataclasses.asdict(pruning_config),
            "train": dataclasses.asdict(train_config)}


def regularization_step_cost(model, tokenizer, dataset, pruning_config, train_config,
                             num_batches=8, rounds=3, teacher_logits=None):
    """Seconds per training step, plain fine-tuning vs the regularised loss, measured on the
    same batches, alternating the two `rounds` times (after a warm-up pass that compiles
    every batch shape). The model's weights are restored afterwards."""
    from . import batching
    weights = model.get_weights()
    n = num_batches * train_config.batch_size
    texts, labels = dataset["train"]["text"][:n], dataset["train"]["label"][:n]
    teacher = None if teacher_logits is None else np.asarray(teacher_logits)[:n]
    plain_batches, _ = batching.make_batches(tokenizer, texts, labels,
                                             train_config.max_length, train_config.batch_size)
    reg_batches, _ = batching.make_batches(tokenizer, texts, labels, train_config.max_length,
                                           train_config.batch_size, teacher_logits=teacher)
    wrapper = pruning.PenalizedClassifier(model, pruning_config, total_steps=1000)
    train.compile_for_training(wrapper, train_config, len(reg_batches))
    train.compile_for_training(model, train_config, len(plain_batches))
    timings = {"plain": [], "regularized": []}
    runs = {"plain": (model, plain_batches), "regularized": (wrapper, reg_batches)}
    for round_ in range(rounds + 1):
        for name, (fit_model, batches) in runs.items():
            start = time.perf_counter()
            for x, y in batches:
                fit_model.train_on_batch(x, y)
            if round_ > 0:  # round 0 compiles
                timings[name].append((time.perf_counter() - start) / len(batches))
    model.set_weights(weights)
    plain, regularized = (float(np.median(timings[k])) for k in ("plain", "regularized"))
    return {"plain_step_seconds": plain, "regularized_step_seconds": regularized,
            "ratio": regularized / plain, "batches": len(plain_batches), "rounds": rounds,
            "batch_size": train_config.batch_size}


# ------------------------------------------------------------------------------ the snapshot

class NoSnapshotError(FileNotFoundError):
    pass


@dataclasses.dataclass
class Snapshot:
    """The pruned model the benchmark, the demo and the exports use."""
    directory: Path
    target_sparsity: float
    sparsity_encoder_linear: float
    val_macro_f1: float
    dense_val_macro_f1: float
    within_tolerance: bool
    message: str

    def record(self):
        return {**dataclasses.asdict(self), "directory": str(self.directory)}


def dense_val_macro_f1(baseline):
    """Validation macro-F1 of the dense model in a results/baseline.json record (notebook 02):
    its best epoch's, the weights it kept."""
    if "validation" in baseline:
        return float(baseline["validation"]["macro_f1"])
    best = [h for h in baseline.get("history", []) if h.get("epoch") == baseline.get("best_epoch")]
    if not best:
        raise NoSnapshotError("results/baseline.json has no validation macro-F1 of the best "
                              "epoch: re-run notebooks/02_baseline_finetune.ipynb")
    return float(best[0]["val_macro_f1"])


def choose_snapshot(results_dir="results", snapshots_dir="checkpoints/pruned", method="block",
                    tolerance_points=SNAPSHOT_TOLERANCE_POINTS, strict=False):
    """The sparsest retrained `method` snapshot whose validation macro-F1 is within
    `tolerance_points` of dense (both read from `results_dir`: sparsity_sweep.csv from notebook
    04, baseline.json from notebook 02) and whose directory exists under `snapshots_dir`.

    If none is within the tolerance: with `strict`, NoSnapshotError saying so; otherwise the
    snapshot with the best validation macro-F1, with `within_tolerance=False` and a message a
    caller prints. Test scores play no part in the choice."""
    if tolerance_points is None or not tolerance_points >= 0:
        raise ValueError(f"tolerance_points={tolerance_points!r}: give a number of macro-F1 "
                         f"points >= 0, e.g. 1.0")
    results_dir, snapshots_dir = Path(results_dir), Path(snapshots_dir)
    sweep_csv, baseline_json = results_dir / "sparsity_sweep.csv", results_dir / "baseline.json"
    for path, notebook in ((sweep_csv, "04_thresholding"), (baseline_json, "02_baseline_finetune")):
        if not path.exists():
            raise NoSnapshotError(f"{path} is missing: run notebooks/{notebook}.ipynb "
                                  f"(make run) first")
    dense = dense_val_macro_f1(io.read_json(baseline_json))
    frame = pd.read_csv(sweep_csv)
    if "val_macro_f1" not in frame.columns:
        raise NoSnapshotError(f"{sweep_csv} has no val_macro_f1 column (written by an older "
                              f"notebook 04): re-run notebooks/04_thresholding.ipynb")
    frame = frame[(frame.method == method) & frame.retrained.astype(bool)
                  & frame.val_macro_f1.notna()].copy()
    frame["directory"] = [snapshots_dir / sparsity_dir_name(t) for t in frame.target_sparsity]
    frame = frame[[saved.is_model_dir(d) for d in frame.directory]]
    if frame.empty:
        raise NoSnapshotError(f"no retrained '{method}' snapshot in {sweep_csv} has a model "
                              f"directory under {snapshots_dir}: run "
                              f"notebooks/04_thresholding.ipynb (make run)")
    frame["gap_points"] = 100 * (dense - frame.val_macro_f1)
    within = frame[frame.gap_points <= tolerance_points + 1e-9]
    if not within.empty:
        best = within.sort_values(["sparsity_encoder_linear", "val_macro_f1"]).iloc[-1]
        message = (f"{best.directory.name}: the sparsest snapshot within {tolerance_points:g} "
                   f"point(s) of dense on validation ({100 * best.val_macro_f1:.1f} vs "
                   f"{100 * dense:.1f} macro-F1)")
    else:
        best = frame.sort_values(["val_macro_f1", "sparsity_encoder_linear"]).iloc[-1]
        message = (f"no snapshot is within {tolerance_points:g} point(s) of dense on "
                   f"validation ({100 * dense:.1f} macro-F1); the most accurate, "
                   f"{best.directory.name}, is {best.gap_points:.1f} points below. Using it; "
                   f"pass --pruned DIR (or PRUNED_DIR) to choose another")
        if strict:
            raise NoSnapshotError(message.replace("Using it; pass", "Pass"))
    return Snapshot(best.directory, float(best.target_sparsity),
                    float(best.sparsity_encoder_linear), float(best.val_macro_f1), dense,
                    not within.empty, message)


# ------------------------------------------------------------------------------ λ1 × K study

def lambda_k_sweep(model, tokenizer, dataset, lambdas, ks, mode="inner", lambda_polar=1e-3,
                   polarization="normalized", train_examples=3200, val_examples=1000,
                   targets=(0.3, 0.5), learning_rate=1e-4, batch_size=32, max_length=64,
                   seed=42):
    """Short regularised runs, one per (K, λ1), each from `model`'s current weights on the same
    stratified sample of `train_examples` tweets, each scored by validation macro-F1 on
    `val_examples` tweets after thresholding to every target (no retraining). `model` is
    restored afterwards. Returns a DataFrame (K, lambda1, target, val_macro_f1)."""
    if not lambdas or not ks:
        raise ValueError(f"lambdas={lambdas!r}, ks={ks!r}: give at least one value of each")
    start = model.get_weights()
    sample = data_lib.subsample(dataset, {"train": train_examples, "validation": val_examples},
                                seed=seed)
    short = train.TrainConfig(learning_rate=learning_rate, epochs=1, batch_size=batch_size,
                              max_length=max_length, seed=seed)
    rows = []
    for k, lam in tqdm([(k, lam) for k in ks for lam in lambdas], desc="λ1 × K"):
        model.set_weights(start)
        config = pruning.PruningConfig(num_blocks=k, mode=mode, lambda_group=lam,
                                       lambda_polar=lambda_polar, polarization=polarization)
        train.fine_tune(model, tokenizer, sample, short, pruning=config, progress=False)
        frame = threshold_sweep(model, tokenizer, sample, config, list(targets),
                                eval_split="validation", progress=False)
        rows += [{"K": k, "lambda1": lam, "target": row.target_sparsity,
                  "val_macro_f1": row.macro_f1} for row in frame.itertuples()]
    model.set_weights(start)
    return pd.DataFrame(rows)


def recovery_data(dataset, tokenizer, teacher=None, retrain_examples=None, seed=42,
                  max_length=64):
    """The recovery sample (`retrain_sample`) and, given the dense `teacher`, its logits on
    that sample (one row per recovery tweet), computed once for every point."""
    retrain_data = retrain_sample(dataset, retrain_examples, seed)
    logits = None if teacher is None else train.predict_texts(
        teacher, tokenizer, retrain_data["train"]["text"], max_length=max_length)
    return retrain_data, logits


def recovery_for(pool, examples, retrain_config, seed=42):
    """A recovery of `examples` training examples in all, drawn from `pool` =
    `recovery_data(dataset, tokenizer, teacher)` (the whole training split and the teacher's
    logits on it, computed once): (retrain_data, teacher_logits, config) with `retrain_config`'s
    epochs set to the fewest passes that fit, ceil(examples / training tweets), over a
    stratified sample of ceil(examples / passes) tweets -- the sample `retrain_sample` draws for
    that size, so a budget of 4,000 recovers on exactly notebook 04's sample."""
    if not isinstance(examples, (int, np.integer)) or examples < 1:
        raise ValueError(f"examples = {examples!r}: a recovery needs a positive number of "
                         "training examples")
    data, logits = pool
    size = len(data["train"])
    epochs = -(-int(examples) // size)
    chosen = data_lib.stratified_indices(data["train"]["label"], -(-int(examples) // epochs),
                                         seed)
    sample = dict(data)
    sample["train"] = data["train"].select(chosen)
    config = dataclasses.replace(retrain_config, epochs=epochs,
                                 patience=max(retrain_config.patience, epochs))
    return sample, (None if logits is None else np.asarray(logits)[chosen]), config


def recover(model, tokenizer, retrain_data, retrain_config, teacher_logits=None,
            distill_alpha=0.5, temperature=2.0, teacher=None, hidden_alpha=0.0):
    """The recovery fine-tune every pruned point gets: `retrain_config` on `retrain_data`
    with the model's current zeros fixed (masked gradients), distilled from `teacher_logits`
    when given, and with hidden_alpha > 0 from the hidden states of `teacher` (the dense
    model) too. Returns fine_tune's state (its best epoch was scored on validation)."""
    distill = None
    if (teacher_logits is not None and distill_alpha > 0) or hidden_alpha > 0:
        distill = pruning.PruningConfig(
            lambda_group=0.0, lambda_polar=0.0, polarization="none",
            distill_alpha=distill_alpha if teacher_logits is not None else 0.0,
            temperature=temperature, hidden_alpha=hidden_alpha)
    return train.fine_tune(model, tokenizer, retrain_data, retrain_config,
                           masks=pruning.current_masks(model), pruning=distill,
                           teacher_logits=teacher_logits if distill else None, progress=False,
                           teacher=teacher if hidden_alpha > 0 else None)


def snapshot_sweep(snapshot_dirs, tokenizer, dataset, retrain_config, retrain_examples=None,
                   method="block", seed=42, eval_split="test", save_dir=None, teacher=None,
                   distill_alpha=0.5, temperature=2.0, reference_predictions=None,
                   progress=True, dir_name=sparsity_dir_name, hidden_alpha=0.0):
    """Rows (as threshold_sweep's) for saved pruned snapshots {target: directory}: each
    evaluated as saved, then given the same recovery fine-tune (`recover`: its zeros fixed, the
    same stratified sample of `retrain_examples` tweets for every point) and evaluated again,
    with validation scores on both rows. Retrained rows are marked `final`.

    teacher: the dense model; recovery then distils from its logits on the recovery sample
        ((1 - distill_alpha) CE + distill_alpha T^2 KL, as in the pruning run), and with
        hidden_alpha > 0 from its hidden states too (`pruning.hidden_state_loss`).
    reference_predictions: the dense model's predictions on `eval_split`; each final row then
        gets diff_macro_f1 (its macro-F1 minus dense) with a paired-bootstrap 95% interval
        (diff_low, diff_high).
    save_dir: each recovered model is saved to save_dir/<dir_name(target)> (sparsity_XX by
        default; latency-targeted snapshots use units.cost_dir_name).
    """
    retrain_data, teacher_logits = recovery_data(dataset, tokenizer, teacher, retrain_examples,
                                                 seed, retrain_config.max_length)
    rows = []
    for target, directory in tqdm(sorted(snapshot_dirs.items()), desc="snapshots",
                                  disable=not progress):
        started = time.perf_counter()
        model = saved.load_model(directory)
        for retrained in (False, True):
            if retrained:
                recover(model, tokenizer, retrain_data, retrain_config, teacher_logits,
                        distill_alpha, temperature, teacher, hidden_alpha)
            rows.append(scored_row(model, tokenizer, dataset, {"method": method}, target,
                                   retrained, retrain_config.max_length, eval_split,
                                   reference_predictions if retrained else None, seed))
        if save_dir is not None:
            saved.save(model, Path(save_dir) / dir_name(target))
        rows[-1]["seconds"] = time.perf_counter() - started
    return pd.DataFrame(rows)


def snapshot_sweep_saved(teacher_dir, **kwargs):
    """`snapshot_sweep(teacher=<the model saved in teacher_dir>, **kwargs)`: the form
    `isolation.run_in_fresh_process` can run (a Keras model does not cross processes)."""
    return snapshot_sweep(teacher=saved.load_model(teacher_dir), **kwargs)


def hidden_distillation_choice(rows):
    """Per method, the hidden_alpha of the best validation macro-F1 among `rows` (dicts with
    method, hidden_alpha, val_macro_f1; alpha 0 is recovery without hidden states), ties to
    the smaller alpha, and whether it helps (the chosen alpha is > 0). Test is not looked at.
    Returns {method: {"hidden_alpha", "val_macro_f1", "val_gain_points", "helps"}}."""
    chosen = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method),
                      key=lambda r: (-r["val_macro_f1"], r["hidden_alpha"]))
        without = [r for r in mine if r["hidden_alpha"] == 0]
        if not without:
            raise ValueError(f"{method}: no row with hidden_alpha = 0 to compare with")
        best = mine[0]
        chosen[method] = {"hidden_alpha": float(best["hidden_alpha"]),
                          "val_macro_f1": float(best["val_macro_f1"]),
                          "val_gain_points": 100 * float(best["val_macro_f1"]
                                                         - without[0]["val_macro_f1"]),
                          "helps": best["hidden_alpha"] > 0}
    return chosen


def scored_row(model, tokenizer, dataset, fields, target, final, max_length=64,
               eval_split="test", reference_predictions=None, seed=42):
    """metrics_row on `eval_split` plus validation scores, `final`, and (given the dense
    model's predictions) the paired-bootstrap interval of the macro-F1 difference to dense."""
    split = dataset[eval_split]
    metrics = train.evaluate(model, tokenizer, split, max_length=max_length,
                             return_predictions=True)
    row = metrics_row(model, tokenizer, split, fields, target, final, max_length,
                      metrics=metrics)
    val = train.evaluate(model, tokenizer, dataset["validation"], max_length=max_length)
    row.update(val_accuracy=val["accuracy"], val_macro_f1=val["macro_f1"], final=final)
    if reference_predictions is not None:
        interval = evaluation.paired_bootstrap_macro_f1(
            split["label"], reference_predictions, metrics["predictions"], seed=seed)
        row.update(diff_macro_f1=interval["diff"], diff_low=interval["low"],
                   diff_high=interval["high"])
    return row
