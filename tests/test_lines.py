"""`mimic lines` for real: Blender subprocesses (`python -m mimic_blender.lines`, and the registered
`blender --command mimic lines` entry), a real `mimic serve` with the demo model, real speech
(LibriVox at 16 kHz, espeak-ng at 22.05 kHz), the Open Job Description template run by `openjd
run`, the Flamenco job type compiled by node. Results are checked against `mimic generate` and
read back independently of the add-on: the .blend with plain bpy, the .glb with pygltflib.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Keep Blender (and its subprocesses) away from the user's Blender config; before bpy is imported.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="mimic-test-blender-user-"))

import blender_scene as bs  # noqa: E402
import bpy  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile  # noqa: E402
from paths import ROOT, SPEECH  # noqa: E402
from pygltflib import GLTF2  # noqa: E402

from mimic.ablation import SYNTH  # noqa: E402
from mimic.checkpoint import load_model  # noqa: E402
from mimic.generate import Generator  # noqa: E402
from mimic.synth import phonemes as ph  # noqa: E402
from mimic.synth.head import build_head  # noqa: E402
from mimic.synth.rig import Rig, Style, identity_template  # noqa: E402

pytestmark = pytest.mark.slow  # Blender subprocesses, the farm tools

MODEL = ROOT / "models" / "synth-demo"
FPS = 24
BOUND = 1e-4  # the default error bound (model units: metres)
SLACK = 1e-6  # float32 arithmetic in Blender's shape-key mix
LINES = [sys.executable, "-m", "mimic_blender.lines"]
# `blender --command mimic lines ...` without a blender binary: the add-on's registered command
# function, called as Blender calls it (after register(), before unregister()).
COMMAND = [sys.executable, "-c", "import sys, mimic_blender; mimic_blender.register(); "
           "status = mimic_blender.batch.cli_command(sys.argv[1:]); mimic_blender.unregister(); sys.exit(status)"]
ADD_LIBRARY_STYLE = ("import json, sys, bpy, mimic_blender; mimic_blender.register(); "
                     "bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); item = bpy.context.scene.mimic.styles.add(); "
                     "item.name, item.code, item.checkpoint = sys.argv[2], sys.argv[3], sys.argv[4]; "
                     "bpy.ops.wm.save_mainfile(); mimic_blender.unregister()")
CLEAN = "id,audio,style,start\na,speech/a.wav,Wide,\nb,speech/b.wav,,40\nc,speech/c.wav,Wide,7\n"


@dataclass
class Character:
    folder: Path
    blend: Path
    rest: np.ndarray  # (V, 3) the head's rest vertices
    styles: dict[str, tuple[Path, Path]]  # name -> (vertices .npy, neutral .npy) of the performer


def performer(head, utt, style: Style, seed: int) -> tuple[np.ndarray, np.ndarray]:
    neutral = identity_template(head, seed)
    return (neutral + Rig(head).animate(utt, style, seed, FPS)).astype(np.float32), neutral.astype(np.float32)


@pytest.fixture(scope="module")
def character(tmp_path_factory) -> Character:
    """A folder with character.blend (the demo head "Head", 24 fps, the style "Wide" in its library),
    the style file tight.npz, and speech: a.wav, c.wav (LibriVox, 16 kHz), b.wav (espeak-ng,
    22.05 kHz), damaged.wav; the manifests lines.csv (every kind of bad line) and clean.csv."""
    folder = tmp_path_factory.mktemp("character")
    speech = folder / "speech"
    speech.mkdir()
    for name, clip in (("a", "0880"), ("c", "0930")):
        shutil.copy(SPEECH / f"sense_and_sensibility_01_austen_64kb-{clip}.wav", speech / f"{name}.wav")
    subprocess.run(["espeak-ng", "-w", str(speech / "b.wav"), "Halt. Who goes there? State your business."],
                   check=True, timeout=60)
    assert soundfile.info(speech / "b.wav").samplerate == 22050
    (speech / "damaged.wav").write_bytes(b"RIFF" + bytes(300))

    head = build_head(SYNTH["vertices"])
    reference = next(c for c in ph.librivox_clips() if c.name.endswith("0870"))
    utt = ph.utterance(ph.load_clip(reference), reference.text)
    styles = {}
    for name, style, seed in (("Wide", Style(amplitude=1.5, jaw=1.4, smoothness=2.0), 101),
                              ("Tight", Style(amplitude=0.6, jaw=0.6, smoothness=0.6), 202)):
        vertices, neutral = performer(head, utt, style, seed)
        styles[name] = folder / f"{name}-vertices.npy", folder / f"{name}-neutral.npy"
        np.save(styles[name][0], vertices)
        np.save(styles[name][1], neutral)
    tight_vertices, tight_neutral = (np.load(f) for f in styles["Tight"])
    np.savez(folder / "tight.npz", vertices=tight_vertices, template=tight_neutral)

    bs.reset()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    obj = bs.mesh_object("Head", head.vertices, scene, faces=head.faces)
    bpy.context.view_layer.objects.active = obj
    blend = folder / "character.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    # "Wide" in the library, encoded as the backend's encode_style does it.
    wide_vertices, wide_neutral = (np.load(f) for f in styles["Wide"])
    code = Generator(load_model(MODEL), "cpu").style_code(wide_vertices - wide_neutral).tolist()
    subprocess.run([sys.executable, "-c", ADD_LIBRARY_STYLE, str(blend), "Wide", json.dumps(code), str(MODEL)],
                   check=True, cwd=ROOT, capture_output=True, timeout=120)

    (folder / "lines.csv").write_text("id,audio,style,start,character\n"
                                      "a,speech/a.wav,Wide,,\n"
                                      "b,speech/b.wav,,40,\n"
                                      "gone,speech/gone.wav,,,\n"
                                      "damaged,speech/damaged.wav,,,\n"
                                      "nobody,speech/a.wav,Nobody,,\n"
                                      "guard,speech/a.wav,,,Guard\n")
    (folder / "clean.csv").write_text(CLEAN)
    return Character(folder, blend, head.vertices.astype(np.float32), styles)


def options(character: Character, out: Path, *more: str) -> list[str]:
    return [str(character.blend), "--out", str(out), "--style", str(character.folder / "tight.npz"),
            "--checkpoint", str(MODEL), "--python", sys.executable, "--device", "cpu", *more]


def run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def generate(character: Character, audio: Path, style: str, out: Path) -> np.ndarray:
    """`mimic generate --fps 24` of the head for `audio` in `style`: (T, V, 3) absolute vertices."""
    np.save(out.with_suffix(".template.npy"), character.rest)
    vertices, neutral = character.styles[style]
    done = run([sys.executable, "-m", "mimic.cli", "generate", "--checkpoint", str(MODEL), "--audio", str(audio),
                "--style", str(vertices), "--style-template", str(neutral), "--template",
                str(out.with_suffix(".template.npy")), "--out", str(out), "--fps", str(FPS), "--device", "cpu"])
    assert done.returncode == 0, done.stderr
    return np.load(out)


@pytest.fixture(scope="module")
def first_run(character, tmp_path_factory):
    """The bad-lines manifest, exporting both, into a fresh folder."""
    out = tmp_path_factory.mktemp("lines") / "out"  # made by the command
    done = run(LINES + options(character, out, "--manifest", str(character.folder / "lines.csv"), "--export", "both"))
    return out, done


def test_every_line_is_tried_and_bad_ones_are_reported(character, first_run):
    out, done = first_run
    assert done.returncode == 1, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    rows = {row["id"]: row for row in summary["results"]}
    assert [row["status"] for row in summary["results"]] == ["done", "done", "failed", "failed", "failed", "failed"]
    speech = character.folder / "speech"
    assert rows["gone"]["error"] == f"audio file not found: {speech / 'gone.wav'}"
    assert rows["damaged"]["error"].startswith(f"cannot read the sound of strip 'damaged': cannot read audio "
                                               f"{speech / 'damaged.wav'}")
    assert rows["nobody"]["error"] == "no style named 'Nobody' in the library (saved styles: Wide)"
    assert "character column(s) belong to the character feature, which is not supported yet" in rows["guard"]["error"]
    assert summary["ok"] is False and summary["lines"] == {"total": 6, "done": 2, "skipped": 0, "failed": 4,
                                                           "not run": 0}
    assert summary["exports"] == ["blend", "gltf"] and summary["range"] == [1, 6]
    assert set(summary["mean_seconds"]) == {"audio", "generate", "write", "export"}
    assert all(summary["seconds"][part] > 0 for part in ("open", "plan", "backend_start", "lines"))
    assert sorted(f.name for f in out.iterdir()) == ["a.blend", "a.glb", "a.mimic.json", "b.blend", "b.glb",
                                                     "b.mimic.json", "summary.json"]  # nothing half-written
    stderr = done.stderr.splitlines()
    progress = [line for line in stderr if line.startswith("mimic lines ")]  # the lines that reached the backend
    assert [line.split(" [")[0] for line in progress] == ["mimic lines 1/3", "mimic lines 2/3", "mimic lines 3/3"]
    assert progress[1].endswith(" lines/min] | b done")
    assert progress[2].endswith(" lines/min] failed 1 | damaged failed")
    assert f"mimic: 2 done, 0 complete already, 4 failed; summary {out / 'summary.json'}" in stderr
    assert "mimic: line 5 'nobody' failed: no style named 'Nobody' in the library (saved styles: Wide)" in stderr


@pytest.mark.parametrize("line, style, start", [("a", "Wide", 1), ("b", "Tight", 40)])
def test_each_line_is_what_mimic_generate_makes(character, first_run, tmp_path, line, style, start):
    """The .blend of the line, evaluated by Blender, against `mimic generate` on the same file (b is
    22.05 kHz: both resample it the same way); its Action named after the line, its sound a strip."""
    out, _ = first_run
    audio = character.folder / "speech" / f"{line}.wav"
    want = generate(character, audio, style, tmp_path / "want.npy")
    record = json.loads((out / f"{line}.mimic.json").read_text())
    assert record["frames"] == len(want) and record["max_error"] <= BOUND
    bpy.ops.wm.open_mainfile(filepath=str(out / f"{line}.blend"))
    scene = bpy.context.scene
    head = bpy.data.objects["Head"]
    assert (scene.frame_start, scene.frame_end) == (start, start + len(want) - 1)
    assert bs.shape_key_action(head).name == line and [a.name for a in bpy.data.actions] == [line]
    [strip] = [s for s in scene.sequence_editor.strips_all]
    assert (strip.name, strip.frame_final_start, Path(strip.sound.filepath)) == (line, start, audio)
    frames = [start - 1, start, start + 1, start + len(want) // 2, start + len(want) - 1, start + len(want)]
    for frame, got in zip(frames, bs.vertices_at(head, frames)):
        i = frame - start
        expected = want[i] if 0 <= i < len(want) else character.rest
        error = np.linalg.norm(got - expected, axis=1).max()
        assert error <= BOUND + SLACK, f"frame {frame}: {error:.3g} from mimic generate"
    assert np.abs(bs.vertices_at(head, [start + len(want) // 2])[0] - character.rest).max() > 10 * BOUND  # it moves


def accessor(gltf: GLTF2, index: int) -> np.ndarray:
    """An accessor's float data, (count,) or (count, n)."""
    a = gltf.accessors[index]
    view = gltf.bufferViews[a.bufferView]
    assert a.componentType == 5126 and not view.byteStride  # FLOAT, tightly packed
    width = {"SCALAR": 1, "VEC3": 3}[a.type]
    start = (view.byteOffset or 0) + (a.byteOffset or 0)
    data = np.frombuffer(gltf.binary_blob(), np.float32, a.count * width, start)
    return data.reshape(a.count, width) if width > 1 else data


@pytest.mark.parametrize("line, start", [("a", 1), ("b", 40)])
def test_each_glb_carries_the_morph_targets_and_their_weights_animation(character, first_run, line, start):
    out, _ = first_run
    record = json.loads((out / f"{line}.mimic.json").read_text())
    frames, shapes = record["frames"], record["shapes"]
    gltf = GLTF2().load(str(out / f"{line}.glb"))
    [mesh] = gltf.meshes
    [primitive] = mesh.primitives
    names = mesh.extras["targetNames"]
    assert names == ["Mimic.mean"] + [f"Mimic.{k:03d}" for k in range(shapes)] and len(primitive.targets) == shapes + 1
    [animation] = gltf.animations
    [channel] = animation.channels
    assert animation.name == line and channel.target.path == "weights"
    sampler = animation.samplers[channel.sampler]
    times, weights = accessor(gltf, sampler.input), accessor(gltf, sampler.output).reshape(frames, shapes + 1)
    np.testing.assert_allclose(times, np.arange(frames) / FPS, atol=1e-6)  # the audio starts at 0
    assert np.all(weights[:, 0] == 1.0)  # the mean shape

    # The glTF head (y up) at a frame in the middle, against Blender's evaluation of the line's .blend.
    base = accessor(gltf, primitive.attributes.POSITION)
    deltas = np.stack([accessor(gltf, target["POSITION"]) for target in primitive.targets])
    frame = frames // 2
    glb = base + np.einsum("k,kvc->vc", weights[frame], deltas)
    bpy.ops.wm.open_mainfile(filepath=str(out / f"{line}.blend"))
    blender = bs.vertices_at(bpy.data.objects["Head"], [start + frame])[0]
    to_gltf = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float32)  # Blender z up -> glTF y up
    rest, moved = character.rest @ to_gltf.T, blender @ to_gltf.T
    for i, position in enumerate(base):
        same = np.flatnonzero(np.abs(rest - position).max(axis=1) < 1e-6)  # lip edges share rest positions
        assert len(same) >= 1, f"glTF vertex {i} is not a vertex of the head"
        assert np.linalg.norm(moved[same] - glb[i], axis=1).min() <= BOUND, f"glTF vertex {i} moves elsewhere"
    assert len(base) >= len(character.rest)


def test_a_second_run_skips_complete_lines_and_redoes_changed_ones(character, first_run, tmp_path):
    """In a copy of the folders (complete records name no paths): nothing to redo, then one take changed."""
    out, _ = first_run
    folder = shutil.copytree(character.folder, tmp_path / "character")
    moved = Character(folder, folder / "character.blend", character.rest, character.styles)
    copy = shutil.copytree(out, tmp_path / "out")
    before = {f.name: f.stat().st_mtime_ns for f in copy.iterdir() if f.name != "summary.json"}
    command = LINES + options(moved, copy, "--manifest", str(folder / "lines.csv"), "--export", "both")
    done = run(command)
    assert done.returncode == 1  # the bad lines are still bad
    summary = json.loads((copy / "summary.json").read_text())
    assert [row["status"] for row in summary["results"]] == ["skipped", "skipped"] + ["failed"] * 4
    assert {f.name: f.stat().st_mtime_ns for f in copy.iterdir() if f.name != "summary.json"} == before

    subprocess.run(["espeak-ng", "-w", str(folder / "speech" / "b.wav"), "Who goes there?"], check=True, timeout=60)
    done = run(LINES + options(moved, copy, "--manifest", str(folder / "clean.csv"), "--from", "1", "--to", "2",
                               "--export", "blend"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((copy / "summary-1-2.json").read_text())
    assert [row["status"] for row in summary["results"]] == ["skipped", "done"] and summary["ok"] is True
    assert (copy / "a.blend").stat().st_mtime_ns == before["a.blend"]
    assert (copy / "b.blend").stat().st_mtime_ns != before["b.blend"]
    assert json.loads((copy / "b.mimic.json").read_text())["frames"] < json.loads(
        (out / "b.mimic.json").read_text())["frames"]  # the shorter take
    done = run(LINES + options(moved, copy, "--manifest", str(folder / "clean.csv"), "--from", "1", "--to", "2"))
    summary = json.loads((copy / "summary-1-2.json").read_text())
    assert done.returncode == 0 and [row["status"] for row in summary["results"]] == ["skipped", "skipped"]
    assert "backend_start" not in summary["seconds"]  # nothing to run: no backend started


def test_bad_commands_say_what_to_do(character, tmp_path):
    out = tmp_path / "out"
    for more, message in [(["--manifest", str(tmp_path / "none.csv")], "manifest not found"),
                          (["--manifest", str(character.folder / "clean.csv"), "--from", "3", "--to", "4"],
                           "--from 3 --to 4 is not a range of the manifest's 3 lines"),
                          (["--manifest", str(character.folder / "clean.csv"), "--target", "Body"],
                           "no object named 'Body'")]:
        done = run(LINES + options(character, out, *more))
        assert done.returncode == 1 and f"mimic: error: {message}" in done.stderr, done.stderr


def test_flamenco_job_type_compiles_to_the_lines_commands(character, tmp_path):
    """The job type's tasks, compiled as Flamenco Manager does it, then each run as its worker would:
    `blender {blenderArgs} --command mimic lines CHARACTER.blend ARGS` (here the add-on's command
    function, called as Blender calls it)."""
    script = ROOT / "install" / "farm" / "mimic-lines.js"
    assert subprocess.run(["node", "--check", str(script)], capture_output=True, timeout=60).returncode == 0
    out = tmp_path / "out"
    settings = {"manifest": str(character.folder / "clean.csv"), "output_dir": str(out), "line_count": 3,
                "chunk_size": 2, "device": "cpu", "export": "gltf", "style": str(character.folder / "tight.npz"),
                "checkpoint": str(MODEL), "backend_python": sys.executable, "blendfile": str(character.blend)}
    compiled = run(["node", str(ROOT / "tests" / "flamenco_compile.js"), str(script), json.dumps(settings)], 60)
    assert compiled.returncode == 0, compiled.stderr
    tasks = json.loads(compiled.stdout)["tasks"]
    assert [(t["name"], t["type"]) for t in tasks] == [("lines-1-2", "blender"), ("lines-3-3", "blender")]
    for task, (first, last) in zip(tasks, [(1, 2), (3, 3)]):
        [command] = task["commands"]
        parameters = command["parameters"]
        assert command["name"] == "blender-render" and parameters["exe"] == "{blender}"
        assert parameters["argsBefore"] == ["--command", "mimic", "lines"]
        assert parameters["blendfile"] == str(character.blend)
        assert parameters["args"] == ["--manifest", settings["manifest"], "--out", str(out), "--from", str(first),
                                      "--to", str(last), "--export", "gltf", "--device", "cpu",
                                      "--style", settings["style"], "--checkpoint", str(MODEL),
                                      "--python", sys.executable]
        done = run(COMMAND + parameters["argsBefore"][2:] + [parameters["blendfile"], *parameters["args"]])
        assert done.returncode == 0, done.stderr
    assert sorted(f.name for f in out.iterdir()) == ["a.glb", "a.mimic.json", "b.glb", "b.mimic.json", "c.glb",
                                                     "c.mimic.json", "summary-1-2.json", "summary-3-3.json"]
    bad = run(["node", str(ROOT / "tests" / "flamenco_compile.js"), str(script), json.dumps({**settings,
                                                                                          "line_count": 0})], 60)
    assert bad.returncode == 1 and "line_count must be a whole number of lines, at least 1; got 0" in bad.stderr


def test_open_job_description_template_runs_two_chunks(character, tmp_path):
    template = ROOT / "install" / "farm" / "mimic-lines" / "template.yaml"
    openjd = Path(sys.executable).parent / "openjd"
    check = run([str(openjd), "check", str(template)], 60)
    assert check.returncode == 0 and "passes validation checks" in check.stdout, check.stdout + check.stderr
    count = run([sys.executable, "-m", "mimic_blender.core.manifest", str(character.folder / "clean.csv")], 60)
    out = tmp_path / "farm out"  # a space: the parameters reach the command as whole arguments
    parameters = {"CharacterFile": str(character.blend), "Manifest": str(character.folder / "clean.csv"),
                  "OutputDir": str(out), "LineCount": count.stdout.strip(), "ChunkSize": "2", "Device": "cpu",
                  "Export": "both", "Style": str(character.folder / "tight.npz"), "Checkpoint": str(MODEL),
                  "BackendPython": sys.executable, "MimicLines": " ".join(LINES)}
    done = subprocess.run([str(openjd), "run", str(template), *[a for k, v in parameters.items()
                                                                 for a in ("-p", f"{k}={v}")]],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # -m mimic_blender from the session folder
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Chunks run: 2" in done.stdout
    for summary, ids in (("summary-1-2.json", ["a", "b"]), ("summary-3-3.json", ["c"])):
        report = json.loads((out / summary).read_text())
        assert report["ok"] and [row["id"] for row in report["results"]] == ids
        assert all(row["status"] == "done" for row in report["results"])
    for line in "abc":
        assert (out / f"{line}.blend").is_file() and (out / f"{line}.glb").is_file()
