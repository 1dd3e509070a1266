"""The written report (utils.report): it builds from the repository's results, every figure it
links exists, its numbers are the results files' numbers, missing results name the notebook to
run, and every $$ equation reaches the HTML as an inline PNG with the LaTeX as alt text."""
import base64
import csv
import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from utils import report

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
                    "Limitations", "Reproduction", "References"):
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
    assert f"--pruned {bench['meta']['pruned_dir']}" in md
    assert f"--rounds {bench['meta']['rounds']}" in md


def test_missing_results_build_and_name_what_to_run(tmp_path):
    paths, md, page = build(tmp_path, results=tmp_path / "no-results",
                            figures=tmp_path / "no-figures", data=tmp_path / "no-data")
    assert paths["markdown"].exists() and paths["html"].exists()
    for producer in ("01_data_prep.ipynb", "02_baseline_finetune.ipynb",
                     "03_block_pruning.ipynb", "04_thresholding.ipynb", "05_results.ipynb",
                     "python -m utils.bench"):
        assert f"run `notebooks/{producer}`" in md or f"run `{producer}" in md, producer
    assert md.count("*Not run yet:*") >= 6
    assert file_links(md, MD_IMAGE) == [] and file_links(page, HTML_IMAGE) == []
    assert "$$" in md   # the method's equations do not depend on any result


def test_equations_become_inline_pngs_with_the_latex_as_alt_text(tmp_path):
    _, md, page = build(tmp_path, results=tmp_path / "none", figures=tmp_path / "none",
                        data=tmp_path / "none")
    latex = re.findall(r"^\$\$ (.+?) \$\$$", md, flags=re.MULTILINE)
    assert len(latex) == len(report.EQUATIONS) >= 5
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


def test_markdown_table_and_pareto_front():
    assert report.table(["a", "b"], [[1, "2.0%"]]) == "| a | b |\n|---|---:|\n| 1 | 2.0% |"
    rows = [{"latency_ms_median": c, "macro_f1": q} for c, q in ((3, 0.7), (1, 0.5), (2, 0.4),
                                                                  (2, 0.6))]
    front = report.pareto_front(rows)
    assert [(r["latency_ms_median"], r["macro_f1"]) for r in front] == [(1, 0.5), (2, 0.6),
                                                                        (3, 0.7)]


def test_report_module_does_not_import_tensorflow():
    code = ("import sys, utils.report; bad = [m for m in ('tensorflow', 'keras', 'torch') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
