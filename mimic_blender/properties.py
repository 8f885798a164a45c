"""Settings stored in the .blend (per scene) and in the add-on's Preferences."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .core.character import ARKIT, CharacterInputs
from .core.settings import Settings, devices
from .core.setup_backend import torch_builds, venv_python

DEVICE_NAMES = {"auto": ("Auto", "CUDA or Apple MPS when available, else the CPU"), "cpu": ("CPU", ""),
                "cuda": ("CUDA", "an NVIDIA GPU"), "mps": ("MPS", "the Apple silicon GPU")}
DEVICES = [(device, *DEVICE_NAMES[device]) for device in devices()]  # this platform's
UNIT_ITEMS = [("AUTO", "Auto", "Detect from the mesh's size: metres, centimetres or millimetres"),
              ("METRES", "Metres", ""), ("CENTIMETRES", "Centimetres", ""), ("MILLIMETRES", "Millimetres", "")]


CHARACTER_MODES = [("MODEL", "Model Head", "The active object has the model's topology: animate it directly"),
                   ("DENSE", "Character", "The active object is a character of any topology: Mimic's motion through "
                                          "the fit, as shape keys of its own"),
                   ("SHAPE_KEYS", "Its Shape Keys", "The active object is a character: weights of its existing shape "
                                                    "keys (ARKit or named ones)")]
CURVE_ITEMS = [("AUTO", "Auto", "Editable keyframes, baked samples for long results (over about 2 minutes)"),
               ("KEYS", "Keyframes", "One editable keyframe per frame"),
               ("SAMPLES", "Samples", "Baked F-curve samples: a sixth of the keyframes' size in the .blend")]


class MimicStyle(bpy.types.PropertyGroup):
    """A captured speaking style: the model's style code, and where it came from."""
    code: StringProperty(description="Style code (JSON list of numbers)")
    source: StringProperty(description="Where the style was captured from")
    checkpoint: StringProperty(description="The model that encoded it (codes belong to one model)")
    # no methods here: a registered PropertyGroup with Python functions crashes bpy 4.3 at exit


def style_code(style: MimicStyle) -> list[float]:
    return json.loads(style.code)


class MimicSceneSettings(bpy.types.PropertyGroup):
    style_source: EnumProperty(name="Style", items=[
        ("OBJECT", "Object", "Another object's animation over a frame range"),
        ("FILE", "File", ".npz with vertices (F,V,3) and template (V,3), or .npy of offsets (F,V,3)"),
        ("LIBRARY", "Library", "A style captured earlier into this .blend")], default="OBJECT")
    style_object: PointerProperty(name="Reference", type=bpy.types.Object,
                                  poll=lambda self, obj: obj.type == "MESH",
                                  description="Mesh whose animation is the reference performance")
    style_start: IntProperty(name="Start", default=1, description="First frame of the reference performance")
    style_end: IntProperty(name="End", default=150, description="Last frame (the model reads up to 150 frames)")
    style_file: StringProperty(name="Style File", subtype="FILE_PATH")
    styles: CollectionProperty(type=MimicStyle)
    style_index: IntProperty(name="Active Style")
    mix_with: StringProperty(name="With", description="The style to mix the active one with")
    mix_weight: FloatProperty(name="Weight", default=0.5, min=0.0, max=1.0, subtype="FACTOR",
                              description="0 keeps the active style, 1 gives the other")
    character_mode: EnumProperty(name="Animate", items=CHARACTER_MODES, default="MODEL")
    model_head: PointerProperty(name="Model Head", type=bpy.types.Object, poll=lambda self, obj: obj.type == "MESH",
                                description="A head with the model's topology (your FLAME head, or the demo head), "
                                            "fitted onto the character")
    shape_keys: StringProperty(name="Keys", default=ARKIT,
                               description="ARKIT (every ARKit-named key of the character) or key names, "
                                           "comma-separated")
    smoothness: FloatProperty(name="Smoothness", default=CharacterInputs.smoothness, min=0.0, soft_max=10.0,
                              description="Penalty on frame-to-frame weight changes (1: a whole key's jump costs as "
                                          "much as missing that key for a frame)")


def default_python(package: str) -> str:
    """The backend made by Set up backend, else the project environment the zip was built
    from, else this interpreter (right when Blender runs as a module inside that environment)."""
    try:
        venv = Path(bpy.utils.extension_path_user(package, path="venv", create=False))
    except ValueError:  # not running as an extension
        venv = None
    if venv is not None and venv_python(venv).is_file():
        return str(venv_python(venv))
    defaults = Path(__file__).parent / "backend_defaults.json"
    if defaults.is_file():
        python = json.loads(defaults.read_text(encoding="utf-8")).get("python", "")
        if python and Path(python).is_file():
            return python
    return sys.executable if "bpy" in sys.modules and not bpy.app.binary_path else ""


class MimicPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    python: StringProperty(name="Backend Interpreter", subtype="FILE_PATH",
                           description="Python with torch that runs `mimic serve` (empty: automatic)")
    checkpoint: StringProperty(name="Checkpoint", subtype="FILE_PATH",
                               description="Released Mimic .pth, or a model folder (config.json + model.safetensors)")
    device: EnumProperty(name="Device", items=DEVICES, default=Settings.device)
    precision: EnumProperty(name="Precision", default=Settings.precision, items=[
        ("fp32", "Exact (fp32)", "The official network's arithmetic"),
        ("fast", "Fast", "The fastest this machine supports: bf16 on CPUs and GPUs with it, fp16 on CUDA "
                         "(vertices within a fraction of a millimetre of exact)"),
        ("bf16", "bf16", "bfloat16 audio encoder (CPUs with bf16 instructions, GPUs)"),
        ("fp16", "fp16", "float16 audio encoder (CUDA)")])
    error_bound_mm: FloatProperty(name="Error Bound (mm)", default=Settings.error_bound * 1000, min=0.001, max=10.0,
                                  description="Largest distance of any vertex from the exact result, in model mm")
    units: EnumProperty(name="Mesh Units", items=UNIT_ITEMS, default=Settings.units)
    curves: EnumProperty(name="Weight Curves", items=CURVE_ITEMS, default=Settings.curves)
    idle_minutes: IntProperty(name="Stop Idle Backend (min)", default=round(Settings.idle_stop / 60), min=0,
                              description="Minutes without a job after which the warm backend stops and frees its "
                                          "memory (0: keep it while Blender runs)")
    cuda: BoolProperty(name="CUDA PyTorch", description="Set up the backend with a CUDA build of PyTorch")

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "python", placeholder=default_python(__package__) or "(not found)")
        col.prop(self, "checkpoint")
        col.prop(self, "device")
        col.prop(self, "precision")
        col.prop(self, "error_bound_mm")
        col.prop(self, "units")
        col.prop(self, "curves")
        col.prop(self, "idle_minutes")
        row = layout.row()
        row.operator("mimic.check_backend", icon="CHECKMARK")
        row.operator("mimic.setup_backend", icon="CONSOLE")
        if "cuda" in torch_builds():
            row.prop(self, "cuda")


def preferences(context):
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


def settings(context, **overrides) -> Settings:
    """Settings from the Preferences (defaults when the add-on is not enabled, as in
    `python -m mimic_blender.batch`), then explicit overrides that are not None."""
    prefs = preferences(context)
    values = {}
    if prefs is not None:
        values.update(checkpoint=bpy.path.abspath(prefs.checkpoint), device=prefs.device,
                      precision=prefs.precision, error_bound=prefs.error_bound_mm / 1000.0, units=prefs.units,
                      curves=prefs.curves, idle_stop=prefs.idle_minutes * 60.0)
        if prefs.python:
            values["python"] = bpy.path.abspath(prefs.python)
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.setdefault("python", default_python(__package__))
    return Settings(**values)
