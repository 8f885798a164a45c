"""Weights of a character's own shape keys that reproduce a motion on its face.

For frames t, keys k with offsets K (S keys, on the B bound face vertices) and the motion m_t
(carried through the fit onto the same vertices), with the fit's face weights as W:

    minimise  sum_t |K w_t - m_t|_W^2  +  smoothness * n * sum_t |w_t - w_(t-1)|^2
    subject to  lo_k <= w_tk <= hi_k   (the keys' slider ranges, [0, 1] by default)

n = mean over keys of |K_k|_W^2 makes `smoothness` unit-free: 1 penalises a jump of a key's whole
weight between two frames as much as missing that key's whole shape for one frame. Solved by
ADMM (the bounds split off); its linear step is diagonal in a product basis, the eigenvectors of
K^T W K over keys times the DCT-II over time (which diagonalises the first-difference penalty with
free ends), so an iteration costs two (F, S) x (S, S) products and two DCTs. Everything is
computed through (S, S) and (S, 1 + K) Gram matrices: the motion enters as a compact result
(mean + basis x tracks), never frame by frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft

from ..errors import MimicError

ITERATIONS = 400
TOLERANCE = 1e-5  # of the weights' range: ADMM stops when primal and dual residuals are below it
EXPRESSIBLE = 0.25  # a relative residual above this: the keys cannot express the motion


@dataclass
class Solution:
    weights: np.ndarray  # (F, S) float32
    relative_residual: float  # |K w - m|_W / |m|_W over all frames
    iterations: int

    def report(self, names=None) -> dict:
        names = names if names is not None else [str(k) for k in range(self.weights.shape[1])]
        return {"relative_residual": self.relative_residual, "expressible": self.relative_residual <= EXPRESSIBLE,
                "iterations": self.iterations,
                "mean_weight": {name: float(v) for name, v in zip(names, self.weights.mean(axis=0))}}


def solve(keys: np.ndarray, shapes: np.ndarray, tracks: np.ndarray, face: np.ndarray, ranges: np.ndarray | None = None,
          smoothness: float = 0.1) -> Solution:
    """keys (S, B, 3) key offsets and shapes (1 + K, B, 3) = the motion's mean and basis, on the same
    B vertices; tracks (F, K): frame t's motion is shapes[0] + tracks[t] @ shapes[1:]; face (B,)
    the residual's weights; ranges (S, 2) lower and upper bounds (default [0, 1])."""
    keys, shapes = np.asarray(keys, np.float64), np.asarray(shapes, np.float64)
    tracks, face = np.asarray(tracks, np.float64), np.asarray(face, np.float64)
    S, F = len(keys), len(tracks)
    if keys.ndim != 3 or shapes.ndim != 3 or keys.shape[1:] != shapes.shape[1:] or keys.shape[2] != 3:
        raise MimicError(f"key offsets {keys.shape} and motion shapes {shapes.shape} must be (S, B, 3) and (1+K, B, 3)")
    if tracks.ndim != 2 or tracks.shape[1] != len(shapes) - 1 or face.shape != (keys.shape[1],):
        raise MimicError(f"tracks {tracks.shape} must be (F, {len(shapes) - 1}) and face weights ({keys.shape[1]},)")
    if not (np.isfinite(keys).all() and np.isfinite(shapes).all() and np.isfinite(tracks).all()):
        raise MimicError("the key offsets or the motion contain NaN or infinite values")
    if not smoothness >= 0:
        raise MimicError(f"smoothness must be 0 or more; got {smoothness}")
    lo, hi = (np.zeros(S), np.ones(S)) if ranges is None else np.asarray(ranges, np.float64).T
    if lo.shape != (S,) or not (lo <= hi).all():
        raise MimicError("each key's range must be (low, high) with low <= high")
    if S == 0 or F == 0:
        return Solution(np.zeros((F, S), np.float32), 0.0, 0)

    Kw = (keys * face[None, :, None]).reshape(S, -1)
    G = Kw @ keys.reshape(S, -1).T  # (S, S) K^T W K
    C = Kw @ shapes.reshape(len(shapes), -1).T  # (S, 1 + K) K^T W [mean, basis]
    M = (shapes * face[None, :, None]).reshape(len(shapes), -1) @ shapes.reshape(len(shapes), -1).T
    frames = np.column_stack([np.ones(F), tracks])  # (F, 1 + K)
    h = frames @ C.T  # (F, S): K^T W m_t
    scale = max(float(np.trace(G)) / S, 1e-30)
    gamma, Q = np.linalg.eigh(G)
    sigma = 2.0 - 2.0 * np.cos(np.pi * np.arange(F) / F)  # the path Laplacian's eigenvalues (DCT-II)
    rho = scale
    denom = 2.0 * gamma[None, :] + 2.0 * smoothness * scale * sigma[:, None] + rho  # (F, S)

    def linear_step(rhs):  # (2G (x) I + 2 lambda n L (x) I + rho I)^-1 rhs, rhs (F, S)
        return fft.idct(fft.dct(rhs @ Q, norm="ortho", axis=0) / denom, norm="ortho", axis=0) @ Q.T

    z = np.clip(np.linalg.lstsq(G + 1e-9 * scale * np.eye(S), h.T, rcond=None)[0].T, lo, hi)
    u = np.zeros_like(z)
    tolerance = TOLERANCE * max(float(np.max(hi - lo)), 1e-12) * np.sqrt(F * S)
    for iteration in range(1, ITERATIONS + 1):
        w = linear_step(2.0 * h + rho * (z - u))
        z_old, z = z, np.clip(w + u, lo, hi)
        u += w - z
        if np.linalg.norm(w - z) < tolerance and np.linalg.norm(z - z_old) < tolerance:
            break
    energy = np.einsum("fi,ij,fj->", frames, M, frames)  # sum_t |m_t|_W^2
    residual = np.einsum("fi,ij,fj->", z, G, z) - 2.0 * np.sum(h * z) + energy
    relative = float(np.sqrt(max(residual, 0.0) / energy)) if energy > 0 else 0.0
    return Solution(z.astype(np.float32), relative, iteration)
