"""Benchmark: thousands of dialogue lines, `mimic lines` on 100 of them (real bpy, real backend).

    .venv/bin/python -m benchmarks.lines      (from the repository root; make bench-lines)

100 lines of 2-8 s speech: 50 cut from the LibriVox recordings of pocketsphinx-testdata (16 kHz),
50 spoken by espeak-ng (22.05 kHz, several voices and speeds) from their transcripts; the demo
model (models/synth-demo) animates the demo head (602 vertices) of a character .blend at 24 fps in
one performer's style (a style file). Every run is a real `python -m mimic_blender.lines`
subprocess on the CPU. Reported per run: lines per minute over the lines' own time (the summary's
`lines` seconds: Blender's start, opening the file and the backend's start are reported apart),
and the mean seconds per line of each stage (audio read, generation, writing into Blender,
export). The baseline, in the same run: the one-shot batch command once per line (a Blender
and a backend started for each), on the first 5 lines. Then the Open Job Description template:
all 100 lines as one chunk, against two chunks of 50 run at once (two `openjd run`), with torch's
default threads and with one thread per backend (also the single run once with one thread).
Exits 1 when `--export blend` makes fewer than 40 lines a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np
import soundfile

from benchmarks.clock import Clock
from mimic.ablation import SYNTH
from mimic.synth import phonemes as ph
from mimic.synth.head import build_head
from mimic.synth.rig import Rig, Style, identity_template

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "synth-demo"
TEMPLATE = ROOT / "install" / "farm" / "mimic-lines" / "template.yaml"
FPS = 24
LINES = 100
TARGET = 40.0  # lines per minute with --export blend
BASELINE_LINES = 5
VOICES = ("en-gb", "en-us", "en-gb-scotland", "en-029", "en-us+f3", "en-gb+m3")
STAGES = ("audio", "generate", "write", "export")
SECONDS = (2.0, 8.0)  # the lines' lengths
FROM_ANYWHERE = {**os.environ, "PYTHONPATH": str(ROOT)}  # -m mimic_blender from OpenJD's session folders
ONE_THREAD = {**FROM_ANYWHERE, "OMP_NUM_THREADS": "1"}  # the backend's torch on one thread


def make_speech(folder: Path, rng) -> list[Path]:
    """LINES wav files of 2-8 s, alternating: a cut of the LibriVox recordings (one after another,
    16 kHz), and espeak-ng speaking words of their transcripts (22.05 kHz)."""
    clips = ph.librivox_clips()
    recording = np.concatenate([soundfile.read(clip.path, dtype="float32")[0] for clip in clips])
    rate = soundfile.info(clips[0].path).samplerate
    words = " ".join(clip.text for clip in clips).split()
    files = []
    for n in range(LINES):
        path = folder / f"line_{n + 1:03d}.wav"
        if n % 2 == 0:
            length = int(rng.uniform(*SECONDS) * rate)
            start = int(rng.integers(len(recording) - length))
            soundfile.write(path, recording[start:start + length], rate)
        else:
            first = int(rng.integers(len(words) - 25))
            text = " ".join(words[first:first + int(rng.integers(8, 25))])
            subprocess.run(["espeak-ng", "-v", VOICES[n % len(VOICES)], "-s", str(int(rng.integers(140, 190))),
                            "-w", str(path), text], check=True, timeout=60)
            audio, speech_rate = soundfile.read(path, dtype="float32")
            soundfile.write(path, audio[:int(SECONDS[1] * speech_rate)], speech_rate)
        assert SECONDS[0] <= soundfile.info(path).duration <= SECONDS[1], (path, soundfile.info(path).duration)
        files.append(path)
    return files


def make_character(folder: Path) -> Path:
    """character.blend (the demo head "Head" at 24 fps) and the style file style.npz."""
    head = build_head(SYNTH["vertices"])
    reference = next(c for c in ph.librivox_clips() if c.name.endswith("0870"))
    neutral = identity_template(head, 101)
    performance = neutral + Rig(head).animate(ph.utterance(ph.load_clip(reference), reference.text),
                                              Style(amplitude=1.5, jaw=1.4, smoothness=2.0), 101, FPS)
    np.savez(folder / "style.npz", vertices=performance.astype(np.float32), template=neutral.astype(np.float32))
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    mesh = bpy.data.meshes.new("Head")
    mesh.from_pydata(head.vertices.tolist(), [], head.faces.tolist())
    obj = bpy.data.objects.new("Head", mesh)
    scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "character.blend"))
    return folder / "character.blend"


def lines_command(folder: Path, out: Path, export: str) -> list[str]:
    return [sys.executable, "-m", "mimic_blender.lines", str(folder / "character.blend"), "--manifest",
            str(folder / "lines.csv"), "--out", str(out), "--style", str(folder / "style.npz"), "--export", export,
            "--checkpoint", str(MODEL), "--python", sys.executable, "--device", "cpu"]


def run(command: list[str], timeout: float, env: dict = FROM_ANYWHERE) -> None:
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(command[:4])} ... failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def timed(command: list[str], timeout: float, env: dict = FROM_ANYWHERE) -> Clock:
    with Clock() as meter:
        run(command, timeout, env)
    return meter


def report_run(title: str, meter: Clock, summary: dict) -> float:
    seconds, counts = summary["seconds"], summary["lines"]
    apart = meter.seconds - sum(seconds.values())
    rate = counts["done"] / seconds["lines"] * 60 if counts["done"] else float("nan")  # "lines": run only when any
    stages = "  ".join(f"{stage} {summary['mean_seconds'].get(stage, 0.0):.3f}" for stage in STAGES)
    print(f"{title:<28} {counts['done']:>4} done {counts['skipped']:>4} skipped  {rate:7.1f} lines/min  "
          f"per line s: {stages}")
    print(f"{'':<28} apart: process start+exit {apart:.1f} s, open {seconds['open']:.2f} s, plan "
          f"{seconds['plan']:.2f} s, backend start {seconds.get('backend_start', 0.0):.1f} s; {meter}")
    return rate


def openjd(folder: Path, out: Path, chunk: str | None, chunk_size: int) -> list[str]:
    parameters = {"CharacterFile": folder / "character.blend", "Manifest": folder / "lines.csv", "OutputDir": out,
                  "LineCount": LINES, "ChunkSize": chunk_size, "Device": "cpu", "Export": "blend",
                  "Style": folder / "style.npz", "Checkpoint": MODEL, "BackendPython": sys.executable,
                  "MimicLines": f"{sys.executable} -m mimic_blender.lines"}
    command = [str(Path(sys.executable).parent / "openjd"), "run", str(TEMPLATE)]
    command += [a for key, value in parameters.items() for a in ("-p", f"{key}={value}")]
    return command + (["--tasks", json.dumps([{"Line": chunk}])] if chunk else [])


def two_chunks(folder: Path, out: Path, env: dict) -> Clock:
    """Lines 1-50 and 51-100 as two `openjd run` at once."""
    chunks = (f"1-{LINES // 2}", f"{LINES // 2 + 1}-{LINES}")
    with Clock() as meter:
        running = [subprocess.Popen(openjd(folder, out, chunk, LINES // 2), cwd=folder, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for chunk in chunks]
        codes = [process.wait(timeout=1800) for process in running]
    done = sum(json.loads((out / f"summary-{chunk}.json").read_text())["lines"]["done"] for chunk in chunks)
    if codes != [0, 0] or done != LINES:
        raise SystemExit(f"benchmark: the two OpenJD chunks ended {codes}, {done} lines done")
    return meter


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.lines", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder)")
    args = ap.parse_args(argv)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="mimic-bench-lines-")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        files = make_speech(folder, np.random.default_rng(0))
        make_character(folder)
        lengths = [soundfile.info(f).duration for f in files]
        (folder / "lines.csv").write_text("id,audio\n" + "".join(f"{f.stem},{f.name}\n" for f in files))
        print(f"bpy {bpy.app.version_string}; {os.cpu_count()} CPU cores; model {MODEL.name}; {LINES} lines of "
              f"{min(lengths):.1f}-{max(lengths):.1f} s (mean {np.mean(lengths):.1f} s, {sum(lengths) / 60:.1f} min "
              f"of speech); data made in {time.perf_counter() - started:.0f} s (not timed)\n")

        rates, walls = {}, {}
        for export in ("blend", "gltf", "both"):
            out = folder / f"out-{export}"
            meter = timed(lines_command(folder, out, export), timeout=1800)
            walls[export] = meter.seconds
            summary = json.loads((out / "summary.json").read_text())
            rates[export] = report_run(f"lines --export {export}", meter, summary)
        meter = timed(lines_command(folder, folder / "out-blend", "blend"), timeout=1800)
        report_run("again (all complete)", meter, json.loads((folder / "out-blend" / "summary.json").read_text()))
        out = folder / "out-one-thread"
        meter = timed(lines_command(folder, out, "blend"), timeout=1800, env=ONE_THREAD)
        report_run("--export blend, 1 thread", meter, json.loads((out / "summary.json").read_text()))

        with Clock() as baseline:
            for f in files[:BASELINE_LINES]:  # the line's .blend has its sound as a strip named after it
                run([sys.executable, "-m", "mimic_blender.batch", str(folder / "out-blend" / f"{f.stem}.blend"),
                     "--target", "Head", "--strip", f.stem, "--style-file", str(folder / "style.npz"), "--checkpoint",
                     str(MODEL), "--python", sys.executable, "--device", "cpu", "--save",
                     str(folder / "baseline.blend")], timeout=600)
        base_rate = BASELINE_LINES / baseline.seconds * 60
        print(f"{'baseline: batch per line':<28} {BASELINE_LINES:>4} done  {base_rate:7.1f} lines/min  (each line "
              f"starts Blender and a backend; {baseline})")

        one = timed(openjd(folder, folder / "farm-one", None, LINES), timeout=1800)
        print("\nOpenJD (openjd run, --export blend), lines/min over the wall time (Blender and backend starts in):")
        print(f"  one chunk of {LINES}:                        {LINES / one.seconds * 60:7.1f} lines/min  ({one})")
        for name, threads, env in (("default", "torch's default threads", FROM_ANYWHERE),
                                   ("one", "1 torch thread each", ONE_THREAD)):
            two = two_chunks(folder, folder / f"farm-two-{name}", env)
            print(f"  two chunks of {LINES // 2} at once, {threads:<23} {LINES / two.seconds * 60:7.1f} lines/min  "
                  f"({two}); x{one.seconds / two.seconds:.2f}")

        print(f"\nratios: lines --export blend / batch per line x{rates['blend'] / base_rate:.1f} over the lines' "
              f"time, x{LINES / walls['blend'] / base_rate * 60:.1f} over the wall time (starts included); "
              f"target >= {TARGET:.0f} lines/min with --export blend: "
              f"{'met' if rates['blend'] >= TARGET else 'MISSED'} ({rates['blend']:.1f})")
        return 0 if rates["blend"] >= TARGET else 1
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
