"""The Mimic network (Fu et al., AAAI 2024), in one file.

A style encoder and a content encoder read facial motion (vertices minus template) into a
style code s (one per sequence) and content codes c (one per frame); an audio encoder
(wav2vec 2.0 or HuBERT) reads speech into per-frame audio features a; one autoregressive
decoder turns (a or c, s) into per-vertex motion. Training heads: a style classifier on s,
an inverse (gradient-reversal) classifier on mean_t(c), and a CLIP logit scale.

Shapes: B batch, T motion frames, V vertices, M = 3V motion dim, C feature dim,
H heads, D head dim, K audio features per motion frame (1, or 2 for BIWI).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import MimicError
from .wav2vec2 import SpeechEncoder, full_geometry, published_geometry

ALIGNMENTS = ("conv", "interpolate", "pair")
AUDIO_MODEL = "facebook/wav2vec2-base-960h"  # the released Mimic's audio backbone


@dataclass
class MimicConfig:
    vertex_count: int = 5023  # FLAME head
    fps: float = 25.0  # motion frames per second
    alignment: str = "conv"  # audio 50 Hz -> frames: "conv" stride-2 conv (25 fps), "interpolate" linear (any fps),
                             # "pair" 2 features per frame
    feature_dim: int = 128  # width of style, content and audio codes and of the decoder
    hidden_size: int = 128  # width of the encoders' transformers
    conv_layers: int = 5  # conv blocks at the start of each motion encoder
    encoder_layers: int = 4
    encoder_heads: int = 4
    encoder_ff: int = 256
    decoder_heads: int = 4
    decoder_ff: int = 256
    period: int = 30  # frames; period of the decoder's positional encoding and of its attention bias
    num_ids: int = 150  # training identities seen by the classifier heads
    sample_rate: int = 16000
    window: int = 150  # frames per generation window (and style reference length)
    overlap: int = 10  # frames shared by consecutive windows
    audio_model: dict = field(default_factory=lambda: published_geometry(AUDIO_MODEL))  # mimic.wav2vec2's config
    style_input: bool = True  # False: the no-style baseline of the ablation; the decoder always sees a zero style code

    def __post_init__(self):
        if self.alignment not in ALIGNMENTS:
            raise MimicError(f"alignment must be one of {', '.join(ALIGNMENTS)}, not {self.alignment!r}")
        self.audio_model = full_geometry(self.audio_model)  # what it leaves out: the defaults of its model_type
        if self.alignment == "conv" and self.fps != 25:
            raise MimicError(f"conv alignment halves 50 Hz audio features: it needs 25 fps, not {self.fps:g}")
        if not 0 < self.overlap < self.window:
            raise MimicError(f"overlap must be at least one frame and shorter than the window "
                             f"({self.window} frames), not {self.overlap}")
        for width, heads in (("feature_dim", "decoder_heads"), ("hidden_size", "encoder_heads")):
            if getattr(self, heads) < 1 or getattr(self, width) % getattr(self, heads):
                raise MimicError(f"{width} {getattr(self, width)} is not divisible by {heads} {getattr(self, heads)}")

    @property
    def motion_dim(self) -> int:
        return self.vertex_count * 3

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per motion frame, as the official demo rounds it (640 at 25 fps)."""
        return int(self.sample_rate // self.fps)

    @property
    def features_per_frame(self) -> int:
        return 2 if self.alignment == "pair" else 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def preset(cls, name: str, **overrides) -> MimicConfig:
        """`hdtf` (the released model), `vocaset` (30 fps), `biwi` (25 fps, 23,370 vertices)."""
        presets = {
            "hdtf": dict(),
            "vocaset": dict(fps=30.0, alignment="interpolate"),
            "biwi": dict(vertex_count=23370, alignment="pair"),
        }
        if name not in presets:
            raise MimicError(f"unknown preset {name!r}; choose one of {', '.join(presets)}")
        return cls(**{**presets[name], **overrides})


# ---------------------------------------------------------------------------------- encoders


class MotionEncoder(nn.Module):
    """Style encoder (layer norms, mean over time -> (B, C)) or content encoder (instance norms
    without affine, which strip per-sequence statistics -> (B, T, C))."""

    def __init__(self, config: MimicConfig, content: bool):
        super().__init__()
        c = config
        self.content = content
        self.motion_map = nn.Linear(c.motion_dim, c.feature_dim)
        self.convs = nn.ModuleList(
            nn.Conv1d(c.feature_dim, c.feature_dim, 3, padding=1, bias=False) for _ in range(c.conv_layers))
        self.conv_norms = None if content else nn.ModuleList(nn.LayerNorm(c.feature_dim) for _ in range(c.conv_layers))
        self.proj_norm = None if content else nn.LayerNorm(c.feature_dim)
        self.projection = nn.Linear(c.feature_dim, c.hidden_size)
        layer = nn.TransformerEncoderLayer(c.hidden_size, c.encoder_heads, c.encoder_ff, dropout=0.1, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, c.encoder_layers, enable_nested_tensor=False)
        self.out_proj = nn.Linear(c.hidden_size, c.feature_dim)
        self.dropout = nn.Dropout(0.1)

    def _norm(self, x: torch.Tensor, norm: nn.LayerNorm | None) -> torch.Tensor:  # (B, C, T) -> (B, C, T)
        if norm is None:
            return F.instance_norm(x, eps=1e-5)
        return norm(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:  # (B, T, M)
        x = self.motion_map(motion).transpose(1, 2)  # (B, C, T)
        for i, conv in enumerate(self.convs):
            x = F.relu(self._norm(conv(x), None if self.content else self.conv_norms[i]))
        x = self._norm(x, self.proj_norm).transpose(1, 2)  # (B, T, C)
        # The official encoding indexes its sinusoid table by batch position; at batch size one,
        # the released model's only use, that adds row 0 = (sin 0, cos 0, ...) = (0, 1, 0, 1, ...).
        x = self.projection(x)
        x = self.dropout(x + periodic_positions(torch.zeros(1, dtype=torch.long, device=x.device), x.shape[-1], 1))
        x = self.out_proj(self.transformer(x))  # (B, T, C)
        return x if self.content else x.mean(dim=1)


class AudioEncoder(nn.Module):
    """wav2vec 2.0 / HuBERT (mimic.wav2vec2) at 50 Hz on normalised 16 kHz audio, aligned to motion
    frames: run in parts, as "interpolate" and "pair" align before the transformer, "conv" after it."""

    def __init__(self, config: MimicConfig):
        super().__init__()
        self.alignment = config.alignment
        self.backbone = SpeechEncoder(config.audio_model)
        width = config.audio_model["hidden_size"]
        self.downsample = nn.Conv1d(width, width, 15, stride=2, padding=7) if config.alignment == "conv" else None
        self.out_proj = nn.Linear(width, config.feature_dim)

    def freeze_feature_encoder(self):
        """Freeze the convolutional feature extractor, as in the paper's training."""
        self.backbone.freeze_feature_encoder()

    def forward(self, audio: torch.Tensor, frames: int) -> torch.Tensor:  # (B, S) -> (B, frames*K, C)
        x = self.backbone.feature_extractor(audio).transpose(1, 2)  # (B, L, 512), L ~ 50 Hz
        if self.alignment == "interpolate":
            x = F.interpolate(x.transpose(1, 2), size=frames, mode="linear", align_corners=True).transpose(1, 2)
        elif self.alignment == "pair":
            x = fit_length(x, 2 * frames)
        x = self.backbone.spec_augment(self.backbone.feature_projection(x))  # SpecAugment in training only
        x = self.backbone.encoder(x)  # (B, L, W)
        if self.downsample is not None:
            x = fit_length(self.downsample(x.transpose(1, 2)).transpose(1, 2), frames)  # (B, frames, W)
        return self.out_proj(x)


def fit_length(x: torch.Tensor, n: int) -> torch.Tensor:
    """Cut (B, L, C) to n steps, or repeat the last step up to n (at most a step or two)."""
    if x.shape[1] >= n:
        return x[:, :n]
    return torch.cat([x, x[:, -1:].expand(-1, n - x.shape[1], -1)], dim=1)


# ----------------------------------------------------------------------------------- decoder


def alibi_slopes(heads: int) -> list[float]:
    """ALiBi head slopes: a geometric series from 2^(-8/n); non-powers of two interleave."""
    def power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]
    if math.log2(heads).is_integer():
        return power_of_2(heads)
    closest = 2 ** math.floor(math.log2(heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: heads - closest]


def periodic_positions(positions: torch.Tensor, dim: int, period: int) -> torch.Tensor:
    """Sinusoidal encoding of (position mod period): (L,) -> (L, dim)."""
    phase = (positions % period).float()[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=positions.device).float() * (-math.log(10000.0) / dim))
    pe = torch.zeros(len(positions), dim, device=positions.device)
    pe[:, 0::2] = torch.sin(phase * freq)
    pe[:, 1::2] = torch.cos(phase * freq)
    return pe


def style_norm(x: torch.Tensor, film: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """SALN: LayerNorm without affine, then gamma * x + beta; film (gamma, beta) broadcasts to x."""
    gamma, beta = film
    return torch.addcmul(beta, gamma, F.layer_norm(x, x.shape[-1:]))


class SALN(nn.Module):
    """Style-adaptive layer norm's (gamma, beta) from the style code s; `style_norm` applies them."""

    def __init__(self, dim: int):
        super().__init__()
        self.affine = nn.Linear(dim, 2 * dim)
        nn.init.constant_(self.affine.bias[:dim], 1.0)
        nn.init.constant_(self.affine.bias[dim:], 0.0)

    def forward(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, C) -> 2 x (B, C)
        return self.affine(style).chunk(2, dim=-1)


class Attention(nn.Module):
    """Multi-head attention with a packed input projection (the layout of nn.MultiheadAttention)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor, first: int, count: int) -> torch.Tensor:  # (B, L, C) -> (B, L, count*C)
        """Rows `first` to `first + count` of (q, k, v) in one matrix product."""
        dim = self.out_proj.in_features
        rows = slice(first * dim, (first + count) * dim)
        return F.linear(x, self.in_proj.weight[rows], self.in_proj.bias[rows])

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (B, L, n*C) -> n x (B, H, L, D)
        x = x.unflatten(-1, (-1, self.heads, self.out_proj.in_features // self.heads))  # (B, L, n, H, D)
        return x.permute(2, 0, 3, 1, 4).unbind(0)

    def merge(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, L, D) -> (B, L, C)
        return self.out_proj(x.transpose(1, 2).flatten(2))


class Context(NamedTuple):
    """Per-sequence work of the decoder, done once before the autoregression."""
    memory: tuple[torch.Tensor, torch.Tensor]  # cross-attention keys and values, each (B, H, T, K, D)
    cross_out: torch.Tensor | None  # (B, T, C) cross-attention output of each frame, when independent of its input
    films: tuple  # (gamma, beta) of norm1, norm2, norm3, each (B, C)
    weights: tuple  # (bias, weight.T) of self_attn.in_proj, self_attn.out_proj, ff1, ff2: for `step`
    bias: torch.Tensor  # (B*H, T, T) self-attention bias of query frame i to key frame j
    positions: torch.Tensor  # (T, C) positional encoding of each frame


class Decoder(nn.Module):
    """One post-norm transformer decoder layer with SALN, run autoregressively.

    Self-attention carries FaceFormer's periodic ALiBi bias (-slope_h * floor((i - j) / period)
    for key j <= query i, keys j > i masked); cross-attention is aligned: frame i sees only its
    own K audio/content features. Input of frame i is the motion predicted for frame i - 1
    (frame 0 gets `init_state`). `forward` runs the layer one frame at a time (`step`), with keys
    and values of past frames cached, and feeds each output back through motion_out and motion_in
    composed into one (C, C) map; the (T, M) motion comes out of one matrix product at the end.
    `forward_recompute` is the official algorithm, kept to test and measure against.
    """

    def __init__(self, config: MimicConfig):
        super().__init__()
        c = config
        self.period = c.period
        self.features_per_frame = c.features_per_frame
        self.motion_in = nn.Linear(c.motion_dim, c.feature_dim)
        self.self_attn = Attention(c.feature_dim, c.decoder_heads)
        self.cross_attn = Attention(c.feature_dim, c.decoder_heads)
        self.ff1 = nn.Linear(c.feature_dim, c.decoder_ff)
        self.ff2 = nn.Linear(c.decoder_ff, c.feature_dim)
        self.norm1, self.norm2, self.norm3 = SALN(c.feature_dim), SALN(c.feature_dim), SALN(c.feature_dim)
        self.dropout = nn.Dropout(0.1)
        self.motion_out = nn.Linear(c.feature_dim, c.motion_dim)
        nn.init.zeros_(self.motion_out.weight)
        nn.init.zeros_(self.motion_out.bias)
        self.heads = c.decoder_heads
        self.slopes = alibi_slopes(c.decoder_heads)

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout in training; in eval not even called, as a cached step is only a few small ops."""
        return self.dropout(x) if self.training else x

    def bias(self, frames: int, device: torch.device) -> torch.Tensor:  # -> (H, T, T)
        positions = torch.arange(frames, device=device)
        distance = positions[:, None] - positions[None, :]  # (T, T)
        slopes = torch.tensor(self.slopes, device=device)
        bias = -slopes[:, None, None] * torch.div(distance, self.period, rounding_mode="floor")
        return bias.masked_fill(distance < 0, float("-inf"))

    def prepare(self, features: torch.Tensor, style: torch.Tensor) -> Context:
        """features (B, T*K, C), style (B, C) -> what every frame of the sequence reuses."""
        B, TK, C = features.shape
        frames = TK // self.features_per_frame
        k, v = self.cross_attn.split(self.cross_attn.project(features, 1, 2))  # (B, H, T*K, D)
        memory = (k.unflatten(2, (frames, -1)), v.unflatten(2, (frames, -1)))  # (B, H, T, K, D)
        # one feature per frame and no dropout: the softmax over a single key is 1, so each frame's
        # cross-attention output is its own projected value, whatever the query
        cross_out = self.cross_attn.merge(v) if self.features_per_frame == 1 and not self.training else None
        films = (self.norm1(style), self.norm2(style), self.norm3(style))
        linears = (self.self_attn.in_proj, self.self_attn.out_proj, self.ff1, self.ff2)
        weights = tuple((m.bias, m.weight.T) for m in linears)
        positions = periodic_positions(torch.arange(frames, device=features.device), C, self.period)
        bias = self.bias(frames, features.device).repeat(B, 1, 1)  # (B*H, T, T)
        return Context(memory, cross_out, films, weights, bias, positions)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Heads folded into the batch: q (B*H, L, D), k and v (B*H, S, D), bias (B*H, L, S) -> (B*H, L, D)."""
        scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=1 / math.sqrt(q.shape[-1]))  # (B*H, L, S)
        return torch.bmm(self.drop(torch.softmax(scores, dim=-1)), v)

    def cross(self, h: torch.Tensor, rows: slice, context: Context) -> torch.Tensor:  # (B, L, C) -> (B, L, C)
        """Aligned cross-attention of frames `rows` to their own K features (when not precomputed)."""
        q, = self.cross_attn.split(self.cross_attn.project(h, 0, 1))  # (B, H, L, D)
        mem_k, mem_v = context.memory[0][:, :, rows], context.memory[1][:, :, rows]  # (B, H, L, K, D)
        weights = self.drop(torch.softmax(torch.einsum("bhld,bhlkd->bhlk", q, mem_k) / math.sqrt(q.shape[-1]), dim=-1))
        return self.cross_attn.merge(torch.einsum("bhlk,bhlkd->bhld", weights, mem_v))

    def layer(self, x: torch.Tensor, frames: int, context: Context) -> torch.Tensor:
        """The layer on the first `frames` frames at once: x (B, frames, C) -> (B, frames, C)."""
        rows = slice(0, frames)
        films = [(gamma[:, None], beta[:, None]) for gamma, beta in context.films]  # each (B, 1, C)
        q, k, v = (t.flatten(0, 1) for t in self.self_attn.split(self.self_attn.in_proj(x)))  # (B*H, L, D)
        attended = self.attend(q, k, v, context.bias[:, rows, rows]).unflatten(0, (x.shape[0], -1))  # (B, H, L, D)
        h = style_norm(x + self.drop(self.self_attn.merge(attended)), films[0])
        cross = self.cross(h, rows, context) if context.cross_out is None else context.cross_out[:, rows]
        h = style_norm(h + self.drop(cross), films[1])
        return style_norm(h + self.drop(self.ff2(self.drop(F.relu(self.ff1(h))))), films[2])

    def step(self, x: torch.Tensor, i: int, past: tuple | None, context: Context):
        """The layer on frame i alone, on 2-D rows: x (B, C); past: keys and values of the frames
        before i, each (B*H, i, D), or None. Returns (B, C) and the keys and values with frame i.
        Each op here is a few microseconds, so the weights come unpacked from `context` (module
        calls and attribute look-ups would cost as much as the products)."""
        B, C = x.shape
        (qkv_b, qkv_w), (out_b, out_w), (ff1_b, ff1_w), (ff2_b, ff2_w) = context.weights
        qkv = torch.addmm(qkv_b, x, qkv_w).view(B, 3, self.heads, 1, -1)  # (B, 3, H, 1, D)
        q, k, v = qkv.transpose(0, 1).flatten(1, 2).unbind(0)  # (B*H, 1, D)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=1), torch.cat([past[1], v], dim=1)  # (B*H, i + 1, D)
        attended = self.attend(q, k, v, context.bias[:, i:i + 1, :i + 1]).view(B, C)
        h = style_norm(x + self.drop(torch.addmm(out_b, attended, out_w)), context.films[0])
        if context.cross_out is None:
            cross = self.cross(h[:, None], slice(i, i + 1), context)[:, 0]
        else:
            cross = context.cross_out[:, i]
        h = style_norm(h + self.drop(cross), context.films[1])
        ff = torch.addmm(ff2_b, self.drop(F.relu(torch.addmm(ff1_b, h, ff1_w))), ff2_w)
        return style_norm(h + self.drop(ff), context.films[2]), (k, v)

    def feedback(self) -> tuple[torch.Tensor, torch.Tensor]:
        """motion_out then motion_in as one map, h -> h @ weight + bias, weight (C, C), bias (C,): the
        next frame's input straight from this frame's output, without the motion in between."""
        return self.motion_out.weight.T @ self.motion_in.weight.T, self.motion_in(self.motion_out.bias)

    def forward(self, features: torch.Tensor, style: torch.Tensor, init_state: torch.Tensor,
                feedback: tuple[torch.Tensor, torch.Tensor] | None = None,
                on_frame: Callable[[int], None] | None = None) -> torch.Tensor:
        """features (B, T*K, C), style (B, C), init_state (B, M) -> motion (B, T, M). feedback:
        `self.feedback()`, computed once by a caller that decodes many windows with the same weights.
        on_frame(n) is called after each frame with the number of frames done (progress, cancel)."""
        context = self.prepare(features, style)
        weight, bias = self.feedback() if feedback is None else feedback
        inputs = bias + context.positions  # (T, C): frame i's input less the fed-back output of frame i - 1
        x, past, outputs = self.motion_in(init_state) + context.positions[0], None, []  # x (B, C): frame 0's input
        for i in range(len(inputs)):
            h, past = self.step(self.drop(x), i, past, context)  # (B, C)
            outputs.append(h)
            if on_frame is not None:
                on_frame(i + 1)
            if i + 1 < len(inputs):
                x = torch.addmm(inputs[i + 1], h, weight)  # (B, C): frame i + 1's input
        return self.motion_out(torch.stack(outputs, dim=1))  # (B, T, M)

    def forward_recompute(self, features: torch.Tensor, style: torch.Tensor, init_state: torch.Tensor) -> torch.Tensor:
        """The official algorithm: every step re-runs the layer and the output map on the whole prefix."""
        context = self.prepare(features, style)
        inputs = [self.motion_in(init_state)[:, None]]  # (B, 1, C) per frame
        for i in range(len(context.positions)):
            x = self.drop(torch.cat(inputs, dim=1) + context.positions[:i + 1])
            motion = self.motion_out(self.layer(x, i + 1, context))  # (B, i + 1, M)
            inputs.append(self.motion_in(motion[:, -1])[:, None])
        return motion


# ------------------------------------------------------------------------------------- Mimic


class GradientReversal(torch.autograd.Function):
    """Identity forward; gradient times -alpha backward."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.alpha * grad, None


class Mimic(nn.Module):
    def __init__(self, config: MimicConfig):
        super().__init__()
        self.config = config
        self.style_encoder = MotionEncoder(config, content=False)
        self.content_encoder = MotionEncoder(config, content=True)
        self.audio_encoder = AudioEncoder(config)
        self.decoder = Decoder(config)
        self.style_classifier = nn.Linear(config.feature_dim, config.num_ids)
        self.inverse_classifier = nn.Linear(config.feature_dim, config.num_ids)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_style(self, motion: torch.Tensor) -> torch.Tensor:  # (B, T, M) -> (B, C)
        """The style code s of each motion; zeros for the no-style baseline (`style_input` False),
        whose decoder norms then hold one learnt scale and shift for every speaker."""
        if self.config.style_input:
            return self.style_encoder(motion)
        return motion.new_zeros(len(motion), self.config.feature_dim)

    def style_logits(self, style: torch.Tensor) -> torch.Tensor:  # (B, C) -> (B, ids)
        return self.style_classifier(style)

    def inverse_logits(self, content: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:  # (B, T, C) -> (B, ids)
        return self.inverse_classifier(GradientReversal.apply(content.mean(dim=1), alpha))
