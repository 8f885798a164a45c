"""How the add-on starts child processes on Windows, macOS and Linux, as plain functions of the
platform (so each platform's form is tested anywhere): argument lists, never a shell, so paths
with spaces and non-ASCII characters pass as they are; UTF-8 text both ways; no console window
flashing up on Windows; no POSIX signals (a backend is asked to stop, else killed)."""

from __future__ import annotations

import contextlib
import ntpath
import os
import posixpath
from collections.abc import Mapping

# Windows process creation flags (subprocess has the names only on Windows)
CREATE_NO_WINDOW = 0x08000000
BELOW_NORMAL_PRIORITY_CLASS = 0x00004000
NICENESS = 10  # added to a background child's niceness elsewhere


def popen_options(platform: str = os.name, background: bool = False) -> dict:
    """Keyword arguments for subprocess.Popen/run: no console window for a child of Blender on
    Windows; a `background` one (the backend) also at below-normal priority there, so Blender's
    UI stays responsive while it computes (elsewhere lower_priority does that once it runs)."""
    if platform != "nt":
        return {}
    return {"creationflags": CREATE_NO_WINDOW | (BELOW_NORMAL_PRIORITY_CLASS if background else 0)}


def lower_priority(pid: int, platform: str = os.name) -> None:
    """A started background child's CPU priority below this process's, on macOS and Linux (where
    a child can only be lowered after it started; Windows sets it at creation). On a busy machine
    Blender's main loop then runs on time, and Esc is seen at once; an idle core still goes to the
    child in full."""
    if platform != "nt":
        with contextlib.suppress(OSError):  # already as low as it goes, or gone
            os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS))


def serve_command(python: str, cwd: str, platform: str = os.name) -> list[str]:
    """`mimic serve` run by `python`, which may be relative to `cwd` (as a batch job's `--python
    .venv/bin/python` gives it): made absolute, since the backend runs in its session folder, but
    not resolved (a venv's python is a link to its base interpreter)."""
    path = ntpath if platform == "nt" else posixpath
    return [path.normpath(path.join(cwd, python)), "-m", "mimic.cli", "serve"]


def backend_env(environ: Mapping[str, str], source: str, platform: str = os.name) -> dict[str, str]:
    """The backend's environment: the add-on's backend source first on PYTHONPATH (then any set
    before), unbuffered UTF-8 output."""
    separator = (ntpath if platform == "nt" else posixpath).pathsep
    pythonpath = separator.join(filter(None, [source, environ.get("PYTHONPATH")]))
    return dict(environ, PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1", PYTHONUTF8="1")


def clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    """For another interpreter (setting up or checking one): without the variables that would make
    it see this one's packages; unbuffered UTF-8 output."""
    env = {key: value for key, value in environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    return dict(env, PYTHONUNBUFFERED="1", PYTHONUTF8="1")
