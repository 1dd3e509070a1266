"""One size unit everywhere (utils.common.sizes): MB = 10^6 bytes for files and weights, MiB /
GiB for resident memory. The same byte count reads the same in the benchmark's markdown, the
report, the README's results table and the model card; no module of utils divides by a binary
unit outside the helper."""
import json
import re
import shutil
from pathlib import Path

import pytest

from utils.common import sizes
from utils.face import bench, report
from utils.saved import export

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
# 9,949,999 bytes: 9.9 MB, but 9.5 as 2^20-byte "MB" -- the two units cannot be mistaken here
BUNDLE_BYTES = 9_949_999
BUNDLE_VARIANT = "compact+vocab+tflite-int8"


def test_format_mb_uses_ten_to_the_sixth_and_memory_says_mib_or_gib():
    assert sizes.format_mb(BUNDLE_BYTES) == "9.9 MB"
    assert sizes.format_mb(91_108_474, unit=False) == "91.1"
    assert sizes.format_mb(12_710_000, 2) == "12.71 MB"
    assert sizes.megabytes(2_500_000) == 2.5
    assert sizes.format_mib(300 * 2 ** 20) == "300 MiB"
    assert sizes.format_gib(5.4 * 2 ** 30) == "5.4 GiB"
    assert sizes.mebibytes(3 * 2 ** 20) == 3.0


@pytest.mark.skipif(not (RESULTS / "benchmark.json").exists(), reason="no results/benchmark.json")
def test_one_byte_count_reads_the_same_in_benchmark_report_readme_and_model_card(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    record = json.loads((results / "benchmark.json").read_text())
    record["variants"][BUNDLE_VARIANT]["disk_bytes"] = BUNDLE_BYTES
    (results / "benchmark.json").write_text(json.dumps(record))
    shown = sizes.format_mb(BUNDLE_BYTES, unit=False)     # "9.9"

    # the benchmark's own markdown table: Disk MB is its 4th column
    row = next(line for line in bench.markdown_table(record).splitlines()
               if line.startswith(f"| {BUNDLE_VARIANT} |"))
    assert row.split(" | ")[3] == shown

    # the report's benchmark table (disk MB: its 3rd column) and the README's results table
    paths = report.build_report(results, REPO / "figures", tmp_path / "out", REPO / "data")
    md = paths["markdown"].read_text()
    row = next(line for line in md.splitlines() if line.startswith(f"| {BUNDLE_VARIANT} |"))
    assert row.split(" | ")[2] == shown
    rep = report.Report({"results": results, "data": REPO / "data"}, REPO / "figures",
                        tmp_path / "out")
    table = report.readme_blocks(rep)["results_table"]
    row = next(line for line in table.splitlines() if line.startswith(f"| `{BUNDLE_VARIANT}` |"))
    assert f"| {shown} MB |" in row

    # the model card of a bundle whose model files (model.tflite + bundle.json) hold those bytes
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{}")
    (bundle / "model.tflite").write_bytes(b"\0" * (BUNDLE_BYTES - 2))
    card = export.model_card(bundle, "src", results)
    assert f"**Size on disk**: {shown} MB" in card


def test_no_module_of_utils_converts_sizes_outside_the_helper():
    helper = REPO / "utils" / "common" / "sizes.py"
    binary = re.compile(r"/\s*\(?\s*(2\s*\*\*\s*(10|20|30)|1024(\s*\*\*\s*[23])?|1\s*<<\s*(10|20|30))\b")
    decimal = re.compile(r"\w*(bytes?|disk|size)\w*(\[[^\]]*\])?\)?\s*/\s*(1e6|1e9|10\s*\*\*\s*[69]|1_?000_?000)",
                         re.IGNORECASE)
    offenders = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
                 for path in sorted((REPO / "utils").rglob("*.py")) if path != helper
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if binary.search(line) or decimal.search(line)]
    assert not offenders, "convert sizes with utils.common.sizes:\n" + "\n".join(offenders)
    # the patterns do catch what they are for
    assert binary.search("rss / 2**20") and binary.search("mb / 1024")
    assert decimal.search("m.disk_bytes / 1e6") and not decimal.search("m.parameters / 1e6")
