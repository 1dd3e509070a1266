"""Sweeps: prune at several sparsities, evaluate, recover, evaluate again; one row per point
(results/sparsity_sweep.csv, results/baselines_sweep.csv).

`mask_sweep` is the one engine for pruning from a model's weights with any masks function
(thresholding a regularised model: `threshold_sweep`; the baselines: `utils.pruning.baselines`);
`snapshot_sweep` gives saved snapshots the same recovery; `utils.common.io.sparsity_dir_name` names the
directories every sweep saves to.
"""
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from utils import saved
from utils.common import fingerprint, io, logs
from utils.common.io import sparsity_dir_name
from utils.compression import compact
from utils.data import batching
from utils.data import corpus as data_lib
from utils.encoder import model as model_lib
from utils.pruning import block as pruning
from utils.pruning.units import UnreachableSparsity
from utils.training import evaluation, train

log = logging.getLogger(__name__)

SWEEP_COLUMNS = ["method", "K", "mode", "lambda1", "lambda2", "epsilon",
                 "target_sparsity", "sparsity_encoder_linear", "sparsity_total",
                 "fully_removable_heads", "fully_removable_neurons", "accuracy", "macro_f1",
                 "macro_recall", "retrained"]
SNAPSHOT_TOLERANCE_POINTS = 1.0   # benchmark/demo model: within this much val macro-F1 of dense


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


def retrain_sample(dataset, retrain_examples=None, seed=42):
    """`dataset` with its train split cut to a stratified sample of `retrain_examples` tweets
    (the same sample for every point and every method, given the seed)."""
    if retrain_examples is not None and retrain_examples < len(dataset["train"]):
        return data_lib.subsample(dataset, {"train": retrain_examples}, seed=seed)
    return dataset


def threshold_sweep(model, tokenizer, dataset, pruning_config, targets, retrain_config=None,
                    retrain_examples=None, method="block", scope="global", save_dir=None,
                    seed=42, eval_split="test", progress=True):
    """For each target sparsity: threshold the groups of `model`'s current (regularised)
    weights (`pruning.threshold_masks`), evaluate, then (if `retrain_config`) retrain with the
    masks fixed, without distillation, and evaluate again -- `mask_sweep`, the one sweep engine,
    with the threshold as its masks function. `model` is restored to its starting weights.

    retrain_examples: retrain on a stratified sample of this many training tweets (the same
    sample for every point), to bound the cost of a long sweep on a CPU.
    save_dir: if given, each retrained model is saved to save_dir/sparsity_XX.
    Rows carry validation scores (`val_macro_f1`, `val_accuracy`) of the model they describe,
    the numbers every later choice of snapshot is made on, and the penalty's lambda1, lambda2
    and the mean threshold epsilon. Returns a DataFrame with SWEEP_COLUMNS first.
    """
    kernels = {n: np.asarray(k) for n, k in
               model_lib.prunable_kernels(model, include_pooler=pruning_config.include_pooler).items()}
    epsilons = {}

    def threshold(model, target):   # on the start weights, as every masks function is
        masks, eps = pruning.threshold_masks(kernels, pruning_config.num_blocks,
                                             pruning_config.mode, target_sparsity=target,
                                             scope=scope)
        epsilons[round(float(target), 4)] = float(np.mean(list(eps.values())))
        return masks
    frame = mask_sweep(model, tokenizer, dataset, method, threshold, targets, retrain_config,
                       retrain_examples, mode=pruning_config.mode, K=pruning_config.num_blocks,
                       save_dir=save_dir, seed=seed, eval_split=eval_split, progress=progress,
                       distill_alpha=0.0)
    frame["lambda1"] = pruning_config.lambda_group
    frame["lambda2"] = pruning_config.lambda_polar
    frame["epsilon"] = [epsilons.get(round(float(t), 4), np.nan) for t in frame.target_sparsity]
    return frame[SWEEP_COLUMNS + [c for c in frame.columns if c not in SWEEP_COLUMNS]]


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
    every batch shape). The model's weights are restored afterwards. These few steps compile
    without XLA (`train.resolve_jit_compile`), also where the full run compiles with it: the
    ratio is the method's overhead per step, not XLA's."""
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
    target_sparsity: float      # for a latency-targeted snapshot, its cost target (0.45 x dense)
    sparsity_encoder_linear: float
    val_macro_f1: float
    dense_val_macro_f1: float
    within_tolerance: bool
    message: str
    curve: str = "sparsity targets"    # or "latency targets" (notebook 04's two block curves)

    def record(self):
        return {**dataclasses.asdict(self), "directory": str(self.directory)}


def dense_val_macro_f1(baseline):
    """Validation macro-F1 of the dense model in a results/baseline.json record (notebook 02):
    its best epoch's, the weights it kept."""
    score = io.best_epoch_val_macro_f1(baseline)
    if score is None:
        raise NoSnapshotError("results/baseline.json has no validation macro-F1 of the best "
                              "epoch: re-run notebooks/02_baseline_finetune.ipynb")
    return score


def _snapshot_candidates(csv_path, method, directory_of, curve):
    """The retrained `method` rows of a sweep CSV with a validation score, and their model
    directories (only those that exist)."""
    frame = pd.read_csv(csv_path)
    if "val_macro_f1" not in frame.columns:
        raise NoSnapshotError(f"{csv_path} has no val_macro_f1 column (written by an older "
                              f"notebook 04): re-run notebooks/04_thresholding.ipynb")
    frame = frame[(frame.method == method) & frame.retrained.astype(bool)
                  & frame.val_macro_f1.notna()].copy()
    frame["directory"] = [directory_of(row) for row in frame.itertuples()]
    frame["curve"] = curve
    return frame[[saved.is_model_dir(d) for d in frame.directory]]


def choose_snapshot(results_dir="results", snapshots_dir="checkpoints/pruned", method="block",
                    tolerance_points=SNAPSHOT_TOLERANCE_POINTS, strict=False,
                    latency_snapshots_dir=None):
    """The sparsest retrained `method` snapshot whose validation macro-F1 is within
    `tolerance_points` of dense (both read from `results_dir`: sparsity_sweep.csv from notebook
    04, baseline.json from notebook 02) and whose directory exists under `snapshots_dir`.
    With `latency_snapshots_dir`, the recovered snapshots of notebook 04's latency-targeted
    run (`{method}_latency` rows of latency_sweep.csv, cost_XX directories) are candidates too.

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
    frames = [_snapshot_candidates(
        sweep_csv, method, lambda row: snapshots_dir / sparsity_dir_name(row.target_sparsity),
        "sparsity targets")]
    latency_csv = results_dir / "latency_sweep.csv"
    if latency_snapshots_dir is not None and latency_csv.exists():
        frames.append(_snapshot_candidates(
            latency_csv, f"{method}_latency",
            lambda row: Path(latency_snapshots_dir) / io.cost_dir_name(row.target_latency),
            "latency targets"))
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        where = " or ".join(str(d) for d in (snapshots_dir, latency_snapshots_dir) if d)
        raise NoSnapshotError(f"no retrained '{method}' snapshot in {sweep_csv} has a model "
                              f"directory under {where}: run "
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
                    not within.empty, message, best.curve)


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
    for k, lam in logs.progress([(k, lam) for k in ks for lam in lambdas], "λ1 × K", log):
        model.set_weights(start)
        config = pruning.PruningConfig(num_blocks=k, mode=mode, lambda_group=lam,
                                       lambda_polar=lambda_polar, polarization=polarization)
        pruning.penalized_fine_tune(model, tokenizer, sample, short, pruning=config, progress=False)
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
    model) too. Returns fine_tune's state (its best epoch was scored on validation).

    The heads and neurons the pruning removed are not computed: their weights are zero and get
    zero gradients, so the same training runs on the model's compaction
    (`compact.compacted_for_training`), whose weights are written back into `model`."""
    distill = None
    if (teacher_logits is not None and distill_alpha > 0) or hidden_alpha > 0:
        distill = pruning.PruningConfig(
            lambda_group=0.0, lambda_polar=0.0, polarization="none",
            distill_alpha=distill_alpha if teacher_logits is not None else 0.0,
            temperature=temperature, hidden_alpha=hidden_alpha)
    # the units the pruning removed take no compute: train their compaction, written back
    with compact.compacted_for_training(model) as trainee:
        return pruning.penalized_fine_tune(trainee, tokenizer, retrain_data, retrain_config,
                               masks=pruning.current_masks(trainee), pruning=distill,
                               teacher_logits=teacher_logits if distill else None,
                               progress=False, teacher=teacher if hidden_alpha > 0 else None)


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
        hidden_alpha > 0 from its hidden states too (`losses.hidden_state_loss`).
    reference_predictions: the dense model's predictions on `eval_split`; each final row then
        gets diff_macro_f1 (its macro-F1 minus dense) with a paired-bootstrap 95% interval
        (diff_low, diff_high).
    save_dir: each recovered model is saved to save_dir/<dir_name(target)> (sparsity_XX by
        default; latency-targeted snapshots use io.cost_dir_name).
    """
    retrain_data, teacher_logits = recovery_data(dataset, tokenizer, teacher, retrain_examples,
                                                 seed, retrain_config.max_length)
    rows = []
    for target, directory in logs.progress(sorted(snapshot_dirs.items()), "snapshots", log,
                                           enabled=progress):
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
    evaluated = compact.smallest_equivalent(model)   # same predictions, less compute
    metrics = train.evaluate(evaluated, tokenizer, split, max_length=max_length,
                             return_predictions=True)
    row = metrics_row(model, tokenizer, split, fields, target, final, max_length,
                      metrics=metrics)
    val = train.evaluate(evaluated, tokenizer, dataset["validation"], max_length=max_length)
    row.update(val_accuracy=val["accuracy"], val_macro_f1=val["macro_f1"], final=final)
    if reference_predictions is not None:
        interval = evaluation.paired_bootstrap_macro_f1(
            split["label"], reference_predictions, metrics["predictions"], seed=seed)
        row.update(diff_macro_f1=interval["diff"], diff_low=interval["low"],
                   diff_high=interval["high"])
    return row


# ------------------------------------------------------------------ the sweep engine



def cubic_schedule(final_sparsity, steps, initial_sparsity=0.0):
    """Zhu & Gupta's s_t = s_f + (s_i - s_f)(1 - t/T)^3 for t = 1..T (the last is s_f)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps = {steps!r}: must be a positive int")
    return [final_sparsity + (initial_sparsity - final_sparsity) * (1 - t / steps) ** 3
            for t in range(1, steps + 1)]


def can_chain(masks_fn, gradual_steps=1):
    """Whether a method can run as one chain through its targets (`mask_sweep(chained=True)`):
    it prunes the weights it is given in one shot, neither gradually nor by training its own
    masks from dense per target (CoFi says how long it trained: `examples_for`)."""
    return gradual_steps == 1 and not hasattr(masks_fn, "examples_for")


def mask_sweep(model, tokenizer, dataset, method, masks_fn, targets, retrain_config=None,
               retrain_examples=None, gradual_steps=1, mode="", K=float("nan"), save_dir=None,
               seed=42, eval_split="test", progress=True, distill_alpha=0.5, temperature=2.0,
               recovery=None, reference_predictions=None, train_budget=None, chained=False):
    """For each target: masks_fn(model, target) on the start (dense) weights, evaluate, give the
    recovery every pruned point gets (`recover`: retrain_config on a fixed stratified
    sample of retrain_examples training tweets, zeros fixed, distilled from the dense start
    model's logits with `distill_alpha`), evaluate again. Rows are `scored_row`s (test and
    validation scores; the recovered row is `final`, with the paired-bootstrap interval of its
    difference to dense when `reference_predictions`, the dense model's predictions on
    `eval_split`, are given) plus train_examples_total (examples the point was trained on) and
    train_seconds.

    gradual_steps = T > 1: no one-shot point; instead T prune -> recover steps with targets
    `cubic_schedule(target, T)`, masks_fn applied to the current weights (masks only grow),
    each step recovering on its own 1/T of the same sample -- the same budget in total (each
    step restarts the learning-rate warm-up/decay). Only the final row is written.
    Unreachable targets (`UnreachableSparsity`) are skipped with a message; a target whose
    masks equal an earlier target's (e.g. 70% and 80% both mean 5 of 6 layers) copies its rows
    (column same_masks_as_target) without retraining or saving again. `model` is
    restored to its start weights at the end. save_dir: recovered models are saved to
    save_dir/sparsity_XX. recovery: `recovery_data`'s (sample, teacher logits), when
    the caller already has them.

    train_budget: {target: training examples} -- equal budgets. Each final point then has
    trained on that many examples in all: what the method's pruning phase trained on (CoFi:
    `masks_fn.examples_for(target)`; 0 for methods that only score the weights) plus a recovery
    of the rest, drawn by `recovery_for` (more passes when the rest exceeds the training
    split) -- retrain_examples and retrain_config.epochs are then not used, and `recovery` is
    the pool (`recovery_data` on the whole training split).

    chained: one run through the targets (ascending), as block pruning's one progressive run
    passes through its snapshots: each target is pruned from the previous target's recovered
    model (masks only grow) and its recovery spends only what the budget adds, so a final point
    has trained on train_budget[target] examples in all, counted from dense, at a fraction of
    the cost of starting every target from dense. Not for a method that trains its own masks
    from dense per target (CoFi, `examples_for`) or for gradual_steps > 1.
    Returns a DataFrame (SWEEP_COLUMNS first).
    """
    start_weights = model.get_weights()
    max_length = retrain_config.max_length if retrain_config else 64
    if train_budget is not None:
        if retrain_config is None:
            raise ValueError("train_budget needs a retrain_config for the recoveries")
        missing = [t for t in targets if t > 0 and budget_of(train_budget, t) is None]
        if missing:
            raise ValueError(f"train_budget has no entry for targets {missing}: give every "
                             f"target its examples (it has {sorted(train_budget)})")
        retrain_examples = None
    if chained:
        if not can_chain(masks_fn, gradual_steps):
            raise ValueError(f"{method}: chained=True is for methods that prune the weights they "
                             "are given in one shot; this one is gradual or trains its own masks "
                             "from dense per target: run it with chained=False")
        if list(targets) != sorted(targets):
            raise ValueError(f"chained=True needs ascending targets (got {list(targets)}): each "
                             "one is pruned from the previous one's recovered model")
    if recovery is None and retrain_config is not None:
        recovery = recovery_data(dataset, tokenizer, model if distill_alpha > 0 else None,
                                       retrain_examples, seed, max_length)

    def recovery_of(target, pruned_on):
        """(retrain_data, teacher_logits, config) of the target's recovery, or None.
        pruned_on: what the point has trained on before its recovery."""
        if train_budget is None:
            return (*recovery, retrain_config)
        rest = budget_of(train_budget, target) - pruned_on
        if rest < 1:
            log.info(f"{method}: the pruning phase used the whole budget at {target:.0%}: "
                  "no recovery")
            return None
        return recovery_for(recovery, int(rest), retrain_config, seed)
    fields = {"method": method, "K": K, "mode": mode}
    rows = []

    def row(target, final, trained_on=0, seconds=0.0):
        return {**scored_row(model, tokenizer, dataset, fields, target, final,
                                   max_length, eval_split,
                                   reference_predictions if final else None, seed),
                "train_examples_total": trained_on, "train_seconds": seconds}
    seen = {}   # masks digest -> target: structured methods give the same masks to several
    chain = {"masks": None, "trained_on": 0, "seconds": 0.0}   # chained: the previous point
    for target in logs.progress(targets, f"{method} sweep", log, enabled=progress):
        started = time.perf_counter()
        if not chained:
            model.set_weights(start_weights)
        try:
            if gradual_steps > 1 and retrain_config is not None and target > 0:
                data, logits, config = recovery_of(target, 0)
                trained_on = _gradual(model, tokenizer, (data, logits), masks_fn, target,
                                      gradual_steps, config, distill_alpha, temperature)
                rows.append(row(target, True, trained_on, time.perf_counter() - started))
            else:
                masks = masks_fn(model, target)
                if chained and chain["masks"] is not None:   # what the chain pruned stays pruned
                    masks = {n: m * chain["masks"][n] if n in chain["masks"] else m
                             for n, m in masks.items()}
                # same masks and, with budgets, the same budget
                digest = (_digest(masks),
                          None if train_budget is None else budget_of(train_budget, target))
                # same masks, same (deterministic) retraining: same rows (a chain trains on)
                if digest in seen and not chained:
                    copies = [{**r, "target_sparsity": target, "seconds": 0.0,
                               "same_masks_as_target": seen[digest]}
                              for r in rows if r["target_sparsity"] == seen[digest]]
                    log.info(f"{method}: target {target:.0%} gives the same masks as "
                          f"{seen[digest]:.0%}; rows copied, no model saved")
                    rows.extend(copies)
                    continue
                seen[digest] = target
                pruning.apply_masks(model, masks)
                # a method that trains to find its masks (CoFi) says on how many tweets
                pruned_on = int(getattr(masks_fn, "examples_for", lambda t: 0)(target))
                if chained:
                    chain["masks"] = masks
                    pruned_on = chain["trained_on"]   # the chain's earlier recoveries
                pruning_seconds = time.perf_counter() - started
                # seconds of training behind the point: CoFi's pruning run, or the chain's
                # recoveries so far
                trained_seconds = (chain["seconds"] if chained
                                   else pruning_seconds if pruned_on else 0.0)
                rows.append(row(target, False, pruned_on, trained_seconds))
                plan = recovery_of(target, pruned_on) \
                    if retrain_config is not None and target > 0 else None
                if plan is not None:
                    data, logits, config = plan
                    recovering = time.perf_counter()
                    recover(model, tokenizer, data, config, logits, distill_alpha, temperature)
                    rows.append(row(target, True,
                                    pruned_on + len(data["train"]) * config.epochs,
                                    time.perf_counter() - recovering + trained_seconds))
                    chain.update(trained_on=rows[-1]["train_examples_total"],
                                 seconds=rows[-1]["train_seconds"])
                elif train_budget is not None and target > 0:
                    rows[-1]["final"] = True   # the pruning phase spent the whole budget
        except UnreachableSparsity as error:
            log.info(f"{method}: skipping target {target:.0%}: {error}")
            continue
        if save_dir is not None and rows[-1]["final"]:
            saved.save(model, Path(save_dir) / sparsity_dir_name(target))
        rows[-1]["seconds"] = time.perf_counter() - started
        rows[-1]["gradual_steps"] = gradual_steps
        rows[-1]["chained"] = chained
    model.set_weights(start_weights)
    frame = pd.DataFrame(rows)
    return frame if len(frame) else pd.DataFrame(columns=SWEEP_COLUMNS)


def budget_of(train_budget, target):
    """train_budget's examples for `target` (keys compared to 4 decimals), or None."""
    by_target = {round(float(t), 4): n for t, n in train_budget.items()}
    return by_target.get(round(float(target), 4))


def _digest(masks):
    return fingerprint.digest([part for name in sorted(masks)
                   for part in (name, np.packbits(np.asarray(masks[name]) != 0))], "sha1")


def _gradual(model, tokenizer, recovery, masks_fn, target, steps, retrain_config,
             distill_alpha, temperature):
    """The prune -> recover steps of a gradual point; returns the examples trained on."""
    retrain_data, teacher_logits = recovery
    masks, trained_on = None, 0
    for t, sparsity in enumerate(cubic_schedule(target, steps)):
        step_masks = masks_fn(model, sparsity)
        masks = step_masks if masks is None else \
            {n: m * masks[n] if n in masks else m for n, m in step_masks.items()}
        pruning.apply_masks(model, masks)
        chunk = dict(retrain_data)
        # shard(contiguous=False) holds rows t, t + steps, ...: the same rows of the logits
        chunk["train"] = retrain_data["train"].shard(num_shards=steps, index=t,
                                                     contiguous=False)
        logits = None if teacher_logits is None else np.asarray(teacher_logits)[t::steps]
        recover(model, tokenizer, chunk, retrain_config, logits, distill_alpha,
                      temperature)
        trained_on += len(chunk["train"]) * retrain_config.epochs
    return trained_on
