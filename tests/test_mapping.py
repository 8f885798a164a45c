"""The add-on's scene arithmetic (mimic_blender/mapping.py), without Blender."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mimic_blender.core.mapping import audio_span, mix_styles, tracks_at_scene_frames, unit_factor, unit_tracks

ROOT = Path(__file__).resolve().parent.parent


def test_audio_span():
    assert audio_span(0, 1, 16000) == (0, 16000)
    assert audio_span(0.5, 2, 16000) == (8000, 40000)
    # The test shot: trimmed by 7 frames, 158 frames played, at 24 fps.
    assert audio_span(7 / 24, 158 / 24, 16000) == (4667, 4667 + 105333)
    # NTSC 23.976 fps: one frame is 667.33 samples, rounded.
    assert audio_span(1001 / 24000, 1001 / 24000, 16000) == (667, 1334)
    assert audio_span(3 / 25, 0, 16000) == (1920, 1920)
    # A 44.1 kHz sound: the same span in its own samples.
    assert audio_span(7 / 24, 158 / 24, 44100) == (12862, 12862 + 290325)


def test_tracks_at_scene_frames_resamples_linearly_and_holds_the_end():
    weights = np.stack([np.arange(50.0), -np.arange(50.0)], axis=1).astype(np.float32)  # (50, 2) at 25 fps
    tracks = tracks_at_scene_frames(weights, 25.0, 24.0, 60)
    assert tracks.shape == (60, 2)
    times = np.arange(60) / 24.0
    want = np.minimum(times * 25.0, 49.0)  # linear in time, the last frame held after the end
    np.testing.assert_allclose(tracks[:, 0], want, atol=1e-5)
    np.testing.assert_allclose(tracks[:, 1], -want, atol=1e-5)
    np.testing.assert_array_equal(tracks_at_scene_frames(weights, 25.0, 25.0, 50), weights)
    assert tracks_at_scene_frames(weights, 25.0, 24.0, 0).shape == (0, 2)


def test_unit_factor_auto_snaps_to_powers_of_ten():
    rng = np.random.default_rng(0)
    head = rng.normal(size=(500, 3))
    head *= 0.1 / np.sqrt(((head - head.mean(0)) ** 2).sum(1).mean())  # RMS radius 0.1 m
    assert unit_factor(head, "AUTO") == 1.0
    assert unit_factor(head * 1.6, "AUTO") == 1.0  # a bigger head is still in metres
    assert unit_factor(head * 0.5 + 3.0, "AUTO") == 1.0  # position does not matter
    assert unit_factor(head * 100, "AUTO") == 100.0
    assert unit_factor(head * 1000, "AUTO") == 1000.0
    assert unit_factor(np.ones((10, 3)), "AUTO") == 1.0  # degenerate: no size, no rescaling


def test_unit_factor_explicit_ignores_the_size():
    head = np.random.default_rng(0).normal(size=(100, 3)) * 0.1
    assert unit_factor(head, "METRES") == 1.0
    assert unit_factor(head, "CENTIMETRES") == 100.0
    assert unit_factor(head * 100, "MILLIMETRES") == 1000.0


def test_unit_tracks_keeps_weights_in_range_and_the_product():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(4, 30, 3)).astype(np.float32)
    weights = (rng.normal(size=(80, 4)) * [5.0, 0.2, 1.0, 0.0]).astype(np.float32)  # one silent track
    scaled_basis, tracks = unit_tracks(basis, weights)
    assert scaled_basis.shape == basis.shape and tracks.shape == weights.shape
    assert np.abs(tracks).max() <= 1.0
    np.testing.assert_allclose(np.abs(tracks).max(axis=0), [1.0, 1.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(scaled_basis[3], basis[3])  # a silent track leaves its shape alone
    np.testing.assert_allclose(np.einsum("fk,kvc->fvc", tracks, scaled_basis),
                               np.einsum("fk,kvc->fvc", weights, basis), rtol=1e-5, atol=1e-5)
    empty_basis, empty = unit_tracks(basis, np.zeros((0, 4), np.float32))
    assert empty.shape == (0, 4)
    np.testing.assert_array_equal(empty_basis, basis)


def test_mix_styles():
    a, b = [1.0, -2.0, 0.5], [3.0, 2.0, 0.5]
    assert mix_styles(a, b, 0.0) == a
    assert mix_styles(a, b, 1.0) == b
    assert mix_styles(a, b, 0.25) == pytest.approx([1.5, -1.0, 0.5])
    with pytest.raises(ValueError, match="different models"):
        mix_styles(a, b[:2], 0.5)
