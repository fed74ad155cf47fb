"""Building blocks shared by every model: MLPs, Gaussian heads and reparameterised sampling."""
from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int | None = None, dropout: float = 0.0) -> nn.Sequential:
    """A one-hidden-layer tanh MLP, the dense block used throughout the review's models.

    With `out_dim` a linear output layer follows; without it the tanh features are the output.
    """
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    if out_dim is not None:
        layers.append(nn.Linear(hidden, out_dim))
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """Maps features to the mean and log-variance of a diagonal Gaussian."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.out = nn.Linear(in_dim, 2 * out_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.out(h).chunk(2, dim=-1)
        return mean, logvar


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return mean + torch.exp(0.5 * logvar) * eps


def shift_right(x: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
    """x_{t-1} for every t of a (batch, time, dim) tensor, with `first` (default zeros) at t=0."""
    first = torch.zeros_like(x[:, :1]) if first is None else first.unsqueeze(1)
    return torch.cat([first, x[:, :-1]], dim=1)


def step(rnn: nn.LSTM, x_t: torch.Tensor, state):
    """One time step of a single-layer, batch-first `nn.LSTM`: (output (B, H), new state)."""
    out, state = rnn(x_t.unsqueeze(1), state)
    return out.squeeze(1), state
