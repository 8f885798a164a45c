"""A character of any topology, without bpy: fitting the model's head onto it and carrying a
result through the fit, as requests to the backend (the geometry needs scipy and trimesh, which
only the backend's environment has). Arrays cross as files in the session folder, the fit as the
bytes of its .npz, which the Blender layer keeps in the .blend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import session
from .backend_source import protocol as p
from .compute import check_cancelled, compute
from .errors import JobError
from .mapping import unit_tracks
from .settings import Inputs, Outputs, Settings

MODES = ("DENSE", "SHAPE_KEYS")
ARKIT = "ARKIT"  # the key set: every ARKit-named key the character has


@dataclass
class Mesh:
    """A mesh in world space: vertices (N, 3), triangles (T, 3), its object's world matrix (4, 4)."""
    vertices: np.ndarray
    triangles: np.ndarray
    matrix: np.ndarray


@dataclass
class CharacterInputs:
    name: str
    mode: str  # DENSE or SHAPE_KEYS
    fit: bytes  # the .npz of the fit (see fit())
    key_names: list[str] = field(default_factory=list)  # SHAPE_KEYS: the keys to solve for
    key_offsets: np.ndarray | None = None  # (S, N, 3) local offsets of those keys from the rest shape
    key_ranges: np.ndarray | None = None  # (S, 2) their slider ranges
    smoothness: float = 0.01  # the solve's penalty on frame-to-frame changes (see mimic.character.solve)


@dataclass
class KeyOutputs:
    """Weights for the character's own shape keys, at scene frames."""
    names: list[str]
    weights: np.ndarray  # (frames, S)
    report: dict  # the solve's quality (relative residual on the face, ...)


def _save(backend, name: str, array: np.ndarray) -> str:
    path = backend.workdir / f"{name}.npy"
    np.save(path, np.ascontiguousarray(array))
    return str(path)


def _fit_file(backend, fit: bytes) -> str:
    path = backend.workdir / "fit.npz"
    path.write_bytes(fit)
    return str(path)


def fit(settings: Settings, model: Mesh, character: Mesh, landmarks: dict[str, list[float]] | None,
        on_progress: Callable | None = None, cancelled: Callable[[], bool] | None = None) -> tuple[bytes, dict]:
    """Fit the model head (its rest shape in its own space: the space of its motion) onto the
    character (world space). Landmarks: {name: world point}, or None to find them. Returns the
    fit's bytes and its quality numbers (character units), with the landmarks it used.
    `on_progress(done, total, stage)` and `cancelled()` as for compute: a cancel is honoured while
    waiting for the backend; the fit itself, once sent, runs to its end and its result is dropped."""
    with session.use(settings, on_progress, cancelled, need_model=False) as backend:
        if on_progress is not None:
            on_progress(0, 0, p.FIT_CHARACTER)
        files = {name: _save(backend, name, array) for name, array in (
            ("model_vertices", model.vertices), ("model_faces", model.triangles),
            ("character_vertices", character.vertices), ("character_faces", character.triangles))}
        result = backend.request(p.FIT_CHARACTER, cancelled=cancelled, landmarks=landmarks,
                                 character_matrix=character.matrix.tolist(), **files)
    path = Path(result["fit"])
    try:
        return path.read_bytes(), {**result["quality"], "landmarks": result["landmarks"]}
    finally:
        path.unlink(missing_ok=True)


@dataclass
class Carried:
    """A result on the character, and the fit made for it (None when the character had one)."""
    outputs: Outputs | KeyOutputs
    fit: bytes | None = None
    quality: dict | None = None
    precision: str | None = None  # Outputs.precision of the model head's result (None: a retarget, no model ran)


def carry(inputs: Inputs, character: CharacterInputs, settings: Settings, pending: dict,
          on_progress: Callable | None = None, cancelled: Callable[[], bool] | None = None) -> Carried:
    """The model head's result (see compute.compute), carried onto the character: its own mean and
    basis with the same tracks (DENSE), or weights of its shape keys (SHAPE_KEYS). Without a fit
    (character.fit None), one is made first from `pending` (model, character, landmarks: see fit())."""
    if character.mode not in MODES:
        raise JobError(f"character mode must be one of {', '.join(MODES)}, not {character.mode!r}")
    made, quality = ensure_fit(character, settings, pending, on_progress)
    outputs = compute(inputs, settings, on_progress, cancelled)
    check_cancelled(cancelled)  # Esc'd: the backend is free at once
    return Carried(onto(outputs, character, settings), made, quality, outputs.precision)


def ensure_fit(character: CharacterInputs, settings: Settings, pending: dict,
               on_progress: Callable | None = None) -> tuple[bytes | None, dict | None]:
    """Fit the character from `pending` when it has no fit yet: (the new fit, its quality), else (None, None)."""
    if character.fit is not None:
        return None, None
    character.fit, quality = fit(settings, pending["model"], pending["character"], pending["landmarks"], on_progress)
    return character.fit, quality


def compact_motion(motion: np.ndarray, bound: float) -> Outputs:
    """An existing animation (F, V, 3) of offsets as a compact result: mean + the fewest principal
    shapes that keep every vertex of every frame within `bound`, weights scaled into [-1, 1]."""
    flat = motion.reshape(len(motion), -1).astype(np.float64)
    mean = flat.mean(axis=0)
    u, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    for k in range(len(s) + 1):
        rebuilt = mean + (u[:, :k] * s[:k]) @ vt[:k]
        error = float(np.linalg.norm((rebuilt - flat).reshape(len(flat), -1, 3), axis=-1).max())
        if error <= bound:
            break
    basis, tracks = unit_tracks(vt[:k].reshape(k, -1, 3), u[:, :k] * s[:k])
    return Outputs(mean.reshape(-1, 3).astype(np.float32), basis.astype(np.float32), tracks.astype(np.float32), error)


def onto(outputs: Outputs, character: CharacterInputs, settings: Settings) -> Outputs | KeyOutputs:
    """A compact result of the model head carried onto the character (geometry only: no model)."""
    with session.use(settings, need_model=False) as backend:
        return _onto(backend, outputs, character)


def _onto(backend, outputs: Outputs, character: CharacterInputs) -> Outputs | KeyOutputs:
    fit_path = _fit_file(backend, character.fit)
    files = [fit_path]
    try:
        mean, basis, tracks = (_save(backend, name, array) for name, array in (
            ("result_mean", outputs.mean), ("result_basis", outputs.basis), ("result_tracks", outputs.tracks)))
        files += [mean, basis, tracks]
        if character.mode == "DENSE":
            result = backend.request(p.TRANSFER, fit=fit_path, mean=mean, basis=basis, space="local")
            files += [result["mean"], result["basis"]]
            return Outputs(np.load(result["mean"]), np.load(result["basis"]), outputs.tracks, outputs.max_error,
                           outputs.style_code, outputs.precision)
        if not character.key_names:
            raise JobError(f"'{character.name}' has none of the chosen shape keys")
        keys = _save(backend, "key_offsets", character.key_offsets)
        files.append(keys)
        result = backend.request(p.SOLVE_SHAPE_KEYS, fit=fit_path, keys=keys, mean=mean, basis=basis, weights=tracks,
                                 bounds=np.asarray(character.key_ranges, float).tolist(),
                                 smoothness=character.smoothness, key_names=character.key_names)
        files.append(result["weights"])
        return KeyOutputs(list(character.key_names), np.load(result["weights"]), result["report"])
    finally:
        for file in files:
            Path(file).unlink(missing_ok=True)


def report_line(report: dict) -> str:
    """The solve's quality in one line, for the panel and the batch log (with its warning, if any)."""
    line = f"{len(report['keys'])} keys, relative residual on the face {report['relative_residual']:.1%}"
    return line + (f": {report['warning']}" if report.get("warning") else "")


def quality_line(quality: dict) -> str:
    """The fit's quality in the character's own units."""
    return (f"landmarks {quality['landmark_error']:.3g} off, surface {quality['surface_distance']:.3g} away, "
            f"{quality['face_vertices']} face vertices")
