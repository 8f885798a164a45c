"""Mimic for Blender: animate a head from speech in the speaking style of a reference performance."""

from __future__ import annotations

import atexit

# bpy and the modules that need it are imported in register(), so the bpy-free core (core/) imports
# and tests without Blender.
_cli_command = None


def _classes() -> tuple:
    from . import operators, panel, properties

    return (properties.MimicStyle, properties.MimicSceneSettings, properties.MimicPreferences,
            *operators.CLASSES, *panel.CLASSES)


def register():
    global _cli_command
    import bpy

    from . import batch, prewarm, properties

    for cls in _classes():
        bpy.utils.register_class(cls)
    bpy.types.Scene.mimic = bpy.props.PointerProperty(type=properties.MimicSceneSettings)
    wm = bpy.types.WindowManager
    wm.mimic_running = bpy.props.BoolProperty(options={"SKIP_SAVE"})
    wm.mimic_progress = bpy.props.FloatProperty(options={"SKIP_SAVE"})
    wm.mimic_status = bpy.props.StringProperty(options={"SKIP_SAVE"})
    _cli_command = bpy.utils.register_cli_command("mimic", batch.cli_command)
    bpy.app.handlers.load_post.append(prewarm.on_load_post)
    if not bpy.app.binary_path:  # bpy as a module crashes at exit if the add-on is left registered
        atexit.register(_unregister_at_exit)


def _unregister_at_exit():
    if _cli_command is not None:
        unregister()


def unregister():
    global _cli_command
    if _cli_command is None:  # done already: at exit, after _unregister_at_exit, Blender disables add-ons too
        return
    import bpy

    from . import prewarm
    from .core import session

    bpy.app.handlers.load_post.remove(prewarm.on_load_post)
    session.stop()
    bpy.utils.unregister_cli_command(_cli_command)
    _cli_command = None
    for name in ("mimic_running", "mimic_progress", "mimic_status"):
        delattr(bpy.types.WindowManager, name)
    del bpy.types.Scene.mimic
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
