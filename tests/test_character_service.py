"""The character requests through a real `mimic serve` (the add-on's client starts it): geometry
only, so no checkpoint is loaded; arrays travel as .npy/.npz files in the session folder."""

from __future__ import annotations

import sys
from pathlib import Path

import character_scene as scene
import numpy as np
import pytest
from character_scene import MODEL, SOURCE

from mimic import protocol as p
from mimic.character import synthetic as S
from mimic.character.fit import Fit
from mimic.character.transfer import transfer
from mimic.synth.rig import Rig
from mimic_blender.core.client import Backend
from mimic_blender.core.errors import BackendError


@pytest.fixture(scope="module")
def backend():
    backend = Backend(sys.executable)
    backend.start()
    yield backend
    backend.stop()


@pytest.fixture(scope="module")
def files(backend):
    """The model head, the character, a motion and the character's ARKit keys, as .npy files."""
    character, _ = scene.imported()
    act, _ = S.speech_tracks(30.0)
    motion = Rig(MODEL).deform(act)
    fields = S.arkit_fields(Rig(SOURCE))
    arrays = {"model_vertices": MODEL.vertices, "model_faces": MODEL.faces,
              "character_vertices": character.vertices, "character_faces": character.faces,
              "motion": motion, "keys": character.local_offsets(np.stack(list(fields.values()))),
              "broken_faces": np.vstack([character.faces, [[*character.faces[0][:2], 9]]])}
    out = {}
    for name, array in arrays.items():
        out[name] = str(backend.workdir / f"{name}.npy")
        np.save(out[name], array)
    return out, character, motion, list(fields)


def mesh_fields(files, faces="character_faces"):
    return {n: files[n] for n in ("model_vertices", "model_faces", "character_vertices")} | \
        {"character_faces": files[faces]}


@pytest.fixture(scope="module")
def fitted(backend, files):
    paths, character, _, _ = files
    return backend.request(p.FIT_CHARACTER, timeout=300, **mesh_fields(paths),
                           character_matrix=character.matrix.tolist())


def test_fit_needs_no_model_and_writes_a_plain_npz(backend, fitted, files):
    assert backend.facts["model"] is None and backend.facts["protocol"] == p.VERSION
    assert Path(fitted["fit"]).parent == backend.workdir and fitted["fit"].endswith(".npz")
    fit = Fit.load(fitted["fit"])
    _, here = scene.imported()   # the same fit made in this process
    assert fit.quality() == pytest.approx(here.quality(), rel=1e-6)
    assert fitted["quality"] == pytest.approx(fit.quality())
    assert (set(fitted["landmarks"]) == set(map(str, fit.landmark_names))
            and fitted["bound_vertices"] == len(fit.vertices))
    assert np.allclose(fit.character_matrix, files[1].matrix)


def test_user_landmarks_travel_as_json(backend, fitted, files):
    paths, _, _, _ = files
    again = backend.request(p.FIT_CHARACTER, timeout=300, **mesh_fields(paths), landmarks=fitted["landmarks"])
    assert again["quality"]["surface_distance"] < 0.1
    assert again["landmarks"].keys() == fitted["landmarks"].keys()
    assert all(np.allclose(again["landmarks"][n], fitted["landmarks"][n]) for n in again["landmarks"])


def test_transfer_compact_and_dense(backend, fitted, files):
    paths, character, motion, _ = files
    fit = Fit.load(fitted["fit"])
    flat = motion.reshape(len(motion), -1).astype(np.float64)
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    np.save(backend.workdir / "mean.npy", mean.reshape(-1, 3).astype(np.float32))
    np.save(backend.workdir / "basis.npy", vt[:5].reshape(5, -1, 3).astype(np.float32))
    compact = backend.request(p.TRANSFER, timeout=120, fit=fitted["fit"], mean=str(backend.workdir / "mean.npy"),
                              basis=str(backend.workdir / "basis.npy"))
    assert compact["k"] == 5
    assert np.load(compact["basis"]).shape == (5, len(character.vertices), 3)
    assert np.allclose(np.load(compact["mean"]), transfer(fit, mean.reshape(-1, 3)), atol=1e-5)
    dense = backend.request(p.TRANSFER, timeout=120, fit=fitted["fit"], motion=paths["motion"], space="world")
    assert dense["frames"] == len(motion)
    assert np.allclose(np.load(dense["motion"]), transfer(fit, motion, space="world"), atol=1e-5)


def test_solve_shape_keys(backend, fitted, files):
    paths, _, _, names = files
    reply = backend.request(p.SOLVE_SHAPE_KEYS, timeout=120, fit=fitted["fit"], keys=paths["keys"],
                            motion=paths["motion"], bounds=[0.0, 1.0], smoothness=0.02, key_names=names)
    weights = np.load(reply["weights"])
    assert weights.shape == (reply["frames"], len(names)) and weights.min() >= 0.0 and weights.max() <= 1.0
    report = reply["report"]
    assert report["smoothness"] == 0.02 and [k["name"] for k in report["keys"]] == names
    assert report["relative_residual"] < 0.3 and report["converged"]
    assert max(k["max"] for k in report["keys"]) > 0.3   # the mouth moved


def test_bad_character_requests_answer_one_line_and_the_backend_stays_up(backend, fitted, files):
    paths, _, _, names = files
    cases = [
        (p.FIT_CHARACTER, mesh_fields(paths, "broken_faces"), p.BAD_INPUT, "non-manifold"),
        (p.FIT_CHARACTER, {**mesh_fields(paths), "landmarks": {"nose_tip": [0, 0, 0]}}, p.BAD_INPUT, "missing"),
        (p.FIT_CHARACTER, {**mesh_fields(paths), "character_matrix": [[1, 2], [3]]}, p.BAD_INPUT, "4 rows"),
        (p.FIT_CHARACTER, {k: v for k, v in mesh_fields(paths).items() if k != "model_faces"}, p.BAD_REQUEST,
         "model_faces"),
        (p.TRANSFER, {"fit": paths["motion"], "motion": paths["motion"]}, p.BAD_INPUT, "not a character fit|cannot"),
        (p.TRANSFER, {"fit": fitted["fit"], "motion": paths["motion"], "space": "camera"}, p.BAD_REQUEST, "space"),
        (p.TRANSFER, {"fit": fitted["fit"], "motion": paths["keys"]}, p.BAD_INPUT, "offsets of the fitted model"),
        (p.SOLVE_SHAPE_KEYS, {"fit": fitted["fit"], "keys": paths["keys"], "motion": paths["motion"],
                              "key_names": names[:2]}, p.BAD_INPUT, "key_names"),
        (p.SOLVE_SHAPE_KEYS, {"fit": fitted["fit"], "keys": paths["motion"], "motion": paths["motion"]},
         p.BAD_INPUT, "key offsets"),
    ]
    for kind, fields, code, message in cases:
        with pytest.raises(BackendError) as info:
            backend.request(kind, timeout=120, **fields)
        assert info.value.code == code, (kind, str(info.value))
        assert "\n" not in str(info.value)
        assert __import__("re").search(message, str(info.value)), str(info.value)
    assert not list(backend.workdir.glob(".*partial*"))   # nothing half-written
    hello = backend.request(p.HELLO, timeout=30, protocol=p.VERSION, workdir=str(backend.workdir))
    assert hello["protocol"] == p.VERSION
