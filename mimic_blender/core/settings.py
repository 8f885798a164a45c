"""The job's settings and data, as plain values: what the Blender layer gathers from the scene
(Inputs), what the backend's answer becomes (Outputs), and how to run (Settings)."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field

import numpy as np

from .backend_source import protocol as p

KEYS_BUDGET = 20 * 2**20  # bytes of keyframes (72 bytes each) above which AUTO bakes samples: ~2 min at 30 fps


@dataclass
class Settings:
    """The one place the defaults live (the Preferences and the batch options start from them)."""
    python: str = ""  # the backend's interpreter
    checkpoint: str = ""
    device: str = "auto"
    precision: str = p.FP32  # the audio encoder's arithmetic: fp32 (official parity), bf16, fp16 (CUDA), fast
    error_bound: float = p.DEFAULT_ERROR_BOUND  # model units (metres for FLAME)
    units: str = "AUTO"  # mesh units per model unit: AUTO, METRES, CENTIMETRES, MILLIMETRES
    curves: str = "AUTO"  # KEYS (editable keyframes), SAMPLES (baked, compact), AUTO (samples past KEYS_BUDGET)
    idle_stop: float = 15 * 60.0  # seconds without a job after which the warm backend stops, freeing memory; 0: never


def devices(system: str = sys.platform, machine: str = platform.machine()) -> list[str]:
    """The devices offered (`auto` picks the best present): CUDA on Windows and Linux, MPS on Apple silicon."""
    if system != "darwin":
        return ["auto", "cpu", "cuda"]
    return ["auto", "cpu", "mps"] if machine == "arm64" else ["auto", "cpu"]


@dataclass
class Audio:
    """A strip's samples as Blender decoded them: mono float32 at the sound's own rate (the backend
    resamples them once, as `mimic generate` does)."""
    samples: np.ndarray
    sample_rate: int


@dataclass
class SoundSpan:
    """A strip's sound for the backend to decode, for a Blender without its `aud` audio module (the
    PyPI `bpy` 4.2 build): the file, or a packed sound's bytes, and the samples [start, stop) that
    play, counted at the model's rate."""
    path: str  # the sound's file (for a packed sound, where it was: its suffix names the format)
    data: bytes | None  # a packed sound
    start: int
    stop: int | None  # None: to the end of the sound


@dataclass
class Inputs:
    target_name: str
    strip_name: str
    first_frame: int
    frames: int | None  # scene frames to key; None: as many as the audio lasts (as `mimic generate --fps` counts)
    scene_fps: float
    rest: np.ndarray  # (V, 3) target rest shape, mesh units
    factor: float  # mesh units per model unit
    audio: Audio | SoundSpan
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
    precision: str | None = None  # the audio encoder's arithmetic it was computed in (`fast` resolved); None: no model


def sampled(curves: str, tracks_shape: tuple[int, int]) -> bool:
    """Whether the weight curves are baked to samples (see Settings.curves)."""
    frames, k = tracks_shape
    return curves == "SAMPLES" or curves == "AUTO" and frames * (k + 1) * 72 > KEYS_BUDGET
