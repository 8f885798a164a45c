"""Reading the user's files (audio, vertex arrays) with one clear message per problem, and
writing results atomically: a failed run leaves no half-written file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import soundfile
import soxr

from .errors import MimicError


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Any file soundfile reads, any rate and channel count -> mono float32 at sample_rate."""
    path = Path(path)
    if not path.is_file():
        raise MimicError(f"audio file not found: {path}")
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        raise MimicError(f"cannot read audio {path}: {e} (readable: WAV, FLAC, OGG, MP3, AIFF; "
                         "extract the sound of a video to WAV first)") from None
    if data.size == 0:
        raise MimicError(f"audio file {path} holds no samples")
    mono = data.mean(axis=1)
    if not np.isfinite(mono).all():
        raise MimicError(f"audio file {path} contains NaN or infinite samples")
    return resample(mono, rate, sample_rate)


def resample(mono: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """Mono samples at `rate` -> float32 at `sample_rate` (soxr HQ, as the official demo's librosa)."""
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def load_vertices(path: str | Path, what: str, vertex_count: int, frames: bool) -> np.ndarray:
    """A .npy of vertices: (F, V, 3) or (F, 3V) when frames, else (V, 3) or (3V,). Returns float32
    (F, V, 3) or (V, 3)."""
    path = Path(path)
    if not path.is_file():
        raise MimicError(f"{what} file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise MimicError(f"{what} file {path} is not a plain .npy array ({e})") from None
    except (OSError, EOFError) as e:  # EOFError: an empty file
        raise MimicError(f"cannot read {what} file {path}: {e or 'it is empty'}") from None
    return check_vertices(array, f"{what} ({path.name})", vertex_count, frames)


def check_vertices(array: np.ndarray, what: str, vertex_count: int, frames: bool) -> np.ndarray:
    lead = 1 if frames else 0
    expected = "(frames, vertices, 3)" if frames else "(vertices, 3)"
    if not isinstance(array, np.ndarray) or not (np.issubdtype(array.dtype, np.integer)
                                                 or np.issubdtype(array.dtype, np.floating)):
        raise MimicError(f"{what} must be a numeric array {expected}")
    if array.ndim == lead + 1 and array.shape[-1] % 3 == 0:
        array = array.reshape(array.shape[:lead] + (-1, 3))
    if array.ndim != lead + 2 or array.shape[-1] != 3:
        raise MimicError(f"{what} has shape {array.shape}; expected {expected}")
    if frames and array.shape[0] == 0:
        raise MimicError(f"{what} has no frames")
    if array.shape[-2] != vertex_count:
        raise MimicError(f"{what} has {array.shape[-2]} vertices but the model animates {vertex_count}: "
                         "use a mesh with the model's topology")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise MimicError(f"{what} contains NaN or infinite values")
    return array


@contextlib.contextmanager
def atomic_npy(path: str | Path, shape: tuple, dtype=np.float32):
    """A writable memory-mapped .npy that appears at `path` only if the block succeeds."""
    path = Path(path)
    if path.suffix != ".npy":
        raise MimicError(f"output {path} must end in .npy")
    if not path.parent.is_dir():
        raise MimicError(f"output folder does not exist: {path.parent}")
    partial = path.with_name(f".{path.name}.partial.npy")
    array = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=shape)
    try:
        yield array
        array.flush()
        del array
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
