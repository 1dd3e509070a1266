"""Every pruning method the comparison runs (notebook 07), by name, at one training budget:
`make_methods` builds them, `run_baselines` sweeps each (in a fresh process), and the
recovery-budget study's starting points (`budget_start`, `budget_row`, notebook 11)."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from utils import saved
from utils.common import io
from utils.common.isolation import run_in_fresh_process
from utils.encoder import model as model_lib
from utils.pruning import block as pruning
from utils.pruning import cofi, fisher_mask, importance, sweep, units
from utils.pruning.baselines import (
    HeadImportancePruner,
    LayerDropper,
    ffn_neuron_masks,
    magnitude_masks,
)
from utils.pruning.importance import labelled_batches
from utils.pruning.sweep import budget_of, mask_sweep
from utils.training import train

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Method:
    name: str
    masks_fn: object          # (model, target sparsity) -> masks
    mode: str                 # granularity, written to the sweep CSV's "mode" column
    gradual_steps: int = 1    # > 1: prune -> retrain steps on the cubic schedule
    K: float = float("nan")   # comparable block count, where one exists
    recipe: dict = None       # make_methods' arguments that rebuild it (in another process)
    decisions: dict = None    # what it decided when it ran in another process


METHODS = ("magnitude_global", "magnitude_per_matrix", "magnitude_gradual", "heads",
           "layers", "ffn_neurons", "fisher_mask", "cofi")


class CoFiPruner:
    """masks_fn(model, target) for CoFi (`utils.pruning.cofi`): trains the gates and the weights of the
    model it is given (the sweep passes the dense start weights) for `examples_for(target)`
    training tweets, distilled from that model's logits, folds the gates and returns the masks
    of what was pruned. `records` keeps each target's run. checkpoint_dir: each target's run
    checkpoints under it (checkpoint_dir/target_50 ...) and resumes there after a crash."""

    def __init__(self, tokenizer, dataset, train_config, examples_for, distill_alpha=0.5,
                 temperature=2.0, reg_learning_rate=0.01, progress=False, checkpoint_dir=None):
        self.tokenizer, self.dataset, self.train_config = tokenizer, dataset, train_config
        self.checkpoint_dir = checkpoint_dir
        self._examples = examples_for
        self.reg_learning_rate = reg_learning_rate
        self.distill_alpha, self.temperature, self.progress = distill_alpha, temperature, progress
        self.teacher = None
        self.records = {}

    def __call__(self, model, target):
        if self.teacher is None and self.distill_alpha > 0:
            self.teacher = train.predict_texts(model, self.tokenizer,
                                               self.dataset["train"]["text"],
                                               max_length=self.train_config.max_length)
        self.records[float(target)] = cofi.cofi_prune(
            model, self.tokenizer, self.dataset, target, self.train_config,
            self.examples_for(target), teacher_logits=self.teacher,
            distill_alpha=self.distill_alpha, temperature=self.temperature,
            reg_learning_rate=self.reg_learning_rate, progress=self.progress,
            checkpoint_dir=None if self.checkpoint_dir is None
            else Path(self.checkpoint_dir) / f"target_{round(100 * float(target))}")
        return pruning.current_masks(model)

    def examples_for(self, target):
        """Training tweets of the pruning phase at `target` (examples_for: a callable or a
        {target: examples} mapping, which pickles)."""
        if callable(self._examples):
            return self._examples(target)
        examples = budget_of(self._examples, target)
        if examples is None:
            raise ValueError(f"CoFi has no pruning budget for target {target}: examples_for "
                             f"covers {sorted(map(float, self._examples))}")
        return examples

    def record(self):
        return {"runs": self.records}


def make_methods(names, tokenizer, importance_split, importance_examples=1024,
                 head_step_fraction=0.1, gradual_steps=4, greedy_layers=False, max_length=64,
                 batch_size=32, seed=42, progress=False, fisher_examples=None, cofi=None,
                 fisher_options=None):
    """The methods `names` (from METHODS) as `Method`s. Head importance and layer losses are
    computed on `importance_examples` tweets of `importance_split` (the training split); the
    Fisher mask search on `fisher_examples` of them (default: the reference's 2,048, in its
    batches of 32), with `fisher_options` ({"rearrange", "tune"} of FisherMaskPruner; default
    neither). cofi: {"dataset", "train_config", "examples_for": training tweets of its
    pruning phase, {target: examples} or a callable, "distill_alpha", "temperature",
    "reg_learning_rate", "checkpoint_dir"} for the method "cofi". Each Method keeps these arguments as its
    `recipe`, so `run_baselines(isolate=True)` can rebuild it in a fresh process."""
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}: choose among {METHODS}")
    batches = None
    if {"heads", "layers"} & set(names):
        batches = labelled_batches(tokenizer, importance_split, importance_examples,
                                    max_length, batch_size, seed)

    def magnitude(scope):
        return lambda model, target: magnitude_masks(model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True), target, scope)
    factories = {
        "magnitude_global": lambda: Method("magnitude_global", magnitude("global"),
                                           "unstructured"),
        "magnitude_per_matrix": lambda: Method("magnitude_per_matrix", magnitude("per_matrix"),
                                               "unstructured"),
        "magnitude_gradual": lambda: Method("magnitude_gradual", magnitude("global"),
                                            "unstructured", gradual_steps),
        "heads": lambda: Method("heads", HeadImportancePruner(batches, head_step_fraction,
                                                              progress=progress), "head"),
        "layers": lambda: Method("layers", LayerDropper(batches, greedy_layers), "layer"),
        "ffn_neurons": lambda: Method("ffn_neurons", lambda model, target: ffn_neuron_masks(
            model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True), target), "neuron", K=1),
        "fisher_mask": lambda: Method("fisher_mask", fisher_mask.FisherMaskPruner(
            labelled_batches(tokenizer, importance_split,
                              fisher_examples or importance.FISHER_EXAMPLES, max_length,
                              importance.FISHER_BATCH_SIZE, seed),
            **(fisher_options or {})), "head+neuron"),
        "cofi": lambda: Method("cofi", CoFiPruner(tokenizer, progress=progress, **cofi),
                               "head+neuron+sublayer"),
    }
    if "cofi" in names and not cofi:
        raise ValueError("the method 'cofi' trains: pass cofi={'dataset', 'train_config', "
                         "'examples_for', ...}")
    options = {"importance_examples": importance_examples,
               "head_step_fraction": head_step_fraction, "gradual_steps": gradual_steps,
               "greedy_layers": greedy_layers, "max_length": max_length,
               "batch_size": batch_size, "seed": seed, "progress": progress,
               "fisher_examples": fisher_examples, "fisher_options": fisher_options}
    methods = {}
    for name in names:
        methods[name] = factories[name]()
        methods[name].recipe = {"names": [name], "tokenizer": tokenizer,
                                "importance_split": importance_split, **options,
                                "cofi": cofi if name == "cofi" else None}
    return methods


def method_records(methods):
    """What the data-driven methods decided, for the run record: the head pruning order and
    importance steps, the layer order and loss increases, the Fisher search ({name: {...}})."""
    records = {}
    for name, method in methods.items():
        fn = method.masks_fn
        if method.decisions is not None:
            records[name] = method.decisions
        elif isinstance(fn, HeadImportancePruner):
            records[name] = {"order": [list(k) for k in fn.order], "steps": fn.history}
        elif isinstance(fn, LayerDropper):
            records[name] = {"order": fn.order, "loss_increases": fn.increases}
        elif hasattr(fn, "record"):
            records[name] = fn.record()
    return records


def run_baselines(model, tokenizer, dataset, methods, targets, retrain_config,
                  retrain_examples, csv_path=None, save_root=None, seed=42, resume=False,
                  progress=True, distill_alpha=0.5, temperature=2.0, eval_split="test",
                  train_budget=None, isolate=False, chained=False):
    """`mask_sweep` of every `Method` in `methods` ({name: Method}) over `targets`, all with
    the same recovery sample (with `train_budget`, {target: examples}: the same pool and
    budgets, see `mask_sweep`), teacher logits (the dense start model's) and dense reference
    predictions; the CSV at `csv_path` is rewritten after each method, so a crash loses at most
    one method. With `resume`, methods already in that CSV are not run again. Returns the rows
    of all methods.

    chained: every method that prunes the weights it is given in one shot runs as one chain
    through the targets (`mask_sweep(chained=True)`: each target pruned from the previous one's
    recovered model, recovering on what the budget adds); CoFi, which trains its masks from dense
    per target, and gradual methods run per target as before.

    isolate: run each method's sweep in a fresh process (rebuilt from its `recipe`), so the
    memory TensorFlow keeps after every fine-tune (~280 MB, results/exploratory/
    recovery_memory.json) is returned when the method ends; what it decided comes back as
    `method.decisions`.
    """
    frames, done = [], set()
    if resume and csv_path is not None and Path(csv_path).exists():
        previous = pd.read_csv(csv_path)
        previous = previous[previous.method.isin(list(methods))]
        frames.append(previous)
        done = set(previous.method)
        log.info(f"resuming: {sorted(done)} already in {csv_path}")
    todo = [name for name in methods if name not in done]
    if not todo:
        return pd.concat(frames, ignore_index=True)
    max_length = retrain_config.max_length
    recovery = sweep.recovery_data(dataset, tokenizer, model if distill_alpha > 0 else None,
                                   None if train_budget else retrain_examples, seed, max_length)
    reference = train.evaluate(model, tokenizer, dataset[eval_split], max_length=max_length,
                               return_predictions=True)["predictions"]
    shared = {"tokenizer": tokenizer, "dataset": dataset, "targets": targets,
              "retrain_config": retrain_config, "retrain_examples": retrain_examples,
              "seed": seed, "eval_split": eval_split, "progress": progress,
              "distill_alpha": distill_alpha, "temperature": temperature,
              "recovery": recovery, "reference_predictions": reference,
              "train_budget": train_budget}
    with contextlib.ExitStack() as stack:
        if isolate:   # the children start from the same weights, read from disk
            start_dir = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "start"
            saved.save(model, start_dir)
        for name in todo:
            method = methods[name]
            started = time.perf_counter()
            args = {**shared, "method": name, "gradual_steps": method.gradual_steps,
                    "chained": chained and sweep.can_chain(method.masks_fn,
                                                           method.gradual_steps),
                    "mode": method.mode, "K": method.K,
                    "save_dir": None if save_root is None else Path(save_root) / name}
            if isolate:
                frame, method.decisions = _sweep_in_process(start_dir, method, args)
            else:
                frame = mask_sweep(model, masks_fn=method.masks_fn, **args)
            frames.append(frame)
            log.info(f"{name}: {len(frame)} rows in {time.perf_counter() - started:.0f} s")
            if csv_path is not None:
                sweep.write_sweep_csv(pd.concat(frames, ignore_index=True), csv_path)
    return pd.concat(frames, ignore_index=True)


def _sweep_in_process(start_dir, method, args):
    """mask_sweep(**args) of `method` in a spawned process (a fresh TensorFlow): its rows and
    decisions."""
    if method.recipe is None:
        raise ValueError(f"method {method.name!r} has no recipe to rebuild it in another "
                         "process: make it with make_methods, or run without isolate")
    try:
        result = run_in_fresh_process(_sweep_child, {"start_dir": str(start_dir),
                                                     "recipe": method.recipe, "args": args},
                                      name=f"the {method.name} sweep")
    except RuntimeError as error:
        raise RuntimeError(f"{error}; the methods before it are saved: rerun with "
                           "resume=True") from None
    return result["frame"], result["decisions"]


def _sweep_child(start_dir, recipe, args):
    """The child's side of `_sweep_in_process`: rebuild the method, sweep, return the rows."""
    model = saved.load_model(start_dir)
    name = recipe["names"][0]
    method = make_methods(**recipe)[name]
    frame = mask_sweep(model, masks_fn=method.masks_fn, **args)
    return {"frame": frame, "decisions": method_records({name: method}).get(name)}


BUDGET_STARTS = ("block", "penalty in the loss", "ffn_neurons", "magnitude_global")


def budget_start(method, target, block_dir, baseline_dir, penalty_dir=None, penalty=None):
    """A pruned start point at `target` for notebook 11's recovery-budget study: the block run's
    snapshot (`block_dir`/snapshots), Algorithm 1's threshold on notebook 09's penalty-in-the-
    loss model (`penalty_dir`/model; `penalty`: its PruningConfig record, for num_blocks and
    mode), or the dense
    model in `baseline_dir` pruned one-shot by FFN-neuron or global magnitude masks."""
    if method not in BUDGET_STARTS:
        raise ValueError(f"method {method!r}: choose among {BUDGET_STARTS}")
    if method == "block":
        return saved.load_model(Path(block_dir) / "snapshots" / sweep.sparsity_dir_name(target))
    if method == "penalty in the loss":
        if penalty is None or penalty_dir is None:
            raise ValueError("the penalty-in-the-loss start needs `penalty_dir` (notebook 09's "
                             "PENALTY_DIR) and `penalty`, the PruningConfig record of its run")
        model = saved.load_model(Path(penalty_dir) / "model")
        masks, _ = pruning.threshold_masks(model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True), penalty["num_blocks"],
                                           penalty["mode"], target_sparsity=target)
    else:
        model = saved.load_model(baseline_dir)
        kernels = model_lib.prunable_kernels(model, include_pooler=False, as_numpy=True)
        masks = (ffn_neuron_masks(kernels, target) if method == "ffn_neurons"
                 else magnitude_masks(kernels, target, "global"))
    pruning.apply_masks(model, masks)
    return model


def budget_row(method, target, block_dir, baseline_dir, tokenizer, dataset, sample, logits,
               retrain_config, distill_alpha, temperature, reference_predictions, seed=42,
               penalty_dir=None, penalty=None, hidden_alpha=0.0):
    """One recovered point of the recovery-budget study: `budget_start`, the recovery every
    pruned point gets (`sweep.recover` on `sample`, distilled from the dense model's `logits`
    on it, and with hidden_alpha > 0 from its hidden states), then `sweep.scored_row`, with
    recovery_examples and seconds. Picklable in and out, for `isolation.run_in_fresh_process`:
    each point in its own process keeps the study's memory that of one fine-tune."""
    started = time.perf_counter()
    model = budget_start(method, target, block_dir, baseline_dir, penalty_dir, penalty)
    teacher = saved.load_model(baseline_dir) if hidden_alpha > 0 else None
    sweep.recover(model, tokenizer, sample, retrain_config, logits, distill_alpha, temperature,
                  teacher=teacher, hidden_alpha=hidden_alpha)
    row = sweep.scored_row(model, tokenizer, dataset, {"method": method}, target, True,
                           reference_predictions=reference_predictions, seed=seed)
    return {**row, "recovery_examples": len(sample["train"]),
            "seconds": time.perf_counter() - started}


# ------------------------------------------------------------------ replicates (notebook 12)

def block_replicate(seed, baseline_dir, tokenizer, dataset, settings, recovery, work_dir,
                    reference_predictions, recovered_from=0.5):
    """Notebook 03's block-pruning run (its recorded `settings`, the progressive.json ones)
    and notebook 04's recovery (`recovery`, thresholding.json's "retrain") with `seed` for
    everything the two draw, each in a fresh process. Recovers the snapshots at or above
    `recovered_from`. Returns the rows as notebook 04's (recovered and as saved) with seed,
    and the run's record (reached, train_seconds, prox_seconds: what
    `utils.face.replicates.with_block_cost` reads). Kept in work_dir: a finished seed is read
    back, not run again."""
    work_dir = Path(work_dir)
    rows_path, record_path = work_dir / "rows.csv", work_dir / "progressive.json"
    wanted = {"settings": settings, "seed": seed, "recovery": recovery}
    if rows_path.exists() and record_path.exists() and \
            {k: io.read_json(record_path).get(k) for k in wanted} == wanted:
        return pd.read_csv(rows_path), io.read_json(record_path)
    train_config = train.TrainConfig(**{**settings["train"], "seed": seed})
    run = run_in_fresh_process(units.progressive_prune_saved, dict(
        model_dir=baseline_dir, tokenizer=tokenizer, dataset=dataset, targets=settings["targets"],
        train_config=train_config, save_dir=work_dir / "snapshots",
        distill_alpha=settings["distill_alpha"], temperature=settings["temperature"],
        prune_fraction=settings["prune_fraction"], every=settings["every"],
        selection=settings.get("selection", "rms"), fisher_examples=settings.get("fisher_examples")),
        name=f"block pruning, seed {seed}")
    snapshots = {t: work_dir / "snapshots" / sweep.sparsity_dir_name(t)
                 for t in settings["targets"] if t >= recovered_from - 1e-9}
    retrain_config = train.TrainConfig(learning_rate=recovery["learning_rate"],
                                       epochs=recovery["epochs"], max_length=train_config.max_length,
                                       patience=recovery["epochs"], seed=seed)
    rows = run_in_fresh_process(sweep.snapshot_sweep_saved, dict(
        teacher_dir=baseline_dir, snapshot_dirs=snapshots, tokenizer=tokenizer, dataset=dataset,
        retrain_config=retrain_config, retrain_examples=recovery["examples"], method="block",
        seed=seed, distill_alpha=recovery["distill_alpha"], temperature=recovery["temperature"],
        reference_predictions=reference_predictions, progress=False),
        name=f"block pruning's recovery, seed {seed}")
    run_record = {"reached": run["reached"], "train_seconds": run["state"]["train_seconds"],
                  "prox_seconds": run["prox_seconds"]}
    rows = rows.assign(seed=seed)
    io.write_json(record_path, {**wanted, **run_record})
    sweep.write_sweep_csv(rows, rows_path)
    return rows, {**wanted, **run_record}


def method_replicates(seed, model, tokenizer, dataset, names, comparison_record, csv_path,
                      save_root):
    """Notebook 07's sweep of the methods `names` with `seed` (its settings from
    `comparison_record`, results/baselines.json: targets, recovery, equal training budget,
    chaining, Fisher options), each method in a fresh process; methods already in `csv_path`
    are kept (a crash loses at most one). Rows with seed."""
    recovery = comparison_record["retrain"]
    retrain_config = train.TrainConfig(learning_rate=recovery["learning_rate"],
                                       epochs=recovery["epochs"], max_length=64,
                                       patience=recovery["epochs"], seed=seed)
    methods = make_methods(
        list(names), tokenizer, dataset["train"],
        importance_examples=comparison_record["importance_examples"],
        head_step_fraction=comparison_record["head_step_fraction"],
        gradual_steps=comparison_record["gradual_steps"], seed=seed,
        fisher_examples=comparison_record["fisher_examples"],
        fisher_options=comparison_record["fisher_options"])
    budget = {float(t): int(n) for t, n in comparison_record["train_budget"].items()}
    frame = run_baselines(
        model, tokenizer, dataset, methods, comparison_record["targets"], retrain_config,
        recovery["examples"], csv_path=csv_path, save_root=save_root, seed=seed, resume=True,
        progress=False, distill_alpha=recovery["distill_alpha"],
        temperature=recovery["temperature"], train_budget=budget, isolate=True,
        chained=comparison_record["chained"])
    return frame.assign(seed=seed)
