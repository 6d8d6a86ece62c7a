"""What the machine is, in the detail that decides whether float results can be bit-identical.

``platform.processor()`` and a model name such as "AMD EPYC" cannot tell two CPU generations
apart, yet vectorised kernels (and BLAS) differ between them. :func:`cpu_identity` records the
vendor, family/model/stepping numbers and the SIMD extensions torch may pick, beside torch's own
choice of kernel family, so a run record (``env.json``) or a model card names the CPU exactly.
"""

from __future__ import annotations

import platform
from pathlib import Path

#: the SIMD extensions that select different vectorised kernels
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_identity(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """``{"model_name", "vendor", "family", "model", "stepping", "simd": [...], "machine"}`` of
    the first CPU (fields absent where the system does not say, e.g. outside Linux)."""
    import torch

    out: dict = {"machine": platform.machine(), "processor": platform.processor() or platform.machine()}
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    for key, name in (("model name", "model_name"), ("vendor_id", "vendor"), ("cpu family", "family"),
                      ("model", "model"), ("stepping", "stepping"), ("microcode", "microcode")):
        if key in fields:
            out[name] = fields[key]
    flags = set(fields.get("flags", "").split())
    if flags:
        out["simd"] = [f for f in SIMD_FLAGS if f in flags]
    out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return out


__all__ = ["cpu_identity", "SIMD_FLAGS"]
