"""Block pruning to latency targets instead of sparsity targets (issue 14), on validation.

    .venv/bin/python scripts/explore_latency_targets.py [--checkpoints DIR] [--targets 0.8 0.6 ...]

At equal sparsity, dropping whole layers runs faster than narrowing them: a sublayer also costs a
fixed part (softmax, reshapes, kernel launches) that narrower matrices keep. This measures this
machine's latency table (`utils.measurement.latency`, cached in checkpoints/latency_table.json), then runs
notebook 03's progressive run with the settings recorded in results/block_pruning.json, except
that each period keeps the units of greatest Fisher information whose *predicted batch-1 latency*
fits target x dense (`progressive_prune(cost_table=...)`), and gives every snapshot notebook 04's
recovery. Then it compacts and times, round-robin in one process, the dense model, these
snapshots and notebook 04's sparsity-targeted ones (checkpoints/pruned), and writes
results/exploratory/latency_targets.json: per point, the predicted and measured speedups and the
validation macro-F1 (the sweep rows also carry test scores, not used for any decision). Run it
with nothing else on the machine: it times models.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints"),
                        help="the checkpoints of `make run` (baseline/best and pruned/ are read)")
    parser.add_argument("--targets", nargs="+", type=float, default=[0.8, 0.65, 0.5, 0.4],
                        help="shares of the dense model's predicted batch-1 latency")
    parser.add_argument("--examples", type=int, default=200, help="test tweets timed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "results/exploratory"),
                        help="where latency_targets.json and its sweep CSV go")
    args = parser.parse_args()
    checkpoints = Path(args.checkpoints)
    needed = [checkpoints / "baseline/best/model_spec.json", checkpoints / "pruned",
              ROOT / "results/block_pruning.json", ROOT / "results/sparsity_sweep.csv"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        print(f"error: missing {', '.join(missing)}; run `make run` first", file=sys.stderr)
        return 2
    if not all(0 < t < 1 for t in args.targets):
        print(f"error: --targets {args.targets}: give shares of the dense latency in (0, 1)",
              file=sys.stderr)
        return 2
    import pandas as pd
    from utils.data import corpus as data
    from utils.common import io
    from utils.measurement import latency
    from utils.encoder import hub
    from utils import saved
    from utils.pruning import sweep
    from utils.training import train
    from utils.pruning import units
    started = time.perf_counter()
    settings = io.read_json(ROOT / "results/block_pruning.json")["settings"]
    out = Path(args.out)
    work = checkpoints / "explore_latency_targets"
    dataset = data.load_splits(ROOT / "data")
    tokenizer = hub.load_tokenizer(hub.DEFAULT_MODEL)
    dense = saved.load_model(checkpoints / "baseline/best")
    config = train.TrainConfig(**settings["train"])
    texts = dataset["test"]["text"][:args.examples]
    table = latency.cached_table(checkpoints / "latency_table.json", dense.encoder_config,
                                 tokenizer, texts, config.max_length, rounds=args.rounds)
    print(f"latency table: {table}", flush=True)
    teacher = train.predict_texts(dense, tokenizer, dataset["train"]["text"],
                                  max_length=config.max_length)
    model = saved.load_model(checkpoints / "baseline/best")
    pruner, state = units.progressive_prune(
        model, tokenizer, dataset, args.targets, config, work / "snapshots",
        teacher_logits=teacher, distill_alpha=settings["distill_alpha"],
        temperature=settings["temperature"], prune_fraction=settings["prune_fraction"],
        every=settings["every"], selection="fisher",
        fisher_examples=settings.get("fisher_examples"), cost_table=table)
    print(f"pruning run {state['train_seconds']:.0f} s; reached {pruner.reached}", flush=True)
    retrain = train.TrainConfig(learning_rate=1e-4, epochs=1, max_length=config.max_length,
                                patience=1, seed=config.seed)
    snapshots = {t: work / "snapshots" / units.cost_dir_name(t) for t in args.targets}
    frame = sweep.snapshot_sweep(snapshots, tokenizer, dataset, retrain, retrain_examples=4000,
                                 method="block (latency targets)", seed=config.seed,
                                 save_dir=work / "recovered", teacher=dense,
                                 distill_alpha=settings["distill_alpha"],
                                 temperature=settings["temperature"])
    sweep.write_sweep_csv(frame, out / "latency_targets_sweep.csv")
    # both runs' recovered models, timed together with the dense model
    recovered = {f"latency {t:g}": work / "recovered" / sweep.sparsity_dir_name(t)
                 for t in args.targets}
    sparsity_dirs = {f"sparsity {p.name}": p for p in sorted((checkpoints / "pruned").glob("sparsity_*"))}
    checked = latency.prediction_check(table, {"dense": checkpoints / "baseline/best",
                                               **recovered, **sparsity_dirs},
                                       tokenizer, texts, config.max_length, rounds=args.rounds)
    measured = {r["model"]: r for r in checked}
    dense_ms = measured["dense"]["latency_ms_measured"]
    dense_batched = measured["dense"]["ms_per_example_batched_measured"]
    sparsity_rows = pd.read_csv(ROOT / "results/sparsity_sweep.csv")
    sparsity_rows = sparsity_rows[(sparsity_rows.method == "block") & sparsity_rows.final.astype(bool)]
    points = []
    for name, row in measured.items():
        if name == "dense":
            continue
        if name.startswith("latency"):
            target = float(name.split()[1])
            at = frame[(frame.target_sparsity.round(4) == round(target, 4)) & frame.final.astype(bool)]
        else:
            target = int(name.split("_")[-1]) / 100
            at = sparsity_rows[sparsity_rows.target_sparsity.round(4) == round(target, 4)]
        points.append({"run": name.split()[0], "target": target,
                       "val_macro_f1": float(at.val_macro_f1.iloc[0]) if len(at) else None,
                       "speedup_batch1": dense_ms / row["latency_ms_measured"],
                       "speedup_batched": dense_batched / row["ms_per_example_batched_measured"],
                       "predicted_speedup_batch1": measured["dense"]["latency_ms_predicted"]
                       / row["latency_ms_predicted"],
                       "num_heads": row["num_heads"], "intermediate_sizes": row["intermediate_sizes"]})
    print(pd.DataFrame(points).drop(columns=["num_heads", "intermediate_sizes"]).round(3).to_string(),
          flush=True)
    io.write_json(out / "latency_targets.json", {
        "command": "python scripts/explore_latency_targets.py", "git_commit": io.git_commit(),
        "settings": settings, "targets": args.targets, "table": table, "reached": pruner.reached,
        "train_seconds": state["train_seconds"], "points": points, "prediction_check": checked,
        "examples": len(texts), "rounds": args.rounds,
        "seconds": time.perf_counter() - started})
    print(f"wrote {out / 'latency_targets.json'} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
