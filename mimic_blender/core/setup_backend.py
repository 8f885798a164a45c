"""Make and check the backend's Python environment (behind "Set up backend" in Preferences).

No bpy here: plain subprocesses, tested with plain Python. Every line the tools print goes to
`on_line`, so the caller can show progress; a failed step raises SetupError with its last lines.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .backend_source import SOURCE
from .errors import SetupError
from .processes import clean_env, popen_options

_PIN = json.loads((SOURCE / "torch.json").read_text())  # the one torch pin, install/setup.sh reads it too
TORCH_VERSION = _PIN["version"]
PACKAGES = ("torch", "transformers", "numpy", "soundfile", "soxr", "safetensors", "scipy", "trimesh", "rtree")
TAIL_LINES = 15

# Runs in the interpreter under test, so it must stay valid Python 3 of any version: no f-strings.
CHECK = """
import importlib, sys
if sys.version_info < (3, 11):
    print("Python %d.%d is too old: the backend needs 3.11 or newer" % sys.version_info[:2])
    sys.exit()
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError as error:
        if getattr(error, "name", None) == name:
            print("package '%s' missing" % name)
        else:
            print("package '%s' does not import: %s" % (name, error))
"""
# A base interpreter must be new enough and able to make a venv with pip in it.
USABLE_BASE = "import ensurepip, sys, venv; sys.exit(sys.version_info < (3, 11))"


def find_python_problems(python: str) -> list[str]:
    """What keeps `python` from running the backend, in words for users; [] when nothing does."""
    if not Path(python).is_file():
        return [f"interpreter not found: {python}"]
    try:
        done = subprocess.run([python, "-c", CHECK, *PACKAGES], capture_output=True, encoding="utf-8",
                              errors="replace", timeout=120, env=clean_env(os.environ), **popen_options())
    except (OSError, subprocess.TimeoutExpired) as error:
        return [f"could not run {python}: {error}"]
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return [f"could not run {python} (exit code {done.returncode}): {last}"]
    return done.stdout.splitlines()


def setup_backend(venv_dir: Path, backend_src: Path, torch: str = "cpu", on_line: Callable[[str], None] = print,
                  extra_pip_args: tuple[str, ...] = (), cancelled: Callable[[], bool] = lambda: False) -> Path:
    """Make (or update) a venv at `venv_dir` with PyTorch and the backend package from `backend_src`.

    `torch` is one of torch_builds(); `extra_pip_args` go to the backend's own install; once
    `cancelled()` says True the running step is stopped at its next output line (SetupError).
    Safe to re-run. Returns the venv's interpreter.
    """
    run = lambda step, command: _run(step, command, on_line, cancelled)
    if torch not in torch_builds():
        raise ValueError(f"torch must be one of {list(torch_builds())} here, not {torch!r}")
    python = venv_python(venv_dir)
    run("create the environment", [_base_python(), "-m", "venv", str(venv_dir)])
    pip = [str(python), "-m", "pip", "install", "--progress-bar", "off"]
    run("upgrade pip", [*pip, "--upgrade", "pip"])
    index = torch_index(torch)
    run(f"install PyTorch {TORCH_VERSION} ({torch})",
        [*pip, f"torch=={TORCH_VERSION}", *(["--index-url", index] if index else [])])
    with tempfile.TemporaryDirectory(prefix="mimic-backend-src-") as tmp:
        # pip builds a local project in place: build from a copy, so the extension folder stays clean;
        # the manifest beside it holds the version.
        source = shutil.copytree(backend_src, Path(tmp) / "backend",
                                 ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        manifest = backend_src.parent / "blender_manifest.toml"
        if manifest.is_file():
            shutil.copy2(manifest, tmp)
        run("install the backend", [*pip, *extra_pip_args, str(source)])
    return python


def torch_builds(platform: str = sys.platform) -> tuple[str, ...]:
    """The PyTorch builds Set up Backend offers: CUDA on Windows and Linux; on macOS the package
    index's build, which runs on Apple silicon's GPU (MPS)."""
    return ("cpu",) if platform == "darwin" else ("cpu", "cuda")


def torch_index(build: str, platform: str = sys.platform) -> str | None:
    """The package index of a PyTorch build; None: pip's own (PyPI, or the user's pip configuration).
    PyPI's Linux wheel is the CUDA build (gigabytes of CUDA libraries), so the CPU build on Linux comes
    from PyTorch's CPU index; PyPI's Windows and macOS wheels are the CPU (macOS: MPS) builds.
    MIMIC_TORCH_INDEX, when set, replaces it (empty: pip's own), e.g. for a studio's mirror."""
    if "MIMIC_TORCH_INDEX" in os.environ:
        return os.environ["MIMIC_TORCH_INDEX"] or None
    if build == "cuda":
        return _PIN["cuda_index"]
    return _PIN["linux_cpu_index"] if platform.startswith("linux") else None


def venv_python(venv_dir: Path, platform: str = os.name) -> Path:
    """A venv's interpreter: Scripts\\python.exe on Windows, bin/python elsewhere."""
    return venv_dir / ("Scripts/python.exe" if platform == "nt" else "bin/python")


def _base_python() -> str:
    """The interpreter to make the venv with: this one (Blender's own Python inside Blender), else one on PATH."""
    candidates = dict.fromkeys(filter(None, (sys.executable, shutil.which("python3.11"), shutil.which("python3"))))
    for candidate in candidates:
        if subprocess.run([candidate, "-c", USABLE_BASE], capture_output=True, env=clean_env(os.environ),
                          **popen_options()).returncode == 0:
            return candidate
    raise SetupError(f"no Python 3.11+ able to make a virtual environment was found (tried {', '.join(candidates)}). "
                     "Install Python 3.11, or point the add-on's Preferences at an existing environment")


def _run(step: str, command: list[str], on_line: Callable[[str], None], cancelled: Callable[[], bool]) -> None:
    on_line(f"[{step}] {' '.join(command)}")
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, encoding="utf-8",
                              errors="replace", env=clean_env(os.environ), **popen_options()) as process:
            for line in process.stdout:
                if cancelled():
                    process.kill()
                    raise SetupError(f"cancelled while trying to {step}: click Set up Backend again to finish")
                tail.append(line.rstrip())
                on_line(tail[-1])
    except OSError as error:
        raise SetupError(f"could not {step}: {error}") from error
    if process.returncode != 0:
        raise SetupError(f"could not {step} (exit code {process.returncode}). Last output:\n" + "\n".join(tail))
