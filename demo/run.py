"""`make demo`: one line of real speech, animated in two speaking styles by the add-on, headless.

1. the dialogue: held-out LibriVox clips (Debian pocketsphinx-testdata) the demo model never heard;
2. two reference performances of another clip by the synthetic rig (`mimic synth`'s), one wide and
   slow, one tight and quick, by two performers with their own faces, as point caches (.pc2);
3. the shot (demo/scene.py): two copies of the demo model's head, the dialogue as a sound strip,
   the performers playing their caches;
4. the add-on's batch job (`python -m mimic_blender.batch`, the code the N-panel button runs),
   twice: each head in one performer's style, against a `mimic serve` backend;
5. a Workbench render of the two heads, an MP4 with the dialogue muxed in (ffmpeg) and a PNG
   contact sheet.

    python demo/run.py [--out demo/out] [--clips 0880,0930] [--resolution 640x360] [--no-render]

The model is models/synth-demo (docs/models.md): trained by `mimic train` on `mimic synth` data.
It is a model of the synthetic rig's faces, not of real ones.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scene  # demo/scene.py, beside this script: the bpy side

from mimic.ablation import SYNTH  # the benchmark the demo model was trained on
from mimic.synth import phonemes as ph
from mimic.synth.head import build_head
from mimic.synth.rig import Rig, Style, identity_template

ROOT = Path(__file__).resolve().parent.parent

MODEL = ROOT / "models" / "synth-demo"
CLIP_PREFIX = "sense_and_sensibility_01_austen_64kb-"
REFERENCE_CLIP = "0870"  # 7.1 s, read by the performers
STYLES = {  # name: (caption, rig style, performer identity seed)
    "Wide": ("wide and slow", Style(amplitude=1.5, rounding=1.7, jaw=1.4, asymmetry=0.0, lead=-0.04, smoothness=2.0,
                                    brow=1.5, blink_rate=8.0), 101),
    "Tight": ("tight and quick", Style(amplitude=0.6, rounding=0.4, jaw=0.6, asymmetry=0.3, lead=0.06, smoothness=0.6,
                                       brow=0.0, blink_rate=25.0), 202),
}


class Steps:
    """Runs and times the demo's steps, and prints what each made."""

    def __init__(self):
        self.times: list[tuple[str, float]] = []

    def run(self, title: str, work, *args):
        print(f"[demo] {title} ...", flush=True)
        started = time.perf_counter()
        try:
            result = work(*args)
        except subprocess.CalledProcessError as e:
            raise SystemExit(f"[demo] {title} failed (exit code {e.returncode}); the lines above say why") from None
        self.times.append((title, time.perf_counter() - started))
        print(f"[demo] {title}: {self.times[-1][1]:.1f} s", flush=True)
        return result


def clip(name: str) -> ph.Clip:
    for c in ph.librivox_clips():
        if c.name == CLIP_PREFIX + name:
            return c
    raise SystemExit(f"demo: no LibriVox clip {CLIP_PREFIX + name} "
                     "(install Debian's pocketsphinx-testdata: make setup)")


def write_dialogue(names: list[str], path: Path) -> float:
    """The clips one after another, 0.3 s apart, as a 16 kHz wav; returns its length in seconds."""
    gap = np.zeros(int(0.3 * ph.SAMPLE_RATE), np.float32)
    parts = [part for name in names for part in (ph.load_clip(clip(name)), gap)][:-1]
    audio = np.concatenate(parts)
    ph.write_wav(path, audio)
    return len(audio) / ph.SAMPLE_RATE


def write_references(head, out: Path, fps: float) -> dict[str, tuple[np.ndarray, Path, int]]:
    """Each style's performer: neutral face, .pc2 of the performance at `fps`, its frame count."""
    reference = clip(REFERENCE_CLIP)
    utt = ph.utterance(ph.load_clip(reference), reference.text)
    rig = Rig(head)
    made = {}
    for name, (_, style, seed) in STYLES.items():
        neutral = identity_template(head, seed)
        frames = neutral + rig.animate(utt, style, seed, fps)
        scene.write_pc2(out / f"reference_{name.lower()}.pc2", frames, fps)
        made[name] = (neutral, out / f"reference_{name.lower()}.pc2", len(frames))
    return made


def animate(shot: Path, out: Path, references: dict) -> None:
    """The add-on's batch job, once per style; each run reads the previous one's file."""
    source = shot
    for name, (_, _, frames) in references.items():
        subprocess.run([sys.executable, "-m", "mimic_blender.batch", str(source), "--target", f"Head.{name}",
                        "--strip", "Dialogue", "--style-object", f"Ref.{name}", "--style-frames", f"1-{frames}",
                        "--checkpoint", str(MODEL), "--python", sys.executable, "--save", str(out)],
                       check=True, cwd=ROOT)
        source = out


def render(blend: Path, out: Path, dialogue: Path) -> tuple[Path, Path]:
    """Frames (Workbench), then the MP4 with the dialogue and a 4 x 2 contact sheet."""
    frames = out / "frames"
    shutil.rmtree(frames, ignore_errors=True)
    count = scene.render_frames(blend, frames)
    video, sheet = out / "mimic_demo.mp4", out / "contact_sheet.png"
    ffmpeg = ["ffmpeg", "-loglevel", "error", "-y", "-framerate", str(scene.FPS), "-i", str(frames / "%04d.png")]
    subprocess.run([*ffmpeg, "-i", str(dialogue), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-shortest", str(video)], check=True)
    every = max(count // 8, 1)
    subprocess.run([*ffmpeg, "-vf", f"select='not(mod(n,{every}))',tile=4x2:padding=4", "-frames:v", "1",
                    "-update", "1", str(sheet)], check=True)
    return video, sheet


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python demo/run.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "demo" / "out"), help="output folder (default: demo/out)")
    ap.add_argument("--clips", default="0880,0930", help="LibriVox clips of the dialogue (default: the two the "
                                                         "demo model never heard, 6.6 s)")
    ap.add_argument("--resolution", default="640x360", help="render size WxH (default: 640x360)")
    ap.add_argument("--no-render", action="store_true", help="stop after saving the .blend")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.resolution.lower().split("x"))
    if not (MODEL / "config.json").is_file():
        raise SystemExit(f"demo: no demo model at {MODEL} (a fresh clone has it; see docs/models.md)")
    vertex_count = json.loads((MODEL / "config.json").read_text())["config"]["vertex_count"]
    head = build_head(SYNTH["vertices"])
    if vertex_count != head.vertex_count:
        raise SystemExit(f"demo: {MODEL} animates {vertex_count} vertices, the demo head has "
                         f"{head.vertex_count}: retrain it (docs/models.md)")

    steps, started = Steps(), time.perf_counter()
    seconds = steps.run("dialogue (LibriVox)", write_dialogue, args.clips.split(","), out / "dialogue.wav")
    references = steps.run("reference performances (rig, 2 styles)", write_references, head, out, scene.FPS)
    shot, blend = out / "shot.blend", out / "mimic_demo.blend"
    steps.run("the shot", scene.build_shot, shot, head.vertices, head.faces, out / "dialogue.wav", seconds,
              {name: (neutral, cache) for name, (neutral, cache, _) in references.items()},
              {name: caption for name, (caption, _, _) in STYLES.items()}, (width, height))
    steps.run("add-on batch job x 2 (mimic serve backend)", animate, shot, blend, references)
    made = [(blend, "open it in Blender and press play: two heads, one dialogue, two styles")]
    if not args.no_render:
        video, sheet = steps.run("render (Workbench) + ffmpeg", render, blend, out, out / "dialogue.wav")
        made += [(video, f"{width}x{height} preview with the dialogue"), (sheet, "contact sheet, 8 frames")]

    print("\n[demo] made:")
    for path, what in made:
        print(f"  {path}  ({path.stat().st_size / 1e6:.1f} MB) - {what}")
    print(f"[demo] {seconds:.1f} s of dialogue; steps:")
    for title, took in steps.times:
        print(f"  {took:7.1f} s  {title}")
    print(f"  {time.perf_counter() - started:7.1f} s  in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
