"""The one training loop, used unchanged by the command line and by the Ray Tune trainable.

Each epoch: train on shuffled windows with the KL weight and scheduled-sampling probability
of that epoch, validate, step the learning-rate schedule, keep a copy of the best weights,
write a checkpoint, and hand the epoch's figures to `on_epoch`. The validation loss is the
negative ELBO per frame at KL weight 1, so it is comparable across epochs, warm-up lengths
and priors: it is what early stopping, ASHA and Optuna all compare.

Resuming from `last.pt` gives the same result as an uninterrupted run under a fixed seed:
the checkpoint holds the model, optimiser, scheduler, every RNG state and the loop's state,
and each epoch's batch order derives from (seed, epoch) alone.
"""
from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import Config, ConfigError
from .cuda_graph import CudaGraphStep, make_capturable
from .models import DVAE, build_model
from .schedules import feedback_prob, kl_weight, lr_schedule

OnEpoch = Callable[[dict, Path], None]
_log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device: {name} asked for, and this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def batches(windows: np.ndarray, batch_size: int, generator: torch.Generator | None = None):
    """Batches of windows, shuffled by `generator` (in order without one). Indices are sorted
    within a batch so that reads from the memory-mapped cache stay mostly sequential."""
    n = len(windows)
    order = torch.randperm(n, generator=generator).numpy() if generator is not None else np.arange(n)
    for start in range(0, n, batch_size):
        idx = np.sort(order[start:start + batch_size])
        yield torch.from_numpy(np.ascontiguousarray(windows[idx], dtype=np.float32))


def training_sample(windows: np.ndarray, n: int = 512) -> torch.Tensor:
    """Up to n training windows spread evenly over the split, for the input statistics."""
    idx = np.unique(np.linspace(0, len(windows) - 1, min(n, len(windows))).astype(int))
    return torch.from_numpy(np.ascontiguousarray(windows[idx], dtype=np.float32))


def autocast(cfg: Config, device):
    """bf16 autocast of forward and loss when asked for; the backward pass follows it."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.amp == "bf16")


def train_epoch(model: DVAE, windows, optimizer, cfg: Config, beta: float, ss_prob: float, generator, device,
                graph_step: CudaGraphStep | None = None) -> dict:
    """One epoch; with `graph_step`, full batches replay its CUDA graph and a last short one steps eagerly."""
    model.train()
    sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
    n = 0
    for x in batches(windows, cfg.train.batch_size, generator):
        x = x.to(device)
        loss = graph_step(x, beta, ss_prob) if graph_step is not None and len(x) == cfg.train.batch_size else None
        replayed = loss is not None
        if not replayed:
            with autocast(cfg, device):
                loss = model.loss(x, kl_weight=beta, feedback_prob=ss_prob)
        parts = {"loss": loss.total.item(), "recon": loss.recon.item(), "kl": loss.kl.item()}
        if not math.isfinite(parts["loss"]):
            return parts  # diverged: stop (eagerly, before the update spreads NaN into the weights)
        if not replayed:
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            if cfg.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            optimizer.step()
        for key, value in parts.items():
            sums[key] += value * len(x)
        n += len(x)
    return {key: value / n for key, value in sums.items()}


@torch.no_grad()
def validate(model: DVAE, windows, cfg: Config, device) -> dict:
    """The negative ELBO per frame at KL weight 1 and its parts. The noise is drawn from a
    fixed seed in a forked RNG, so the figure does not jitter from epoch to epoch and the
    training RNG stream is left untouched."""
    model.eval()
    ss = 1.0 if cfg.train.generation_mode_eval else 0.0
    recon = kl = 0.0
    n = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.train.seed)
        for x in batches(windows, cfg.train.batch_size):
            with autocast(cfg, device):
                loss = model.loss(x.to(device), kl_weight=1.0, feedback_prob=ss)
            recon += loss.recon.item() * len(x)
            kl += loss.kl.item() * len(x)
            n += len(x)
    return {"val_loss": (recon + kl) / n, "val_recon": recon / n, "val_kl": kl / n}


def rng_states() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": list(random.getstate()[1]),
    }


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(("MT19937", states["numpy"].numpy().astype(np.uint32), states["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(states["python"]), None))


def readable_checkpoint(path: Path, device, log) -> tuple[Path, dict]:
    """The first readable of `path` (a last.pt, or a folder holding one) and the best.pt beside
    it: a damaged last.pt costs the epochs since the best one, not the whole run."""
    folder = path if path.is_dir() else path.parent
    candidates = [folder / "last.pt", folder / "best.pt"] if path.is_dir() else [path, folder / "best.pt"]
    for candidate in candidates:
        try:
            return candidate, load_checkpoint(candidate, map_location=device)
        except CheckpointError as e:
            log(f"skipping {e}")
    raise CheckpointError(f"no readable checkpoint in {folder} (tried {', '.join(c.name for c in candidates)})")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(cfg: Config, run_dir: str | Path, *, corpus=None, on_epoch: OnEpoch | None = None,
          resume_from: str | Path | None = None, log: Callable[[str], None] | None = None,
          checkpoint_dir: str | Path | None = None) -> dict:
    """Trains `cfg` into `run_dir` (checkpoint/, tb/) and returns a summary.

    `corpus` is a prepared corpus (prepared from cfg.data when None); `resume_from` a
    last.pt (or the folder holding it) to continue from; `on_epoch(metrics, checkpoint_dir)` is called after every
    epoch's checkpoint is on disk; `checkpoint_dir`: where last.pt and best.pt go instead of run_dir/checkpoint.
    """
    from tensorboardX import SummaryWriter

    from .data import prepare_corpus

    log = log or _log.info
    device = pick_device(cfg.train.device)
    if cfg.train.cuda_graph and device.type != "cuda":
        raise ConfigError(f"train.cuda_graph: needs a CUDA device, and this run's device is {device}")
    run_dir = Path(run_dir).absolute()
    ckpt_dir = Path(checkpoint_dir).absolute() if checkpoint_dir is not None else run_dir / "checkpoint"
    if corpus is None:
        corpus = prepare_corpus(cfg.data)
    cfg = cfg.for_data(corpus.feature_dim)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)

    train_windows, valid_windows = corpus.training_windows()
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model)
    model.likelihood.standardise(training_sample(train_windows))
    model.to(device)
    if cfg.train.compile:
        model.compile_steps()
    optimizer_cls = torch.optim.AdamW if cfg.train.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_cls(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scheduler = lr_schedule(optimizer, cfg.train)
    loop = {"epoch": 0, "best_val_loss": math.inf, "best_epoch": 0, "bad_epochs": 0, "stop_reason": None}
    metrics: dict = {}
    best_model = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    if resume_from is not None:
        resume_from, state = readable_checkpoint(Path(resume_from), device, log)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_states(state["rng"])
        loop.update(state["loop"])
        best_model, metrics = state["best_model"], state["metrics"]
        if loop["stop_reason"] == "completed" and loop["epoch"] < cfg.train.epochs:
            loop["stop_reason"] = None  # more epochs asked for: train on
        log(f"resumed from {resume_from} after epoch {loop['epoch']}")
    make_capturable(optimizer, cfg.train.cuda_graph, device)
    graph_step = CudaGraphStep(model, optimizer, cfg.train.grad_clip, cfg.train.amp == "bf16") if cfg.train.cuda_graph else None

    writer = SummaryWriter(str(run_dir / "tb"))
    precision_before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(cfg.train.matmul_precision)
    try:
        while loop["stop_reason"] is None and loop["epoch"] < cfg.train.epochs:
            epoch = loop["epoch"]
            started = time.perf_counter()
            beta, ss = kl_weight(cfg.train, epoch), feedback_prob(cfg.train, epoch)
            lr = float(optimizer.param_groups[0]["lr"])
            generator = torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch)
            fit = train_epoch(model, train_windows, optimizer, cfg, beta, ss, generator, device, graph_step)
            diverged = not math.isfinite(fit["loss"])
            # a diverged epoch reports NaN, so that a search counts the trial as failed
            val = dict.fromkeys(("val_loss", "val_recon", "val_kl"), math.nan) if diverged \
                else validate(model, valid_windows, cfg, device)
            if cfg.train.lr_schedule == "plateau":
                scheduler.step(val["val_loss"])
            else:
                scheduler.step()
            loop["epoch"] = epoch + 1

            if diverged or not math.isfinite(val["val_loss"]):
                loop["stop_reason"] = f"diverged at epoch {epoch + 1}"
            elif val["val_loss"] < loop["best_val_loss"]:
                loop.update(best_val_loss=val["val_loss"], best_epoch=epoch + 1, bad_epochs=0)
                best_model = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                loop["bad_epochs"] += 1
                if cfg.train.patience and loop["bad_epochs"] >= cfg.train.patience:
                    loop["stop_reason"] = "early_stopped"
            if loop["stop_reason"] is None and loop["epoch"] >= cfg.train.epochs:
                loop["stop_reason"] = "completed"

            metrics = {
                "epoch": epoch + 1, **val, "train_loss": fit["loss"], "train_recon": fit["recon"],
                "train_kl": fit["kl"], "kl_weight": beta, "ss_prob": ss, "lr": lr,
                "best_val_loss": loop["best_val_loss"], "best_epoch": loop["best_epoch"],
                "diverged": (loop["stop_reason"] or "").startswith("diverged"),
                "stop_reason": loop["stop_reason"], "epoch_time_s": time.perf_counter() - started,
            }
            state = {
                "config": cfg.to_dict(), "model": model.state_dict(), "best_model": best_model,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng_states(), "loop": dict(loop), "metrics": metrics,
            }
            save_checkpoint(state, ckpt_dir / "last.pt")
            if loop["best_epoch"] == epoch + 1:
                save_checkpoint(state, ckpt_dir / "best.pt")
            write_scalars(writer, metrics)
            if cfg.train.media_every and (epoch + 1) % cfg.train.media_every == 0 and math.isfinite(val["val_loss"]):
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    torch.manual_seed(cfg.train.seed)  # leaves the training RNG stream as it was
                    write_media(writer, model, corpus, epoch + 1, device)
            log(progress_line(metrics, cfg.train.epochs))
            if on_epoch is not None:
                on_epoch(metrics, ckpt_dir)
    finally:
        torch.set_float32_matmul_precision(precision_before)
        writer.close()
    return {
        "best_val_loss": loop["best_val_loss"], "best_epoch": loop["best_epoch"], "epochs_run": loop["epoch"],
        "stop_reason": loop["stop_reason"], "best_checkpoint": str(ckpt_dir / "best.pt"),
        "last_checkpoint": str(ckpt_dir / "last.pt"), "final": metrics,
    }


def progress_line(m: dict, epochs: int) -> str:
    line = (f"epoch {m['epoch']:>3}/{epochs}  train {m['train_loss']:.3f}  val {m['val_loss']:.3f} "
            f"(recon {m['val_recon']:.3f} kl {m['val_kl']:.3f})  β {m['kl_weight']:.2f}  lr {m['lr']:.2e}")
    if m["ss_prob"]:
        line += f"  ss {m['ss_prob']:.2f}"
    line += f"  {m['epoch_time_s']:.1f}s"
    return line + (f"  [{m['stop_reason']}]" if m["stop_reason"] else "")


def write_scalars(writer, m: dict) -> None:
    step = m["epoch"]
    for key in ("val_loss", "val_recon", "val_kl", "train_loss", "train_recon", "train_kl",
                "kl_weight", "lr", "ss_prob", "best_val_loss"):
        if math.isfinite(m[key]):
            writer.add_scalar(key, m[key], step)


@torch.no_grad()
def write_media(writer, model: DVAE, corpus, epoch: int, device, seconds: float = 3.0) -> None:
    """The first validation utterance and its reconstruction: an image, and audio for speech."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: the process's backend stays as the caller set it

    utterance = corpus.utterances("valid")[0]
    frames = int(seconds * corpus.frame_rate)
    x = torch.tensor(utterance.features[:frames], dtype=torch.float32)
    model.eval()
    recon = model.likelihood.mean(model(x[None].to(device)).x_out)[0].cpu()
    power = model.cfg.likelihood == "itakura_saito"
    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, data, title in zip(axes, (x, recon), ("data", "reconstruction")):
        ax.imshow((torch.log10(data + 1e-8) if power else data).T.numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(f"{utterance.name}: {title}")
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    writer.add_image("reconstruction", image, epoch, dataformats="HWC")
    if corpus.kind == "speech":
        wave = torch.tensor(utterance.waveform, dtype=torch.float32)
        phase = corpus.extractor.stft(wave)[:frames] if power else None
        audio = corpus.extractor.resynthesise(recon, phase=phase)
        writer.add_audio("reconstruction", (audio / audio.abs().max().clamp_min(1e-8)).numpy(), epoch,
                         sample_rate=corpus.extractor.sample_rate)
