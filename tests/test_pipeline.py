"""utils.face.pipeline: the step record, resuming after a killed step, process-tree memory."""
import json
import os
import sys

import pytest

from utils.face import pipeline
from utils.face.pipeline import Step

# step b kills itself (SIGKILL, no clean-up) half-way the first time, after saving its progress;
# started again it finds the progress and finishes: a step that resumes from its checkpoint
STEP_B = """
import os, signal, sys
from pathlib import Path
root = Path(sys.argv[1])
(root / "b_starts.txt").open("a").write("start\\n")
progress = root / "b_progress.txt"
if not progress.exists():
    progress.write_text("half")
    os.kill(os.getpid(), signal.SIGKILL)
(root / "b_done.txt").write_text(progress.read_text() + " + rest")
"""


def fake_steps(root):
    append = "import sys; open(sys.argv[1], 'a').write('ran\\n')"
    return (Step("a", python_args=("-c", append, str(root / "a_runs.txt"))),
            Step("b", python_args=("-c", STEP_B, str(root))))


def test_a_killed_step_resumes_and_the_record_is_complete(tmp_path):
    steps = fake_steps(tmp_path)
    with pytest.raises(pipeline.PipelineError, match="step b failed .* run the same command again"):
        pipeline.run_pipeline("run", tmp_path, steps=steps)
    state = json.loads(pipeline.state_path("run", tmp_path).read_text())
    assert [s["name"] for s in state["steps"]] == ["a"] and not state["complete"]
    so_far = json.loads((tmp_path / "results" / "pipeline.json").read_text())["run"]
    assert [s["name"] for s in so_far["steps"]] == ["a"] and not so_far["complete"]

    record = pipeline.run_pipeline("run", tmp_path, steps=steps)
    assert (tmp_path / "a_runs.txt").read_text() == "ran\n"          # a was not run again
    assert (tmp_path / "b_starts.txt").read_text().count("start") == 2
    assert (tmp_path / "b_done.txt").read_text() == "half + rest"     # b went on from its progress
    assert [s["name"] for s in record["steps"]] == ["a", "b"]
    assert [s["resumed_run"] for s in record["steps"]] == [False, True]
    assert not pipeline.state_path("run", tmp_path).exists()

    written = json.loads((tmp_path / "results" / "pipeline.json").read_text())
    pipeline.validate_record(written["run"])
    assert written["run"]["complete"] and written["run"]["started_clean"] is True
    assert written["run"]["total_seconds"] == pytest.approx(sum(s["seconds"] for s in record["steps"]))
    assert all(s["seconds"] > 0 and s["max_rss_mb"] > 0 for s in written["run"]["steps"])
    # the machine its wall times come from (utils.common.machine), for the report
    from utils.common.machine import machine_facts
    assert written["run"]["machine"] == machine_facts()


def test_restart_forgets_finished_steps_and_records_are_kept_per_pipeline(tmp_path):
    steps = fake_steps(tmp_path)
    (tmp_path / "b_progress.txt").write_text("half")      # b will not die
    (tmp_path / "checkpoints" / "baseline").mkdir(parents=True)
    first = pipeline.run_pipeline("run", tmp_path, steps=steps)
    assert first["started_clean"] is False                  # checkpoints/ was not empty
    pipeline.run_pipeline("study", tmp_path, steps=steps[:1])
    pipeline.run_pipeline("run", tmp_path, steps=steps, restart=True)
    assert (tmp_path / "a_runs.txt").read_text() == "ran\n" * 3
    written = json.loads((tmp_path / "results" / "pipeline.json").read_text())
    assert set(written) == {"run", "study"} and len(written["study"]["steps"]) == 1


def test_redo_runs_named_steps_of_a_finished_record_again(tmp_path):
    append = "import sys; open(sys.argv[1], 'a').write('ran\\n')"
    steps = tuple(Step(n, python_args=("-c", append, str(tmp_path / f"{n}.txt")))
                  for n in ("a", "b", "report"))
    pipeline.run_pipeline("study", tmp_path, steps=steps)
    record = pipeline.run_pipeline("study", tmp_path, steps=steps, redo=("a",))
    # a again, b kept, the report rebuilt; the record keeps the pipeline's order
    assert [(tmp_path / f"{n}.txt").read_text().count("ran") for n in ("a", "b", "report")] \
        == [2, 1, 2]
    assert [s["name"] for s in record["steps"]] == ["a", "b", "report"] and record["complete"]
    assert record["redone"] == ["a"]
    # a record cut after a: --redo b runs b alone (and the report), a is kept; then complete
    for n in ("a", "b", "report"):
        (tmp_path / f"{n}.txt").unlink()
    results = tmp_path / "results" / "pipeline.json"
    cut = json.loads(results.read_text())
    cut["study"].update(complete=False, steps=cut["study"]["steps"][:1])
    results.write_text(json.dumps(cut))
    part = pipeline.run_pipeline("study", tmp_path, steps=steps, redo=("report",))
    assert not (tmp_path / "b.txt").exists() and not part["complete"]   # b: not asked for
    part = pipeline.run_pipeline("study", tmp_path, steps=steps, redo=("b",))
    assert not (tmp_path / "a.txt").exists() and (tmp_path / "b.txt").read_text() == "ran\n"
    assert [s["name"] for s in part["steps"]] == ["a", "b", "report"] and part["complete"]
    with pytest.raises(pipeline.PipelineError, match="--redo z: not a step of 'study' \\(a, b, report\\)"):
        pipeline.run_pipeline("study", tmp_path, steps=steps, redo=("z",))
    with pytest.raises(pipeline.PipelineError, match="holds no 'run' record"):
        pipeline.run_pipeline("run", tmp_path, steps=steps, redo=("a",))


def test_gpu_profile_parameters_and_environment(tmp_path):
    """The GPU profile passes larger budgets (typed, as YAML) to existing notebook parameters,
    and a record made with one profile is not resumed with the other."""
    import re
    for name in pipeline.PIPELINES:
        for step in pipeline.STEPS[name]:
            if not step.gpu:
                continue
            cells = json.loads((pipeline.NOTEBOOKS / step.notebook).read_text())["cells"]
            declared = "".join("".join(c["source"]) for c in cells
                               if "parameters" in c.get("metadata", {}).get("tags", []))
            for key in [*step.gpu, *step.repeat]:
                assert re.search(rf"^{key} = ", declared, re.M), \
                    f"{step.notebook} has no parameter {key}"
    step = next(s for s in pipeline.STEPS["run"] if s.name == "04_thresholding")
    command, parameters = pipeline.step_command(step, pipeline.io.REPO_ROOT, smoke=False,
                                                profile="gpu")
    assert parameters == {"RETRAIN_EXAMPLES": None} and "RETRAIN_EXAMPLES: null" in command
    assert pipeline.step_parameters(step, pipeline.io.REPO_ROOT, smoke=False) == {}
    # --repeat: the recorded latency table on any machine, and only for the step that reads one
    assert pipeline.step_parameters(step, pipeline.io.REPO_ROOT, smoke=False, repeat=True) == {
        "LATENCY_TABLE_ANY_MACHINE": True}
    assert all(pipeline.step_parameters(s, pipeline.io.REPO_ROOT, smoke=False, repeat=True) == {}
               for s in pipeline.STEPS["run"] if s is not step)
    state = pipeline.state_path("run", tmp_path)
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({**pipeline.new_record("run", tmp_path, False, "gpu")}))
    with pytest.raises(pipeline.PipelineError, match="profile 'gpu', not 'cpu'"):
        pipeline.run_pipeline("run", tmp_path, steps=fake_steps(tmp_path))
    with pytest.raises(pipeline.PipelineError, match="unknown profile 'tpu'"):
        pipeline.run_pipeline("run", tmp_path, profile="tpu")


def test_precision_and_xla_from_the_environment():
    """What the GPU profile's environment does, in a fresh process."""
    import os
    import subprocess
    code = ("import utils.training.train as t, keras; "
            "print(keras.config.dtype_policy().name, t.TrainConfig().jit_compile)")
    env = {**os.environ, **pipeline.GPU_ENVIRONMENT, "PYTHONPATH": str(pipeline.io.REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["float32", "auto"]     # no GPU here: auto -> float32
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "UTILS_PRECISION": "half"}, timeout=300)
    assert bad.returncode != 0 and "precision='half': choose one of" in bad.stderr


def test_peak_memory_counts_the_whole_process_tree(tmp_path):
    # the child only waits; its own child holds ~300 MB: a per-process peak would miss it
    grandchild = "import time; x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(2)"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}])"
    code, seconds, peak = pipeline.run_watched([sys.executable, "-c", child], poll=0.1)
    assert code == 0 and seconds >= 2
    assert peak >= 280 * 2**20


def test_step_parameters_only_when_the_root_moves(tmp_path):
    step = pipeline.STEPS["run"][1]
    assert pipeline.step_parameters(step, pipeline.io.REPO_ROOT, smoke=False) == {}
    moved = pipeline.step_parameters(step, tmp_path, smoke=True)
    assert moved["SMOKE"] is True and moved["EPOCHS"] == 1
    assert moved["CHECKPOINT_DIR"] == str(tmp_path.resolve() / "checkpoints" / "baseline")
    command, _ = pipeline.step_command(step, tmp_path, smoke=True)
    assert "SMOKE: true" in command and command[command.index("SMOKE: true") - 1] == "-y"
    assert command[command.index("DATA_DIR") - 1] == "-r"
    # every notebook of the repository is in exactly one pipeline, main job first
    names = [s.notebook for p in pipeline.PIPELINES for s in pipeline.STEPS[p] if s.notebook]
    assert names == sorted(p.name for p in pipeline.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert pipeline.STEPS["run"][-2].notebook == "06_demo.ipynb"   # the main job ends with the demo


def test_bad_records_and_arguments_are_clear_errors(tmp_path, capsys):
    good = {"commit": "abc", "started_clean": True, "total_seconds": 1.0,
            "steps": [{"name": "a", "started": "t", "seconds": 1.0, "max_rss_mb": 2.0,
                       "parameters": {}}]}
    pipeline.validate_record(good)
    with pytest.raises(pipeline.PipelineError, match='"max_rss_mb" is null, expected a number'):
        pipeline.validate_record({**good, "steps": [{**good["steps"][0], "max_rss_mb": None}]})
    with pytest.raises(pipeline.PipelineError, match="unknown pipeline 'both'"):
        pipeline.run_pipeline("both", tmp_path)
    state = pipeline.state_path("run", tmp_path)
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    assert pipeline.main(["run", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not valid JSON" in err and "--restart" in err


def test_commit_is_dirty_for_code_changes_not_for_run_outputs(tmp_path, monkeypatch):
    import subprocess
    from utils.common import io
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    for path in ("utils/a.py", "results/r.json", "notebooks/01_x.ipynb", "figures/f.png"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("1")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    monkeypatch.setattr(io, "REPO_ROOT", tmp_path)
    assert not io.git_commit().endswith("-dirty")
    for path in ("results/r.json", "notebooks/01_x.ipynb", "figures/f.png"):   # a run's outputs
        (tmp_path / path).write_text("2")
    assert not io.git_commit().endswith("-dirty") and len(io.git_commit()) == 40
    (tmp_path / "utils/a.py").write_text("2")                                  # the code
    assert io.git_commit().endswith("-dirty")


def test_every_study_notebook_names_run_steps_it_reads():
    run_steps = {step.name for step in pipeline.STEPS["run"]}
    for step in pipeline.STEPS["study"]:
        if step.notebook:
            assert step.reads and set(step.reads) <= run_steps, step.name


def _executed_notebook(path):
    """A notebook as papermill leaves it: absolute paths of the machine that ran it, the
    kernel's bare display name, a widget output, no trailing newline."""
    notebook = {
        "cells": [
            {"cell_type": "markdown", "id": "a1", "metadata": {}, "source": ["# title"]},
            {"cell_type": "code", "execution_count": 1, "id": "b2",
             "metadata": {"papermill": {"duration": 0.1}, "tags": []},
             "outputs": [{"name": "stdout", "output_type": "stream", "text": ["hello\n"]},
                         {"data": {"application/vnd.jupyter.widget-view+json": {
                             "model_id": "x", "version_major": 2, "version_minor": 0},
                                   "text/plain": ["VBox(children=(Dropdown(...)))"]},
                          "metadata": {}, "output_type": "display_data"}],
             "source": ["print('hello')"]}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"},
                     "language_info": {"name": "python"},
                     "papermill": {"input_path": str(path), "output_path": str(path),
                                   "parameters": {}},
                     "widgets": {"application/vnd.jupyter.widget-state+json": {}}},
        "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook, indent=1))
    return path


def test_tidy_notebook_leaves_what_jupyter_would_write_and_no_machine_path(tmp_path):
    import nbformat

    from utils.common.io import REPO_ROOT
    path = _executed_notebook(REPO_ROOT / "notebooks" / f"tidy_test_{os.getpid()}.ipynb")
    try:
        pipeline.tidy_notebook(path)
        text = path.read_text()
        notebook = json.loads(text)
        assert str(REPO_ROOT) not in text
        assert notebook["metadata"]["papermill"]["input_path"] == path.relative_to(
            REPO_ROOT).as_posix()
        assert notebook["metadata"]["kernelspec"] == pipeline.KERNELSPEC
        assert "widgets" not in notebook["metadata"]
        outputs = notebook["cells"][1]["outputs"]
        assert [o["output_type"] for o in outputs] == ["stream"]   # the widget view is gone
        # opened and saved by Jupyter (nbformat's own writer), the file stays byte for byte
        copy = tmp_path / "saved.ipynb"
        nbformat.write(nbformat.read(path, as_version=4), copy)
        assert copy.read_text() == text
        pipeline.tidy_notebook(path, clear_outputs=True)
        notebook = json.loads(path.read_text())
        code = notebook["cells"][1]
        assert code["outputs"] == [] and code["execution_count"] is None
        assert "papermill" not in code["metadata"] and "papermill" not in notebook["metadata"]
        assert code["source"] == ["print('hello')"]
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize("name", sorted(p.name for p in pipeline.NOTEBOOKS.glob("*.ipynb")))
def test_committed_notebooks_read_the_same_anywhere_and_stay_unchanged_when_opened(name):
    """Tidy (`pipeline.tidy_notebook`): the kernel named as JupyterLab names it and the file in
    nbformat's own layout (else opening it in JupyterLab rewrites it, and `git status` shows
    it), no absolute path of the machine that ran it, no saved widget state."""
    import nbformat
    path = pipeline.NOTEBOOKS / name
    text = path.read_text()
    notebook = json.loads(text)
    assert notebook["metadata"]["kernelspec"] == pipeline.KERNELSPEC
    assert "widgets" not in notebook["metadata"]
    for key in ("input_path", "output_path"):
        assert not notebook["metadata"].get("papermill", {}).get(key, "").startswith("/")
    assert nbformat.writes(nbformat.reads(text, as_version=4)) + "\n" == text
    if name == "06_demo.ipynb":   # committed without outputs: a presenter opens it clean
        assert all(c.get("outputs", []) == [] for c in notebook["cells"])


def test_every_default_chosen_on_validation_outside_the_pipeline_has_a_make_target():
    """The runs notebooks 03 and 07 choose defaults from (SELECTION_RUNS, FISHER_RUNS,
    COFI_REG_RUNS) are written by scripts `make decisions` runs, each writing the file read."""
    import re

    from utils.common.io import REPO_ROOT
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndecisions:", 1)[1].split("\n\n", 1)[0]
    scripts = re.findall(r"\$\(PY\) (scripts/\S+\.py)", recipe)
    assert scripts == ["scripts/explore_fisher_selection.py", "scripts/explore_fisher_tuning.py",
                       "scripts/explore_cofi_reg_lr.py"]
    written = set()
    for script in scripts:
        written |= set(re.findall(r'(?:exploratory/|out / ")(\w+\.json)',
                                  (REPO_ROOT / script).read_text()))
    read = set()
    for notebook in ("03_block_pruning.ipynb", "07_comparison.ipynb"):
        source = (REPO_ROOT / "notebooks" / notebook).read_text()
        read |= set(re.findall(r'_RUNS = \\"\.\./results/exploratory/(\w+\.json)', source))
    assert read == {"fisher_selection.json", "fisher_tuning.json", "cofi_reg_lr.json"}
    assert read <= written


def test_clean_streams_drops_stderr_and_renders_progress_as_a_terminal_does():
    outputs = [{"name": "stderr", "output_type": "stream", "text": ["I0000 oneDNN ...\n"]},
               {"name": "stdout", "output_type": "stream", "text": ["\r 1/2 ━ loss 0.9"]},
               {"name": "stdout", "output_type": "stream", "text": ["\r 2/2 ━━ loss 0.5\n"]},
               {"name": "stdout", "output_type": "stream", "text": ["done\n", "macro-F1 0.84\n"]},
               {"data": {"text/plain": ["42"]}, "metadata": {}, "output_type": "execute_result",
                "execution_count": 3}]
    cleaned = pipeline.clean_streams(outputs)
    assert [o["output_type"] for o in cleaned] == ["stream", "execute_result"]
    assert cleaned[0]["name"] == "stdout"
    assert "".join(cleaned[0]["text"]) == "done\nmacro-F1 0.84\n"   # the bar's last state: gone
    assert cleaned[1] == outputs[-1]


def test_a_step_records_the_commit_it_started_from_and_a_move_of_the_checkout(tmp_path, monkeypatch):
    """The code a step ran is the commit at its start; when the checkout moves while it runs
    (a merge into the working tree), the record says so instead of naming the later commit."""
    calls = []

    def head():   # the record's start, a's start and end, b's start: aaa; then the merge
        calls.append(1)
        return "aaa" if len(calls) <= 4 else "bbb"
    monkeypatch.setattr(pipeline.io, "git_commit", head)
    append = "import sys; open(sys.argv[1], 'a').write('ran\\n')"
    steps = (Step("a", python_args=("-c", append, str(tmp_path / "a.txt"))),
             Step("b", python_args=("-c", append, str(tmp_path / "b.txt"))))
    record = pipeline.run_pipeline("run", tmp_path, steps=steps)
    a, b = record["steps"]
    assert (a["commit"], a.get("commit_at_end")) == ("aaa", None)   # started and ended at aaa
    assert (b["commit"], b.get("commit_at_end")) == ("aaa", "bbb")
