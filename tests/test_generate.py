"""The generator's progress reports, stopping it from its progress callback, and the precision
of its audio encoder (the official numbers themselves are test_parity's)."""

from __future__ import annotations

import platform
import sys

import numpy as np
import pytest
import torch

from mimic import protocol as p
from mimic.checkpoint import load_model
from mimic.errors import MimicError
from mimic.generate import PROGRESS_FRAMES, Generator, batches, plan_windows
from mimic.precision import ChannelsLastConv1d, cpu_has_bf16, pick_precision, supported_precisions

CPU = torch.device("cpu")
SPEECH_FRAMES = 600  # the fixture's speech three times: windows of 150, 150, 150, 150 and 40 frames


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def speech(ref) -> np.ndarray:
    return np.tile(ref["speech_16k"], 3)


@pytest.fixture
def generator(tiny_checkpoint) -> Generator:
    return Generator(load_model(tiny_checkpoint), CPU)


def style(generator: Generator) -> torch.Tensor:
    return torch.linspace(-1, 1, generator.config.feature_dim)


def encoder_steps(generator: Generator) -> int:
    """Each convolution and the rest of its layer, then each transformer layer."""
    backbone = generator.model.audio_encoder.backbone
    return 2 * len(backbone.feature_extractor.conv_layers) + len(backbone.encoder.layers)


# ---------------------------------------------------------------------------------- progress


def test_progress_reports_each_stage_and_leaves_the_result_unchanged(generator, speech):
    reports = []
    with_progress = np.concatenate(list(generator.stream(speech, style(generator), lambda *r: reports.append(r))))
    without = np.concatenate(list(generator.stream(speech, style(generator))))
    assert np.array_equal(with_progress, without)  # bit for bit

    assert {total for _, _, total in reports} == {SPEECH_FRAMES}
    stages = [stage for stage, _, _ in reports]
    assert stages == sorted(stages, key=[p.ENCODING, p.GENERATING].index)  # encoding, then generating
    for stage in (p.ENCODING, p.GENERATING):
        done = [d for s, d, _ in reports if s == stage]
        assert done[0] == 0 and done[-1] == SPEECH_FRAMES and done == sorted(done)
    # the encoder reports after each of its steps, for each batch of windows
    groups = batches(plan_windows(SPEECH_FRAMES, 150, 10), generator.batch_windows)
    assert len(groups) == 2 and stages.count(p.ENCODING) == 1 + len(groups) * encoder_steps(generator)
    # the decoder every PROGRESS_FRAMES frames at most
    generated = [d for s, d, _ in reports if s == p.GENERATING]
    assert max(np.diff(generated)) <= PROGRESS_FRAMES and len(generated) >= SPEECH_FRAMES // PROGRESS_FRAMES


def test_progress_within_the_first_window(generator, speech):
    """A clip of one window reports during it (it used to sit at 0 until done)."""
    reports = []
    list(generator.stream(speech[:140 * 640], style(generator), lambda *r: reports.append(r)))
    encoding = [d for s, d, _ in reports if s == p.ENCODING]
    generating = [d for s, d, _ in reports if s == p.GENERATING]
    assert len([d for d in encoding if 0 < d < 140]) == encoder_steps(generator) - 1
    assert generating == list(range(0, 140, PROGRESS_FRAMES)) + [140]


@pytest.mark.parametrize("stage, at", [(p.ENCODING, 1), (p.GENERATING, 170)])
def test_an_exception_from_progress_stops_the_stream_there(generator, speech, stage, at):
    seen, chunks = [], []

    def progress(s, done, total):
        seen.append((s, done))
        if s == stage and done >= at:
            raise Stop()

    with pytest.raises(Stop):
        for chunk in generator.stream(speech, style(generator), progress):
            chunks.append(chunk)
    assert seen[-1][0] == stage and seen[-1][1] < SPEECH_FRAMES  # stopped at its first report past `at`
    assert len(chunks) == (0 if stage == p.ENCODING else 1)  # the second window was under way


# --------------------------------------------------------------------------------- precision


def cpuinfo_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        line = next(line for line in f if line.startswith("flags"))
    return set(line.split(":", 1)[1].split())


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64", reason="reads x86 /proc/cpuinfo")
def test_cpu_bf16_support_is_the_cpus_own():
    assert cpu_has_bf16() == bool({"avx512_bf16", "amx_bf16"} & cpuinfo_flags())


def test_precision_choices_on_the_cpu():
    assert supported_precisions(CPU) == [p.FP32] + ([p.BF16] if cpu_has_bf16() else [])
    assert pick_precision(p.FP32, CPU) == p.FP32
    assert pick_precision(p.FAST, CPU) == (p.BF16 if cpu_has_bf16() else p.FP32)
    with pytest.raises(MimicError, match="precision fp16 runs on CUDA GPUs only: on cpu use fp32"):
        pick_precision(p.FP16, CPU)
    with pytest.raises(MimicError, match="unknown precision 'fp64': use fp32, bf16, fp16, fast"):
        pick_precision("fp64", CPU)
    if cpu_has_bf16():
        assert pick_precision(p.BF16, CPU) == p.BF16
    else:
        with pytest.raises(MimicError, match="bf16 needs a CPU with bf16 instructions"):
            pick_precision(p.BF16, CPU)


def test_channels_last_conv_equals_conv1d():
    conv = torch.nn.Conv1d(8, 16, 3, stride=2, padding=1)
    fast = ChannelsLastConv1d(8, 16, 3, stride=2, padding=1)
    fast.load_state_dict(conv.state_dict())
    x = torch.randn(2, 8, 101)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), conv(x), rtol=0, atol=1e-6)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 instructions")
def test_bf16_generation_stays_close_to_fp32(tiny_checkpoint, speech):
    exact = Generator(load_model(tiny_checkpoint), CPU)
    fast = Generator(load_model(tiny_checkpoint), CPU, precision=p.BF16)
    code = style(exact)
    assert fast.precision == p.BF16
    first, *others = fast.model.audio_encoder.backbone.feature_extractor.conv_layers
    assert first.conv.weight.dtype == torch.float32
    assert all(layer.conv.weight.dtype == torch.bfloat16 for layer in others)
    assert all(w.dtype == torch.float32 for w in fast.model.decoder.parameters())  # the decoder is untouched
    a = np.concatenate(list(exact.stream(speech, code)))
    b = np.concatenate(list(fast.stream(speech, code)))
    motion = np.linalg.norm(a - a.mean(axis=0), axis=-1)
    deviation = np.linalg.norm(a - b, axis=-1)
    assert 0 < deviation.max() < 0.15 * motion.max(), (deviation.max(), motion.max())


def test_the_process_keeps_freed_memory_on_glibc():
    """mimic generate and serve raise glibc's malloc thresholds (mimic.memory); where the C library
    is glibc, mallopt accepts both."""
    import platform

    from mimic.memory import keep_freed_memory

    assert keep_freed_memory() == (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")
