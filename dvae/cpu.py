"""Process-wide settings that make training steps faster on a CPU.

Neither changes what is computed, only how fast: freed memory is reused instead of mapped
afresh, and MKL's matrix products run on the kernels that the CPU's features allow. Both
change the whole process, so the library never applies them by itself: the command-line
fronts (`dvae`, `dvae-tune`, the analysis commands that score) and the Ray trials call
`tune_process` first thing. Each has its switch: DVAE_UNLOCK_MKL=0 and
DVAE_KEEP_FREED_MEMORY=0 leave it out (as do MKL_ENABLE_INSTRUCTIONS and glibc's MALLOC_
variables, the libraries' own switches). A notebook calling `train()` gets neither unless
it calls `tune_process()` itself.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import os
import platform
from pathlib import Path

import torch

log = logging.getLogger(__name__)
SWITCHES = ("DVAE_UNLOCK_MKL", "DVAE_KEEP_FREED_MEMORY")


def tune_process() -> dict[str, bool]:
    """Applies the settings of this module whose switch is not 0 (see the module's docstring),
    before the process's first matrix product; returns, per switch, whether it changed anything."""
    settings = {"DVAE_UNLOCK_MKL": unlock_mkl_on_amd, "DVAE_KEEP_FREED_MEMORY": keep_freed_memory}
    return {switch: os.environ.get(switch, "1") != "0" and apply() for switch, apply in settings.items()}


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def keep_freed_memory() -> bool:
    """Makes glibc serve every allocation from its heap and keep what is freed, for this process.

    By default glibc maps each large block afresh and hands it back when freed, so every
    training step faults in hundreds of MB of new zeroed pages for tensors of the same sizes
    as the step before: up to half the step time at 200 frames (benchmarks/bench_step.py,
    --malloc glibc). Kept, the memory is reused from step to step and the process holds on
    to its peak. The same as MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647; left as
    it is when either is set in the environment or the C library is not glibc.
    Returns whether it changed anything.
    """
    if "MALLOC_MMAP_MAX_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    libc = _libc()
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # from <malloc.h>
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def cpu_vendor() -> str:
    """The CPU's vendor string ("AuthenticAMD", "GenuineIntel"), or "" where Linux does not say."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def mkl_vendor_check():
    """MKL's own test for an Intel CPU, as a callable returning 1 or 0, or None where PyTorch's
    float32 matrix products do not run on an MKL that exports it."""
    if not torch.backends.mkl.is_available():
        return None
    try:
        check = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so")).mkl_serv_intel_cpu_true
    except (OSError, AttributeError):
        return None
    check.restype = ctypes.c_int
    return check


def unlock_mkl_on_amd() -> bool:
    """Lets MKL choose its matrix-multiply kernels by the CPU's features on AMD CPUs too.

    MKL, which PyTorch's float32 torch.mm and nn.Linear call on x86, runs its fast kernels
    only where its vendor check, `mkl_serv_intel_cpu_true`, finds an Intel CPU; elsewhere it
    takes a generic path. On the 2-core AMD EPYC (AVX-512) of benchmarks/bench_step.py that
    path ran a 2048x2048 sgemm at 190-200 GFLOP/s, against 450-460 with the check answering
    yes, and the training steps took 0.5-0.9x the time. So on AMD CPUs this rewrites the
    check, in this process's memory, to return 1 (`mov eax, 1; ret`): the LD_PRELOAD
    workaround known for MKL on AMD, done in place. The kernels MKL then picks read the
    CPU's feature flags as they do on Intel CPUs; results differ only by float32 rounding.

    MKL makes its choice at its first matrix product, so this must run before that (the
    trainer calls it first thing). It does nothing where MKL_ENABLE_INSTRUCTIONS is set
    (MKL's own switch: the user has chosen), off Linux on x86-64, on other vendors, or
    where the page cannot be made writable. Returns whether MKL now reports an Intel CPU.
    """
    if "MKL_ENABLE_INSTRUCTIONS" in os.environ or platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    if cpu_vendor() != "AuthenticAMD" or (check := mkl_vendor_check()) is None:
        return False
    if check() == 1:
        return True
    return rewrite_to_return_one(check)


def rewrite_to_return_one(function) -> bool:
    """Rewrites a C function of this process, in memory, to `return 1;`; True when it then does.
    Its page is made writable and restored to read+execute; a refused change is logged and,
    before anything is written, leaves the function as it was."""
    libc = _libc()
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    address = ctypes.cast(function, ctypes.c_void_p).value
    page = address & ~(mmap.PAGESIZE - 1)
    span = 2 * mmap.PAGESIZE  # the 6 bytes may cross into the next page
    read_exec, read_write_exec = mmap.PROT_READ | mmap.PROT_EXEC, mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
    if libc.mprotect(page, span, read_write_exec) != 0:
        log.info("%s left as it is: mprotect refused to make its code writable (%s)", function.__name__,
                 os.strerror(ctypes.get_errno()))
        return False
    ctypes.memmove(address, b"\xb8\x01\x00\x00\x00\xc3", 6)  # mov eax, 1; ret
    if libc.mprotect(page, span, read_exec) != 0:  # works on, but the page stays writable
        log.warning("%s was rewritten, but restoring its page to read+execute failed (%s)", function.__name__,
                    os.strerror(ctypes.get_errno()))
    return function() == 1
