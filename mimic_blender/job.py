"""The one core behind the button and the batch command: read the scene, ask the backend,
write the keys. Three phases so the UI can run the middle one off the main thread:

    gather(...)  bpy, main thread  -> Inputs (plain arrays)
    compute(...) no bpy            -> Outputs (plain arrays)
    apply(...)   bpy, main thread  -> shape keys + action

`run` chains them synchronously (background mode, batch jobs, tests).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import mapping, scene_io, session
from .client import BackendError
from .scene_io import JobError, SoundSpan


@dataclass
class Settings:
    python: str
    checkpoint: str
    device: str = "auto"
    error_bound: float = 1e-4  # model units (metres for FLAME)
    units: str = "AUTO"  # mesh units per model unit: AUTO, METRES, CENTIMETRES, MILLIMETRES
    curves: str = "AUTO"  # KEYS (editable keyframes), SAMPLES (baked, compact), AUTO (samples past KEYS_BUDGET)


KEYS_BUDGET = 20 * 2**20  # bytes of keyframes (72 bytes each) above which AUTO bakes samples: ~2 min at 30 fps


@dataclass
class Style:
    """Where the speaking style comes from: exactly one of object (+ frames), file, code."""
    object: object = None  # a mesh object whose animation over `frames` is the reference
    frames: tuple[int, int] | None = None  # inclusive
    file: str | None = None  # .npz (vertices, template) or .npy offsets
    code: list[float] | None = None  # a stored style code
    label: str = ""


@dataclass
class Inputs:
    target_name: str
    strip_name: str
    first_frame: int
    frames: int  # scene frames to key
    scene_fps: float
    rest: np.ndarray  # (V, 3) target rest shape, mesh units
    factor: float  # mesh units per model unit
    audio: np.ndarray | SoundSpan  # 16 kHz mono samples, or a sound for the backend to decode
    style_vertices: np.ndarray | None = None  # (F, V, 3) model units
    style_neutral: np.ndarray | None = None  # (V, 3) model units
    style_code: list[float] | None = None


@dataclass
class Outputs:
    mean: np.ndarray  # (V, 3) mesh units
    basis: np.ndarray  # (K, V, 3) mesh units
    tracks: np.ndarray  # (frames, K) in [-1, 1]
    max_error: float  # model units
    style_code: list[float] = field(default_factory=list)


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


def gather(context, target, strip, style: Style, settings: Settings, sample_rate: int = 16000) -> Inputs:
    if target is None or target.type != "MESH":
        raise JobError("the target must be a mesh object (select the head)")
    scene = context.scene
    fps = scene_io.scene_fps(scene)
    first, end, _ = scene_io.strip_timing(strip)
    rest = scene_io.rest_vertices(target)
    inputs = Inputs(target.name, strip.name, first, end - first, fps, rest,
                    mapping.unit_factor(rest, settings.units), scene_io.read_strip_audio(strip, scene, sample_rate))
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


def encode_style(backend, vertices: np.ndarray, neutral: np.ndarray) -> list[float]:
    np.save(backend.workdir / "style-vertices.npy", vertices)
    np.save(backend.workdir / "style-neutral.npy", neutral)
    return backend.request("encode_style", vertices=str(backend.workdir / "style-vertices.npy"),
                           neutral=str(backend.workdir / "style-neutral.npy"))["style"]


def read_style_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """.npz with `vertices` (F,V,3) and `template` (V,3), or .npy of offsets (F,V,3)."""
    file = Path(path)
    if not file.is_file():
        raise JobError(f"style file not found: {file}")
    try:
        data = np.load(file, allow_pickle=False)
        if file.suffix == ".npz":
            if "vertices" not in data or "template" not in data:
                raise JobError(f"{file.name} must hold arrays 'vertices' (F,V,3) and 'template' (V,3)")
            vertices, neutral = data["vertices"], data["template"]
        else:
            vertices = data
            neutral = np.zeros(vertices.shape[-2:] if vertices.ndim == 3 else (vertices.shape[-1] // 3, 3))
    except (ValueError, OSError) as e:
        raise JobError(f"cannot read style file {file}: {e}") from None
    return np.asarray(vertices, np.float32), np.asarray(neutral, np.float32)


def audio_file(backend, inputs: Inputs) -> str:
    """The strip's samples as a .npy in the session folder; decoded by the backend when Blender
    could not (a SoundSpan)."""
    sound = inputs.audio
    if not isinstance(sound, SoundSpan):
        np.save(backend.workdir / "audio.npy", sound)
        return str(backend.workdir / "audio.npy")
    path = sound.path
    if sound.data is not None:
        path = str(backend.workdir / f"packed-sound{Path(sound.path).suffix or '.wav'}")
        Path(path).write_bytes(sound.data)
    try:
        return backend.request("read_audio", path=path, start=sound.start, stop=sound.stop)["audio"]
    except BackendError as e:
        if e.code != "bad_input":
            raise
        raise JobError(f"cannot read the sound of strip '{inputs.strip_name}': {e}") from None
    finally:
        if sound.data is not None:
            Path(path).unlink(missing_ok=True)


def compute(inputs: Inputs, settings: Settings, on_progress: Callable | None = None,
            cancelled: Callable[[], bool] | None = None) -> Outputs:
    backend = session.backend(settings)
    facts = backend.facts["model"]
    if len(inputs.rest) != facts["vertex_count"]:
        raise JobError(f"'{inputs.target_name}' has {len(inputs.rest)} vertices but the model animates "
                       f"{facts['vertex_count']}: use a head with the model's topology (FLAME: 5023)")
    code = inputs.style_code
    if code is None:
        code = encode_style(backend, inputs.style_vertices, inputs.style_neutral)
    audio = audio_file(backend, inputs)
    try:
        result = backend.request("generate", on_progress=on_progress, cancelled=cancelled, audio=audio, style=code,
                                 error_bound=settings.error_bound)
    finally:
        Path(audio).unlink(missing_ok=True)
    try:
        mean, basis, weights = (np.load(result[name]) for name in ("mean", "basis", "weights"))
    finally:
        for name in ("mean", "basis", "weights"):
            Path(result[name]).unlink(missing_ok=True)
    basis, tracks = mapping.unit_tracks(basis * inputs.factor,
                                        mapping.tracks_at_scene_frames(weights, result["fps"], inputs.scene_fps,
                                                                       inputs.frames))
    return Outputs(mean * inputs.factor, basis, tracks, result["max_error"], code)


def sampled(curves: str, tracks_shape: tuple[int, int]) -> bool:
    frames, k = tracks_shape
    return curves == "SAMPLES" or curves == "AUTO" and frames * (k + 1) * 72 > KEYS_BUDGET


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
                                              "max_error": outputs.max_error})


def print_progress(done: int, total: int, stage: str) -> None:
    print(f"mimic: {stage} {done}/{total} frames", file=sys.stderr, flush=True)


def summary(inputs: Inputs, outputs: Outputs) -> str:
    return (f"{inputs.frames} frames on '{inputs.target_name}' from '{inputs.strip_name}': {len(outputs.basis)} shapes, "
            f"largest vertex error {outputs.max_error * 1e6:.1f} µm (model units)")


def run(context, target, strip, style: Style, settings: Settings, on_progress=None, cancelled=None) -> str:
    """All three phases, synchronously; returns a one-line summary."""
    inputs = gather(context, target, strip, style, settings)
    outputs = compute(inputs, settings, on_progress, cancelled)
    apply(context, inputs, outputs, settings)
    return summary(inputs, outputs)
