"""`make demo` (interim): the whole product path on bundled inputs, headless.

1. `mimic generate` on real speech (LibriVox, Debian pocketsphinx-testdata) with the bundled
   fixture model, a reference performance and a neutral head;
2. the same dialogue as a sound strip in a .blend, animated by the add-on's own batch path
   (`python -m mimic_blender.batch`, the code the N-panel button runs), saved to demo/out/.
The fixture model has random weights: it shows the plumbing, not a face that speaks well.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "demo" / "out"
FIXTURE = ROOT / "tests" / "fixtures" / "official_tiny"
SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav")

SCENE = """
import sys, numpy as np, bpy
template, reference, speech, out = np.load(sys.argv[-4]), np.load(sys.argv[-3]), sys.argv[-2], sys.argv[-1]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.fps = 24
def mesh(name, vertices):
    data = bpy.data.meshes.new(name)
    data.vertices.add(len(vertices))
    data.vertices.foreach_set("co", vertices.ravel())
    obj = bpy.data.objects.new(name, data)
    scene.collection.objects.link(obj)
    return obj
mesh("Head", template)
ref = mesh("Reference", template)
ref.shape_key_add(name="Basis")
for f, frame in enumerate(reference[:48], start=1):
    key = ref.shape_key_add(name=f"f{f}", from_mix=False)
    key.data.foreach_set("co", frame.ravel())
    for t, v in ((f - 1, 0.0), (f, 1.0), (f + 1, 0.0)):
        key.value = v
        key.keyframe_insert("value", frame=t)
editor = scene.sequence_editor_create()
strips = editor.strips if hasattr(editor, "strips") else editor.sequences
strips.new_sound("Dialogue", speech, channel=1, frame_start=1)
bpy.ops.wm.save_as_mainfile(filepath=out)
"""


def step(title: str, command: list[str]) -> None:
    started = time.perf_counter()
    print(f"[demo] {title} ...", flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    print(f"[demo] {title}: {time.perf_counter() - started:.1f} s", flush=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    io = np.load(FIXTURE / "io.npz")
    template = io["template"].reshape(-1, 3)
    reference = (io["style_motion"] + io["template"]).reshape(len(io["style_motion"]), -1, 3)
    np.save(OUT / "template.npy", template)
    np.save(OUT / "reference.npy", reference)
    checkpoint = str(FIXTURE / "checkpoint.pth")
    step("mimic generate", [sys.executable, "-m", "mimic.cli", "generate", "--checkpoint", checkpoint,
                            "--audio", str(SPEECH), "--style", str(OUT / "reference.npy"),
                            "--template", str(OUT / "template.npy"), "--out", str(OUT / "vertices.npy")])
    step("build the shot", [sys.executable, "-c", SCENE, str(OUT / "template.npy"), str(OUT / "reference.npy"),
                            str(SPEECH), str(OUT / "shot.blend")])
    step("add-on batch job", [sys.executable, "-m", "mimic_blender.batch", str(OUT / "shot.blend"), "--target", "Head",
                              "--strip", "Dialogue", "--style-object", "Reference", "--style-frames", "1-48",
                              "--checkpoint", checkpoint, "--python", sys.executable,
                              "--save", str(OUT / "mimic_demo.blend")])
    vertices = np.load(OUT / "vertices.npy")
    print(f"[demo] made {OUT / 'vertices.npy'} ({vertices.shape[0]} frames x {vertices.shape[1]} vertices at 25 fps)")
    print(f"[demo] made {OUT / 'mimic_demo.blend'} (open it in Blender and press play)")


if __name__ == "__main__":
    main()
