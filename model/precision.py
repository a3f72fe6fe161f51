"""Which compute dtype this machine should train and sample in: fp32 or bf16.

The project's machines change from session to session. On a CPU with native bf16 (AVX-512
BF16 or AMX) bf16 autocast is faster than fp32; on an AVX2-only CPU it is emulated and
12-66x slower (shared/FACTS.md). So the choice is made per machine, at start, from a short
matmul probe (about a second), and logged. `OMNI_DTYPE=fp32|bf16` overrides the probe.

    dtype, why = choose_dtype()          # torch.float32 or torch.bfloat16, and a readable reason
"""

from __future__ import annotations

import os
import time
from functools import lru_cache

import torch

NAMES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def _matmul_seconds(dtype: torch.dtype, n: int, reps: int) -> float:
    """The fastest of `reps` timed matmuls: on a shared machine the other processes only ever add time, so the
    minimum is the CPU's own speed (a mean taken while a training runs beside it once chose fp32 on a bf16 CPU)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up (kernel selection, allocation)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return best


def probe(n: int = 384, reps: int = 8, rounds: int = 3) -> dict:
    """Seconds per (n x n) @ (n x n) matmul in fp32 and bf16 on this CPU (the fastest of interleaved rounds), and
    their ratio."""
    fp32 = bf16 = float("inf")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the core's own kernels: on a busy machine threads mostly wait for each other
    try:
        for _ in range(rounds):
            fp32 = min(fp32, _matmul_seconds(torch.float32, n, reps))
            slow = bf16 != float("inf") and bf16 > 5 * fp32  # emulated: fewer of its slow matmuls
            bf16 = min(bf16, _matmul_seconds(torch.bfloat16, n, 2 if slow else reps))
    finally:
        torch.set_num_threads(threads)
    return {"n": n, "fp32_ms": round(fp32 * 1e3, 3), "bf16_ms": round(bf16 * 1e3, 3),
            "bf16_speedup": round(fp32 / max(bf16, 1e-9), 2),
            "capability": torch.backends.cpu.get_cpu_capability()}


def decide(device: str, request: str | None, measured: dict | None) -> tuple[torch.dtype, str]:
    """The pure rule behind `choose_dtype` (tested on made-up probe results)."""
    if request:
        key = request.lower()
        if key not in NAMES:
            raise ValueError(f"OMNI_DTYPE={request!r}: use fp32 or bf16")
        return NAMES[key], f"{key} (asked for by OMNI_DTYPE)"
    if device.startswith("cuda"):
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return (torch.bfloat16, "bf16 (CUDA supports it)") if ok else (torch.float32, "fp32 (no CUDA bf16)")
    assert measured is not None
    # bf16 must be clearly faster: where it only ties, fp32 keeps full precision for free
    if measured["bf16_speedup"] >= 1.2:
        return torch.bfloat16, (f"bf16: native on this CPU ({measured['capability']}; a {measured['n']}^3 matmul "
                                f"{measured['bf16_ms']} ms against {measured['fp32_ms']} ms in fp32)")
    return torch.float32, (f"fp32: bf16 is emulated or no faster on this CPU ({measured['capability']}; a "
                           f"{measured['n']}^3 matmul {measured['bf16_ms']} ms in bf16 against "
                           f"{measured['fp32_ms']} ms in fp32)")


@lru_cache(maxsize=4)
def choose_dtype(device: str = "cpu") -> tuple[torch.dtype, str]:
    """The dtype to compute in on `device`, and why (once per process)."""
    request = os.environ.get("OMNI_DTYPE") or None
    measured = None if request or device.startswith("cuda") else probe()
    return decide(device, request, measured)


def autocast(device: str = "cpu", dtype: torch.dtype | None = None):
    """An autocast context in the chosen dtype (a no-op context in fp32)."""
    dtype = dtype or choose_dtype(device)[0]
    return torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)


def resolve_dtype(name: str = "auto", device: str = "cpu") -> tuple[torch.dtype, str]:
    """A config's dtype field ('auto', 'fp32', 'bf16') -> (dtype, reason)."""
    if name == "auto":
        return choose_dtype(device)
    if name.lower() not in NAMES:
        raise ValueError(f"dtype {name!r}: use auto, fp32 or bf16")
    return NAMES[name.lower()], f"{name} (asked for)"
