"""Model motion -> character vertex offsets, through a fit.

A model offset field d (V, 3) (model space, metres) becomes, at bound character vertex b,

    offset_b = weight_b * A @ sum_k barycentric_bk * d[triangle_bk corner k]

with A = scale * rotation (world space) or inverse(character_matrix[:3, :3]) @ scale * rotation
(the object's own space, what its shape keys store). The map is linear, so a compact result
(mean + K basis shapes + weights) stays compact: mean and basis are carried, the weights are
the same. The normal offset is not re-rotated as the surface turns (that would not be linear);
it is small on the face, where the fit is close.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ..errors import MimicError
from ..protocol import SPACES
from .fit import Fit


def interpolation(fit: Fit, weighted: bool = True) -> sparse.csr_matrix:
    """(B, V) sparse: row b holds the barycentric coordinates of bound vertex b on its triangle's
    three model vertices (times its weight)."""
    rows = np.repeat(np.arange(len(fit.vertices)), 3)
    cols = fit.model_faces[fit.triangles].ravel()
    values = fit.barycentric.astype(np.float64) * (fit.weight[:, None] if weighted else 1.0)
    return sparse.csr_matrix((values.ravel(), (rows, cols)), shape=(len(fit.vertices), fit.model_vertex_count))


def linear_part(fit: Fit, space: str) -> np.ndarray:
    """(3, 3) model offsets -> offsets in `space`."""
    if space not in SPACES:
        raise MimicError(f"space must be one of {', '.join(SPACES)}; got {space!r}")
    world = fit.scale * np.asarray(fit.rotation, np.float64)
    return world if space == "world" else np.linalg.solve(fit.character_matrix[:3, :3], world)


def _fields(fit: Fit, fields: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(fields)
    if not np.issubdtype(array.dtype, np.number) or array.ndim < 2 or array.shape[-1] != 3 \
            or array.shape[-2] != fit.model_vertex_count:
        raise MimicError(f"{what} must be (..., {fit.model_vertex_count}, 3) offsets of the fitted model; "
                         f"got shape {array.shape}")
    if not np.isfinite(array).all():
        raise MimicError(f"{what} contains NaN or infinite values")
    return array


CHUNK = 256  # frames carried at a time


def transfer(fit: Fit, fields: np.ndarray, space: str = "local", what: str = "the motion",
             out: np.ndarray | None = None, bound_only: bool = False) -> np.ndarray:
    """Offset fields (..., V, 3) in model space -> (..., N, 3) float32 character offsets (zero
    where the fit binds nothing), or (..., B, 3) at the bound vertices only. `out` (e.g. a
    memory-mapped .npy) receives them when given."""
    array = _fields(fit, fields, what)
    lead = array.shape[:-2]
    flat = array.reshape((-1,) + array.shape[-2:])
    count = len(fit.vertices) if bound_only else fit.character_vertex_count
    if out is None:
        out = np.zeros(lead + (count, 3), np.float32)
    target = out.reshape((-1, count, 3))
    P, A = interpolation(fit), linear_part(fit, space)
    for start in range(0, len(flat), CHUNK):
        chunk = flat[start:start + CHUNK].astype(np.float64)              # (C, V, 3)
        moved = (P @ chunk.transpose(1, 0, 2).reshape(chunk.shape[1], -1))  # (B, C * 3)
        moved = moved.reshape(len(fit.vertices), len(chunk), 3).transpose(1, 0, 2) @ A.T
        if bound_only:
            target[start:start + len(chunk)] = moved
        else:
            target[start:start + len(chunk)] = 0.0
            target[start:start + len(chunk), fit.vertices] = moved
    return out


def transfer_compact(fit: Fit, mean: np.ndarray, basis: np.ndarray,
                     space: str = "local") -> tuple[np.ndarray, np.ndarray]:
    """A compact result's mean (V, 3) and basis (K, V, 3) -> the character's mean (N, 3) and
    basis (K, N, 3); frame t is then mean + sum_k weights[t, k] * basis[k], with the model's
    weights (F, K) unchanged."""
    basis = np.asarray(basis)
    if basis.ndim != 3:
        raise MimicError(f"the basis must be (K, {fit.model_vertex_count}, 3); got shape {basis.shape}")
    return transfer(fit, mean, space, "the mean"), transfer(fit, basis, space, "the basis")
