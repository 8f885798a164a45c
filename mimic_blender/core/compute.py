"""The middle of a job, without bpy: the gathered inputs go to the backend, its compact result
comes back as shape-key offsets and weight tracks in the target's units and scene frames. Runs on
a worker thread behind the button, synchronously in batch jobs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import mapping, session, stages
from .backend_source import protocol as p
from .errors import BackendError, JobError
from .settings import Audio, Inputs, Outputs, Settings


def encode_style(backend, vertices: np.ndarray, neutral: np.ndarray) -> list[float]:
    np.save(backend.workdir / "style-vertices.npy", vertices)
    np.save(backend.workdir / "style-neutral.npy", neutral)
    return backend.request(p.ENCODE_STYLE, vertices=str(backend.workdir / "style-vertices.npy"),
                           neutral=str(backend.workdir / "style-neutral.npy"))["style"]


def audio_file(backend, inputs: Inputs) -> tuple[str, int]:
    """(a .npy in the session folder of the strip's samples, their rate); decoded by the backend when
    Blender could not (a SoundSpan)."""
    sound = inputs.audio
    if isinstance(sound, Audio):
        np.save(backend.workdir / "audio.npy", sound.samples)
        return str(backend.workdir / "audio.npy"), sound.sample_rate
    path = sound.path
    if sound.data is not None:
        path = str(backend.workdir / f"packed-sound{Path(sound.path).suffix or '.wav'}")
        Path(path).write_bytes(sound.data)
    try:
        audio = backend.request(p.READ_AUDIO, path=path, start=sound.start, stop=sound.stop)["audio"]
        return audio, backend.facts["model"]["sample_rate"]
    except BackendError as e:
        if e.code != p.BAD_INPUT:
            raise
        raise JobError(f"cannot read the sound of strip '{inputs.strip_name}': {e}") from None
    finally:
        if sound.data is not None:
            Path(path).unlink(missing_ok=True)


def check_cancelled(cancelled: Callable[[], bool] | None) -> None:
    """BackendError(cancelled) once `cancelled()` says True: between the steps of a job."""
    if cancelled is not None and cancelled():
        raise BackendError(p.CANCELLED, "cancelled")


def check_vertex_count(backend, target_name: str, count: int) -> None:
    expected = backend.facts["model"]["vertex_count"]
    if count != expected:
        raise JobError(f"'{target_name}' has {count} vertices but the model animates {expected}: use a head "
                       "with the model's topology (FLAME: 5023)")


def compute(inputs: Inputs, settings: Settings, on_progress: Callable | None = None,
            cancelled: Callable[[], bool] | None = None) -> Outputs:
    """`on_progress(done, total, stage)` hears every stage (see core.stages); once `cancelled()`
    says True the job ends with BackendError(cancelled) at the next step, or within the running
    generate's window, having changed nothing."""
    report = on_progress or (lambda done, total, stage: None)

    def step(stage: str) -> None:
        check_cancelled(cancelled)
        report(0, 0, stage)

    with session.use(settings, report, cancelled) as backend:
        check_vertex_count(backend, inputs.target_name, len(inputs.rest))
        code = inputs.style_code
        if code is None:
            step(p.ENCODE_STYLE)
            code = encode_style(backend, inputs.style_vertices, inputs.style_neutral)
        if not isinstance(inputs.audio, Audio):
            step(p.READ_AUDIO)
        audio, rate = audio_file(backend, inputs)
        try:
            check_cancelled(cancelled)  # the backend's own stages follow
            result = backend.request(p.GENERATE, on_progress=report, cancelled=cancelled, audio=audio,
                                     sample_rate=rate, style=code, error_bound=settings.error_bound)
        finally:
            Path(audio).unlink(missing_ok=True)
        try:
            mean, basis, weights = (np.load(result[name]) for name in ("mean", "basis", "weights"))
        finally:
            for name in ("mean", "basis", "weights"):
                Path(result[name]).unlink(missing_ok=True)
    frames = inputs.frames
    if frames is None:
        frames = mapping.resample_count(result["frames"], result["fps"], inputs.scene_fps)
    tracks = mapping.tracks_at_scene_frames(weights, result["fps"], inputs.scene_fps, frames)
    basis, tracks = mapping.unit_tracks(basis * inputs.factor, tracks)
    return Outputs(mean * inputs.factor, basis, tracks, result["max_error"], code,
                   backend.facts["model"]["precision"])


def print_progress(done: int, total: int, stage: str) -> None:
    print(f"mimic: {stages.describe(done, total, stage)[1]}", file=sys.stderr, flush=True)


def summary(inputs: Inputs, outputs: Outputs) -> str:
    return (f"{len(outputs.tracks)} frames on '{inputs.target_name}' from '{inputs.strip_name}': "
            f"{len(outputs.basis)} shapes, largest vertex error {outputs.max_error * 1e6:.1f} µm (model units), "
            f"audio encoder in {outputs.precision}")
