"""Reading Blender data (strip timing and audio, meshes, evaluated animation) and writing the
result (shape keys + one Action of keyframed weights). Thin: the logic lives in core/."""

from __future__ import annotations

import os

import bpy
import numpy as np

from .core.errors import JobError
from .core.settings import Audio, SoundSpan
from .core.sources import read_sound

PREFIX = "Mimic."  # names of the shape keys a result owns
MEAN_KEY = PREFIX + "mean"
LINEAR = 1  # enum value of Keyframe.interpolation 'LINEAR'


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


def strip_timing(strip) -> tuple[int, int, float]:
    """(first visible frame, one past the last, frames of the sound trimmed before the first).
    The one place that knows the strip timing names (4.2-5.0)."""
    first, end = strip.frame_final_start, strip.frame_final_end
    return first, end, first - strip.frame_start


def strips(scene):
    editor = scene.sequence_editor
    if editor is None:
        return []
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def sound_source(strip) -> tuple[str, bytes | None]:
    """(absolute path of the strip's sound, its bytes if packed into the .blend, else None)."""
    sound = strip.sound
    if sound is None:
        raise JobError(f"strip '{strip.name}' has no sound")
    path = bpy.path.abspath(sound.filepath, library=sound.library)
    if sound.packed_file is not None:
        return path, bytes(sound.packed_file.data)
    if not os.path.isfile(path):
        raise JobError(f"sound file of strip '{strip.name}' not found: {path}")
    return path, None


def read_strip_audio(strip, scene, model_rate: int) -> Audio | SoundSpan:
    """The part of the strip's sound that plays (see core.sources.read_sound)."""
    path, packed = sound_source(strip)
    first, end, trim = strip_timing(strip)
    fps = scene_fps(scene)
    return read_sound(path, packed, f"strip '{strip.name}'", trim / fps, (end - first) / fps, model_rate)


def rest_vertices(obj) -> np.ndarray:
    """(V, 3) rest shape in local space: the reference shape key if any, else the mesh."""
    mesh = obj.data
    source = mesh.shape_keys.reference_key.data if mesh.shape_keys else mesh.vertices
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    source.foreach_get("co", co)
    return co.reshape(-1, 3)


def evaluated_vertices(context, obj, frames: range) -> np.ndarray:
    """(F, V, 3) local-space vertices of obj at each frame, through the depsgraph (shape keys,
    modifiers, caches). The scene's current frame is restored."""
    scene = context.scene
    current = scene.frame_current
    out = []
    try:
        for frame in frames:
            scene.frame_set(frame)
            evaluated = obj.evaluated_get(context.evaluated_depsgraph_get())
            mesh = evaluated.to_mesh()
            co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
            mesh.vertices.foreach_get("co", co)
            evaluated.to_mesh_clear()
            out.append(co.reshape(-1, 3))
    finally:
        scene.frame_set(current)
    if len({len(v) for v in out}) > 1:
        raise JobError(f"'{obj.name}' changes its vertex count over frames {frames.start}-{frames.stop - 1}")
    return np.stack(out)


# ------------------------------------------------------------------------------------ writing


def mimic_action(obj):
    keys = obj.data.shape_keys
    action = keys.animation_data.action if keys is not None and keys.animation_data else None
    return action if action is not None and action.get("mimic") else None


def check_writable(obj) -> None:
    keys = obj.data.shape_keys
    action = keys.animation_data.action if keys is not None and keys.animation_data else None
    if action is not None and not action.get("mimic"):
        raise JobError(f"the shape keys of '{obj.name}' are animated by action '{action.name}'; Mimic writes an "
                       "action of its own: unassign that one first")


def remove_result(obj) -> None:
    """Take a previous Mimic result off obj: its shape keys, its action, and the Basis key if
    Mimic added it."""
    action = mimic_action(obj)
    if action is not None:
        bpy.data.actions.remove(action)
    keys = obj.data.shape_keys
    if keys is None:
        return
    for block in [b for b in keys.key_blocks if b.name.startswith(PREFIX)]:
        obj.shape_key_remove(block)
    if obj.data.get("mimic_basis") and len(obj.data.shape_keys.key_blocks) == 1:
        obj.shape_key_clear()
    obj.data.pop("mimic_basis", None)
    obj.data.pop("mimic_result", None)


def write_result(obj, name: str, mean: np.ndarray, basis: np.ndarray, tracks: np.ndarray, first_frame: int,
                 sampled: bool = False) -> None:
    """Shape keys rest+mean and rest+basis[k], and an action keying them: the mean at 1 and the
    tracks over frames first_frame.. (one key per frame, linear), all at 0 the frame before and
    after. mean (V,3), basis (K,V,3), tracks (F,K), all in the mesh's units. `sampled` bakes the
    keys to F-curve samples (same values, a sixth of the size in the .blend, not editable keys)."""
    created_basis = obj.data.shape_keys is None
    if created_basis:
        obj.shape_key_add(name="Basis", from_mix=False)
        obj.data["mimic_basis"] = True
    rest = rest_vertices(obj)
    shapes = [(MEAN_KEY, mean)] + [(f"{PREFIX}{k:03d}", basis[k]) for k in range(len(basis))]
    for key_name, offset in shapes:
        block = obj.shape_key_add(name=key_name, from_mix=False)
        block.slider_min = -1.0
        block.data.foreach_set("co", (rest + offset).astype(np.float32).ravel())

    values = np.column_stack([np.ones(len(tracks), np.float32), tracks])  # (frames, 1 + K)
    write_weights(obj, name, [key_name for key_name, _ in shapes], values, first_frame, sampled)


def write_weights(obj, name: str, key_names: list[str], values: np.ndarray, first_frame: int,
                  sampled: bool = False) -> None:
    """One action "Mimic <name>" keying obj's shape keys `key_names` to `values` (F, S) over frames
    first_frame.. (one key per frame, linear), all at 0 the frame before and after; assigned to
    obj's shape keys. `sampled` bakes the keys to F-curve samples (see write_result)."""
    frames = np.arange(first_frame - 1, first_frame + len(values) + 1, dtype=np.float32)
    padded = np.zeros((len(frames), len(key_names)), dtype=np.float32)
    padded[1:-1] = values
    action = bpy.data.actions.new(name=f"Mimic {name}")
    action["mimic"] = True
    curves = new_fcurves(action, obj.data.shape_keys, [f'key_blocks["{key_name}"].value' for key_name in key_names])
    for curve, column in zip(curves, padded.T):
        points = curve.keyframe_points
        points.add(len(frames))
        points.foreach_set("co", np.column_stack([frames, column]).ravel())
        points.foreach_set("interpolation", np.full(len(frames), LINEAR, dtype=np.int32))
        curve.update()
        if sampled:
            curve.convert_to_samples(int(frames[0]), int(frames[-1]) + 1)  # the end is exclusive
    action.update_tag()  # else the depsgraph may keep evaluating the keys replaced by samples


def new_fcurves(action, keys, paths: list[str]) -> list:
    """F-curves of `action` animating the shape keys `keys`, assigned to them: slotted actions
    on 4.4+, the legacy API on 4.2/4.3."""
    animation = keys.animation_data or keys.animation_data_create()
    if hasattr(action, "layers"):
        slot = action.slots.new(id_type="KEY", name=keys.name)
        bag = action.layers.new("Mimic").strips.new(type="KEYFRAME").channelbag(slot, ensure=True)
        curves = [bag.fcurves.new(path) for path in paths]
        animation.action = action
        animation.action_slot = slot
    else:
        curves = [action.fcurves.new(path) for path in paths]
        animation.action = action
    return curves
