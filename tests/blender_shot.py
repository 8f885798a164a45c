"""The shot every test of the add-on in real Blender starts from (tests/test_blender*.py): a .blend
built in code and saved once (see blender_scene.build_shot), and its expected animation: `mimic
generate` (a subprocess) on the same trimmed audio and style. The add-on's compact result (shape
keys + keyed weights) must stay within its error bound of it at every checked frame, after
Blender's depsgraph has evaluated the keys. conftest.py imports the fixtures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import blender_scene as bs
import bpy
import numpy as np
import pytest
import soundfile
from blender_addon import backend_pid, serving
from paths import CHECKPOINT, IO, LINE, ROOT

BOUND = 1e-4  # the add-on's default error bound (0.1 mm), model units
SLACK = 1e-6  # float32 arithmetic in Blender's shape-key mix
RATE = 16000

try:
    import aud  # (Blender's audio module: importable once bpy is)
except ImportError:  # a bpy built without audio (PyPI's 4.2): the add-on has the backend decode the strip's sound
    aud = None


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def shot(addon, tmp_path_factory) -> Path:
    """The shot .blend (see blender_scene.build_shot), the speech beside it on a relative path,
    the Mimic panel set to: style from Ref, frames 1-150."""
    folder = tmp_path_factory.mktemp("shot")
    sound = folder / "line01.wav"
    shutil.copy(LINE, sound)
    with np.load(IO) as io:
        template, motion = io["template"].reshape(-1, 3), io["style_motion"].reshape(150, -1, 3)
    scene = bs.build_shot(template, motion, sound)
    settings = scene.mimic
    settings.style_source, settings.style_object = "OBJECT", bpy.data.objects["Ref"]
    settings.style_start, settings.style_end = bs.STYLE_FRAMES
    path = folder / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.file.make_paths_relative()
    bpy.ops.wm.save_mainfile()
    assert strip(scene, "Line01").sound.filepath == "//line01.wav"
    return path


@dataclass
class Expected:
    """`mimic generate --fps 24` on the shot's trimmed audio, style Ref frames 1-150."""
    first: int  # scene frame of vertices[0]
    frames: int  # scene frames the strip plays
    vertices: np.ndarray  # (T, V, 3) absolute, Head's rest + motion
    rest: np.ndarray  # (V, 3) Head's rest
    style: np.ndarray  # (150, V, 3) Ref's evaluated vertices
    folder: Path


@pytest.fixture(scope="session")
def expected(shot, tmp_path_factory) -> Expected:
    folder = tmp_path_factory.mktemp("expected")
    bpy.ops.wm.open_mainfile(filepath=str(shot))
    scene = bpy.context.scene
    line = strip(scene, "Line01")
    assert (line.frame_start, line.frame_final_start) == (bs.STRIP_START, bs.FIRST_FRAME)
    frames = line.frame_final_end - line.frame_final_start
    assert line.frame_final_end == bs.STRIP_START + round(7.1 * bs.FPS) - bs.TRIM_END  # the end is trimmed too
    style = bs.vertices_at(bpy.data.objects["Ref"], range(bs.STYLE_FRAMES[0], bs.STYLE_FRAMES[1] + 1))
    rest = bs.mesh_vertices(bpy.data.objects["Head"])
    assert np.abs(style - rest).max() > 1e-3  # Ref really moves

    # The audio cut as the add-on must cut it: what the strip plays (the file is 16 kHz mono).
    samples, rate = soundfile.read(shot.parent / "line01.wav", dtype="float32")
    assert rate == RATE
    start = round(bs.TRIM_START / bs.FPS * RATE)
    soundfile.write(folder / "speech.wav", samples[start:start + round(frames / bs.FPS * RATE)], RATE, subtype="FLOAT")
    np.save(folder / "style.npy", style)
    np.save(folder / "template.npy", rest)
    vertices = mimic_generate(folder, folder / "speech.wav")
    assert frames - 1 <= len(vertices) <= frames
    return Expected(bs.FIRST_FRAME, frames, vertices, rest, style, folder)


def mimic_generate(folder: Path, audio: Path) -> np.ndarray:
    """`mimic generate --fps 24` of `audio` with folder's style.npy and template.npy: (T, V, 3)."""
    out = audio.with_suffix(".npy")
    done = subprocess.run([sys.executable, "-m", "mimic.cli", "generate", "--checkpoint", str(CHECKPOINT),
                           "--audio", str(audio), "--style", str(folder / "style.npy"),
                           "--template", str(folder / "template.npy"), "--out", str(out),
                           "--fps", str(bs.FPS)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return np.load(out)


@pytest.fixture
def scene(addon, shot):
    """A fresh copy of the shot, Head active; the Preferences as the session set them."""
    bpy.ops.wm.open_mainfile(filepath=str(shot))
    assert addon.prefs.checkpoint == str(CHECKPOINT)
    return bpy.context.scene


# ------------------------------------------------------------------------------------- helpers


def strip(scene, name):
    return next(s for s in all_strips(scene) if s.name == name)


def all_strips(scene):
    editor = scene.sequence_editor
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def stop_backend(session) -> None:
    """session.stop(), then check the backend process is gone (not some other test's)."""
    pid = backend_pid(session)
    session.stop()
    assert session._backend is None
    assert pid is None or not serving(pid), f"backend {pid} is still running"


def speaker_style(**options) -> None:
    """The button, headless (bpy.app.background: execute runs synchronously)."""
    assert bpy.app.background
    assert bpy.ops.mimic.speaker_style(**options) == {"FINISHED"}


def checked_frames(expected: Expected) -> list[int]:
    """Before the strip, its first frames, the middle, its last frames, after it."""
    first, last = expected.first, expected.first + min(expected.frames, len(expected.vertices)) - 1
    return [1, first - 1, first, first + 1, first + expected.frames // 2, last - 1, last, expected.first +
            expected.frames, 219]


def assert_animation(obj, expected: Expected, scale: float = 1.0) -> None:
    """obj's evaluated vertices match `mimic generate` (its rest and offsets ×scale) within the
    bound at checked_frames; outside the strip obj rests."""
    rest = expected.rest * scale
    frames = checked_frames(expected)
    for frame, got in zip(frames, bs.vertices_at(obj, frames)):
        i = frame - expected.first
        inside = 0 <= i < expected.frames
        want = rest + (expected.vertices[i] - expected.rest) * scale if inside else rest
        error = np.linalg.norm(got - want, axis=1).max()
        assert error <= (BOUND + SLACK) * scale, f"frame {frame}: {error:.3g} from mimic generate"
        if inside and i > 0:
            assert np.abs(got - rest).max() > 10 * BOUND * scale, f"frame {frame} does not move"


def assert_untouched(obj, rest: np.ndarray) -> None:
    assert bs.shape_key_names(obj) == []
    assert bs.shape_key_action(obj) is None
    assert "mimic_result" not in obj.data
    assert np.array_equal(bs.mesh_vertices(obj), rest)
    assert np.array_equal(bs.vertices_at(obj, [40])[0], rest)


def style_code(item) -> list[float]:
    """A library style's code, as the .blend stores it."""
    return json.loads(item.code)


def mimic_actions() -> list[str]:
    return sorted(action.name for action in bpy.data.actions if action.get("mimic"))


def object_style(addon):
    return addon.job.Style(object=bpy.data.objects["Ref"], frames=bs.STYLE_FRAMES)
