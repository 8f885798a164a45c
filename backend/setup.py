"""The backend's version is the extension's: read from blender_manifest.toml beside backend/ (in a
checkout, in the extension zip, and in the copy Set up Backend installs from)."""

from pathlib import Path

import tomllib
from setuptools import setup

MANIFEST = Path(__file__).resolve().parent.parent / "blender_manifest.toml"

setup(version=tomllib.loads(MANIFEST.read_text())["version"])
