"""A character of any topology on the Blender side: its mesh and landmarks read into plain arrays,
its fit kept in the .blend (on the character object), the fit's preview, and the result written
onto it (its own K shape keys, or weights of its existing shape keys). The geometry itself is
core/character.py's, run by the backend."""

from __future__ import annotations

import base64
import io
import json

import bpy
import numpy as np

from . import scene_io
from .core import arkit
from .core.character import CharacterInputs, KeyOutputs, Mesh
from .core.errors import JobError

FIT = "mimic_fit"  # on the character object: the fit's .npz, base64
FIT_QUALITY = "mimic_fit_quality"  # JSON: the fit's quality numbers and the model head it was made with
LANDMARKS = "Mimic Landmarks"  # the collection of a character's landmark empties is named "<this>: <character>"
PREVIEW = "Mimic Fit"  # the preview object is named "<this>: <character>"


def triangles(obj) -> np.ndarray:
    mesh = obj.data
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    return tris.reshape(-1, 3)


def world_matrix(obj) -> np.ndarray:
    return np.array(obj.matrix_world, np.float64)


def model_mesh(obj) -> Mesh:
    """The model head in its own space (its local rest shape: the space of its motion)."""
    return Mesh(scene_io.rest_vertices(obj), triangles(obj), np.eye(4))


def character_mesh(obj) -> Mesh:
    """The character's rest shape in world space (its transform applied)."""
    matrix = world_matrix(obj)
    rest = scene_io.rest_vertices(obj).astype(np.float64)
    return Mesh(rest @ matrix[:3, :3].T + matrix[:3, 3], triangles(obj), matrix)


def landmark_collection(character):
    return bpy.data.collections.get(f"{LANDMARKS}: {character.name}")


def placed_landmarks(character) -> dict[str, list[float]] | None:
    """{name: world point} of the empties in the character's landmark collection, or None (find them)."""
    collection = landmark_collection(character)
    if collection is None:
        return None
    points = {obj["mimic_landmark"]: list(obj.matrix_world.translation) for obj in collection.objects
              if "mimic_landmark" in obj}
    return points or None


def place_landmarks(context, character, points: dict[str, list[float]]) -> None:
    """Empties at `points` in the character's landmark collection (made if missing), for the user to move."""
    collection = landmark_collection(character)
    if collection is None:
        collection = bpy.data.collections.new(f"{LANDMARKS}: {character.name}")
        context.scene.collection.children.link(collection)
    existing = {obj["mimic_landmark"]: obj for obj in collection.objects if "mimic_landmark" in obj}
    size = float(np.ptp(character_mesh(character).vertices, axis=0).max()) / 60 or 0.01
    for name, point in points.items():
        empty = existing.get(name)
        if empty is None:
            empty = bpy.data.objects.new(f"{character.name}.{name}", None)
            empty.empty_display_type, empty.empty_display_size = "SPHERE", size
            empty["mimic_landmark"] = name
            collection.objects.link(empty)
        empty.matrix_world.translation = point


def store_fit(context, character, model, fit: bytes, quality: dict) -> None:
    """Keep the fit on the character and show it: the fitted model surface as a wire preview."""
    character[FIT] = base64.b64encode(fit).decode()
    character[FIT_QUALITY] = json.dumps({**quality, "model": model.name, "model_vertices": len(model.data.vertices),
                                         "character_vertices": len(character.data.vertices)})
    with np.load(io.BytesIO(fit), allow_pickle=False) as data:
        surface, faces = data["fitted_model"], data["model_faces"]
    name = f"{PREVIEW}: {character.name}"
    old = bpy.data.objects.get(name)
    if old is not None:
        bpy.data.meshes.remove(old.data)
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(surface.tolist(), [], faces.tolist())
    preview = bpy.data.objects.new(name, mesh)
    preview.display_type, preview.hide_render, preview.hide_select = "WIRE", True, True
    context.scene.collection.objects.link(preview)


def fit_quality(character) -> dict | None:
    return json.loads(character[FIT_QUALITY]) if FIT_QUALITY in character else None


def stored_fit(character, model) -> bytes | None:
    """The character's fit, if it was made with this model head and both meshes are as they were."""
    quality = fit_quality(character)
    if FIT not in character or quality is None:
        return None
    if (quality["model_vertices"], quality["character_vertices"]) != (len(model.data.vertices),
                                                                      len(character.data.vertices)):
        return None
    return base64.b64decode(character[FIT])


def key_set(character, spec: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, (S, N, 3) local offsets from the reference key, (S, 2) slider ranges) of the
    character's shape keys that `spec` names ("ARKIT" or comma-separated names)."""
    keys = character.data.shape_keys
    if keys is None:
        raise JobError(f"'{character.name}' has no shape keys to solve for (use dense mode)")
    reference = keys.reference_key
    candidates = [b.name for b in keys.key_blocks if b != reference and not b.name.startswith(scene_io.PREFIX)]
    try:
        names = arkit.choose(candidates, spec)
    except ValueError as e:
        raise JobError(f"'{character.name}': {e}") from None
    if not names:
        raise JobError(f"'{character.name}' has no ARKit-named shape keys (its keys: {', '.join(candidates)}); "
                       "name the keys to solve for")
    rest = scene_io.rest_vertices(character)
    offsets = np.stack([_key_co(keys.key_blocks[n]) - rest for n in names])
    ranges = np.array([[keys.key_blocks[n].slider_min, keys.key_blocks[n].slider_max] for n in names], np.float32)
    return names, offsets, ranges


def _key_co(block) -> np.ndarray:
    co = np.empty(len(block.data) * 3, np.float32)
    block.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def character_inputs(character, model, mode: str, spec: str, smoothness: float) -> tuple[CharacterInputs, dict]:
    """What the job needs of the character; the fit is made first (and stored by `apply`) when the
    character has none for this model head. Returns the inputs and, for a new fit, what to make it from."""
    if character is None or character.type != "MESH":
        raise JobError("the character must be a mesh object")
    if character == model:
        raise JobError("the character and the model head are the same object: pick the model head in the panel")
    names, offsets, ranges = key_set(character, spec) if mode == "SHAPE_KEYS" else ([], None, None)
    fit = stored_fit(character, model)
    pending = {} if fit is not None else {"model": model_mesh(model), "character": character_mesh(character),
                                          "landmarks": placed_landmarks(character)}
    return CharacterInputs(character.name, mode, fit, names, offsets, ranges, smoothness), pending


def keep_other_animation(character) -> None:
    """An action of the user's on the character's shape keys moves to an NLA track, so it keeps
    playing under Mimic's action (which keys only the keys it writes)."""
    keys = character.data.shape_keys
    animation = keys.animation_data if keys is not None else None
    action = animation.action if animation is not None else None
    if action is None or action.get("mimic"):
        return
    slot = getattr(animation, "action_slot", None)
    track = animation.nla_tracks.new()
    track.name = f"Kept by Mimic: {action.name}"
    strip = track.strips.new(action.name, int(action.frame_range[0]), action)
    if slot is not None and hasattr(strip, "action_slot"):
        strip.action_slot = slot
    animation.action = None


def write_keys(character, strip_name: str, outputs: KeyOutputs, first_frame: int, sampled: bool) -> None:
    """Weights of the character's own keys: one action named after the strip, on exactly those keys."""
    scene_io.write_weights(character, strip_name, outputs.names, outputs.weights, first_frame, sampled)
