"""The written report (utils.face.report): it builds from the repository's results, every figure it
links exists, its numbers are the results files' numbers, missing results name the notebook to
run, and every $$ equation reaches the HTML as an inline PNG with the LaTeX as alt text."""
import base64
import csv
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils.face import comparison, report
from utils.measurement import dominance

REPO = Path(__file__).resolve().parent.parent
RESULTS, FIGURES, DATA = REPO / "results", REPO / "figures", REPO / "data"
MD_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
HTML_IMAGE = re.compile(r'<img\b[^>]*\bsrc="([^"]+)"')
EQUATION_IMG = re.compile(r'<img alt="([^"]*)" width="\d+" src="data:image/png;base64,([^"]+)"')


def build(tmp_path, results=RESULTS, figures=FIGURES, data=DATA, out="out"):
    paths = report.build_report(results, figures, tmp_path / out, data)
    return paths, paths["markdown"].read_text(), paths["html"].read_text()


def file_links(text, pattern):
    return [link for link in pattern.findall(text) if not link.startswith("data:")]


needs_results = pytest.mark.skipif(not (RESULTS / "baseline.json").exists(),
                                   reason="results/baseline.json not produced yet (notebook 02)")


@needs_results
def test_report_builds_and_every_linked_figure_exists(tmp_path):
    paths, md, page = build(tmp_path, out="nested/report")   # links must survive any out_dir
    md_links, html_links = file_links(md, MD_IMAGE), file_links(page, HTML_IMAGE)
    assert md_links, "the report links no figure"
    assert sorted(md_links) == sorted(html_links)
    for link in md_links:
        assert not Path(link).is_absolute()
        assert (paths["markdown"].parent / link).resolve().is_file(), link
    # every section heading made it to both files
    for heading in ("Abstract", "Data", "Dense baseline", "Method", "Sparsity against accuracy",
                    "Comparison with other pruning methods", "Memory and latency",
                    "Live demo", "Binarized weights", "Limitations", "Reproduction",
                    "References"):
        assert f"## {heading}" in md and f"<h2>{heading}</h2>" in page


@needs_results
def test_numbers_are_read_from_the_results_files(tmp_path):
    baseline = json.loads((RESULTS / "baseline.json").read_text())
    row = "| fine-tuned encoder (dense) | " + " | ".join(
        f"{100 * baseline['test'][k]:.1f}%" for k in ("accuracy", "macro_f1", "macro_recall"))
    _, md, _ = build(tmp_path)
    assert row in md
    # The same build from a copy whose scores were changed must show the changed scores: a
    # number typed into the report would not follow.
    results = tmp_path / "results"
    results.mkdir()
    baseline["test"].update(accuracy=0.61234, macro_f1=0.54321, macro_recall=0.49876)
    (results / "baseline.json").write_text(json.dumps(baseline))
    _, md, _ = build(tmp_path, results=results, out="changed")
    assert "| fine-tuned encoder (dense) | 61.2% | 54.3% | 49.9% |" in md
    assert row not in md
    assert "54.3% macro-F1" in md   # the abstract too


@needs_results
def test_benchmark_numbers_and_command_come_from_benchmark_json(tmp_path):
    if not (RESULTS / "benchmark.json").exists():
        pytest.skip("results/benchmark.json not produced yet")
    bench = json.loads((RESULTS / "benchmark.json").read_text())
    _, md, _ = build(tmp_path)
    compact = bench["variants"]["compact"]
    assert (f"{compact['latency_ms_median']:.2f} ({compact['latency_speedup_vs_dense']:.2f}x)"
            in md)
    assert f"--pruned {report.from_repo_root(bench['meta']['pruned_dir'])}" in md
    assert f"--rounds {bench['meta']['rounds']}" in md


@needs_results
def test_benchmark_targets_are_computed_from_benchmark_json(tmp_path):
    if not (RESULTS / "benchmark.json").exists():
        pytest.skip("results/benchmark.json not produced yet")
    bench = json.loads((RESULTS / "benchmark.json").read_text())
    v = bench["variants"]
    ratio = v["compact"]["throughput_speedup_vs_dense"]
    size = v["dense"]["disk_bytes"] / v["compact+vocab+int8"]["disk_bytes"]
    section = section_of(build(tmp_path)[1], "Memory and latency")
    assert f"batch 32: {'met' if ratio >= 2 else '**not met**'} ({ratio:.2f}x)" in section
    assert f"{'met' if size >= 8 else '**not met**'} ({size:.1f}x)" in section
    # mutation: the same file with a slower compact model and a larger int8 one
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    v["compact"]["throughput_speedup_vs_dense"] = 1.5
    v["compact+vocab+int8"]["disk_bytes"] = v["dense"]["disk_bytes"] / 4
    (results / "benchmark.json").write_text(json.dumps(bench))
    section = section_of(build(tmp_path, results=results, out="changed")[1], "Memory and latency")
    assert "batch 32: **not met** (1.50x)" in section
    assert "smaller on disk than dense: **not met** (4.0x)" in section


def test_missing_results_build_and_name_what_to_run(tmp_path):
    paths, md, page = build(tmp_path, results=tmp_path / "no-results",
                            figures=tmp_path / "no-figures", data=tmp_path / "no-data")
    assert paths["markdown"].exists() and paths["html"].exists()
    for producer in ("01_data_prep.ipynb", "02_baseline_finetune.ipynb",
                     "03_block_pruning.ipynb", "04_thresholding.ipynb", "07_comparison.ipynb",
                     "05_benchmark.ipynb", "06_demo.ipynb", "08_binarization.ipynb"):
        assert f"run `notebooks/{producer}`" in md or f"run `{producer}" in md, producer
    assert md.count("*Not run yet:*") >= 8
    for heading, notebook in (("Live demo", "06_demo.ipynb"),
                              ("Binarized weights", "08_binarization.ipynb")):
        section = md.split(f"## {heading}")[1].split("\n## ")[0]
        assert f"*Not run yet:* `{tmp_path / 'no-results'}/" in section, heading
        assert f"run `notebooks/{notebook}`" in section, heading
        assert f"--cwd notebooks notebooks/{notebook} notebooks/{notebook}" in md   # Reproduction
    assert file_links(md, MD_IMAGE) == [] and file_links(page, HTML_IMAGE) == []
    assert "$$" in md   # the method's equations do not depend on any result


def test_equations_become_inline_pngs_with_the_latex_as_alt_text(tmp_path):
    _, md, page = build(tmp_path, results=tmp_path / "none", figures=tmp_path / "none",
                        data=tmp_path / "none")
    latex = re.findall(r"^\$\$ (.+?) \$\$$", md, flags=re.MULTILINE)
    assert len(latex) == len(report.EQUATIONS) + len(report.BINARIZATION_EQUATIONS) >= 7
    images = EQUATION_IMG.findall(page)
    assert [html.unescape(alt) for alt, _ in images] == latex
    for _, data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert "$$" not in page   # nothing left for a (missing) MathJax to render


def test_comparison_section_renders_notebook_05_tables(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    comparison = [
        {"level": 0.5, "method": "block", "reached": True, "max_sparsity_encoder_linear": 0.95,
         "sparsity_encoder_linear": 0.5, "macro_f1": 0.8031, "gap_to_dense_points": 4.21,
         "latency_ms_median": 9.876, "latency_speedup_vs_dense": 1.39, "rank": 1.0},
        {"level": 0.5, "method": "heads", "reached": False, "max_sparsity_encoder_linear": 0.3333,
         "sparsity_encoder_linear": "", "macro_f1": "", "gap_to_dense_points": "",
         "latency_ms_median": "", "latency_speedup_vs_dense": "", "rank": ""}]
    latency = [
        {"variant": "dense", "sparsity_encoder_linear": 0.0, "parameters": 22714371,
         "latency_ms_median": 13.7, "latency_speedup_vs_dense": 1.0, "macro_f1": 0.8453},
        {"variant": "block @ 50%", "sparsity_encoder_linear": 0.5, "parameters": 15000000,
         "latency_ms_median": 9.876, "latency_speedup_vs_dense": 1.39, "macro_f1": 0.8031},
        {"variant": "magnitude_global @ 50%", "sparsity_encoder_linear": 0.5,
         "parameters": 22714371, "latency_ms_median": 14.2, "latency_speedup_vs_dense": 0.96,
         "macro_f1": 0.79}]   # slower and worse than dense: not on the Pareto front
    for name, rows in (("comparison.csv", comparison), ("latency_pareto.csv", latency)):
        with open(results / name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    _, md, _ = build(tmp_path, results=results, figures=tmp_path / "none",
                     data=tmp_path / "none")
    section = md.split("## Comparison with other pruning methods")[1].split("\n## ")[0]
    assert "| ≥ 50% | 1 | block | 50.0% | 80.3% | 4.2 | 9.88 | 1.39x |" in section
    assert "| ≥ 50% | – | heads | not reached (max 33.3%) |" in section
    assert "| block @ 50% | 50.0% | 15,000,000 | 9.88 | 1.39x | 80.3% |" in section
    assert "magnitude_global @ 50%" not in section
    assert "`results/comparison.csv` is missing" not in section


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# notebook 08's columns (results/binarization.csv) with distinctive values; empty cells as
# pandas writes them for the reference rows
BINARIZATION_ROWS = [
    {"variant": "float32", "macro_f1": 0.84567, "accuracy": 0.86, "macro_recall": 0.84,
     "disk_bytes": 90876543, "disk_mb": 90.876543, "bits_per_dense_weight": 32.0123,
     "trained": True, "embeddings": "", "granularity": "", "train_seconds": "",
     "gap_to_dense_points": 0.0, "smaller_than_dense": 1.0},
    {"variant": "pruned + int8", "macro_f1": 0.80111, "accuracy": 0.82, "macro_recall": 0.8,
     "disk_bytes": 12345678, "disk_mb": 12.345678, "bits_per_dense_weight": 4.3456,
     "trained": True, "embeddings": "", "granularity": "", "train_seconds": "",
     "gap_to_dense_points": -4.456, "smaller_than_dense": 7.3611},
    {"variant": "binary layers + embeddings", "macro_f1": 0.41234, "accuracy": 0.5,
     "macro_recall": 0.4, "disk_bytes": 3456789, "disk_mb": 3.456789,
     "bits_per_dense_weight": 1.2178, "trained": False, "embeddings": True,
     "granularity": "row", "train_seconds": "", "gap_to_dense_points": -43.333,
     "smaller_than_dense": 26.2893},
    {"variant": "binary layers + embeddings", "macro_f1": 0.72345, "accuracy": 0.75,
     "macro_recall": 0.7, "disk_bytes": 3456789, "disk_mb": 3.456789,
     "bits_per_dense_weight": 1.2178, "trained": True, "embeddings": True,
     "granularity": "row", "train_seconds": 1234.5, "gap_to_dense_points": -12.222,
     "smaller_than_dense": 26.2893}]
BINARIZATION_META = {"smoke": False, "train_examples": 7654, "epochs": 3, "learning_rate": 0.00031,
                     "distill_alpha": 0.35, "temperature": 2.5, "granularity": "row",
                     "clip": 1.25, "dense_parameters": 22713987, "notebook_seconds": 3000.0,
                     "git_commit": "abcdef1234567890"}
DEMO = {"smoke": False, "time_to_first_answer_s": 23.456, "load_seconds": 9.876,
        "timing_tweets": 321, "repeats": 3, "max_length": 64, "git_commit": "1234567abcdef",
        "models": [
            {"model": "dense", "description": "fine-tuned MiniLM, float32",
             "latency_ms_median": 14.321, "latency_ms_p90": 17.654, "speedup_vs_dense": 1.0,
             "label_agreement_with_dense": 1.0, "disk_mb": 90.8765, "parameters": 22713987,
             "errors": 0},
            {"model": "compact+int8", "description": "compact, int8 weights",
             "latency_ms_median": 4.567, "latency_ms_p90": 5.678, "speedup_vs_dense": 3.1357,
             "label_agreement_with_dense": 0.9377, "disk_mb": 12.3456, "parameters": 7654321,
             "errors": 2}]}


def new_results(tmp_path, binarization=True, meta=True, demo=True):
    results = tmp_path / "results"
    results.mkdir()
    if binarization:
        write_csv(results / "binarization.csv", BINARIZATION_ROWS)
    if meta:
        (results / "binarization.json").write_text(json.dumps(BINARIZATION_META))
    if demo:
        (results / "demo.json").write_text(json.dumps(DEMO))
    return results


def section_of(md, heading):
    assert f"## {heading}\n" in md, heading
    return md.split(f"## {heading}\n")[1].split("\n## ")[0]


def test_binarization_section_renders_notebook_07_results(tmp_path):
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "08_bits_vs_f1.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    _, md, page = build(tmp_path, results=new_results(tmp_path, demo=False), figures=figures,
                        data=tmp_path / "none")
    section = section_of(md, "Binarized weights")
    assert "| float32 | – | 84.6% | 0.0 | 90.88 | 1.0x | 32.01 |" in section
    assert "| pruned + int8 | – | 80.1% | -4.5 | 12.35 | 7.4x | 4.35 |" in section
    assert "| binary layers + embeddings | no | 41.2% | -43.3 | 3.46 | 26.3x | 1.22 |" in section
    assert "| binary layers + embeddings | yes | 72.3% | -12.2 | 3.46 | 26.3x | 1.22 |" in section
    for text in ("7,654 training tweets", "3 epochs", "learning rate 0.00031",
                 "distillation a = 0.35 at T = 2.5", "per output unit", "clip c = 1.25",
                 "20.6 min of STE training", "(the whole notebook: 50.0 min)",
                 "22,713,987 dense parameters",
                 "`binary layers + embeddings`, is 26.3x smaller than dense at 72.3%",
                 "commit `abcdef1`", "Rohde & Canumalla"):
        assert text in section, text
    # the method as display equations (drawn to PNG in the HTML), and the figure that exists
    for latex in report.BINARIZATION_EQUATIONS.values():
        assert f"$$ {latex} $$" in section
        assert f'alt="{html.escape(latex, quote=True)}"' in page
    assert "(../figures/08_bits_vs_f1.png)" in section
    assert "Not run yet" not in section and "SMOKE" not in md
    assert "Rohde, T., Canumalla, A." in section_of(md, "References")


def test_demo_section_renders_notebook_06_results(tmp_path):
    _, md, _ = build(tmp_path, results=new_results(tmp_path, binarization=False, meta=False),
                     figures=tmp_path / "none", data=tmp_path / "none")
    section = section_of(md, "Live demo")
    # sizes in MB = 10^6 bytes, one decimal, as everywhere (utils.common.sizes); demo.json of
    # older code holds disk_mb only
    assert "| `dense` | 14.32 | 17.65 | 1.00x | 100.0% | 90.9 | 22,713,987 |" in section
    assert "| `compact+int8` | 4.57 | 5.68 | 3.14x | 93.8% | 12.3 | 7,654,321 |" in section
    assert "Machine: CPU not recorded." in section   # DEMO has no machine facts
    assert "- `dense`: fine-tuned MiniLM, float32" in section
    assert "- `compact+int8`: compact, int8 weights" in section
    for text in ("first answer 23.5 s after", "9.9 s of it spent loading the 2 models",
                 "321 test tweets", "median of 3 forward passes", "`compact+int8` 2 of 321",
                 "`notebooks/06_demo.ipynb`", 'python -m utils.face.demo \"some tweet\"',
                 "commit `1234567`", "*(Figure `"):   # 06_demo_latency.png is missing: no link
        assert text in section, text
    assert "Not run yet" not in section
    # the binarization files are missing: that section names its notebook
    assert "run `notebooks/08_binarization.ipynb`" in section_of(md, "Binarized weights")


def test_smoke_demo_and_binarization_are_flagged_and_missing_json_is_named(tmp_path):
    results = new_results(tmp_path, meta=False)
    demo = dict(DEMO, smoke=True)
    (results / "demo.json").write_text(json.dumps(demo))
    _, md, _ = build(tmp_path, results=results, figures=tmp_path / "none",
                     data=tmp_path / "none")
    warning = md.split("**Warning: SMOKE results**")[1].split("\n")[0]
    assert f"`{results / 'demo.json'}`" in warning
    assert "**SMOKE run**" in section_of(md, "Live demo")
    section = section_of(md, "Binarized weights")
    assert "| binary layers + embeddings | yes | 72.3% |" in section   # the csv alone
    assert f"*Not run yet:* `{results / 'binarization.json'}` is missing" in section
    assert "run `notebooks/08_binarization.ipynb`" in section


def test_markdown_table_and_pareto_front():
    assert report.table(["a", "b"], [[1, "2.0%"]]) == "| a | b |\n|---|---:|\n| 1 | 2.0% |"
    rows = [{"latency_ms_median": c, "macro_f1": q} for c, q in ((3, 0.7), (1, 0.5), (2, 0.4),
                                                                  (2, 0.6))]
    front = dominance.pareto_front(rows)
    assert [(r["latency_ms_median"], r["macro_f1"]) for r in front] == [(1, 0.5), (2, 0.6),
                                                                        (3, 0.7)]


def test_report_module_does_not_import_tensorflow():
    code = ("import sys, utils.face.report; bad = [m for m in ('tensorflow', 'keras', 'torch') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_pipeline_lines_come_from_pipeline_json_and_refresh_the_readme(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    step = {"name": "02_baseline_finetune", "started": "t", "seconds": 1500.0,
            "max_rss_mb": 3000.0, "parameters": {}}
    record = {"commit": "abcdef123", "started_clean": True, "complete": True,
              "steps": [step, {**step, "name": "report", "seconds": 60.0, "max_rss_mb": 80.0}],
              "total_seconds": 1560.0}
    (results / "pipeline.json").write_text(json.dumps({"run": record}))
    paths, md, _ = build(tmp_path, results=results, figures=tmp_path, data=tmp_path)
    expected = ("- `make run`: 26.0 min in 2 steps (longest: 02_baseline_finetune, 25.0 min), "
                "peak resident memory 2.9 GiB (02_baseline_finetune); from a clean start, code at "
                "commit `abcdef1`; machine: CPU not recorded.")
    assert expected in md
    # the CPU beside the wall times: a record with machine facts names it, an older one
    # (host: cpus only) says it was not recorded
    machine = {"cpu": "Fake CPU 9000", "vector_extensions": ["AVX2", "AMX-TILE"],
               "logical_cpus": 4}
    for extra, cpu in (({"machine": machine}, "machine: Fake CPU 9000, 4 logical CPUs, vector "
                                              "extensions AVX2 / AMX-TILE."),
                       ({"host": {"cpus": 2, "platform": "linux"}},
                        "machine: CPU not recorded, 2 logical CPUs.")):
        (results / "pipeline.json").write_text(json.dumps({"run": {**record, **extra}}))
        _, md, _ = build(tmp_path, results=results, figures=tmp_path, data=tmp_path)
        assert expected.replace("machine: CPU not recorded.", cpu) in md
    assert "- `make study`: not measured yet" in md
    # mutation: other numbers in the file, other sentence; while the report step runs, the
    # record holds every step but the report
    from utils.face.pipeline import STEPS
    record.update(total_seconds=3000.0, started_clean=False, complete=False,
                  steps=[{**step, "name": s.name, "seconds": 3000.0 if s.name == step["name"]
                          else 0.0} for s in STEPS["run"] if s.name != "report"])
    (results / "pipeline.json").write_text(json.dumps({"run": record}))
    _, md, _ = build(tmp_path, results=results, figures=tmp_path, data=tmp_path)
    assert "50.0 min in 6 steps before the report" in md and "reusing earlier checkpoints" in md
    assert "Over the" not in md
    # mutation: a step over 6 GiB, a total over 50 minutes, steps at two commits
    record["steps"][0].update(max_rss_mb=7000.0, commit="1234567aaa")
    record["total_seconds"] = 5000.0
    (results / "pipeline.json").write_text(json.dumps({"run": record}))
    _, md, _ = build(tmp_path, results=results, figures=tmp_path, data=tmp_path)
    assert "**Over the 50-minute target.**" in md
    assert ("(The targets were set on a machine type that ran 02_baseline_finetune in 12 min; "
            "here it took 50.0 min.)") in " ".join(md.split())
    assert "**Over the 6 GiB per-step target:** 01_data_prep 6.8 GiB." in md
    assert "resumed across commits: `1234567` (01_data_prep); `abcdef1` (02_baseline_finetune, " in md
    record["steps"][0].update(max_rss_mb=3000.0, commit="abcdef123")
    record["total_seconds"] = 3000.0
    # a study stopped after its first step says so, naming what did not run
    study = {"commit": "abcdef123", "started_clean": False, "complete": False,
             "steps": [{**step, "name": "07_comparison", "seconds": 3600.0}],
             "total_seconds": 3600.0}
    (results / "pipeline.json").write_text(json.dumps({"run": record, "study": study}))
    _, md, _ = build(tmp_path, results=results, figures=tmp_path, data=tmp_path)
    assert ("- `make study`: **incomplete** — 1 of 7 steps measured in the recorded attempt "
            "(07_comparison 60.0 min, 2.9 GiB); not run in it: 08_binarization, "
            "09_lambda_k_sweep, 10_block_seed, 11_recovery_budget, 12_replicates, report") in md

    readme = tmp_path / "README.md"
    start, end = report.readme_markers("pipeline")
    readme.write_text(f"# Title\n\n{start}\nold numbers\n{end}\n\nrest\n")
    report.main(["--results-dir", str(results), "--figures-dir", str(tmp_path), "--data-dir",
                 str(tmp_path), "--out-dir", str(tmp_path / "out"), "--readme", str(readme)])
    text = readme.read_text()
    assert "old numbers" not in text and "50.0 min in 6 steps" in text
    assert text.startswith("# Title\n\n") and text.endswith(f"{end}\n\nrest\n")
    assert not report.update_readme_block(tmp_path / "missing.md", "pipeline", "x")


def test_comparison_conclusions_follow_the_numbers():
    """Mutation test: swap two methods' numbers and the sentence says the other one wins."""
    rows = [{"level": 0.5, "method": "layers", "reached": True, "rank": 1, "macro_f1": 0.82},
            {"level": 0.5, "method": "block", "reached": True, "rank": 2, "macro_f1": 0.80},
            {"level": 0.7, "method": "block", "reached": False, "rank": float("nan"),
             "macro_f1": float("nan")},
            {"level": 0.7, "method": "layers", "reached": True, "rank": 1, "macro_f1": 0.75}]
    lines = report.comparison_conclusions(rows)
    assert lines[0] == ("- At ≥ 50% encoder-linear sparsity, `layers` has the best macro-F1 "
                        "(82.0%); `block` ranks 2 of 2 (80.0%, 2.0 points behind).")
    assert "`block` does not reach this sparsity" in lines[1]
    swapped = [dict(r) for r in rows]
    for r in swapped[:2]:
        r["rank"], r["macro_f1"] = 3 - r["rank"], {0.82: 0.80, 0.80: 0.82}[r["macro_f1"]]
    lines = report.comparison_conclusions(swapped)
    assert lines[0] == ("- At ≥ 50% encoder-linear sparsity, `block` has the best macro-F1 "
                        "(82.0%) — block pruning wins, 2.0 points ahead of `layers`.")
    # mutation: a margin that rounds to 0.0 is a tie at this precision, either way round
    swapped[0]["macro_f1"] = 0.8196
    assert report.comparison_conclusions(swapped)[0].endswith(
        "block pruning ranks first, less than 0.1 points ahead of `layers` (a tie at this precision).")
    rows[1]["macro_f1"] = 0.8196
    assert report.comparison_conclusions(rows)[0].endswith(
        "`block` ranks 2 of 2 (82.0%, less than 0.1 points behind).")


def test_comparison_is_stale_when_its_block_rows_are_not_in_the_sweep():
    sweep = [{"method": "block", "retrained": True, "macro_f1": 0.83, "sparsity_encoder_linear": 0.5},
             {"method": "block", "retrained": False, "macro_f1": 0.70, "sparsity_encoder_linear": 0.7}]
    comparison = [{"method": "block", "reached": True, "macro_f1": 0.83, "sparsity_encoder_linear": 0.5},
                  {"method": "layers", "reached": True, "macro_f1": 0.80, "sparsity_encoder_linear": 0.5}]
    assert not report.comparison_is_stale(comparison, sweep)
    comparison[0]["macro_f1"] = 0.70      # a point of an older sweep
    assert report.comparison_is_stale(comparison, sweep)


def test_target_lines_say_met_or_not_from_the_numbers():
    """Mutation test: move a gap across its limit and the verdict flips."""
    class Rep:
        r = {"baseline": {"test": {"macro_f1": 0.845}, "train_seconds": 900.0},
             "block_pruning": {"before_recovery_target": 0.5, "train_seconds": 370.0,
                               "before_recovery": [{"gap_points": 1.5}]},
             "thresholding": {"baseline_test": {"macro_f1": 0.845}, "targets": {
                 ">=50%": {"gap_points": 0.9, "sparsity_encoder_linear": 0.5, "val_macro_f1": 0.82},
                 ">=70%": {"gap_points": 3.2, "sparsity_encoder_linear": 0.8, "val_macro_f1": 0.81}}},
             "sweep": [{"method": "block", "final": True, "target_sparsity": 0.7,
                        "sparsity_encoder_linear": 0.7, "val_macro_f1": 0.80, "macro_f1": 0.82}],
             "pipeline": {"run": {"total_seconds": 80 * 60, "started_clean": True}}}
    lines = report.target_lines(Rep)
    assert lines[0].startswith("- Test macro-F1 within 1 point(s) of dense at ≥50% encoder-linear sparsity: met (0.9")
    assert ": **not met** (3.2 points at the validation-chosen 80.0% point); the 70% snapshot itself " \
           "scored 80.00% on validation against 81.00%, and 2.5 points below dense on test." in lines[1]
    assert lines[2].endswith("met (1.5 points).") and "not met" not in lines[2]
    assert "met (0.41x)" in lines[4] and "**not met** (80.0 min)" in lines[5]
    Rep.r["thresholding"]["targets"][">=50%"]["gap_points"] = 1.1
    Rep.r["block_pruning"]["before_recovery"][0]["gap_points"] = 2.5
    lines = report.target_lines(Rep)
    assert "**not met** (1.1 points" in lines[0] and "**not met** (2.5 points)" in lines[2]


def test_budgets_equal_follows_the_training_examples():
    """Mutation test: one method 11% over block pruning's budget and the claim goes."""
    rows = [{"level": 0.5, "method": "block", "reached": True, "train_examples_total": 9824},
            {"level": 0.5, "method": "layers", "reached": True, "train_examples_total": 9824},
            {"level": 0.5, "method": "heads", "reached": False, "train_examples_total": None},
            {"level": 0.7, "method": "block", "reached": True, "train_examples_total": 15680},
            {"level": 0.7, "method": "cofi", "reached": True, "train_examples_total": 15680 * 1.09}]
    assert comparison.budgets_equal(rows)
    rows[-1]["train_examples_total"] = 15680 * 1.11
    assert not comparison.budgets_equal(rows)
    rows[-1]["train_examples_total"] = float("nan")            # unknown is not equal
    assert not comparison.budgets_equal(rows)


def test_comparison_protocol_says_equal_budgets_only_when_they_are(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    rows = [{"level": 0.5, "method": "block", "reached": True, "max_sparsity_encoder_linear": 0.9,
             "sparsity_encoder_linear": 0.5, "macro_f1": 0.83, "gap_to_dense_points": 0.5,
             "rank": 1.0, "val_macro_f1": 0.82, "train_examples_total": 9824},
            {"level": 0.5, "method": "layers", "reached": True, "max_sparsity_encoder_linear": 1.0,
             "sparsity_encoder_linear": 0.5, "macro_f1": 0.80, "gap_to_dense_points": 3.5,
             "rank": 2.0, "val_macro_f1": 0.79, "train_examples_total": 9824}]
    write_csv(results / "comparison.csv", rows)
    (results / "baselines.json").write_text(json.dumps({
        "methods": ["magnitude_global", "layers"], "train_budget": {"0.5": 9824, "0.7": 15680},
        "retrain": {"examples": 4000, "epochs": 1, "distill_alpha": 0.5},
        "git_commit": "abc"}))
    _, md, _ = build(tmp_path, results=results, figures=tmp_path / "none", data=tmp_path / "none")
    section = section_of(md, "Comparison with other pruning methods")
    assert "as many examples as block pruning's point at that level" in section
    assert "9,824 at 50%, 15,680 at 70%" in section and "gradual" not in section
    assert "trained on equal budgets at each level (within 10%" in md
    rows[1]["train_examples_total"] = 4000                      # the old protocol's numbers
    write_csv(results / "comparison.csv", rows)
    _, md, _ = build(tmp_path, results=results, figures=tmp_path / "none", data=tmp_path / "none")
    assert "equal budgets" not in md and "budgets are not equal" in md
    assert "one chain" not in md
    record = json.loads((results / "baselines.json").read_text())
    (results / "baselines.json").write_text(json.dumps({**record, "chained": True}))
    _, md, _ = build(tmp_path, results=results, figures=tmp_path / "none", data=tmp_path / "none")
    assert "run as one chain" in section_of(md, "Comparison with other pruning methods")


def test_fisher_variant_text_names_the_repairs_notebook_07_ran():
    from utils.face import report
    assert "without" in report.fisher_variant_text(None)
    text = report.fisher_variant_text({"fisher_options": {"rearrange": True, "tune": False},
                                       "fisher_options_from": "../results/exploratory/fisher_tuning.json"})
    assert "rearrangement" in text and "least-squares" not in text and "validation" in text
    text = report.fisher_variant_text({"fisher_options": {"rearrange": False, "tune": True}})
    assert "least-squares" in text and "validation" not in text


def test_studies_older_than_the_run_are_flagged_as_describing_earlier_models(tmp_path):
    results = new_results(tmp_path)
    (results / "recovery_budget.json").write_text(json.dumps({
        "target": 0.5, "dense_test_macro_f1": 0.8, "dense_val_macro_f1": 0.8, "git_commit": "abc",
        "rows": [{"method": "block", "recovery_examples": 4000, "macro_f1": 0.8, "val_macro_f1": 0.8}]}))
    step = {"seconds": 60.0, "max_rss_mb": 100.0, "parameters": {}}
    study = {"commit": "abc", "started_clean": False, "complete": True, "total_seconds": 120.0,
             "steps": [{**step, "name": "08_binarization", "started": "2026-12-01T22:00:00+00:00"},
                       {**step, "name": "11_recovery_budget", "started": "2026-12-02T12:00:00+00:00"}]}
    run = {"commit": "abc", "started_clean": True, "complete": True, "total_seconds": 60.0,
           "started": "2026-12-02T09:00:00+00:00",
           "steps": [{**step, "name": "01_data_prep", "started": "2026-12-02T09:00:00+00:00"}]}
    (results / "pipeline.json").write_text(json.dumps({"run": run, "study": study}))
    assert report.stale_study_steps({"run": run, "study": study}) == ["08_binarization"]
    _, md, _ = build(tmp_path, results=results, figures=tmp_path, data=tmp_path)
    assert "**Earlier models:** step 08_binarization" in section_of(md, "Binarized weights")
    assert "Earlier models" not in section_of(md, "Study: recovery budget against optimiser")
    assert "The studies 08_binarization ran before the `make run`" in md
    # mutation: the run started before both study steps -> nothing is flagged
    run["started"] = "2026-12-01T20:00:00+00:00"
    (results / "pipeline.json").write_text(json.dumps({"run": run, "study": study}))
    _, md, _ = build(tmp_path, results=results, figures=tmp_path, data=tmp_path)
    assert "Earlier models" not in md and "checkpoints of an earlier run" not in md
    # records without times flag nothing
    assert report.stale_study_steps({"run": {}, "study": study}) == []
    # a run step redone after a study step that reads it (08 reads 05's models; 11 does not)
    run["steps"].append({**step, "name": "05_benchmark", "started": "2026-12-02T13:00:00+00:00"})
    assert report.stale_study_steps({"run": run, "study": study}) == ["08_binarization"]
    run["steps"][-1]["started"] = "2026-12-01T21:00:00+00:00"   # before both: nothing
    assert report.stale_study_steps({"run": run, "study": study}) == []


@needs_results
def test_readme_comparison_lines_say_when_they_come_from_an_earlier_run(tmp_path):
    import shutil
    results = tmp_path / "results"
    results.mkdir()
    for name in ("baseline.json", "comparison.csv"):
        shutil.copy(RESULTS / name, results / name)
    step = {"seconds": 60.0, "max_rss_mb": 100.0, "parameters": {}}
    run = {"commit": "abc", "started_clean": True, "complete": True, "total_seconds": 60.0,
           "started": "2026-12-02T09:00:00+00:00",
           "steps": [{**step, "name": "01_data_prep", "started": "2026-12-02T09:00:00+00:00"}]}
    study = {"commit": "abc", "started_clean": False, "complete": True, "total_seconds": 60.0,
             "steps": [{**step, "name": "07_comparison", "started": "2026-12-01T09:00:00+00:00"}]}

    def readme_results():
        (results / "pipeline.json").write_text(json.dumps({"run": run, "study": study}))
        rep = report.Report({"results": results, "data": tmp_path}, tmp_path, tmp_path)
        return report.readme_blocks(rep)["results"]
    assert "from an earlier run's checkpoints" in readme_results()
    study["steps"][0]["started"] = "2026-12-02T10:00:00+00:00"   # mutation: 07 after the run
    assert "from an earlier run's checkpoints" not in readme_results()


def latency_point(curve, label, speedup, val, on_front, sparsity=0.6):
    return {"curve": curve, "label": label, "sparsity_encoder_linear": sparsity,
            "speedup_batch1": speedup, "speedup_batched": speedup + 0.5,
            "predicted_speedup_batch1": speedup * 1.1, "val_macro_f1": val,
            "macro_f1": val + 0.01, "on_validation_front": on_front}


def test_latency_target_section_reads_the_run_from_thresholding_json(tmp_path):
    class Rep:
        r = {"thresholding": {"latency_run": {
            "reached": [{"target": 0.5, "sparsity": 0.62, "step": 100, "cost_ratio": 0.5}],
            "train_seconds": 330.0, "timing": {"examples": 200, "rounds": 3},
            "median_abs_prediction_error": 0.123,
            "points": [latency_point("sparsity targets", "70%", 1.43, 0.822, True),
                       latency_point("latency targets", "0.5x", 1.73, 0.814, True),
                       latency_point("latency targets", "0.65x", 1.42, 0.818, False)]}}}
        provenance = staticmethod(lambda key: "Source: x.")
        figure = staticmethod(lambda name, caption, key: f"[{name}]")
    text = report.latency_target_section(Rep)
    assert "0.5x at 62.0% encoder-linear sparsity" in text and "5.5 min" in text
    assert "off by 12.3%" in text
    assert "| latency targets | 0.5x | 60.0% | 1.73x | 2.23x | 1.90x | 81.4% | 82.4% | yes |" in text
    assert ("the joint front holds 1 point of the sparsity targets curve (1.43x); "
            "1 point of the latency targets curve (1.73x).") in text
    # mutation: the front moves, the sentence follows
    Rep.r["thresholding"]["latency_run"]["points"][2]["on_validation_front"] = True
    assert "2 points of the latency targets curve (1.42x, 1.73x)" in report.latency_target_section(Rep)
    del Rep.r["thresholding"]["latency_run"]
    assert "*Not run yet:*" in report.latency_target_section(Rep)


def test_front_check_lines_say_met_only_when_every_point_is_dominated():
    settings = {"front_check": {"floor": 0.792, "speed_ratio": 0.95, "margin": 0.003, "points": [
        {"variant": "layers @ 70%", "latency_speedup_vs_dense": 3.48, "macro_f1": 0.792,
         "dominated": True, "block_variant": "block_latency @ 0.25x latency",
         "block_speedup": 3.6, "block_macro_f1": 0.80},
        {"variant": "fisher_mask @ 90%", "latency_speedup_vs_dense": 2.34, "macro_f1": 0.812,
         "dominated": False, "block_variant": "block @ 90%", "block_speedup": 2.4,
         "block_macro_f1": 0.805}]}}
    lines = report.front_check_lines(settings)
    assert "**not met** (1 of 2 dominated)" in lines[0] and "79.2%" in lines[0]
    assert lines[1] == ("  - fisher_mask @ 90% (2.34x, 81.2%): the closest block point at least "
                        "as fast, block @ 90%, runs at 2.40x with 80.5%.")
    settings["front_check"]["points"][1]["dominated"] = True
    lines = report.front_check_lines(settings)
    assert "**met** (2 of 2 dominated)" in lines[0] and len(lines) == 1
    assert report.front_check_lines({}) == []
    settings["front_check"]["points"] = []
    assert "nothing for block pruning to dominate" in report.front_check_lines(settings)[0]


def test_peer_check_finds_a_peer_that_a_simple_method_beats_at_equal_speed():
    def row(method, level, speedup, f1, final=True):
        return {"method": method, "variant": f"{method} @ {level}%", "final": final,
                "latency_speedup_vs_dense": speedup, "macro_f1": f1}
    latency = [row("dense", 0, 1.0, 0.846), row("cofi", 50, 1.54, 0.831),
               row("cofi", 70, 2.57, 0.808), row("ffn_neurons", 50, 1.47, 0.832),
               row("layers", 50, 1.75, 0.812), row("layers", 70, 2.0, 0.85, final=False),
               row("fisher_mask", 50, 1.34, 0.842)]
    assert [c["beaten_by"] for c in report.peer_check(latency)] == [[], []]
    lines = report.peer_check_lines(latency)
    assert "`heads` did not run" in lines[0] and "no simple method that ran" in lines[1]
    assert "**met** for all 2 peer points" in lines[2] and len(lines) == 3
    # Mutations: a faster FFN point, or a better layer-drop point, beats the peer.
    latency[3]["latency_speedup_vs_dense"] = 1.54
    assert "**not met**, 1 of 2 peer points beaten" in report.peer_check_lines(latency)[2]
    latency[3]["latency_speedup_vs_dense"] = 1.47
    latency[4].update(latency_speedup_vs_dense=2.6, macro_f1=0.809)
    lines = report.peer_check_lines(latency)
    assert lines[3] == "  - cofi @ 70% (2.57x, 80.8%) is beaten by layers @ 50% (2.60x, 80.9%)."
    # A point that is not final (before recovery) never counts.
    latency[4]["final"] = False
    assert "**met**" in report.peer_check_lines(latency)[2]


def test_hidden_distillation_lines_state_the_validation_choice_from_the_record():
    from utils.face import report
    assert "not measured" in " ".join(report.hidden_distillation_lines(None, 4000))
    rows = [{"method": "block", "hidden_alpha": a, "val_macro_f1": v, "macro_f1": t}
            for a, v, t in ((0.0, 0.80, 0.81), (0.1, 0.83, 0.82), (1.0, 0.79, 0.84))]
    rows += [{"method": "ffn_neurons", "hidden_alpha": a, "val_macro_f1": v, "macro_f1": v}
             for a, v in ((0.0, 0.82), (0.1, 0.81), (1.0, 0.80))]
    from utils.pruning import sweep
    h = {"alphas": [0.1, 1.0], "rows": rows, "chosen": sweep.hidden_distillation_choice(rows)}
    text = "\n".join(report.hidden_distillation_lines(h, 4000))
    assert "for `block` validation chooses hidden_alpha = 0.1, +3.0 points" in text
    assert "for `ffn_neurons` validation keeps hidden_alpha = 0" in text
    assert "| block | 81.0% (80.0%) | 82.0% (83.0%) | 84.0% (79.0%) |" in text
    assert "do not follow this choice for `block`;" in text   # notebook 04 used 0
    used = "\n".join(report.hidden_distillation_lines(h, 4000, used=0.1))
    assert "do not follow this choice for `ffn_neurons`;" in used    # block's 0.1 is used
    only_block = {**h, "chosen": {"block": h["chosen"]["block"]}}
    assert "do not follow" not in "\n".join(report.hidden_distillation_lines(only_block, 4000,
                                                                            used=0.1))
    # mutation: a better validation score at alpha 1 changes the sentence
    rows[2]["val_macro_f1"] = 0.9
    h["chosen"] = sweep.hidden_distillation_choice(rows)
    assert "chooses hidden_alpha = 1, +10.0 points" in "\n".join(
        report.hidden_distillation_lines(h, 4000))


def test_data_section_of_tweet_eval_counts_its_official_splits(tmp_path):
    """TweetEval keeps its official splits and cleans each (stats["per_split_cleaning"]); the
    data section says so from those counts instead of CrowdFlower's top-level ones."""
    from utils.data import corpus as data
    sys.path.insert(0, str(Path(__file__).parent))
    from test_data import _write_tweet_eval
    directory = _write_tweet_eval(tmp_path / "te")
    (directory / "test_text.txt").write_text(   # one test tweet that train already has
        "train tweet 0 @a http://y.co\n" + "\n".join(f"t{i}" for i in range(1, 6)) + "\n")
    _, stats = data.load_sentiment_dataset(source=str(directory), return_stats=True,
                                           verbose=False)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "stats.json").write_text(json.dumps(stats))
    _, md, _ = build(tmp_path, results=tmp_path / "none", figures=tmp_path / "none",
                     data=data_dir)
    section = section_of(md, "Data")
    assert "official train / validation / test splits" in section
    assert "Of its 18 tweets" in section and "1 validation or test tweets" in section
    assert "leaving 17" in section and "Not run yet" not in section


@pytest.mark.parametrize("speed_ratio, margin, strictly_better",
                         [(1.0, 0.0, False), (1.0, 0.0, True), (0.95, 0.003, False)])
def test_dominators_match_a_numpy_reference(speed_ratio, margin, strictly_better):
    """The one dominance rule of the front check and the peer check, against numpy masks."""
    rng = np.random.default_rng(0)
    speed = rng.choice([1.0, 1.5, 2.0, 2.5], size=40)          # ties on purpose
    f1 = rng.choice([0.80, 0.81, 0.82, 0.83], size=40)
    rows = [{"variant": str(i), "latency_speedup_vs_dense": s, "macro_f1": q}
            for i, (s, q) in enumerate(zip(speed, f1))]
    for point in rows[:10]:
        fast = speed >= speed_ratio * point["latency_speedup_vs_dense"]
        good = (f1 > point["macro_f1"] - margin) if strictly_better else \
            (f1 >= point["macro_f1"] - margin)
        want = [str(i) for i in np.flatnonzero(fast & good)]
        got = [r["variant"] for r in dominance.dominators(point, rows, speed_ratio, margin,
                                                        strictly_better)]
        assert got == want


def test_a_results_directory_without_results_is_refused_and_nothing_is_rewritten(tmp_path, capsys):
    """A typo in --results-dir must not rewrite the report and the README as "not run yet"."""
    readme = tmp_path / "README.md"
    readme.write_text("kept\n")
    code = report.main(["--results-dir", str(tmp_path / "resluts"), "--out-dir",
                        str(tmp_path / "report"), "--readme", str(readme)])
    assert code == 2 and "holds no results file" in capsys.readouterr().err
    assert not (tmp_path / "report").exists() and readme.read_text() == "kept\n"



def test_commands_in_the_report_run_from_the_repository_root():
    """Paths a notebook recorded relative to notebooks/ become repository-root paths in the
    report's commands (they were '../checkpoints/...', which works only from notebooks/)."""
    assert report.from_repo_root("../checkpoints/baseline/best") == "checkpoints/baseline/best"
    assert report.from_repo_root("results") == "notebooks/results"
    text = (REPO / "report" / "report.md").read_text()
    assert "--dense checkpoints/" in text and " ../" not in text


def test_a_fresh_clone_rebuilds_the_committed_report(tmp_path, monkeypatch):
    """`make report` on a fresh clone (only committed files: results/, figures/, data/stats.json)
    writes the committed report/report.md again, nothing "not run yet" (the git-ignored
    splits of data/ are not needed)."""
    tracked = subprocess.run(["git", "ls-files", "results", "figures", "data"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    paths = report.build_report(Path("results"), Path("figures"), Path("report"), Path("data"))
    assert paths["markdown"].read_text() == (REPO / "report" / "report.md").read_text()


def test_deployment_section_compares_each_bundle_with_int8_alone(tmp_path):
    """With ONNX Runtime rows, the deployment section states each bundle's speedup over the dense
    model quantized the same way and over dense ONNX Runtime int8 (ratios and per-round ranges
    from benchmark.json), the targets, and a tie when the per-round range includes 1; without
    them (an older record) it says they were not measured."""
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    bench = json.loads((results / "benchmark.json").read_text())
    v = bench["variants"]
    for name in [n for n in v if "onnx" in n or n.startswith("sparser")]:
        del v[name]                  # a record from before ONNX Runtime and the sparser snapshot
    (results / "benchmark.json").write_text(json.dumps(bench))
    _, md, _ = build(tmp_path, results=results, out="old")
    assert "Not measured yet: the committed benchmark predates the ONNX Runtime rows" in md

    def row(latency, rounds, f1, file_bytes):
        return {**v["compact+vocab+tflite-int8"], "latency_ms_median": latency,
                "latency_ms_round_medians": rounds, "macro_f1": f1, "weight_bytes": file_bytes,
                "throughput_ex_per_s": 1000 / latency}
    dense_f1 = v["dense"]["macro_f1"]
    v["dense+tflite-int8"] = row(2.0, [2.0, 2.1, 1.9], dense_f1, 23e6)
    v["compact+vocab+tflite-int8"] = row(1.0, [1.0, 1.0, 1.0], dense_f1 - 0.005, 9e6)
    v["dense+onnx-int8"] = row(1.5, [1.5, 1.4, 1.6], dense_f1 + 0.001, 23e6)
    v["compact+vocab+onnx-int8"] = row(1.45, [1.45, 1.5, 1.35], dense_f1 - 0.03, 7e6)
    bench["meta"].update(tflite_threads=2, onnx_threads=2, onnxruntime="1.32.0")
    (results / "benchmark.json").write_text(json.dumps(bench))
    _, md, _ = build(tmp_path, results=results, out="new")
    section = md.split("## Deployed")[1].split("\n## ")[0]
    # TFLite: 2.00x over its int8 alone (rounds 1.90-2.10), 1.50x over dense ONNX int8
    assert "pruning adds 2.00x (per round 1.90-2.10x) over int8 alone on this runtime" in section
    assert "against `dense+onnx-int8` it is 1.50x (per round 1.40-1.60x) faster" in section
    # ONNX: 1.5/1.45 = 1.03x, per round 1.5/1.45 .. 1.6/1.35 -> 0.93-1.19: a tie
    compact = " ".join(section.split())
    assert ("pruning adds 1.03x (per round 0.93-1.19x) over int8 alone on this runtime "
            "(`dense+onnx-int8`, what a user would ship) (a tie), at -3.1 points") in compact
    assert "≥ 2.0x faster than both at ≤ 1.0 point below dense: **not met**" in compact
    assert "model file under 10 MB: met" in compact
    assert "ship: `compact+vocab+tflite-int8` (TFLite), the fastest on this machine" in compact
    # a sparser snapshot's bundle: the far target is read off it, and says so
    v["sparser+vocab+onnx-int8"] = row(0.45, [0.45, 0.46, 0.44], dense_f1 - 0.015, 5e6)
    (results / "benchmark.json").write_text(json.dumps(bench))
    _, md, _ = build(tmp_path, results=results, out="sparser")
    compact = " ".join(md.split("## Deployed")[1].split("\n## ")[0].split())
    assert ("≥ 3.0x faster than `dense+onnx-int8` at ≤ 2.0 points below dense (read off "
            "`sparser+vocab+onnx-int8`, the sparsest snapshot within 2.0 points of dense on "
            "validation: 3.33x faster, 1.5 points below dense on test): met") in compact
    assert "| ONNX Runtime | `sparser+vocab+onnx-int8` | `dense+onnx-int8` |" in md


def test_replicates_section_and_readme_lines_come_from_replicates_json(tmp_path):
    """The replicate table, the paired differences with their verdicts and the recommendation
    are rendered from results/replicates.json as notebook 12 writes it; changing a number there
    changes the sentence (mutation)."""
    import pandas as pd

    from test_replicates import example_rows
    from utils.face import replicates
    results = new_results(tmp_path)
    rows = example_rows()
    levels = [0.5, 0.7, 0.9]
    table = replicates.point_table(rows, 0.85, levels)
    paired = replicates.paired_table(rows, levels)
    record = {"seeds": [42, 43, 44], "dense_test_macro_f1": 0.85, "git_commit": "abc",
              "not_replicated": replicates.NOT_REPLICATED, "points": table.to_dict("records"),
              "paired": paired.to_dict("records"), "targets": replicates.block_targets(rows, 0.85),
              "recommendation": {f"{k:g}": v for k, v in
                                 replicates.recommendation(table, paired, levels).items()}}
    (results / "replicates.json").write_text(json.dumps(record))
    _, md, _ = build(tmp_path, results=results, figures=tmp_path, data=tmp_path)
    section = section_of(md, "Replicates: which differences survive another seed")
    assert "At 50%, block is tied with fisher_mask" in section
    assert "At 70%, block is ahead of fisher_mask" in section
    assert "Choose **fisher_mask** at 50%" in section and "`cofi`:" in section
    block70 = table[(table.method == "block") & (table.level == 0.7)].iloc[0]
    assert f"{100 * block70.macro_f1_mean:.2f} ± {100 * block70.macro_f1_std:.2f}" in section
    assert "| 50% | block − fisher_mask | +0.20 |" in section
    readme = "\n".join(report.replicate_lines(report.Report(
        {"results": results, "data": tmp_path}, tmp_path, tmp_path / "out")))
    assert "Choose **fisher_mask** at 50%" in readme and "At 50%" not in readme
    # mutation: fisher_mask ahead at 70% in the record -> the sentence follows
    record["paired"][1].update(test_verdict="lower", test_diff_points=-3.0)
    (results / "replicates.json").write_text(json.dumps(record))
    _, md, _ = build(tmp_path, results=results, figures=tmp_path, data=tmp_path)
    assert "At 70%, block is behind fisher_mask on test: -3.00 points" in md
    assert pd.DataFrame(record["paired"]).level.tolist() == [0.5, 0.7, 0.9]


@needs_results
def test_the_abstract_reads_block_prunings_gaps_off_the_replicates_when_there_are_any(tmp_path):
    import shutil

    from test_replicates import example_rows
    from utils.face import replicates
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    (results / "replicates.json").unlink(missing_ok=True)
    _, md, _ = build(tmp_path, results=results, figures=tmp_path, data=tmp_path)
    assert "validation; one seed" in section_of(md, "Abstract")
    rows = example_rows()
    targets = replicates.block_targets(rows, 0.85)
    (results / "replicates.json").write_text(json.dumps({
        "seeds": [42, 43, 44], "dense_test_macro_f1": 0.85, "not_replicated": {}, "points": [],
        "paired": [], "targets": targets, "recommendation": {}}))
    _, md, _ = build(tmp_path, results=results, figures=tmp_path, data=tmp_path)
    abstract = section_of(md, "Abstract")
    assert "means over 3 seeds" in abstract
    assert " / ".join(f"{t['gap_points']:.1f}" for t in targets.values()) + " points" in abstract


@needs_results
def test_method_section_reads_the_comparison_run_from_notebook_09(tmp_path):
    """The penalty-in-the-loss run is notebook 09's: its settings, step cost and rows before
    recovery come from lambda_k_sweep.json's penalty_run, beside notebook 03's rows."""
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    block = json.loads((results / "block_pruning.json").read_text())
    for key in ("penalty_config", "penalty_train_seconds", "penalty_history"):
        block.pop(key, None)
    block["before_recovery"] = [r for r in block["before_recovery"] if not r["model"].startswith("penalty")]
    block["step_cost"] = {k: v for k, v in block["step_cost"].items() if k.startswith("block")}
    (results / "block_pruning.json").write_text(json.dumps(block))
    sweep = json.loads((results / "lambda_k_sweep.json").read_text())
    sweep.pop("penalty_run", None)
    (results / "lambda_k_sweep.json").write_text(json.dumps(sweep))
    _, md, _ = build(tmp_path, results=results, data=tmp_path)
    assert "is not in its\n  results here" in md or "is not in its results here" in md
    assert "penalty in the loss, thresholded" not in section_of(md, "Method")
    sweep["penalty_run"] = {
        "config": {"pruning": {"mode": "inner", "num_blocks": 2, "lambda_group": 0.016, "lambda_polar": 0.001,
                               "polarization": "normalized", "lambda_warmup_fraction": 0.1}},
        "train_seconds": 600.0, "history": [{}], "before_recovery_target": 0.5,
        "step_cost": {"ratio": 1.25, "regularized_step_seconds": 0.5, "plain_step_seconds": 0.4},
        "before_recovery": [{"model": "penalty in the loss, thresholded", "sparsity_encoder_linear": 0.5,
                             "val_macro_f1": 0.31, "gap_points": 52.0}]}
    (results / "lambda_k_sweep.json").write_text(json.dumps(sweep))
    _, md, _ = build(tmp_path, results=results, data=tmp_path)
    method = section_of(md, "Method")
    assert "K = 2, λ₁ =\n  0.016" in method or "K = 2, λ₁ = 0.016" in method
    assert "(10.0 min)" in method and "costs 1.25x a plain one" in method
    assert "| penalty in the loss, thresholded | 50.0% | – | 31.0% | 52.0 |" in method
    assert "not in its results here" not in method
