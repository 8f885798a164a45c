"""The `mimic` command, run as a user runs it: a subprocess on files.

Every run is a separate Python process (~5 s of imports), so all runs of this module start
together in one fixture, two at a time, and the tests then check their results."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from mimic.cli import main
from mimic.errors import MimicError
from mimic.files import atomic_npy, load_audio, load_vertices
from mimic.frames import resample

TOL = 1e-5
MIMIC = [sys.executable, "-m", "mimic.cli"]


@dataclass
class Run:
    returncode: int
    stderr: str
    out_dir: Path  # holds the output and nothing else
    out: Path


# name -> (what to change in the generate arguments, regex the one-line error must match)
BAD_INPUTS = {
    "missing audio": ({"--audio": "nowhere.wav"}, r"audio file not found: .*nowhere\.wav"),
    "corrupt audio": ({"--audio": "noise.wav"}, r"cannot read audio .*noise\.wav"),
    "empty audio": ({"--audio": "empty.wav"}, r"empty\.wav holds no samples"),
    "style vertex count": ({"--style": "style_63.npy"}, r"style .*63 vertices but the model animates 64"),
    "template with NaN": ({"--template": "template_nan.npy"}, r"template .*NaN"),
    "template of wrong dims": ({"--template": "template_64x2.npy"}, r"template .*shape \(64, 2\).*\(vertices, 3\)"),
    "unreadable checkpoint": ({"--checkpoint": "noise.pth"}, r"noise\.pth is not a .*checkpoint"),
    "fp16 on the cpu": ({"--device": "cpu", "--precision": "fp16"}, r"precision fp16 runs on CUDA GPUs only"),
}


def make_inputs(folder: Path, ref: dict) -> None:
    rng = np.random.default_rng(0)
    template = ref["template"].reshape(64, 3)
    style = (ref["style_motion"] + ref["template"]).reshape(150, 64, 3)
    soundfile.write(folder / "speech.wav", ref["speech_16k"], 16000, subtype="FLOAT")
    speech_44k = soxr.resample(ref["speech_16k"], 16000, 44100).astype(np.float32)
    soundfile.write(folder / "speech_44k_stereo.wav", np.stack([speech_44k, speech_44k], axis=1), 44100)
    np.save(folder / "template.npy", template)
    np.save(folder / "style.npy", style)
    # bad inputs
    (folder / "noise.wav").write_bytes(rng.bytes(4000))
    (folder / "noise.pth").write_bytes(rng.bytes(4000))
    soundfile.write(folder / "empty.wav", np.zeros(0, np.float32), 16000)
    np.save(folder / "style_63.npy", style[:, :63])
    nan = template.copy()
    nan[10, 1] = np.nan
    np.save(folder / "template_nan.npy", nan)
    np.save(folder / "template_64x2.npy", template[:, :2])


def mimic(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two runs at a time on a small machine
    return subprocess.run([*MIMIC, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def generate(work: Path, name: str, changes: dict | None = None, extra: tuple = (),
             checkpoint: str | Path | None = None) -> Run:
    out_dir = work / "out" / re.sub(r"\W+", "_", name)
    out_dir.mkdir(parents=True)
    options = {"--checkpoint": checkpoint or work / "checkpoint.pth", "--audio": "speech.wav", "--style": "style.npy",
               "--template": "template.npy", "--out": out_dir / "anim.npy", **(changes or {})}
    done = mimic("generate", *[x for pair in options.items() for x in pair], *extra, cwd=work)
    return Run(done.returncode, done.stderr, out_dir, out_dir / "anim.npy")


def convert_then_generate(work: Path) -> tuple[subprocess.CompletedProcess, Run]:
    converted = mimic("convert", work / "checkpoint.pth", work / "converted", cwd=work)
    return converted, generate(work, "converted", checkpoint=work / "converted")


SUBPROCESSES = pytest.mark.slow  # the tests of the `runs` fixture: 16 `mimic` processes


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ref, tiny_checkpoint) -> dict:
    work = tmp_path_factory.mktemp("cli")
    make_inputs(work, ref)
    # the checkpoint and its audio-model folder, copied: the runs must not depend on the repo's layout
    (work / "checkpoint.pth").write_bytes(tiny_checkpoint.read_bytes())
    (work / "tiny-wav2vec2").mkdir()
    (work / "tiny-wav2vec2" / "config.json").write_bytes((tiny_checkpoint.parent / "tiny-wav2vec2" / "config.json")
                                                         .read_bytes())
    jobs = {
        "demo": lambda: generate(work, "demo"),
        "fps 24": lambda: generate(work, "fps 24", extra=("--fps", "24")),
        "offsets": lambda: generate(work, "offsets", extra=("--offsets",)),
        "44.1 kHz stereo": lambda: generate(work, "44.1 kHz stereo", {"--audio": "speech_44k_stereo.wav"}),
        "convert": lambda: convert_then_generate(work),
        "fast": lambda: generate(work, "fast", {"--device": "cpu", "--precision": "fast"}),
        **{name: (lambda changes=changes, name=name: generate(work, name, changes))
           for name, (changes, _) in BAD_INPUTS.items()},
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def check_success(run: Run) -> np.ndarray:
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert re.search(r"^wrote .*anim\.npy: \d+ frames", run.stderr, re.M), run.stderr
    assert [p.name for p in run.out_dir.iterdir()] == ["anim.npy"]  # no partial or scratch files left
    out = np.load(run.out)
    assert out.dtype == np.float32 and out.ndim == 3 and out.shape[1:] == (64, 3)
    return out


def max_error(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, f"shape {a.shape}, expected {b.shape}"
    return float(np.abs(a.astype(np.float64) - b).max())


@SUBPROCESSES
def test_generate_matches_reference(runs, ref):
    out = check_success(runs["demo"])
    assert max_error(out, ref["demo_vertices"]) <= TOL
    assert "200 frames at 25 fps, 64 vertices" in runs["demo"].stderr


@SUBPROCESSES
def test_generate_fps(runs, ref):
    out = check_success(runs["fps 24"])
    assert out.shape == (round(200 * 24 / 25), 64, 3) == (192, 64, 3)
    assert max_error(out, resample(ref["demo_vertices"], 25, 24)) <= TOL
    assert "192 frames at 24 fps" in runs["fps 24"].stderr


@SUBPROCESSES
def test_generate_offsets(runs, ref):
    out = check_success(runs["offsets"])
    assert max_error(out, ref["demo_vertices"] - ref["template"].reshape(64, 3)) <= TOL


@SUBPROCESSES
def test_generate_44k_stereo(runs, ref):
    """Any rate and channel count: resampled to 16 kHz mono on the way in."""
    out = check_success(runs["44.1 kHz stereo"])
    assert abs(len(out) - 200) <= 1
    n = min(len(out), 200)
    assert np.isfinite(out).all()
    # the same speech after a resampling round trip and 16-bit samples: nearly the same animation
    # (the difference is ~4% of how much the face moves; other speech gives ~25%)
    motion = ref["demo_vertices"][:n] - ref["template"].reshape(64, 3)
    movement = np.abs(motion - motion.mean(axis=0)).mean()
    error = np.abs(out[:n] - ref["demo_vertices"][:n]).mean()
    assert error < 0.1 * movement, (error, movement)


@SUBPROCESSES
def test_convert_then_generate(runs, ref):
    converted, run = runs["convert"]
    assert converted.returncode == 0, converted.stderr
    assert "Traceback" not in converted.stderr and "64 vertices" in converted.stderr
    folder = run.out_dir.parent.parent / "converted"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    out = check_success(run)
    assert max_error(out, ref["demo_vertices"]) <= TOL


@SUBPROCESSES
def test_generate_at_the_fastest_precision(runs, ref):
    import torch

    from mimic.precision import pick_precision

    out = check_success(runs["fast"])
    precision = pick_precision("fast", torch.device("cpu"))
    assert f"on cpu, {precision})" in runs["fast"].stderr
    motion = np.linalg.norm(ref["demo_vertices"] - ref["demo_vertices"].mean(axis=0), axis=-1)
    deviation = np.linalg.norm(out - ref["demo_vertices"], axis=-1)
    assert deviation.max() <= (TOL if precision == "fp32" else 0.15 * motion.max()), (deviation.max(), motion.max())


@SUBPROCESSES
@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input(runs, case):
    run, expected = runs[case], BAD_INPUTS[case][1]
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("mimic generate: error: "), lines[0]
    assert re.search(expected, lines[0]), lines[0]
    assert list(run.out_dir.iterdir()) == []  # no output, no .partial, no scratch folder


# ------------------------------------------------------- the input checks, in process (cheap)


def write_npy_variant(path: Path, kind: str) -> None:
    template = np.zeros((64, 3), np.float32)
    if kind == "empty file":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(4).bytes(1000))
    elif kind == "truncated":
        np.save(path, template)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "object array":
        np.save(path, np.array([None] * 192, dtype=object), allow_pickle=True)
    elif kind == "complex":
        np.save(path, template.astype(np.complex64))
    elif kind == "strings":
        np.save(path, np.array(["0"] * 192))
    elif kind == "beyond float32":
        np.save(path, np.full((64, 3), 1e300))
    elif kind == "scalar":
        np.save(path, np.float32(0))


@pytest.mark.parametrize("kind", ["empty file", "random bytes", "truncated", "object array", "complex", "strings",
                                  "beyond float32", "scalar"])
def test_load_vertices_rejects(tmp_path, kind):
    path = tmp_path / "template.npy"
    write_npy_variant(path, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would be a second line on the CLI's stderr
        with pytest.raises(MimicError, match="template"):
            load_vertices(path, "template", 64, frames=False)


def test_load_vertices_accepts_flat_and_integer(tmp_path):
    np.save(tmp_path / "flat.npy", np.arange(192, dtype=np.float64))
    np.save(tmp_path / "frames.npy", np.arange(2 * 192, dtype=np.int16).reshape(2, 192))
    template = load_vertices(tmp_path / "flat.npy", "template", 64, frames=False)
    assert template.dtype == np.float32 and template.shape == (64, 3) and template[1, 0] == 3
    style = load_vertices(tmp_path / "frames.npy", "style", 64, frames=True)
    assert style.dtype == np.float32 and style.shape == (2, 64, 3) and style[1, 0, 0] == 192


def test_load_audio(tmp_path, ref):
    soundfile.write(tmp_path / "speech.flac", ref["speech_16k"], 16000)  # 16-bit FLAC
    audio = load_audio(tmp_path / "speech.flac")
    assert audio.dtype == np.float32 and audio.shape == (128000,)
    assert np.abs(audio - ref["speech_16k"]).max() < 1e-4
    soundfile.write(tmp_path / "nan.wav", np.array([0, np.nan, 0.1], np.float32), 16000, subtype="FLOAT")
    with pytest.raises(MimicError, match="NaN"):
        load_audio(tmp_path / "nan.wav")


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_npy(tmp_path / "out.npy", (3, 64, 3)) as out:
            out[:] = 1
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic_npy(tmp_path / "out.npy", (3, 64, 3)) as out:
        out[:] = 2
    assert [p.name for p in tmp_path.iterdir()] == ["out.npy"] and (np.load(tmp_path / "out.npy") == 2).all()
    with pytest.raises(MimicError, match="must end in .npy"):
        with atomic_npy(tmp_path / "out.txt", (1,)):
            pass
    with pytest.raises(MimicError, match="does not exist"):
        with atomic_npy(tmp_path / "nowhere" / "out.npy", (1,)):
            pass


@pytest.mark.parametrize("fps", ["0", "-24", "nan", "inf"])
def test_bad_fps(tmp_path, capsys, fps):
    """Refused before anything is loaded (in process: main() is the command's entry point)."""
    code = main(["generate", "--checkpoint", str(tmp_path / "none.pth"), "--audio", "a.wav", "--style", "s.npy",
                 "--template", "t.npy", "--out", str(tmp_path / "out.npy"), "--fps", fps])
    assert code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["mimic generate: error: --fps must be a positive number"], err
    assert list(tmp_path.iterdir()) == []
