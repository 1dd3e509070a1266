"""What machine a time was measured on: `machine_facts()`, recorded by the pipeline
(results/pipeline.json) and the benchmark (results/benchmark.json), and `describe_cpu(facts)`,
the words the report and the benchmark print beside every time.

The CPU model and its vector extensions come from /proc/cpuinfo (Linux); elsewhere the model is
platform.processor() and the extensions are unknown (None), never guessed. Library versions
come from the installed distributions' metadata, so nothing here imports TensorFlow.
"""
import os
import platform
from importlib import metadata
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo flag -> the name the report prints; the extensions TensorFlow's CPU kernels
# (oneDNN, XNNPACK) pick between, in the order of their generations.
VECTOR_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512F", "avx512_vnni": "AVX512-VNNI",
                "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX512-BF16", "amx_tile": "AMX-TILE",
                "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8"}
NOT_RECORDED = "CPU not recorded"


def parse_cpuinfo(text):
    """(model name or None, [extension names] or None) from the text of /proc/cpuinfo; the
    first processor's entries (x86 writes 'model name' and 'flags', ARM 'Features')."""
    model, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "model name" and model is None and value:
            model = value
        elif key in ("flags", "features") and flags is None:
            flags = set(value.split())
    extensions = None if flags is None else [name for flag, name in VECTOR_FLAGS.items()
                                             if flag in flags]
    return model, extensions


def _version(distribution):
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_facts(cpuinfo_text=None, system=None):
    """{"cpu", "vector_extensions", "logical_cpus", "system", "python", "tensorflow", "keras"}
    of this machine. cpuinfo_text/system replace /proc/cpuinfo and platform.system() (tests)."""
    system = system or platform.system()
    model, extensions = None, None
    if system == "Linux":
        if cpuinfo_text is None and CPUINFO.exists():
            cpuinfo_text = CPUINFO.read_text(errors="replace")
        if cpuinfo_text:
            model, extensions = parse_cpuinfo(cpuinfo_text)
    return {"cpu": model or platform.processor() or "unknown",
            "vector_extensions": extensions,
            "logical_cpus": os.cpu_count(), "system": system,
            "python": platform.python_version(),
            "tensorflow": _version("tensorflow"), "keras": _version("keras")}


def describe_cpu(facts, logical_cpus=None):
    """'AMD EPYC, 2 logical CPUs, vector extensions AVX2 / AVX-512F / AVX512-VNNI' from
    machine_facts(); for a record that has none, 'CPU not recorded', with the CPU count when the
    record kept one (`logical_cpus`): 'CPU not recorded, 2 logical CPUs'."""
    if not facts:
        return NOT_RECORDED + (f", {logical_cpus} logical CPUs" if logical_cpus else "")
    extensions = facts.get("vector_extensions")
    vector = ("vector extensions unknown" if extensions is None
              else "vector extensions " + " / ".join(extensions) if extensions
              else "none of " + " / ".join(VECTOR_FLAGS.values()))
    return f"{facts.get('cpu') or 'unknown'}, {facts.get('logical_cpus')} logical CPUs, {vector}"
