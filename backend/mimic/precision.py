"""The arithmetic of the audio encoder: fp32 (the official network's), or bf16/fp16 where the
device computes them natively. The audio encoder is nearly all of the generator's time; the
style encoder and the autoregressive decoder always stay in float32.

At a reduced precision the backbone's first convolution (1 input channel, the raw waveform) stays
in float32, being faster so on CPUs, and the other convolutions of its feature extractor run as
channels-last 2-D convolutions, oneDNN's fast layout for bf16 (a plain bf16 Conv1d spends more
time reordering its input than convolving).
"""

from __future__ import annotations

import platform

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import MimicError
from .model import AudioEncoder
from .protocol import BF16, FAST, FP16, FP32, PRECISIONS

DTYPES = {FP32: torch.float32, BF16: torch.bfloat16, FP16: torch.float16}


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively, as PyTorch's cpuinfo sees it: AVX512-BF16 or
    AMX on x86, the BF16 extension on ARM. Without them PyTorch emulates bf16, slower than fp32."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def supported_precisions(device: torch.device) -> list[str]:
    """Precisions the audio encoder can run at on `device`, slowest first."""
    if device.type == "cuda":
        return [FP32] + ([BF16] if torch.cuda.is_bf16_supported() else []) + [FP16]
    if device.type == "cpu" and cpu_has_bf16():
        return [FP32, BF16]
    return [FP32]


def pick_precision(name: str, device: torch.device) -> str:
    """`fast` -> the fastest supported; any other name is checked against the device."""
    if name not in PRECISIONS:
        raise MimicError(f"unknown precision {name!r}: use {', '.join(PRECISIONS)}")
    supported = supported_precisions(device)
    if name == FAST:
        return supported[-1]
    if name in supported:
        return name
    if name == FP16:
        why = "fp16 runs on CUDA GPUs only"
    elif device.type == "cpu":
        why = ("bf16 needs a CPU with bf16 instructions (AVX512-BF16, AMX or ARM BF16), and this one has none "
               "(emulated bf16 is slower than fp32)")
    else:
        why = f"bf16 is not supported on this {device.type} device"
    raise MimicError(f"precision {why}: on {device.type} use {' or '.join(supported + [FAST])}")


class ChannelsLastConv1d(nn.Conv1d):
    """A Conv1d computed as a channels-last Conv2d of height 1, on inputs cast to its weights' dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L) -> (B, C', L')
        x = x.to(self.weight.dtype).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        weight = self.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, weight, self.bias, (1, self.stride[0]), (0, self.padding[0]), (1, self.dilation[0]),
                        self.groups).squeeze(2)


def set_precision(encoder: AudioEncoder, precision: str) -> None:
    """Cast the audio encoder in place (see the module's notes); fp32 leaves it as it is."""
    if precision == FP32:
        return
    encoder.to(DTYPES[precision])
    first, *others = encoder.backbone.feature_extractor.conv_layers
    first.float()
    for layer in others:
        conv = layer.conv
        layer.conv = ChannelsLastConv1d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                        conv.padding, conv.dilation, conv.groups, conv.bias is not None, device="meta")
        layer.conv.weight, layer.conv.bias = conv.weight, conv.bias
