"""Exploratory: does a longer block-pruning run close the gaps notebook 03/04 leave?

The 1-epoch run of `make run` misses two targets of the block-pruning issue: within 3 points of
dense at >= 70% sparsity, and within 2 validation points of dense before recovery at 50%. This
script repeats notebook 03's block run with EPOCHS epochs, keeping every other setting (same
targets, schedule shape, distillation, seed). It then gives the 50% and 70% snapshots notebook
04's recovery (`sweep.snapshot_sweep`: 4,000 tweets, distilled). It writes validation and test
scores, before and after recovery, to results/exploratory/block_epochs_<EPOCHS>.json.

    .venv/bin/python scripts/explore_block_epochs.py --epochs 2

Needs `make run`'s checkpoints/baseline/best and data/. Nothing here is selected on test: the
scores are reported for a decision that notebook 03's defaults would take on validation.
"""
import argparse
import sys
import time
from pathlib import Path


from utils.data import corpus as data
from utils.common import io
from utils.pruning import sweep
from utils.training import train
from utils.pruning import units
from utils.encoder import hub
from utils import saved

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--recover", type=float, nargs="*", default=[0.5, 0.7])
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="where data/, checkpoints/ and results/ are (default: the repo)")
    parser.add_argument("--train-examples", type=int, default=None,
                        help="train on this many tweets only (a quick check, not a result)")
    args = parser.parse_args(argv)
    root = args.root
    if args.epochs < 1:
        parser.error(f"--epochs {args.epochs}: must be >= 1")
    started = time.perf_counter()
    baseline_dir = root / "checkpoints" / "baseline" / "best"
    if not (baseline_dir / "model_spec.json").exists():
        print(f"error: {baseline_dir} holds no model: run `make run` first", file=sys.stderr)
        return 2
    settings = io.read_json(root / "results" / "block_pruning.json")["settings"]
    recovery = io.read_json(root / "results" / "thresholding.json")["retrain"]
    dataset = data.load_splits(root / "data")
    if args.train_examples:
        dataset = data.subsample(dataset, {"train": args.train_examples, "validation": 200,
                                           "test": 200}, seed=42)
    tokenizer = hub.load_tokenizer(hub.DEFAULT_MODEL)
    model = saved.load_model(baseline_dir)
    config = {**settings["train"], "epochs": args.epochs, "patience": args.epochs}
    train_config = train.TrainConfig(**config)
    teacher = train.predict_texts(model, tokenizer, dataset["train"]["text"],
                                  max_length=train_config.max_length)
    save_dir = root / "checkpoints" / f"block_epochs_{args.epochs}"
    pruner, state = units.progressive_prune(
        model, tokenizer, dataset, settings["targets"], train_config, save_dir,
        teacher_logits=teacher, distill_alpha=settings["distill_alpha"],
        temperature=settings["temperature"], prune_fraction=settings["prune_fraction"],
        every=settings["every"])
    dense = saved.load_model(baseline_dir)
    reference = train.evaluate(dense, tokenizer, dataset["test"], return_predictions=True)
    dense_val = train.evaluate(dense, tokenizer, dataset["validation"])
    recovery_config = train.TrainConfig(learning_rate=recovery["learning_rate"],
                                        epochs=recovery["epochs"], max_length=64,
                                        patience=recovery["epochs"], seed=settings["train"]["seed"])
    rows = sweep.snapshot_sweep(
        {t: save_dir / sweep.sparsity_dir_name(t) for t in args.recover}, tokenizer, dataset,
        recovery_config, recovery["examples"], teacher=dense,
        distill_alpha=recovery["distill_alpha"], temperature=recovery["temperature"],
        reference_predictions=reference["predictions"], progress=False)
    record = {"epochs": args.epochs, "settings": settings, "recovery": recovery,
              "block_train_seconds": state["train_seconds"], "reached": pruner.reached,
              "dense": {"val_macro_f1": dense_val["macro_f1"],
                        "test_macro_f1": reference["macro_f1"]},
              "rows": rows.to_dict("records"), "seconds": time.perf_counter() - started,
              "command": f"scripts/explore_block_epochs.py --epochs {args.epochs}",
              "quick_check": bool(args.train_examples),
              "git_commit": io.git_commit()}
    out = root / "results" / "exploratory" / f"block_epochs_{args.epochs}.json"
    io.write_json(out, record)
    for row in record["rows"]:
        print(f"{row['target_sparsity']:.0%} {'recovered' if row['final'] else 'as saved':9s} "
              f"val {100 * row['val_macro_f1']:.1f} test {100 * row['macro_f1']:.1f}")
    print(f"dense val {100 * dense_val['macro_f1']:.1f} test {100 * reference['macro_f1']:.1f}; "
          f"wrote {out} ({record['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
