"""How much resident memory each recovery fine-tune leaves behind in one process (issue 11:
notebook 07 runs ~27 trainings in one kernel and peaked at 10.2 GB).

    .venv/bin/python scripts/recovery_memory.py [--repeats 6] [--examples 128]

Repeats `sweep.recover` (the recovery every pruned point of notebooks 04 and 07 gets) on the
dense baseline of `make run`, each time with other masks, and records the process's resident
memory after each, with and without `gc.collect()` + `keras.backend.clear_session()` between
runs, in separate processes. Writes results/exploratory/recovery_memory.json.
"""
import argparse
import gc
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(mode, repeats, examples):
    import keras
    import numpy as np
    import psutil
    from utils.data import corpus as data
    from utils.encoder import hub
    from utils.encoder import model as model_lib
    from utils.pruning import block as pruning
    from utils import saved
    from utils.common import sizes
    from utils.pruning import sweep
    from utils.training import train
    tokenizer = hub.load_tokenizer(hub.DEFAULT_MODEL)
    dataset = data.subsample(data.load_splits(ROOT / "data"),
                             {"train": 2000, "validation": 200, "test": 200}, seed=0)
    model = saved.load_model(ROOT / "checkpoints" / "baseline" / "best")
    start_weights = model.get_weights()
    recovery = sweep.recovery_data(dataset, tokenizer, model, examples, 0, 64)
    config = train.TrainConfig(learning_rate=1e-4, epochs=1, max_length=64, patience=1)
    process = psutil.Process()
    rss = [sizes.mebibytes(process.memory_info().rss)]
    for i in range(repeats):
        model.set_weights(start_weights)
        kernels = model_lib.prunable_kernels(model, include_pooler=False)
        name = next(iter(kernels))
        mask = np.ones(kernels[name].shape, np.float32)
        mask[:, :10 * (i + 1)] = 0.0
        pruning.apply_masks(model, {name: mask})
        sweep.recover(model, tokenizer, recovery[0], config, recovery[1])
        gc.collect()
        if mode == "clear_session":
            keras.backend.clear_session()
            gc.collect()
        rss.append(sizes.mebibytes(process.memory_info().rss))
    return rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--mode", choices=["gc", "clear_session"])
    args = parser.parse_args()
    if args.mode:   # the child: one measurement, printed as JSON
        print("RSS" + json.dumps(measure(args.mode, args.repeats, args.examples)))
        return 0
    if not (ROOT / "checkpoints" / "baseline" / "best" / "model_spec.json").exists():
        print("error: checkpoints/baseline/best holds no model; run `make run` first",
              file=sys.stderr)
        return 2
    result = {"repeats": args.repeats, "recovery_examples": args.examples, "modes": {}}
    for mode in ("gc", "clear_session"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--repeats",
                              str(args.repeats), "--examples", str(args.examples)],
                             capture_output=True, text=True, check=True).stdout
        rss = json.loads(next(l for l in out.splitlines() if l.startswith("RSS"))[3:])
        growth = [b - a for a, b in zip(rss[1:], rss[2:])]   # after the first (warm-up) run
        result["modes"][mode] = {"rss_mb": rss, "mb_per_recovery_after_the_first":
                                 sum(growth) / len(growth)}
        print(f"{mode}: RSS {[round(r) for r in rss]} MiB; "   # rss_mb: MiB (2^20 bytes)
              f"{result['modes'][mode]['mb_per_recovery_after_the_first']:.0f} MiB per recovery")
    out_path = ROOT / "results" / "exploratory" / "recovery_memory.json"
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
