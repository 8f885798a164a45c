"""The warm backend without Blender (core.session): started ahead of the first job on a thread,
lent to one job at a time, stopped when idle or asked; the stages a job reports; a job cancelled
while it waits. Real `mimic serve` processes throughout."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from paths import CHECKPOINT, IO

from mimic import protocol as p
from mimic_blender.core import compute, session, stages
from mimic_blender.core.errors import BackendError
from mimic_blender.core.settings import Audio, Inputs, Settings

SETTINGS = Settings(python=sys.executable, checkpoint=str(CHECKPOINT), device="cpu")


def serving_children() -> list[int]:
    """Pids of this process's children that run `mimic serve`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"mimic.cli\0serve" in cmdline:
            found.append(int(stat.parent.name))
    return found


def wait_until(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def warm() -> bool:
    """The prewarm (or a job) is done and the backend is up."""
    return not session._lock.locked() and session._backend is not None and session._backend.alive


def demo_inputs(repeat: int = 1) -> Inputs:
    with np.load(IO) as io:
        template = io["template"].reshape(-1, 3)
        reference = (io["style_motion"] + io["template"]).reshape(150, -1, 3)
        speech = np.tile(io["speech_16k"], repeat)
    return Inputs("Head", "Line", 1, len(speech) // 640, 25.0, template, 1.0, Audio(speech, 16000),
                  style_vertices=reference, style_neutral=template)


@pytest.fixture(autouse=True)
def fresh():
    session.stop()
    yield
    session.stop()
    wait_until(lambda: not any(t.name == "mimic-prewarm" for t in threading.enumerate()), 60)
    assert serving_children() == []


def test_prewarm_returns_at_once_and_the_first_job_finds_the_backend_warm():
    session.prewarm(SETTINGS)
    assert session._lock.locked() or session._backend is None  # working on a thread, not done on return
    wait_until(warm)
    assert session._backend.facts["model"]["checkpoint"] == str(CHECKPOINT)
    assert session.status().startswith("Backend ready: torch ")
    pid = session._backend.process.pid

    session.prewarm(SETTINGS)  # the same settings again: nothing new
    assert not session._lock.locked() and session._backend.process.pid == pid

    seen = []
    compute.compute(demo_inputs(), SETTINGS, on_progress=lambda *a: seen.append(a))
    assert session._backend.process.pid == pid
    assert [stage for *_, stage in seen][0] == p.ENCODE_STYLE  # no start, no load: it was warm
    assert serving_children() == [pid]


def test_a_checkpoint_written_again_is_loaded_again(tmp_path):
    """Retrained into the same file: the warm backend loads the new model at the next job."""
    path = tmp_path / "model.pth"
    path.write_bytes(CHECKPOINT.read_bytes())
    shutil.copytree(CHECKPOINT.parent / "tiny-wav2vec2", tmp_path / "tiny-wav2vec2")
    settings = replace(SETTINGS, checkpoint=str(path))
    first = compute.compute(demo_inputs(), settings)
    seen = []
    compute.compute(demo_inputs(), settings, on_progress=lambda *a: seen.append(a))
    assert p.LOAD not in {stage for *_, stage in seen}  # unchanged: warm
    state = torch.load(path, weights_only=True)
    state["model"]["decoder.motion_map_r.bias"] += 0.01  # the output map: every vertex moves
    torch.save(state, path)
    seen.clear()
    again = compute.compute(demo_inputs(), settings, on_progress=lambda *a: seen.append(a))
    assert p.LOAD in {stage for *_, stage in seen}
    assert not np.allclose(again.mean, first.mean, atol=1e-3)


def test_a_new_precision_is_loaded_ahead_of_the_click():
    session.prewarm(SETTINGS)
    wait_until(warm)
    fast = replace(SETTINGS, precision=p.FAST)
    session.prewarm(fast)  # the Preferences' Precision changed, and the panel is drawn
    wait_until(lambda: warm() and session._backend.facts["model"]["requested"][:2] == ("cpu", p.FAST), 60)
    seen = []
    compute.compute(demo_inputs(), fast, on_progress=lambda *a: seen.append(a))
    assert p.LOAD not in {stage for *_, stage in seen}


def test_a_cold_job_reports_every_stage_in_order():
    seen = []
    compute.compute(demo_inputs(), SETTINGS, on_progress=lambda *a: seen.append(a))
    names = list(dict.fromkeys(stage for *_, stage in seen))
    assert names == [p.HELLO, p.LOAD, p.ENCODE_STYLE, *p.STAGES]  # then the backend's stages, in their order
    counted = [(done, total) for done, total, stage in seen if stage == p.GENERATING and total]
    assert counted[0][0] < counted[-1][0] == counted[-1][1]  # the bar moves before the end
    texts = [stages.describe(*event)[1] for event in seen]
    assert texts[:3] == ["Loading PyTorch", "Loading the model", "Encoding the style"]
    assert f"Generating {counted[-1][0]}/{counted[-1][1]}" in texts and texts[-1].startswith("Compressing")


def test_a_job_during_the_prewarm_waits_showing_its_stage_and_can_be_cancelled():
    session.prewarm(SETTINGS)
    seen = []
    started = time.monotonic()
    with pytest.raises(BackendError) as failure:
        compute.compute(demo_inputs(), SETTINGS, on_progress=lambda *a: seen.append(a),
                        cancelled=lambda: time.monotonic() - started > 0.3)
    assert failure.value.code == p.CANCELLED
    assert time.monotonic() - started < 2  # not after the start: while waiting for it
    assert seen[-1] == (0, 0, p.HELLO)  # what the prewarm was doing (after "wait", had it not begun yet)
    assert {stage for *_, stage in seen} <= {stages.WAIT, p.HELLO}
    wait_until(warm)  # the prewarm itself goes on
    seen.clear()
    compute.compute(demo_inputs(), SETTINGS, on_progress=lambda *a: seen.append(a))
    assert seen[0][2] == p.ENCODE_STYLE


def test_a_job_after_a_cancelled_one_gets_its_own_result():
    """The cancelled job's late replies (its window's progress, the error) are not the next job's."""
    long, short = demo_inputs(repeat=8), demo_inputs()
    first = []
    with pytest.raises(BackendError) as failure:
        compute.compute(long, SETTINGS, on_progress=lambda *a: first.append(a), cancelled=lambda: len(first) > 4)
    assert failure.value.code == p.CANCELLED
    outputs = compute.compute(short, SETTINGS)
    assert len(outputs.tracks) == short.frames


def test_a_failed_prewarm_is_shown_and_not_retried_on_every_redraw(tmp_path):
    missing = Settings(python=str(tmp_path / "no python"), checkpoint=str(CHECKPOINT))
    session.prewarm(missing)
    wait_until(lambda: not session._lock.locked() and session.status() != "Backend not running", 30)
    assert session.status().startswith("Backend failed: backend interpreter not found")
    session.prewarm(missing)
    assert not session._lock.locked() and not any(t.name == "mimic-prewarm" for t in threading.enumerate())


def test_an_idle_backend_stops_after_the_idle_time():
    with session.use(replace(SETTINGS, idle_stop=0.5)) as backend:
        process = backend.process
    assert process.wait(timeout=30) == 0  # asked to shut down, not killed
    wait_until(lambda: session._backend is None, 10)  # the idle timer's stop() finishes after the process
    assert session.status() == "Backend not running"

    with session.use(replace(SETTINGS, idle_stop=0.0)) as backend:  # 0: never
        process = backend.process
    time.sleep(1.5)
    assert process.poll() is None and session._backend.alive


def test_stop_during_the_prewarm_leaves_no_process():
    session.prewarm(SETTINGS)
    time.sleep(0.5)  # the interpreter is importing torch
    session.stop()
    wait_until(lambda: not session._lock.locked(), 120)
    assert session._backend is None and serving_children() == []


def test_geometry_alone_loads_no_model(tmp_path):
    """A character fit or retarget needs no checkpoint: a broken one in the Preferences does not stop it."""
    with session.use(replace(SETTINGS, checkpoint=str(tmp_path / "missing.pth")), need_model=False) as backend:
        assert backend.facts["model"] is None
    assert session.status().startswith("Backend ready: torch ") and "no model loaded" in session.status()
