"""The figures: every PNG in figures/ is one the report embeds (and the reverse), one style per
method, and `python -m utils.face.figures` redraws them from the committed results with axes
that show the message (read back from the Figure objects, never from pixels)."""
import json
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from utils.common.io import REPO_ROOT
from utils.face import figures, plots

RESULTS, FIGURES, DATA = REPO_ROOT / "results", REPO_ROOT / "figures", REPO_ROOT / "data"
EMBEDDED = re.compile(r"\]\(\.\./figures/([^)]+\.png)\)")


def report_figures():
    return set(EMBEDDED.findall((REPO_ROOT / "report" / "report.md").read_text()))


def report_code_figures():
    """The figure names the report's code asks for (it writes report.md from them)."""
    return set(re.findall(r'"(\d\d_\w+\.png)"', (REPO_ROOT / "utils/face/report.py").read_text()))


def committed_method_names():
    """Every method name in results/: `method` columns of the CSVs and fields of the JSON
    records' rows and points."""
    names = set()
    for path in RESULTS.glob("*.csv"):
        frame = pd.read_csv(path)
        if "method" in frame.columns:
            names |= set(frame.method.dropna())
    for path in RESULTS.glob("*.json"):
        def walk(value):
            if isinstance(value, dict):
                if isinstance(value.get("method"), str):
                    names.add(value["method"])
                for item in value.values():
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)
        walk(json.loads(path.read_text()))
    names |= set(json.loads((RESULTS / "baselines.json").read_text())["methods"])
    return names


# ------------------------------------------------------------------ figures/ and the report

def test_every_png_in_figures_is_embedded_by_the_report_and_exists():
    on_disk = {p.name for p in FIGURES.glob("*.png")}
    embedded = report_figures()
    assert embedded, "report/report.md embeds no figure: the pattern no longer matches"
    assert on_disk - embedded == set(), "figures the report does not use: remove or embed them"
    assert embedded - on_disk == set(), "figures the report embeds but figures/ lacks"


def test_the_reports_code_names_exactly_the_committed_figures():
    """Every figure the report's code names is committed, except one whose study has not
    written its results yet (the report then says which step draws it); nothing else."""
    from pathlib import Path

    from utils.face import figures
    on_disk = {p.name for p in FIGURES.glob("*.png")}
    drawings = figures.drawings(RESULTS, REPO_ROOT / "data")
    missing = report_code_figures() - on_disk
    assert on_disk <= report_code_figures()
    for name in missing:   # e.g. 12_replicates.png before notebook 12 ran
        assert name in drawings and not all(Path(f).exists() for f in drawings[name][0]), name


def not_run_yet():
    """Figures of the entry point whose input files are not committed: a study that has not
    run yet (12_replicates.png before notebook 12 ran)."""
    from pathlib import Path
    return {name for name, (inputs, _) in figures.drawings(RESULTS, DATA).items()
            if not all(Path(f).exists() for f in inputs)}


def test_the_entry_point_covers_every_committed_figure_but_those_it_lists():
    drawn = set(figures.drawings(RESULTS, DATA))
    assert drawn.isdisjoint(figures.NOT_REDRAWN)
    assert not_run_yet() <= {"12_replicates.png"}
    assert (drawn - not_run_yet()) | set(figures.NOT_REDRAWN) == {p.name for p in FIGURES.glob("*.png")}
    for name in figures.NOT_REDRAWN:   # the docstring says why each is not redrawn
        assert name in figures.__doc__


# ------------------------------------------------------------------ one style per method

def test_each_method_has_its_own_colour_and_marker_and_label():
    styles = list(plots.METHOD_STYLE.values())
    assert len({(s.color, s.marker) for s in styles}) == len(styles)
    assert len({s.color for s in styles}) == len(styles)
    assert len({s.label for s in styles}) == len(styles)


def test_every_method_in_the_committed_results_has_a_style():
    names = committed_method_names()
    assert {"dense", "block", "block_latency", "cofi", "block_seed"} <= names
    assert names - set(plots.METHOD_STYLE) == set()


def test_an_unknown_method_is_an_error_naming_it():
    with pytest.raises(KeyError, match="no_such_method.*METHOD_STYLE"):
        plots.method_style("no_such_method")


# ------------------------------------------------------------------ the redrawn figures

@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    lines = []
    result = figures.render(RESULTS, out, DATA, report=lines.append)
    yield out, result, lines
    for fig in result.values():
        plt.close(fig)


def test_render_draws_every_figure_from_the_committed_results(drawn):
    out, result, lines = drawn
    assert set(result) == set(figures.drawings(RESULTS, DATA)) - not_run_yet()
    for name in result:
        assert (out / name).stat().st_size > 10_000, name
    assert len([line for line in lines if line.startswith("skipped")]) == len(not_run_yet())


def _dense_test_macro_f1():
    return 100 * json.loads((RESULTS / "thresholding.json").read_text())["baseline_test"]["macro_f1"]


def test_sparsity_figure_shows_the_one_point_band_around_dense(drawn):
    ax = drawn[1]["04_sparsity_vs_f1.png"].axes[0]
    low, high = ax.get_ylim()
    dense = _dense_test_macro_f1()
    assert low < dense - 1 and dense + 1 < high
    assert high - low < 15, f"y-axis spans {high - low:.1f} points: the ±1 band is a flat line"


def test_sparsity_figure_marks_the_points_below_its_axis(drawn):
    ax = drawn[1]["04_sparsity_vs_f1.png"].axes[0]
    low = ax.get_ylim()[0]
    sweep = pd.read_csv(RESULTS / "sparsity_sweep.csv")
    below = sorted(100 * sweep.macro_f1[100 * sweep.macro_f1 < low])
    assert below, "the committed sweep has collapsed points: the test expects some"
    texts = [t.get_text() for t in ax.texts]
    for value in below:
        assert f"{value:.1f}%" in texts


def test_sparsity_figure_draws_interval_bars_and_uses_the_reports_names(drawn):
    ax = drawn[1]["04_sparsity_vs_f1.png"].axes[0]
    bars = [c for c in ax.containers if c.__class__.__name__ == "ErrorbarContainer"]
    final = pd.read_csv(RESULTS / "sparsity_sweep.csv").diff_low.notna().sum()
    assert sum(len(c.lines[2][0].get_segments()) for c in bars) == final
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "dense, cut one-shot" in labels          # the report's sparsity table's column
    assert not any("no regulariser" in label for label in labels)


def test_pareto_figure_keeps_the_region_near_dense_and_marks_the_outlier(drawn):
    latency = pd.read_csv(RESULTS / "latency_pareto.csv")
    dense = 100 * latency[latency.method == "dense"].macro_f1.iloc[0]
    for ax in drawn[1]["07_pareto_latency_vs_f1.png"].axes[:2]:
        low, high = ax.get_ylim()
        assert low < dense - 1 and dense + 1 < high and high - low < 20
        far = 100 * latency.macro_f1[100 * latency.macro_f1 < low]
        assert len(far) and all(any(t.get_text().startswith(f"{v:.1f}%") for t in ax.texts)
                                for v in far)


def test_legends_sit_outside_the_axes(drawn):
    for name in ("04_sparsity_vs_f1.png", "07_methods_sparsity_vs_f1.png",
                 "07_pareto_latency_vs_f1.png", "08_bits_vs_f1.png", "01_class_balance.png"):
        fig = drawn[1][name]
        fig.canvas.draw()
        legend = next(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)
        box = legend.get_window_extent()
        assert all(box.x0 >= ax.get_window_extent().x1 - 1 for ax in fig.axes), name


def test_methods_figure_has_one_legend_entry_per_method(drawn):
    fig = drawn[1]["07_methods_sparsity_vs_f1.png"]
    labels = [t.get_text() for ax in fig.axes if ax.get_legend()
              for t in ax.get_legend().get_texts()]
    methods = {s.label for s in plots.METHOD_STYLE.values()}
    shown = [label for label in labels if label in methods]
    assert len(shown) == len(set(shown)) >= 7


def test_bits_figure_is_in_percent(drawn):
    ax = drawn[1]["08_bits_vs_f1.png"].axes[0]
    low, high = ax.get_ylim()
    ticks = [t for t in ax.get_yticks() if low <= t <= high]
    assert ticks and min(ticks) > 1, "macro-F1 drawn as a fraction, not percent"
    assert "%" in ax.get_ylabel()


def test_sizes_are_in_mb_of_a_million_bytes(drawn):
    ax = drawn[1]["06_demo_latency.png"].axes[1]
    assert "MB = 10⁶ bytes" in ax.get_xlabel()


def test_focus_limits_hold_the_band_and_leave_room_for_far_points():
    low, high = plots.focus_limits([84.0, 83.0, 27.0], 84.4)
    assert low < 83.0 - 1 and 84.4 + 1 < high and high - low < 10
    assert plots.focus_limits([84.0], 84.4) == (84.4 - 2, 84.4 + 2)


def test_token_lengths_figure_draws_the_max_length_line():
    lengths = np.r_[np.full(2000, 20), np.full(5, 70), [300]]
    fig = plots.plot_token_lengths(lengths, 64)
    ax = fig.axes[0]
    assert ax.get_xlim()[1] < 120, "one 300-token tweet must not stretch the axis"
    assert any(np.allclose(line.get_xdata(), 64) for line in ax.lines)
    labels = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "cuts\n6 tweets" in labels and "off the axis" in labels
    plt.close(fig)


# ------------------------------------------------------------------ the command line

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "utils.face.figures", *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          check=False)


def test_cli_missing_results_dir_is_one_line_and_exit_2(tmp_path):
    done = run_cli("--results-dir", str(tmp_path / "nowhere"), "--figures-dir", str(tmp_path))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "nowhere" in done.stderr
    assert not list(tmp_path.glob("*.png"))


def test_cli_help_imports_no_matplotlib():
    code = ("import sys\nfrom utils.face import figures\ntry:\n    figures.main(['--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('matplotlib', 'tensorflow', 'keras')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_cli_redraws_one_figure(tmp_path):
    done = run_cli("--figures-dir", str(tmp_path), "--only", "08_bits_vs_f1.png")
    assert done.returncode == 0, done.stderr
    assert [p.name for p in tmp_path.glob("*.png")] == ["08_bits_vs_f1.png"]
