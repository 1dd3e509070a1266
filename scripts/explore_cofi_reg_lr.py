"""Does CoFi's Lagrangian reach its target within this comparison's budget? (issue 13)

    .venv/bin/python scripts/explore_cofi_reg_lr.py [--target 0.5] [--rates 0.01 0.1 0.5]

Notebook 07 ran CoFi with its repository's reg_learning_rate 0.01, meant for ~40k steps; here
it gets 182-547 steps, and its expected sparsity ended at 0.13 / 0.27 / 0.51 for targets
0.5 / 0.7 / 0.9 (the rest was forced). For each rate this runs `cofi.cofi_prune` as notebook 07
does (block pruning's training settings and pruning budget at the target, distilled from the
dense model) and records the expected sparsity it reached, how many units the fold had to
force, and validation macro-F1 before any recovery. Writes
results/exploratory/cofi_reg_lr.json. Validation only: no test score is computed.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.1, 0.5])
    args = parser.parse_args()
    needed = [ROOT / "checkpoints/baseline/best/model_spec.json", ROOT / "results/block_pruning.json",
              ROOT / "results/baselines.json"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        print(f"error: missing {', '.join(missing)}; run `make run` and `make study` first",
              file=sys.stderr)
        return 2
    from utils.pruning import cofi
    from utils.data import corpus as data
    from utils.common import io
    from utils.encoder import hub
    from utils import saved
    from utils.training import train
    settings = io.read_json(ROOT / "results/block_pruning.json")["settings"]
    budget = io.read_json(ROOT / "results/baselines.json")["cofi"]["pruning_examples"]
    examples = budget.get(str(args.target))
    if examples is None:
        print(f"error: --target {args.target}: notebook 07 recorded budgets for "
              f"{sorted(budget)}", file=sys.stderr)
        return 2
    train_config = train.TrainConfig(**settings["train"])
    tokenizer = hub.load_tokenizer(hub.DEFAULT_MODEL)
    dataset = data.load_splits(ROOT / "data")
    dense = saved.load_model(ROOT / "checkpoints/baseline/best")
    start = dense.get_weights()
    teacher = train.predict_texts(dense, tokenizer, dataset["train"]["text"], max_length=64)
    runs = []
    for rate in args.rates:
        dense.set_weights(start)
        started = time.perf_counter()
        record = cofi.cofi_prune(dense, tokenizer, dataset, args.target, train_config, examples,
                                 teacher_logits=teacher, distill_alpha=settings["distill_alpha"],
                                 temperature=settings["temperature"], reg_learning_rate=rate)
        val = train.evaluate(dense, tokenizer, dataset["validation"], max_length=64)
        runs.append({"reg_learning_rate": rate, "steps": record["steps"],
                     "expected_sparsity_at_end": record["expected_sparsity_at_end"],
                     "forced_units": record["forced_units"],
                     "gates_removed_units": record["gates_removed_units"],
                     "sparsity_encoder_linear": record["sparsity_encoder_linear"],
                     "val_macro_f1_before_recovery": val["macro_f1"],
                     "seconds": time.perf_counter() - started,
                     "history": record["history"]})
        print(f"reg lr {rate}: expected sparsity {record['expected_sparsity_at_end']:.3f} "
              f"(target {args.target}), forced units {record['forced_units']}, validation "
              f"macro-F1 before recovery {val['macro_f1']:.4f}", flush=True)
    out = ROOT / "results/exploratory/cofi_reg_lr.json"
    io.write_json(out, {"target": args.target, "pruning_examples": examples,
                        "git_commit": io.git_commit(), "runs": runs})
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
