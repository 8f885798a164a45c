"""The backend started ahead of the first click (core.session.prewarm, on a thread): when the
panel is drawn with usable Preferences, and when a .blend with Mimic data is opened. Never in
background mode: batch jobs start it when they need it."""

from __future__ import annotations

import os

import bpy
from bpy.app.handlers import persistent

from . import properties
from .core import session


def kick(context, again: bool = False) -> None:
    """Cheap enough for draw(): nothing once the backend is (being) started for these settings."""
    if bpy.app.background:
        return
    settings = properties.settings(context)
    if settings.python and os.path.isfile(settings.python):
        session.prewarm(settings, again)


def has_mimic_data() -> bool:
    """A result on a mesh, a style library, or a style source chosen in some scene."""
    return any("mimic_result" in mesh for mesh in bpy.data.meshes) or any(
        scene.mimic.styles or scene.mimic.style_object or scene.mimic.style_file for scene in bpy.data.scenes)


@persistent
def on_load_post(*_) -> None:
    if has_mimic_data():
        kick(bpy.context, again=True)
