"""A generated performance as mean + K basis shapes + K weight tracks, with K the smallest that
keeps every vertex of every frame within an error bound.

The decoder's output map is linear (motion = W h + b, W of rank <= C = 128), so every frame
lies in a known C-dimensional affine subspace: frames are kept as C coordinates in an
orthonormal basis Q of span(W) (T x C floats instead of T x 3V), principal components are found
there, and errors are measured per vertex in 3-D after mapping back through Q.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Compressed:
    mean: np.ndarray  # (V, 3) mean offset over frames
    basis: np.ndarray  # (K, V, 3) shapes
    weights: np.ndarray  # (T, K) weight tracks
    max_error: float  # largest per-vertex distance to the uncompressed frames

    def frames(self) -> np.ndarray:  # (T, V, 3)
        return self.mean + np.einsum("tk,kvc->tvc", self.weights, self.basis)


class Subspace:
    """Coordinates of motion frames in span(W) + b."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray):  # W (M, C), b (M,)
        self.q, _ = np.linalg.qr(weight.astype(np.float64))  # (M, C) orthonormal columns
        self.q = self.q.astype(np.float32)
        self.bias = bias.astype(np.float32)

    def coordinates(self, motion: np.ndarray) -> np.ndarray:  # (T, V, 3) -> (T, C)
        return (motion.reshape(len(motion), -1) - self.bias) @ self.q

    def compress(self, coords: np.ndarray, bound: float, chunk: int = 256,
                 check: Callable[[], None] | None = None) -> Compressed:
        """coords (T, C) -> the smallest K with max per-vertex error <= bound. check() is called
        between chunks of frames (a cancel raises there)."""
        if not bound > 0:
            raise ValueError(f"the error bound must be positive; got {bound}")
        z = coords.astype(np.float64)
        mean_z = z.mean(axis=0)
        u, s, vt = np.linalg.svd(z - mean_z, full_matrices=False)  # (T, r), (r,), (r, C)
        scores = u * s  # (T, r)
        ranks = len(s)

        def max_error(k, stop_above=np.inf):
            r = (scores[:, k:] @ vt[k:]).astype(np.float32)  # (T, C) what k components miss
            order = np.argsort(-np.linalg.norm(r, axis=1))  # worst frames first: fail fast
            worst = 0.0
            for i in range(0, len(order), chunk):
                if check is not None:
                    check()
                rows = (r[order[i:i + chunk]] @ self.q.T).reshape(-1, 3)  # (chunk * V, 3)
                worst = max(worst, float(np.sqrt((rows ** 2).sum(axis=1).max())))
                if worst > stop_above:
                    break
            return worst

        # ||Q_v r|| <= ||r|| (Q has orthonormal columns), and ||r_t||^2 is the tail sum of
        # scores^2 (vt has orthonormal rows): a cheap k that surely passes bounds the search.
        tail = np.sqrt(np.cumsum((scores ** 2)[:, ::-1], axis=1)[:, ::-1].max(axis=0))  # (r,) at k = 0..r-1
        hi = next((k for k in range(ranks) if tail[k] <= bound), ranks)
        lo = 0
        while lo < hi:  # smallest k in [lo, hi] that passes; hi passes (or is full rank)
            mid = (lo + hi) // 2
            if max_error(mid, stop_above=bound) <= bound:
                hi = mid
            else:
                lo = mid + 1
        k = hi
        q = self.q.T.astype(np.float64)
        basis = (vt[:k] @ q).astype(np.float32)  # (K, M)
        mean = (mean_z @ q + self.bias).astype(np.float32)  # (M,)
        vertices = len(mean) // 3
        return Compressed(mean.reshape(vertices, 3), basis.reshape(k, vertices, 3),  # -1 fails when k = 0
                          scores[:, :k].astype(np.float32), max_error(k))
