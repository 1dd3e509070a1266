"""Both pipelines (notebooks 01-09 and the report) end to end in SMOKE mode (tiny random encoder),
through utils.face.pipeline as `make run` / `make study` run them."""
import json
import re
from pathlib import Path

import pandas as pd
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
def smoke_run(tmp_path_factory):
    """Both pipelines (`make run`, then `make study`) in SMOKE mode under one temporary root,
    exactly as utils.face.pipeline runs them for real, only with SMOKE=True and moved paths."""
    from utils.face import pipeline
    root = tmp_path_factory.mktemp("smoke")
    records = {name: pipeline.run_pipeline(name, root, smoke=True) for name in pipeline.PIPELINES}
    return root, records


@pytest.fixture(scope="module")
def smoke_dirs(smoke_run):
    root, _ = smoke_run
    dirs = {name: root / name for name in ("data", "figures", "results", "checkpoints")}
    dirs["nb"] = root / "notebooks"
    return dirs


def test_pipeline_record_has_every_step_with_time_and_memory(smoke_run):
    from utils.face import pipeline
    root, records = smoke_run
    written = json.loads((root / "results" / "pipeline.json").read_text())
    assert set(written) == {"run", "study"}
    for name, record in written.items():
        pipeline.validate_record(record)
        assert [s["name"] for s in record["steps"]] == [s.name for s in pipeline.STEPS[name]]
        assert record["complete"] and record["smoke"]
        assert record["total_seconds"] == pytest.approx(sum(s["seconds"] for s in record["steps"]))
        for step in record["steps"]:
            assert step["seconds"] > 0 and step["max_rss_mb"] > 50   # a Python process at least
            notebook = step["name"] != "report"
            assert (step["parameters"].get("SMOKE") is True) == notebook
            assert step["parameters"]["DATA_DIR" if notebook else "--data-dir"] == str(root / "data")
    assert written["run"]["started_clean"] is True and written["study"]["started_clean"] is False
    assert not any((root / "checkpoints" / "pipeline").glob("*.json"))   # nothing in progress
    # the executed notebooks went under the root, the repository's were not touched
    assert sorted(p.name for p in (root / "notebooks").glob("*.ipynb")) == sorted(
        s.notebook for n in pipeline.PIPELINES for s in pipeline.STEPS[n] if s.notebook)
    report = (root / "report" / "report.md").read_text()
    assert "`make run`: " in report and "SMOKE" in report


PROGRESS_BAR = re.compile(r"\r|\x08|━|█|\d+/\d+ \[|it/s\b")


def test_executed_notebooks_read_clean(smoke_run):
    """What a committed notebook may hold: at most 10 lines of stderr, no progress-bar line and
    no absolute path of the machine that ran it; progress went to the pipeline's log (and its
    terminal) instead."""
    root, _ = smoke_run
    machine_paths = {str(root), str(NOTEBOOKS.parent)}
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        stderr, texts = [], []
        for cell in json.loads(path.read_text())["cells"]:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream":
                    text = "".join(output["text"])
                    texts.append(text)
                    if output["name"] == "stderr":
                        stderr += text.splitlines()
                texts += ["".join(v) for k, v in (output.get("data") or {}).items()
                          if k.startswith("text/")]
        lines = [line for text in texts for line in text.splitlines()]
        assert len(stderr) <= 10, (path.name, stderr[:12])
        assert not [line for line in lines if PROGRESS_BAR.search(line)], path.name
        assert not [line for line in lines if any(m in line for m in machine_paths)], path.name
    log = (root / "checkpoints" / "pipeline" / "logs" / "run" / "02_baseline_finetune.log")
    assert "utils.training.train] epoch 1" in log.read_text()


def executed(smoke_dirs, name):
    cells = json.loads((smoke_dirs["nb"] / name).read_text())["cells"]
    assert not [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    return cells


def test_01_data_prep_smoke(smoke_dirs):
    executed(smoke_dirs, "01_data_prep.ipynb")
    for split in ("train", "validation", "test"):
        assert (smoke_dirs["data"] / f"{split}.csv").stat().st_size > 0


def test_02_baseline_smoke(smoke_dirs):
    executed(smoke_dirs, "02_baseline_finetune.ipynb")
    result = json.loads((smoke_dirs["results"] / "baseline.json").read_text())
    assert result["smoke"] is True
    # the test scores are those of the confusion matrix over the whole SMOKE test split
    import numpy as np
    matrix = np.asarray(result["test"]["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == result["split_sizes"]["test"] == 60
    assert result["test"]["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    precision = np.diag(matrix) / np.maximum(matrix.sum(axis=0), 1)
    recall = np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    assert result["test"]["macro_f1"] == pytest.approx(f1.mean())
    assert result["test"]["macro_recall"] == pytest.approx(recall.mean())
    assert result["split_sizes"]["train"] == 240
    for fig in ("02_training_curves.png", "02_confusion_matrix.png"):
        assert (smoke_dirs["figures"] / fig).stat().st_size > 1000
    assert (smoke_dirs["checkpoints"] / "baseline" / "best" / "model.weights.h5").exists()


def test_03_block_pruning_smoke(smoke_dirs):
    executed(smoke_dirs, "03_block_pruning.ipynb")
    record = json.loads((smoke_dirs["results"] / "block_pruning.json").read_text())
    for cost in record["step_cost"].values():   # each ratio is of its own two timings
        assert cost["ratio"] == pytest.approx(cost["regularized_step_seconds"] / cost["plain_step_seconds"])
    # one run passes every target (SMOKE's tiny encoder overshoots: a head is 12.5% of it)
    reached = [r["sparsity"] for r in record["reached"]]
    assert [r["target"] for r in record["reached"]] == record["settings"]["targets"]
    assert all(s >= t - 1e-9 for s, t in zip(reached, record["settings"]["targets"]))
    assert [r["model"][:25] for r in record["before_recovery"]] == ["block snapshot", "dense, units cut one-shot"]
    assert "penalty_config" not in record   # the penalty-in-the-loss run is notebook 09's
    snapshots = smoke_dirs["checkpoints"] / "block_pruning" / "snapshots"
    assert len(list(snapshots.glob("sparsity_*/model_spec.json"))) == len(reached)


def test_04_thresholding_smoke(smoke_dirs):
    executed(smoke_dirs, "04_thresholding.ipynb")
    import pandas as pd
    curve = pd.read_csv(smoke_dirs["results"] / "sparsity_sweep.csv")
    from utils.pruning.sweep import SWEEP_COLUMNS
    assert list(curve.columns[:len(SWEEP_COLUMNS)]) == SWEEP_COLUMNS
    block = curve[curve.method == "block"]
    # every snapshot of notebook 03 is evaluated as saved and after recovery, zeros kept
    for target, rows in block.groupby("target_sparsity"):
        assert len(rows) == 2 and rows.sparsity_encoder_linear.nunique() == 1
        assert rows.sparsity_encoder_linear.iloc[0] >= target - 1e-9
    # final points carry the validation score every choice is made on, and the test interval
    final = block[block.final.astype(bool)]
    assert final.val_macro_f1.between(0, 1).all() and final.retrained.astype(bool).all()
    assert (final.diff_low <= final.diff_macro_f1).all() and (final.diff_macro_f1 <= final.diff_high).all()
    record = json.loads((smoke_dirs["results"] / "thresholding.json").read_text())
    assert record["selected_on"] == "validation" and record["targets"]
    # the latency-targeted run (SMOKE's 0.7 and 0.5, as shares of the part of dense above the
    # floor with no sublayers): each snapshot's predicted cost is within its target, recovered
    # like the sparsity ones and timed with dense
    run = record["latency_run"]
    targets = run["targets"]
    assert len(targets) == 2 and 1 > targets[0] > targets[1] > 0
    assert [r["target"] for r in run["reached"]] == targets
    assert all(r["cost_ratio"] <= r["target"] + 1e-9 for r in run["reached"])
    latency_rows = pd.read_csv(smoke_dirs["results"] / "latency_sweep.csv")
    assert set(latency_rows.method) == {"block_latency"} and len(latency_rows) == 4
    final_latency = latency_rows[latency_rows.final.astype(bool)]
    assert sorted(final_latency.target_latency) == sorted(targets)
    assert final_latency.speedup_batch1.notna().all()
    assert latency_rows[~latency_rows.final.astype(bool)].speedup_batch1.isna().all()
    for target in targets:
        assert (smoke_dirs["checkpoints"] / "pruned_latency" / f"cost_{round(100 * target)}"
                / "model_spec.json").exists()
    points = pd.DataFrame(run["points"])
    assert sorted(points.curve.value_counts().items()) == [("latency targets", 2),
                                                            ("sparsity targets", len(block) // 2)]
    assert points.on_validation_front.any() and points.speedup_batch1.gt(0).all()
    for fig in ("04_sparsity_vs_f1.png", "04_sparsity_heatmap.png", "04_speedup_vs_f1.png"):
        assert (smoke_dirs["figures"] / fig).stat().st_size > 1000


def test_07_comparison_smoke(smoke_dirs):
    executed(smoke_dirs, "07_comparison.ipynb")
    import pandas as pd
    from utils.pruning.sweep import SWEEP_COLUMNS
    rows = pd.read_csv(smoke_dirs["results"] / "baselines_sweep.csv")
    assert list(rows.columns[:len(SWEEP_COLUMNS)]) == SWEEP_COLUMNS
    # SMOKE grid [0.5]: every method reaches it on the tiny model (heads and FFN are each half
    # of its linear weights)
    final = rows[rows.final]
    assert set(final.method) == {"magnitude_global", "layers", "ffn_neurons", "fisher_mask",
                                 "cofi"}
    assert (final.sparsity_encoder_linear >= 0.5 - 1e-9).all()
    assert len(rows[~rows.final]) == 5
    # equal budgets: block pruning's point at 50% trained 2 steps x 32 in its pruning run, then
    # on notebook 04's SMOKE recovery of 96; CoFi prunes on the 64 and recovers on the 96, the
    # others recover on all 160 (a pass over 160 of the 240 SMOKE tweets)
    trained = final.set_index("method").train_examples_total
    assert (trained == 64 + 96).all()
    assert rows[~rows.final].set_index("method").train_examples_total["cofi"] == 64
    assert final.val_macro_f1.between(0, 1).all()
    record = json.loads((smoke_dirs["results"] / "baselines.json").read_text())
    assert record["retrain"]["examples"] == 96 and record["retrain"]["distill_alpha"] == 0.5
    assert record["train_budget"]["0.5"] == 160
    assert record["cofi"]["reg_learning_rate"] == 0.5   # the validation-best run committed
    assert record["decisions"]["fisher_mask"]["chosen"]["0.5"]
    assert record["decisions"]["cofi"]["runs"]["0.5"]["train_examples"] == 64
    latency = pd.read_csv(smoke_dirs["results"] / "latency_pareto.csv")
    assert {"dense", "block", "block_latency", "magnitude_global", "fisher_mask", "cofi"} <= set(latency.method)
    targets = json.loads((smoke_dirs["results"] / "thresholding.json").read_text())[
        "latency_run"]["targets"]
    assert sorted(latency[latency.method == "block_latency"].variant) == sorted(
        f"block_latency @ {t:g}x latency" for t in targets)
    # the front holds every final snapshot of block pruning's run, not only the table's targets
    sweep = pd.read_csv(smoke_dirs["results"] / "sparsity_sweep.csv")
    snapshots = sweep[(sweep.method == "block") & sweep.final.astype(bool)].target_sparsity
    assert len(snapshots) > 1 and sorted(latency[latency.method == "block"].variant) == sorted(
        f"block @ {t:.0%}" for t in snapshots)
    # one-shot methods ran as chains; CoFi trains its gates from dense per target
    assert record["chained"] is True
    assert final.set_index("method").chained.astype(bool).to_dict() == {
        "magnitude_global": True, "layers": True, "ffn_neurons": True, "fisher_mask": True,
        "cofi": False}
    # the dominance check counts every final point of another method at or above the floor
    check = record["front_check"]
    above = latency[~latency.method.isin(["dense", "block", "block_latency"]) & latency.final.astype(bool)
                    & (latency.macro_f1 >= check["floor"])]
    assert len(check["points"]) == len(above)
    assert (latency.latency_ms_median > 0).all()
    # unstructured zeros leave the shapes alone: the compacted model keeps every parameter
    dense_params = latency[latency.method == "dense"].parameters.iloc[0]
    assert (latency[latency.method == "magnitude_global"].parameters == dense_params).all()
    assert (latency[latency.method == "layers"].parameters < dense_params).all()
    table = pd.read_csv(smoke_dirs["results"] / "comparison.csv")
    # every method with sparsity targets reaches 50%; block_latency's targets are latency shares,
    # and how sparse a latency target leaves the tiny model depends on this machine's table
    assert set(table.level) == {0.5, 0.7, 0.9}
    assert table[(table.level == 0.5) & (table.method != "block_latency")].reached.all()
    assert "block_latency" in set(table.method)
    at50 = table[table.level == 0.5].set_index("method")
    assert at50[at50.reached.astype(bool)].val_macro_f1.between(0, 1).all()
    assert at50.loc["block", "train_examples_total"] == at50.loc["fisher_mask", "train_examples_total"]
    for fig in ("07_methods_sparsity_vs_f1.png", "07_pareto_latency_vs_f1.png"):
        assert (smoke_dirs["figures"] / fig).stat().st_size > 1000


def test_05_benchmark_smoke(smoke_dirs):
    """The benchmark of the chain's own tiny models, on the snapshot chosen on validation."""
    executed(smoke_dirs, "05_benchmark.ipynb")
    bench = json.loads((smoke_dirs["results"] / "benchmark.json").read_text())
    snapshot = bench["meta"]["snapshot"]
    assert snapshot["directory"] == bench["meta"]["pruned_dir"]
    # the sparsest within 1 validation point of either of notebook 04's curves, as the rule says
    from utils.pruning import sweep
    chosen = sweep.choose_snapshot(smoke_dirs["results"], smoke_dirs["checkpoints"] / "pruned",
                                   latency_snapshots_dir=smoke_dirs["checkpoints"] / "pruned_latency")
    assert snapshot["directory"] == str(chosen.directory)
    assert snapshot["directory"].startswith((str(smoke_dirs["checkpoints"] / "pruned" / "sparsity_"),
                                             str(smoke_dirs["checkpoints"] / "pruned_latency" / "cost_")))
    assert bench["meta"]["dense_dir"] == str(smoke_dirs["checkpoints"] / "baseline" / "best")
    assert {"dense", "compact", "compact+vocab+tflite-int8"} <= set(bench["variants"])
    assert (smoke_dirs["checkpoints"] / "bench" / "compact" / "model_spec.json").exists()


def test_09_lambda_k_sweep_smoke(smoke_dirs):
    executed(smoke_dirs, "09_lambda_k_sweep.ipynb")
    record = json.loads((smoke_dirs["results"] / "lambda_k_sweep.json").read_text())
    assert len(record["rows"]) == 2 * 2 * 2  # K x lambda1 x two sparsities
    assert {r["K"] for r in record["best_at_50"]} == {1, 2}
    assert (smoke_dirs["figures"] / "09_lambda_k_sweep.png").stat().st_size > 1000
    # the comparison run: the sweep's best lambda1 at 50% for K = 1, at block pruning's budget
    run, block = record["penalty_run"], json.loads((smoke_dirs["results"] / "block_pruning.json").read_text())
    best = next(r for r in record["best_at_50"] if r["K"] == 1)
    assert run["config"]["pruning"]["lambda_group"] == best["lambda1"]
    assert run["config"]["train"] == block["settings"]["train"]
    assert [r["model"] for r in run["before_recovery"]] == ["penalty in the loss, before thresholding",
                                                            "penalty in the loss, thresholded"]
    assert run["before_recovery"][1]["sparsity_encoder_linear"] >= run["before_recovery_target"] - 0.02
    assert run["step_cost"]["ratio"] == pytest.approx(run["step_cost"]["regularized_step_seconds"]
                                                      / run["step_cost"]["plain_step_seconds"])
    assert (smoke_dirs["figures"] / "09_group_norm_histograms.png").stat().st_size > 1000
    assert (smoke_dirs["checkpoints"] / "penalty_in_loss" / "model" / "model_spec.json").exists()


def test_10_block_seed_smoke(smoke_dirs):
    executed(smoke_dirs, "10_block_seed.ipynb")
    record = json.loads((smoke_dirs["results"] / "grouping.json").read_text())
    final = [r for r in record["rows"] if r["final"]]
    assert sorted((r["method"], r["target_sparsity"]) for r in final) == [
        (m, t) for m in ("block", "block_seed") for t in (0.5, 0.7, 0.9)]
    # block_seed's run passed every target of notebook 03's run
    assert [r["target"] for r in record["seed_run"]["reached"]] == record["seed_run"]["settings"]["targets"]
    assert (smoke_dirs["figures"] / "10_grouping_vs_f1.png").stat().st_size > 1000


def test_11_recovery_budget_smoke(smoke_dirs):
    executed(smoke_dirs, "11_recovery_budget.ipynb")
    record = json.loads((smoke_dirs["results"] / "recovery_budget.json").read_text())
    # every method at every budget, the largest being the whole training split (SMOKE: 240)
    assert {(r["method"], r["recovery_examples"]) for r in record["rows"]} == {
        (m, n) for m in ("block", "penalty in the loss", "ffn_neurons", "magnitude_global") for n in (96, 240)}
    assert all(r["sparsity_encoder_linear"] >= 0.5 - 1e-9 for r in record["rows"])
    # hidden-state distillation at the smallest budget: alpha 0 is the row of the table above
    hidden = record["hidden_distillation"]
    assert {(r["method"], r["hidden_alpha"]) for r in hidden["rows"]} == {
        (m, a) for m in ("block", "ffn_neurons") for a in (0.0, 0.1, 1.0)}
    assert all(r["recovery_examples"] == 96 for r in hidden["rows"])
    without = {r["method"]: r for r in record["rows"] if r["recovery_examples"] == 96}
    for method, chosen in hidden["chosen"].items():
        best = max(r["val_macro_f1"] for r in hidden["rows"] if r["method"] == method)
        assert chosen["val_macro_f1"] == best
        assert chosen["val_gain_points"] == pytest.approx(
            100 * (best - without[method]["val_macro_f1"]))


def test_06_demo_smoke(smoke_dirs):
    """The demo of the models notebook 05 saved under the SMOKE root; the pipeline keeps its
    record and commits the notebook without outputs (a presenter opens it clean)."""
    from utils.face import demo
    cells = executed(smoke_dirs, "06_demo.ipynb")
    record = json.loads((smoke_dirs["results"] / "demo.json").read_text())
    assert record["smoke"] is True and record["time_to_first_answer_s"] > 0
    assert [r["model"] for r in record["models"]] == list(demo.DEFAULT_MODELS)
    assert all(r["errors"] == 0 and r["latency_ms_median"] > 0 for r in record["models"])
    assert (smoke_dirs["figures"] / "06_demo_latency.png").stat().st_size > 1000
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None
               for c in cells if c["cell_type"] == "code")


def test_06_demo_says_what_to_run_when_models_are_missing(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as error:
        run_notebook("06_demo.ipynb", tmp_path, SMOKE=False, ROOT=str(tmp_path),
                     DATA_DIR=str(tmp_path), RESULTS_DIR=str(tmp_path), FIGURES_DIR=str(tmp_path))
    assert "MissingModelsError" in str(error.value) and "05_benchmark" in str(error.value)


def test_06_demo_on_a_fresh_clone_answers_with_the_committed_bundles(tmp_path):
    """Before any training only the committed bundles exist (the dense model quantized, the
    pruned one): the notebook answers with them, and a run outside the pipeline writes no
    record over the committed one."""
    import shutil
    from utils.common.io import REPO_ROOT
    from utils.face import demo
    committed = [spec.path for spec in demo.DEFAULT_MODELS.values()
                 if spec.path.startswith("models/")]
    assert len(committed) == 2
    for path in committed:
        shutil.copytree(REPO_ROOT / path, tmp_path / path)
    out = run_notebook("06_demo.ipynb", tmp_path, SMOKE=False, ROOT=str(tmp_path),
                       DATA_DIR=str(tmp_path), RESULTS_DIR=str(tmp_path),
                       FIGURES_DIR=str(tmp_path))
    cells = json.loads(Path(out).read_text())["cells"]
    printed = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))
    assert "dense-int8" in printed and "pruned-int8" in printed   # both answered
    assert "truncated to the first 64" in printed                 # the long example says it
    assert "The text is empty" not in printed     # every example is a real tweet-like text
    assert not (tmp_path / "demo.json").exists()
    assert not (tmp_path / "06_demo_latency.png").exists()
    assert "not writing" in printed


def test_08_binarization_smoke(smoke_dirs):
    """Independent of the chain: SMOKE saves tiny stand-ins for the models it compares."""
    executed(smoke_dirs, "08_binarization.ipynb")
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
    assert (smoke_dirs["figures"] / "08_bits_vs_f1.png").stat().st_size > 1000


def test_12_replicates_smoke(smoke_dirs):
    executed(smoke_dirs, "12_replicates.ipynb")
    record = json.loads((smoke_dirs["results"] / "replicates.json").read_text())
    assert record["seeds"] == [42, 43]   # SMOKE: two seeds
    # every replicated method at every level it reaches, over both seeds
    points = {(p["method"], p["level"]): p for p in record["points"]}
    assert {("block", t) for t in (0.5, 0.7, 0.9)} <= set(points)
    assert all(p["n"] == 2 and p["seeds"] == [42, 43] for p in points.values())
    # block's seed-42 rows are notebook 04's: the replicate table's mean includes them
    rows = pd.read_csv(smoke_dirs["results"] / "replicates.csv")
    block42 = rows[(rows.method == "block") & (rows.seed == 42) & rows.final].set_index("target_sparsity")
    sweep04 = pd.read_csv(smoke_dirs["results"] / "sparsity_sweep.csv").query("method == 'block' and final")
    assert block42.macro_f1.to_dict() == pytest.approx(sweep04.set_index("target_sparsity").macro_f1.to_dict())
    # the other seed ran its own block-pruning run: different rows
    block43 = rows[(rows.method == "block") & (rows.seed == 43) & rows.final].set_index("target_sparsity")
    assert set(block43.index) == set(block42.index[block42.index >= 0.5])
    assert {p["method"] for p in record["paired"]} == {"fisher_mask", "ffn_neurons"} & {m for m, _ in points}
    assert set(record["recommendation"]) == {"0.5", "0.7", "0.9"}
    assert (smoke_dirs["figures"] / "12_replicates.png").stat().st_size > 1000
