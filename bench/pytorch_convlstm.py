#!/usr/bin/env python3
"""PyTorch (CPU) re-implementation of oddcube's ConvLSTM autoencoder, for timing only.

This is a *measuring tool*, not a dependency of oddcube: it rebuilds the network of
`crates/oddcube-model/src/network.rs` layer for layer in PyTorch and times it the way
`oddcube bench` (`crates/oddcube-model/src/bench.rs`) times the candle version, so the two
throughputs can be compared on the same machine:

    target/release/oddcube bench --preset cpu --steps 5
    python3 bench/pytorch_convlstm.py --preset cpu --steps 5

Both print the same three lines:

    bench: preset ..., <N> GFLOP forward per galaxy, ...
    train: <samples/s> samples/s, <ms> ms/step, <GFLOP/s> GFLOP/s
    infer: <samples/s> samples/s, <ms> ms/step, <GFLOP/s> GFLOP/s

What is timed (medians over --steps, after --warmup untimed steps of each kind):
  train  forward + weighted-SSE loss (+ beta*KL for the VAE) + backward + AdamW step
         (lr 1e-4, weight decay 0, zero_grad(set_to_none=True)); GFLOP/s counts 3x forward.
  infer  deterministic forward (VAE decodes mu) under torch.no_grad(), plus .sum().item()
         on the reconstruction.
The FLOP count is the architecture formula of `crates/oddcube-model/src/flops.rs`, copied
exactly, so GFLOP/s is directly comparable. Data are synthetic: x ~ U[0, 1), w = 1.

Options: --preset cpu|paper, --model ae|vae, --batch, --steps, --warmup, --lines, --threads
(torch.set_num_threads; default os.cpu_count()), --seed, --compile (torch.compile, falls back
to eager with a note if it fails), --channels-last (NHWC convs), --self-test (checks the FLOP
formula against flops.rs's hand count and the parameter count against network.rs's shapes).

Needs only torch and the standard library.
"""
import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------
# Architecture (mirrors ArchConfig::preset in crates/oddcube-model/src/config.rs)


@dataclass(frozen=True)
class Arch:
    kind: str  # "ae" or "vae"
    size: int  # S
    n_lines: int  # T
    downsample: int
    conv_channels: int  # c
    hidden: Tuple[int, ...]
    decoder_hidden: Tuple[int, ...]
    kernel: int  # k
    head_channels: int
    latent: int  # D
    beta: float

    @property
    def inner_size(self) -> int:
        return self.size >> self.downsample

    @property
    def head_len(self) -> int:
        return self.head_channels * self.inner_size * self.inner_size


def preset(name: str, kind: str, n_lines: int) -> Arch:
    if name == "cpu":
        return Arch(kind, 32, n_lines, 2, 16, (32,), (32,), 3, 8, 32, 1e-3)
    if name == "paper":
        return Arch(kind, 64, n_lines, 2, 32, (64,), (64,), 3, 16, 128, 1e-3)
    raise ValueError(f"unknown preset {name!r}")


# --------------------------------------------------------------------------------------------
# FLOP count (exact copy of crates/oddcube-model/src/flops.rs)


def _conv(cin: int, cout: int, k: int, out_side: int) -> int:
    outputs = cout * out_side * out_side
    return 2 * cin * k * k * outputs + outputs


def _linear(inputs: int, outputs: int) -> int:
    return 2 * inputs * outputs + outputs


def _lstm_step(cin: int, hidden: int, k: int, side: int) -> int:
    return _conv(cin + hidden, 4 * hidden, k, side) + 9 * hidden * side * side


def forward_flops(a: Arch) -> int:
    """FLOPs of one forward pass for one galaxy (multiply by the batch size)."""
    steps, c, k, s = a.n_lines, a.conv_channels, a.kernel, a.inner_size
    total = 0
    cin, side = 1, a.size
    for _ in range(a.downsample):
        side //= 2
        total += steps * (_conv(cin, c, 3, side) + c * side * side)
        cin = c
    for h in a.hidden:
        total += steps * _lstm_step(cin, h, k, s)
        cin = h
    total += _conv(cin, a.head_channels, 3, s) + a.head_len
    heads = 1 if a.kind == "ae" else 2
    total += heads * _linear(a.head_len, a.latent)
    total += _linear(a.latent, a.head_len) + a.head_len
    cin = a.head_channels
    for h in a.decoder_hidden:
        total += steps * _lstm_step(cin, h, k, s)
        cin = h
    side = s
    for _ in range(a.downsample):
        side *= 2
        total += steps * (_conv(cin, c, 3, side) + c * side * side)
        cin = c
    total += steps * _conv(cin, 1, 3, a.size)
    # Input normalisation (2 per input pixel), output scale and mean offset (2 per output pixel).
    total += steps * 4 * a.size * a.size
    return total


def parameter_count(a: Arch) -> int:
    """Scalar parameters, from the shapes of network.rs's parameter_shapes."""
    c, k = a.conv_channels, a.kernel
    n, cin = 0, 1
    for _ in range(a.downsample):
        n += c * cin * 9 + c
        cin = c
    for h in a.hidden:
        n += 4 * h * (cin + h) * k * k + 4 * h
        cin = h
    n += a.head_channels * cin * 9 + a.head_channels
    n += (1 if a.kind == "ae" else 2) * (a.latent * a.head_len + a.latent)
    n += a.head_len * a.latent + a.head_len
    cin = a.head_channels
    for h in a.decoder_hidden:
        n += 4 * h * (cin + h) * k * k + 4 * h
        cin = h
    for _ in range(a.downsample):
        n += c * cin * 9 + c
        cin = c
    n += cin * 9 + 1
    n += a.n_lines * a.size * a.size
    return n


# --------------------------------------------------------------------------------------------
# Network (mirrors crates/oddcube-model/src/network.rs and cell.rs)


class ConvLSTMCell(nn.Module):
    """gates = conv([x_t, h]) with output channels ordered i, f, o, g."""

    def __init__(self, cin: int, hidden: int, k: int):
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(cin + hidden, 4 * hidden, k, padding=k // 2)
        with torch.no_grad():  # forget-gate bias 1, as in oddcube's initialisation
            self.conv.bias[hidden : 2 * hidden].fill_(1.0)

    def forward(self, x, h, c):
        gates = self.conv(torch.cat([x, h], dim=1))
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvLSTMAutoencoder(nn.Module):
    def __init__(self, a: Arch, channels_last: bool = False):
        super().__init__()
        self.a = a
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        c, k, s = a.conv_channels, a.kernel, a.inner_size
        cin = 1
        self.down = nn.ModuleList()
        for _ in range(a.downsample):
            self.down.append(nn.Conv2d(cin, c, 3, stride=2, padding=1))
            cin = c
        self.enc_lstm = nn.ModuleList()
        for h in a.hidden:
            self.enc_lstm.append(ConvLSTMCell(cin, h, k))
            cin = h
        self.head = nn.Conv2d(cin, a.head_channels, 3, padding=1)
        if a.kind == "ae":
            self.fc = nn.Linear(a.head_len, a.latent)
        else:
            self.mu = nn.Linear(a.head_len, a.latent)
            self.logvar = nn.Linear(a.head_len, a.latent)
        self.dec_fc = nn.Linear(a.latent, a.head_len)
        cin = a.head_channels
        self.dec_lstm = nn.ModuleList()
        for h in a.decoder_hidden:
            self.dec_lstm.append(ConvLSTMCell(cin, h, k))
            cin = h
        self.up = nn.ModuleList()
        for _ in range(a.downsample):
            self.up.append(nn.Conv2d(cin, c, 3, padding=1))
            cin = c
        self.out = nn.Conv2d(cin, 1, 3, padding=1)
        self.mean = nn.Parameter(torch.zeros(a.n_lines, a.size, a.size))
        # Frozen normalisation buffers (network.rs's norm.mean / norm.scale).
        self.register_buffer("norm_mean", torch.zeros(a.n_lines, a.size, a.size))
        self.register_buffer("norm_scale", torch.ones(1, a.n_lines, 1, 1))
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _fmt(self, t):
        return t.contiguous(memory_format=self.memory_format)

    def _run_stack(self, cells, inputs, batch: int, side: int, like):
        """Unrolls a ConvLSTM stack over `inputs` (a list, one map per step) from zero state;
        returns the top layer's h at every step."""
        state = [
            (self._fmt(like.new_zeros(batch, cell.hidden, side, side)),) * 2 for cell in cells
        ]
        tops = []
        for x in inputs:
            for l, cell in enumerate(cells):
                h, c = cell(x, *state[l])
                state[l] = (h, c)
                x = h
            tops.append(x)
        return tops

    def encode(self, x):
        a = self.a
        b, t, size, _ = x.shape
        x = (x - self.norm_mean) / self.norm_scale
        y = self._fmt(x.reshape(b * t, 1, size, size))
        for conv in self.down:
            y = F.relu(conv(y))
        s = a.inner_size
        y = y.reshape(b, t, a.conv_channels, s, s)
        steps = [self._fmt(y[:, i]) for i in range(t)]
        top = self._run_stack(self.enc_lstm, steps, b, s, y)[-1]
        feat = F.relu(self.head(top)).reshape(b, -1)
        if a.kind == "ae":
            return self.fc(feat), None
        return self.mu(feat), self.logvar(feat)

    def decode(self, z):
        a = self.a
        b, s, t = z.shape[0], a.inner_size, a.n_lines
        seed = self._fmt(F.relu(self.dec_fc(z)).reshape(b, a.head_channels, s, s))
        tops = self._run_stack(self.dec_lstm, [seed] * t, b, s, seed)
        y = torch.stack(tops, dim=1)  # [B, T, H, s, s]
        y = self._fmt(y.reshape(b * t, y.shape[2], s, s))
        for conv in self.up:
            y = F.relu(conv(F.interpolate(y, scale_factor=2, mode="nearest")))
        y = self.out(y).reshape(b, t, a.size, a.size)
        return y * self.norm_scale + self.mean

    def forward(self, x, eps: Optional[torch.Tensor] = None):
        """Returns (recon, mu, logvar); logvar is None for the AE. With eps (VAE training)
        z = mu + exp(logvar / 2) * eps, otherwise z = mu."""
        mu, logvar = self.encode(x)
        z = mu if (logvar is None or eps is None) else mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mu, logvar


def objective(recon, mu, logvar, x, w, weight_sum: float, beta: float):
    """sum(w (recon - x)^2) / sum(w) (+ beta * KL averaged over the batch for the VAE)."""
    sse = (w * (recon - x).square()).sum()
    loss = sse / weight_sum
    if logvar is not None:
        kl = -0.5 * (1.0 + logvar - mu.square() - logvar.exp()).sum() / mu.shape[0]
        loss = loss + beta * kl
    return loss, sse


# --------------------------------------------------------------------------------------------
# Timing (mirrors crates/oddcube-model/src/bench.rs)


def fmt_timing(times: List[float], batch: int, flops_per_step: float) -> str:
    t = statistics.median(times)
    return f"{batch / t:.1f} samples/s, {t * 1e3:.1f} ms/step, {flops_per_step / t / 1e9:.2f} GFLOP/s"


def self_test() -> None:
    """Hand count from flops.rs's test, and the module's parameters vs the formula."""
    tiny = Arch("ae", 4, 2, 1, 2, (1,), (1,), 1, 1, 2, 0.0)
    assert forward_flops(tiny) == 3562, forward_flops(tiny)
    assert forward_flops(replace(tiny, kind="vae")) == 3562 + 18
    for name in ("cpu", "paper"):
        for kind in ("ae", "vae"):
            a = preset(name, kind, 19)
            model = ConvLSTMAutoencoder(a)
            got = sum(p.numel() for p in model.parameters())
            assert got == parameter_count(a), (name, kind, got, parameter_count(a))
            out = model(torch.rand(2, 19, a.size, a.size))[0]
            assert out.shape == (2, 19, a.size, a.size)
    print("self-test ok")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    p.add_argument("--model", default="ae", choices=["ae", "vae"])
    p.add_argument("--batch", type=int, default=8, help="galaxies per step")
    p.add_argument("--steps", type=int, default=5, help="timed steps of each kind (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps of each kind")
    p.add_argument("--lines", type=int, default=19, help="lines per galaxy (sequence length)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="wrap the model in torch.compile")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format for convs")
    p.add_argument("--self-test", action="store_true", help="check FLOP/parameter formulas")
    args = p.parse_args()
    if args.batch <= 0 or args.steps <= 0 or args.lines <= 0:
        p.error("--batch, --steps and --lines must be positive")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.self_test:
        self_test()

    a = preset(args.preset, args.model, args.lines)
    model = ConvLSTMAutoencoder(a, channels_last=args.channels_last)
    n_params = sum(p.numel() for p in model.parameters())

    x = torch.rand(args.batch, a.n_lines, a.size, a.size)
    w = torch.ones_like(x)
    weight_sum = float(w.sum())
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)

    fwd = model
    if args.compile:
        try:
            fwd = torch.compile(model)
            with torch.no_grad():  # compilation errors surface on the first call
                fwd(x)
        except Exception as e:  # noqa: BLE001 - any backend failure means "run eager"
            print(f"note: torch.compile failed ({type(e).__name__}: {e}); running eager",
                  file=sys.stderr)
            fwd = model

    flops = forward_flops(a)
    extras = [f"pytorch {torch.__version__}", f"{torch.get_num_threads()} threads"]
    if args.channels_last:
        extras.append("channels-last")
    if fwd is not model:
        extras.append("torch.compile")
    print(
        f"bench: preset {args.preset} ({args.model}), S = {a.size}, T = {a.n_lines}, "
        f"D = {a.latent}, {n_params} parameters, {flops / 1e9:.3f} GFLOP forward per galaxy, "
        f"batch {args.batch}, device cpu ({', '.join(extras)})",
        flush=True,
    )

    def train_step():
        eps = torch.randn(args.batch, a.latent) if a.kind == "vae" else None
        recon, mu, logvar = fwd(x, eps)
        loss, sse = objective(recon, mu, logvar, x, w, weight_sum, a.beta)
        sse.item()  # oddcube reads the SSE (and KL) back to the host each step
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    def infer_step():
        with torch.no_grad():
            recon = fwd(x)[0]
            recon.sum().item()

    fwd_flops = float(flops) * args.batch
    for name, step, mult in (("train", train_step, 3.0), ("infer", infer_step, 1.0)):
        times = []
        for i in range(args.warmup + args.steps):
            started = time.perf_counter()
            step()
            if i >= args.warmup:
                times.append(time.perf_counter() - started)
        print(f"{name}: {fmt_timing(times, args.batch, mult * fwd_flops)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
