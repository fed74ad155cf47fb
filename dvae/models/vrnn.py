"""VRNN: the variational recurrent neural network (Chung et al., 2015).

Generative model:  p(x_{1:T}, z_{1:T}) = ∏_t p(x_t | x_{1:t-1}, z_{1:t}) p(z_t | x_{1:t-1}, z_{1:t-1}),
    h_t = d(h_{t-1}, [φx(x_{t-1}), φz(z_{t-1})]) summarises (x_{1:t-1}, z_{1:t-1}),
    p(z_t | ·) = N(z_t; μ_θ(h_t), diag σ²_θ(h_t)) (or Student-t),  p(x_t | ·) from [φz(z_t), h_t].
Inference model:   q(z_{1:T} | x_{1:T}) = ∏_t q(z_t | x_{1:t}, z_{1:t-1})
    = ∏_t N(z_t; μ_φ([φx(x_t), h_t]), diag σ²_φ([φx(x_t), h_t])).

h_t depends on the sampled z_{t-1}, so the recursion steps in time, one `q_step` per frame.
Everything that reads only the data runs over all frames at once: φx, and φx's shares of the
LSTM's gates and of q's first layer. The prior and decoder run once over the stacked states.
Teacher-forced and without dropout, the recursion runs as `TeacherForcedRecursion`, whose
backward pass is written out.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .base import DVAE, CompiledStep, DVAEOutput
from .layers import (GaussianHead, after_first_layer, lstm_cell, lstm_input, lstm_step, mlp, reparameterise,
                     shift_right, split_first_layer, zero_state)


class VRNN(DVAE):
    reads_previous_x = True
    step_methods = ("q_step",)

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        D, Z, H, M = cfg.x_dim, cfg.z_dim, cfg.h_dim, cfg.dense_dim
        self.phi_x = mlp(D, M, dropout=cfg.dropout)
        self.phi_z = mlp(Z, M, dropout=cfg.dropout)
        self.rnn = nn.LSTM(2 * M, H, batch_first=True)
        self.encoder = nn.Sequential(mlp(M + H, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.prior_net = nn.Sequential(mlp(H, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.decoder = mlp(M + H, self.decoder_widths(), D, dropout=cfg.dropout)

    def q_step(self, gates_x, q_x, eps, fz_prev, state, w_z, w_qh):
        """One frame: h_t = d(h_{t-1}, [φx(x_{t-1}), φz(z_{t-1})]), then z_t ~ q(z_t | x_t, h_t).
        `gates_x` and `q_x` are x's shares of d's gates and of q's first layer; `w_z` and `w_qh`
        the weight blocks that multiply φz(z_{t-1}) and h_t there.
        Returns (h_t, c_t), z_t, φz(z_t), q's mean and log-variance."""
        h, c = lstm_cell(torch.addmm(gates_x, fz_prev, w_z.t()), state, self.rnn.weight_hh_l0)
        mean, logvar = after_first_layer(self.encoder, torch.addmm(q_x, h, w_qh.t()))
        z = reparameterise(mean, logvar, eps)
        return (h, c), z, self.phi_z(z), mean, logvar

    def recur(self, fx, eps, mask=None, fx_prev=None, fz_prev=None, state=None):
        """Steps h_t and z_t ~ q(z_t | x_t, h_t) (noise `eps`) through time.

        x_{t-1} is the data's (features `fx`) unless `mask` marks the model's own output instead.
        Returns the stacked h, z, φz(z), q's mean and log-variance, and the final recursion state.
        """
        if self.teacher_forced_recursion_applies(fx, mask, fx_prev, fz_prev, state):
            return self.teacher_forced_recursion(fx, eps)
        B, T, M = fx.shape
        fx_prev = fx.new_zeros(B, M) if fx_prev is None else fx_prev
        fz_prev = fx.new_zeros(B, M) if fz_prev is None else fz_prev
        state = zero_state(fx, self.rnn) if state is None else state
        # x's shares of d's gates (from x_{t-1}) and of q's first layer (from x_t): one matrix
        # product each over all frames. The loop takes its frames by unbind, not [:, t]: the
        # gradient of each slice would be as large as the whole sequence.
        gates_x, w_z = lstm_input(self.rnn, shift_right(fx, fx_prev))
        q_x, w_qh = split_first_layer(self.encoder, fx)
        masks = [None] * T if mask is None else mask.unbind(1)
        hs, zs, fzs, means, logvars = [], [], [], [], []
        for gates_x_t, q_x_t, eps_t, fx_t, mask_t in zip(gates_x.unbind(1), q_x.unbind(1), eps.unbind(1), fx.unbind(1), masks):
            if mask_t is not None:  # generation mode: x_{t-1} may be the model's own, known only now
                gates_x_t = lstm_input(self.rnn, fx_prev)[0]
            state, z, fz_prev, mean, logvar = self.q_step(gates_x_t, q_x_t, eps_t, fz_prev, state, w_z, w_qh)
            if mask_t is not None:
                fx_prev = self.feed(self.decoder(torch.cat([fz_prev, state[0]], -1)), self.phi_x, fx_t, mask_t)
            hs.append(state[0]), zs.append(z), fzs.append(fz_prev), means.append(mean), logvars.append(logvar)
        fx_prev = fx[:, -1] if mask is None else fx_prev
        return (*(torch.stack(xs, 1) for xs in (hs, zs, fzs, means, logvars)), (fx_prev, fz_prev, state))

    def teacher_forced_recursion_applies(self, fx, mask, fx_prev, fz_prev, state) -> bool:
        """Whether `recur` can run as TeacherForcedRecursion: x_{t-1} is always the data's, the
        recursion starts from zeros, no dropout acts, float32 or 64 without autocast, and q_step
        is not compiled (which asks for the stepped loop)."""
        return (mask is None and fx_prev is None and fz_prev is None and state is None
                and not (self.training and self.cfg.dropout > 0) and fx.dtype in (torch.float32, torch.float64)
                and not torch.is_autocast_enabled(fx.device.type) and not isinstance(self.q_step, CompiledStep))

    def teacher_forced_recursion(self, fx, eps):
        gates_x, w_z = lstm_input(self.rnn, shift_right(fx))
        q_x, w_qh = split_first_layer(self.encoder, fx)
        head, phi_z = self.encoder[1].out, self.phi_z[0]
        h, z, fz, mean, logvar, c_last = TeacherForcedRecursion.apply(
            gates_x, q_x, eps, w_z, self.rnn.weight_hh_l0, w_qh, head.weight, head.bias, phi_z.weight, phi_z.bias)
        return h, z, fz, mean, logvar, (fx[:, -1], fz[:, -1], (h[:, -1], c_last))

    def forward(self, x, feedback_prob=0.0):
        eps = self.noise(x)
        mask = self.feedback_mask(x, feedback_prob)
        h, z, fz, q_mean, q_logvar, _ = self.recur(self.phi_x(self.likelihood.features(x)), eps, mask)
        p_mean, p_logvar = self.prior_net(h)
        x_out = self.decoder(torch.cat([fz, h], -1))
        return DVAEOutput(x_out, self.prior.kl(q_mean, q_logvar, z, p_mean, p_logvar), {"z": z})

    def decode(self, x, z):
        fx_prev = shift_right(self.phi_x(self.likelihood.features(x)))
        fz = self.phi_z(z)
        h = self.rnn(torch.cat([fx_prev, shift_right(fz)], -1))[0]
        return self.decoder(torch.cat([fz, h], -1))

    @torch.no_grad()
    def generate(self, n_frames, batch=1, prime=None):
        """The recursion with z_t from the prior p(z_t | h_t) and x_{t-1} the model's own output."""
        fx_prev, fz_prev, state = self.zeros(batch, self.cfg.dense_dim), self.zeros(batch, self.cfg.dense_dim), None
        if prime is not None:
            *_, (fx_prev, fz_prev, state) = self.recur(self.phi_x(self.likelihood.features(prime)), self.noise(prime))
        outs = []
        for _ in range(n_frames):
            state = lstm_step(self.rnn, torch.cat([fx_prev, fz_prev], -1), state)
            fz_prev = self.phi_z(self.prior.sample(*self.prior_net(state[0])))
            outs.append(self.decoder(torch.cat([fz_prev, state[0]], -1)))
            fx_prev = self.phi_x(self.likelihood.output_features(outs[-1]))
        return self.likelihood.mean(torch.stack(outs, 1))


class TeacherForcedRecursion(torch.autograd.Function):
    """`VRNN.recur` over all frames, x_{t-1} the data's, with its backward pass written out.

    Per frame, with the LSTM's pre-activations a_t = [a_i, a_f, a_g, a_o]:
        a_t = A_t + W_z φz(z_{t-1}) + W_hh h_{t-1}               (A_t = `gates_x`: x's share)
        c_t = σ(a_f) c_{t-1} + σ(a_i) tanh(a_g),   h_t = σ(a_o) tanh(c_t)
        e_t = tanh(Q_t + W_qh h_t),   [μ_t, log σ²_t] = W_q e_t + b_q   (Q_t = `q_x`: x's share)
        z_t = μ_t + σ_t ε_t,   φz(z_t) = tanh(W_φ z_t + b_φ)
    from zeros at t = 0. Backward runs from the last frame to the first carrying only the
    gradients that pass from frame to frame (of a_t and c_t); each weight's gradient is a sum
    over frames, taken after the loop as one matrix product over all frames, and every
    factor that does not depend on the incoming gradient (σ', 1 - tanh², ...) is computed
    for all frames at once. Autograd through the same loop records and replays every
    operation of every frame and takes each weight's gradient frame by frame: at the
    review's sizes (batch 128, 50 and 200 frames) VRNN's whole training step took 8-11%
    less time this way, both timed alternately in one process on the 2-core CPU of
    benchmarks/bench_step.py.
    """

    @staticmethod
    def forward(ctx, gates_x, q_x, eps, w_z, w_hh, w_qh, w_q, b_q, w_phi, b_phi):
        B, T, H, Z = gates_x.shape[0], gates_x.shape[1], w_hh.shape[1], eps.shape[2]
        new = gates_x.new_empty
        gates = new(B, T, 4 * H)  # σ(a_i), σ(a_f), tanh(a_g), σ(a_o)
        c, h, fz = new(B, T + 1, H), new(B, T + 1, H), new(B, T + 1, w_phi.shape[0])  # [:, 0]: the zero state
        tanh_c, e, q, std, z = new(B, T, H), new(B, T, w_qh.shape[0]), new(B, T, 2 * Z), new(B, T, Z), new(B, T, Z)
        for state in (c, h, fz):
            state[:, 0].zero_()
        for t in range(T):
            a = torch.addmm(gates_x[:, t], fz[:, t], w_z.t(), out=gates[:, t])
            torch.addmm(a, h[:, t], w_hh.t(), out=a)  # not addmm_, which FLOP counters miss
            i, f, g, o = a.chunk(4, 1)
            a[:, :2 * H].sigmoid_()  # i and f
            g.tanh_()
            o.sigmoid_()
            torch.mul(f, c[:, t], out=c[:, t + 1]).addcmul_(i, g)
            torch.mul(o, torch.tanh(c[:, t + 1], out=tanh_c[:, t]), out=h[:, t + 1])
            torch.addmm(q_x[:, t], h[:, t + 1], w_qh.t(), out=e[:, t]).tanh_()
            mean, logvar = torch.addmm(b_q, e[:, t], w_q.t(), out=q[:, t]).chunk(2, 1)
            torch.mul(logvar, 0.5, out=std[:, t]).exp_()
            torch.addcmul(mean, std[:, t], eps[:, t], out=z[:, t])
            torch.addmm(b_phi, z[:, t], w_phi.t(), out=fz[:, t + 1]).tanh_()
        ctx.save_for_backward(gates, c, h, tanh_c, e, std, z, fz, eps, w_z, w_hh, w_qh, w_q, w_phi)
        c_last = c[:, T].clone()
        ctx.mark_non_differentiable(c_last)
        return h[:, 1:], z, fz[:, 1:], q[..., :Z], q[..., Z:], c_last

    @staticmethod
    def backward(ctx, d_h, d_z, d_fz, d_mean, d_logvar, _):
        gates, c, h, tanh_c, e, std, z, fz, eps, w_z, w_hh, w_qh, w_q, w_phi = ctx.saved_tensors
        B, T, H, Z = gates.shape[0], gates.shape[1], h.shape[2], z.shape[2]
        i, f, g, o = gates.chunk(4, 2)
        activation_slope = gates * (1 - gates)  # σ' of the i, f and o blocks
        activation_slope[..., 2 * H:3 * H] = 1 - g * g  # tanh' of the g block
        # d a_t = [dc_t g, dc_t c_{t-1}, dc_t i, dh_t tanh(c_t)] ⊙ activation_slope: all but dc_t, dh_t
        partner = torch.cat([g, c[:, :T], i, tanh_c], 2).mul_(activation_slope)
        dc_per_dh = o * (1 - tanh_c * tanh_c)
        fz_slope, e_slope, half_noise = 1 - fz[:, 1:] ** 2, 1 - e * e, 0.5 * std * eps
        new = gates.new_empty
        d_a, d_e, d_q, d_fz_pre = new(gates.shape), new(e.shape), new(B, T, 2 * Z), new(B, T, fz.shape[2])
        d_c_next = None  # c_t's gradient through c_{t+1}, from the frame after (none after the last)
        for t in reversed(range(T)):
            last = t == T - 1
            d_fz_t = d_fz[:, t] if last else torch.addmm(d_fz[:, t], d_a[:, t + 1], w_z)
            torch.mul(d_fz_t, fz_slope[:, t], out=d_fz_pre[:, t])
            d_z_t = torch.addmm(d_z[:, t], d_fz_pre[:, t], w_phi)
            torch.add(d_mean[:, t], d_z_t, out=d_q[:, t, :Z])
            torch.addcmul(d_logvar[:, t], d_z_t, half_noise[:, t], out=d_q[:, t, Z:])
            torch.mm(d_q[:, t], w_q, out=d_e[:, t]).mul_(e_slope[:, t])
            d_h_t = torch.addmm(d_h[:, t], d_e[:, t], w_qh)
            if not last:
                torch.addmm(d_h_t, d_a[:, t + 1], w_hh, out=d_h_t)
            d_c_t = torch.mul(d_h_t, dc_per_dh[:, t]) if last else torch.addcmul(d_c_next, d_h_t, dc_per_dh[:, t])
            torch.mul(partner[:, t].view(B, 4, H)[:, :3], d_c_t.unsqueeze(1), out=d_a[:, t].view(B, 4, H)[:, :3])
            torch.mul(partner[:, t, 3 * H:], d_h_t, out=d_a[:, t, 3 * H:])
            d_c_next = d_c_t.mul_(f[:, t])

        def weight_grad(d_out, x):  # Σ_t d_out_t^T x_t over batch and frames: one product
            return d_out.reshape(-1, d_out.shape[2]).t().mm(x.reshape(-1, x.shape[2]))

        return (d_a, d_e, None, weight_grad(d_a, fz[:, :T]), weight_grad(d_a, h[:, :T]), weight_grad(d_e, h[:, 1:]),
                weight_grad(d_q, e), d_q.sum((0, 1)), weight_grad(d_fz_pre, z), d_fz_pre.sum((0, 1)))
