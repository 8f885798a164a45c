"""The job behind the button and the batch commands, on the Blender side: read the scene into
plain inputs, and write the computed result back. Three phases so the UI can run the middle one
off the main thread:

    gather(...)          bpy, main thread  -> Inputs (plain arrays)
    core.compute(...)    no bpy            -> Outputs (plain arrays)
    apply(...)           bpy, main thread  -> shape keys + action

`run` chains them synchronously (background mode, batch jobs, tests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from . import character as ch
from . import scene_io
from .core import mapping
from .core.character import Carried, CharacterInputs, KeyOutputs, carry, report_line
from .core.compute import compute, summary
from .core.errors import JobError
from .core.settings import Audio, Inputs, Outputs, Settings, SoundSpan, sampled
from .core.sources import read_style_file


@dataclass
class Style:
    """Where the speaking style comes from: exactly one of object (+ frames), file, code."""
    object: object = None  # a mesh object whose animation over `frames` is the reference
    frames: tuple[int, int] | None = None  # inclusive
    file: str | None = None  # .npz (vertices, template) or .npy offsets
    code: list[float] | None = None  # a stored style code
    label: str = ""


def find_strip(scene, name: str | None):
    """The named sound strip, else the active one, else the only selected one."""
    candidates = [s for s in scene_io.strips(scene) if s.type == "SOUND"]
    if name:
        strip = next((s for s in candidates if s.name == name), None)
        if strip is None:
            raise JobError(f"no sound strip named '{name}' in scene '{scene.name}'")
        return strip
    active = scene.sequence_editor.active_strip if scene.sequence_editor else None
    if active is not None and active.type == "SOUND":
        return active
    selected = [s for s in candidates if s.select]
    if len(selected) == 1:
        return selected[0]
    raise JobError("select one sound strip in the Video Sequencer (the dialogue to animate)")


def check_target(target) -> None:
    if target is None or target.type != "MESH":
        raise JobError("the target must be a mesh object (select the head)")


def gather(context, target, strip, style: Style, settings: Settings, model_rate: int = 16000) -> Inputs:
    """Inputs for animating `target` to the sound strip `strip` (its audio decoded here, see
    scene_io.read_strip_audio)."""
    check_target(target)
    first, end, _ = scene_io.strip_timing(strip)
    return target_inputs(context, target, strip.name, first, end - first,
                         scene_io.read_strip_audio(strip, context.scene, model_rate), style, settings)


def target_inputs(context, target, name: str, first_frame: int, frames: int | None, audio: Audio | SoundSpan,
                  style: Style, settings: Settings) -> Inputs:
    """Inputs for animating the mesh `target` from frame `first_frame` (`frames` of them, None: as
    long as the audio lasts) to `audio`; `name` names the result's action."""
    rest = scene_io.rest_vertices(target)
    inputs = Inputs(target.name, name, first_frame, frames, scene_io.scene_fps(context.scene), rest,
                    mapping.unit_factor(rest, settings.units), audio)
    if style.code is not None:
        inputs.style_code = list(style.code)
    else:
        inputs.style_vertices, inputs.style_neutral = style_arrays(context, style, settings.units)
    return inputs


def style_arrays(context, style: Style, units: str) -> tuple[np.ndarray, np.ndarray]:
    """Reference vertices (F, V, 3) and their neutral (V, 3), in model units."""
    if style.object is not None:
        source = style.object
        if source.type != "MESH":
            raise JobError(f"the style reference '{source.name}' is not a mesh")
        a, b = style.frames
        if b < a:
            raise JobError(f"style frame range {a}-{b} is empty")
        neutral = scene_io.rest_vertices(source)
        scale = mapping.unit_factor(neutral, units)
        return scene_io.evaluated_vertices(context, source, range(a, b + 1)) / scale, neutral / scale
    if style.file:
        return read_style_file(style.file)
    raise JobError("choose a style: a reference object and frames, a file, or a saved style")


def apply(context, inputs: Inputs, outputs: Outputs, settings: Settings) -> None:
    """Replace any previous Mimic result on the target with this one; on failure undo our part."""
    import bpy

    target = bpy.data.objects.get(inputs.target_name)
    if target is None or target.type != "MESH" or len(target.data.vertices) != len(inputs.rest):
        raise JobError(f"the target '{inputs.target_name}' changed while Mimic was working; run it again")
    scene_io.check_writable(target)
    scene_io.remove_result(target)
    try:
        scene_io.write_result(target, inputs.strip_name, outputs.mean, outputs.basis, outputs.tracks,
                              inputs.first_frame, sampled=sampled(settings.curves, outputs.tracks.shape))
    except Exception:
        scene_io.remove_result(target)
        raise
    target.data["mimic_result"] = json.dumps({"strip": inputs.strip_name, "k": len(outputs.basis),
                                              "max_error": outputs.max_error, "precision": outputs.precision})


def apply_character(context, inputs: Inputs, character: CharacterInputs, carried: Carried,
                    settings: Settings) -> str:
    """The carried result onto the character (replacing an earlier one), the new fit stored; its summary."""
    import bpy

    target, model = bpy.data.objects.get(character.name), bpy.data.objects.get(inputs.target_name)
    if target is None or model is None or target.type != "MESH":
        raise JobError(f"the character '{character.name}' changed while Mimic was working; run it again")
    if carried.fit is not None:
        ch.store_fit(context, target, model, carried.fit, carried.quality)
    outputs = carried.outputs
    ch.keep_other_animation(target)
    scene_io.remove_result(target)
    try:
        if isinstance(outputs, KeyOutputs):
            ch.write_keys(target, inputs.strip_name, outputs, inputs.first_frame,
                          sampled(settings.curves, outputs.weights.shape))
            done = f"{inputs.frames} frames on {report_line(outputs.report)} of '{target.name}'"
        else:
            scene_io.write_result(target, inputs.strip_name, outputs.mean, outputs.basis, outputs.tracks,
                                  inputs.first_frame, sampled=sampled(settings.curves, outputs.tracks.shape))
            done = f"{inputs.frames} frames on '{target.name}' through its fit: {len(outputs.basis)} shapes"
    except Exception:
        scene_io.remove_result(target)
        raise
    target.data["mimic_result"] = json.dumps({"strip": inputs.strip_name, "mode": character.mode,
                                              "report": getattr(outputs, "report", None),
                                              "precision": carried.precision})
    return f"{done}, audio encoder in {carried.precision}" if carried.precision else done


@dataclass
class Job:
    """Everything gathered on the main thread; `compute` needs no bpy, `finish` does."""
    settings: Settings
    inputs: Inputs
    character: CharacterInputs | None = None
    pending: dict | None = None  # what to fit the character from, when it has no fit

    def compute(self, on_progress=None, cancelled=None):
        if self.character is None:
            return compute(self.inputs, self.settings, on_progress, cancelled)
        return carry(self.inputs, self.character, self.settings, self.pending, on_progress, cancelled)

    def finish(self, context, result) -> str:
        if self.character is None:
            apply(context, self.inputs, result, self.settings)
            return summary(self.inputs, result)
        return apply_character(context, self.inputs, self.character, result, self.settings)


def prepare(context, target, strip, style: Style, settings: Settings, character=None) -> Job:
    """The job for target (the model head) and, when `character` is (object, mode, key spec,
    smoothness), the character to carry its result onto."""
    job = Job(settings, gather(context, target, strip, style, settings))
    if character is not None:
        job.character, job.pending = ch.character_inputs(character[0], target, *character[1:])
    return job


def run(context, target, strip, style: Style, settings: Settings, on_progress=None, cancelled=None,
        character=None) -> str:
    """All three phases, synchronously; returns a one-line summary."""
    job = prepare(context, target, strip, style, settings, character)
    return job.finish(context, job.compute(on_progress, cancelled))
