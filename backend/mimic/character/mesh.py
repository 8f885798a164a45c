"""Meshes from the user: checked once, with one clear message per problem, then kept as trimesh
objects that never reorder or merge vertices (results are per vertex of the user's mesh)."""

from __future__ import annotations

import numpy as np
import trimesh

from ..errors import MimicError

MIN_VERTICES = 200  # fewer cannot carry a face (the synthetic head's smallest size)


def check_mesh(vertices, faces, what: str, min_vertices: int = MIN_VERTICES) -> trimesh.Trimesh:
    """(N, 3) vertices and (T, 3) triangles -> a Trimesh with the same vertex order.

    Refused: non-numeric or non-finite values, wrong shapes, indices out of range, fewer than
    `min_vertices` vertices, a mesh without size, and edges shared by more than two triangles
    (non-manifold: "inside" and "outside" are undefined there)."""
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if not np.issubdtype(v.dtype, np.number) or v.ndim != 2 or v.shape[1] != 3:
        raise MimicError(f"{what}: vertices must be a numeric (N, 3) array; got shape {v.shape}, {v.dtype}")
    if not np.issubdtype(f.dtype, np.integer) or f.ndim != 2 or f.shape[1] != 3:
        raise MimicError(f"{what}: faces must be an integer (T, 3) array of triangles; got shape {f.shape}, "
                         f"{f.dtype} (triangulate quads and n-gons first)")
    v = v.astype(np.float64)
    if not np.isfinite(v).all():
        raise MimicError(f"{what}: vertices contain NaN or infinite values")
    if len(v) < min_vertices or len(f) < min_vertices:
        raise MimicError(f"{what} is too small to fit: {len(v)} vertices, {len(f)} triangles (a face needs at "
                         f"least {min_vertices} of each)")
    if f.min() < 0 or f.max() >= len(v):
        raise MimicError(f"{what}: a triangle uses vertex {int(f.max()) if f.max() >= len(v) else int(f.min())}, "
                         f"but the mesh has vertices 0..{len(v) - 1}")
    extent = np.ptp(v, axis=0)
    if not extent.max() > 0 or extent.max() <= 1e-9 * max(1.0, float(np.abs(v).max())):
        raise MimicError(f"{what} has no size: all its vertices are at one point")
    edges = np.sort(f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    shared = int(np.sum(counts > 2))
    if shared:
        raise MimicError(f"{what} is non-manifold: {shared} edges are shared by more than two triangles "
                         "(in Blender: Select > Select All by Trait > Non Manifold, then fix or separate them)")
    return trimesh.Trimesh(vertices=v, faces=f.astype(np.int64), process=False, validate=False)


def smoothstep(lo: float, hi: float, x) -> np.ndarray:
    """0 below lo, 1 above hi, a smooth (C1) ramp between."""
    t = np.clip((np.asarray(x, np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
