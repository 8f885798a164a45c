"""Scene arithmetic without bpy: audio and frame mapping, units, weight tracks, style mixing."""

from __future__ import annotations

import math

import numpy as np

from .backend_source import load

sample_weights = load("frames").sample_weights
resample_count = load("frames").resample_count

NOMINAL_HEAD_RADIUS = 0.1  # metres: RMS distance of a FLAME head's vertices from their centroid, roughly
UNITS = {"METRES": 1.0, "CENTIMETRES": 100.0, "MILLIMETRES": 1000.0}


def audio_span(trim_seconds: float, seconds: float, sample_rate: int) -> tuple[int, int]:
    """Samples [start, stop) of a sound that plays for `seconds` after skipping `trim_seconds` of its start."""
    start = int(round(trim_seconds * sample_rate))
    return start, start + int(round(seconds * sample_rate))


def tracks_at_scene_frames(weights: np.ndarray, model_fps: float, scene_fps: float, frames: int) -> np.ndarray:
    """(T, K) weights at the model's fps -> (frames, K) at scene frames 0, 1, ... (linear)."""
    i0, i1, w = sample_weights(len(weights), model_fps, np.arange(frames) / scene_fps)
    return (1 - w)[:, None] * weights[i0] + w[:, None] * weights[i1]


def unit_factor(rest: np.ndarray, units: str, head_radius: float = NOMINAL_HEAD_RADIUS) -> float:
    """Mesh units per model unit. AUTO compares the mesh's size with a head's and snaps to a
    power of ten (metres, centimetres, millimetres), so identity never rescales motion."""
    if units != "AUTO":
        return UNITS[units]
    radius = float(np.sqrt(((rest - rest.mean(axis=0)) ** 2).sum(axis=1).mean()))
    if not radius > 0:
        return 1.0
    return 10.0 ** round(math.log10(radius / head_radius))


def unit_tracks(basis: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rescale each (shape, track) pair so the track stays in [-1, 1] (shape-key sliders clamp)."""
    peak = np.abs(weights).max(axis=0) if len(weights) else np.zeros(basis.shape[0])
    peak = np.where(peak > 0, peak, 1.0).astype(np.float32)  # (K,)
    return basis * peak[:, None, None], weights / peak


def mix_styles(a: list[float], b: list[float], weight: float) -> list[float]:
    """(1 - weight) * a + weight * b."""
    if len(a) != len(b):
        raise ValueError(f"styles of different models cannot be mixed ({len(a)} vs {len(b)} numbers)")
    return [(1 - weight) * x + weight * y for x, y in zip(a, b)]
