"""Shape-key mode: per-frame weights of a character's own keys, and ARKit names. Keys are made
from the synthetic rig's fields (ARKit-named), motion from known controls, so the weights that
come back are known."""

from __future__ import annotations

import character_scene as scene
import numpy as np
import pytest
from character_scene import MODEL, SOURCE
from scipy import sparse
from scipy.optimize import lsq_linear

from mimic.character import synthetic as S
from mimic.character.solve import admm, solve_shape_keys
from mimic.character.transfer import transfer
from mimic.errors import MimicError
from mimic.synth.rig import TRACKS, Rig

LINEAR = ("open", "round", "spread", "brow", "blink")  # the rig's controls that add fixed fields


@pytest.fixture(scope="module")
def imported():
    return scene.imported()


@pytest.fixture(scope="module")
def arkit_keys(imported):
    """The character's own ARKit-named shape keys (its object space), made from the rig's fields
    on its own face."""
    character, _ = imported
    fields = S.arkit_fields(Rig(SOURCE))
    names = list(fields)
    return names, character.local_offsets(np.stack([fields[n] for n in names]))


def controls(frames: int, seed: int, jaw: bool) -> dict[str, np.ndarray]:
    """Smooth random activations in [0, 1] (jaw, if asked, and the linear controls; no closure)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in TRACKS:
        if name in LINEAR or (jaw and name == "jaw"):
            x = np.convolve(rng.normal(size=frames + 40), np.hanning(15), "same")[20:-20]
            out[name] = np.clip(0.5 + 0.35 * x / x.std(), 0.0, 1.0)
        else:
            out[name] = np.zeros(frames)
    return out


def test_known_controls_come_back_as_the_known_weights(imported, arkit_keys):
    _, fit = imported
    names, keys = arkit_keys
    act = controls(120, seed=0, jaw=False)
    motion = Rig(MODEL).deform(act)               # the model's motion, carried through the fit
    weights, report = solve_shape_keys(fit, keys, motion=motion)
    truth = S.arkit_weights(act, names)
    assert weights.shape == (120, len(names)) and weights.dtype == np.float32
    assert report.converged and report.relative_residual < 0.2 and report.warning is None
    assert np.abs(weights - truth).mean() < 0.05
    jawless = [n for n in names if n != "jawOpen"]
    assert np.abs(weights[:, names.index("jawOpen")]).max() < 0.05     # not used: the jaw did not move
    per_key = np.abs(weights - truth).mean(axis=0)
    assert all(per_key[names.index(n)] < 0.12 for n in jawless), dict(zip(names, per_key.round(3)))


def test_the_jaw_comes_back_too(imported, arkit_keys):
    """The jaw is a rotation (not a fixed field): its key is its pose at 1, the rest is nearly linear."""
    _, fit = imported
    names, keys = arkit_keys
    act = controls(120, seed=1, jaw=True)
    weights, report = solve_shape_keys(fit, keys, motion=Rig(MODEL).deform(act))
    error = np.abs(weights - S.arkit_weights(act, names))
    assert error[:, names.index("jawOpen")].mean() < 0.05
    assert error.mean() < 0.08 and report.relative_residual < 0.25


def test_motion_that_is_a_mix_of_the_keys_is_solved_exactly(imported):
    """Keys carried from model fields; motion a known mix of those fields: the transferred motion
    is exactly that mix of the keys, so the weights come back up to the smoothing."""
    _, fit = imported
    fields = np.stack(list(S.arkit_fields(Rig(MODEL)).values()) + S.bump_fields(MODEL, 8, seed=2))
    keys = transfer(fit, fields)
    rng = np.random.default_rng(3)
    truth = np.clip(np.cumsum(rng.normal(0, 0.08, (200, len(fields))), axis=0) % 2.0, 0, 1)
    truth = np.where(truth > 1, 2 - truth, truth)                     # a bounded random walk
    weights, report = solve_shape_keys(fit, keys, motion=np.einsum("ts,svc->tvc", truth, fields),
                                       smoothness=1e-4)
    assert np.abs(weights - truth).mean() < 0.01
    assert report.relative_residual < 0.02


def test_a_key_set_that_cannot_express_the_motion_is_reported(imported, arkit_keys):
    _, fit = imported
    names, keys = arkit_keys
    few = [names.index(n) for n in ("browInnerUp", "eyeBlinkLeft", "eyeBlinkRight")]
    act = controls(60, seed=4, jaw=True)
    _, report = solve_shape_keys(fit, keys[few], motion=Rig(MODEL).deform(act))
    assert report.relative_residual > 0.6 and report.worst_frame_residual >= report.relative_residual
    assert "reproduce the face's motion only roughly" in report.warning
    summary = report.to_dict([names[i] for i in few])
    assert summary["keys"][0]["name"] == "browInnerUp" and summary["warning"] == report.warning
    # a key that does not move the face at all is named as such, and stays at its bound
    still = np.concatenate([keys[few], np.zeros_like(keys[:1])])
    weights, report = solve_shape_keys(fit, still, motion=Rig(MODEL).deform(act))
    assert report.still == [3] and np.all(weights[:, 3] == 0.0) and "do not move the face" in report.warning


def test_compact_and_dense_motion_give_the_same_weights(imported, arkit_keys):
    _, fit = imported
    names, keys = arkit_keys
    motion = Rig(MODEL).deform(controls(90, seed=5, jaw=True)).astype(np.float64)
    flat = motion.reshape(len(motion), -1)
    mean = flat.mean(0)
    u, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    compact = (mean.reshape(-1, 3), vt.reshape(len(vt), -1, 3), u * s)
    dense, a = solve_shape_keys(fit, keys, motion=motion)
    packed, b = solve_shape_keys(fit, keys, compact=compact)
    assert np.abs(dense - packed).max() < 1e-3
    assert abs(a.relative_residual - b.relative_residual) < 1e-4


def test_bounds_per_key_are_kept(imported, arkit_keys):
    _, fit = imported
    names, keys = arkit_keys
    act = controls(60, seed=6, jaw=False)
    bounds = np.tile([0.0, 1.0], (len(names), 1))
    bounds[names.index("mouthFunnel")] = [0.0, 0.3]
    bounds[names.index("browInnerUp")] = [-1.0, -0.2]
    weights, _ = solve_shape_keys(fit, keys, motion=Rig(MODEL).deform(act), bounds=bounds)
    assert weights[:, names.index("mouthFunnel")].max() <= 0.3 + 1e-6
    assert np.isclose(weights[:, names.index("mouthFunnel")].max(), 0.3, atol=1e-3)  # pressed to its limit
    brow = weights[:, names.index("browInnerUp")]
    assert brow.min() >= -1.0 - 1e-6 and brow.max() <= -0.2 + 1e-6


def test_smoothness_penalty_smooths():
    """The documented penalty: more smoothness, less frame-to-frame change; none, plain bounded
    least squares per frame."""
    rng = np.random.default_rng(7)
    keys = rng.normal(size=(4, 300))
    G = keys @ keys.T
    truth = np.clip(0.5 + 0.3 * np.sin(np.arange(100)[:, None] / 7.0 + np.arange(4)), 0, 1)
    b = (truth + rng.normal(0, 0.1, truth.shape)) @ G                 # noisy targets
    change = []
    for smoothness in (0.0, 0.1, 1.0):
        w, _, converged = admm(G, b, smoothness, np.zeros(4), np.ones(4))
        assert converged
        change.append(np.abs(np.diff(w, axis=0)).mean())
    assert change[0] > change[1] > change[2]


def test_solver_matches_a_general_bounded_least_squares_solver():
    """The same problem stacked as one sparse system for scipy.optimize.lsq_linear: the data rows,
    then sqrt(smoothness) |K_s| (w_ts - w_t-1,s) for every key and frame."""
    rng = np.random.default_rng(8)
    frames, count = 40, 5
    A = rng.normal(size=(count, 60)) * rng.uniform(0.2, 3.0, (count, 1))
    m = rng.normal(size=(frames, 60)) * 0.8
    smoothness = 0.3
    lo, hi = np.full(count, -0.2), np.full(count, 0.6)
    w, _, converged = admm(A @ A.T, m @ A.T, smoothness, lo, hi, tolerance=1e-7)
    D = sparse.diags([-np.ones(frames - 1), np.ones(frames - 1)], [0, 1], shape=(frames - 1, frames))
    jumps = sparse.kron(D, sparse.diags(np.sqrt(smoothness) * np.linalg.norm(A, axis=1)))
    stacked = sparse.vstack([sparse.kron(sparse.identity(frames), A.T), jumps]).tocsr()
    target = np.concatenate([m.ravel(), np.zeros((frames - 1) * count)])
    reference = lsq_linear(stacked, target, bounds=(np.tile(lo, frames), np.tile(hi, frames)), tol=1e-12)
    assert converged and np.abs(w - reference.x.reshape(frames, count)).max() < 1e-4


def test_bad_solve_inputs(imported, arkit_keys):
    _, fit = imported
    _, keys = arkit_keys
    motion = Rig(MODEL).deform(controls(10, seed=9, jaw=False))
    cases = [
        (dict(keys=keys[:, :100], motion=motion), "key offsets must be"),
        (dict(keys=keys[:0], motion=motion), "at least one shape key"),
        (dict(keys=keys), "either as frames or as a compact result"),
        (dict(keys=keys, motion=motion, bounds=[1.0, 0.0]), "low < high"),
        (dict(keys=keys, motion=motion, bounds="wide"), "bounds must be"),
        (dict(keys=keys, motion=motion, smoothness=-1.0), "smoothness must be"),
        (dict(keys=keys, motion=motion[:, :50]), "offsets of the fitted model"),
        (dict(keys=keys, compact=(motion[0], motion[:3], np.zeros((10, 2)))), "the same K"),
    ]
    for arguments, message in cases:
        with pytest.raises(MimicError, match=message):
            solve_shape_keys(fit, **arguments)
