"""The decoder with cached keys/values against the official recomputing algorithm, on random
weights: same numbers for any length and both alignments, and it trains (gradients flow)."""

import pytest
import torch
import torch.nn as nn

from mimic.model import Decoder, alibi_slopes, periodic_positions

TOL = 1e-5


def random_decoder(config) -> Decoder:
    decoder = Decoder(config)
    nn.init.normal_(decoder.motion_out.weight, std=0.1)  # zero-initialised: would hide the feedback loop
    nn.init.normal_(decoder.motion_out.bias, std=0.1)
    return decoder.eval()


def inputs(config, batch: int, frames: int):
    features = torch.randn(batch, frames * config.features_per_frame, config.feature_dim)
    return features, torch.randn(batch, config.feature_dim), torch.randn(batch, config.motion_dim)


@pytest.mark.parametrize("preset, frames", [("hdtf", 1), ("hdtf", 45), ("hdtf", 150), ("biwi", 1), ("biwi", 45)])
def test_cached_equals_recompute(tiny_config, preset, frames):
    """45 frames cross the 30-frame period of the positions and of the attention bias."""
    config = tiny_config(preset)
    decoder = random_decoder(config)
    args = inputs(config, 2, frames)
    with torch.no_grad():
        cached = decoder(*args)
        official = decoder.forward_recompute(*args)
    assert cached.shape == official.shape == (2, frames, config.motion_dim)
    assert (cached - official).abs().max() <= TOL
    # the two sequences of the batch are decoded independently
    with torch.no_grad():
        alone = decoder(*(a[1:] for a in args))
    assert (alone[0] - cached[1]).abs().max() <= TOL
    if frames > 1:  # and the output is not trivially constant
        assert cached[:, 1:].sub(cached[:, :-1]).abs().max() > 1e-3


def test_frame_sees_only_its_own_features(tiny_config):
    """Aligned cross-attention and causal self-attention: changing the features of frame 40
    leaves frames 0..39 unchanged and changes frame 40."""
    config = tiny_config()
    decoder = random_decoder(config)
    features, style, init = inputs(config, 1, 45)
    changed = features.clone()
    changed[:, 40] += 1.0
    with torch.no_grad():
        a, b = decoder(features, style, init), decoder(changed, style, init)
    assert torch.equal(a[:, :40], b[:, :40])
    assert (a[:, 40] - b[:, 40]).abs().max() > 1e-4


def test_pair_alignment_uses_both_features(tiny_config):
    """BIWI: frame i attends to features 2i and 2i+1."""
    config = tiny_config("biwi")
    decoder = random_decoder(config)
    features, style, init = inputs(config, 1, 10)
    with torch.no_grad():
        base = decoder(features, style, init)
        for index in (6, 7):  # both features of frame 3
            changed = features.clone()
            changed[:, index] += 1.0
            out = decoder(changed, style, init)
            assert torch.equal(out[:, :3], base[:, :3])
            assert (out[:, 3] - base[:, 3]).abs().max() > 1e-4


def test_gradients_flow(tiny_config):
    config = tiny_config()
    decoder = random_decoder(config).train()
    features, style, init = inputs(config, 2, 45)
    features.requires_grad_(True)
    style.requires_grad_(True)
    decoder(features, style, init).pow(2).mean().backward()
    for name in ("motion_in.weight", "motion_out.weight", "self_attn.in_proj.weight", "cross_attn.in_proj.weight",
                 "ff1.weight", "norm1.affine.weight", "norm3.affine.bias"):
        grad = decoder.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert features.grad.abs().sum() > 0 and style.grad.abs().sum() > 0


def test_gradients_equal_recompute(tiny_config):
    """In eval mode the cached decoder's gradients are the official algorithm's."""
    config = tiny_config()
    decoder = random_decoder(config)
    features, style, init = inputs(config, 2, 40)
    target = torch.randn(2, 40, config.motion_dim)

    def grads(forward):
        decoder.zero_grad()
        (forward(features, style, init) - target).pow(2).mean().backward()
        return {n: p.grad.clone() for n, p in decoder.named_parameters()}

    cached, official = grads(decoder.forward), grads(decoder.forward_recompute)
    for name in official:
        scale = official[name].abs().max().clamp_min(1e-3)
        assert ((cached[name] - official[name]).abs().max() / scale) <= 1e-4, name


def test_alibi_slopes():
    assert alibi_slopes(4) == [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]
    assert alibi_slopes(8)[:2] == [2 ** -1, 2 ** -2] and len(alibi_slopes(6)) == 6


def test_periodic_positions():
    pe = periodic_positions(torch.arange(65), 32, 30)
    assert torch.equal(pe[0], pe[30]) and torch.equal(pe[5], pe[35]) and torch.equal(pe[4], pe[64])
    assert torch.equal(pe[0, 0::2], torch.zeros(16)) and torch.equal(pe[0, 1::2], torch.ones(16))
