"""Per-frame weights of a character's own shape keys that reproduce the transferred motion.

For keys K_s (their offsets on the face's bound vertices, world space) and the transferred
motion m_t, the weights w (F, S) minimise

    sum_t || sum_s w_ts K_s - m_t ||^2_W  +  smoothness * sum_t sum_s ||K_s||^2_W (w_ts - w_{t-1},s)^2,
    lo_s <= w_ts <= hi_s,

where ||.||_W weighs each vertex by its fit weight (the face counts, the falloff less). The
penalty is on how far each key's shape jumps between frames, so `smoothness` is unitless: at 1,
a key jumping by its full weight costs as much as missing its whole shape once.

Only S x S numbers per frame matter: G = K^T W K and b_t = K^T W m_t (for a compact result b_t
is affine in its K weights, so no frame is ever built). In the keys' own scale (x_s = ||K_s|| w_s,
so G gets a unit diagonal and the penalty becomes smoothness * |x_t - x_{t-1}|^2) the bounded,
smoothed least squares is solved by ADMM (the splitting OSQP uses: an unconstrained step, a clip
to the bounds, a dual update; over-relaxed, with the step size rebalanced on the residuals). Its
unconstrained step is exact and cheap: in G's eigenvectors the system separates into S
tridiagonal systems over time, factored by scipy.linalg.cholesky_banded (again when the step
size changes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_solve_banded, cholesky_banded

from ..errors import MimicError
from .fit import Fit
from .transfer import CHUNK, transfer

SMOOTHNESS = 0.01
RESIDUAL_WARNING = 0.25      # relative residual above which the keys cannot express the motion
TOLERANCE = 1e-4             # weight units: primal and dual residuals (RMS) at convergence
MAX_ITERATIONS = 500
RELAXATION = 1.6
ACTIVE = 0.01                # of a key's range: "used" in a frame above this


@dataclass
class SolveReport:
    relative_residual: float     # sqrt(sum_t residual_t^2 / sum_t |m_t|^2) on the face
    worst_frame_residual: float  # the largest per-frame relative residual (frames that move)
    mean: np.ndarray             # (S,) per key: mean weight
    peak: np.ndarray             # (S,) largest weight
    active: np.ndarray           # (S,) share of frames where the key is used
    still: list[int]             # keys that do not move the face
    iterations: int
    converged: bool
    smoothness: float

    @property
    def warning(self) -> str | None:
        notes = []
        if self.relative_residual > RESIDUAL_WARNING:
            notes.append(f"the chosen shape keys reproduce the face's motion only roughly (relative residual "
                         f"{self.relative_residual:.2f}): add keys that move the lips and jaw, or use dense mode")
        if self.still:
            notes.append(f"{len(self.still)} keys do not move the face and stay at their lower bound")
        return "; ".join(notes) or None

    def to_dict(self, names=None) -> dict:
        names = list(names) if names is not None else [str(i) for i in range(len(self.mean))]
        return {"relative_residual": self.relative_residual, "worst_frame_residual": self.worst_frame_residual,
                "iterations": self.iterations, "converged": self.converged, "smoothness": self.smoothness,
                "warning": self.warning,
                "keys": [{"name": n, "mean": float(a), "max": float(b), "active": float(c)}
                         for n, a, b, c in zip(names, self.mean, self.peak, self.active)]}


def key_matrix(fit: Fit, keys: np.ndarray) -> np.ndarray:
    """Shape-key offsets (S, N, 3) in the character's own space -> (S, B*3) world offsets at
    the bound vertices."""
    keys = np.asarray(keys)
    if not np.issubdtype(keys.dtype, np.number) or keys.ndim != 3 or keys.shape[1:] != (fit.character_vertex_count, 3):
        raise MimicError(f"key offsets must be (S, {fit.character_vertex_count}, 3) (shape key minus basis, in the "
                         f"object's own space); got shape {keys.shape}")
    if len(keys) == 0:
        raise MimicError("choose at least one shape key")
    if not np.isfinite(keys).all():
        raise MimicError("key offsets contain NaN or infinite values")
    world = keys[:, fit.vertices].astype(np.float64) @ fit.character_matrix[:3, :3].T
    return world.reshape(len(keys), -1)


def _bounds(bounds, count: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        b = np.asarray(bounds, np.float64)
    except (TypeError, ValueError):
        b = np.zeros(0)
    if b.shape == (2,):
        b = np.tile(b, (count, 1))
    if b.shape != (count, 2) or not np.isfinite(b).all() or np.any(b[:, 0] >= b[:, 1]):
        raise MimicError(f"bounds must be [low, high] or one [low, high] per key ({count}), low < high")
    return b[:, 0], b[:, 1]


def solve_shape_keys(fit: Fit, keys: np.ndarray, motion: np.ndarray | None = None,
                     compact: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, bounds=(0.0, 1.0),
                     smoothness: float = SMOOTHNESS) -> tuple[np.ndarray, SolveReport]:
    """Weights (F, S) float32 of `keys` (S, N, 3) for model motion: `motion` (F, V, 3) offsets,
    or `compact` = (mean (V, 3), basis (K, V, 3), weights (F, K)), both in model space."""
    if (motion is None) == (compact is None):
        raise MimicError("give the motion either as frames or as a compact result (mean, basis, weights)")
    if not (np.isfinite(smoothness) and smoothness >= 0):
        raise MimicError(f"smoothness must be a number >= 0; got {smoothness}")
    A = key_matrix(fit, keys)                                  # (S, M) with M = 3B
    lo, hi = _bounds(bounds, len(A))
    omega = np.repeat(fit.weight.astype(np.float64), 3)        # (M,)
    WA = A * omega                                             # (S, M)
    G = WA @ A.T
    if compact is not None:
        b, energy = _compact_terms(fit, WA, omega, *compact)
    else:
        b, energy = _motion_terms(fit, WA, omega, motion)
    still = [int(s) for s in np.flatnonzero(np.diag(G) <= 1e-12 * max(np.diag(G).max(), 1e-300))]
    w, iterations, converged = admm(G, b, smoothness, lo, hi)
    residual = np.maximum(np.einsum("ts,sr,tr->t", w, G, w) - 2 * np.einsum("ts,ts->t", w, b) + energy, 0.0)
    moving = energy > 1e-12 * max(energy.max(), 1e-300)
    span = hi - lo
    report = SolveReport(
        relative_residual=float(np.sqrt(residual.sum() / energy.sum())) if energy.sum() > 0 else 0.0,
        worst_frame_residual=float(np.sqrt(residual[moving] / energy[moving]).max()) if moving.any() else 0.0,
        mean=w.mean(axis=0), peak=w.max(axis=0), active=((w - lo) > ACTIVE * span).mean(axis=0),
        still=still, iterations=iterations, converged=converged, smoothness=float(smoothness))
    return w.astype(np.float32), report


def _compact_terms(fit: Fit, WA, omega, mean, basis, weights):
    """b (F, S) and |m_t|^2 (F,) of a compact result, without building its frames."""
    weights = np.asarray(weights, np.float64)
    basis = np.asarray(basis)
    if weights.ndim != 2 or basis.ndim != 3 or weights.shape[1] != len(basis):
        raise MimicError(f"a compact result needs weights (F, K) and basis (K, V, 3) with the same K; got "
                         f"{weights.shape} and {basis.shape}")
    if not np.isfinite(weights).all():
        raise MimicError("the compact result's weights contain NaN or infinite values")
    shapes = transfer(fit, np.concatenate([np.asarray(mean)[None], basis]), "world", "the compact result",
                      bound_only=True).reshape(len(basis) + 1, -1).astype(np.float64)   # (1+K, M)
    proj = shapes @ WA.T                                       # (1+K, S)
    gram = (shapes * omega) @ shapes.T                         # (1+K, 1+K)
    c = np.hstack([np.ones((len(weights), 1)), weights])       # (F, 1+K)
    return c @ proj, np.einsum("tk,kl,tl->t", c, gram, c)


def _motion_terms(fit: Fit, WA, omega, motion):
    motion = np.asarray(motion)
    if motion.ndim != 3:
        raise MimicError(f"the motion must be (frames, {fit.model_vertex_count}, 3); got shape {motion.shape}")
    b = np.empty((len(motion), len(WA)))
    energy = np.empty(len(motion))
    for start in range(0, len(motion), CHUNK):
        m = transfer(fit, motion[start:start + CHUNK], "world", bound_only=True).reshape(-1, WA.shape[1])
        b[start:start + len(m)] = m @ WA.T
        energy[start:start + len(m)] = (m * m * omega).sum(axis=1)
    return b, energy


def admm(G: np.ndarray, b: np.ndarray, smoothness: float, lo: np.ndarray, hi: np.ndarray,
         tolerance: float = TOLERANCE, max_iterations: int = MAX_ITERATIONS) -> tuple[np.ndarray, int, bool]:
    """argmin_w sum_t (w_t^T G w_t / 2 - b_t^T w_t + smoothness/2 sum_s G_ss (w_ts - w_t-1,s)^2) in the box."""
    frames, count = b.shape
    norm = np.sqrt(np.diag(G))
    norm = np.maximum(norm, 1e-6 * max(norm.max(), 1e-300))   # keys that do not move: kept finite
    ev, U = np.linalg.eigh(G / np.outer(norm, norm))         # unit diagonal
    ev = np.maximum(ev, 1e-9 * ev.max())                     # keys that add nothing: a tiny ridge
    rhs0, low, high = b / norm, lo * norm, hi * norm
    degree = np.full(frames, 2.0)
    degree[[0, -1]] = 1.0
    if frames == 1:
        degree[:] = 0.0
    couple = np.full((count, frames), -smoothness)
    couple[:, 0] = 0.0                                        # no coupling across keys' blocks

    def factor(rho):
        diagonal = ev[:, None] + rho + smoothness * degree[None]
        return cholesky_banded(np.stack([couple.ravel(), diagonal.ravel()]))

    def step(c, rhs):                                         # (H + rho I)^-1 rhs, rhs (F, S)
        return cho_solve_banded((c, False), (rhs @ U).T.ravel()).reshape(count, frames).T @ U.T

    rho = 1.0                                                 # G's mean eigenvalue, in this scale
    c = factor(rho)
    z = np.clip(step(factor(0.0), rhs0), low, high)           # the unconstrained optimum, clipped
    u = np.zeros_like(z)
    size = np.sqrt(z.size)
    for iteration in range(1, max_iterations + 1):
        x = step(c, rhs0 + rho * (z - u))
        relaxed = RELAXATION * x + (1 - RELAXATION) * z
        previous = z
        z = np.clip(relaxed + u, low, high)
        u += relaxed - z
        primal = np.linalg.norm((x - z) / norm) / size        # both in weight units
        dual = rho * np.linalg.norm((z - previous) / norm) / size
        if primal < tolerance and dual < tolerance:
            return z / norm, iteration, True
        if iteration % 10 == 0 and max(primal, dual) > 10 * min(primal, dual):  # rebalance the step
            change = 2.0 if primal > dual else 0.5
            rho *= change
            u /= change
            c = factor(rho)
    return z / norm, max_iterations, False
