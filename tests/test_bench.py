"""utils.face.bench: analytic FLOPs, default pruned-directory choice, and `python -m utils.face.bench
--smoke` end to end (tiny random models) writing well-formed JSON and markdown."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import utils  # noqa: F401
from utils.face import bench as B
from utils.encoder import model as M

REPO = Path(__file__).resolve().parent.parent


def test_flops_per_token():
    dense = M.EncoderConfig(vocab_size=10, hidden_size=384, num_heads=[12] * 6,
                            intermediate_sizes=[1536] * 6, head_size=32)
    per_layer = 4 * 2 * 384 * 384 + 2 * 2 * 20 * 384 + 2 * 2 * 384 * 1536
    assert B.flops_per_token(dense, 20) == pytest.approx(
        6 * per_layer + (2 * 384 * 384 + 2 * 384 * 3) / 20)
    pruned = M.EncoderConfig(vocab_size=10, hidden_size=384, num_heads=[6, 0, 12, 3, 1, 0],
                             intermediate_sizes=[700, 0, 1536, 10, 5, 0], head_size=32)
    assert B.flops_per_token(pruned, 20) < B.flops_per_token(dense, 20)
    assert B.flops_per_token(dense, 20, first_token=True) < B.flops_per_token(dense, 20)


def test_smoke_run_writes_benchmark(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "utils.face.bench", "--smoke", "--out-dir", str(tmp_path),
         "--memory-variants", "compact+vocab"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "utils.face.bench]" in result.stderr            # progress, logged
    output = json.loads((tmp_path / "benchmark.json").read_text())
    assert set(output) == {"meta", "compaction", "variants"}
    variants = output["variants"]
    # no snapshot is chosen in SMOKE (--pruned is given), so there is no sparser one
    assert set(variants) == set(B.VARIANTS) - set(B.SPARSER)
    for name, row in variants.items():
        for key in ("parameters", "nonzero_parameters", "disk_bytes", "disk_bytes_gzip",
                    "weight_bytes", "latency_ms_median", "throughput_ex_per_s",
                    "flops_per_token", "accuracy", "macro_f1", "macro_recall",
                    "latency_speedup_vs_dense", "flop_reduction_vs_dense"):
            assert isinstance(row[key], (int, float)), (name, key)
    assert isinstance(variants["compact+vocab"]["rss_growth_predict_bytes"], int)
    assert "rss_growth_predict_bytes" not in variants["masked"]
    # the machine the times come from (utils.common.machine), printed beside them
    machine = output["meta"]["machine"]
    assert machine["cpu"] and machine["logical_cpus"] == os.cpu_count()
    assert machine["tensorflow"] == output["meta"]["tensorflow"]
    # the derived variants predict what they should
    assert variants["compact"]["logits_vs"]["max_abs_diff"] < 1e-5
    assert variants["compact+vocab"]["logits_vs"]["max_abs_diff"] < 1e-6
    assert variants["compact+vocab+first"]["logits_vs"]["max_abs_diff"] < 1e-5
    assert variants["compact"]["parameters"] < variants["masked"]["parameters"]
    assert variants["compact+vocab"]["parameters"] < variants["compact"]["parameters"] / 10
    assert variants["compact+vocab+int8"]["weight_bytes"] < variants["compact+vocab"]["weight_bytes"] / 3
    assert variants["compact"]["parameters"] == output["compaction"]["parameters_after"]
    table = (tmp_path / "benchmark.md").read_text()
    from utils.common.machine import describe_cpu
    assert describe_cpu(machine) in table
    main_table = table.split("\n\n")[1]
    assert main_table.count("| ") >= 1 + len(variants) and all(
        f"| {name} |" in main_table for name in variants)
    # ONNX Runtime: the float graph computes the dense model; each int8 bundle is compared with
    # the dense model quantized the same way and with dense ONNX Runtime int8
    assert variants["dense+onnx"]["logits_vs"]["max_abs_diff"] < 1e-4
    assert variants["dense+onnx"]["quantization"] == "onnx-float32"
    assert variants["compact+vocab+onnx-int8"]["quantization"] == "onnx-dynamic_range"
    rows = {row["runtime"]: row for row in B.deployment(variants)}
    assert set(rows) == {"tflite", "onnx"}
    assert set(rows["tflite"]["against"]) == {"dense+tflite-int8", B.USER_ALTERNATIVE}
    assert set(rows["onnx"]["against"]) == {B.USER_ALTERNATIVE}
    user = rows["onnx"]["against"][B.USER_ALTERNATIVE]
    assert user["ratio"] == pytest.approx(variants[B.USER_ALTERNATIVE]["latency_ms_median"]
                                          / variants["compact+vocab+onnx-int8"]["latency_ms_median"])
    assert user["round_low"] <= user["round_high"]
    assert "| ONNX Runtime | `compact+vocab+onnx-int8` | `dense+onnx-int8` |" in table
    assert output["meta"]["onnx_threads"] == os.cpu_count()


def _variant(latency, f1, rounds=None):
    return {"latency_ms_median": latency, "macro_f1": f1, "throughput_ex_per_s": 1000 / latency,
            "latency_ms_round_medians": rounds or [latency, latency], "weight_bytes": 5_000_000}


def test_the_far_target_is_read_off_the_sparser_bundle_when_there_is_one():
    variants = {"dense": _variant(10.0, 0.84), "dense+onnx-int8": _variant(4.0, 0.84),
                "dense+tflite-int8": _variant(5.0, 0.84),
                "compact+vocab+onnx-int8": _variant(1.9, 0.835),
                "compact+vocab+tflite-int8": _variant(2.4, 0.835)}
    rows = {r["runtime"]: r for r in B.deployment(variants)}
    assert rows["onnx"]["targets"]["far"]["variant"] == "compact+vocab+onnx-int8"
    assert not rows["onnx"]["targets"]["far"]["met"]          # 4.0 / 1.9 = 2.1x < 3x
    assert rows["onnx"]["targets"]["near"]["met"]             # 2.1x at 0.5 points
    variants["sparser+vocab+onnx-int8"] = _variant(1.25, 0.825)   # 3.2x at 1.5 points
    rows = {r["runtime"]: r for r in B.deployment(variants)}
    far = rows["onnx"]["targets"]["far"]
    assert far["variant"] == "sparser+vocab+onnx-int8" and far["met"]
    assert far["ratio"] == pytest.approx(3.2) and far["gap"] == pytest.approx(1.5)
    assert rows["onnx"]["targets"]["near"]["met"]             # still the shipped bundle's
    assert rows["tflite"]["sparser"] is None                  # no sparser TFLite bundle timed
    assert rows["tflite"]["targets"]["far"]["variant"] == "compact+vocab+tflite-int8"
    table = "\n".join(B.deployment_table(list(rows.values())))
    assert "| ONNX Runtime | `sparser+vocab+onnx-int8` | `dense+onnx-int8` | 4.00 | 1.25 | 3.20x" \
        in table
