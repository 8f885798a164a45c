"""wav2vec 2.0 (Baevski et al., 2020) and HuBERT (Hsu et al., 2021), the audio encoder's backbones.

Built from a transformers-style config dict (`MimicConfig.audio_model`; the published geometries
are below), with the sub-module and parameter names of transformers' Wav2Vec2Model and HubertModel,
so their state dicts load as they are. transformers is not imported here: the tests check these
modules against it, and training reads pretrained Hugging Face folders with it.

    audio (B, S) -> feature_extractor: strided convolutions, 320 samples a step -> (B, C, L), 50 Hz
    -> feature_projection -> (B, L, W) -> spec_augment (training only)
    -> encoder: + positional convolution, transformer layers -> (B, L, W)

Shapes: B batch, S samples, C conv channels, L feature steps, W hidden size, H heads, D head dim.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

from . import protocol as p
from .errors import MimicError

# The keys every transformers config writes; none of them shapes the backbone.
_CONFIG_KEYS = dict(
    architectures=None, output_hidden_states=False, output_attentions=False, return_dict=True, dtype=None,
    chunk_size_feed_forward=0, is_encoder_decoder=False, id2label={0: "LABEL_0", 1: "LABEL_1"},
    label2id={"LABEL_0": 0, "LABEL_1": 1}, problem_type=None, _name_or_path="",
    pad_token_id=0, bos_token_id=1, eos_token_id=2)
# The base geometry, shared by both: 7 convolutions (320 samples a step), 12 post-norm layers 768 wide.
_BASE = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
    hidden_dropout=0.1, activation_dropout=0.1, attention_dropout=0.1, feat_proj_dropout=0.0, layerdrop=0.1,
    initializer_range=0.02, layer_norm_eps=1e-5, feat_extract_norm="group", feat_extract_activation="gelu",
    conv_dim=[512] * 7, conv_stride=[5, 2, 2, 2, 2, 2, 2], conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_bias=False,
    num_feat_extract_layers=7, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
    do_stable_layer_norm=False, apply_spec_augment=True, mask_time_prob=0.05, mask_time_length=10,
    mask_time_min_masks=2, mask_feature_prob=0.0, mask_feature_length=10, mask_feature_min_masks=0,
    # for the heads transformers puts on a backbone (CTC, classification), not used here
    vocab_size=32, final_dropout=0.1, ctc_loss_reduction="sum", ctc_zero_infinity=False,
    use_weighted_layer_sum=False, classifier_proj_size=256)
# What transformers' Wav2Vec2Config() and HubertConfig() give (5.24, less `transformers_version`):
# the defaults of the keys a config.json leaves out. tests/test_wav2vec2.py compares them.
DEFAULTS = {
    "wav2vec2": {
        **_CONFIG_KEYS, **_BASE, "model_type": "wav2vec2",
        # for wav2vec 2.0's pre-training, adapter and x-vector heads, not used here
        "feat_quantizer_dropout": 0.0, "num_codevectors_per_group": 320, "num_codevector_groups": 2,
        "contrastive_logits_temperature": 0.1, "num_negatives": 100, "codevector_dim": 256,
        "proj_codevector_dim": 256, "diversity_loss_weight": 0.1, "tdnn_dim": [512, 512, 512, 512, 1500],
        "tdnn_kernel": [5, 3, 3, 1, 1], "tdnn_dilation": [1, 2, 3, 1, 1], "xvector_output_dim": 512,
        "add_adapter": False, "adapter_kernel_size": 3, "adapter_stride": 2, "num_adapter_layers": 3,
        "output_hidden_size": 768, "adapter_attn_dim": None},
    "hubert": {**_CONFIG_KEYS, **_BASE, "model_type": "hubert", "feat_proj_layer_norm": True,
               "conv_pos_batch_norm": False},
}
PUBLISHED = {  # name on the Hugging Face hub -> geometry
    "facebook/wav2vec2-base-960h": {**DEFAULTS["wav2vec2"], "feat_proj_dropout": 0.1},
    "facebook/hubert-base-ls960": DEFAULTS["hubert"],
}
ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "swish": F.silu}


def published_geometry(name: str) -> dict:
    """A fresh copy of a published model's geometry (see PUBLISHED)."""
    return copy.deepcopy(PUBLISHED[name])


def full_geometry(values: dict) -> dict:
    """A geometry's keys over the defaults of its model_type, its derived keys derived, as
    transformers' config classes read a config (which may hold only the keys that differ).
    A MimicError names the key the backbone cannot be built from, if any."""
    if not isinstance(values, dict):
        raise MimicError(f"audio_model must be a mapping of transformers config keys, not {type(values).__name__}")
    kind = values.get("model_type")
    if kind not in DEFAULTS:
        raise MimicError(f"audio_model.model_type must be one of {', '.join(DEFAULTS)}, not {kind!r}")
    g = copy.deepcopy({**DEFAULTS[kind], **values})
    if g["feat_extract_norm"] not in ("group", "layer"):
        raise MimicError(f"audio_model.feat_extract_norm must be group or layer, not {g['feat_extract_norm']!r}")
    for key in ("feat_extract_activation", "hidden_act"):
        if g[key] not in ACTIVATIONS:
            raise MimicError(f"audio_model.{key} must be one of {', '.join(ACTIVATIONS)}, not {g[key]!r}")
    convs = [g[key] for key in ("conv_dim", "conv_kernel", "conv_stride")]
    if not all(isinstance(c, (list, tuple)) and c for c in convs) or len({len(c) for c in convs}) > 1:
        raise MimicError("audio_model.conv_dim, conv_kernel and conv_stride must be lists of one length, not "
                         f"{', '.join(repr(c) for c in convs)}")
    g["conv_dim"], g["conv_kernel"], g["conv_stride"] = convs = [list(c) for c in convs]  # as JSON has them
    sizes = {key: g[key] for key in ("hidden_size", "num_attention_heads", "intermediate_size",
                                     "num_conv_pos_embeddings", "num_conv_pos_embedding_groups")}
    sizes.update({f"{key}[{i}]": v for key, c in zip(("conv_dim", "conv_kernel", "conv_stride"), convs)
                  for i, v in enumerate(c)})
    for key, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise MimicError(f"audio_model.{key} must be a whole number of at least 1, not {size!r}")
    for divisor in ("num_attention_heads", "num_conv_pos_embedding_groups"):
        if g["hidden_size"] % g[divisor]:
            raise MimicError(f"audio_model.hidden_size {g['hidden_size']} is not divisible by {divisor} {g[divisor]}")
    if g.get("add_adapter") or g.get("adapter_attn_dim") is not None:
        raise MimicError("audio_model has adapters (add_adapter, adapter_attn_dim), which Mimic does not build")
    g["num_feat_extract_layers"] = len(g["conv_dim"])
    if kind == "wav2vec2":
        g["output_hidden_size"] = values.get("output_hidden_size") or g["hidden_size"]
    return g


def read_geometry(config_file: Path, code: str = p.BAD_INPUT) -> dict:
    """The full geometry of a Hugging Face folder's config.json."""
    try:
        values = json.loads(config_file.read_text())
        return full_geometry(values)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MimicError(f"{config_file} is not a readable model config ({e})", code) from None
    except MimicError as e:
        raise MimicError(f"{config_file}: {e}", code) from None


def span_mask(rows: int, length: int, prob: float, span: int, min_spans: int, key: str) -> torch.Tensor:
    """SpecAugment's spans, (rows, length) booleans, from torch's CPU generator. Every row gets
    n = int(prob * length / span + u) spans, u ~ U[0, 1) drawn once (probabilistic rounding), at
    least min_spans and at most length // span; their starts are distinct, in [0, length - span],
    so spans may overlap and prob bounds the masked share from above. `key`: the span's setting."""
    if not 1 <= span <= length:
        raise MimicError(f"audio_model.{key} is {span} but SpecAugment masks {length} steps here: "
                         "lower it, or train on longer windows")
    n = min(max(int(prob * length / span + torch.rand([]).item()), min_spans), length // span)
    mask = torch.zeros(rows, length, dtype=torch.bool)
    if n == 0:
        return mask
    starts = torch.rand(rows, length - span + 1).argsort(dim=1)[:, :n]  # (rows, n)
    return mask.scatter_(1, (starts[:, :, None] + torch.arange(span)).flatten(1), True)


# ------------------------------------------------------------------------------ the modules


class ConvLayer(nn.Module):
    """Convolution i of the feature extractor, then its norm: with feat_extract_norm "group" only the
    first has one (a GroupNorm of one channel a group: each channel normalised over time), with
    "layer" each has a LayerNorm over channels; then the activation."""

    def __init__(self, g: dict, i: int):
        super().__init__()
        channels = g["conv_dim"][i]
        self.conv = nn.Conv1d(g["conv_dim"][i - 1] if i else 1, channels, g["conv_kernel"][i],
                              stride=g["conv_stride"][i], bias=g["conv_bias"])
        if g["feat_extract_norm"] == "layer":
            self.layer_norm = nn.LayerNorm(channels)
        else:
            self.layer_norm = nn.GroupNorm(channels, channels) if i == 0 else None
        self.activation = ACTIVATIONS[g["feat_extract_activation"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, L_in) -> (B, C, L)
        x = self.conv(x)
        if isinstance(self.layer_norm, nn.LayerNorm):
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        elif self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.activation(x)


class FeatureEncoder(nn.Module):
    def __init__(self, g: dict):
        super().__init__()
        self.conv_layers = nn.ModuleList(ConvLayer(g, i) for i in range(len(g["conv_dim"])))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # (B, S) -> (B, C, L)
        x = audio[:, None]  # (B, 1, S)
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    """LayerNorm (HuBERT: if feat_proj_layer_norm), Linear to the hidden size, dropout."""

    def __init__(self, g: dict, layer_norm: bool):
        super().__init__()
        channels = g["conv_dim"][-1]
        self.layer_norm = nn.LayerNorm(channels, eps=g["layer_norm_eps"]) if layer_norm else None
        self.projection = nn.Linear(channels, g["hidden_size"])
        self.dropout = nn.Dropout(g["feat_proj_dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, C) -> (B, L, W)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.dropout(self.projection(x))


class PositionalConvEmbedding(nn.Module):
    """Relative positions: a grouped convolution over time, weight-normed over its kernel axis
    (HuBERT's conv_pos_batch_norm: a BatchNorm before it instead), cut to the input's length (an
    even kernel gives one step more), activated."""

    def __init__(self, g: dict, batch_norm: bool):
        super().__init__()
        width, kernel = g["hidden_size"], g["num_conv_pos_embeddings"]
        # Weight norm derives its g from the weight. On the meta device (a network built to take
        # loaded tensors) torch's reference ops would, importing torch._dynamo and sympy (0.8 s of
        # start-up): this convolution is then made on the CPU, and the loaded tensors replace it.
        device = "cpu" if not batch_norm and torch.empty(()).is_meta else None
        conv = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=g["num_conv_pos_embedding_groups"],
                         device=device)
        nn.init.zeros_(conv.bias)  # transformers' initialisation; the weight keeps PyTorch's
        self.batch_norm = nn.BatchNorm1d(width) if batch_norm else None
        self.conv = conv if batch_norm else weight_norm(conv, name="weight", dim=2)
        self.activation = ACTIVATIONS[g["feat_extract_activation"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, W) -> (B, L, W)
        length = x.shape[1]
        x = x.transpose(1, 2)  # (B, W, L)
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        return self.activation(self.conv(x)[:, :, :length]).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, W) -> (B, L, W)
        B, L, W = x.shape
        q, k, v = (proj(x).view(B, L, self.heads, -1).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))  # (B, H, L, D)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)  # (B, H, L, D)
        return self.out_proj(x.transpose(1, 2).reshape(B, L, W))


class FeedForward(nn.Module):
    def __init__(self, g: dict):
        super().__init__()
        self.intermediate_dense = nn.Linear(g["hidden_size"], g["intermediate_size"])
        self.activation = ACTIVATIONS[g["hidden_act"]]
        self.intermediate_dropout = nn.Dropout(g["activation_dropout"])
        self.output_dense = nn.Linear(g["intermediate_size"], g["hidden_size"])
        self.output_dropout = nn.Dropout(g["hidden_dropout"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, W) -> (B, L, W)
        x = self.intermediate_dropout(self.activation(self.intermediate_dense(x)))  # (B, L, intermediate)
        return self.output_dropout(self.output_dense(x))


class EncoderLayer(nn.Module):
    """A transformer layer: post-norm (the base models), or pre-norm with do_stable_layer_norm."""

    def __init__(self, g: dict):
        super().__init__()
        width = g["hidden_size"]
        self.stable = g["do_stable_layer_norm"]
        self.attention = Attention(width, g["num_attention_heads"], g["attention_dropout"])
        self.dropout = nn.Dropout(g["hidden_dropout"])
        self.layer_norm = nn.LayerNorm(width, eps=g["layer_norm_eps"])
        self.feed_forward = FeedForward(g)
        self.final_layer_norm = nn.LayerNorm(width, eps=g["layer_norm_eps"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, W) -> (B, L, W)
        if self.stable:
            x = x + self.dropout(self.attention(self.layer_norm(x)))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.dropout(self.attention(x)))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    """Positions added, then the layers; its LayerNorm comes first (post-norm layers) or last
    (pre-norm). In training each layer is skipped with probability `layerdrop`."""

    def __init__(self, g: dict, batch_norm: bool):
        super().__init__()
        self.stable, self.layerdrop = g["do_stable_layer_norm"], g["layerdrop"]
        self.pos_conv_embed = PositionalConvEmbedding(g, batch_norm)
        self.layer_norm = nn.LayerNorm(g["hidden_size"], eps=g["layer_norm_eps"])
        self.dropout = nn.Dropout(g["hidden_dropout"])
        self.layers = nn.ModuleList(EncoderLayer(g) for _ in range(g["num_hidden_layers"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, W) -> (B, L, W)
        x = x + self.pos_conv_embed(x)
        x = self.dropout(x if self.stable else self.layer_norm(x))
        for layer in self.layers:
            if not (self.training and self.layerdrop > 0 and torch.rand([]) < self.layerdrop):
                x = layer(x)
        return self.layer_norm(x) if self.stable else x


class SpeechEncoder(nn.Module):
    """wav2vec 2.0 or HuBERT (`model_type` of the geometry) without a head. Run whole (`forward`)
    or in its parts: feature_extractor, feature_projection, spec_augment, encoder."""

    def __init__(self, geometry: dict):
        super().__init__()
        g = full_geometry(geometry)
        self.model_type = g["model_type"]
        hubert = self.model_type == "hubert"
        self.feature_extractor = FeatureEncoder(g)
        self.feature_projection = FeatureProjection(g, layer_norm=not hubert or g.get("feat_proj_layer_norm", True))
        self.time_masking = (g["mask_time_prob"], g["mask_time_length"], g["mask_time_min_masks"], "mask_time_length")
        self.feature_masking = (g["mask_feature_prob"], g["mask_feature_length"], g["mask_feature_min_masks"],
                                "mask_feature_length")
        self.apply_spec_augment = g["apply_spec_augment"]
        if g["mask_time_prob"] > 0 or g["mask_feature_prob"] > 0:
            self.masked_spec_embed = nn.Parameter(torch.empty(g["hidden_size"]).uniform_())
        self.encoder = Encoder(g, batch_norm=hubert and g.get("conv_pos_batch_norm", False))
        if not self.encoder.layer_norm.weight.is_meta:  # (on meta, torch's normal_ imports torch._dynamo)
            self._init_weights(g["initializer_range"])

    def _init_weights(self, std: float):
        """transformers' initialisation, as its models come out: linear maps N(0, std) with zero
        biases (wav2vec 2.0's feature projection keeps PyTorch's), the feature extractor's
        convolutions He-normal (HuBERT: zero biases); see also PositionalConvEmbedding."""
        hubert = self.model_type == "hubert"
        linears = [m for m in self.encoder.modules() if isinstance(m, nn.Linear)]
        convs = [layer.conv for layer in self.feature_extractor.conv_layers]
        if hubert:
            linears.append(self.feature_projection.projection)
            if self.encoder.pos_conv_embed.batch_norm is not None:
                convs.append(self.encoder.pos_conv_embed.conv)
        for linear in linears:
            nn.init.normal_(linear.weight, std=std)
            nn.init.zeros_(linear.bias)
        for conv in convs:
            nn.init.kaiming_normal_(conv.weight)
            if hubert and conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def freeze_feature_encoder(self):
        """No gradients for the convolutional feature extractor (and no autograd graph through it)."""
        self.feature_extractor.requires_grad_(False)

    def spec_augment(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, W) -> (B, L, W)
        """In training: masked time steps become `masked_spec_embed`, masked channels zero. In eval: x."""
        if not (self.training and self.apply_spec_augment):
            return x
        B, L, W = x.shape
        if self.time_masking[0] > 0:
            steps = span_mask(B, L, *self.time_masking).to(x.device)  # (B, L)
            x = torch.where(steps[:, :, None], self.masked_spec_embed.to(x.dtype), x)
        if self.feature_masking[0] > 0:
            channels = span_mask(B, W, *self.feature_masking).to(x.device)  # (B, W)
            x = x.masked_fill(channels[:, None, :], 0.0)
        return x

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # (B, S) -> (B, L, W)
        x = self.feature_extractor(audio).transpose(1, 2)  # (B, L, C)
        return self.encoder(self.spec_augment(self.feature_projection(x)))
