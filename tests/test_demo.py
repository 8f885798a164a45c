"""`make demo` as a newcomer runs it, on a short clip: the saved .blend, the video, the contact
sheet. The .blend is read back with plain bpy (tests/blender_scene.py), not with the add-on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest
import soundfile
from blender_scene import reset, shape_key_action, shape_key_fcurves, shape_key_names, vertices_at
from paths import ROOT

from mimic.ablation import SYNTH
from mimic.synth.head import build_head

pytestmark = pytest.mark.slow  # renders

FPS = 24


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    run = subprocess.run([sys.executable, str(ROOT / "demo" / "run.py"), "--out", str(out), "--clips", "0930",
                          "--resolution", "160x90"], capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out, run.stdout


@pytest.fixture(scope="module")
def heads(demo):
    """(F, V, 3) evaluated vertices of both heads over the shot, and the shot's frames."""
    out, _ = demo
    bpy.ops.wm.open_mainfile(filepath=str(out / "mimic_demo.blend"))
    scene = bpy.context.scene
    frames = range(scene.frame_start, scene.frame_end + 1)
    result = {name: vertices_at(bpy.data.objects[f"Head.{name}"], frames) for name in ("Wide", "Tight")}
    result["references"] = {name: vertices_at(bpy.data.objects[f"Ref.{name}"], range(1, 171, 3))  # 7.1 s performance
                            for name in ("Wide", "Tight")}
    result["keys"] = {name: shape_key_names(bpy.data.objects[f"Head.{name}"]) for name in ("Wide", "Tight")}
    result["actions"] = {name: (shape_key_action(bpy.data.objects[f"Head.{name}"]).name,
                                len(shape_key_fcurves(bpy.data.objects[f"Head.{name}"]))) for name in ("Wide", "Tight")}
    result["frames"] = frames
    reset()
    return result


def test_prints_what_it_made_and_how_long_it_took(demo):
    out, stdout = demo
    for name in ("mimic_demo.blend", "mimic_demo.mp4", "contact_sheet.png"):
        assert str(out / name) in stdout
    for step in ("the shot", "add-on batch job", "render", "in all"):
        assert step in stdout


def test_video_has_the_dialogue_and_the_sheet_is_a_grid(demo):
    out, _ = demo
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out / "mimic_demo.mp4")],
                           capture_output=True, text=True, check=True)
    streams = {s["codec_type"]: s for s in json.loads(probe.stdout)["streams"]}
    assert streams["video"]["width"] == 160 and streams["video"]["height"] == 90
    seconds = soundfile.info(out / "dialogue.wav").duration
    assert abs(float(streams["audio"]["duration"]) - seconds) < 0.3
    assert abs(float(streams["video"]["duration"]) - seconds) < 0.5
    image = bpy.data.images.load(str(out / "contact_sheet.png"))
    try:
        assert tuple(image.size) == (4 * 160 + 3 * 4, 2 * 90 + 4)
    finally:
        bpy.data.images.remove(image)


def test_both_heads_carry_a_mimic_result(heads):
    for name in ("Wide", "Tight"):
        keys = heads["keys"][name]
        assert keys[0] == "Basis" and len(keys) > 2 and all(k.startswith("Mimic.") for k in keys[1:])
        action, curves = heads["actions"][name]
        assert "Dialogue" in action and curves == len(keys) - 1


def test_references_play_their_caches(heads):
    motion = {}
    for name, cache in heads["references"].items():
        assert np.abs(cache - cache[0]).max() > 2e-3, name               # the cache plays
        motion[name] = np.linalg.norm(cache - cache[0], axis=-1).mean()
    assert motion["Wide"] > 1.5 * motion["Tight"]                        # two different performances


def test_mouth_follows_the_speech_and_the_styles_differ(demo, heads):
    out, _ = demo
    head = build_head(SYNTH["vertices"])
    audio, rate = soundfile.read(out / "dialogue.wav", dtype="float32")
    hop = rate / FPS
    envelope = np.array([np.sqrt(np.mean(np.square(audio[int((f - 1) * hop):int(f * hop)])))
                         if (f - 1) * hop < len(audio) else 0.0 for f in heads["frames"]])
    opening = {}
    for name in ("Wide", "Tight"):
        v = heads[name]
        gap = np.linalg.norm(v[:, head.upper_edge] - v[:, head.lower_edge], axis=-1).mean(axis=1)  # (F,) m
        quiet, loud = envelope < 0.1 * envelope.max(), envelope > 0.5 * envelope.max()
        assert gap.max() > 2e-3 and gap[quiet].mean() < 0.3 * gap[loud].mean(), name  # opens to speak, closes in pauses
        assert np.corrcoef(gap, envelope)[0, 1] > 0.5, name              # and opens when the speech is loud
        opening[name] = gap.mean()
    assert opening["Wide"] > 1.5 * opening["Tight"]                      # the wide style opens wider
    lips = head.regions["lips"]
    assert np.linalg.norm(heads["Wide"][:, lips] - heads["Tight"][:, lips], axis=-1).mean() > 1e-3
