"""Plain references for the speed benchmark: every model written the straightforward way.

Each recurrence is an LSTM cell stepped in a Python loop (`torch.lstm_cell`, the function
behind nn.LSTMCell), each time-distributed layer is called frame by frame, and per-step
results are written into preallocated tensors. Nothing is hoisted out of a loop and no
RNN runs over a whole sequence in one call. Under autograd each such write (`out[:, t] = v`)
costs a copy of the whole tensor's gradient in the backward pass, so a reference's time grows
faster than the sequence's length.

Each reference subclasses its fast model and only swaps every nn.LSTM for a `CellLSTM`
that holds the very same parameters under the same names, then overrides `forward`. So a
reference built under the same seed has the fast model's weights, `load_state_dict` works
both ways, and both draw the same noise in the same order: with equal weights and seed they
give the same loss, up to floating-point rounding.
"""
from __future__ import annotations

import torch
from torch import nn

from dvae.config import ModelConfig
from dvae.models import DKF, DSAE, RVAE, SRNN, STORN, VAE, VRNN
from dvae.models.base import DVAEOutput
from dvae.models.layers import reparameterise


class CellLSTM(nn.Module):
    """An nn.LSTM's parameters (same names and shapes), run one frame at a time."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        self.hidden_size, self.bidirectional = lstm.hidden_size, lstm.bidirectional
        for name, param in lstm.named_parameters():
            self.register_parameter(name, param)

    def run(self, x, suffix: str, reverse: bool):
        B, T, _ = x.shape
        weights = [getattr(self, f"{w}{suffix}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h = c = x.new_zeros(B, self.hidden_size)
        out = x.new_empty(B, T, self.hidden_size)
        for t in reversed(range(T)) if reverse else range(T):
            h, c = torch.lstm_cell(x[:, t], (h, c), *weights)
            out[:, t] = h
        return out, h, c

    def forward(self, x):
        """Like a batch-first nn.LSTM from a zero state: (output, (h_n, c_n))."""
        runs = [self.run(x, "_l0", reverse=False)]
        if self.bidirectional:
            runs.append(self.run(x, "_l0_reverse", reverse=True))
        out = torch.cat([r[0] for r in runs], -1) if self.bidirectional else runs[0][0]
        return out, (torch.stack([r[1] for r in runs]), torch.stack([r[2] for r in runs]))


def cell_lstms(model: nn.Module) -> None:
    """Swaps every nn.LSTM attribute of `model` for a CellLSTM over the same parameters."""
    for name, module in list(model.named_children()):
        if isinstance(module, nn.LSTM):
            setattr(model, name, CellLSTM(module))


def per_frame(layer, *inputs: torch.Tensor):
    """`layer` called on each frame of (batch, time, ·) inputs in turn, its output(s) written
    into preallocated (batch, time, ·) tensors."""
    T = inputs[0].shape[1]
    outs = None
    for t in range(T):
        y = layer(*(x[:, t] for x in inputs))
        ys = y if isinstance(y, tuple) else (y,)
        if outs is None:
            outs = tuple(v.new_empty(v.shape[0], T, *v.shape[1:]) for v in ys)
        for out, v in zip(outs, ys):
            out[:, t] = v
    return outs if isinstance(y, tuple) else outs[0]


def cat(*xs):
    return torch.cat(xs, -1)


class RefVAE(VAE):
    def forward(self, x, feedback_prob=0.0):
        self.feedback_mask(x, feedback_prob)
        q_mean, q_logvar = per_frame(self.encoder, self.likelihood.features(x))
        z = reparameterise(q_mean, q_logvar, self.noise(x))
        return DVAEOutput(per_frame(self.decoder, z), self.prior.kl(q_mean, q_logvar, z), {"z": z})


class RefDKF(DKF):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        cell_lstms(self)

    def forward(self, x, feedback_prob=0.0):
        self.feedback_mask(x, feedback_prob)
        eps = self.noise(x)
        B, T, _ = x.shape
        g = self.rnn_g(per_frame(self.phi_x, self.likelihood.features(x)).flip(1))[0].flip(1)
        z_prev = eps.new_zeros(B, eps.shape[2])
        q_mean, q_logvar, z = (eps.new_empty(eps.shape) for _ in range(3))
        p_mean, p_logvar = eps.new_empty(eps.shape), eps.new_empty(eps.shape)
        for t in range(T):
            p_mean[:, t], p_logvar[:, t] = self.transition(z_prev)
            mean, logvar = self.combiner_head(0.5 * (torch.tanh(self.combiner_z(z_prev)) + g[:, t]))
            z_prev = reparameterise(mean, logvar, eps[:, t])
            q_mean[:, t], q_logvar[:, t], z[:, t] = mean, logvar, z_prev
        return DVAEOutput(per_frame(self.decoder, z), self.prior.kl(q_mean, q_logvar, z, p_mean, p_logvar), {"z": z})


class RefSTORN(STORN):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        cell_lstms(self)

    def forward(self, x, feedback_prob=0.0):
        eps = self.noise(x)
        self.feedback_mask(x, feedback_prob)
        fx = per_frame(self.phi_x, self.likelihood.features(x))
        q_mean, q_logvar = per_frame(self.encoder, self.rnn_g(fx)[0])
        z = reparameterise(q_mean, q_logvar, eps)
        fx_prev = torch.cat([torch.zeros_like(fx[:, :1]), fx[:, :-1]], 1)
        x_out = per_frame(self.decoder, self.rnn_h(torch.cat([fx_prev, z], -1))[0])
        return DVAEOutput(x_out, self.prior.kl(q_mean, q_logvar, z), {"z": z})


class RefVRNN(VRNN):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        cell_lstms(self)

    def forward(self, x, feedback_prob=0.0):
        eps = self.noise(x)
        self.feedback_mask(x, feedback_prob)
        B, T, _ = x.shape
        weights = [getattr(self.rnn, f"{w}_l0") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h = c = x.new_zeros(B, self.cfg.h_dim)
        fx_prev = fz_prev = x.new_zeros(B, self.cfg.dense_dim)
        q_mean, q_logvar, z, p_mean, p_logvar = (eps.new_empty(eps.shape) for _ in range(5))
        x_out = x.new_empty(x.shape)
        for t in range(T):
            fx_t = self.phi_x(self.likelihood.features(x[:, t]))
            h, c = torch.lstm_cell(cat(fx_prev, fz_prev), (h, c), *weights)
            mean, logvar = self.encoder(cat(fx_t, h))
            z_t = reparameterise(mean, logvar, eps[:, t])
            fz_prev, fx_prev = self.phi_z(z_t), fx_t
            q_mean[:, t], q_logvar[:, t], z[:, t] = mean, logvar, z_t
            p_mean[:, t], p_logvar[:, t] = self.prior_net(h)
            x_out[:, t] = self.decoder(cat(fz_prev, h))
        return DVAEOutput(x_out, self.prior.kl(q_mean, q_logvar, z, p_mean, p_logvar), {"z": z})


class RefSRNN(SRNN):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        cell_lstms(self)

    def forward(self, x, feedback_prob=0.0):
        eps = self.noise(x)
        self.feedback_mask(x, feedback_prob)
        B, T, _ = x.shape
        fx = per_frame(self.phi_x, self.likelihood.features(x))
        h = self.rnn_h(torch.cat([torch.zeros_like(fx[:, :1]), fx[:, :-1]], 1))[0]
        g = self.rnn_g(torch.cat([h, fx], -1).flip(1))[0].flip(1)
        z_prev = eps.new_zeros(B, eps.shape[2])
        q_mean, q_logvar, z, p_mean, p_logvar = (eps.new_empty(eps.shape) for _ in range(5))
        for t in range(T):
            p_mean[:, t], p_logvar[:, t] = self.prior_net(cat(h[:, t], z_prev))
            mean, logvar = self.encoder(cat(g[:, t], z_prev))
            z_prev = reparameterise(mean, logvar, eps[:, t])
            q_mean[:, t], q_logvar[:, t], z[:, t] = mean, logvar, z_prev
        x_out = per_frame(lambda h_t, z_t: self.decoder(cat(h_t, z_t)), h, z)
        return DVAEOutput(x_out, self.prior.kl(q_mean, q_logvar, z, p_mean, p_logvar), {"z": z})


class RefRVAE(RVAE):
    def __init__(self, cfg: ModelConfig, causal: bool):
        super().__init__(cfg, causal)
        cell_lstms(self)

    def forward(self, x, feedback_prob=0.0):
        eps = self.noise(x)
        self.feedback_mask(x, feedback_prob)
        B, T, _ = x.shape
        gx = self.g_x(per_frame(self.phi_x, self.likelihood.features(x)))
        weights = [getattr(self.rnn_gz, f"{w}_l0") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        gz = c = x.new_zeros(B, self.cfg.h_dim)
        z_prev = eps.new_zeros(B, eps.shape[2])
        q_mean, q_logvar, z = (eps.new_empty(eps.shape) for _ in range(3))
        for t in range(T):
            gz, c = torch.lstm_cell(z_prev, (gz, c), *weights)
            mean, logvar = self.encoder(cat(gx[:, t], gz))
            z_prev = reparameterise(mean, logvar, eps[:, t])
            q_mean[:, t], q_logvar[:, t], z[:, t] = mean, logvar, z_prev
        x_out = per_frame(self.decoder, self.rnn_dec(z)[0])
        return DVAEOutput(x_out, self.prior.kl(q_mean, q_logvar, z), {"z": z})


class RefDSAE(DSAE):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        cell_lstms(self)

    def forward(self, x, feedback_prob=0.0):
        B, T, _ = x.shape
        eps_z, eps_v = self.noise(x), torch.randn(B, self.cfg.v_dim, device=x.device, dtype=x.dtype)
        self.feedback_mask(x, feedback_prob)
        fx = per_frame(self.phi_x, self.likelihood.features(x))
        v_mean, v_logvar, v = self.posterior_v(fx, eps_v)
        g = self.rnn_z(self.rnn_zx(torch.cat([fx, v.unsqueeze(1).expand(B, T, -1)], -1))[0])[0]
        q_mean, q_logvar = per_frame(self.head_z, g)
        z = reparameterise(q_mean, q_logvar, eps_z)
        hp = self.rnn_prior(torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], 1))[0]
        p_mean, p_logvar = per_frame(self.prior_head, hp)
        kl = self.prior.kl(q_mean, q_logvar, z, p_mean, p_logvar) + self.prior.kl(v_mean, v_logvar, v).unsqueeze(1) / T
        x_out = per_frame(lambda z_t: self.decoder(cat(z_t, v)), z)
        return DVAEOutput(x_out, kl, {"z": z, "v": v})


REFERENCES = {
    "vae": RefVAE,
    "dkf": RefDKF,
    "storn": RefSTORN,
    "vrnn": RefVRNN,
    "srnn": RefSRNN,
    "rvae_causal": lambda cfg: RefRVAE(cfg, causal=True),
    "rvae_noncausal": lambda cfg: RefRVAE(cfg, causal=False),
    "dsae": RefDSAE,
}


def build_reference(cfg: ModelConfig):
    """The plain reference of `cfg.name`; under the same seed it has build_model(cfg)'s weights."""
    return REFERENCES[cfg.name](cfg)
