"""The button's whole job on a warm backend (`make bench` runs it in its own process):

    .venv/bin/python -m benchmarks.click CHECKPOINT SPEECH.wav [--repeat N]

Real Blender (bpy), the add-on's job code as the N-panel button runs it (`job.run`: read the
strip's sound and the reference's animation, encode the style, generate, compress, write the
shape keys and their Action), a real `mimic serve` with the checkpoint, on a 5,023-vertex head at
25 fps and a sound strip of the given speech. The first run starts the backend and loads the
model (cold); the next runs find it warm. Prints one JSON line: {"cold": s, "warm": [s, ...],
"summary": the job's one-line summary, "shapes": k}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import bpy
import numpy as np
import soundfile

import mimic_blender
from benchmarks.blender_write import fresh_head, head_points, smooth_fields
from mimic_blender import job, properties
from mimic_blender.core import session

VERTICES = 5023
FPS = 25
STYLE_FRAMES = (1, 150)


def build_shot(speech: str):
    """Head (still) and Ref (performing over frames 1-150 through one keyed shape key) in a 25 fps
    scene; the speech as the active sound strip from frame 1."""
    rest = head_points(VERTICES)
    head = fresh_head(rest)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    seconds = soundfile.info(speech).duration
    scene.frame_start, scene.frame_end = 1, max(STYLE_FRAMES[1], round(seconds * FPS))
    ref = bpy.data.objects.new("Ref", head.data.copy())
    scene.collection.objects.link(ref)
    ref.shape_key_add(name="Basis", from_mix=False)
    key = ref.shape_key_add(name="Talk", from_mix=False)
    field = smooth_fields(rest, 1, np.random.default_rng(0))[:, 0] * 5e-3
    key.data.foreach_set("co", (rest.ravel() + field).astype(np.float32))
    for frame in range(STYLE_FRAMES[0], STYLE_FRAMES[1] + 1, 3):
        key.value = 0.5 + 0.5 * np.sin(frame / 4.0)
        key.keyframe_insert("value", frame=frame)
    editor = scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    editor.active_strip = strips.new_sound("Line", speech, channel=1, frame_start=1)
    return head, ref, editor.active_strip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("speech")
    parser.add_argument("--repeat", type=int, default=3, help="warm runs (3)")
    args = parser.parse_args()
    mimic_blender.register()
    try:
        head, ref, strip = build_shot(args.speech)
        settings = properties.settings(bpy.context, checkpoint=args.checkpoint, python=sys.executable, device="cpu")
        style = job.Style(object=ref, frames=STYLE_FRAMES)
        times = []
        for _ in range(1 + args.repeat):
            started = time.perf_counter()
            summary = job.run(bpy.context, head, strip, style, settings)
            times.append(time.perf_counter() - started)
        result = json.loads(head.data["mimic_result"])
    finally:
        session.stop()
        mimic_blender.unregister()
    print(json.dumps({"cold": times[0], "warm": times[1:], "summary": summary, "shapes": result["k"]}))


if __name__ == "__main__":
    main()
