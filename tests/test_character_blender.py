"""Any character in real Blender, with a real backend and the demo model: the demo head fitted onto
a character of another identity, remeshed (4x the triangles, vertices off the original ones), in
centimetres, 3 m to the side, its mesh Y-up as an import leaves it; Mimic's motion carried onto it (dense) and onto
its own ARKit-named shape keys (made from the synthetic rig's controls). The truth comes from the remesh:
every character vertex is a known mix of model vertices."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys

import blender_scene as bs
import bpy
import numpy as np
import pytest
from mathutils import Matrix
from paths import LINE, ROOT

from mimic.character.landmarks import model_anchors
from mimic.character.synthetic import arkit_fields, make_character
from mimic.synth.head import build_head
from mimic.synth.rig import Rig, identity_template

DEMO = ROOT / "models" / "synth-demo"
FPS = 25
CM = 100.0
FRAMES = range(10, 150, 7)  # checked frames, all inside the strip


@pytest.fixture(scope="module")
def demo_model(addon):
    """The add-on on the demo model (602-vertex synthetic head) for this module."""
    before = addon.prefs.checkpoint
    addon.prefs.checkpoint = str(DEMO)
    yield addon
    addon.prefs.checkpoint = before
    addon.session.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The shot: ModelHead (the demo topology at the model's scale), Char (the character, with ARKit
    keys and a user-animated "Snarl" key), the speech as strip Line01 from frame 1, a style file."""
    head = build_head(600)
    identity = identity_template(head, seed=7).astype(np.float64)
    character = make_character(head, identity, levels=1, units=CM, location=(300.0, 0.0, 0.0), y_up_import=True,
                               seed=1)
    # The landmarks a user would place: the model's landmark points on the character's face (the
    # remesh keeps its surface), in world space.
    anchors = model_anchors(len(head.vertices), head.faces, None)
    points = anchors.points(identity, head.faces) * CM @ character.rotation.T + character.matrix[:3, 3]
    landmarks = {name: point.tolist() for name, point in zip(anchors.names, points)}
    folder = tmp_path_factory.mktemp("character")
    style = folder / "style.npz"
    wobble = 0.002 * np.sin(np.arange(150) / 4.0)[:, None, None] * (head.side[None, :, None] < 0)
    np.savez(style, vertices=head.vertices[None] + wobble * np.array([0.0, 1.0, 0.0]), template=head.vertices)
    bs.reset()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    scene.frame_start, scene.frame_end = 1, 200
    bs.mesh_object("ModelHead", head.vertices, scene, faces=head.faces)
    obj = bs.mesh_object("Char", character.local, scene, faces=character.faces)
    obj.matrix_world = Matrix(character.matrix.tolist())
    fields = arkit_fields(Rig(head))
    obj.shape_key_add(name="Basis", from_mix=False)
    for name, field in fields.items():
        block = obj.shape_key_add(name=name, from_mix=False)
        block.data.foreach_set("co", (character.local + character.local_offsets(field)).astype(np.float32).ravel())
    snarl = obj.shape_key_add(name="Snarl", from_mix=False)  # not an ARKit name: Mimic must leave it alone
    snarl.value = 0.0
    snarl.keyframe_insert("value", frame=1)
    snarl.value = 0.8
    snarl.keyframe_insert("value", frame=100)
    source = build_head(1400)  # a finer head, remeshed: landmarks found automatically (the demo head's are too coarse)
    auto = make_character(source, identity_template(source, 3), levels=1, units=CM, location=(-300.0, 0.0, 0.0))
    bs.mesh_object("Auto", auto.local, scene, faces=auto.faces)
    strip = bs.sound_strip(scene, "Line01", LINE, frame_start=1)
    scene.sequence_editor.active_strip = strip
    settings = scene.mimic
    settings.style_source, settings.style_file = "FILE", str(style)
    settings.model_head = bpy.data.objects["ModelHead"]
    path = folder / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path, character, sorted(fields), landmarks


def open_shot(world, mode: str, addon=None):
    """The shot, in `mode`, the target active; with `addon`, the landmarks placed by its own code."""
    bpy.ops.wm.open_mainfile(filepath=str(world[0]))
    bpy.context.scene.mimic.character_mode = mode
    target = bpy.data.objects["ModelHead" if mode == "MODEL" else "Char"]
    bpy.context.view_layer.objects.active = target
    if addon is not None:
        addon.character.place_landmarks(bpy.context, target, world[3])
    return target


def lips_of(character) -> np.ndarray:
    """(N,) the character's vertices on the model head's lips."""
    on = np.zeros(character.truth.shape[1])
    on[build_head(600).regions["lips"]] = 1.0
    return (character.truth @ on) > 0.99


def json_weights(char) -> np.ndarray:
    """(N,) the stored fit's weight of every character vertex (0 where it binds nothing)."""
    with np.load(io.BytesIO(base64.b64decode(char["mimic_fit"]))) as fit:
        weights = np.zeros(len(char.data.vertices))
        weights[fit["vertices"]] = fit["weight"]
    return weights


def rms_error(got: np.ndarray, truth: np.ndarray, where: np.ndarray) -> tuple[float, float]:
    """(RMS distance of got from truth, RMS of truth) over the vertices `where`, all frames."""
    error = np.sqrt(np.mean(np.sum((got - truth)[:, where] ** 2, axis=-1)))
    return float(error), float(np.sqrt(np.mean(np.sum(truth[:, where] ** 2, axis=-1))))


def press():
    assert bpy.ops.mimic.speaker_style() == {"FINISHED"}


def local_offsets(obj, frames) -> np.ndarray:
    return bs.vertices_at(obj, frames) - bs.mesh_vertices(obj)


@pytest.fixture(scope="module")
def model_motion(demo_model, world) -> np.ndarray:
    """(frames, 602, 3) the model head's own Mimic result at FRAMES: what the character must follow."""
    head = open_shot(world, "MODEL")
    press()
    motion = local_offsets(head, FRAMES)
    assert np.abs(motion).max() > 1e-3  # it speaks
    return motion


def test_dense_mode_carries_the_motion_onto_the_character(demo_model, world, model_motion):
    char = open_shot(world, "DENSE", demo_model)
    press()
    truth = world[1].local_offsets(model_motion)  # (frames, N, 3) cm, the character's own axes
    got = local_offsets(char, FRAMES)
    lips = lips_of(world[1])
    error, rms = rms_error(got, truth, lips)
    assert lips.sum() > 50 and error <= 0.35 * rms, f"lips: error {error:.3g} cm against motion RMS {rms:.3g} cm"
    face = json_weights(char) >= 1.0
    error, rms = rms_error(got, truth, face)
    assert error <= 0.5 * rms, f"face: error {error:.3g} cm against motion RMS {rms:.3g} cm"
    quality = json.loads(char["mimic_fit_quality"])
    assert quality["model"] == "ModelHead" and quality["surface_distance"] < 0.5  # cm
    assert bpy.data.objects.get("Mimic Fit: Char") is not None  # the preview
    names = bs.shape_key_names(char)
    assert "Mimic.mean" in names and bs.shape_key_action(char).name == "Mimic Line01"

    count = len(names)
    press()  # again: replaced, and the stored fit is reused
    assert len(bs.shape_key_names(char)) == count
    assert np.allclose(local_offsets(char, FRAMES[:3]), got[:3], atol=1e-4)


def test_shape_key_mode_solves_weights_of_the_arkit_keys_only(demo_model, world, model_motion):
    char = open_shot(world, "SHAPE_KEYS", demo_model)
    press()
    action = bs.shape_key_action(char)
    assert action.name == "Mimic Line01"
    animated = sorted(curve.data_path.split('"')[1] for curve in bs.shape_key_fcurves(char))
    assert animated == world[2]  # exactly the ARKit keys; "Snarl" is not among them
    keys = char.data.shape_keys
    assert keys.animation_data.nla_tracks, "the user's action is kept on an NLA track"
    bpy.context.scene.frame_set(100)
    assert abs(keys.key_blocks["Snarl"].value - 0.8) < 1e-6  # the user's animation still plays
    weights = np.array([[curve.evaluate(f) for curve in bs.shape_key_fcurves(char)] for f in FRAMES])
    assert weights.min() >= -1e-6 and weights.max() <= 1 + 1e-6 and weights.max() > 0.05
    report = json.loads(char.data["mimic_result"])["report"]
    assert 0 <= report["relative_residual"] < 0.6 and sorted(key["name"] for key in report["keys"]) == world[2]

    truth = world[1].local_offsets(model_motion)
    got = local_offsets(char, FRAMES)  # (Snarl's shape is the rest shape: it adds nothing)
    error, rms = rms_error(got, truth, lips_of(world[1]))
    assert error <= 0.8 * rms, f"the keys' mix is {error:.3g} cm from the lips' motion (RMS {rms:.3g} cm)"


def test_fit_operator_finds_landmarks_that_the_next_fit_uses(demo_model, world):
    open_shot(world, "DENSE")
    char = bpy.data.objects["Auto"]
    bpy.context.view_layer.objects.active = char
    assert bpy.ops.mimic.fit_character() == {"FINISHED"}
    collection = bpy.data.collections["Mimic Landmarks: Auto"]
    placed = {obj["mimic_landmark"]: obj for obj in collection.objects}
    assert {"nose_tip", "chin", "mouth_corner_left", "mouth_corner_right"} <= set(placed)
    first = json.loads(char["mimic_fit_quality"])
    placed["chin"].location.z -= 30.0  # a landmark 30 cm off: refused, the fit kept
    bpy.context.view_layer.update()
    with pytest.raises(RuntimeError, match="the landmarks do not fit the model's face"):
        bpy.ops.mimic.fit_character()
    assert json.loads(char["mimic_fit_quality"]) == first
    placed["chin"].location.z += 29.0  # 1 cm off: used by the next fit, which says so
    bpy.context.view_layer.update()
    assert bpy.ops.mimic.fit_character() == {"FINISHED"}
    second = json.loads(char["mimic_fit_quality"])
    assert second["landmark_error"] > first["landmark_error"]


def test_no_face_and_unknown_keys_are_reported_and_change_nothing(demo_model, world):
    open_shot(world, "DENSE")
    bpy.ops.mesh.primitive_cube_add(size=20.0)
    cube = bpy.context.active_object
    with pytest.raises(RuntimeError, match="(?i)face"):
        press()
    assert bs.shape_key_names(cube) == [] and "mimic_fit" not in cube
    char = open_shot(world, "SHAPE_KEYS")
    bpy.context.scene.mimic.shape_keys = "jawOpen, nope"
    with pytest.raises(RuntimeError, match="no shape key named 'nope'"):
        press()
    assert not bs.shape_key_action(char).get("mimic")  # still the user's action, untouched


RETARGET = {"python -m": [sys.executable, "-m", "mimic_blender.retarget"],
            "blender --command": [sys.executable, "-c", "import sys, mimic_blender; mimic_blender.register(); "
                                  "status = mimic_blender.batch.cli_command(['retarget', *sys.argv[1:]]); "
                                  "mimic_blender.unregister(); sys.exit(status)"]}


@pytest.mark.slow  # Blender subprocesses
@pytest.mark.parametrize("form, mode", [("python -m", "dense"), ("blender --command", "shape-keys")])
def test_retarget_an_existing_animation(demo_model, world, model_motion, tmp_path, form, mode):
    """The model head's animation in a .blend (no sound, no model needed) onto the character."""
    open_shot(world, "MODEL")
    press()
    char = bpy.data.objects["Char"]
    demo_model.character.place_landmarks(bpy.context, char, world[3])
    shot, out = tmp_path / "animated.blend", tmp_path / "out.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(shot))
    done = subprocess.run([*RETARGET[form], str(shot), "--source", "ModelHead", "--character", "Char",
                           "--character-mode", mode, "--frames", "1-180", "--save", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "mimic: saved" in done.stderr.splitlines()[-1]
    bpy.ops.wm.open_mainfile(filepath=str(out))
    char = bpy.data.objects["Char"]
    assert bs.shape_key_action(char).name == "Mimic retarget ModelHead"
    truth = world[1].local_offsets(model_motion)
    error, rms = rms_error(local_offsets(char, FRAMES), truth, lips_of(world[1]))
    assert error <= (0.35 if mode == "dense" else 0.8) * rms, f"{error:.3g} cm from the truth (RMS {rms:.3g} cm)"

    missing = subprocess.run([*RETARGET[form], str(shot), "--source", "Nobody", "--character", "Char",
                              "--character-mode", mode, "--save", str(out)],
                             capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert (missing.returncode == 1
            and missing.stderr.strip().splitlines()[-1] == "mimic: error: no object named 'Nobody'")
