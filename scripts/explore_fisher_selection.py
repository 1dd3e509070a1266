"""Block pruning's units chosen by Fisher information instead of RMS weight (issues 12 and 14).

    .venv/bin/python scripts/explore_fisher_selection.py [--checkpoints DIR]

At equal budgets, `fisher_mask` (Fisher scores of the dense model, one-shot, then recovery)
beats block pruning at 50 / 70 / 90% on validation, and block pruning's 90% snapshot collapses
before recovery (validation macro-F1 48.9). Both remove whole heads and neurons; they differ in
how the units are chosen. This runs notebook 03's progressive run and notebook 04's recovery
with the settings recorded in results/block_pruning.json, changing only `selection="fisher"`
(each period's units by the Fisher information of their masks on 2,048 training tweets,
recomputed on the model at the period's start). Writes results/exploratory/fisher_selection.json
(the run, and validation macro-F1 before and after recovery beside the committed RMS run of
results/sparsity_sweep.csv) and fisher_selection_sweep.csv. The decision uses validation only;
the sweep rows also carry test scores, as notebook 04's do, which are not used here.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints"),
                        help="the checkpoints of `make run` (baseline/best is read)")
    args = parser.parse_args()
    checkpoints = Path(args.checkpoints)
    needed = [checkpoints / "baseline/best/model_spec.json", ROOT / "results/block_pruning.json",
              ROOT / "results/sparsity_sweep.csv"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        print(f"error: missing {', '.join(missing)}; run `make run` first", file=sys.stderr)
        return 2
    import pandas as pd
    from utils.data import corpus as data
    from utils.common import io
    from utils.encoder import hub
    from utils import saved
    from utils.pruning import sweep
    from utils.training import train
    from utils.pruning import units
    started = time.perf_counter()
    settings = io.read_json(ROOT / "results/block_pruning.json")["settings"]
    out = ROOT / "results/exploratory"
    work = checkpoints / "explore_fisher_selection"
    dataset = data.load_splits(ROOT / "data")
    tokenizer = hub.load_tokenizer(hub.DEFAULT_MODEL)
    dense = saved.load_model(checkpoints / "baseline/best")
    config = train.TrainConfig(**settings["train"])
    teacher = train.predict_texts(dense, tokenizer, dataset["train"]["text"],
                                  max_length=config.max_length)
    model = saved.load_model(checkpoints / "baseline/best")
    pruner, state = units.progressive_prune(
        model, tokenizer, dataset, settings["targets"], config, work / "snapshots",
        teacher_logits=teacher, distill_alpha=settings["distill_alpha"],
        temperature=settings["temperature"], prune_fraction=settings["prune_fraction"],
        every=settings["every"], selection="fisher")
    print(f"pruning run {state['train_seconds']:.0f} s; reached {pruner.reached}", flush=True)
    retrain = train.TrainConfig(learning_rate=1e-4, epochs=1, max_length=config.max_length,
                                patience=1, seed=config.seed)
    dirs = {t: work / "snapshots" / sweep.sparsity_dir_name(t) for t in settings["targets"]}
    frame = sweep.snapshot_sweep(dirs, tokenizer, dataset, retrain, retrain_examples=4000,
                                 method="block (Fisher selection)", seed=config.seed,
                                 teacher=dense, distill_alpha=settings["distill_alpha"],
                                 temperature=settings["temperature"])
    sweep.write_sweep_csv(frame, out / "fisher_selection_sweep.csv")
    rms = pd.read_csv(ROOT / "results/sparsity_sweep.csv")
    rms = rms[rms.method == "block"]
    compare = []
    for target in settings["targets"]:
        row = {"target": target}
        for name, rows in (("rms", rms), ("fisher", frame)):
            at = rows[rows.target_sparsity.round(4) == round(target, 4)]
            for final in (False, True):
                value = at[at.retrained == final].val_macro_f1
                row[f"{name}_val_{'after' if final else 'before'}_recovery"] = \
                    float(value.iloc[0]) if len(value) else None
        compare.append(row)
    print(pd.DataFrame(compare).round(4).to_string(), flush=True)
    io.write_json(out / "fisher_selection.json", {
        "command": "python scripts/explore_fisher_selection.py", "git_commit": io.git_commit(),
        "settings": settings, "selection": "fisher", "reached": pruner.reached,
        "train_seconds": state["train_seconds"], "schedule_seconds": pruner.seconds,
        "history": state["history"], "validation_macro_f1": compare,
        "rms_source": "results/sparsity_sweep.csv (method block, make run at "
                      + str(io.read_json(ROOT / "results/block_pruning.json")["git_commit"]) + ")",
        "seconds": time.perf_counter() - started})
    print(f"wrote {out / 'fisher_selection.json'} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
