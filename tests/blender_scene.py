"""Scenes for the Blender tests, built in code with real `bpy` (no .blend fixtures), and reading
them back independently of the add-on (the tests must not check the add-on with its own code)."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

FPS = 24
STRIP_START = 30  # where the strip's sound starts...
TRIM_START = 7  # ...trimmed by 7 frames: the first frame heard is 37
TRIM_END = 5  # and 5 frames off its end
FIRST_FRAME = STRIP_START + TRIM_START
STYLE_FRAMES = (1, 150)
REFERENCE_KEYS = 3  # the reference performance is keyed on this many shape keys


def reset() -> None:
    """An empty file. (read_factory_settings would also unload the add-on and its extension
    repository; read_homefile keeps the Preferences.)"""
    bpy.ops.wm.read_homefile(use_empty=True)


def mesh_object(name: str, vertices: np.ndarray, scene=None, faces: np.ndarray | None = None):
    """A mesh object of `vertices`, loose (the model head's path only cares about positions) or with
    triangles `faces` (what a character fit and a glTF export need)."""
    scene = scene or bpy.context.scene
    mesh = bpy.data.meshes.new(name)
    if faces is None:
        mesh.vertices.add(len(vertices))
        mesh.vertices.foreach_set("co", np.asarray(vertices, np.float32).ravel())
    else:
        mesh.from_pydata(np.asarray(vertices, np.float64).tolist(), [], np.asarray(faces).tolist())
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    return obj


def animate(obj, motion: np.ndarray, keys: int = REFERENCE_KEYS, first_frame: int = 1) -> None:
    """Key `obj` to perform `motion` (F, V, 3 offsets) from first_frame, through the first `keys`
    principal shapes of the motion (a rank-`keys` copy of it), the way an animator's rig would."""
    rest = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", rest)
    u, s, vt = np.linalg.svd(motion.reshape(len(motion), -1), full_matrices=False)
    obj.shape_key_add(name="Basis", from_mix=False)
    for k in range(keys):
        block = obj.shape_key_add(name=f"Shape{k}", from_mix=False)
        block.slider_min, block.slider_max = -10.0, 10.0
        block.data.foreach_set("co", (rest + vt[k] * s[k]).astype(np.float32))
        for f, value in enumerate(u[:, k]):
            block.value = float(value)
            block.keyframe_insert("value", frame=first_frame + f)


def sound_strip(scene, name: str, path: Path, frame_start: int, trim_start: int = 0, trim_end: int = 0,
                channel: int = 1):
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    strip = strips.new_sound(name, str(path), channel=channel, frame_start=frame_start)
    strip.frame_offset_start, strip.frame_offset_end = trim_start, trim_end
    return strip


def build_shot(template: np.ndarray, style_motion: np.ndarray, sound: Path):
    """The shot every test starts from: 24 fps; "Head" (the template, unanimated); "Ref" (the
    template performing style_motion over frames 1-150); sound strip "Line01" of real speech
    starting at frame 30, trimmed to play frames 37.. (end trimmed too), active and selected."""
    reset()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    scene.frame_start, scene.frame_end = 1, 220
    head = mesh_object("Head", template, scene)
    ref = mesh_object("Ref", template, scene)
    animate(ref, style_motion)
    strip = sound_strip(scene, "Line01", sound, STRIP_START, TRIM_START, TRIM_END)
    scene.sequence_editor.active_strip = strip
    bpy.context.view_layer.objects.active = head
    head.select_set(True)
    return scene


def vertices_at(obj, frames) -> np.ndarray:
    """(F, V, 3) evaluated local-space vertices of obj at each scene frame."""
    scene = bpy.context.scene
    out = []
    for frame in frames:
        scene.frame_set(frame)
        evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        mesh = evaluated.to_mesh()
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        evaluated.to_mesh_clear()
        out.append(co.reshape(-1, 3))
    return np.stack(out)


def mesh_vertices(obj) -> np.ndarray:
    """(V, 3) vertices of the mesh data itself (no shape keys, no animation)."""
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def shape_key_names(obj) -> list[str]:
    keys = obj.data.shape_keys
    return [block.name for block in keys.key_blocks] if keys is not None else []


def shape_key_action(obj):
    keys = obj.data.shape_keys
    return keys.animation_data.action if keys is not None and keys.animation_data else None


def shape_key_fcurves(obj) -> list:
    """The F-curves of the shape keys' action (slotted actions on 4.4+, legacy before)."""
    action = shape_key_action(obj)
    if action is None:
        return []
    if not hasattr(action, "layers"):
        return list(action.fcurves)
    slot = obj.data.shape_keys.animation_data.action_slot
    return [curve for layer in action.layers for strip in layer.strips
            for curve in strip.channelbag(slot).fcurves]
