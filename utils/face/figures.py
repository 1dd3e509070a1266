"""Redraw figures/ from the committed results (no model, no training, no TensorFlow).

    python -m utils.face.figures [--results-dir results] [--figures-dir figures] [--data-dir data]

Each figure is drawn by the same `utils.face.plots` function its notebook calls, from the
files that notebook wrote, and written atomically (plots.save_figure):

  01_class_balance.png          data/stats.json                          (notebook 01)
  02_training_curves.png        results/baseline.json "history"          (notebook 02)
  02_confusion_matrix.png       results/baseline.json "test"             (notebook 02)
  04_sparsity_vs_f1.png         results/sparsity_sweep.csv + thresholding.json (notebook 04)
  04_sparsity_total_vs_f1.png   the same
  04_speedup_vs_f1.png          results/thresholding.json "latency_run" + baseline.json
  06_demo_latency.png           results/demo.json                        (notebook 06)
  07_methods_sparsity_vs_f1.png results/sparsity_sweep.csv, latency_sweep.csv,
                                baselines_sweep.csv, baselines.json, thresholding.json (07)
  07_pareto_latency_vs_f1.png   results/latency_pareto.csv               (notebook 07)
  08_bits_vs_f1.png             results/binarization.csv                 (notebook 08)
  09_lambda_k_sweep.png         results/lambda_k_sweep.json              (notebook 09)
  10_grouping_vs_f1.png         results/grouping.json                    (notebook 10)
  12_replicates.png             results/replicates.csv + replicates.json (notebook 12)

A figure whose input file is missing is skipped with a line saying which file. Not redrawn
here, because their inputs are not in committed files (their notebooks draw them):

  01_token_lengths.png          token counts of data/train.csv (generated, gitignored) under
                                the MiniLM tokenizer: notebooks/01_data_prep.ipynb
  09_group_norm_histograms.png  unit-group norms of the dense, penalty-in-the-loss and block
                                models' weights (checkpoints/): notebooks/09_lambda_k_sweep.ipynb
  04_sparsity_heatmap.png       zero weights per matrix of a recovered model
                                (checkpoints/pruned/): notebooks/04_thresholding.ipynb
  06_demo_fresh_clone.png       a screenshot of the live demo in headless Chromium, not a plot:
                                `make demo-screenshots` (tests/browser)
"""
from __future__ import annotations

import sys
from pathlib import Path

from utils.common import cli, io

NOT_REDRAWN = ("01_token_lengths.png", "04_sparsity_heatmap.png", "06_demo_fresh_clone.png",
               "09_group_norm_histograms.png")


def _comparison_points(results_dir):
    """Notebook 07's `points`: block pruning's points at the other methods' targets, block
    pruning to latency targets and the other methods' sweep."""
    import pandas as pd

    targets = io.read_json(results_dir / "baselines.json")["targets"]
    block = pd.read_csv(results_dir / "sparsity_sweep.csv")
    block = block[(block.method == "block")
                  & block.target_sparsity.round(4).isin([round(t, 4) for t in targets])]
    return pd.concat([block, pd.read_csv(results_dir / "latency_sweep.csv"),
                      pd.read_csv(results_dir / "baselines_sweep.csv")], ignore_index=True)


def drawings(results_dir, data_dir):
    """{figure name: (input files, function drawing it to a path)} of every figure drawn
    from committed files."""
    import pandas as pd

    from utils.data.corpus import LABELS
    from utils.face import plots

    r, d = Path(results_dir), Path(data_dir)

    def read(name):
        return io.read_json(r / name)

    def dense_test(name="thresholding.json"):
        return read(name)["baseline_test"]["macro_f1"]

    def speed_points():
        return pd.DataFrame(read("thresholding.json")["latency_run"]["points"])

    return {
        "01_class_balance.png": (
            [d / "stats.json"],
            lambda p: plots.plot_class_balance(
                io.read_json(d / "stats.json")["splits"], p,
                title=f"Class balance per split ({io.read_json(d / 'stats.json')['source']})")),
        "02_training_curves.png": (
            [r / "baseline.json"],
            lambda p: plots.plot_training_curves(read("baseline.json")["history"], p)),
        "02_confusion_matrix.png": (
            [r / "baseline.json"],
            lambda p: plots.plot_confusion_matrix(
                read("baseline.json")["test"]["confusion_matrix"], LABELS, p)),
        "04_sparsity_vs_f1.png": (
            [r / "sparsity_sweep.csv", r / "thresholding.json"],
            lambda p: plots.plot_sparsity_curves(pd.read_csv(r / "sparsity_sweep.csv"),
                                                 dense_test(), p)),
        "04_sparsity_total_vs_f1.png": (
            [r / "sparsity_sweep.csv", r / "thresholding.json"],
            lambda p: plots.plot_sparsity_curves(pd.read_csv(r / "sparsity_sweep.csv"),
                                                 dense_test(), p, x="sparsity_total")),
        "04_speedup_vs_f1.png": (
            [r / "thresholding.json", r / "baseline.json"],
            lambda p: plots.plot_speed_curves(
                speed_points(), io.best_epoch_val_macro_f1(read("baseline.json")), p)),
        "06_demo_latency.png": (
            [r / "demo.json"],
            lambda p: plots.plot_demo_latency(read("demo.json")["models"], p)),
        "07_methods_sparsity_vs_f1.png": (
            [r / n for n in ("sparsity_sweep.csv", "latency_sweep.csv", "baselines_sweep.csv",
                             "baselines.json", "thresholding.json")],
            lambda p: plots.plot_methods_sparsity(_comparison_points(r), dense_test(), p)),
        "07_pareto_latency_vs_f1.png": (
            [r / "latency_pareto.csv"],
            lambda p: plots.plot_pareto(pd.read_csv(r / "latency_pareto.csv"), p)),
        "08_bits_vs_f1.png": (
            [r / "binarization.csv"],
            lambda p: _size_vs_f1(pd.read_csv(r / "binarization.csv"), plots, p)),
        "09_lambda_k_sweep.png": (
            [r / "lambda_k_sweep.json"],
            lambda p: plots.plot_lambda_k_sweep(
                pd.DataFrame(read("lambda_k_sweep.json")["rows"]),
                read("lambda_k_sweep.json")["baseline_val_macro_f1"], p)),
        "10_grouping_vs_f1.png": (
            [r / "grouping.json"],
            lambda p: plots.plot_sparsity_curves(pd.DataFrame(read("grouping.json")["rows"]),
                                                 read("grouping.json")["dense_test_macro_f1"],
                                                 p)),
        "12_replicates.png": (
            [r / "replicates.csv", r / "replicates.json"],
            lambda p: plots.plot_replicates(
                _final(pd.read_csv(r / "replicates.csv")), pd.DataFrame(read("replicates.json")["points"]),
                read("replicates.json")["dense_test_macro_f1"], read("replicates.json")["levels"], p)),
    }


def _final(rows):
    return rows[rows.final.astype(bool)]


def _size_vs_f1(frame, plots, path):
    """Notebook 08's figure from binarization.csv: its first row is the dense float32 model."""
    rows = frame.to_dict("records")
    return plots.plot_size_vs_f1(rows, rows[0]["macro_f1"], path)


def render(results_dir="results", figures_dir="figures", data_dir="data", only=None,
           report=print):
    """Draw every figure of `drawings` whose inputs exist (those named in `only`, if given)
    into figures_dir; returns {name: matplotlib Figure}, left open for the caller."""
    figures_dir = Path(figures_dir)
    drawn = {}
    for name, (inputs, draw) in drawings(results_dir, data_dir).items():
        if only is not None and name not in only:
            continue
        missing = [str(p) for p in inputs if not p.exists()]
        if missing:
            report(f"skipped {name}: {', '.join(missing)} missing")
            continue
        drawn[name] = draw(figures_dir / name)
        report(f"wrote {io.shown(figures_dir / name)}")
    return drawn


def main(argv=None):
    parser = cli.argument_parser("utils.face.figures", __doc__)
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--figures-dir", default="figures")
    parser.add_argument("--data-dir", default="data", help="where stats.json is (notebook 01)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="redraw only these figures (file names, e.g. 08_bits_vs_f1.png)")
    args = parser.parse_args(argv)
    if not Path(args.results_dir).is_dir():
        print(f"error: results directory {args.results_dir} does not exist; pass "
              "--results-dir with the results/ of a run", file=sys.stderr)
        return 2
    import matplotlib
    matplotlib.use("Agg")   # files only, no window
    import matplotlib.pyplot as plt

    known = set(drawings(args.results_dir, args.data_dir))
    unknown = sorted(set(args.only or ()) - known)
    if unknown:
        print(f"error: --only {' '.join(unknown)}: not a figure drawn here; choose from "
              f"{', '.join(sorted(known))}", file=sys.stderr)
        return 2
    for fig in render(args.results_dir, args.figures_dir, args.data_dir, args.only).values():
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
