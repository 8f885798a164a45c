"""The extension in this test process's Blender (the PyPI `bpy` module), built as users get it
(install/build_extension.py) and enabled once per session from a user repository; shared by every
Blender test (conftest.py imports the fixture)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

# Keep this Blender (and the Blender subprocesses, which inherit it) away from the user's
# Blender config; must be set before bpy is imported.
os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="mimic-test-blender-user-"))

import bpy  # noqa: E402
import pytest  # noqa: E402
from paths import CHECKPOINT, ROOT  # noqa: E402

MODULE = "bl_ext.dev.mimic"


def backend_pid(session) -> int | None:
    backend = session._backend
    return backend.process.pid if backend is not None and backend.process is not None else None


def serving(pid: int) -> bool:
    """Whether process `pid` is (still) a `mimic serve` backend."""
    try:
        return b"mimic.cli\0serve" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture(scope="session")
def addon(tmp_path_factory):
    """The extension, built as users get it and enabled once; its modules as attributes."""
    tmp = tmp_path_factory.mktemp("extension")
    zip_path = tmp / "mimic.zip"
    done = subprocess.run([sys.executable, str(ROOT / "install" / "build_extension.py"), "--out", str(zip_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp / "repo" / "mimic")
    repo = bpy.context.preferences.extensions.repos.new(name="dev", module="dev", custom_directory=str(tmp / "repo"),
                                                        source="USER")
    assert bpy.ops.preferences.addon_enable(module=MODULE) == {"FINISHED"}
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.python = sys.executable
    prefs.checkpoint = str(CHECKPOINT)
    modules = SimpleNamespace(prefs=prefs, **{name.rpartition(".")[2]: importlib.import_module(f"{MODULE}.{name}")
                                              for name in ("batch", "job", "operators", "prewarm", "properties",
                                                           "scene_io",
                                                           "core.compute", "core.errors", "core.session",
                                                           "core.settings", "core.worker", "character")})
    assert Path(modules.job.__file__).is_relative_to(tmp)  # the built extension, not the checkout
    yield modules
    pid = backend_pid(modules.session)
    bpy.ops.preferences.addon_disable(module=MODULE)  # unregister() stops the backend
    bpy.context.preferences.extensions.repos.remove(repo)
    assert pid is None or not serving(pid)
