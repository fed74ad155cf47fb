"""The whole training step as one CUDA graph, recorded once and replayed for every batch.

On a GPU a stepping model's step (DKF, VRNN, SRNN, RVAE) is thousands of small kernels, and
launching them from Python costs more than running them. Replaying a recorded graph launches
all of them at once. Torch's per-frame compilation (`DVAE.compile_steps`) cannot do this: it
graphs each frame's step separately, and the backward pass still runs frame by frame.
"""
from __future__ import annotations

import warnings

import torch

from .models import DVAE, Loss


def make_capturable(optimizer: torch.optim.Optimizer, on: bool, device: torch.device) -> None:
    """Sets Adam(W) up to be recorded in a graph (on) or run eagerly (off): the learning rate a
    tensor the graph reads (schedulers then fill it in place) and the step counts on the GPU.
    Applied after loading a checkpoint too, which may come from a run of the other kind."""
    for group in optimizer.param_groups:
        group["capturable"] = on
        lr = float(group["lr"])
        group["lr"] = torch.tensor(lr, device=device) if on else lr
    for state in optimizer.state.values():
        if "step" in state:
            state["step"] = state["step"].to(device if on else "cpu", torch.float32)


class CudaGraphStep:
    """The training step (forward, loss, backward, gradient clipping, optimiser update) recorded
    as a CUDA graph and replayed. A graph fixes its inputs' shapes and every host-side value,
    so it is recorded again when the batch shape or the scheduled-sampling probability changes;
    the KL weight and the learning rate are tensors it reads. Recording first runs a few steps
    (CUDA requires it); their changes to the weights, the optimiser's state and the RNGs are
    undone. The eager step stops before the update when the loss is not finite; a replay has
    already applied it, and the trainer stops the run after it all the same.

    If recording fails, it warns and every later call returns None: the caller steps eagerly.
    """

    WARMUP_STEPS = 3

    def __init__(self, model: DVAE, optimizer: torch.optim.Optimizer, grad_clip: float, bf16: bool):
        self.model, self.optimizer, self.grad_clip, self.bf16 = model, optimizer, grad_clip, bf16
        self.kl_weight = torch.zeros((), device=next(model.parameters()).device)
        self.graph = self.x = self.loss = self.key = None
        self.failed = False

    def _step(self, feedback_prob: float) -> Loss:
        # cast weights are not cached: a cache filled while recording would outlive the graph
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            loss = self.model.loss(self.x, kl_weight=self.kl_weight, feedback_prob=feedback_prob)
        loss.total.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return loss

    def _snapshot(self) -> dict:
        return {
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "optimizer": {p: {k: v.clone() for k, v in s.items() if torch.is_tensor(v)} for p, s in self.optimizer.state.items()},
            "rng": (torch.get_rng_state(), torch.cuda.get_rng_state()),
        }

    @torch.no_grad()
    def _restore(self, saved: dict) -> None:
        for k, v in self.model.state_dict().items():
            v.copy_(saved["model"][k])
        for p, state in self.optimizer.state.items():
            before = saved["optimizer"].get(p)
            for k, v in state.items():
                if torch.is_tensor(v):
                    v.copy_(before[k]) if before is not None else v.zero_()  # Adam's state starts at zero
        torch.set_rng_state(saved["rng"][0])
        torch.cuda.set_rng_state(saved["rng"][1])

    def _record(self, x: torch.Tensor, feedback_prob: float) -> None:
        self.graph = self.loss = None  # frees the previous graph's memory first
        self.x = x.clone()
        saved = self._snapshot()
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(self.WARMUP_STEPS):
                    self.optimizer.zero_grad(set_to_none=True)
                    self._step(feedback_prob)
            torch.cuda.current_stream().wait_stream(side)
        finally:
            self._restore(saved)
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.loss = self._step(feedback_prob)  # recorded, not run: the weights stay as restored
        self.graph, self.key = graph, (x.shape, x.dtype, feedback_prob)

    def __call__(self, x: torch.Tensor, kl_weight: float, feedback_prob: float = 0.0) -> Loss | None:
        """One step on batch x (on the GPU); its loss, or None if the graph cannot be recorded."""
        if self.failed:
            return None
        if self.key != (x.shape, x.dtype, feedback_prob):
            try:
                self._record(x, feedback_prob)
            except RuntimeError as error:
                warnings.warn(f"recording the training step as a CUDA graph failed, stepping eagerly: {error!r:.300}")
                self.failed, self.graph, self.loss = True, None, None
                return None
        self.x.copy_(x)
        self.kl_weight.fill_(kl_weight)
        self.graph.replay()
        return self.loss
