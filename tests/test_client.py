"""The add-on's backend client without Blender: starting, stopping and losing `mimic serve`, and
the clear failures for a missing interpreter or missing packages. Real processes throughout."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import numpy as np
import paths
import pytest
from paths import ROOT

from mimic import protocol as p
from mimic_blender.core.client import Backend
from mimic_blender.core.errors import BackendError

CHECKPOINT = str(paths.CHECKPOINT)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def backend():
    b = Backend(sys.executable)
    yield b
    b.stop()  # whatever a test left behind


def test_client_imports_nothing_heavy():
    """Blender's Python has no torch: the client and the protocol need neither it nor numpy."""
    code = ("import sys, mimic_blender.core.client as c; "
            "print(sorted(m for m in ('torch', 'numpy', 'mimic') if m in sys.modules)); print(c.SOURCE)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    heavy, bundled = out.stdout.splitlines()[-2:]
    assert heavy == "[]"
    assert Path(bundled, "mimic", "protocol.py").is_file()  # the backend travels with the add-on


def test_stop_ends_the_process_and_removes_the_session_folder(backend):
    facts = backend.start()
    assert facts["protocol"] == p.VERSION and backend.alive
    process, workdir = backend.process, backend.workdir
    assert workdir.is_dir() and Path(workdir).name.startswith("mimic-session-")

    backend.request(p.LOAD, timeout=120, checkpoint=CHECKPOINT)
    with np.load(paths.IO) as io:
        np.save(workdir / "speech.npy", io["speech_16k"][:16000])
        np.save(workdir / "reference.npy", io["style_motion"].reshape(-1, 64, 3) + io["template"].reshape(64, 3))
        np.save(workdir / "neutral.npy", io["template"].reshape(64, 3))
    code = backend.request(p.ENCODE_STYLE, timeout=60, vertices=str(workdir / "reference.npy"),
                           neutral=str(workdir / "neutral.npy"))["style"]
    result = backend.request(p.GENERATE, timeout=120, audio=str(workdir / "speech.npy"), style=code)
    files = [Path(result[name]) for name in ("mean", "basis", "weights")]
    assert all(f.parent == workdir and f.is_file() for f in files)

    backend.stop()
    assert process.returncode == 0  # it shut down cleanly on request (no kill, no crash)
    assert backend.process is None and not backend.alive and gone(process.pid)
    assert not workdir.exists() and backend.workdir is None
    backend.stop()  # a second stop is harmless
    assert backend.process is None


def test_the_backend_runs_below_blenders_priority(backend):
    """So Blender's main loop (and Esc) keeps its turn on a busy machine."""
    backend.start()
    assert os.getpriority(os.PRIO_PROCESS, backend.process.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)


def test_a_killed_backend_is_reported_as_died(backend, tmp_path):
    backend.start()
    backend.request(p.LOAD, timeout=120, checkpoint=CHECKPOINT)
    process, workdir = backend.process, backend.workdir
    with np.load(paths.IO) as io:
        np.save(workdir / "speech.npy", np.tile(io["speech_16k"], 8)[:60 * 16000])
    killed = []

    def kill(done, total, stage):
        if not killed:
            process.kill()
            killed.append(done)

    started = time.monotonic()
    with pytest.raises(BackendError) as during:  # killed while it works on a request
        backend.request(p.GENERATE, timeout=300, on_progress=kill, audio=str(workdir / "speech.npy"),
                        style=[0.0] * 32)
    assert killed and during.value.code == "backend_died"
    assert "exit code -9" in str(during.value)
    assert time.monotonic() - started < 30  # noticed at once, not at the timeout
    assert not backend.alive

    with pytest.raises(BackendError) as before:  # and any later request fails the same way, at once
        backend.request(p.HELLO, timeout=300, protocol=p.VERSION, workdir=str(workdir))
    assert before.value.code == "backend_died" and "-9" in str(before.value)

    backend.stop()  # cleans up after a dead process without raising
    assert backend.process is None and gone(process.pid) and not workdir.exists()


def test_a_request_given_up_on_does_not_answer_the_next(backend):
    """Its late replies (progress, result) carry its own id; the next request waits for its own."""
    backend.start()
    backend.request(p.LOAD, timeout=120, checkpoint=CHECKPOINT)
    workdir = backend.workdir
    with np.load(paths.IO) as io:
        np.save(workdir / "speech.npy", np.tile(io["speech_16k"], 4))
        np.save(workdir / "reference.npy", io["style_motion"].reshape(-1, 64, 3) + io["template"].reshape(64, 3))
        np.save(workdir / "neutral.npy", io["template"].reshape(64, 3))
    with pytest.raises(BackendError) as given_up:
        backend.request(p.GENERATE, timeout=0.01, audio=str(workdir / "speech.npy"), style=[0.0] * 32)
    assert given_up.value.code == "timeout"
    reply = backend.request(p.ENCODE_STYLE, timeout=120, vertices=str(workdir / "reference.npy"),
                            neutral=str(workdir / "neutral.npy"))
    assert reply["type"] == p.RESULT and len(reply["style"]) == 32 and "frames" in reply
    assert backend.replies.empty()  # the abandoned generate's replies came first and were passed over


def test_end_of_stdin_ends_the_backend(backend):
    backend.start()
    process = backend.process
    process.stdin.close()  # what happens when Blender quits or is killed
    assert process.wait(timeout=15) == 0  # by itself, cleanly
    assert gone(process.pid)
    backend.stop()
    assert backend.process is None and gone(process.pid)


def test_an_interpreter_path_relative_to_the_working_folder(tmp_path, monkeypatch):
    """As a batch job's `--python .venv/bin/python` gives it; the backend itself runs elsewhere."""
    python = Path(sys.executable)
    monkeypatch.chdir(python.parent.parent)
    backend = Backend(f"{python.parent.name}/{python.name}")  # bin/python
    try:
        facts = backend.start()
        assert facts["protocol"] == p.VERSION and backend.alive
    finally:
        backend.stop()


# --------------------------------------------------------------------------------- environments


@pytest.mark.parametrize("python", ["", "/nonexistent/bin/python3", "directory", "not-executable"])
def test_missing_interpreter(python, tmp_path, monkeypatch):
    if python == "directory":
        python = str(tmp_path)
    elif python == "not-executable":
        python = str(tmp_path / "python")
        Path(python).write_text("not a program\n")
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where a session folder would be made
    b = Backend(python)
    with pytest.raises(BackendError) as info:
        b.start()
    assert info.value.code == "interpreter_missing"
    assert (python or "(not set)") in str(info.value) and "Preferences" in str(info.value)
    assert b.process is None and b.workdir is None
    assert not any(temp.iterdir())  # no session folder left behind


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory) -> Path:
    """A fresh `python -m venv` without any package."""
    folder = tmp_path_factory.mktemp("bare-venv")
    venv.create(folder, with_pip=False)
    return folder / "bin" / "python"


@pytest.fixture(scope="module")
def numpy_only_venv(tmp_path_factory) -> Path:
    """A fresh venv that sees numpy (linked from this environment) but not torch."""
    import numpy

    folder = tmp_path_factory.mktemp("numpy-venv")
    venv.create(folder, with_pip=False)
    extra = folder / "extra"
    extra.mkdir()
    site = Path(numpy.__file__).parent.parent
    for name in ("numpy", "numpy.libs"):
        if (site / name).exists():
            (extra / name).symlink_to(site / name)
    python = folder / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "extra.pth").write_text(f"{extra}\n")
    return python


@pytest.mark.parametrize("env, package", [("bare_venv", "numpy"), ("numpy_only_venv", "torch")])
def test_interpreter_without_packages(env, package, request):
    python = str(request.getfixturevalue(env))
    probe = subprocess.run([python, "-c", "import numpy"], capture_output=True)
    assert (probe.returncode == 0) == (package != "numpy")  # the environment is what the test says
    b = Backend(python)
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        b.start()
    assert info.value.code == "package_missing"
    assert f"'{package}'" in str(info.value) and python in str(info.value)
    assert time.monotonic() - started < 60
    assert b.process is None and b.workdir is None
