"""mimic.wav2vec2 against transformers, the oracle: with the same weights (transformers' state dict
loaded strictly) the same outputs, in every geometry the backbone builds; the published geometries
and a Hugging Face folder's config read as transformers reads them; in training, SpecAugment's masks
as transformers draws them and a seeded run that repeats; the frozen feature encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import torch
from paths import SPEECH
from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

from mimic import protocol as p
from mimic.checkpoint import load_model, save_model
from mimic.errors import MimicError
from mimic.generate import normalise
from mimic.model import AudioEncoder, Mimic, MimicConfig, fit_length
from mimic.wav2vec2 import DEFAULTS, PUBLISHED, SpeechEncoder, full_geometry, read_geometry, span_mask

ORACLE = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2Model), "hubert": (HubertConfig, HubertModel)}
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=[16] * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
GEOMETRIES = {
    "wav2vec2 tiny": ("wav2vec2", TINY),
    "wav2vec2 tiny, layer norms, stable layer norm, conv biases": (
        "wav2vec2", {**TINY, "feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_bias": True}),
    "hubert tiny": ("hubert", TINY),
    "hubert tiny, layer norms, stable layer norm, batch-normed positions, odd kernel, no projection norm": (
        "hubert", {**TINY, "feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_pos_batch_norm": True,
                   "num_conv_pos_embeddings": 15, "feat_proj_layer_norm": False}),
    "wav2vec2 base": ("wav2vec2", {}),
    "hubert base": ("hubert", {}),
}


def speech(seconds: float, count: int) -> torch.Tensor:
    """`count` different windows of LibriVox speech, each normalised on its own as the generator does."""
    clip = soundfile.read(sorted(SPEECH.glob("*.wav"))[0], dtype="float32")[0]
    n = int(seconds * 16000)
    return torch.from_numpy(np.stack([normalise(clip[i * n:(i + 1) * n]) for i in range(count)]))


def oracle(kind: str, settings: dict) -> torch.nn.Module:
    """transformers' model of that geometry, every parameter and statistic made distinct (their
    initialisation leaves norms at 1 and biases at 0, which would hide a swapped or missing one)."""
    config_class, model_class = ORACLE[kind]
    model = model_class(config_class(**settings)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1 + 0.1 * torch.randn_like(parameter)).add_(0.02 * torch.randn_like(parameter))
        for name, buffer in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buffer.copy_(torch.rand_like(buffer) + 0.5)
    return model


def to_dict(config) -> dict:
    return {k: v for k, v in config.to_dict().items() if k != "transformers_version"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.slow] if name.endswith("base") else [])
                                  for name in GEOMETRIES])  # the base networks: seconds each
def test_same_weights_same_outputs_as_transformers(name):
    kind, settings = GEOMETRIES[name]
    theirs = oracle(kind, settings)
    ours = SpeechEncoder(to_dict(theirs.config)).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    for audio in (speech(1.5, 2), speech(0.77, 1)):
        with torch.no_grad():
            expected = theirs(audio).last_hidden_state
            got = ours(audio)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= 1e-5, name


def test_the_audio_encoder_runs_the_backbone_as_transformers_does(tiny_config):
    """AudioEncoder runs the backbone in its parts; with conv alignment (after the transformer) that
    equals transformers' whole forward, downsampled and projected."""
    theirs = oracle("wav2vec2", TINY)
    encoder = AudioEncoder(tiny_config("hdtf", audio_model=to_dict(theirs.config))).eval()
    encoder.backbone.load_state_dict(theirs.state_dict(), strict=True)
    audio = speech(1.2, 2)
    with torch.no_grad():
        hidden = theirs(audio).last_hidden_state  # (B, L, W)
        expected = encoder.out_proj(fit_length(encoder.downsample(hidden.transpose(1, 2)).transpose(1, 2), 30))
        assert (encoder(audio, 30) - expected).abs().max() <= 1e-5


def test_the_published_geometries_are_transformers_configs():
    assert DEFAULTS["wav2vec2"] == to_dict(Wav2Vec2Config())
    assert DEFAULTS["hubert"] == to_dict(HubertConfig())
    assert PUBLISHED["facebook/wav2vec2-base-960h"] == to_dict(Wav2Vec2Config(vocab_size=32, feat_proj_dropout=0.1))
    assert PUBLISHED["facebook/hubert-base-ls960"] == to_dict(HubertConfig())


@pytest.mark.parametrize("kind", ORACLE)
def test_a_hugging_face_folder_reads_as_transformers_reads_it(tmp_path, kind):
    """A folder written by save_pretrained, and a config.json of a few keys (the rest are defaults)."""
    config_class = ORACLE[kind][0]
    config_class(**TINY, conv_kernel=[10, 3, 3, 3, 3, 2, 3], mask_time_prob=0.2).save_pretrained(tmp_path / "saved")
    (tmp_path / "short").mkdir()
    (tmp_path / "short" / "config.json").write_text(json.dumps({"model_type": kind, "hidden_size": 48,
                                                                "num_attention_heads": 4, "conv_dim": [64] * 7}))
    for folder in ("saved", "short"):
        theirs = to_dict(config_class.from_pretrained(tmp_path / folder))
        ours = read_geometry(tmp_path / folder / "config.json")
        assert {k: v for k, v in ours.items() if k != "transformers_version"} == {**theirs, "_name_or_path": ""}
    short = json.loads((tmp_path / "short" / "config.json").read_text())
    assert MimicConfig(audio_model=short).audio_model == read_geometry(tmp_path / "short" / "config.json")


BAD = {
    "unknown model": ({"model_type": "whisper"}, r"audio_model.model_type must be one of wav2vec2, hubert"),
    "not a list": ({"conv_dim": 512}, r"conv_dim, conv_kernel and conv_stride must be lists of one length"),
    "feature norm": ({"feat_extract_norm": "batch"}, r"feat_extract_norm must be group or layer, not 'batch'"),
    "activation": ({"hidden_act": "gelu_new"}, r"hidden_act must be one of gelu, relu, silu, swish"),
    "conv lengths": ({"conv_kernel": [10, 3, 3]}, r"conv_dim, conv_kernel and conv_stride must be lists of one length"),
    "conv size": ({"conv_dim": [512, 512, 0] + [512] * 4}, r"conv_dim\[2\] must be a whole number of at least 1"),
    "heads": ({"num_attention_heads": 5}, r"hidden_size 768 is not divisible by num_attention_heads 5"),
    "adapter": ({"add_adapter": True}, r"adapters"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_geometry_it_cannot_build_is_one_clear_error(tmp_path, tiny_config, case):
    change, message = BAD[case]
    with pytest.raises(MimicError, match=message):
        full_geometry({**PUBLISHED["facebook/wav2vec2-base-960h"], **change})
    if case == "heads":  # the same from a model folder's config.json
        folder = save_model(Mimic(tiny_config()), tmp_path / "model")
        text = (folder / "config.json").read_text().replace('"num_attention_heads": 2', '"num_attention_heads": 5')
        (folder / "config.json").write_text(text)
        with pytest.raises(MimicError, match=r"holds no valid Mimic config .*not divisible by num_attention_heads"
                           ) as error:
            load_model(folder)
        assert error.value.code == p.BAD_CHECKPOINT


# ------------------------------------------------------------------------------- training


def test_span_masks_are_drawn_as_transformers_draws_them():
    """The same distribution: the masked share over many draws matches _compute_mask_indices'
    (which uses numpy's generator); the count's bounds hold exactly."""
    torch.manual_seed(0)
    np.random.seed(0)
    for length, prob, span, min_spans in ((50, 0.3, 4, 2), (299, 0.05, 10, 2), (30, 0.5, 2, 0)):
        ours = np.mean([span_mask(20, length, prob, span, min_spans, "x").float().mean() for _ in range(300)])
        theirs = np.mean([_compute_mask_indices((20, length), prob, span, min_masks=min_spans).mean()
                          for _ in range(300)])
        assert abs(ours - theirs) < 0.01, (length, prob, span, ours, theirs)
    assert span_mask(3, 40, 0.0, 5, 0, "x").sum() == 0
    assert (span_mask(3, 40, 0.0, 5, 2, "x").sum(dim=1) >= 5).all()  # min_spans: at least one whole span
    assert span_mask(3, 40, 1.0, 40, 0, "x").all()  # at most length // span spans: here one, all of it
    with pytest.raises(MimicError, match=r"audio_model.mask_time_length is 12 but SpecAugment masks 10 steps"):
        span_mask(2, 10, 0.5, 12, 2, "mask_time_length")


@pytest.mark.parametrize("kind", ORACLE)
def test_spec_augment_masks_in_training_only(kind):
    """Masked time steps take `masked_spec_embed`, masked channels are zero at every step; in eval
    the input passes unchanged."""
    x = torch.randn(2, 40, 32)
    times = SpeechEncoder({**DEFAULTS[kind], **TINY, "mask_time_prob": 0.5, "mask_time_length": 2})
    with torch.no_grad():
        assert torch.equal(times.eval().spec_augment(x), x)
        masked = times.train().spec_augment(x)
    changed = (masked != x).any(dim=-1)  # (B, L)
    assert changed.any() and not changed.all()
    assert torch.equal(masked[changed], times.masked_spec_embed.detach().expand(int(changed.sum()), -1))
    assert torch.equal(masked[~changed], x[~changed])

    channels = SpeechEncoder({**DEFAULTS[kind], **TINY, "mask_time_prob": 0.0, "mask_feature_prob": 0.5,
                              "mask_feature_length": 4})
    with torch.no_grad():
        masked = channels.train().spec_augment(x)
    zeroed = (masked == 0).all(dim=1)  # (B, W)
    assert zeroed.any() and not zeroed.all()
    assert torch.equal(masked.transpose(1, 2)[~zeroed], x.transpose(1, 2)[~zeroed])


@pytest.mark.parametrize("kind", ORACLE)
def test_a_seeded_training_forward_repeats(kind):
    """SpecAugment, layerdrop and dropout draw from torch's generator: the same seed, the same output."""
    backbone = SpeechEncoder({**DEFAULTS[kind], **TINY, "mask_time_prob": 0.3, "mask_time_length": 2,
                              "mask_feature_prob": 0.2, "mask_feature_length": 4, "layerdrop": 0.5}).train()
    audio = speech(1.0, 2)
    torch.manual_seed(7)
    first = backbone(audio)
    torch.manual_seed(7)
    again = backbone(audio)
    assert torch.equal(first, again)
    assert not torch.equal(first, backbone(audio))


def test_freezing_the_feature_encoder_keeps_it_out_of_autograd(tiny_config, tiny_hubert):
    """freeze_feature_encoder stops its parameters' gradients and, in training, the building of an
    autograd graph for the audio; the transformer still learns."""
    for geometry in (None, tiny_hubert):
        encoder = AudioEncoder(tiny_config("hdtf", **({"audio_model": geometry} if geometry else {}))).train()
        extractor = encoder.backbone.feature_extractor
        assert extractor(torch.randn(1, 3200)).requires_grad  # before: a graph through the convolutions
        encoder.freeze_feature_encoder()
        assert not any(p.requires_grad for p in extractor.parameters())
        assert not extractor(torch.randn(1, 3200)).requires_grad
        assert all(p.requires_grad for p in encoder.backbone.encoder.parameters())
