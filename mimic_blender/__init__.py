"""Mimic for Blender: animate a head from speech in the speaking style of a reference performance."""

from __future__ import annotations

import bpy

from . import operators, panel, properties, session

CLASSES = (properties.MimicStyle, properties.MimicSceneSettings, properties.MimicPreferences,
           *operators.CLASSES, *panel.CLASSES)
_cli_command = None


def register():
    global _cli_command
    from . import batch

    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.mimic = bpy.props.PointerProperty(type=properties.MimicSceneSettings)
    wm = bpy.types.WindowManager
    wm.mimic_running = bpy.props.BoolProperty(options={"SKIP_SAVE"})
    wm.mimic_progress = bpy.props.FloatProperty(options={"SKIP_SAVE"})
    wm.mimic_status = bpy.props.StringProperty(options={"SKIP_SAVE"})
    _cli_command = bpy.utils.register_cli_command("mimic", batch.cli_command)


def unregister():
    global _cli_command
    session.stop()
    if _cli_command is not None:
        bpy.utils.unregister_cli_command(_cli_command)
        _cli_command = None
    for name in ("mimic_running", "mimic_progress", "mimic_status"):
        delattr(bpy.types.WindowManager, name)
    del bpy.types.Scene.mimic
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
