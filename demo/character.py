"""`make demo-character`: the demo model's motion on characters that are not its mesh, headless.

One line of LibriVox speech; the demo model animates its own head (left). A character of another
identity and another topology (a finer head, remeshed: 4x the triangles, vertices off the
original surface), in centimetres and imported Y-up, gets the same motion twice, through one fit
found automatically: as shape keys of its own (middle, dense mode), and as weights of its own
ARKit-named shape keys (right, shape-key mode). Writes demo/out/character.blend and a Workbench
still of the frame where the mouth opens widest (docs/images/character.png in the README).

    python demo/character.py [--out demo/out] [--image PATH]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

import mimic_blender
from mimic.character.synthetic import arkit_fields, make_character
from mimic.synth.head import build_head
from mimic.synth.rig import Rig, identity_template
from mimic_blender import job, properties, scene_io
from mimic_blender.core import session

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "synth-demo"
LINE = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0930.wav")
FPS = 25
CM = 100.0


def mesh(name: str, vertices: np.ndarray, faces: np.ndarray, matrix: np.ndarray | None = None):
    data = bpy.data.meshes.new(name)
    data.from_pydata(np.asarray(vertices, np.float64).tolist(), [], np.asarray(faces).tolist())
    data.shade_smooth()
    obj = bpy.data.objects.new(name, data)
    if matrix is not None:
        obj.matrix_world = Matrix(matrix.tolist())
    bpy.context.scene.collection.objects.link(obj)
    return obj


def build(out: Path):
    """The shot: ModelHead (metres, turned upright), Dense and Keys (the character twice, 30 cm apart)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    head = build_head(600)
    model = mesh("ModelHead", head.vertices * CM, head.faces)  # the model head, shown at the characters' scale
    model.rotation_euler, model.location = (math.pi / 2, 0, 0), (-30.0, 0, 0)
    source = build_head(1400)
    for name, x in (("Dense", 0.0), ("Keys", 30.0)):
        character = make_character(source, identity_template(source, 3), levels=1, units=CM, location=(x, 0, 0),
                                   y_up_import=True)
        mesh(name, character.local, character.faces, character.matrix)
    keys = bpy.data.objects["Keys"]
    keys.shape_key_add(name="Basis", from_mix=False)
    rest = scene_io.rest_vertices(keys)
    fit_source = make_character(source, identity_template(source, 3), levels=1, units=CM, y_up_import=True)
    for name, field in arkit_fields(Rig(source)).items():  # the character's own ARKit rig (in its topology)
        block = keys.shape_key_add(name=name, from_mix=False)
        block.data.foreach_set("co", (rest + fit_source.local_offsets(field)).astype(np.float32).ravel())
    editor = scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    editor.active_strip = strips.new_sound("Line", str(LINE), channel=1, frame_start=1)
    scene.frame_start, scene.frame_end = 1, editor.active_strip.frame_final_end
    bpy.ops.wm.save_as_mainfile(filepath=str(out))
    return scene


def animate(scene, neutral: np.ndarray) -> None:
    settings = properties.settings(bpy.context, checkpoint=str(MODEL))
    style = job.Style(code=None, file=str(neutral))
    model = bpy.data.objects["ModelHead"]
    strip = scene.sequence_editor.active_strip
    for target, character in ((model, None), (model, (bpy.data.objects["Dense"], "DENSE", "ARKIT", 0.01)),
                              (model, (bpy.data.objects["Keys"], "SHAPE_KEYS", "ARKIT", 0.01))):
        print("[demo-character]", job.run(bpy.context, target, strip, style, settings, character=character),
              flush=True)


def widest_frame(scene) -> int:
    model = bpy.data.objects["ModelHead"]
    frames = range(scene.frame_start, scene.frame_end)
    motion = scene_io.evaluated_vertices(bpy.context, model, frames) - scene_io.rest_vertices(model)
    return frames[int(np.argmax(np.abs(motion).max(axis=(1, 2))))]


def render_still(scene, frame: int, image: Path) -> None:
    for preview in [o for o in bpy.data.objects if o.name.startswith("Mimic Fit")]:
        preview.hide_render = True
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.type, camera.data.ortho_scale = "ORTHO", 100.0
    camera.location, camera.rotation_euler = (0, -200.0, 0), (math.pi / 2, 0, 0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light, scene.display.shading.color_type = "STUDIO", "SINGLE"
    scene.display.shading.single_color = (0.8, 0.62, 0.52)
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 960, 400, 100
    scene.frame_set(frame)
    scene.render.filepath = str(image)
    bpy.ops.render.render(write_still=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "demo" / "out")
    ap.add_argument("--image", type=Path, help="where to write the still (default: OUT/character.png)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    head = build_head(600)
    neutral = args.out / "neutral-style.npz"  # a neutral reference: the model's own speaking manner
    np.savez(neutral, vertices=np.repeat(head.vertices[None], 150, axis=0), template=head.vertices)
    mimic_blender.register()
    try:
        scene = build(args.out / "character.blend")
        animate(scene, neutral)
        bpy.ops.wm.save_mainfile()
        frame = widest_frame(scene)
        render_still(scene, frame, args.image or args.out / "character.png")
        print(f"[demo-character] {args.out / 'character.blend'}; still of frame {frame}: "
              f"{args.image or args.out / 'character.png'}", flush=True)
    finally:
        session.stop()
        mimic_blender.unregister()
    sys.exit(0)


if __name__ == "__main__":
    main()
