"""The service's character requests (see protocol.py): plain functions of the message, a reader of
its .npy fields and a namer of result files in the session folder."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .. import protocol as p
from ..errors import MimicError
from .fit import Fit, fit_character
from .solve import solve
from .transfer import transfer, transfer_compact


def _fit(m: dict) -> Fit:
    return Fit.load(p.field(m, "fit", str))


def fit(m: dict, array: Callable, result: Callable) -> dict:
    landmarks = m.get("landmarks")
    if landmarks is not None and not isinstance(landmarks, dict):
        raise p.ProtocolError(p.BAD_REQUEST, "fit_character: 'landmarks' must be an object {name: [x, y, z]} or null")
    made = fit_character(array("model_vertices"), array("model_faces"), array("character_vertices"),
                         array("character_faces"), landmarks=landmarks, character_matrix=array("character_matrix"))
    out = result("fit", ".npz")
    made.save(out)
    return {"fit": out, "quality": made.quality(), "landmarks": made.character_landmarks()}


def carry(m: dict, array: Callable, result: Callable) -> dict:
    mean, basis = transfer_compact(_fit(m), array("mean"), array("basis"))
    files = {"mean": result("mean"), "basis": result("basis")}
    np.save(files["mean"], mean)
    np.save(files["basis"], basis)
    return files


def solve_keys(m: dict, array: Callable, result: Callable) -> dict:
    made = _fit(m)
    smoothness = p.field(m, "smoothness", (int, float))
    if not math.isfinite(smoothness) or smoothness < 0:
        raise MimicError(f"smoothness must be a finite number >= 0; got {smoothness}")
    mean, basis, tracks, keys = array("mean"), array("basis"), array("weights"), array("key_offsets")
    if keys.ndim != 3 or keys.shape[1:] != (made.character_vertex_count, 3):
        raise MimicError(f"key offsets must be (S, {made.character_vertex_count}, 3); got shape {keys.shape}")
    shapes = transfer(made, np.concatenate([np.asarray(mean)[None], basis]), bound_only=True)  # (1+K, B, 3)
    solution = solve(keys[:, made.vertices], shapes, tracks, made.weight, array("key_ranges"), float(smoothness))
    out = result("weights")
    np.save(out, solution.weights)
    return {"weights": out, "report": solution.report()}


HANDLERS = {p.FIT_CHARACTER: fit, p.TRANSFER: carry, p.SOLVE_SHAPE_KEYS: solve_keys}
