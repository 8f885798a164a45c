"""Mimic: speaking-style disentanglement for speech-driven 3D facial animation."""

from importlib import metadata
from pathlib import Path

import tomllib


def _version() -> str:
    """The extension's version: blender_manifest.toml beside this source (a checkout, the extension
    zip), else the installed package's (a venv made by Set up Backend)."""
    manifest = Path(__file__).resolve().parents[2] / "blender_manifest.toml"
    if manifest.is_file():
        return tomllib.loads(manifest.read_text())["version"]
    return metadata.version("mimic")


__version__ = _version()
