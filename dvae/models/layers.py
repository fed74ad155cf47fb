"""Building blocks shared by every model: MLPs, Gaussian heads, reparameterised sampling, and
the pieces that let a recurrence step only what depends on the sampled z."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def mlp(in_dim: int, hidden: int | Sequence[int], out_dim: int | None = None, dropout: float = 0.0) -> nn.Sequential:
    """A tanh MLP, the dense block used throughout the review's models: one hidden layer of
    width `hidden`, or one per width when `hidden` is a sequence.

    With `out_dim` a linear output layer follows; without it the tanh features are the output.
    """
    widths = [hidden] if isinstance(hidden, int) else list(hidden)
    layers: list[nn.Module] = []
    for width_in, width in zip([in_dim, *widths], widths):
        layers += [nn.Linear(width_in, width), nn.Tanh()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    if out_dim is not None:
        layers.append(nn.Linear(widths[-1], out_dim))
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


# A recurrence that reads [a_t, b_t] through a linear map, W [a; b] + bias = (W_a a + bias) + W_b b,
# can compute the share of a part known in advance (the data's features) for all frames in one
# matrix product, and add at each step only the share of what the loop samples (z). The helpers
# below split layers that way; `lstm_cell` is one step of nn.LSTM given its input's share.

def first_layer(net: nn.Sequential) -> nn.Linear:
    """The first linear layer of an `mlp`, or of a Sequential that starts with one."""
    first = net[0]
    return first[0] if isinstance(first, nn.Sequential) else first


def split_first_layer(net: nn.Sequential, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a network over [known, rest]: (known's share of its first layer plus the bias, for
    every frame at once; the block of that layer's weight that multiplies `rest`)."""
    layer = first_layer(net)
    w_known, w_rest = layer.weight.split([known.shape[-1], layer.in_features - known.shape[-1]], dim=1)
    return F.linear(known, w_known, layer.bias), w_rest


def after_first_layer(net: nn.Sequential, pre: torch.Tensor):
    """The rest of `net` applied to `pre`, the output of its first layer computed in shares."""
    layers = [layer for block in net for layer in (block if isinstance(block, nn.Sequential) else [block])]
    for layer in layers[1:]:
        pre = layer(pre)
    return pre


def lstm_input(rnn: nn.LSTM, known: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The same split for a single-layer LSTM's input: (known W_known^T + b_ih + b_hh, or the
    biases alone without `known`; the block of W_ih that multiplies the rest of the input)."""
    bias = rnn.bias_ih_l0 + rnn.bias_hh_l0
    if known is None:
        return bias, rnn.weight_ih_l0
    w_known, w_rest = rnn.weight_ih_l0.split([known.shape[-1], rnn.input_size - known.shape[-1]], dim=1)
    return F.linear(known, w_known, bias), w_rest


def lstm_cell(gates_in: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], w_hh: torch.Tensor):
    """One step of nn.LSTM (gate order i, f, g, o) from the input's share of the gates,
    gates_in = x_t W_ih^T + b_ih + b_hh, (batch, 4H). Returns the new (h, c), each (batch, H)."""
    h, c = state
    i, f, g, o = torch.addmm(gates_in, h, w_hh.t()).chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_step(rnn: nn.LSTM, x_t: torch.Tensor, state=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of a single-layer nn.LSTM over its whole input x_t (batch, in), from `state`
    (h, c) or zeros: the new (h, c). For recursions whose input is known only at each step."""
    bias, w_ih = lstm_input(rnn)
    return lstm_cell(torch.addmm(bias, x_t, w_ih.t()), zero_state(x_t, rnn) if state is None else state, rnn.weight_hh_l0)


def zero_state(x: torch.Tensor, rnn: nn.LSTM) -> tuple[torch.Tensor, torch.Tensor]:
    h = x.new_zeros(x.shape[0], rnn.hidden_size)
    return h, h


def last_state(state) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.LSTM's final (h, c), each (1, batch, H), as the (batch, H) pair that `lstm_cell` steps."""
    return state[0][0], state[1][0]
