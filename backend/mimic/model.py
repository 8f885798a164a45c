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
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model

AUDIO_BACKBONES = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2Model), "hubert": (HubertConfig, HubertModel)}
ALIGNMENTS = ("conv", "interpolate", "pair")


def wav2vec2_base_geometry() -> dict:
    """Geometry of facebook/wav2vec2-base-960h (the released Mimic's audio encoder)."""
    return Wav2Vec2Config(vocab_size=32, feat_proj_dropout=0.1).to_dict()


@dataclass
class MimicConfig:
    vertex_count: int = 5023  # FLAME head
    fps: float = 25.0  # motion frames per second
    alignment: str = "conv"  # audio 50 Hz -> frames: "conv" stride-2 conv (25 fps), "interpolate" linear (any fps), "pair" 2 features per frame
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
    audio_model: dict = field(default_factory=wav2vec2_base_geometry)  # transformers config of the audio backbone

    def __post_init__(self):
        assert self.alignment in ALIGNMENTS, f"alignment must be one of {ALIGNMENTS}, not {self.alignment!r}"
        assert self.audio_model.get("model_type") in AUDIO_BACKBONES, (
            f"audio model type must be one of {sorted(AUDIO_BACKBONES)}, not {self.audio_model.get('model_type')!r}")
        assert self.alignment != "conv" or self.fps == 25, "conv alignment halves 50 Hz audio features: it needs 25 fps"
        assert 0 < self.overlap < self.window, "overlap must be at least one frame and shorter than the window"

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
    def preset(cls, name: str, **overrides) -> "MimicConfig":
        """`hdtf` (the released model), `vocaset` (30 fps), `biwi` (25 fps, 23,370 vertices)."""
        presets = {
            "hdtf": dict(),
            "vocaset": dict(fps=30.0, alignment="interpolate"),
            "biwi": dict(vertex_count=23370, alignment="pair"),
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
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
    """wav2vec 2.0 / HuBERT at 50 Hz on normalised 16 kHz audio, aligned to motion frames."""

    def __init__(self, config: MimicConfig):
        super().__init__()
        self.alignment = config.alignment
        config_class, model_class = AUDIO_BACKBONES[config.audio_model["model_type"]]
        self.backbone = model_class(config_class.from_dict(config.audio_model))
        width = self.backbone.config.hidden_size
        self.downsample = nn.Conv1d(width, width, 15, stride=2, padding=7) if config.alignment == "conv" else None
        self.out_proj = nn.Linear(width, config.feature_dim)

    def freeze_feature_encoder(self):
        """Freeze the convolutional feature extractor, as in the paper's training."""
        self.backbone.feature_extractor._freeze_parameters()

    def forward(self, audio: torch.Tensor, frames: int) -> torch.Tensor:  # (B, S) -> (B, frames*K, C)
        x = self.backbone.feature_extractor(audio).transpose(1, 2)  # (B, L, 512), L ~ 50 Hz
        if self.alignment == "interpolate":
            x = F.interpolate(x.transpose(1, 2), size=frames, mode="linear", align_corners=True).transpose(1, 2)
        elif self.alignment == "pair":
            x = fit_length(x, 2 * frames)
        x = self.backbone.feature_projection(x)
        x = x[0] if isinstance(x, tuple) else x  # wav2vec2 returns (hidden, normed features)
        x = self.backbone._mask_hidden_states(x)  # SpecAugment in training, identity in eval
        x = self.backbone.encoder(x).last_hidden_state  # (B, L, W)
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


class SALN(nn.Module):
    """Style-adaptive layer norm: LayerNorm without affine, then gamma * x + beta from s."""

    def __init__(self, dim: int):
        super().__init__()
        self.affine = nn.Linear(dim, 2 * dim)
        nn.init.constant_(self.affine.bias[:dim], 1.0)
        nn.init.constant_(self.affine.bias[dim:], 0.0)

    def forward(self, x: torch.Tensor, film: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        gamma, beta = film  # each (B, 1, C)
        return gamma * F.layer_norm(x, x.shape[-1:]) + beta

    def film(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, C) -> 2 x (B, 1, C)
        return self.affine(style)[:, None].chunk(2, dim=-1)


class Attention(nn.Module):
    """Multi-head attention with a packed input projection (the layout of nn.MultiheadAttention)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        assert dim % heads == 0, f"width {dim} is not divisible by {heads} heads"
        self.heads = heads
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, C) -> (B, H, L, D)
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def project(self, x: torch.Tensor, which: int) -> torch.Tensor:  # which: 0 q, 1 k, 2 v
        dim = self.out_proj.in_features
        w, b = self.in_proj.weight[which * dim:(which + 1) * dim], self.in_proj.bias[which * dim:(which + 1) * dim]
        return self.split(F.linear(x, w, b))

    def merge(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, L, D) -> (B, L, C)
        return self.out_proj(x.transpose(1, 2).flatten(2))


class Decoder(nn.Module):
    """One post-norm transformer decoder layer with SALN, run autoregressively.

    Self-attention carries FaceFormer's periodic ALiBi bias (-slope_h * floor((i - j) / period)
    for key j <= query i, keys j > i masked); cross-attention is aligned: frame i sees only its
    own K audio/content features. Input of frame i is the motion predicted for frame i - 1
    (frame 0 gets `init_state`). Keys and values of past frames are cached, so each step costs
    one frame, not the whole prefix; `forward_recompute` is the official algorithm, kept to test
    and measure against.
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
        self.slopes = alibi_slopes(c.decoder_heads)

    def bias(self, queries: torch.Tensor, keys: int) -> torch.Tensor:  # query positions (L,) -> (H, L, keys)
        distance = queries[:, None] - torch.arange(keys, device=queries.device)[None, :]  # (L, keys)
        slopes = torch.tensor(self.slopes, device=queries.device)
        bias = -slopes[:, None, None] * torch.div(distance, self.period, rounding_mode="floor")
        return bias.masked_fill(distance < 0, float("-inf"))

    def layer(self, x, positions, past, memory, films):
        """x (B, L, C) at `positions` (L,); past: cached (k, v) of earlier frames or None;
        memory: projected (k, v), each (B, H, T, K, D). Returns (B, L, C) and the new (k, v)."""
        q, k, v = (self.self_attn.project(x, i) for i in range(3))  # (B, H, L, D)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=self.bias(positions, k.shape[2]), dropout_p=0.1 if self.training else 0.0)
        h = self.norm1(x + self.dropout(self.self_attn.merge(attended)), films[0])

        q = self.cross_attn.project(h, 0)  # (B, H, L, D)
        mem_k, mem_v = memory[0][:, :, positions], memory[1][:, :, positions]  # (B, H, L, K, D)
        weights = self.dropout(torch.softmax(torch.einsum("bhld,bhlkd->bhlk", q, mem_k) / math.sqrt(q.shape[-1]), dim=-1))
        h = self.norm2(h + self.dropout(self.cross_attn.merge(torch.einsum("bhlk,bhlkd->bhld", weights, mem_v))), films[1])

        h = self.norm3(h + self.dropout(self.ff2(self.dropout(F.relu(self.ff1(h))))), films[2])
        return h, (k, v)

    def prepare(self, features: torch.Tensor, style: torch.Tensor):
        """Per-sequence work done once: projected memory and the three SALN (gamma, beta)."""
        B, TK, _ = features.shape
        frames = TK // self.features_per_frame
        memory = tuple(
            self.cross_attn.project(features, i).unflatten(2, (frames, self.features_per_frame)) for i in (1, 2))
        films = (self.norm1.film(style), self.norm2.film(style), self.norm3.film(style))
        return frames, memory, films

    def embed(self, motion: torch.Tensor, position: int) -> torch.Tensor:  # (B, M) -> (B, 1, C)
        pe = periodic_positions(torch.tensor([position], device=motion.device), self.motion_in.out_features, self.period)
        return self.dropout(self.motion_in(motion)[:, None] + pe)

    def forward(self, features: torch.Tensor, style: torch.Tensor, init_state: torch.Tensor) -> torch.Tensor:
        """features (B, T*K, C), style (B, C), init_state (B, M) -> motion (B, T, M)."""
        frames, memory, films = self.prepare(features, style)
        past, previous, motions = None, init_state, []
        for i in range(frames):
            position = torch.tensor([i], device=features.device)
            h, past = self.layer(self.embed(previous, i), position, past, memory, films)
            previous = self.motion_out(h[:, 0])  # (B, M)
            motions.append(previous)
        return torch.stack(motions, dim=1)

    def forward_recompute(self, features: torch.Tensor, style: torch.Tensor, init_state: torch.Tensor) -> torch.Tensor:
        """The official algorithm: every step re-runs the layer and the output map on the whole prefix."""
        frames, memory, films = self.prepare(features, style)
        inputs = [self.motion_in(init_state)[:, None]]  # (B, 1, C) per frame
        for i in range(frames):
            positions = torch.arange(i + 1, device=features.device)
            x = self.dropout(torch.cat(inputs, dim=1) + periodic_positions(positions, inputs[0].shape[-1], self.period))
            h, _ = self.layer(x, positions, None, memory, films)
            motion = self.motion_out(h)  # (B, i + 1, M)
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

    def style_logits(self, style: torch.Tensor) -> torch.Tensor:  # (B, C) -> (B, ids)
        return self.style_classifier(style)

    def inverse_logits(self, content: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:  # (B, T, C) -> (B, ids)
        return self.inverse_classifier(GradientReversal.apply(content.mean(dim=1), alpha))
