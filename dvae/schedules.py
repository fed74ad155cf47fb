"""Per-epoch schedules: KL warm-up weight, scheduled-sampling probability, learning rate.

Each schedule's length is one plain number of epochs, so a search can vary it.
"""
from __future__ import annotations

import math

import torch
from torch.optim import lr_scheduler

from .config import TrainConfig


def kl_weight(cfg: TrainConfig, epoch: int) -> float:
    """β for 0-based `epoch`. L = kl_warmup_epochs is when β first reaches 1.

    linear:    β = e / L
    staircase: the review's: 0 for L/5 epochs, then +0.2 every L/5 epochs (L = 50: 0 for 10 epochs, +0.2 every 10)
    cyclical:  cycles of L epochs, β rising linearly over the first half of each, then 1 (Fu et al., 2019)
    """
    L = cfg.kl_warmup_epochs
    if cfg.kl_warmup == "none" or L == 0:
        return 1.0
    if cfg.kl_warmup == "linear":
        return min(1.0, epoch / L)
    if cfg.kl_warmup == "staircase":
        return min(1.0, 0.2 * math.floor(epoch / (L / 5)))
    return min(1.0, (epoch % L) / (L / 2))


def feedback_prob(cfg: TrainConfig, epoch: int) -> float:
    """Scheduled sampling: the probability of feeding back the model's own output at `epoch`.
    L = ss_epochs is when it first reaches ss_max_prob, counted from ss_start_epoch; 0 before that.

    linear:    p = ss_max_prob * e / L
    staircase: the review's SRNN-GM, p = 0.1 * (1 + e // s) with stages of s = L/9 epochs:
               0.1 at the start, +0.1 each stage, 1.0 from e = L (capped at ss_max_prob)
    """
    if cfg.ss_epochs == 0 or epoch < cfg.ss_start_epoch:
        return 0.0
    e = epoch - cfg.ss_start_epoch
    if cfg.ss_schedule == "staircase":
        return min(cfg.ss_max_prob, (1 + math.floor(9 * e / cfg.ss_epochs)) / 10)
    return cfg.ss_max_prob * min(1.0, e / cfg.ss_epochs)


def lr_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """A scheduler stepped once per epoch (`plateau` is stepped with the validation loss)."""
    kind, epochs = cfg.lr_schedule, cfg.epochs
    floor = min(cfg.lr_min, cfg.lr)
    if kind == "constant":
        return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if kind == "step":
        return lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)
    if kind == "exponential":
        return lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_gamma)
    if kind == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=floor)
    if kind == "warmup_cosine":
        warmup = min(cfg.lr_warmup_epochs, epochs - 1)
        cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs - warmup), eta_min=floor)
        if warmup == 0:
            return cosine
        ramp = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup)
        return lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])
    # plateau: decay by lr_gamma after lr_step_epochs epochs without improvement
    return lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.lr_gamma, patience=cfg.lr_step_epochs, min_lr=floor)
