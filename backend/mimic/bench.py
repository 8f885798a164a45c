"""Benchmarks. `python -m mimic.bench generate`: the windowed generator on the full-size hdtf
network with random weights, split into its parts, against the official full-recompute decoder.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch import nn

from .generate import Generator, pick_device, plan_windows
from .model import Mimic, MimicConfig


def synthetic_speech(seconds: float, rate: int) -> np.ndarray:
    """Deterministic stand-in for speech: tones with a syllable-rate envelope, plus noise."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    tones = np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 720 * t)
    noise = np.random.default_rng(0).standard_normal(len(t))
    return (0.3 * envelope * tones + 0.05 * noise).astype(np.float32)


def random_generator(device: torch.device) -> Generator:
    """hdtf network with random weights; motion_out made non-zero so each step feeds the next."""
    torch.manual_seed(0)
    model = Mimic(MimicConfig.preset("hdtf"))
    nn.init.normal_(model.decoder.motion_out.weight, std=1e-3)
    nn.init.normal_(model.decoder.motion_out.bias, std=1e-3)
    return Generator(model, device)


def machine_cpu_seconds() -> float:
    """CPU seconds used so far by everything on the machine (Linux /proc/stat; elsewhere 0, so
    the "other processes" column reads 0 %)."""
    if not os.path.exists("/proc/stat"):
        return 0.0
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class Clock:
    """Wall seconds of a block, and the share of the machine's CPU other processes took meanwhile."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        self.sync()
        self.started, self.machine, self.own = time.perf_counter(), machine_cpu_seconds(), own_cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.sync()
        self.seconds = time.perf_counter() - self.started
        others = machine_cpu_seconds() - self.machine - (own_cpu_seconds() - self.own)
        self.others = max(others, 0.0) / (self.seconds * os.cpu_count())

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elif self.device.type == "mps":
            torch.mps.synchronize()


def decode(decoder, features: list[torch.Tensor], style: torch.Tensor, config: MimicConfig) -> tuple[list, Clock]:
    """Run `decoder` window after window, chained as the generator chains them: seconds per window,
    and the clock of the whole run."""
    init_state = torch.zeros(1, config.motion_dim, device=style.device)
    seconds = []
    with Clock(style.device) as whole:
        for f in features:
            with Clock(style.device) as clock:
                motion = decoder(f[None], style, init_state)[0]  # (n, M)
            init_state = motion[-config.overlap][None]
            seconds.append(clock.seconds)
    return seconds, whole


@torch.inference_mode()
def bench_generate(seconds: float, device: torch.device, recompute_windows: int) -> None:
    generator = random_generator(device)
    config, decoder = generator.config, generator.model.decoder
    audio = synthetic_speech(seconds, config.sample_rate)
    reference = np.random.default_rng(1).standard_normal((config.window, config.vertex_count, 3)).astype(np.float32)
    style = generator.style_code(1e-3 * reference)
    windows = plan_windows(generator.frame_count(len(audio)), config.window, config.overlap)
    n = max(1, min(recompute_windows, len(windows)))

    batch = config.window + (generator.batch_windows - 1) * (config.window - config.overlap)  # frames
    for _ in generator.stream(audio[:batch * config.samples_per_frame], style):  # warm-up: one full batch
        pass

    with Clock(device) as total:
        for _ in generator.stream(audio, style):
            pass
    with Clock(device) as encoder:  # batched as the generator batches it
        features = [f for _, f in generator._features(audio, windows)]  # each (n, C)
    with Clock(device) as once:  # as in the generator: once per call, for all windows
        feedback = decoder.feedback()
    cached, cached_clock = decode(lambda *args: decoder(*args, feedback), features, style[None], config)
    cached[0] += once.seconds
    decode(decoder.forward_recompute, [features[0][:10]], style[None], config)  # warm-up
    recompute, recompute_clock = decode(decoder.forward_recompute, features[:n], style[None], config)

    speedup, overhead = sum(recompute) / sum(cached[:n]), total.seconds / encoder.seconds
    rows = [
        ("Generator.stream, total", total.seconds, total, ""),
        ("audio encoder alone", encoder.seconds, encoder, ""),
        ("decoder, cached (Decoder.forward)", sum(cached), cached_clock, ""),
        ("decoder, recompute (official)", sum(recompute) / n * len(windows), recompute_clock,
         f"estimate: {n} of {len(windows)} windows timed, scaled per window" if n < len(windows) else ""),
    ]
    print(f"{seconds:g} s of audio, {len(windows)} windows of <= {config.window} frames, hdtf network (random "
          f"weights), {device}, {torch.get_num_threads()} threads of {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"{'':36} {'seconds':>8}  {'per window':>10}  {'other processes':>15}")
    for name, value, clock, note in rows:
        print(f"{name:36} {value:8.2f}  {value / len(windows):10.3f}  {clock.others:14.0%}  {note}".rstrip())
    print(f"{'recompute / cached decoder':36} {speedup:7.1f}x  target >= 20x: {met(speedup >= 20)}  "
          f"(on the same {n} windows: {sum(recompute):.2f} s / {sum(cached[:n]):.3f} s)")
    print(f"{'total / audio encoder alone':36} {overhead:7.2f}x  target <= 1.2x: {met(overhead <= 1.2)}")


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mimic.bench", description=__doc__)
    parser.add_argument("benchmark", choices=["generate"])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the synthetic audio")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--recompute-windows", type=int, default=2,
                        help="windows to time the slow full-recompute decoder on")
    args = parser.parse_args(argv)
    bench_generate(args.seconds, pick_device(args.device), args.recompute_windows)


if __name__ == "__main__":
    main()
