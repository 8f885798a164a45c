"""The parts of transformers' wav2vec 2.0 and HuBERT models that `mimic.model.AudioEncoder` uses
beyond their public forward: the sub-modules `feature_extractor`, `feature_projection` and
`encoder`, SpecAugment's private `_mask_hidden_states` and the feature encoder's private
`_freeze_parameters`. backend/pyproject.toml pins the transformers range that has them; a
release that moves or changes them fails here."""

from __future__ import annotations

import pytest
import torch

from mimic.model import AUDIO_BACKBONES, AudioEncoder, fit_length


@pytest.fixture(params=sorted(AUDIO_BACKBONES))
def audio_geometry(request, tiny_wav2vec2, tiny_hubert) -> dict:
    return {"wav2vec2": tiny_wav2vec2, "hubert": tiny_hubert}[request.param]


def test_the_parts_give_the_backbones_own_forward(tiny_config, audio_geometry):
    """In eval, AudioEncoder's run of the backbone in parts equals the backbone's public forward
    (for the conv alignment, which aligns after the transformer)."""
    encoder = AudioEncoder(tiny_config("hdtf", audio_model=audio_geometry)).eval()
    audio = torch.randn(2, 30 * 640)
    with torch.no_grad():
        ours = encoder(audio, 30)
        hidden = encoder.backbone(audio).last_hidden_state  # (B, L, W)
        public = encoder.out_proj(fit_length(encoder.downsample(hidden.transpose(1, 2)).transpose(1, 2), 30))
    assert ours.shape == (2, 30, encoder.out_proj.out_features)
    assert torch.allclose(ours, public, atol=1e-6)


def test_spec_augment_masks_in_training_only(tiny_config, audio_geometry):
    """_mask_hidden_states(x) replaces whole time steps with the learnt mask vector in training,
    and returns x unchanged in eval."""
    encoder = AudioEncoder(tiny_config("hdtf", audio_model={**audio_geometry, "mask_time_prob": 0.5,
                                                            "mask_time_length": 2}))
    backbone = encoder.backbone
    x = torch.randn(2, 40, backbone.config.hidden_size)
    with torch.no_grad():
        masked = backbone.train()._mask_hidden_states(x.clone())
        assert torch.equal(backbone.eval()._mask_hidden_states(x.clone()), x)
    changed = (masked != x).any(dim=-1)  # (B, L): the masked time steps
    assert changed.any() and not changed.all()
    assert torch.equal(masked[changed], backbone.masked_spec_embed.detach().expand(int(changed.sum()), -1))


def test_freezing_the_feature_encoder_keeps_it_out_of_autograd(tiny_config, audio_geometry):
    """freeze_feature_encoder (the feature encoder's _freeze_parameters) stops its parameters'
    gradients and, in training, its building of an autograd graph for the audio."""
    encoder = AudioEncoder(tiny_config("hdtf", audio_model=audio_geometry)).train()
    extractor = encoder.backbone.feature_extractor
    assert extractor(torch.randn(1, 3200)).requires_grad  # before: a graph through the convolutions
    encoder.freeze_feature_encoder()
    assert not any(p.requires_grad for p in extractor.parameters())
    assert not extractor(torch.randn(1, 3200)).requires_grad
    assert all(p.requires_grad for p in encoder.backbone.encoder.parameters())
