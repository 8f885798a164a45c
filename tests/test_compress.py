"""The compact result: mean + K basis shapes + K weight tracks, K the smallest within the bound.

Frames are built the way the decoder builds them (motion = W h + b) from latents with a decaying
spectrum; every check is made against the original frames in 3-D, in float64."""

from __future__ import annotations

import numpy as np
import pytest

from mimic.compress import Subspace

V, C, T = 40, 16, 300  # vertices, latent width, frames


def make(seed: int = 0, frames: int = T):
    """(subspace, motion (T, V, 3) float32): random W (3V x C), b, latents with scales 2^-i."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(3 * V, C)).astype(np.float32) / np.sqrt(C)
    bias = rng.normal(size=3 * V).astype(np.float32)
    latents = rng.normal(size=(frames, C)) * 2.0 ** -np.arange(C) + rng.normal(size=C)
    motion = (latents @ weight.T.astype(np.float64) + bias).astype(np.float32).reshape(frames, V, 3)
    return Subspace(weight, bias), motion


def vertex_errors(approx: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """Per-vertex distances (T, V), in float64."""
    return np.linalg.norm(approx.astype(np.float64) - motion.astype(np.float64), axis=-1)


def rank_k_error(motion: np.ndarray, k: int) -> float:
    """Largest per-vertex error of the best k-component (PCA) approximation, computed independently."""
    flat = motion.reshape(len(motion), -1).astype(np.float64)
    centred = flat - flat.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    approx = flat.mean(axis=0) + (u[:, :k] * s[:k]) @ vt[:k]
    return float(vertex_errors(approx.reshape(motion.shape), motion).max())


def compress(subspace: Subspace, motion: np.ndarray, bound: float):
    return subspace.compress(subspace.coordinates(motion), bound)


@pytest.mark.parametrize("bound", [1e-1, 1e-2, 1e-3])
def test_within_bound_exact_error_and_minimal(bound):
    subspace, motion = make()
    c = compress(subspace, motion, bound)
    k = len(c.basis)
    assert c.mean.shape == (V, 3) and c.basis.shape == (k, V, 3) and c.weights.shape == (T, k)
    assert 0 < k < C  # the bound is neither trivial nor beyond reach for this spectrum

    errors = vertex_errors(c.frames(), motion)
    assert errors.max() <= bound * (1 + 1e-4)  # every vertex of every frame
    assert c.max_error == pytest.approx(errors.max(), rel=1e-3, abs=1e-6)  # the reported error is the true one
    assert rank_k_error(motion, k - 1) > bound  # one component fewer breaks the bound


def test_tighter_bound_needs_at_least_as_many_shapes():
    subspace, motion = make(seed=1)
    ks = [len(compress(subspace, motion, bound).basis) for bound in (3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3)]
    assert ks == sorted(ks)
    assert ks[-1] > ks[0]


def test_basis_is_orthonormal_in_vertex_space():
    """The shapes are principal directions: weights are their projections, no redundancy."""
    subspace, motion = make(seed=2)
    c = compress(subspace, motion, 1e-3)
    gram = np.einsum("kvc,jvc->kj", c.basis.astype(np.float64), c.basis.astype(np.float64))
    np.testing.assert_allclose(gram, np.eye(len(c.basis)), atol=1e-5)
    np.testing.assert_allclose(c.mean, motion.mean(axis=0), atol=1e-5)


def test_constant_sequence_needs_no_shapes():
    subspace, motion = make(seed=3)
    still = np.repeat(motion[:1], 50, axis=0)
    c = compress(subspace, still, 1e-4)
    assert c.basis.shape == (0, V, 3) and c.weights.shape == (50, 0)
    assert vertex_errors(c.frames(), still).max() <= 1e-5
    assert c.max_error <= 1e-5


@pytest.mark.parametrize("bound", [0.0, -1e-3, float("nan")])
def test_bound_must_be_positive(bound):
    subspace, motion = make(frames=20)
    with pytest.raises(ValueError, match="positive"):
        compress(subspace, motion, bound)
