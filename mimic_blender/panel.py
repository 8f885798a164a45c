"""The N-panel tab "Mimic" in the 3D Viewport."""

from __future__ import annotations

import json

import bpy

from . import job, prewarm, scene_io
from .character import fit_quality
from .core import session
from .core.character import quality_line, report_line
from .core.errors import JobError


class MIMIC_UL_styles(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0):
        layout.prop(item, "name", text="", emboss=False, icon="OUTLINER_OB_ARMATURE")


class MIMIC_PT_main(bpy.types.Panel):
    bl_label = "Mimic"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Mimic"

    def draw(self, context):
        prewarm.kick(context)
        layout = self.layout
        scene, wm, settings = context.scene, context.window_manager, context.scene.mimic
        obj = context.active_object

        box = layout.box()
        if obj is not None and obj.type == "MESH":
            box.label(text=f"Target: {obj.name} ({len(obj.data.vertices)} vertices)", icon="MESH_DATA")
        else:
            box.label(text="Target: select the head mesh", icon="ERROR")
        try:
            strip = job.find_strip(scene, None)
            first, end, _ = scene_io.strip_timing(strip)
            box.label(text=f"Audio: {strip.name} (frames {first}-{end - 1})", icon="SOUND")
        except JobError as e:
            box.label(text=str(e), icon="ERROR")

        draw_character(layout.box(), settings, obj)

        box = layout.box()
        box.prop(settings, "style_source", expand=True)
        if settings.style_source == "OBJECT":
            box.prop(settings, "style_object")
            row = box.row(align=True)
            row.prop(settings, "style_start")
            row.prop(settings, "style_end")
        elif settings.style_source == "FILE":
            box.prop(settings, "style_file")
        row = box.row()
        row.template_list("MIMIC_UL_styles", "", settings, "styles", settings, "style_index", rows=3)
        col = row.column(align=True)
        col.operator("mimic.capture_style", icon="ADD", text="")
        col.operator("mimic.style_remove", icon="REMOVE", text="")
        if len(settings.styles) >= 2:
            row = box.row(align=True)
            row.prop_search(settings, "mix_with", settings, "styles", text="")
            row.prop(settings, "mix_weight")
            row.operator("mimic.style_mix", text="Mix")

        if wm.mimic_running:
            layout.progress(factor=wm.mimic_progress, type="BAR", text=wm.mimic_status or "Working")
            layout.label(text="Esc to cancel", icon="CANCEL")
        else:
            layout.operator("mimic.speaker_style", icon="PLAY_SOUND")
        layout.label(text=session.status(), icon="CONSOLE")


def draw_character(box, settings, obj) -> None:
    """The character part: what to animate, the model head, the fit and its quality, the key set."""
    box.prop(settings, "character_mode")
    if settings.character_mode == "MODEL":
        return
    box.prop(settings, "model_head")
    quality = fit_quality(obj) if obj is not None else None
    row = box.row()
    row.operator("mimic.fit_character", icon="MOD_SHRINKWRAP")
    if quality is not None:
        box.label(text=f"Fit: {quality_line(quality)}", icon="CHECKMARK")
    else:
        box.label(text="No fit yet: made on the first run (or Fit to Character)", icon="INFO")
    if settings.character_mode == "SHAPE_KEYS":
        box.prop(settings, "shape_keys")
        box.prop(settings, "smoothness")
    result = obj.data.get("mimic_result") if obj is not None and obj.type == "MESH" else None
    report = json.loads(result).get("report") if result else None
    if report:
        box.label(text=report_line(report), icon="SHAPEKEY_DATA")


CLASSES = (MIMIC_UL_styles, MIMIC_PT_main)
