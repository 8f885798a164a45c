"""The demo's Blender side: the shot it animates and the preview it renders (real `bpy`).

The shot, in a FLAME-like convention turned to Blender's (the head's +y up becomes +z, its +z
forward becomes -y, so the front view sees the faces):

    Head.Wide   Head.Tight       the demo model's neutral head, twice, side by side, unanimated
    Ref.Wide    Ref.Tight        two performers (other identities), each playing a point cache
                                 (.pc2, a Mesh Cache modifier) of a reference performance; hidden
                                 in renders, off to the side in the viewport
    "Dialogue"                   the speech, a sound strip from frame 1
    labels, camera, light        a Workbench render of the two heads, 24 fps
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy
import numpy as np

FPS = 24
SPACING = 0.24  # m between the two heads


def write_pc2(path: Path, frames: np.ndarray, fps: float) -> None:
    """A PC2 point cache (the format of Blender's Mesh Cache modifier) of (F, V, 3) positions."""
    frames = np.ascontiguousarray(frames, dtype="<f4")
    header = np.array([1, frames.shape[1]], "<i4").tobytes() + np.array([0.0, 1.0], "<f4").tobytes() \
        + np.array([len(frames)], "<i4").tobytes()
    path.write_bytes(b"POINTCACHE2\0" + header + frames.tobytes())


def _mesh(name: str, vertices: np.ndarray, faces: np.ndarray, location: tuple[float, float, float]):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(vertices.tolist(), [], faces.tolist())
    mesh.shade_smooth()
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    obj.rotation_euler = (math.pi / 2, 0, 0)  # the model's y up -> Blender's z up
    smooth = obj.modifiers.new("Smooth", "SUBSURF")
    smooth.levels, smooth.render_levels, smooth.show_viewport = 0, 1, False  # renders only: depsgraph reads stay exact
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _label(text: str, location: tuple[float, float, float]):
    curve = bpy.data.curves.new(text, "FONT")
    curve.body, curve.size, curve.align_x = text, 0.022, "CENTER"
    obj = bpy.data.objects.new(f"Label {text}", curve)
    obj.location, obj.rotation_euler = location, (math.pi / 2, 0, 0)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def build_shot(out: Path, vertices: np.ndarray, faces: np.ndarray, dialogue: Path, seconds: float,
               references: dict[str, tuple[np.ndarray, Path]], labels: dict[str, str], resolution: tuple[int, int]):
    """Write the shot (see the module doc) to `out`. references: style name -> (performer's
    neutral (V, 3), its .pc2); labels: style name -> caption."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    scene.frame_start, scene.frame_end = 1, math.ceil(seconds * FPS) + 6
    names = list(references)
    for i, name in enumerate(names):
        x = (i - (len(names) - 1) / 2) * SPACING
        _mesh(f"Head.{name}", vertices, faces, (x, 0, 0))
        _label(labels[name], (x, -0.12, -0.145))
        neutral, cache = references[name]
        ref = _mesh(f"Ref.{name}", neutral, faces, (x, 0.6, 0.35))
        ref.hide_render = True
        player = ref.modifiers.new("Performance", "MESH_CACHE")
        player.cache_format, player.filepath, player.frame_start = "PC2", str(cache), 1.0
        ref.modifiers.move(1, 0)  # the cache before the render smoothing
    editor = scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    editor.active_strip = strips.new_sound("Dialogue", str(dialogue), channel=1, frame_start=1)

    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.type, camera.data.ortho_scale = "ORTHO", SPACING * len(names) + 0.1
    camera.location, camera.rotation_euler = (0, -1.0, -0.015), (math.pi / 2, 0, 0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light, scene.display.shading.color_type = "STUDIO", "SINGLE"
    scene.display.shading.single_color = (0.8, 0.62, 0.52)
    scene.render.resolution_x, scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    world = bpy.data.worlds.new("World")
    scene.world = world
    world.color = (0.05, 0.06, 0.08)
    bpy.context.view_layer.objects.active = bpy.data.objects[f"Head.{names[0]}"]
    bpy.ops.wm.save_as_mainfile(filepath=str(out))


def render_frames(blend: Path, folder: Path) -> int:
    """Render every frame of the shot's range into folder/0001.png ...; returns the frame count."""
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    folder.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = f"{folder}/"  # Blender appends the frame number: 0001.png
    bpy.ops.render.render(animation=True)  # one render job: a third faster than a still per frame
    return scene.frame_end - scene.frame_start + 1
