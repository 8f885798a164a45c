"""One real `mimic serve` per test module, through the add-on's client (fixture `s`), and the helpers
of tests/test_service*.py: raw protocol lines, replies read straight from the client's queue."""

from __future__ import annotations

import queue
import sys
import time
from types import SimpleNamespace

import numpy as np
import paths
import pytest

from mimic import protocol as p
from mimic_blender.core.client import Backend
from mimic_blender.core.errors import BackendError

V = 64  # the tiny checkpoint's vertex count
RAW_ID = 100_000  # ids for raw requests, far from the client's counter

CHECKPOINT = str(paths.CHECKPOINT)


@pytest.fixture(scope="module")
def s(ref):
    """A started backend; what it answered before `load` is recorded, then the tiny model is loaded."""
    backend = Backend(sys.executable)
    facts = backend.start()
    files = SimpleNamespace()
    for name, array in [("reference", ref["style_motion"].reshape(-1, V, 3) + ref["template"].reshape(V, 3)),
                        ("neutral", ref["template"].reshape(V, 3)), ("speech", ref["speech_16k"])]:
        setattr(files, name, str(backend.workdir / f"{name}.npy"))
        np.save(getattr(files, name), array.astype(np.float32))
    before_load = {}
    for kind, fields in [(p.GENERATE, dict(audio=files.speech, style=[0.0] * 32)),
                         (p.ENCODE_STYLE, dict(vertices=files.reference, neutral=files.neutral)),
                         (p.READ_AUDIO, dict(path=files.speech, start=0, stop=1))]:
        try:
            backend.request(kind, timeout=60, **fields)
            before_load[kind] = "answered"
        except BackendError as e:
            before_load[kind] = e.code
    loaded = backend.request(p.LOAD, timeout=120, checkpoint=CHECKPOINT, device="cpu")
    yield SimpleNamespace(backend=backend, facts=facts, before_load=before_load, loaded=loaded, files=files)
    backend.stop()


def code_of(backend: Backend, kind: str, **fields) -> BackendError:
    with pytest.raises(BackendError) as info:
        backend.request(kind, timeout=120, **fields)
    return info.value


def raw(backend: Backend, line: bytes) -> None:
    backend.process.stdin.write(line + b"\n")
    backend.process.stdin.flush()


def reply_to(backend: Backend, id_, timeout: float = 60.0, skip_progress: bool = True) -> dict:
    """The next reply with this id, read straight from the client's reply queue."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = backend.replies.get(timeout=0.1)
        except queue.Empty:
            continue
        if message.get("id") == id_ and not (skip_progress and message["type"] == p.PROGRESS):
            return message
    raise AssertionError(f"no reply with id {id_!r} within {timeout} s")


def still_answers(backend: Backend) -> None:
    reply = backend.request(p.HELLO, timeout=30, protocol=p.VERSION, workdir=str(backend.workdir))
    assert reply["type"] == p.RESULT and reply["model"]["checkpoint"] == CHECKPOINT


def style_of(s) -> list[float]:
    return s.backend.request(p.ENCODE_STYLE, timeout=60, vertices=s.files.reference, neutral=s.files.neutral)["style"]


def frames_of(result: dict) -> np.ndarray:
    mean, basis, weights = (np.load(result[name]) for name in ("mean", "basis", "weights"))
    assert mean.shape == (V, 3) and basis.shape == (result["k"], V, 3)
    assert weights.shape == (result["frames"], result["k"])
    return mean + np.einsum("tk,kvc->tvc", weights.astype(np.float64), basis)
