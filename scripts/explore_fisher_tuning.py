"""Do the reference's mask rearrangement and least-squares mask tuning help `fisher_mask`? (issue 13)

    .venv/bin/python scripts/explore_fisher_tuning.py [--targets 0.5 0.7 0.9]

Kwon et al.'s pipeline ends with mask rearrangement (`fisher_mask.greedy_rearrange`) and
least-squares mask tuning (`fisher_mask.least_squares_mask_tuning`), meant for a model that is
never retrained. For each target this runs the Fisher mask search as notebook 07 does (2,048
stratified training tweets of seed 42, batches of 32, on the dense model of `make run`), plain,
tuned, rearranged, and rearranged then tuned (the reference's order; all on the same tweets),
and records validation macro-F1 before any recovery. Writes results/exploratory/fisher_tuning.json.
Validation only: no test score is computed.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    args = parser.parse_args()
    baseline = Path(args.checkpoints) / "baseline/best"
    if not (baseline / "model_spec.json").exists():
        print(f"error: {baseline} holds no model; run `make run` first", file=sys.stderr)
        return 2
    from utils.pruning import units
    from utils.pruning import importance
    from utils.data import corpus as data
    from utils.pruning import fisher_mask
    from utils.common import io
    from utils.encoder import hub
    from utils.pruning import block as pruning
    from utils import saved
    from utils.training import train
    started = time.perf_counter()
    dataset = data.load_splits(ROOT / "data")
    tokenizer = hub.load_tokenizer(hub.DEFAULT_MODEL)
    model = saved.load_model(baseline)
    dense = model.get_weights()
    batches = importance.labelled_batches(tokenizer, dataset["train"], importance.FISHER_EXAMPLES,
                                          64, importance.FISHER_BATCH_SIZE, seed=42)
    rows = []
    for rearrange, tune in ((False, False), (False, True), (True, False), (True, True)):
        pruner = fisher_mask.FisherMaskPruner(batches, tune=tune, rearrange=rearrange)
        for target in args.targets:
            began = time.perf_counter()
            masks = pruner(model, target)
            seconds = time.perf_counter() - began
            pruning.apply_masks(model, masks)
            score = train.evaluate(model, tokenizer, dataset["validation"], max_length=64)
            rows.append({"target": target, "rearranged": rearrange, "tuned": tune, "val_macro_f1": score["macro_f1"],
                         "sparsity": units.masks_sparsity(masks), "seconds": seconds,
                         "scales": pruner.chosen[float(target)].get("tuned")})
            print({k: v for k, v in rows[-1].items() if k != "scales"}, flush=True)
            model.set_weights(dense)
    io.write_json(ROOT / "results/exploratory/fisher_tuning.json", {
        "command": "python scripts/explore_fisher_tuning.py", "git_commit": io.git_commit(),
        "fisher_examples": importance.FISHER_EXAMPLES, "rows": rows,
        "seconds": time.perf_counter() - started})
    print(f"wrote results/exploratory/fisher_tuning.json in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
