"""The add-on in real Blender (the PyPI `bpy` module, in this process), with a real `mimic serve`
backend and real speech. Nothing is mocked: the button, the strip's sound at any rate and either
decoder, running again, cancel, the worker thread, bad inputs, a killed backend.

The extension zip is built by install/build_extension.py and loaded the way Blender loads an
installed extension (a user repository + addon_enable), once per session. Every test starts
from the same shot (tests/blender_shot.py) by opening it; opening a file keeps the add-on
and its Preferences (read_factory_settings would unload both).
"""

from __future__ import annotations

import json
import shutil
import sys
import time

import blender_scene as bs
import bpy
import numpy as np
import pytest
import soundfile
import soxr
from blender_addon import backend_pid, serving
from blender_shot import (
    BOUND,
    SLACK,
    assert_animation,
    assert_untouched,
    aud,
    checked_frames,
    mimic_actions,
    mimic_generate,
    object_style,
    speaker_style,
    stop_backend,
    strip,
)
from paths import CHECKPOINT, LINE


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


@pytest.mark.slow  # a `mimic generate` process for each rate
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
        if total and not killed:  # the backend's own progress (the client's steps come without counts)
            progress.append((done, total, stage))
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

