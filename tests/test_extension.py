"""The extension zip: built and validated by Blender's own tool, then installed as a user would
("Install from Disk") into an empty Blender user folder, where the add-on must come up enabled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from paths import ROOT

pytestmark = pytest.mark.slow  # Blender subprocesses

# Runs in a fresh Blender (a subprocess), so installing and enabling touches no other test.
INSTALL = """
import importlib, json, sys
import bpy
result = bpy.ops.extensions.package_install_files(filepath=sys.argv[1], repo="user_default", enable_on_install=True)
protocol = importlib.import_module("bl_ext.user_default.mimic.core.backend_source").protocol
print(json.dumps({"result": sorted(result), "addons": [addon.module for addon in bpy.context.preferences.addons],
                  "protocol": protocol.__file__}))
"""


@pytest.fixture(scope="session")
def build(tmp_path_factory) -> tuple[Path, str]:
    """(zip, the build script's output)"""
    out = tmp_path_factory.mktemp("dist") / "mimic.zip"
    done = subprocess.run([sys.executable, str(ROOT / "install" / "build_extension.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done.stdout


def test_build_is_validated_and_reports_the_zip(build):
    zip_path, output = build
    assert f'Success parsing TOML in "{zip_path}"' in output  # blender_ext.py validate
    assert output.strip().endswith(f"extension: {zip_path}")


def test_zip_holds_the_addon_and_the_bundled_backend(build):
    zip_path, _ = build
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        defaults = json.loads(archive.read("backend_defaults.json"))
    for expected in ("blender_manifest.toml", "__init__.py", "core/client.py", "core/setup_backend.py",
                     "backend/pyproject.toml", "backend/mimic/protocol.py", "backend/mimic/cli.py",
                     "backend_defaults.json"):
        assert expected in names
    assert not [name for name in names if "__pycache__" in name or ".egg-info" in name or name.endswith(".pyc")]
    venv_python = ROOT / ".venv" / "bin" / "python"
    assert defaults == {"python": str(venv_python) if venv_python.is_file() else ""}


def test_install_from_disk_enables_the_addon(build, tmp_path):
    zip_path, _ = build
    user_resources = tmp_path / "blender-user"
    user_resources.mkdir()
    done = subprocess.run([sys.executable, "-c", INSTALL, str(zip_path)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, BLENDER_USER_RESOURCES=str(user_resources)))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    installed = user_resources / "extensions" / "user_default" / "mimic"
    assert report["result"] == ["FINISHED"]
    assert "bl_ext.user_default.mimic" in report["addons"]
    assert Path(report["protocol"]) == installed / "backend" / "mimic" / "protocol.py"
    assert (installed / "blender_manifest.toml").is_file()
