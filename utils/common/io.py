"""Crash-safe file writing, run provenance, and the names of saved snapshot directories."""
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ROOT_VARIABLE = "UTILS_ROOT"   # the pipeline's --root, set for every step it runs
STEP_VARIABLE = "UTILS_PIPELINE_STEP"   # the name of the pipeline step running, set likewise
_SNAPSHOT_DIR = re.compile(r"(sparsity|cost)_(\d+)$")


# The one place that names (and reads back) the directories pruned models are saved to.
def sparsity_dir_name(target):
    """0.7 -> 'sparsity_70': the model pruned to a share of the encoder's linear weights."""
    return f"sparsity_{round(target * 100):02d}"


def cost_dir_name(target):
    """0.45 -> 'cost_45': the model pruned to a latency target (a share of the dense cost)."""
    return f"cost_{round(100 * target):02d}"


def best_epoch_val_macro_f1(baseline):
    """Validation macro-F1 of the epoch a results/baseline.json record (notebook 02) kept (its
    best_epoch), or None when the record has none."""
    if "validation" in baseline:
        return float(baseline["validation"]["macro_f1"])
    best = [h for h in baseline.get("history", []) if h.get("epoch") == baseline.get("best_epoch")]
    return float(best[0]["val_macro_f1"]) if best else None


def snapshot_target(directory):
    """('sparsity', 0.7) for .../sparsity_70, ('cost', 0.45) for .../cost_45, else None."""
    match = _SNAPSHOT_DIR.search(str(directory).rstrip("/\\"))
    return None if match is None else (match.group(1), int(match.group(2)) / 100)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; move it into place only if the block succeeds.

    A crash mid-write leaves the previous file (or directory) untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if tmp.is_dir():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            if old.exists():
                shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(frame, path):
    """A pandas DataFrame as CSV (no index), atomically; returns the path."""
    with atomic_path(Path(path)) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return json.loads(path.read_text())


def _json_default(obj):
    # numpy scalars and arrays show up in metrics dicts
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


# What a run writes (executed notebooks, results, figures, the report and its README lines):
# these differ from the commit while a pipeline runs, without the code being any different.
RUN_OUTPUTS = ("notebooks/*.ipynb", "results", "figures", "report", "data", "README.md",
               "models")   # the bundle notebook 05 publishes


def git_commit():
    """The commit the code ran at, with '-dirty' if a tracked file other than the run's own
    outputs (RUN_OUTPUTS) had uncommitted changes."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        excludes = [f":(exclude){path}" for path in RUN_OUTPUTS]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", *excludes],
                               cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def shown(path):
    """`path` as a notebook's output shows it: relative to the pipeline's root (UTILS_ROOT) or
    to the repository, so no absolute path of the machine that ran it is saved; a path outside
    both shows its name alone."""
    path = Path(path).resolve()
    for base in (os.environ.get(ROOT_VARIABLE), REPO_ROOT):
        if base and path.is_relative_to(Path(base).resolve()):
            return path.relative_to(Path(base).resolve()).as_posix() or "."
    return path.name
