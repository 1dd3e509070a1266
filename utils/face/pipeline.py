"""The two pipelines, step by step, with a record of what each step cost.

    python -m utils.face.pipeline run      # the main job (make run): notebooks 01-06, then the report
    python -m utils.face.pipeline study    # the extended studies (make study): 07-12, then the report

Each step runs in its own process (papermill for a notebook), watched for wall time and for
the peak resident memory of its whole process tree (papermill + kernel + any children), and is
recorded in results/pipeline.json under the pipeline's name:

    {"run": {"commit", "started_clean", "machine", "steps": [{"name", "started", "seconds",
             "max_rss_mb", "parameters", ...}], "total_seconds", ...}, "study": {...}}

(max_rss_mb is in MiB, 2^20 bytes; machine is utils.common.machine.machine_facts() of the
machine the record was started on.)

Resumable: the record in progress lives in checkpoints/pipeline/<name>.json and is rewritten
atomically after every step (and copied to results/pipeline.json with "complete": false, so the
report, the last step, can show it), so an interrupted pipeline, started again, skips the steps that
finished and re-runs the one that was cut (which itself resumes from its own training
checkpoints). `--restart` forgets the steps done. `started_clean` says whether checkpoints/ held
nothing when the pipeline began (a run that reuses trained models is not a clean run).

`--smoke` runs every notebook with SMOKE=True (tiny random encoder) and `--root DIR` puts data,
checkpoints, results, figures and executed notebooks under DIR instead of the repository: the
test suite runs both pipelines that way.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from utils.common import cli, io, logs, sizes
from utils.common.machine import machine_facts
from utils.face.results import PIPELINE_RECORD, problems

NOTEBOOKS = io.REPO_ROOT / "notebooks"
PIPELINES = ("run", "study")
RSS_POLL_SECONDS = 0.5

log = logging.getLogger("utils.face.pipeline")   # also under `python -m`


@dataclass(frozen=True)
class Step:
    """A notebook (papermill) or a Python command line (`python_args`, e.g. ("-m", "utils.face.report")).
    `dirs` maps a notebook parameter (or a command option) to a path under the root, passed only
    when the root is not the repository, so the plain run injects no parameters; `smoke` holds
    extra parameters of the SMOKE run, `gpu` those of the GPU profile; `reads`, for a study
    step, the run steps whose models or results it reads (it is out of date once one of them
    has run again: utils.face.report flags it); `tensorflow_only`, why the step is skipped
    under another Keras backend (KERAS_BACKEND=jax or torch; README, "Keras backends")."""
    name: str
    notebook: str = ""
    python_args: tuple = ()
    dirs: dict = field(default_factory=dict)
    smoke: dict = field(default_factory=dict)
    gpu: dict = field(default_factory=dict)
    reads: tuple = ()
    repeat: dict = field(default_factory=dict)   # parameters of a repeated run (--repeat)
    tensorflow_only: str = ""
    clear_outputs: bool = False   # commit the executed notebook without outputs (`tidy_notebook`)


# The GPU profile: budgets a single cloud GPU affords (the CPU defaults are sized for 2 cores),
# mixed precision chosen for the GPU (bfloat16 from compute capability 8.0, else float16 with
# loss scaling) and XLA where Keras finds it pays. Environment of every step:
PROFILES = ("cpu", "gpu")
GPU_ENVIRONMENT = {"UTILS_PRECISION": "auto", "UTILS_JIT_COMPILE": "auto"}


_DATA = {"DATA_DIR": "data"}
_FIGS = {"FIGURES_DIR": "figures", "RESULTS_DIR": "results"}
_BASE = {"BASELINE_DIR": "checkpoints/baseline/best"}
_REPORT = Step("report", python_args=("-m", "utils.face.report"),
               dirs={"--results-dir": "results", "--figures-dir": "figures",
                     "--data-dir": "data", "--out-dir": "report"})

STEPS = {
    "run": (
        Step("01_data_prep", "01_data_prep.ipynb", dirs={**_DATA, "FIGURES_DIR": "figures"}),
        Step("02_baseline_finetune", "02_baseline_finetune.ipynb",
             dirs={**_DATA, **_FIGS, "CHECKPOINT_DIR": "checkpoints/baseline"},
             smoke={"EPOCHS": 1}, gpu={"EPOCHS": 4, "PATIENCE": 1}),
        Step("03_block_pruning", "03_block_pruning.ipynb",
             dirs={**_DATA, **_FIGS, **_BASE, "CHECKPOINT_DIR": "checkpoints/block_pruning"},
             smoke={"EPOCHS": 1},
             gpu={"EPOCHS": 3, "TARGETS": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9]}),
        Step("04_thresholding", "04_thresholding.ipynb",
             dirs={**_DATA, **_FIGS, **_BASE, "BLOCK_DIR": "checkpoints/block_pruning",
                   "PRUNED_DIR": "checkpoints/pruned", "LATENCY_DIR": "checkpoints/block_latency",
                   "PRUNED_LATENCY_DIR": "checkpoints/pruned_latency",
                   "LATENCY_TABLE": "results/latency_table.json"},
             gpu={"RETRAIN_EXAMPLES": None},   # a whole epoch of recovery
             repeat={"LATENCY_TABLE_ANY_MACHINE": True}),
        Step("05_benchmark", "05_benchmark.ipynb",
             dirs={**_DATA, "RESULTS_DIR": "results", **_BASE,
                   "PRUNED_DIR": "checkpoints/pruned",
                   "PRUNED_LATENCY_DIR": "checkpoints/pruned_latency", "WORK_DIR": "checkpoints/bench",
                   "BUNDLE_DIR": "models/tweet-sentiment-int8",
                   "ONNX_BUNDLE_DIR": "models/tweet-sentiment-onnx-int8",
                   "DENSE_BUNDLE_DIR": "models/tweet-sentiment-dense-int8"},
             gpu={"ROUNDS": 3}, tensorflow_only="it exports TFLite models and times them in "
                                               "TensorFlow"),
        Step("06_demo", "06_demo.ipynb", dirs={**_DATA, **_FIGS, "ROOT": "."},
             tensorflow_only="it demonstrates notebook 05's TFLite bundle and models",
             clear_outputs=True),
        _REPORT,
    ),
    "study": (
        Step("07_comparison", "07_comparison.ipynb",
             dirs={**_DATA, **_FIGS, **_BASE, "PRUNED_DIR": "checkpoints/pruned",
                   "PRUNED_LATENCY_DIR": "checkpoints/pruned_latency",
                   "BASELINES_DIR": "checkpoints/baselines"},
             gpu={"IMPORTANCE_EXAMPLES": 2048, "LATENCY_ROUNDS": 5},
             reads=("02_baseline_finetune", "03_block_pruning", "04_thresholding")),
        Step("08_binarization", "08_binarization.ipynb",
             dirs={**_DATA, **_FIGS, **_BASE, "PRUNED_DIR": "checkpoints/bench/compact_vocab",
                   "DENSE_INT8_DIR": "checkpoints/bench/dense_tflite_int8",
                   "PRUNED_INT8_DIR": "checkpoints/bench/compact_vocab_tflite_int8",
                   "CHECKPOINT_DIR": "checkpoints/binarized"},
             gpu={"TRAIN_EXAMPLES": 21869, "EPOCHS": 2},
             reads=("02_baseline_finetune", "05_benchmark")),
        Step("09_lambda_k_sweep", "09_lambda_k_sweep.ipynb",
             dirs={**_DATA, **_FIGS, **_BASE, "BLOCK_DIR": "checkpoints/block_pruning",
                   "PENALTY_DIR": "checkpoints/penalty_in_loss"},
             gpu={"SWEEP_EXAMPLES": 8000, "SWEEP_LAMBDA1": [1e-3, 4e-3, 1.6e-2, 3.2e-2],
                  "SWEEP_K": [1, 2, 4]},
             reads=("02_baseline_finetune", "03_block_pruning")),
        Step("10_block_seed", "10_block_seed.ipynb",
             dirs={**_DATA, **_FIGS, **_BASE, "BLOCK_DIR": "checkpoints/block_pruning",
                   "SEED_DIR": "checkpoints/block_seed"},
             reads=("02_baseline_finetune", "03_block_pruning")),
        Step("11_recovery_budget", "11_recovery_budget.ipynb",
             dirs={**_DATA, **_FIGS, **_BASE, "BLOCK_DIR": "checkpoints/block_pruning",
                   "PENALTY_DIR": "checkpoints/penalty_in_loss"},
             gpu={"BUDGETS": [4000, 12000, None]},
             reads=("02_baseline_finetune", "03_block_pruning")),   # and 09's penalty run
        Step("12_replicates", "12_replicates.ipynb",
             dirs={**_DATA, **_FIGS, **_BASE, "BLOCK_DIR": "checkpoints/block_pruning",
                   "REPLICATES_DIR": "checkpoints/replicates"},
             reads=("02_baseline_finetune", "03_block_pruning", "04_thresholding")),   # and 07's results
        _REPORT,
    ),
}


class PipelineError(RuntimeError):
    pass


# ------------------------------------------------------------------------------ one step

def tree_rss_bytes(process):
    """Resident bytes of `process` and all its descendants (0 for those already gone)."""
    import psutil
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def log_path(name, step_name, root):
    """Where a step's progress log goes (the step's UTILS_LOG_FILE)."""
    return Path(root, "checkpoints", "pipeline", "logs", name, f"{step_name}.log")


def step_environment(step_log, root, step_name=""):
    """What every step's process is told: where its progress log goes, the root its paths are
    shown relative to, that it runs as a pipeline step (a record only the pipeline writes, such
    as the demo's, checks `io.STEP_VARIABLE`), and, for the notebook's kernel, an IPython
    profile that leaves native output (TensorFlow's start-up lines) on the terminal instead of
    in the saved notebook."""
    profile = Path(root, "checkpoints", "pipeline", "ipython")
    config = profile / "profile_default" / "ipython_kernel_config.py"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("# written by utils.face.pipeline: native stderr/stdout stay on the terminal\n"
                      "c.IPKernelApp.capture_fd_output = False\n")
    return {logs.LOG_FILE_VARIABLE: str(step_log), io.ROOT_VARIABLE: str(Path(root).resolve()),
            io.STEP_VARIABLE: step_name, "IPYTHONDIR": str(profile)}


def run_watched(command, cwd=None, env=None, poll=RSS_POLL_SECONDS, log_file=None):
    """Run `command`, polling the peak RSS of its process tree. Returns (returncode, seconds,
    peak bytes). Output goes to this process's stdout/stderr (the user watches progress), and
    so do the lines the step logs to `log_file` (started empty), as they are written."""
    import psutil
    started = time.perf_counter()
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        Path(log_file).write_text("")
    child = subprocess.Popen(command, cwd=cwd, env=env)
    peak = [0]
    done = threading.Event()

    def watch():
        process = psutil.Process(child.pid)
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss_bytes(process))
            done.wait(poll)

    def follow():
        with open(log_file, encoding="utf-8", errors="replace") as lines:
            while True:
                finished = done.is_set()
                for line in lines:
                    sys.stdout.write(line)
                sys.stdout.flush()
                if finished:
                    return
                done.wait(poll)

    threads = [threading.Thread(target=watch, daemon=True)]
    if log_file is not None:
        threads.append(threading.Thread(target=follow, daemon=True))
    for thread in threads:
        thread.start()
    try:
        returncode = child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait()
        raise
    finally:
        done.set()
        for thread in threads:
            thread.join()
    return returncode, time.perf_counter() - started, peak[0]


def step_parameters(step, root, smoke, profile="cpu", repeat=False):
    """Papermill parameters (or CLI arguments) of `step` for a pipeline rooted at `root`;
    `repeat`: with the step's `repeat` ones (a recorded run repeated on another machine)."""
    root = Path(root).resolve()
    parameters = {}
    if root != io.REPO_ROOT:
        parameters.update({k: str(root / v) for k, v in step.dirs.items()})
    if profile == "gpu" and step.notebook:
        parameters.update(step.gpu)
    if smoke and step.notebook:
        parameters.update({"SMOKE": True, **step.smoke})
    if repeat and step.notebook:
        parameters.update(step.repeat)
    return parameters


def step_notebook(step, root):
    """Where `step`'s executed notebook is written: over its source in the repository's own
    run, else under root/notebooks."""
    source = NOTEBOOKS / step.notebook
    return source if Path(root).resolve() == io.REPO_ROOT else Path(root, "notebooks",
                                                                    step.notebook)


# What JupyterLab writes for the kernel every notebook names: a notebook committed with
# another display name is rewritten (and shows in `git status`) as soon as it is opened there.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def tidy_notebook(path, clear_outputs=False):
    """Make an executed notebook read the same on any machine and stay unchanged when opened:
    papermill's input and output paths relative to the repository (they are absolute paths of
    the machine that ran it), the kernelspec JupyterLab would write, widget state dropped
    (a saved widget shows as raw `VBox(...)` text until its cell runs again), streams cleaned
    (`clean_streams`: no stderr, progress bars in their last state), and the file in
    nbformat's own layout (trailing newline included), as Jupyter saves it. `clear_outputs`:
    no outputs at all (the live demo: a presenter opens it clean, its record is in
    results/demo.json)."""
    path = Path(path)
    notebook = json.loads(path.read_text(encoding="utf-8"))
    metadata = notebook.setdefault("metadata", {})
    metadata["kernelspec"] = dict(KERNELSPEC)
    metadata.pop("widgets", None)
    run = metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if run.get(key):
            run[key] = io.shown(run[key])
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"] = clean_streams(cell.get("outputs", []))
        if clear_outputs:
            cell["outputs"], cell["execution_count"] = [], None
            cell.get("metadata", {}).pop("papermill", None)
            cell.get("metadata", {}).pop("execution", None)
        else:
            cell["outputs"] = [o for o in cell.get("outputs", []) if WIDGET_VIEW
                               not in o.get("data", {})]
    if clear_outputs:
        metadata.pop("papermill", None)
    io.write_text(path, json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False)
                  + "\n")
    return path


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


KERAS_BAR = "━"


def clean_streams(outputs):
    """A cell's outputs without stderr streams (native start-up lines and progress, which the
    pipeline sends to the terminal and the step's log; runs from before it saved them here) and
    with consecutive stdout streams joined and carriage returns rendered, each line as a
    terminal leaves it, then Keras' progress-bar lines dropped: a bar is progress, not a
    result (notebook 08's runs from before the pipeline kept Keras bars out printed them)."""
    cleaned = []
    for output in outputs:
        if output.get("output_type") != "stream":
            cleaned.append(output)
            continue
        if output.get("name") == "stderr":
            continue
        text = "".join(output.get("text", []))
        if cleaned and cleaned[-1].get("output_type") == "stream":
            text = "".join(cleaned.pop()["text"]) + text
        lines = [line.split("\r")[-1] for line in text.replace("\r\n", "\n").split("\n")]
        lines = [line for line in lines if KERAS_BAR not in line]
        cleaned.append({**output, "text": "\n".join(lines).splitlines(keepends=True)})
    return cleaned


def step_command(step, root, smoke, profile="cpu", repeat=False):
    parameters = step_parameters(step, root, smoke, profile, repeat)
    if step.notebook:
        source = NOTEBOOKS / step.notebook
        out = step_notebook(step, root)
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "papermill", "--log-output", "--cwd", str(NOTEBOOKS),
                   str(source), str(out)]
        for key, value in parameters.items():
            if isinstance(value, str):
                command += ["-r", key, value]
            else:   # as YAML (JSON is YAML): lists, numbers, booleans, None keep their types
                command += ["-y", f"{key}: {json.dumps(value)}"]
    else:
        command = [sys.executable, *step.python_args]
        for key, value in parameters.items():
            command += [key, str(value)]
    return command, parameters


# ------------------------------------------------------------------------------ the record

def state_path(name, root):
    return Path(root, "checkpoints", "pipeline", f"{name}.json")


def checkpoints_empty(root):
    directory = Path(root, "checkpoints")
    return not directory.exists() or not any(p for p in directory.iterdir()
                                             if p.name != "pipeline")


def new_record(name, root, smoke, profile="cpu"):
    return {"pipeline": name, "commit": io.git_commit(), "smoke": smoke, "profile": profile,
            "started": _now(), "started_clean": checkpoints_empty(root),
            "machine": machine_facts(),   # the CPU every step's wall time was measured on
            "backend": keras_backend(),
            "steps": [], "total_seconds": 0.0, "complete": False}


def read_record(path):
    """The pipeline record at `path` (validated), or None if there is none."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        record = io.read_json(path)
    except ValueError as error:
        raise PipelineError(f"{path} is not valid JSON ({error}); delete it or pass --restart")
    validate_record(record, path)
    return record


def validate_record(record, where="record"):
    """`record` unchanged when it has the keys and types of results.PIPELINE_RECORD, else
    PipelineError naming every problem."""
    found = problems(record, PIPELINE_RECORD)
    if found:
        raise PipelineError(f"{where}: {'; '.join(found)}")
    return record


def write_result(name, record, results_dir):
    """Put `record` under `name` in results_dir/pipeline.json, keeping the other pipeline's."""
    path = Path(results_dir, "pipeline.json")
    records = io.read_json(path) if path.exists() else {}
    records[name] = record
    io.write_json(path, records)
    return path


def keras_backend():
    """The Keras backend the steps run on (their environment's KERAS_BACKEND; `import utils`
    defaults it to TensorFlow)."""
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------ the pipeline

def run_pipeline(name, root=io.REPO_ROOT, smoke=False, restart=False, steps=None,
                 profile="cpu", redo=(), repeat=False):
    """Run pipeline `name` ('run' or 'study'), skipping steps a previous, interrupted attempt
    finished. `redo`: names of steps of the last record (finished or not) to run again, and
    only those: every other step is left as recorded (or as missing), except the report, which
    is always rebuilt; the record is complete once it holds every step. So a study too long for
    one sitting runs in parts (`make study REDO=07_comparison`, then the next steps). `repeat`: the steps' `repeat` parameters too (measured inputs read as
    recorded: the run repeats the committed one on another machine). Returns the finished
    record (also in root/results/pipeline.json)."""
    if name not in PIPELINES and steps is None:
        raise PipelineError(f"unknown pipeline {name!r}: choose one of {', '.join(PIPELINES)}")
    if profile not in PROFILES:
        raise PipelineError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
    steps = STEPS[name] if steps is None else steps
    unknown = set(redo) - {step.name for step in steps}
    if unknown:
        raise PipelineError(f"--redo {', '.join(sorted(unknown))}: not a step of '{name}' "
                            f"({', '.join(step.name for step in steps)})")
    root = Path(root).resolve()
    state = state_path(name, root)
    record = None if restart else read_record(state)
    if record is None and redo and not restart:
        results = Path(root, "results", "pipeline.json")
        finished = io.read_json(results).get(name) if results.exists() else None
        if finished is None:
            raise PipelineError(f"--redo: {results} holds no '{name}' record to redo steps of; "
                                f"run the whole pipeline first")
        record = validate_record(finished, results)
    if record is not None and record.get("smoke") != smoke:
        raise PipelineError(f"{state} holds a {'SMOKE' if record['smoke'] else 'real'} "
                            f"pipeline in progress; finish it or pass --restart")
    if record is not None and record.get("profile", "cpu") != profile:
        raise PipelineError(f"the '{name}' record in progress was made with profile "
                            f"{record.get('profile', 'cpu')!r}, not {profile!r}; pass the same "
                            "--profile or --restart")
    if record is None:
        record = new_record(name, root, smoke, profile)
    if redo:
        again = set(redo) | {_REPORT.name}   # the report reads every step's results
        record["steps"] = [s for s in record["steps"] if s["name"] not in again]
        record["complete"] = False
        record.pop("finished", None)
        record["redone"] = sorted(set(record.get("redone", [])) | set(redo))
    done = {s["name"] for s in record["steps"]}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(io.REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    if profile == "gpu":
        env.update(GPU_ENVIRONMENT)
    for number, step in enumerate(steps, 1):
        if step.name in done:
            log.info(f"[pipeline {name}] {number}/{len(steps)} {step.name}: done in an earlier "
                f"attempt, skipped")
            continue
        if redo and step.name not in redo and step.name != _REPORT.name:
            log.info(f"[pipeline {name}] {number}/{len(steps)} {step.name}: not in --redo, "
                     "left as recorded")
            continue
        if step.tensorflow_only and keras_backend() != "tensorflow":
            log.info(f"[pipeline {name}] {number}/{len(steps)} {step.name}: skipped on the "
                     f"{keras_backend()} backend, as {step.tensorflow_only}")
            record["skipped"] = sorted({*record.get("skipped", []), step.name})
            continue
        command, parameters = step_command(step, root, smoke, profile, repeat)
        log.info(f"[pipeline {name}] {number}/{len(steps)} {step.name} started {_now()}")
        started, commit = _now(), io.git_commit()   # the code the step starts from
        step_log = log_path(name, step.name, root)
        returncode, seconds, peak = run_watched(command, cwd=io.REPO_ROOT, log_file=step_log,
                                                env={**env, **step_environment(step_log, root,
                                                                               step.name)})
        if returncode != 0:
            io.write_json(state, record)
            raise PipelineError(f"step {step.name} failed (exit code {returncode}) after "
                                f"{seconds:.0f} s; fix it and run the same command again to "
                                f"resume from this step ({state})")
        if step.notebook:
            tidy_notebook(step_notebook(step, root), clear_outputs=step.clear_outputs)
        record["steps"] = [s for s in record["steps"] if s["name"] != step.name]
        step_record = {"name": step.name, "started": started, "seconds": seconds,
                       "max_rss_mb": sizes.mebibytes(peak), "parameters": parameters,
                       "commit": commit, "resumed_run": bool(done)}
        if io.git_commit() != commit:   # the checkout moved while the step ran: say so
            step_record["commit_at_end"] = io.git_commit()
        record["steps"].append(step_record)
        order = {s.name: i for i, s in enumerate(steps)}
        record["steps"].sort(key=lambda s: order.get(s["name"], len(order)))
        record["total_seconds"] = sum(s["seconds"] for s in record["steps"])
        io.write_json(state, record)
        write_result(name, record, root / "results")   # the report step reads it
        log.info(f"[pipeline {name}] {step.name}: {seconds:.0f} s, peak RSS {sizes.format_mib(peak)}")
    record["complete"] = {s.name for s in steps} <= {s["name"] for s in record["steps"]}
    record["finished"] = _now()
    path = write_result(name, record, root / "results")
    state.unlink(missing_ok=True)
    log.info(f"[pipeline {name}] finished: {record['total_seconds'] / 60:.1f} min in "
        f"{len(record['steps'])} steps, peak RSS "
        f"{sizes.format_mib(max(s['max_rss_mb'] for s in record['steps']) * sizes.MIB)} -> {path}")
    return record


def main(argv=None):
    parser = cli.argument_parser("utils.face.pipeline", __doc__)
    parser.add_argument("pipeline", choices=PIPELINES)
    parser.add_argument("--smoke", action="store_true", help="SMOKE=True in every notebook")
    parser.add_argument("--root", default=str(io.REPO_ROOT),
                        help="where data/, checkpoints/, results/, figures/ go (default: here)")
    parser.add_argument("--restart", action="store_true",
                        help="forget the steps an interrupted attempt finished")
    parser.add_argument("--profile", choices=PROFILES, default="cpu",
                        help="gpu: the budgets, mixed precision and XLA of a cloud GPU VM")
    parser.add_argument("--repeat", action="store_true",
                        help="repeat the recorded run on another machine: measured inputs (the "
                             "latency table in results/) are used as recorded, not measured again")
    parser.add_argument("--redo", default="",
                        help="comma-separated steps of the last record to run again "
                             "(e.g. 07_comparison); the report is rebuilt")
    args = parser.parse_args(argv)
    redo = tuple(name for name in args.redo.split(",") if name)
    if Path(args.root).exists() and not Path(args.root).is_dir():   # made if absent
        print(f"error: --root {args.root} is a file, not a directory: pass the directory "
              "data/, checkpoints/, results/ and figures/ go in", file=sys.stderr)
        return 2
    try:
        run_pipeline(args.pipeline, args.root, smoke=args.smoke, restart=args.restart,
                     profile=args.profile, redo=redo, repeat=args.repeat)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
