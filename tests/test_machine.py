"""utils.common.machine: the CPU model, its vector extensions and the library versions that the
pipeline and the benchmark record, read from a (here fake) /proc/cpuinfo."""
import platform

from utils.common import machine

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu
"""
OLD = "processor\t: 0\nmodel name\t: Intel(R) Core(TM)2 Duo\nflags\t\t: fpu sse sse2 ssse3\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve\nCPU part\t: 0xd40\n"


def test_cpu_model_and_vector_extensions_come_from_cpuinfo():
    facts = machine.machine_facts(XEON, system="Linux")
    assert facts["cpu"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert facts["vector_extensions"] == ["AVX2", "AVX-512F", "AVX512-VNNI", "AVX-VNNI",
                                          "AVX512-BF16", "AMX-TILE", "AMX-BF16", "AMX-INT8"]
    assert facts["python"] == platform.python_version()
    assert facts["tensorflow"] and facts["keras"] and facts["logical_cpus"] >= 1
    assert machine.describe_cpu(facts).startswith(
        f"Intel(R) Xeon(R) Platinum 8480+, {facts['logical_cpus']} logical CPUs, vector "
        "extensions AVX2 / AVX-512F / AVX512-VNNI / AVX-VNNI")
    # a CPU without any of them says so; one whose flags are unknown says that instead
    old = machine.machine_facts(OLD, system="Linux")
    assert old["vector_extensions"] == [] and "none of AVX2" in machine.describe_cpu(old)
    arm = machine.machine_facts(ARM, system="Linux")
    assert arm["vector_extensions"] == []
    assert arm["cpu"] == (platform.processor() or "unknown")   # no model name: the fallback


def test_other_systems_and_old_records_say_unknown_or_not_recorded():
    facts = machine.machine_facts(XEON, system="Darwin")   # cpuinfo is not read off Linux
    assert facts["vector_extensions"] is None and facts["system"] == "Darwin"
    assert "vector extensions unknown" in machine.describe_cpu(facts)
    assert machine.describe_cpu(None) == "CPU not recorded"
    assert machine.describe_cpu({}, 2) == "CPU not recorded, 2 logical CPUs"
