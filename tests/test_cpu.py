"""Process-wide CPU settings: glibc keeps freed memory, MKL runs its fast kernels on AMD CPUs.

Each test runs in a fresh interpreter: both settings act on the whole process, and MKL
chooses its kernels once, at its first matrix product.
"""
import os
import platform
import subprocess
import sys

import pytest

from dvae.cpu import cpu_vendor, mkl_vendor_check


def run_python(code: str, *args: str, env: dict | None = None) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env if env is not None else dict(os.environ))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


FAULTS_PER_ALLOCATION = """
import resource, sys, torch
from dvae.cpu import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 * 2**20)  # 64 MB, freed at once, as a step's activations are
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[-4:]))  # the heap settles within a few blocks
"""


@pytest.mark.parametrize("mode", ["keep", "glibc"])
def test_the_trainer_reuses_freed_memory_instead_of_faulting_in_fresh_pages(mode):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    faults = int(run_python(FAULTS_PER_ALLOCATION, mode, env=env))
    pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    if mode == "keep":  # the second and later blocks reuse the first one's pages
        assert faults < pages // 20
    else:  # glibc's default maps every large block afresh
        assert faults > pages // 2


UNLOCK_THEN_MULTIPLY = """
import torch
from dvae.cpu import mkl_vendor_check, unlock_mkl_on_amd
unlocked = unlock_mkl_on_amd()
a, b = torch.randn(512, 384, dtype=torch.float64), torch.randn(384, 256, dtype=torch.float64)
error = (a.float() @ b.float() - a @ b).abs().max().item()  # the first product: MKL picks its kernels now
print(unlocked, mkl_vendor_check()(), error)
"""

needs_mkl_on_amd = pytest.mark.skipif(cpu_vendor() != "AuthenticAMD" or mkl_vendor_check() is None,
                                      reason="MKL's vendor check matters on AMD CPUs only")


@needs_mkl_on_amd
def test_on_amd_mkl_reports_an_intel_cpu_and_its_kernels_stay_exact():
    env = {k: v for k, v in os.environ.items() if k != "MKL_ENABLE_INSTRUCTIONS"}
    unlocked, check, error = run_python(UNLOCK_THEN_MULTIPLY, env=env).split()
    assert unlocked == "True" and check == "1"
    assert float(error) < 1e-3  # float32 rounding over 384 products of unit normals: ~1e-4


@needs_mkl_on_amd
def test_mkl_enable_instructions_leaves_mkl_to_the_user():
    env = dict(os.environ, MKL_ENABLE_INSTRUCTIONS="AVX2")
    unlocked, check, error = run_python(UNLOCK_THEN_MULTIPLY, env=env).split()
    assert unlocked == "False" and check == "0" and float(error) < 1e-3


def test_other_vendors_are_left_alone(monkeypatch):
    from dvae import cpu

    monkeypatch.setattr(cpu, "cpu_vendor", lambda: "GenuineIntel")
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
    assert not cpu.unlock_mkl_on_amd()


REFUSED_MPROTECT = """
import ctypes, logging, sys
import torch
from dvae import cpu
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
real = cpu._libc

class Refusing:
    # the C library, with mprotect refusing: always ({0!r}) or only when restoring the page ({1!r})
    def __init__(self):
        self.libc, self.calls = real(), 0
        self.libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.mprotect = self
        self.argtypes = None
    def __call__(self, *args):
        self.calls += 1
        if {0!r} or (self.calls == 2 and {1!r}):
            ctypes.set_errno(13)
            return -1
        return self.libc.mprotect(*args)

cpu._libc = Refusing
check = cpu.mkl_vendor_check()
rewritten = cpu.rewrite_to_return_one(check)  # MKL's vendor check: what unlock_mkl_on_amd rewrites on AMD
a, b = torch.randn(256, 128, dtype=torch.float64), torch.randn(128, 64, dtype=torch.float64)
print("RESULT", rewritten, (a.float() @ b.float() - a @ b).abs().max().item())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64" or mkl_vendor_check() is None,
                    reason="rewrites MKL's code in memory: Linux on x86-64 with PyTorch's MKL")
@pytest.mark.parametrize("always, restoring", [(True, False), (False, True)], ids=["refused", "restore-refused"])
def test_a_refused_permission_change_leaves_the_process_working(always, restoring):
    out = run_python(REFUSED_MPROTECT.format(always, restoring))
    rewritten, error = out.split("RESULT ")[1].split()
    assert float(error) < 1e-3  # products still right, on whichever kernels MKL took
    if always:  # nothing written, and why at INFO
        assert rewritten == "False" and "mprotect refused" in out and "Permission denied" in out
    else:  # written, and the failed restore is a warning, not a crash
        assert rewritten == "True" and "WARNING" in out and "restoring its page" in out


def test_each_process_setting_has_its_switch(monkeypatch):
    from dvae import cpu

    calls = []
    monkeypatch.setattr(cpu, "unlock_mkl_on_amd", lambda: calls.append("mkl") or True)
    monkeypatch.setattr(cpu, "keep_freed_memory", lambda: calls.append("malloc") or True)
    assert cpu.tune_process() == {"DVAE_UNLOCK_MKL": True, "DVAE_KEEP_FREED_MEMORY": True}
    monkeypatch.setenv("DVAE_UNLOCK_MKL", "0")
    assert cpu.tune_process() == {"DVAE_UNLOCK_MKL": False, "DVAE_KEEP_FREED_MEMORY": True}
    monkeypatch.setenv("DVAE_KEEP_FREED_MEMORY", "0")
    assert cpu.tune_process() == {"DVAE_UNLOCK_MKL": False, "DVAE_KEEP_FREED_MEMORY": False}
    assert calls == ["mkl", "malloc", "malloc"]
