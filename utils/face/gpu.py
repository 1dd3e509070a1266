"""The main job's training notebooks on a GPU through Keras' PyTorch or JAX backend, and the
record of that run, results/gpu.json:

    KERAS_BACKEND=torch python -m utils.face.gpu            # make gpu BACKEND=torch
    KERAS_BACKEND=jax python -m utils.face.gpu --smoke --root SMOKE_DIR   # a scratch directory

Runs notebooks 01-04 (data, dense fine-tune, block pruning, thresholding with recovery) as
the pipeline `gpu` in the GPU profile (`utils.face.pipeline`: its budgets, mixed precision
chosen for the GPU, XLA where the backend compiles) under a root of its own (default
checkpoints/gpu), so the CPU run's models and results stay as they are. Then writes
{"device", "backend", "precision", "steps" (wall time per notebook), "wall_seconds",
"fine_tune" (step time and throughput of the dense fine-tune), "accuracy" (the dense model's
test accuracy and macro-F1 on this run beside the CPU run's results/baseline.json)} to
results/gpu.json (`--out`). Needs no TensorFlow: the benchmark (TFLite) and the demo are not
part of it (README, "On a GPU").
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from utils.common import cli, io

TRAINING_STEPS = ("01_data_prep", "02_baseline_finetune", "03_block_pruning", "04_thresholding")
BACKENDS = ("torch", "jax")


def training_steps():
    from utils.face import pipeline
    return tuple(step for step in pipeline.STEPS["run"] if step.name in TRAINING_STEPS)


def fine_tune_speed(baseline):
    """Mean seconds per optimizer step and training examples per second of the dense
    fine-tune, from notebook 02's record (steps per epoch: examples / batch size, rounded up;
    the length buckets can add a few partial batches)."""
    history = baseline.get("history") or []
    if not history:
        return None
    examples = baseline["split_sizes"]["train"]
    steps = math.ceil(examples / baseline["train_config"]["batch_size"])
    seconds = [epoch["train_seconds"] for epoch in history]
    return {"epochs": len(history), "steps_per_epoch": steps,
            "mean_step_seconds": sum(seconds) / (steps * len(seconds)),
            "train_examples_per_s": sum(e["train_examples_per_s"] for e in history) / len(history),
            "train_seconds": baseline["train_seconds"]}


def accuracy(baseline):
    if baseline is None:
        return None
    return {"test_accuracy": baseline["test"]["accuracy"],
            "test_macro_f1": baseline["test"]["macro_f1"], "smoke": baseline.get("smoke"),
            "model": baseline.get("model")}


def gpu_record(run, baseline, cpu_baseline, device, backend, backend_version, precision):
    """results/gpu.json's record from the pipeline record `run`, this run's baseline.json and
    the CPU run's."""
    return {"device": device, "backend": backend, "backend_version": backend_version,
            "precision": precision, "smoke": run["smoke"], "profile": run["profile"],
            "commit": run["commit"], "started": run["started"],
            "steps": [{"name": s["name"], "seconds": s["seconds"], "max_rss_mb": s["max_rss_mb"]}
                      for s in run["steps"]],
            "wall_seconds": run["total_seconds"],
            "fine_tune": fine_tune_speed(baseline),
            "accuracy": {"this_run": accuracy(baseline), "cpu_run": accuracy(cpu_baseline)}}


def main(argv=None):
    parser = cli.argument_parser("utils.face.gpu", __doc__)
    parser.add_argument("--smoke", action="store_true", help="SMOKE=True (tiny random encoder)")
    parser.add_argument("--root", default=str(io.REPO_ROOT / "checkpoints" / "gpu"),
                        help="where the run's data, checkpoints and results go")
    parser.add_argument("--out", default=str(io.REPO_ROOT / "results" / "gpu.json"),
                        help="the record (default results/gpu.json)")
    parser.add_argument("--restart", action="store_true", help="forget finished steps")
    parser.add_argument("--profile", choices=("gpu", "cpu"), default="gpu",
                        help="cpu: the CPU budgets (to try the recipe on a machine without GPU)")
    args = parser.parse_args(argv)
    backend = os.environ.get("KERAS_BACKEND", "")
    if backend not in BACKENDS:
        print(f"error: KERAS_BACKEND={backend!r}: set it to torch or jax (make gpu BACKEND=torch)",
              file=sys.stderr)
        return 2
    from utils.face import pipeline
    try:
        run = pipeline.run_pipeline("gpu", args.root, smoke=args.smoke, restart=args.restart,
                                    steps=training_steps(), profile=args.profile)
    except pipeline.PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.profile == "gpu":
        os.environ.update(pipeline.GPU_ENVIRONMENT)   # the precision the notebooks ran with
    from utils.training import backend as backend_lib  # Keras: after the arguments
    from utils.training import train
    precision = train.set_precision(os.environ.get("UTILS_PRECISION", "float32"))
    results = Path(args.root, "results")
    cpu = io.REPO_ROOT / "results" / "baseline.json"
    record = gpu_record(run, io.read_json(results / "baseline.json"),
                        io.read_json(cpu) if cpu.exists() else None,
                        backend_lib.device_description(), backend_lib.name(),
                        backend_lib.version(), precision)
    io.write_json(args.out, record)
    print(f"wrote {args.out}: {record['device']}, {backend} {precision}, "
          f"{record['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
