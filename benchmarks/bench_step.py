"""Training-step speed of every model: time, peak memory, FLOPs, and speed-up over a plain reference.

    python -m benchmarks.bench_step [--device cpu|cuda] [--models vrnn srnn ...] [--out FILE.json]

(run from the repository root). By default it measures all eight models at the DVAE review's
speech sizes (batch 128, 513 STFT bins, z 16, RNN and dense layers 128, Itakura-Saito
likelihood) at 50 and 200 frames, prints a table and writes the figures as JSON (to --out,
default benchmarks/results/step_<device>.json). A full CPU run takes several minutes.

What one step is: the trainer's step, forward, loss, backward, gradient clipping at 5 and an
Adam update, on a fixed batch of positive "power spectra" (exp of Gaussian noise), with
teacher forcing and KL weight 1. Each (model, length) runs in a fresh Python process.

- time: median over --reps steps after --warmup steps. The fast model's steps alternate with
  its reference's, so that load from other processes falls on both alike.
- the machine's float32 matrix-multiply rate, measured in the same process just before, at
  the same thread count: the best of 9 products of 2048x2048 matrices (8192 on CUDA) by
  torch.mm at full float32 precision (the BLAS sgemm: MKL here) and, on CPU, by oneDNN's
  float32 kernel; the faster of the two is the machine's rate (`matmul_gflops`). oneDNN is
  what nn.LSTM runs on. Like the trainer, the benchmark first lets MKL run its fast kernels
  on AMD CPUs (dvae.cpu.unlock_mkl_on_amd); with --mkl vendor, MKL keeps its generic path
  there, and its sgemm reaches under half of oneDNN's rate.
- speed-up: the reference's median step time over the fast model's. The reference
  (benchmarks/reference_models.py) is the same model, with the same weights and noise,
  written the straightforward way: LSTM cells stepped in Python loops, time-distributed
  layers called frame by frame.
- FLOPs per step (forward + backward, the optimiser's elementwise update not included):
  the matrix products that torch.utils.flop_counter.FlopCounterMode counts, plus the fused
  nn.LSTM kernels that it does not see (oneDNN on CPU, cuDNN on CUDA), added analytically.
  Per nn.LSTM call on input (B, T, in) with hidden size H, per direction:
      forward  2 * B * T * 4H * (in + H)   (a multiply-add is 2 FLOPs; gates i, f, g, o)
      backward 2 * forward                 (gradients of the inputs and of the weights)
  The LSTMs that the fast models step themselves are plain matrix products and are counted.
  Elementwise work (activations, the likelihood, the KL) is in neither count.
  The achieved rate is FLOPs / median step time, also given as a fraction of the machine's
  rate ("of peak").
- peak memory: CPU: how far the process's peak resident set (getrusage ru_maxrss, in a fresh
  process, after building both models and the batch) grows over the fast model's warm-up
  steps: saved activations, gradients, Adam's state and allocator slack, but not the weights
  or the batch. tracemalloc cannot see torch's allocations, hence the process-level figure;
  it is an upper bound on what the step itself needs. CUDA: torch.cuda.max_memory_allocated
  over the warm-up steps, less what was allocated before them.

- page faults per step (ru_minflt): memory that the step maps and touches afresh. Like the
  trainer (dvae.cpu.keep_freed_memory), the benchmark keeps freed memory in glibc's heap
  (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB); --malloc glibc measures glibc's defaults,
  under which large tensors are mapped anew at every step.
- speed-up ceiling: the reference's step time over the time the step's FLOPs would take at
  the machine's rate. No implementation of the same model beats it; where a speed-up target
  lies above it, the target cannot hold on that machine.
- matrix products alone ("mm ms"): every matrix product that one fast step runs, forward and
  backward (BLAS products and the fused nn.LSTM kernels, recorded at the dispatcher with
  copies of their arguments), replayed in order with nothing between them, best of 5. It is
  what the step's products cost at the shapes this implementation gives them, with their
  operands in cache: a lower bound on their share of the step. "mm peak" is the step's FLOPs
  over that time as a fraction of the machine's rate, and "mm bound" the reference's time
  over it: the speed-up the step would have if everything besides its products (elementwise
  work, copies, Python) took no time. Where a target lies above it, reaching the target needs
  faster products at these shapes, not less overhead. Not measured with --cuda-graph.

Options: --frames 50 200, --batch 128, --reps 10, --warmup 3, --threads N (CPU threads;
default torch's), --compile (the fast models' step loops under torch.compile; --compile-mode
reduce-overhead adds CUDA graphs to each frame's step; the warm-up time, compiling included, is in the JSON),
--cuda-graph (the fast model's whole step, forward to Adam, recorded as one CUDA graph and replayed, as the
trainer's train.cuda_graph does; the reference steps eagerly), --amp bf16
(bfloat16 autocast of forward and loss; the matmul rate stays float32), --matmul-precision
(torch.set_float32_matmul_precision for both models, as the trainer's option), --malloc glibc,
--mkl vendor, --in-process (no fresh process per model: quicker, but CPU peak memory is then not
measured), and the model sizes (--x-dim, --z-dim, --h-dim, --dense-dim) for quick checks. The targets (every model at
half the machine's matmul rate or above on CPU; VRNN 2.5x and DKF, SRNN, RVAE 1.3x faster than their
references; 200 frames at most 4.4x the time of 50) are checked and reported, not enforced.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode

from dvae.config import MODEL_NAMES, ModelConfig
from dvae.models import build_model
from dvae.cpu import keep_freed_memory, unlock_mkl_on_amd
from dvae.cuda_graph import CudaGraphStep, make_capturable

from . import write_result
from .reference_models import build_reference

ROOT = Path(__file__).resolve().parent.parent
SPEEDUP_TARGETS = {"vrnn": 2.5, "dkf": 1.3, "srnn": 1.3, "rvae_causal": 1.3, "rvae_noncausal": 1.3}
GPU_SPEEDUP_TARGET = 5.0  # the stepping models (those in SPEEDUP_TARGETS) on a GPU
MATMUL_FRACTION_TARGET = 0.5  # on CPU
LENGTH_RATIO_TARGET = 4.4  # step time at 200 frames over 50 frames


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_rate(matmul, n: int, device: torch.device, reps: int) -> float:
    """The best FLOP/s of `matmul`, an n x n by n x n product, over `reps` runs after two warm-ups."""
    times = []
    for i in range(reps + 2):
        sync(device)
        start = time.perf_counter()
        matmul()
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times)


def matmul_rates(device: torch.device, n: int, reps: int = 9) -> dict[str, float]:
    """The machine's float32 matrix-multiply rate (FLOP/s) by each library PyTorch calls:
    `sgemm`, torch.mm at full float32 precision (MKL or OpenBLAS on CPU, cuBLAS on CUDA), and
    on CPU `onednn`, oneDNN's float32 kernel (what nn.LSTM and, at matmul precision "medium",
    torch.mm run on). Their best is the machine's rate: on some CPUs (AMD's, for MKL) the two
    differ by more than 2x."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        rates = {"sgemm": best_rate(lambda: torch.mm(a, b, out=out), n, device, reps)}
    finally:
        torch.set_float32_matmul_precision(precision)
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        a_onednn, b_onednn = a.to_mkldnn(), b.t().contiguous().to_mkldnn()
        try:  # a private binding: a torch without it leaves the sgemm rate alone
            rates["onednn"] = best_rate(lambda: torch._C._nn.mkldnn_linear(a_onednn, b_onednn), n, device, reps)
        except (AttributeError, RuntimeError) as error:
            print(f"oneDNN's float32 rate not measured: {error!r:.200}", file=sys.stderr)
    return rates


def make_step(model, x, amp: str | None, cuda_graph: bool = False):
    """The trainer's step on batch x, as a function returning the loss; with cuda_graph, the
    trainer's CUDA-graph step (dvae.cuda_graph.CudaGraphStep)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    if cuda_graph:
        make_capturable(optimizer, True, x.device)
        graph_step = CudaGraphStep(model, optimizer, grad_clip=5.0, bf16=amp == "bf16")

        def replay():
            loss = graph_step(x, kl_weight=1.0)
            if loss is None:
                raise RuntimeError("the step could not be recorded as a CUDA graph (see the warning above)")
            return loss

        return replay
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp == "bf16")

    def step():
        with autocast:
            loss = model.loss(x, kl_weight=1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        return loss

    return step


def count_flops(model, x, amp: str | None) -> tuple[int, int]:
    """FLOPs of one forward and backward: (counted by FlopCounterMode, added for nn.LSTM kernels)."""
    lstm_flops = 0

    def count_lstm(module, inputs, output):
        nonlocal lstm_flops
        B, T, n_in = inputs[0].shape
        H, directions = module.hidden_size, 2 if module.bidirectional else 1
        forward = directions * 2 * B * T * 4 * H * (n_in + H)
        lstm_flops += forward * (3 if torch.is_grad_enabled() else 1)

    hooks = [m.register_forward_hook(count_lstm) for m in model.modules() if isinstance(m, torch.nn.LSTM)]
    try:
        with FlopCounterMode(display=False) as counter:
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
                loss = model.loss(x, kl_weight=1.0)
            loss.total.backward()
    finally:
        for hook in hooks:
            hook.remove()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops(), lstm_flops


# What the step's matrix products are, at the dispatcher: BLAS products and the fused RNN kernels.
MATRIX_PRODUCTS = {"mm", "addmm", "bmm", "baddbmm", "mkldnn_rnn_layer", "mkldnn_rnn_layer_backward",
                   "_cudnn_rnn", "_cudnn_rnn_backward"}


class RecordMatrixProducts(TorchDispatchMode):
    """Records every matrix product one step runs, forward and backward, with copies of its arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket.__name__ in MATRIX_PRODUCTS:
            copy = lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v  # noqa: E731
            self.calls.append((func, tree_map(copy, args), tree_map(copy, kwargs)))
        return func(*args, **kwargs)


def record_matrix_products(step) -> list:
    """The matrix products that one call of `step` runs, forward and backward, each as
    (op, copies of its arguments), in the order they ran."""
    with RecordMatrixProducts() as recorder:
        step()
    return recorder.calls


def replay_seconds(calls: list, device: torch.device, reps: int = 5) -> float:
    """The best of `reps` replays of `calls`, in order and with nothing else between them: a
    lower bound on what these products cost inside the step, where other work evicts their
    operands from the caches. The step's time less this is what its elementwise work,
    copies and Python cost at least."""
    best = float("inf")
    for _ in range(reps + 1):  # the first replay warms up
        sync(device)
        start = time.perf_counter()
        for func, args, kwargs in calls:
            func(*args, **kwargs)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def measure(name: str, frames: int, args) -> dict:
    """Every figure for one model at one length (run in a fresh process unless --in-process)."""
    device = torch.device(args.device)
    if args.malloc == "reuse":
        keep_freed_memory()
    mkl_unlocked = args.mkl == "unlocked" and unlock_mkl_on_amd()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)  # as the trainer's --matmul-precision
    cfg = ModelConfig(name=name, x_dim=args.x_dim, z_dim=args.z_dim, h_dim=args.h_dim, dense_dim=args.dense_dim,
                      v_dim=args.z_dim, likelihood="itakura_saito")
    torch.manual_seed(0)
    fast = build_model(cfg).to(device).train()
    if args.compile:
        fast.compile_steps(args.compile_mode)
    torch.manual_seed(0)
    reference = build_reference(cfg).to(device).train()
    x = torch.randn(args.batch, frames, args.x_dim, generator=torch.Generator().manual_seed(1)).exp().to(device)
    steps = {"fast": make_step(fast, x, args.amp, args.cuda_graph), "reference": make_step(reference, x, args.amp)}
    load_before = os.getloadavg()[0]

    # Peak memory first, while the process's high-water mark is still the setup's.
    rss_before = peak_rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        allocated_before = torch.cuda.memory_allocated(device)
    warmup_started = time.perf_counter()
    for _ in range(args.warmup):
        steps["fast"]()
    sync(device)
    warmup_s = time.perf_counter() - warmup_started
    if device.type == "cuda":
        peak_mem = torch.cuda.max_memory_allocated(device) - allocated_before
    else:
        peak_mem = peak_rss_bytes() - rss_before if not args.in_process else None
    for _ in range(args.warmup):
        steps["reference"]()

    flops_counted, flops_lstm = count_flops(fast, x, args.amp)
    rates = matmul_rates(device, args.sgemm_size or (8192 if device.type == "cuda" else 2048))
    matmul_rate = max(rates.values())

    times, faults = {"fast": [], "reference": []}, {"fast": 0, "reference": 0}
    for rep in range(args.reps):
        order = ("fast", "reference") if rep % 2 == 0 else ("reference", "fast")  # no side always first
        for which in order:
            sync(device)
            faults_before, start = page_faults(), time.perf_counter()
            steps[which]()
            sync(device)
            times[which].append(time.perf_counter() - start)
            faults[which] += page_faults() - faults_before
    step_s, ref_s = statistics.median(times["fast"]), statistics.median(times["reference"])
    # after the timed steps, which the recorded copies would otherwise crowd in memory
    products = [] if args.cuda_graph else record_matrix_products(steps["fast"])
    products_s = replay_seconds(products, device) if products else None
    n_products = len(products)
    del products
    flops = flops_counted + flops_lstm
    return {
        "model": name, "frames": frames, "batch": args.batch,
        "step_ms": 1e3 * step_s, "reference_step_ms": 1e3 * ref_s, "speedup": ref_s / step_s,
        "step_ms_all": [1e3 * t for t in times["fast"]], "reference_step_ms_all": [1e3 * t for t in times["reference"]],
        "warmup_s": warmup_s,
        "flops": flops, "flops_counted": flops_counted, "flops_lstm_analytic": flops_lstm,
        "achieved_gflops": flops / step_s / 1e9, "matmul_gflops": matmul_rate / 1e9,
        **{f"{library}_gflops": rate / 1e9 for library, rate in rates.items()},
        "matmul_fraction": flops / step_s / matmul_rate,
        "reference_matmul_fraction": flops / ref_s / matmul_rate,
        # the speed-up of a step doing the same FLOPs at the machine's matmul rate: no faster model can beat it
        "speedup_ceiling": ref_s * matmul_rate / flops,
        # the step's own matrix products replayed alone (not under --cuda-graph): the time they need at
        # their shapes, the share of the step they are, and the speed-up if nothing else took any time
        "matrix_products_ms": None if products_s is None else 1e3 * products_s, "matrix_products": n_products,
        "matrix_products_share": None if products_s is None else products_s / step_s,
        "matrix_products_fraction": None if products_s is None else flops / products_s / matmul_rate,
        "speedup_matrix_products_bound": None if products_s is None else ref_s / products_s,
        "peak_mem_mb": None if peak_mem is None else peak_mem / 2**20,
        "page_faults_per_step": faults["fast"] / args.reps, "reference_page_faults_per_step": faults["reference"] / args.reps,
        "mkl_unlocked": mkl_unlocked,
        "threads": torch.get_num_threads(), "load_before": load_before, "load_after": os.getloadavg()[0],
    }


def run_child(name: str, frames: int, argv: list[str]) -> dict:
    """`measure` in a fresh interpreter, so that its peak resident set is its own."""
    cmd = [sys.executable, "-m", "benchmarks.bench_step", *argv, "--child", name, str(frames)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark of {name} at {frames} frames failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_targets(rows: list[dict], device: str) -> list[dict]:
    checks = []
    for r in rows:
        if device == "cpu":
            checks.append({"model": r["model"], "frames": r["frames"], "target": f"matmul_fraction >= {MATMUL_FRACTION_TARGET}",
                           "value": r["matmul_fraction"], "holds": r["matmul_fraction"] >= MATMUL_FRACTION_TARGET})
        if r["model"] in SPEEDUP_TARGETS:
            want = GPU_SPEEDUP_TARGET if device == "cuda" else SPEEDUP_TARGETS[r["model"]]
            checks.append({"model": r["model"], "frames": r["frames"], "target": f"speedup >= {want}",
                           "value": r["speedup"], "holds": r["speedup"] >= want})
    by_key = {(r["model"], r["frames"]): r for r in rows}
    for r in rows:
        if r["frames"] == 200 and (r["model"], 50) in by_key:
            ratio = r["step_ms"] / by_key[(r["model"], 50)]["step_ms"]
            checks.append({"model": r["model"], "frames": 200, "target": f"time(200) / time(50) <= {LENGTH_RATIO_TARGET}",
                           "value": ratio, "holds": ratio <= LENGTH_RATIO_TARGET})
    return checks


def table(rows: list[dict]) -> str:
    head = (f"{'model':<15}{'T':>5}{'step ms':>10}{'ref ms':>10}{'speed-up':>10}{'GFLOP':>8}"
            f"{'GFLOP/s':>9}{'of peak':>10}{'ref':>6}{'ceiling':>9}{'mm ms':>8}{'mm peak':>9}{'mm bound':>10}"
            f"{'peak MB':>9}{'faults MB':>10}{'load':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        mem = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        products = ("-", "-", "-") if r["matrix_products_ms"] is None else (
            f"{r['matrix_products_ms']:.1f}", f"{100 * r['matrix_products_fraction']:.0f}%",
            f"{r['speedup_matrix_products_bound']:.2f}x")
        lines.append(f"{r['model']:<15}{r['frames']:>5}{r['step_ms']:>10.1f}{r['reference_step_ms']:>10.1f}"
                     f"{r['speedup']:>9.2f}x{r['flops'] / 1e9:>8.2f}{r['achieved_gflops']:>9.1f}"
                     f"{100 * r['matmul_fraction']:>9.0f}%{100 * r['reference_matmul_fraction']:>5.0f}%"
                     f"{r['speedup_ceiling']:>8.2f}x{products[0]:>8}{products[1]:>9}{products[2]:>10}{mem:>9}{r['page_faults_per_step'] * resource.getpagesize() / 2**20:>10.0f}"
                     f"{r['load_before']:>6.1f}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_step", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    p.add_argument("--frames", nargs="+", type=int, default=[50, 200])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--x-dim", type=int, default=513)
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--h-dim", type=int, default=128)
    p.add_argument("--dense-dim", type=int, default=128)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--sgemm-size", type=int, default=0, help="0: 2048 on CPU, 8192 on CUDA")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-mode", default=None, help="torch.compile's mode, e.g. reduce-overhead (CUDA graphs)")
    p.add_argument("--amp", choices=["bf16"], default=None)
    p.add_argument("--cuda-graph", action="store_true", help="the fast model's whole step replayed as a CUDA graph")
    p.add_argument("--matmul-precision", choices=["highest", "high", "medium"], default="highest")
    p.add_argument("--malloc", choices=["reuse", "glibc"], default="reuse",
                   help="reuse (as the trainer does): glibc keeps freed memory; glibc: its defaults, "
                        "which fault in fresh pages every step")
    p.add_argument("--mkl", choices=["unlocked", "vendor"], default="unlocked",
                   help="unlocked (as the trainer does): on AMD CPUs MKL picks its kernels by the CPU's "
                        "features; vendor: MKL's own choice, its generic path on non-Intel CPUs")
    p.add_argument("--in-process", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--child", nargs=2, metavar=("MODEL", "FRAMES"), help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args)))
        return {}
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.cuda_graph and args.device != "cuda":
        raise SystemExit("--cuda-graph needs --device cuda")
    started = time.time()
    rows, failed = [], []
    for name in args.models:
        for frames in args.frames:
            try:
                row = measure(name, frames, args) if args.in_process else run_child(name, frames, argv)
            except RuntimeError as error:  # one model's failure leaves the others' figures
                failed.append({"model": name, "frames": frames, "error": str(error)[-3000:]})
                print(f"  {name} T={frames}: FAILED\n{str(error)[-1500:]}", flush=True)
                continue
            rows.append(row)
            print(f"  {name} T={frames}: {row['step_ms']:.1f} ms (reference {row['reference_step_ms']:.1f} ms)", flush=True)
    checks = check_targets(rows, args.device)
    result = {
        "command": "python -m benchmarks.bench_step " + " ".join(argv),
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "threads": rows[0]["threads"] if rows else None,
        "torch": torch.__version__, "compile": args.compile, "compile_mode": args.compile_mode,
        "cuda_graph": args.cuda_graph, "amp": args.amp, "malloc": args.malloc, "mkl": args.mkl,
        "matmul_precision": args.matmul_precision,
        "sizes": {"batch": args.batch, "x_dim": args.x_dim, "z_dim": args.z_dim, "h_dim": args.h_dim,
                  "dense_dim": args.dense_dim, "likelihood": "itakura_saito"},
        "reps": args.reps, "warmup": args.warmup, "seconds": time.time() - started,
        "peak_memory_method": "cuda max_memory_allocated" if args.device == "cuda" else
                              None if args.in_process else "growth of ru_maxrss over the warm-up steps, fresh process",
        "rows": rows, "failed": failed, "targets": checks,
    }
    print()
    print(table(rows))
    print()
    for c in checks:
        print(f"{'holds' if c['holds'] else 'FAILS':<6} {c['model']:<15} T={c['frames']:<4} {c['target']:<28} ({c['value']:.2f})")
    write_result(result, Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"step_{args.device}.json")
    return result


if __name__ == "__main__":
    main()
