"""The add-on in real Blender (the PyPI `bpy` module, in this process), with a real `mimic serve`
backend and real speech. Nothing is mocked.

The extension zip is built by install/build_extension.py and loaded the way Blender loads an
installed extension (a user repository + addon_enable), once per session. Every test starts
from the same shot (built in code, saved once) by opening it; opening a file keeps the add-on
and its Preferences (read_factory_settings would unload both).

The reference for the animation is `mimic generate` (a subprocess) on the same trimmed audio and
style: the add-on's compact result (shape keys + keyed weights) must stay within its error
bound of it at every checked frame, after Blender's depsgraph has evaluated the keys.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import blender_scene as bs  # noqa: E402
import bpy  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402
from blender_addon import backend_pid, serving  # noqa: E402
from paths import CHECKPOINT, IO, LINE, ROOT  # noqa: E402

BOUND = 1e-4  # the add-on's default error bound (0.1 mm), model units
SLACK = 1e-6  # float32 arithmetic in Blender's shape-key mix
RATE = 16000

try:
    import aud  # noqa: E402  (Blender's audio module: importable once bpy is)
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


# ---------------------------------------------------------------------------------------- tests


def test_button_animates_the_head_like_mimic_generate(addon, scene, expected):
    head = bpy.data.objects["Head"]
    scene.frame_set(5)
    speaker_style()
    assert scene.frame_current == 5  # reading Ref's animation went through frames 1-150 and back
    assert_animation(head, expected)
    names = bs.shape_key_names(head)
    assert names[0] == "Basis" and "Mimic.mean" in names and len(names) >= 3
    assert all(name.startswith("Mimic.") for name in names[1:])
    assert mimic_actions() == ["Mimic Line01"]
    assert bs.shape_key_action(head).name == "Mimic Line01"
    result = json.loads(head.data["mimic_result"])
    assert result["strip"] == "Line01" and result["k"] == len(names) - 2 and result["max_error"] <= BOUND
    assert np.array_equal(bs.mesh_vertices(head), expected.rest)  # the mesh itself is not moved


@pytest.fixture(params=["aud", "backend"])
def decoder(request, monkeypatch) -> str:
    """Who decodes the strip's sound: Blender's aud, or (a Blender without aud) the backend."""
    if request.param == "aud" and aud is None:
        pytest.skip("this bpy has no aud module")
    if request.param == "backend":
        monkeypatch.setitem(sys.modules, "aud", None)  # `import aud` fails, as in a Blender built without it
    return request.param


def test_aud_reads_the_line_as_soundfile_does():
    if aud is None:
        pytest.skip("this bpy has no aud module")
    by_aud = aud.Sound(str(LINE)).rechannel(1).data()[:, 0]
    by_soundfile, _ = soundfile.read(LINE, dtype="float32")
    assert by_aud.shape == by_soundfile.shape and np.abs(by_aud - by_soundfile).max() < 1e-4


@pytest.mark.parametrize("packed", [False, True], ids=["file", "packed"])
def test_either_decoder_gives_the_same_animation(addon, scene, expected, shot, decoder, packed):
    head = bpy.data.objects["Head"]
    line = strip(scene, "Line01")
    on_disk = shot.parent / "line01.wav"
    if packed:
        line.sound.pack()
        on_disk.rename(on_disk.with_suffix(".away"))  # only the packed copy is left to read
    try:
        speaker_style()
    finally:
        if packed:
            on_disk.with_suffix(".away").rename(on_disk)
    assert_animation(head, expected)
    assert not [f.name for f in addon.session._backend.workdir.iterdir() if "sound" in f.name or "audio" in f.name]


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_a_recording_at_any_rate_animates_as_mimic_generate_reads_the_file(addon, scene, expected, tmp_path, rate):
    """The strip (trimmed, starting at frame 30) plays a recording at `rate`: the add-on reads it at that
    rate and the backend resamples it as `mimic generate` resamples a file, so they agree at every frame."""
    if aud is None:
        pytest.skip("this bpy has no aud module")
    speech, line_rate = soundfile.read(LINE, dtype="float32")
    recording = tmp_path / f"line-{rate}.wav"
    soundfile.write(recording, soxr.resample(speech, line_rate, rate), rate, subtype="FLOAT")
    line = strip(scene, "Line01")
    line.sound = bpy.data.sounds.load(str(recording))
    assert (line.frame_final_start, line.frame_final_end - line.frame_final_start) == (expected.first, expected.frames)
    speaker_style()

    samples, _ = soundfile.read(recording, dtype="float32")
    start = round(bs.TRIM_START / bs.FPS * rate)
    played = tmp_path / "played.wav"  # what the strip plays, as a file at its own rate
    soundfile.write(played, samples[start:start + round(expected.frames / bs.FPS * rate)], rate, subtype="FLOAT")
    want = mimic_generate(expected.folder, played)
    got = bs.vertices_at(bpy.data.objects["Head"], range(expected.first, expected.first + len(want)))
    error = np.linalg.norm(got - want, axis=-1).max()
    assert error <= BOUND + SLACK, f"{error:.3g} from mimic generate on the file"
    assert np.abs(got - expected.rest).max() > 10 * BOUND  # it moves


def test_unreadable_sound_is_reported(addon, scene, expected, decoder, tmp_path):
    sound = tmp_path / "broken.wav"
    shutil.copy(LINE, sound)
    broken = bs.sound_strip(scene, "Broken", sound, frame_start=60, channel=2)
    scene.sequence_editor.active_strip = broken
    sound.write_bytes(b"RIFF" + bytes(200))  # damaged after Blender opened it
    with pytest.raises(RuntimeError, match="cannot read the sound of strip 'Broken'"):
        bpy.ops.mimic.speaker_style()
    assert_untouched(bpy.data.objects["Head"], expected.rest)


def test_running_again_replaces_the_result(addon, scene, expected):
    head = bpy.data.objects["Head"]
    speaker_style()
    once = bs.shape_key_names(head)
    speaker_style()
    assert bs.shape_key_names(head) == once
    assert mimic_actions() == ["Mimic Line01"]  # not "Mimic Line01.001": the old one was removed
    assert_animation(head, expected)


def test_cancel_changes_nothing(addon, scene, expected):
    head = bpy.data.objects["Head"]
    settings = addon.properties.settings(bpy.context)
    inputs = addon.job.gather(bpy.context, head, strip(scene, "Line01"), object_style(addon), settings)
    with pytest.raises(addon.errors.BackendError) as failure:
        addon.compute.compute(inputs, settings, cancelled=lambda: True)
    assert failure.value.code == "cancelled"
    assert_untouched(head, expected.rest)

    # With a result in place: a cancelled run leaves it as it was.
    speaker_style()
    names, before = bs.shape_key_names(head), bs.vertices_at(head, checked_frames(expected))
    with pytest.raises(addon.errors.BackendError) as failure:
        addon.compute.compute(inputs, settings, cancelled=lambda: True)
    assert failure.value.code == "cancelled"
    assert bs.shape_key_names(head) == names and mimic_actions() == ["Mimic Line01"]
    assert np.array_equal(bs.vertices_at(head, checked_frames(expected)), before)
    # The backend survived the cancel and still works.
    addon.job.run(bpy.context, head, strip(scene, "Line01"), object_style(addon), settings)
    assert_animation(head, expected)


def run_worker(addon, inputs, settings, on_first_progress=lambda worker: None):
    """Drive the modal operator's core by hand (timers never fire in the bpy module): compute on
    a Worker thread, polled like the modal timer polls it. Returns every event."""
    worker = addon.worker.Worker(lambda progress, cancelled: addon.compute.compute(
        inputs, settings, lambda done, total, stage: progress(done / max(total, 1), stage), cancelled),
        addon.operators.FAILURES).start()
    events, deadline = [], time.monotonic() + 300
    while not events or events[-1][0] == "progress":
        assert time.monotonic() < deadline, "the worker never finished"
        new = worker.poll()
        if new and not events:
            on_first_progress(worker)
        events += new
        time.sleep(0.05)
    return events


def test_worker_thread_runs_and_cancels_like_the_modal_operator(addon, scene, expected):
    head = bpy.data.objects["Head"]
    settings = addon.properties.settings(bpy.context)
    inputs = addon.job.gather(bpy.context, head, strip(scene, "Line01"), object_style(addon), settings)
    events = run_worker(addon, inputs, settings)
    progress = [payload for kind, payload in events if kind == "progress"]
    for stage in {stage for _, stage in progress}:  # each stage's progress moves forward, to its end
        fractions = [fraction for fraction, name in progress if name == stage]
        assert fractions == sorted(fractions), stage
    assert progress and progress[-1][0] == 1.0 and len({stage for _, stage in progress}) >= 2
    kind, outputs = events[-1]
    assert kind == "done"
    addon.job.apply(bpy.context, inputs, outputs, settings)
    assert_animation(head, expected)

    before = bs.vertices_at(head, checked_frames(expected))
    inputs.audio.samples = np.tile(inputs.audio.samples, 10)  # long enough to be cancelled mid-run
    events = run_worker(addon, inputs, settings, on_first_progress=lambda worker: worker.cancel.set())
    kind, failure = events[-1]
    assert kind == "failed" and failure.code == "cancelled"
    assert np.array_equal(bs.vertices_at(head, checked_frames(expected)), before)


def test_opening_a_shot_in_background_mode_starts_no_backend(addon, shot):
    stop_backend(addon.session)
    bpy.ops.wm.open_mainfile(filepath=str(shot))  # it has Mimic data (a style source), so a window would prewarm
    assert addon.prewarm.has_mimic_data() and addon.prewarm.on_load_post in bpy.app.handlers.load_post
    time.sleep(0.5)
    assert addon.session._backend is None and not addon.session._lock.locked()


def test_wrong_vertex_count_is_refused(addon, scene):
    small = bs.mesh_object("Small", np.random.default_rng(0).normal(size=(10, 3)) * 0.1, scene)
    rest = bs.mesh_vertices(small)
    bpy.context.view_layer.objects.active = small
    with pytest.raises(RuntimeError, match="'Small' has 10 vertices but the model animates 64"):
        bpy.ops.mimic.speaker_style()
    assert_untouched(small, rest)
    assert mimic_actions() == []
    stop_backend(addon.session)


def test_missing_sound_file_is_reported(addon, scene, expected, tmp_path):
    sound = tmp_path / "gone.wav"
    shutil.copy(LINE, sound)
    gone = bs.sound_strip(scene, "Gone", sound, frame_start=60, channel=2)
    scene.sequence_editor.active_strip = gone
    sound.unlink()
    with pytest.raises(RuntimeError, match=f"sound file of strip 'Gone' not found: {sound}"):
        bpy.ops.mimic.speaker_style()
    assert_untouched(bpy.data.objects["Head"], expected.rest)
    stop_backend(addon.session)


def test_unreadable_checkpoint_is_reported(addon, scene, expected, tmp_path):
    garbage = tmp_path / "model.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    addon.prefs.checkpoint = str(garbage)
    try:
        with pytest.raises(RuntimeError, match=f"{garbage} is not a PyTorch checkpoint"):
            bpy.ops.mimic.speaker_style()
        assert_untouched(bpy.data.objects["Head"], expected.rest)
    finally:
        addon.prefs.checkpoint = str(CHECKPOINT)
    stop_backend(addon.session)


@pytest.mark.slow  # a minute of speech, then a second backend
def test_backend_killed_mid_run_then_restarted(addon, scene, expected):
    head = bpy.data.objects["Head"]
    settings = addon.properties.settings(bpy.context)
    inputs = addon.job.gather(bpy.context, head, strip(scene, "Line01"), object_style(addon), settings)
    inputs.audio.samples = np.tile(inputs.audio.samples, 10)  # ~66 s: still working when killed
    killed, progress = [], []

    def kill(done, total, stage):
        progress.append((done, total, stage))
        if not killed:
            killed.append(addon.session._backend.process.pid)
            addon.session._backend.process.kill()

    with pytest.raises(addon.errors.BackendError, match="the backend stopped") as failure:
        addon.compute.compute(inputs, settings, on_progress=kill)
    assert failure.value.code == "backend_died"
    assert killed and not serving(killed[0])
    assert progress[0][0] < progress[0][1]  # killed mid-run, not after the last frame
    assert_untouched(head, expected.rest)

    addon.job.run(bpy.context, head, strip(scene, "Line01"), object_style(addon), settings)
    assert backend_pid(addon.session) != killed[0]  # a new backend
    assert_animation(head, expected)
    stop_backend(addon.session)


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
