"""The add-on's styles and result options in real Blender: baked weight samples, centimetre heads,
style files, the style library (capture, rename, delete, mix) and the batch command, each checked
against `mimic generate` on the shot of tests/blender_shot.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import blender_scene as bs
import bpy
import numpy as np
import pytest
from blender_shot import assert_animation, mimic_actions, speaker_style, strip, style_code
from paths import CHECKPOINT, ROOT


def test_baked_samples_animate_like_keyframes(addon, scene, expected):
    head = bpy.data.objects["Head"]
    addon.prefs.curves = "SAMPLES"
    try:
        speaker_style()
    finally:
        addon.prefs.curves = "AUTO"
    curves = bs.shape_key_fcurves(head)
    assert curves and all(len(c.keyframe_points) == 0 and len(c.sampled_points) > expected.frames for c in curves)
    assert_animation(head, expected)
    assert not addon.settings.sampled("AUTO", (expected.frames, 40))  # a short shot keeps editable keys
    assert addon.settings.sampled("AUTO", (18000, 44)) and not addon.settings.sampled("KEYS", (18000, 44))


def test_centimetre_head_gets_centimetre_motion(addon, scene, expected):
    head = bpy.data.objects["Head"]
    head.data.vertices.foreach_set("co", (expected.rest * 100).astype(np.float32).ravel())
    head.data.update()
    assert addon.prefs.units == "AUTO"
    speaker_style()
    assert_animation(head, expected, scale=100.0)


@pytest.mark.parametrize("kind", ["npz", "npy"])
def test_style_file_gives_the_object_styles_animation(addon, scene, expected, tmp_path, kind):
    path = tmp_path / f"style.{kind}"
    if kind == "npz":
        np.savez(path, vertices=expected.style, template=expected.rest)
    else:
        np.save(path, expected.style - expected.rest)  # offsets
    scene.mimic.style_source, scene.mimic.style_file = "FILE", str(path)
    speaker_style()
    assert_animation(bpy.data.objects["Head"], expected)


def test_style_library_capture_use_rename_delete(addon, scene, expected):
    head, settings = bpy.data.objects["Head"], scene.mimic
    assert bpy.ops.mimic.capture_style(name="Calm") == {"FINISHED"}
    assert [s.name for s in settings.styles] == ["Calm"] and settings.style_index == 0
    calm = settings.styles[0]
    assert len(style_code(calm)) == addon.session._backend.facts["model"]["style_dim"]
    assert calm.source == "Ref frames 1-150" and calm.checkpoint == str(CHECKPOINT)

    # The library style animates as the object it was captured from.
    settings.style_source = "LIBRARY"
    settings.style_object = None  # not used any more
    speaker_style()
    assert_animation(head, expected)

    # Renamed: found by its new name (the panel, and `--style NAME` of the batch command).
    calm.name = "Calm speech"
    assert addon.operators.style_from_scene(scene).label == "Calm speech"
    args = addon.batch.parser().parse_args(["shot.blend", "--target", "Head", "--style", "Calm speech", "--save", "x"])
    assert addon.batch.style_from_args(args, scene).code == style_code(calm)

    # Delete: the active one goes, the selection stays in the list.
    settings.style_source, settings.style_object = "OBJECT", bpy.data.objects["Ref"]
    settings.style_end = 75
    assert bpy.ops.mimic.capture_style(name="Short") == {"FINISHED"}
    assert bpy.ops.mimic.capture_style(name="Short again") == {"FINISHED"}
    assert [s.name for s in settings.styles] == ["Calm speech", "Short", "Short again"]
    assert settings.style_index == 2
    assert bpy.ops.mimic.style_remove() == {"FINISHED"}
    assert [s.name for s in settings.styles] == ["Calm speech", "Short"] and settings.style_index == 1
    settings.style_index = 0
    assert bpy.ops.mimic.style_remove() == {"FINISHED"}
    assert [s.name for s in settings.styles] == ["Short"] and settings.style_index == 0
    assert bpy.ops.mimic.style_remove() == {"FINISHED"}
    assert len(settings.styles) == 0 and not bpy.ops.mimic.style_remove.poll()
    settings.style_source = "LIBRARY"
    with pytest.raises(RuntimeError, match="the style library is empty"):
        bpy.ops.mimic.speaker_style()


def test_style_mix(addon, scene):
    settings = scene.mimic
    assert not bpy.ops.mimic.style_mix.poll()  # needs two styles
    assert bpy.ops.mimic.capture_style(name="Long") == {"FINISHED"}
    settings.style_end = 75
    assert bpy.ops.mimic.capture_style(name="Short") == {"FINISHED"}
    long, short = style_code(settings.styles[0]), style_code(settings.styles[1])
    assert long != short
    for weight, want in [(0.0, long), (1.0, short), (0.25, [0.75 * a + 0.25 * b for a, b in zip(long, short)])]:
        settings.style_index, settings.mix_with, settings.mix_weight = 0, "Short", weight
        assert bpy.ops.mimic.style_mix() == {"FINISHED"}
        mixed = settings.styles[settings.style_index]
        assert settings.style_index == len(settings.styles) - 1
        assert style_code(mixed) == pytest.approx(want, rel=0, abs=1e-12) and mixed.name == f"Long + Short {weight:.2f}"
        assert mixed.checkpoint == str(CHECKPOINT)
    assert style_code(settings.styles[2]) == long and style_code(settings.styles[3]) == short  # exactly


BATCH_MODULE = [sys.executable, "-m", "mimic_blender.batch"]
# No blender binary here: `blender --command mimic ...` runs the add-on's registered
# cli_command; call that function as Blender would: after register(), before unregister().
BATCH_COMMAND = [sys.executable, "-c", "import sys, mimic_blender; mimic_blender.register(); "
                 "assert mimic_blender._cli_command is not None; "
                 "status = mimic_blender.batch.cli_command(sys.argv[1:]); "
                 "mimic_blender.unregister(); sys.exit(status)"]


@pytest.mark.slow  # Blender subprocesses
@pytest.mark.parametrize("command", [BATCH_MODULE, BATCH_COMMAND], ids=["python -m", "cli_command"])
def test_batch(addon, shot, expected, tmp_path, command):
    out = tmp_path / "out" / "shot-animated.blend"
    out.parent.mkdir()
    args = [str(shot), "--target", "Head", "--strip", "Line01", "--style-object", "Ref", "--style-frames", "1-150",
            "--checkpoint", str(CHECKPOINT), "--python", sys.executable, "--save", str(out)]

    not_a_blend = tmp_path / "notes.blend"
    not_a_blend.write_text("not a .blend")
    for bad, error in [([*args[:2], "Missing", *args[3:]], "no object named 'Missing'"),
                       ([str(not_a_blend), *args[1:]], f"cannot open {not_a_blend}: File format is not supported")]:
        failed = subprocess.run(command + bad, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert failed.returncode == 1, failed.stderr
        lines = [line for line in failed.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"mimic: error: {error}"), failed.stderr
        assert not out.exists()

    done = subprocess.run(command + args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"mimic: saved {out}: ") and "on 'Head' from 'Line01'" in done.stderr
    assert "mimic: Generating " in done.stderr  # progress
    bpy.ops.wm.open_mainfile(filepath=str(out))
    head = bpy.data.objects["Head"]
    assert all(name.startswith("Mimic.") for name in bs.shape_key_names(head)[1:]) and mimic_actions() == \
        ["Mimic Line01"]
    assert Path(bpy.path.abspath(strip(bpy.context.scene, "Line01").sound.filepath)).is_file()  # remapped
    assert_animation(head, expected)
