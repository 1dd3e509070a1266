"""Threshold sweeps: prune a regularised model at several sparsities, evaluate, retrain, repeat.

Every point becomes one row of results/sparsity_sweep.csv.
"""
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import data as data_lib
from . import io, pruning, train
from . import model as model_lib

SWEEP_COLUMNS = ["method", "K", "mode", "lambda1", "lambda2", "epsilon",
                 "target_sparsity", "sparsity_encoder_linear", "sparsity_total",
                 "fully_removable_heads", "fully_removable_neurons", "accuracy", "macro_f1",
                 "macro_recall", "retrained"]


def metrics_row(model, tokenizer, split, fields, target, retrained, max_length=64,
                include_pooler=False):
    """One sweep row for any pruning method: `fields` (method, K, mode, lambda1, lambda2,
    epsilon; missing ones are NaN), the target, the measured sparsity and removable units
    (`pruning.sparsity_summary`: encoder linear weights) and the metrics on `split`."""
    summary = pruning.sparsity_summary(model, include_pooler)
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
                    seed=42, eval_split="test", progress=True):
    """For each target sparsity: threshold the groups of `model`'s current (regularised)
    weights, evaluate, then (if `retrain_config`) retrain with the masks fixed and evaluate
    again. `model` is restored to its starting weights at the end.

    retrain_examples: retrain on a stratified sample of this many training tweets (the same
    sample for every point), to bound the cost of a long sweep on a CPU.
    save_dir: if given, each retrained model is saved to save_dir/sparsity_XX (save_model).
    Returns a DataFrame with SWEEP_COLUMNS (+ seconds).
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
            train.fine_tune(model, tokenizer, retrain_data, retrain_config, masks=masks,
                            progress=False)
            rows.append(sweep_row(model, tokenizer, dataset[eval_split], pruning_config,
                                  method, epsilon, target, True, max_length))
            if save_dir is not None:
                model_lib.save_model(model, Path(save_dir) / f"sparsity_{round(target * 100):02d}")
        rows[-1]["seconds"] = time.perf_counter() - started
    model.set_weights(start_weights)
    return pd.DataFrame(rows)


def write_sweep_csv(frame, path, append=False):
    """Write (or append to) the sweep CSV atomically, keeping the documented column order."""
    path = Path(path)
    if append and path.exists():
        frame = pd.concat([pd.read_csv(path), frame], ignore_index=True)
    columns = SWEEP_COLUMNS + [c for c in frame.columns if c not in SWEEP_COLUMNS]
    with io.atomic_path(path) as tmp:
        frame[columns].to_csv(tmp, index=False)
    return path


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
