"""The results files' schemas (utils.face.results): every committed results file holds what the
report reads; a file from an older version (a key gone, a type changed, a column dropped) is
named with its key path and the notebook to re-run; `write` refuses such a record and leaves the
file as it was; and the report built from one says so instead of raising."""
import copy
import csv
import json
import shutil
from pathlib import Path

import pytest

from utils.face import report
from utils.face import results

REPO = Path(__file__).resolve().parent.parent
RESULTS, FIGURES, DATA = REPO / "results", REPO / "figures", REPO / "data"
DIRS = {"results": RESULTS, "data": DATA}


def committed(key):
    """The repository's file for source `key`, validated (skips when it is not there:
    data/stats.json is gitignored, made by notebook 01)."""
    path = results.path_of(key, DIRS)
    if not path.exists():
        pytest.skip(f"{path} not produced here")
    return results.read(key, DIRS)


def schema_error(key, record):
    with pytest.raises(results.ResultsSchemaError) as caught:
        results.validate(key, record)
    return str(caught.value)


def drop(record, path):
    """A deep copy of `record` without the key at `path` (keys and list positions)."""
    record = copy.deepcopy(record)
    parent = record
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return record


def test_every_source_has_a_schema_and_the_report_reads_the_same_sources():
    assert set(results.SCHEMAS) | set(results.COLUMNS) == set(results.SOURCES)
    assert not set(results.SCHEMAS) & set(results.COLUMNS)
    assert all(results.SOURCES[key][0].endswith(".csv") for key in results.COLUMNS)
    assert report.SOURCES is results.SOURCES


@pytest.mark.parametrize("key", list(results.SOURCES))
def test_every_committed_results_file_validates(key):
    """The schemas match reality: what the notebooks wrote passes."""
    assert committed(key)


@pytest.mark.parametrize("key, path, shown", [
    ("thresholding", ("retrain", "examples"), '"retrain" -> "examples" is missing'),
    ("baseline", ("test", "macro_f1"), '"test" -> "macro_f1" is missing'),
    ("benchmark", ("variants", "compact", "flop_reduction_vs_dense"),
     '"variants" -> "compact" -> "flop_reduction_vs_dense" is missing'),
    ("benchmark", ("variants", "masked", "disk_bytes"),   # any variant: the "*" entry
     '"variants" -> "masked" -> "disk_bytes" is missing'),
    ("grouping", ("rows", 0, "final"), '"rows" -> [0] -> "final" is missing'),
    ("pipeline", ("run", "steps", 0, "max_rss_mb"),
     '"run" -> "steps" -> [0] -> "max_rss_mb" is missing'),
    ("thresholding", ("latency_run", "points", 1, "on_validation_front"),
     '"latency_run" -> "points" -> [1] -> "on_validation_front" is missing'),
])
def test_a_missing_nested_key_names_its_path_the_file_and_the_notebook(key, path, shown):
    record = committed(key)
    if key == "benchmark" and "masked" not in record["variants"]:
        pytest.skip("no masked variant in this benchmark")
    message = schema_error(key, drop(record, path))
    name, _, producer = results.SOURCES[key]
    assert message.startswith(f"{name}: {shown}"), message
    assert f"re-run {producer}" in message and "older version" in message
    results.validate(key, record)   # the original is untouched


def test_optional_keys_may_be_absent_but_are_checked_when_present():
    t = committed("thresholding")
    results.validate("thresholding", drop(t, ("latency_run",)))   # read with .get
    results.validate("thresholding", {**t, "latency_run": None})
    results.validate("thresholding", drop(t, ("targets", ">=50%", "gap_low_points")))
    assert '"latency_run" -> "timing" is missing' in schema_error(
        "thresholding", drop(t, ("latency_run", "timing")))
    results.validate("pipeline", {})   # neither pipeline measured yet
    baselines = committed("baselines")
    results.validate("baselines", drop(baselines, ("retrain",)))
    # .get("retrain", {}) gives None for a null, which the report cannot read
    assert '"retrain" is null, expected an object' in schema_error(
        "baselines", {**baselines, "retrain": None})


def test_a_wrong_type_is_named_with_the_value_and_the_expected_type():
    t = committed("thresholding")
    mutated = copy.deepcopy(t)
    level = next(iter(mutated["targets"]))
    mutated["targets"][level]["gap_points"] = "1.2"
    assert (f'"targets" -> "{level}" -> "gap_points" is "1.2" (a string), expected a number'
            in schema_error("thresholding", mutated))
    mutated["targets"][level]["gap_points"] = True   # bool is an int in Python, not a number
    assert (f'"targets" -> "{level}" -> "gap_points" is true (true/false), expected a number'
            in schema_error("thresholding", mutated))
    mutated["targets"][level]["gap_points"] = None
    assert "is null, expected a number" in schema_error("thresholding", mutated)
    mutated["targets"][level]["gap_points"] = 1   # int and float both count as numbers
    results.validate("thresholding", mutated)
    mutated["retrain"] = [4000, 1]
    assert '"retrain" is a list, expected an object' in schema_error("thresholding", mutated)
    assert "the top level is a list, expected an object" in schema_error("thresholding", [t])
    demo = copy.deepcopy(committed("demo"))
    demo["models"][0]["model"] = 3
    assert '"models" -> [0] -> "model" is 3 (a number), expected a string' in schema_error(
        "demo", demo)


def test_every_problem_is_collected_and_the_message_shows_the_first_three():
    record = committed("binarization_meta")
    broken = {key: value for key, value in record.items()
              if key not in ("epochs", "clip", "granularity", "temperature")}
    with pytest.raises(results.ResultsSchemaError) as caught:
        results.validate("binarization_meta", broken)
    assert len(caught.value.problems) == 4 and caught.value.key == "binarization_meta"
    assert "(and 1 more)" in str(caught.value)


def test_a_missing_csv_column_raises(tmp_path):
    rows = committed("sweep")
    without = [{k: v for k, v in row.items() if k != "val_macro_f1"} for row in rows]
    message = schema_error("sweep", without)
    assert message.startswith('sparsity_sweep.csv: column "val_macro_f1" is missing')
    assert "re-run `notebooks/04_thresholding.ipynb`" in message
    # the same from a file on disk, through read
    with open(tmp_path / "sparsity_sweep.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(without[0]))
        writer.writeheader()
        writer.writerows(without)
    with pytest.raises(results.ResultsSchemaError, match='column "val_macro_f1" is missing'):
        results.read("sweep", {"results": tmp_path})
    assert results.read_csv(RESULTS / "sparsity_sweep.csv") == rows


def test_read_gives_none_for_a_missing_file_and_names_broken_json(tmp_path):
    assert results.read("demo", {"results": tmp_path}) is None
    (tmp_path / "demo.json").write_text('{"models": [')   # cut off mid-write
    with pytest.raises(results.ResultsSchemaError, match="demo.json: is not valid JSON"):
        results.read("demo", {"results": tmp_path})


def test_write_refuses_an_invalid_record_and_leaves_the_file_untouched(tmp_path):
    record = committed("binarization_meta")
    path = results.write("binarization_meta", record, tmp_path)
    assert path == tmp_path / "binarization.json"
    assert results.read("binarization_meta", {"results": tmp_path}) == record
    before = path.read_bytes()
    with pytest.raises(results.ResultsSchemaError, match='"granularity" is missing'):
        results.write("binarization_meta", drop(record, ("granularity",)), tmp_path)
    with pytest.raises(results.ResultsSchemaError, match='"epochs" is "3" '):
        results.write("binarization_meta", {**record, "epochs": "3"}, tmp_path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["binarization.json"]   # no temp left
    with pytest.raises(ValueError, match="is a CSV"):
        results.write("sweep", [], tmp_path)


def test_write_checks_numpy_values_as_they_will_be_read_back(tmp_path):
    np = pytest.importorskip("numpy")
    record = {**committed("binarization_meta"), "dense_parameters": np.int64(22713987),
              "clip": np.float32(1.5)}
    results.write("binarization_meta", record, tmp_path)
    back = results.read("binarization_meta", {"results": tmp_path})
    assert back["dense_parameters"] == 22713987 and back["clip"] == 1.5


def test_the_report_names_a_file_from_an_older_version_instead_of_raising(tmp_path):
    """Mutation test: a required key gone from one results file (and a pipeline record's total
    gone) and the report still builds, naming each file, the key and the notebook to re-run,
    while the sections of the other files are unaffected."""
    if not (RESULTS / "thresholding.json").exists():
        pytest.skip("results/thresholding.json not produced yet (notebook 04)")
    results_dir = tmp_path / "results"
    shutil.copytree(RESULTS, results_dir)
    thresholding = json.loads((results_dir / "thresholding.json").read_text())
    del thresholding["retrain"]["examples"]
    (results_dir / "thresholding.json").write_text(json.dumps(thresholding))
    pipeline = json.loads((results_dir / "pipeline.json").read_text())
    del pipeline["run"]["total_seconds"]
    (results_dir / "pipeline.json").write_text(json.dumps(pipeline))

    paths = report.build_report(results_dir, FIGURES, tmp_path / "out", DATA)
    md = paths["markdown"].read_text()
    expected = ('thresholding.json: "retrain" -> "examples" is missing. The file is from an '
                "older version of the code (or was edited): re-run "
                "`notebooks/04_thresholding.ipynb` to rewrite it.")
    warning = md.split("**Warning: results files from an older version")[1].split("\n## ")[0]
    assert f"- `{results_dir / 'thresholding.json'}`: {expected}" in warning
    assert '"run" -> "total_seconds" is missing' in warning
    for heading in ("Sparsity against accuracy", "Pruning to a latency target"):
        section = md.split(f"## {heading}\n")[1].split("\n## ")[0]
        assert (f"*Invalid or from an older version:* `{results_dir / 'thresholding.json'}` "
                f"cannot be reported: {expected} Then `make report`.") in section, heading
    reproduction = md.split("## Reproduction\n")[1].split("\n## ")[0]
    assert "- `make run`, `make study`: *Invalid or from an older version:*" in reproduction
    assert "not measured yet" not in reproduction
    # the other files still report: the benchmark's table, the dense baseline's scores
    assert "## Memory and latency" in md and "| compact |" in md
    assert "| fine-tuned encoder (dense) |" in md
    # mutation: the key back, and the warning goes
    thresholding["retrain"]["examples"] = 4000
    (results_dir / "thresholding.json").write_text(json.dumps(thresholding))
    shutil.copy(RESULTS / "pipeline.json", results_dir / "pipeline.json")
    md = report.build_report(results_dir, FIGURES, tmp_path / "out", DATA)["markdown"].read_text()
    assert "older version" not in md and "4,000 training tweets" in md
