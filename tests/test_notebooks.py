"""Notebooks 01-06 end to end under papermill in SMOKE mode (tiny random encoder)."""
import json
from pathlib import Path

import pytest

papermill = pytest.importorskip("papermill")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_notebook(name, out_dir, **parameters):
    out = out_dir / name
    papermill.execute_notebook(str(NOTEBOOKS / name), str(out), cwd=str(NOTEBOOKS),
                               parameters={"SMOKE": True, **parameters}, progress_bar=False,
                               kernel_name="python3")
    cells = json.loads(out.read_text())["cells"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    return out


@pytest.fixture(scope="module")
def smoke_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    dirs = {name: root / name for name in ("data", "figures", "results", "checkpoints", "nb")}
    for d in dirs.values():
        d.mkdir()
    return dirs


def test_01_data_prep_smoke(smoke_dirs):
    run_notebook("01_data_prep.ipynb", smoke_dirs["nb"], DATA_DIR=str(smoke_dirs["data"]),
                 FIGURES_DIR=str(smoke_dirs["figures"]))
    for split in ("train", "validation", "test"):
        assert (smoke_dirs["data"] / f"{split}.csv").stat().st_size > 0


def test_02_baseline_smoke(smoke_dirs):
    if not (smoke_dirs["data"] / "train.csv").exists():
        pytest.skip("needs the splits from notebook 01")
    run_notebook("02_baseline_finetune.ipynb", smoke_dirs["nb"],
                 DATA_DIR=str(smoke_dirs["data"]), FIGURES_DIR=str(smoke_dirs["figures"]),
                 RESULTS_DIR=str(smoke_dirs["results"]),
                 CHECKPOINT_DIR=str(smoke_dirs["checkpoints"] / "baseline"), EPOCHS=1)
    result = json.loads((smoke_dirs["results"] / "baseline.json").read_text())
    assert result["smoke"] is True
    assert 0 <= result["test"]["macro_f1"] <= 1
    assert result["split_sizes"]["train"] == 240
    for fig in ("02_training_curves.png", "02_confusion_matrix.png"):
        assert (smoke_dirs["figures"] / fig).stat().st_size > 1000
    assert (smoke_dirs["checkpoints"] / "baseline" / "best" / "model.weights.h5").exists()


def test_03_block_pruning_smoke(smoke_dirs):
    if not (smoke_dirs["checkpoints"] / "baseline" / "best").exists():
        pytest.skip("needs the baseline from notebook 02")
    run_notebook("03_block_pruning.ipynb", smoke_dirs["nb"], DATA_DIR=str(smoke_dirs["data"]),
                 FIGURES_DIR=str(smoke_dirs["figures"]), RESULTS_DIR=str(smoke_dirs["results"]),
                 BASELINE_DIR=str(smoke_dirs["checkpoints"] / "baseline" / "best"),
                 CHECKPOINT_DIR=str(smoke_dirs["checkpoints"] / "block_pruning"), EPOCHS=1)
    record = json.loads((smoke_dirs["results"] / "block_pruning.json").read_text())
    assert record["step_cost"]["ratio"] > 0
    assert len(record["lambda_k_sweep"]["rows"]) == 2 * 2 * 2  # K x lambda1 x two sparsities
    for fig in ("03_loss_terms.png", "03_group_norm_histograms.png", "03_lambda_k_sweep.png"):
        assert (smoke_dirs["figures"] / fig).stat().st_size > 1000


def test_04_thresholding_smoke(smoke_dirs):
    if not (smoke_dirs["checkpoints"] / "block_pruning" / "best").exists():
        pytest.skip("needs the regularised model from notebook 03")
    run_notebook("04_thresholding.ipynb", smoke_dirs["nb"], DATA_DIR=str(smoke_dirs["data"]),
                 FIGURES_DIR=str(smoke_dirs["figures"]), RESULTS_DIR=str(smoke_dirs["results"]),
                 BASELINE_DIR=str(smoke_dirs["checkpoints"] / "baseline" / "best"),
                 REGULARIZED_DIR=str(smoke_dirs["checkpoints"] / "block_pruning"),
                 PRUNED_DIR=str(smoke_dirs["checkpoints"] / "pruned"))
    import pandas as pd
    curve = pd.read_csv(smoke_dirs["results"] / "sparsity_sweep.csv")
    from utils.sweep import SWEEP_COLUMNS
    assert list(curve.columns[:len(SWEEP_COLUMNS)]) == SWEEP_COLUMNS
    block = curve[curve.method == "block"]
    # SMOKE targets 0, 0.5, 0.9: thresholded sparsity reaches each target
    for target in (0.5, 0.9):
        reached = block[(block.target_sparsity == target)].sparsity_encoder_linear
        assert (reached >= target - 1e-9).all() and len(reached) == 2  # before + after retrain
    for fig in ("04_sparsity_vs_f1.png", "04_sparsity_heatmap.png"):
        assert (smoke_dirs["figures"] / fig).stat().st_size > 1000


def test_05_results_smoke(smoke_dirs):
    if not (smoke_dirs["results"] / "thresholding.json").exists():
        pytest.skip("needs the sweep from notebook 04")
    run_notebook("05_results.ipynb", smoke_dirs["nb"], DATA_DIR=str(smoke_dirs["data"]),
                 FIGURES_DIR=str(smoke_dirs["figures"]), RESULTS_DIR=str(smoke_dirs["results"]),
                 BASELINE_DIR=str(smoke_dirs["checkpoints"] / "baseline" / "best"),
                 PRUNED_DIR=str(smoke_dirs["checkpoints"] / "pruned"),
                 BASELINES_DIR=str(smoke_dirs["checkpoints"] / "baselines"))
    import pandas as pd
    from utils.sweep import SWEEP_COLUMNS
    rows = pd.read_csv(smoke_dirs["results"] / "baselines_sweep.csv")
    assert list(rows.columns[:len(SWEEP_COLUMNS)]) == SWEEP_COLUMNS
    # SMOKE grid [0.5]: every method reaches it on the tiny model (heads and FFN are each half
    # of its linear weights); gradual magnitude has only a retrained row
    retrained = rows[rows.retrained]
    assert set(retrained.method) == {"magnitude_global", "magnitude_per_matrix",
                                     "magnitude_gradual", "heads", "layers", "ffn_neurons"}
    assert (retrained.sparsity_encoder_linear >= 0.5 - 1e-9).all()
    assert len(rows[~rows.retrained]) == 5
    record = json.loads((smoke_dirs["results"] / "baselines.json").read_text())
    assert record["retrain"]["examples"] == 96          # notebook 04's SMOKE budget
    latency = pd.read_csv(smoke_dirs["results"] / "latency_pareto.csv")
    assert {"dense", "block", "magnitude_global", "heads"} <= set(latency.method)
    assert (latency.latency_ms_median > 0).all()
    # unstructured zeros leave the shapes alone: the compacted model keeps every parameter
    dense_params = latency[latency.method == "dense"].parameters.iloc[0]
    assert (latency[latency.method == "magnitude_global"].parameters == dense_params).all()
    assert (latency[latency.method == "layers"].parameters < dense_params).all()
    table = pd.read_csv(smoke_dirs["results"] / "comparison.csv")
    assert set(table.level) == {0.5, 0.7, 0.9} and table[table.level == 0.5].reached.all()
    for fig in ("05_methods_sparsity_vs_f1.png", "05_pareto_latency_vs_f1.png"):
        assert (smoke_dirs["figures"] / fig).stat().st_size > 1000


def test_06_demo_smoke(smoke_dirs):
    """Independent of the chain: SMOKE saves its own tiny models under a temporary root."""
    out = run_notebook("06_demo.ipynb", smoke_dirs["nb"], DATA_DIR=str(smoke_dirs["data"]),
                       FIGURES_DIR=str(smoke_dirs["figures"]), RESULTS_DIR=str(smoke_dirs["results"]))
    record = json.loads((smoke_dirs["results"] / "demo.json").read_text())
    assert record["smoke"] is True and record["time_to_first_answer_s"] > 0
    assert [r["model"] for r in record["models"]] == ["dense", "compact", "compact+int8"]
    assert all(r["errors"] == 0 and r["latency_ms_median"] > 0 for r in record["models"])
    assert (smoke_dirs["figures"] / "06_demo_latency.png").stat().st_size > 1000
    printed = "".join("".join(o.get("text", "")) for c in json.loads(out.read_text())["cells"]
                      for o in c.get("outputs", []))
    assert "The text is empty" not in printed     # every example is a real tweet-like text
    assert "truncated to the first 64" in printed  # the long example says it was cut


def test_06_demo_says_what_to_run_when_models_are_missing(smoke_dirs, tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as error:
        run_notebook("06_demo.ipynb", smoke_dirs["nb"], SMOKE=False, ROOT=str(tmp_path),
                     DATA_DIR=str(tmp_path), RESULTS_DIR=str(tmp_path), FIGURES_DIR=str(tmp_path))
    assert "MissingModelsError" in str(error.value) and "utils.bench" in str(error.value)


def test_07_binarization_smoke(smoke_dirs):
    """Independent of the chain: SMOKE saves tiny stand-ins for the models it compares."""
    if not (smoke_dirs["data"] / "train.csv").exists():
        pytest.skip("needs the splits from notebook 01")
    run_notebook("07_binarization.ipynb", smoke_dirs["nb"], DATA_DIR=str(smoke_dirs["data"]),
                 FIGURES_DIR=str(smoke_dirs["figures"]), RESULTS_DIR=str(smoke_dirs["results"]))
    import pandas as pd
    table = pd.read_csv(smoke_dirs["results"] / "binarization.csv")
    assert list(table.variant.unique()) == ["float32", "int8", "pruned float32", "pruned + int8",
                                            "binary layers", "binary layers + embeddings",
                                            "pruned + binary"]
    by = {(r.variant, r.trained): r for r in table.itertuples()}
    # one bit per binarized weight: layers + embeddings is far below int8, layers alone is not
    assert by[("binary layers + embeddings", True)].disk_bytes < by[("int8", True)].disk_bytes / 2
    assert by[("binary layers", True)].disk_bytes < by[("float32", True)].disk_bytes
    assert table.macro_f1.between(0, 1).all()
    assert (smoke_dirs["figures"] / "07_bits_vs_f1.png").stat().st_size > 1000
