"""The CPU record names the processor exactly enough to tell two generations apart."""

from fedrs.hardware import cpu_identity

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9354 32-Core Processor
stepping\t: 1
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw

processor\t: 1
vendor_id\t: OtherVendor
model name\t: something else
"""


def test_cpu_identity_reads_the_first_cpu(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    ident = cpu_identity(path)
    assert ident["vendor"] == "AuthenticAMD"
    assert (ident["family"], ident["model"], ident["stepping"]) == ("25", "17", "1")
    assert ident["model_name"] == "AMD EPYC 9354 32-Core Processor"
    assert ident["simd"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw"]
    assert "torch_cpu_capability" in ident


def test_cpu_identity_without_cpuinfo(tmp_path):
    ident = cpu_identity(tmp_path / "absent")
    assert "vendor" not in ident and ident["machine"]
