"""What every DVAE shares: prior family, likelihood, the ELBO, noise and feedback draws."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import ModelConfig
from .distributions import LatentPrior
from .likelihoods import build_likelihood


@dataclass
class DVAEOutput:
    x_out: torch.Tensor  # likelihood parameters, (batch, time, x_dim)
    kl: torch.Tensor  # KL(q || p) per frame, summed over latent dimensions, (batch, time)
    latents: dict[str, torch.Tensor] = field(default_factory=dict)  # the sampled z (and v): decode(x, **latents)


@dataclass
class Loss:
    total: torch.Tensor  # recon + kl_weight * kl: what is minimised
    recon: torch.Tensor  # -E_q log p(x | z), per frame
    kl: torch.Tensor  # KL per frame


class DVAE(nn.Module):
    """Base of all models. Subclasses implement `forward`, `decode` and `generate`.

    All tensors are batch-first (batch, time, features). `forward` draws all its Gaussian
    noise before any computation, so that the same seed gives the same z whichever path
    (teacher forcing or feedback) the model then takes.
    """

    # True for models whose generative recursion reads x_{t-1} (STORN, VRNN, SRNN): they can
    # run in generation mode, feeding back their own output instead of the data.
    reads_previous_x = False
    # The methods that run one frame of a recursion that needs the sampled z: `compile_steps`
    # compiles them. Everything else already runs over whole sequences.
    step_methods: tuple[str, ...] = ()

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.prior = LatentPrior(cfg.prior, cfg.student_df, cfg.learn_df)
        self.likelihood = build_likelihood(cfg.likelihood, cfg.x_dim, cfg.gaussian_variance == "learned")

    def decoder_widths(self) -> tuple[int, ...]:
        """The hidden widths of the decoder p(x_t | ·): decoder_layers, or one layer of dense_dim."""
        if self.cfg.decoder_layers:
            return tuple(int(w) for w in self.cfg.decoder_layers.split(","))
        return (self.cfg.dense_dim,)

    def loss(self, x: torch.Tensor, kl_weight: float = 1.0, feedback_prob: float = 0.0) -> Loss:
        out = self(x, feedback_prob=feedback_prob)
        recon = self.likelihood.nll(x, out.x_out).mean()
        kl = out.kl.mean()
        return Loss(recon + kl_weight * kl, recon, kl)

    def zeros(self, *shape: int) -> torch.Tensor:
        return next(self.parameters()).new_zeros(shape)

    def noise(self, x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
        return torch.randn(x.shape[0], x.shape[1], dim or self.cfg.z_dim, device=x.device, dtype=x.dtype)

    def feedback_mask(self, x: torch.Tensor, prob: float) -> torch.Tensor | None:
        """Where (batch, time) the recursion reads the model's own previous output; None: nowhere."""
        if prob <= 0.0:
            return None
        if not self.reads_previous_x:
            raise ValueError(f"{type(self).__name__} does not read x_(t-1): generation mode does not apply")
        return torch.rand(x.shape[0], x.shape[1], 1, device=x.device) < prob

    def feed(self, out_t: torch.Tensor, phi_x: nn.Module, fx_t: torch.Tensor, mask_t: torch.Tensor) -> torch.Tensor:
        """Features of x_t for the next step: the data's `fx_t`, or where `mask_t` is set the
        model's own output. The fed-back output is detached, as in scheduled sampling."""
        return torch.where(mask_t, phi_x(self.likelihood.output_features(out_t.detach())), fx_t)

    def no_data(self, batch: int, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, mask) that make a free-running recursion read only its own output."""
        fx = self.zeros(batch, n_frames, self.cfg.dense_dim)
        return fx, torch.ones(batch, n_frames, 1, dtype=torch.bool, device=fx.device)

    def compile_steps(self, mode: str | None = None) -> "DVAE":
        """Runs the per-frame step methods under torch.compile, which fuses each step's small
        elementwise operations (forward and backward) into a few kernels. In benchmarks/bench_step.py
        it did not pay: on a CPU the steps' matrix products dominate, and on an H100, with a
        CUDA graph per frame's step ("reduce-overhead"), the steps were slower than eager, the
        backward pass still running frame by frame (the trainer's cuda_graph, which records
        the whole step, is what paid there). Off by default.
        `mode` is torch.compile's ("reduce-overhead" adds CUDA graphs). A step that fails to
        compile warns and runs eagerly."""
        torch._dynamo.config.allow_rnn = True  # steps read nn.LSTM weights (they never call the module)
        for name in self.step_methods:
            setattr(self, name, CompiledStep(getattr(self, name), mode))
        return self

    def forward(self, x: torch.Tensor, feedback_prob: float = 0.0) -> DVAEOutput:
        raise NotImplementedError

    def decode(self, x: torch.Tensor, **latents: torch.Tensor) -> torch.Tensor:
        """The generative network with the latents given and x teacher-forced: likelihood parameters."""
        raise NotImplementedError

    @torch.no_grad()
    def generate(self, n_frames: int, batch: int = 1, prime: torch.Tensor | None = None) -> torch.Tensor:
        """Samples n_frames new frames (batch, n_frames, x_dim) as expected values of p(x_t | ·).

        Cold (prime None): latents from the prior, the model feeding back its own output.
        Primed: the first frames of `prime` (batch, P, x_dim) are run through the model with
        their posterior latents, then the model continues on its own from that state; the
        batch is then prime's.
        """
        raise NotImplementedError


class CompiledStep:
    """A step function under torch.compile, falling back to eager if compiling it fails."""

    def __init__(self, step, mode: str | None = None):
        self.eager, self.compiled = step, torch.compile(step, mode=mode)

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as error:  # compile errors surface at the first call of each shape
                warnings.warn(f"torch.compile of {self.eager.__name__} failed, running it eagerly: {error!r:.300}")
                self.compiled = None
        return self.eager(*args)
