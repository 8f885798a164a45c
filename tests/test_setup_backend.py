"""The backend installer behind "Set up backend": checking an interpreter, and making a real venv
with PyTorch and the backend (about 1.5 minutes: torch from the local wheel cache, the rest from
the package index)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from paths import ROOT

from mimic_blender.core import setup_backend

VERSION = tomllib.loads((ROOT / "blender_manifest.toml").read_text())["version"]

pytestmark = pytest.mark.slow  # makes a venv from the package index


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path, list[str], Path]:
    """(venv dir, its python, every line the setup streamed, the backend source it installed)"""
    base = tmp_path_factory.mktemp("backend")
    source = shutil.copytree(ROOT / "backend", base / "extension" / "backend",
                             ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    shutil.copy2(ROOT / "blender_manifest.toml", base / "extension")
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MIMIC_TORCH_INDEX", "")  # torch from pip's own index (here, the machine's wheels): no network
        python = setup_backend.setup_backend(base / "venv", source, "cpu", on_line=lines.append)
    return base / "venv", python, lines, source


def test_project_interpreter_has_no_problems():
    assert setup_backend.find_python_problems(sys.executable) == []


def test_missing_interpreter_is_named(tmp_path):
    missing = str(tmp_path / "nowhere" / "python")
    problems = setup_backend.find_python_problems(missing)
    assert len(problems) == 1
    assert missing in problems[0] and "not found" in problems[0]


def test_system_python_lacks_packages():
    problems = setup_backend.find_python_problems("/usr/bin/python3")
    assert "package 'numpy' missing" in problems
    assert "package 'torch' missing" in problems


def test_setup_makes_a_working_backend_environment(made):
    venv, python, lines, source = made
    assert python == venv / "bin" / "python" and python.is_file()
    steps = [line.split("] ")[0] + "]" for line in lines if line.startswith("[")]
    assert steps == ["[create the environment]", "[upgrade pip]",
                     f"[install PyTorch {setup_backend.TORCH_VERSION} (cpu)]", "[install the backend]"]
    assert any(line.startswith("Successfully installed") and f"mimic-{VERSION}" in line for line in lines)
    assert setup_backend.find_python_problems(str(python)) == []
    where = subprocess.run([str(python), "-c", "import mimic.protocol; print(mimic.protocol.__file__)"],
                           capture_output=True, text=True, cwd=venv, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv)  # installed into the venv, not linked to the source
    # built from a copy
    assert sorted(path.name for path in source.iterdir()) == ["mimic", "pyproject.toml", "setup.py", "torch.json"]


def test_failed_step_raises_with_its_last_output(made, tmp_path):
    venv, _, _, _ = made
    not_a_project = tmp_path / "empty"
    not_a_project.mkdir()
    lines: list[str] = []
    with pytest.raises(setup_backend.SetupError) as failure:
        setup_backend.setup_backend(venv, not_a_project, "cpu", on_line=lines.append)
    message = str(failure.value)
    assert message.startswith("could not install the backend (exit code 1). Last output:")
    assert lines[-1] in message  # the tail of the streamed output ends the message
    # re-running reuses the venv
    assert f"Requirement already satisfied: torch=={setup_backend.TORCH_VERSION}" in "\n".join(lines)


def test_unknown_torch_flavour_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="'rocm'"):
        setup_backend.setup_backend(tmp_path / "venv", ROOT / "backend", "rocm", on_line=print)
    assert not (tmp_path / "venv").exists()


def test_cancel_stops_the_running_step(tmp_path):
    """Esc on Set up Backend: the running step (here pip's upgrade) is killed, no later step runs."""
    lines: list[str] = []
    with pytest.raises(setup_backend.SetupError, match="cancelled while trying to upgrade pip"):
        setup_backend.setup_backend(tmp_path / "venv", ROOT / "backend", "cpu", on_line=lines.append,
                                    cancelled=lambda: any(line.startswith("[upgrade pip]") for line in lines))
    assert [line.split("]")[0] for line in lines if line.startswith("[")] == ["[create the environment", "[upgrade pip"]
