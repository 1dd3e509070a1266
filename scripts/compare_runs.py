"""How much do the target readings move between two runs of the same code?

Reads the target quantities from two results directories -- the committed `results/` and one
written by another run of the pipeline (`python -m utils.face.pipeline run --root DIR`, optionally
followed by the study's 07 step there) -- and writes them side by side, with each run's commit,
so that a target missed by a few tenths can be told apart from run-to-run noise:

- block pruning's test macro-F1 gap to dense at >=50% / >=70% / >=90% (validation-chosen points),
  and the before-recovery gap at the 50% target (validation);
- the benchmark's throughput ratio at batch 32 (compact) and batch-1 latency ratio;
- the comparison's front check: how many peer points a block point dominates;
- each pipeline step's minutes and peak memory.

Writes results/exploratory/replication.json.

    .venv/bin/python scripts/compare_runs.py --other DIR
"""
import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from utils.common import io


def _read(directory, name):
    path = Path(directory, name)
    return json.loads(path.read_text()) if path.exists() else None


def readings(results_dir):
    """The target quantities of one run, from its results directory (None where absent)."""
    t, bp = _read(results_dir, "thresholding.json"), _read(results_dir, "block_pruning.json")
    bench, peers = _read(results_dir, "benchmark.json"), _read(results_dir, "baselines.json")
    pipeline = _read(results_dir, "pipeline.json") or {}
    out = {"gap_points": t and {level: v["gap_points"] for level, v in t["targets"].items()},
           "before_recovery_gap_points": bp and bp["before_recovery"][0]["gap_points"],
           "dense_test_macro_f1": t and t["baseline_test"]["macro_f1"]}
    if bench:
        compact = bench["variants"]["compact"]
        out["benchmark_compact"] = {k: compact[k] for k in
                                    ("throughput_speedup_vs_dense", "latency_speedup_vs_dense")
                                    if k in compact}
    if peers and "front_check" in peers:
        points = peers["front_check"]["points"]
        out["front_check"] = {"dominated": sum(bool(p["dominated"]) for p in points),
                              "points": len(points),
                              "not_dominated": [p["variant"] for p in points
                                                if not p["dominated"]]}
    out["pipelines"] = {
        name: {"commit": record.get("commit"), "started_clean": record.get("started_clean"),
               "complete": record.get("complete"),
               "total_minutes": round(record["total_seconds"] / 60, 1)
               if "total_seconds" in record else None,
               "steps": {s["name"]: {"minutes": round(s["seconds"] / 60, 1),
                                     "max_rss_mb": round(s["max_rss_mb"])}
                         for s in record.get("steps", [])}}
        for name, record in pipeline.items() if isinstance(record, dict)}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", required=True, help="the other run's root (holding results/)")
    parser.add_argument("--out", default=str(REPO / "results" / "exploratory" / "replication.json"))
    parser.add_argument("--other-is", default="another run of the pipeline under --root",
                        help="what the other run is, for the record (e.g. where its results came from)")
    args = parser.parse_args(argv)
    other = Path(args.other, "results")
    if not other.is_dir():
        parser.error(f"{other} is not a directory: give the root a pipeline ran in (--root)")
    io.write_json(args.out, {"what": __doc__.split("\n\n")[0],
                             "committed": readings(REPO / "results"),
                             "replication": readings(other), "replication_is": args.other_is,
                             "command": ".venv/bin/python scripts/compare_runs.py --other DIR"
                                        + (f" --out {io.shown(args.out)}" if args.out != parser.get_default("out") else "")})
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
