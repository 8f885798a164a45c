"""Windows, macOS and Linux: how processes, paths and devices are made for each (plain functions
of the platform, checked here for all three), and a real checkout, interpreter and Blender user
folder whose paths hold spaces and non-ASCII characters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
from paths import ROOT
from test_extension import INSTALL

from mimic_blender.core import processes
from mimic_blender.core.settings import devices
from mimic_blender.core.setup_backend import torch_builds, torch_index, venv_python

WINDOWS_PYTHON = r"C:\Users\Jörg Müller\Mimic Projekt\.venv\Scripts\python.exe"


def test_windows_children_get_no_console_window_and_others_nothing_extra():
    assert processes.popen_options("nt") == {"creationflags": processes.CREATE_NO_WINDOW}
    assert processes.popen_options("nt", background=True) == {
        "creationflags": processes.CREATE_NO_WINDOW | processes.BELOW_NORMAL_PRIORITY_CLASS}
    assert processes.popen_options("posix") == processes.popen_options("posix", background=True) == {}
    if os.name == "nt":
        assert processes.CREATE_NO_WINDOW == subprocess.CREATE_NO_WINDOW


def test_serve_command_keeps_spaces_and_makes_relative_interpreters_absolute():
    assert processes.serve_command(WINDOWS_PYTHON, r"D:\shots", "nt") == [WINDOWS_PYTHON, "-m", "mimic.cli", "serve"]
    assert processes.serve_command(r".venv\Scripts\python.exe", r"C:\Mimic Projekt ü", "nt")[0] == \
        r"C:\Mimic Projekt ü\.venv\Scripts\python.exe"
    assert processes.serve_command(".venv/bin/python", "/home/jörg/Mimic Projekt", "posix")[0] == \
        "/home/jörg/Mimic Projekt/.venv/bin/python"
    assert processes.serve_command("/opt/mimic env/bin/python", "/tmp", "posix")[0] == "/opt/mimic env/bin/python"


def test_backend_env_puts_the_bundled_source_first_with_the_platforms_separator():
    env = processes.backend_env({"PYTHONPATH": r"C:\libs", "PATH": "x"}, r"C:\Add-ons\mimic ü\backend", "nt")
    assert env["PYTHONPATH"] == r"C:\Add-ons\mimic ü\backend;C:\libs"
    assert env["PATH"] == "x" and env["PYTHONUTF8"] == env["PYTHONUNBUFFERED"] == "1"
    assert processes.backend_env({}, "/a b/backend", "posix")["PYTHONPATH"] == "/a b/backend"
    assert processes.backend_env({"PYTHONPATH": "/x"}, "/a b/backend", "posix")["PYTHONPATH"] == "/a b/backend:/x"
    clean = processes.clean_env({"PYTHONPATH": "/x", "PYTHONHOME": "/y", "HOME": "/h"})
    assert clean == {"HOME": "/h", "PYTHONUNBUFFERED": "1", "PYTHONUTF8": "1"}


def test_venv_interpreter_per_platform():
    assert PureWindowsPath(venv_python(Path("venv"), "nt")).parts[-2:] == ("Scripts", "python.exe")
    assert PurePosixPath(venv_python(Path("venv"), "posix")).parts[-2:] == ("bin", "python")
    assert venv_python(Path(sys.prefix)) == Path(sys.prefix, "bin", "python")  # this venv's own layout


def test_devices_and_torch_builds_per_platform():
    assert devices("win32", "AMD64") == devices("linux", "x86_64") == devices("linux", "aarch64") == \
        ["auto", "cpu", "cuda"]
    assert devices("darwin", "arm64") == ["auto", "cpu", "mps"]
    assert devices("darwin", "x86_64") == ["auto", "cpu"]
    assert torch_builds("win32") == torch_builds("linux") == ("cpu", "cuda")
    assert torch_builds("darwin") == ("cpu",)  # the package index's macOS build runs on MPS


def test_torch_index_per_build_and_platform(monkeypatch):
    pin = json.loads((ROOT / "backend" / "torch.json").read_text())
    monkeypatch.delenv("MIMIC_TORCH_INDEX", raising=False)
    assert torch_index("cpu", "linux") == pin["linux_cpu_index"] == "https://download.pytorch.org/whl/cpu"
    assert torch_index("cpu", "win32") is None and torch_index("cpu", "darwin") is None  # PyPI's are CPU builds
    assert torch_index("cuda", "linux") == torch_index("cuda", "win32") == pin["cuda_index"]
    monkeypatch.setenv("MIMIC_TORCH_INDEX", "https://mirror.example/torch")
    assert torch_index("cpu", "win32") == torch_index("cuda", "linux") == "https://mirror.example/torch"
    monkeypatch.setenv("MIMIC_TORCH_INDEX", "")
    assert torch_index("cpu", "linux") is None


# ------------------------------------------------------------------ a checkout at an awkward path


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The add-on, backend, tests and tools copied to `.../Mimic Projekt ü/`, with a venv of its
    own there (sharing this environment's packages)."""
    root = tmp_path_factory.mktemp("paths") / "Mimic Projekt ü"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
    for name in ("mimic_blender", "backend", "tests", "install"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    for name in ("blender_manifest.toml", "pyproject.toml"):
        shutil.copy2(ROOT / name, root / name)
    venv.create(root / ".venv", symlinks=True, with_pip=False)
    site = Path(sysconfig.get_paths(vars={"base": str(root / ".venv")})["purelib"])
    shutil.rmtree(site)
    site.symlink_to(sysconfig.get_paths()["purelib"])
    return root


@pytest.mark.slow  # a nested test run / a Blender subprocess
def test_the_core_computes_from_that_checkout(checkout):
    """test_core there: its backend is the copy's, run by the copy's interpreter."""
    python = venv_python(checkout / ".venv")
    where = subprocess.run([python, "-c", "from mimic_blender.core.backend_source import SOURCE; print(SOURCE)"],
                           capture_output=True, text=True, cwd=checkout, timeout=60)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()) == checkout / "backend"
    done = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_core.py"],
                          capture_output=True, text=True, cwd=checkout, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


@pytest.mark.slow  # a nested test run / a Blender subprocess
def test_the_extension_builds_installs_and_starts_its_backend_from_there(checkout, tmp_path):
    python = venv_python(checkout / ".venv")
    out = checkout / "dist" / "mimic ü.zip"
    built = subprocess.run([python, checkout / "install" / "build_extension.py", "--out", out],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert built.stdout.strip().endswith(f"extension: {out}")
    with zipfile.ZipFile(out) as archive:
        assert json.loads(archive.read("backend_defaults.json")) == {"python": str(python)}

    user = tmp_path / "Blender Nutzer ü"
    user.mkdir()
    start = ("from bl_ext.user_default.mimic import properties; from bl_ext.user_default.mimic.core import session\n"
             "settings = properties.settings(bpy.context, checkpoint=sys.argv[2]); print(json.dumps(settings.python))\n"
             "with session.use(settings) as backend:\n"
             "    print(json.dumps([str(backend.workdir), backend.facts['model']['vertex_count']]))\n"
             "session.stop()\n")
    checkpoint = checkout / "tests" / "fixtures" / "official_tiny" / "checkpoint.pth"
    done = subprocess.run([python, "-c", INSTALL + start, out, checkpoint], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, BLENDER_USER_RESOURCES=str(user)))
    assert done.returncode == 0, done.stdout + done.stderr
    installed, default, (workdir, vertices) = (json.loads(line) for line in done.stdout.strip().splitlines()[-3:])
    assert installed["result"] == ["FINISHED"]
    assert Path(installed["protocol"]) == user / "extensions" / "user_default" / "mimic" / "backend" / "mimic" / \
        "protocol.py"
    assert default == str(python)  # the interpreter the zip was built with, found through its awkward path
    assert vertices == 64  # the backend ran from the installed extension and loaded the model
    assert not Path(workdir).exists()  # stopped and cleaned up
