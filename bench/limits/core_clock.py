"""The clock a CPU core really runs at, measured: a timed chain of dependent integer adds.

A virtual machine's /proc/cpuinfo 'cpu MHz' is the host's nominal (TSC) rate, not the clock under
load (seen: 2.6 GHz reported, 3.9 GHz run, on a 2-core AMD EPYC Zen 5), and a model name's
"@ 2.00GHz" is the base clock, below turbo. A theoretical peak built on either sits below what
the matmul ceiling then measures. So we time the one thing whose cycle count is known on every
x86-64 core: ``add rax, rdx`` repeated, each add depending on the last, runs at one add per cycle
(latency 1 since the Pentium Pro; a register-register add is never eliminated at rename, unlike
an add of an immediate on Golden Cove). The loop counter runs beside it on another port.

The code is 61 bytes of machine code in an executable page (``mmap`` + ``ctypes``; no compiler, no
torch). The rate is the best of many ~1 ms samples within a small budget: a preempted sample
only reads slower, so the best is the clock the core reached (one busy core: its highest turbo,
at or above the clock under an all-core AVX load). Where the page cannot be made executable, or
the machine is not x86-64, there is no measurement and a one-line reason says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import mmap
import platform
import time
from dataclasses import dataclass

ADDS_PER_ITERATION = 16
ITERATIONS = 100_000  # 1.6 M cycles: ~0.5 ms at 3 GHz, far above the clock's resolution, short enough to fit a slice
SAMPLES, MIN_SAMPLES = 200, 20
CLOCK_BUDGET_S = 0.25
X86_64 = ("x86_64", "amd64")


@dataclass(frozen=True)
class CoreClock:
    ghz: float | None
    source: str  # how it was measured, or why it was not


def chain_code(instruction: bytes, count: int = ADDS_PER_ITERATION) -> bytes:
    """x86-64 System V: ``uint64_t f(uint64_t n)``: rax = 0, rdx = 1, then n times ``instruction`` x count."""
    setup = bytes([0x31, 0xC0, 0xBA, 0x01, 0x00, 0x00, 0x00])  # xor eax, eax; mov edx, 1
    body = instruction * count + bytes([0x48, 0xFF, 0xCF])  # ...; dec rdi
    return setup + body + bytes([0x75, (-(len(body) + 2)) & 0xFF, 0xC3])  # jnz back to the body; ret


ADD_RAX_RDX = bytes([0x48, 0x01, 0xD0])  # add rax, rdx: latency 1


def chain_ghz(instruction: bytes = ADD_RAX_RDX, cycles_per_instruction: int = 1,
              budget_s: float = CLOCK_BUDGET_S) -> CoreClock:
    """Cycles per nanosecond of a dependent chain of ``instruction`` (its latency known: ``cycles_per_instruction``)."""
    if platform.machine().lower() not in X86_64:
        return CoreClock(None, f"not measured: the dependent-add chain is x86-64 code, this is {platform.machine()}")
    code = chain_code(instruction)
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, AttributeError, ValueError) as exc:
        return CoreClock(None, f"not measured: no executable page for the add chain ({exc})")
    try:
        page.write(code)
        chain = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(
            ctypes.addressof(ctypes.c_char.from_buffer(page)))
        chain(1000)  # warm: the page faulted in, the core out of its idle state
        cycles = ITERATIONS * ADDS_PER_ITERATION * cycles_per_instruction
        best_ns, deadline, taken = float("inf"), time.perf_counter() + budget_s, 0
        while taken < SAMPLES and (taken < MIN_SAMPLES or time.perf_counter() < deadline):
            start = time.perf_counter_ns()
            chain(ITERATIONS)
            best_ns = min(best_ns, time.perf_counter_ns() - start)
            taken += 1
        del chain
    finally:
        with contextlib.suppress(BufferError):  # still exported to ctypes: freed with the process instead
            page.close()
    return CoreClock(cycles / best_ns, f"measured: best of {taken} timed chains of dependent adds")


@functools.lru_cache(maxsize=1)
def core_clock() -> CoreClock:
    """This machine's measured core clock, once per process."""
    return chain_ghz()
