"""The training path on JAX and PyTorch, from the same code as on TensorFlow (and the record of
the GPU recipe, `utils.face.gpu`, which runs it there).

Keras fixes its backend when it is first imported, so each backend runs
`tests/backend_checks.py` in a process of its own (CPU only, `import tensorflow` blocked);
both run side by side and this module compares what they wrote with TensorFlow's own results,
computed here: forward logits of the same weights, the Fisher information of the unit masks,
masks held through a fit, exact zeros after the proximal step, compaction and a regularised
fit whose task loss falls.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import backend_checks
import numpy as np
import pytest

OTHER_BACKENDS = ("jax", "torch")
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{backend: what backend_checks.py wrote} for JAX and PyTorch, run concurrently."""
    missing = [b for b in OTHER_BACKENDS if importlib.util.find_spec(b) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: `pip install -r requirements-dev.txt` "
                    "(make test does)")
    out = tmp_path_factory.mktemp("backends")
    script = Path(__file__).with_name("backend_checks.py")
    root = str(Path(__file__).resolve().parent.parent)
    running = {}
    for backend in OTHER_BACKENDS:
        env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "",
               "JAX_PLATFORMS": "cpu",
               "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH"))
                                             if p)}
        running[backend] = subprocess.Popen(
            [sys.executable, str(script), str(out / f"{backend}.json")], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = {}
    for backend, process in running.items():
        output, _ = process.communicate(timeout=TIMEOUT_S)
        assert process.returncode == 0, f"{backend}:\n{output[-4000:]}"
        found[backend] = json.loads((out / f"{backend}.json").read_text())
    return found


@pytest.fixture(scope="module")
def tensorflow_reference(tokenizer):
    reference = {}
    backend_checks.forward(reference, tokenizer)
    backend_checks.fisher(reference, tokenizer)
    return reference


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_each_backend_ran_as_itself(results, backend):
    assert results[backend]["backend"] == backend


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_forward_logits_match_tensorflow(results, tensorflow_reference, backend):
    logits = np.array(results[backend]["forward_logits"])
    reference = np.array(tensorflow_reference["forward_logits"])
    assert logits.shape == reference.shape == (3, 3)
    np.testing.assert_allclose(logits, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_fisher_information_matches_tensorflow(results, tensorflow_reference, backend):
    for kind in ("heads", "neurons"):
        ours, reference = results[backend]["fisher"][kind], tensorflow_reference["fisher"][kind]
        assert ours.keys() == reference.keys()
        for layer in reference:
            assert np.max(reference[layer]) > 0
            np.testing.assert_allclose(ours[layer], reference[layer], rtol=1e-3,
                                       atol=1e-4 * np.max(reference[layer]))


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_masks_hold_through_a_fit(results, backend):
    fit = results[backend]["masked_fit"]
    assert fit["masked_weights"] > 0 and fit["masked_nonzero"] == 0
    assert fit["unmasked_changed"] > 0.9      # the rest did train


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_proximal_step_leaves_switched_off_units_exactly_zero(results, backend):
    run = results[backend]["progressive"]
    assert run["reached"] == [0.2, 0.5]
    assert run["off_units"] > 0 and run["off_nonzero"] == 0 and run["alive_zero"] == 0
    assert run["sparsity"] >= 0.5


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_compacted_model_gives_the_pruned_models_logits(results, backend):
    compaction = results[backend]["compaction"]
    assert sum(compaction["heads"]) < 8 and sum(compaction["neurons"]) < 128   # units removed
    assert compaction["max_abs_diff"] < 1e-5


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_regularised_fit_ramps_its_penalties_in_and_its_task_loss_falls(results, backend):
    terms = results[backend]["penalized_fit"]["loss_terms"]
    # first step: the ramp is 0, so the loss is the task loss alone; later the penalties count
    assert terms[0]["step"] == 1 and terms[0]["loss"] == pytest.approx(terms[0]["task_loss"])
    assert terms[-1]["loss"] > terms[-1]["task_loss"]
    task = [t["task_loss"] for t in terms]
    assert np.mean(task[-3:]) < np.mean(task[:3]) - 0.05


# ------------------------------------------------------------------ the GPU recipe's record

def test_gpu_record_puts_this_runs_accuracy_beside_the_cpu_runs():
    from utils.face import gpu
    baseline = {"history": [{"train_seconds": 10.0, "train_examples_per_s": 100.0},
                            {"train_seconds": 30.0, "train_examples_per_s": 300.0}],
                "split_sizes": {"train": 1000}, "train_config": {"batch_size": 32},
                "train_seconds": 40.0, "smoke": False, "model": "m",
                "test": {"accuracy": 0.8, "macro_f1": 0.75}}
    cpu = {**baseline, "test": {"accuracy": 0.81, "macro_f1": 0.76}}
    run = {"smoke": False, "profile": "gpu", "commit": "abc", "started": "t",
           "total_seconds": 99.0,
           "steps": [{"name": "02_baseline_finetune", "seconds": 50.0, "max_rss_mb": 1.0}]}
    record = gpu.gpu_record(run, baseline, cpu, "NVIDIA H100", "torch", "2.13.0",
                            "mixed_bfloat16")
    assert record["fine_tune"]["steps_per_epoch"] == 32          # ceil(1000 / 32)
    assert record["fine_tune"]["mean_step_seconds"] == pytest.approx(40.0 / 64)
    assert record["fine_tune"]["train_examples_per_s"] == pytest.approx(200.0)
    assert record["accuracy"]["this_run"]["test_macro_f1"] == 0.75
    assert record["accuracy"]["cpu_run"]["test_accuracy"] == 0.81
    assert (record["device"], record["backend"], record["precision"], record["wall_seconds"]) == \
        ("NVIDIA H100", "torch", "mixed_bfloat16", 99.0)


def test_gpu_recipe_refuses_tensorflow_in_one_line(monkeypatch, capsys):
    from utils.face import gpu
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert gpu.main(["--smoke"]) == 2
    assert "KERAS_BACKEND='tensorflow': set it to torch or jax" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_pipeline_skips_tensorflow_only_steps_on_other_backends_and_says_so(
        tmp_path, monkeypatch, caplog, backend):
    from utils.face import pipeline
    monkeypatch.setenv("KERAS_BACKEND", backend)
    touch = "import sys; open(sys.argv[1], 'w')"
    steps = (pipeline.Step("tflite", python_args=("-c", touch, str(tmp_path / "tflite")),
                           tensorflow_only="it needs TFLite"),
             pipeline.Step("train", python_args=("-c", touch, str(tmp_path / "train"))))
    with caplog.at_level("INFO", logger="utils.face.pipeline"):
        record = pipeline.run_pipeline("run", tmp_path, steps=steps)
    ran = [s["name"] for s in record["steps"]]
    assert record["backend"] == backend
    assert (tmp_path / "train").exists()
    assert (tmp_path / "tflite").exists() == (backend == "tensorflow")
    if backend == "tensorflow":
        assert ran == ["tflite", "train"] and "skipped" not in record
    else:
        assert ran == ["train"] and record["skipped"] == ["tflite"]
        assert "1/2 tflite: skipped on the jax backend, as it needs TFLite" in caplog.text
