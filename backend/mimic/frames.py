"""Frame-rate arithmetic on numpy only (shared with the Blender side, which has no torch)."""

from __future__ import annotations

import numpy as np


def sample_weights(n_in: int, fps_in: float, times: np.ndarray):
    """Linear interpolation of an n_in-frame sequence at fps_in, sampled at `times` (seconds).

    Returns (i0, i1, w): the value at each time is (1 - w) * x[i0] + w * x[i1]. Times outside
    the sequence hold its first or last frame.
    """
    assert n_in >= 1, "nothing to sample"
    position = np.clip(np.asarray(times, dtype=np.float64) * fps_in, 0.0, n_in - 1)
    i0 = np.floor(position).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (position - i0).astype(np.float32)


def resample_count(n_in: int, fps_in: float, fps_out: float) -> int:
    """Frames at fps_out covering the same duration as n_in frames at fps_in."""
    return max(1, int(round(n_in * fps_out / fps_in)))


def resample(frames: np.ndarray, fps_in: float, fps_out: float, out: np.ndarray | None = None,
             chunk: int = 512) -> np.ndarray:
    """Resample (T, ...) frames in time, chunk by chunk (frames and out may be memory maps)."""
    n_out = resample_count(len(frames), fps_in, fps_out)
    if out is None:
        out = np.empty((n_out,) + frames.shape[1:], dtype=frames.dtype)
    for k0 in range(0, n_out, chunk):
        k = np.arange(k0, min(k0 + chunk, n_out))
        i0, i1, w = sample_weights(len(frames), fps_in, k / fps_out)
        w = w.reshape((-1,) + (1,) * (frames.ndim - 1))
        out[k] = (1 - w) * frames[i0] + w * frames[i1]
    return out
