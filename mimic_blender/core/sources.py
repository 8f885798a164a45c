"""Reading the job's sources without bpy: a strip's sound (through Blender's own `aud` module when
it is there) and style files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import JobError
from .mapping import audio_span
from .settings import Audio, SoundSpan


def read_sound(path: str, packed: bytes | None, label: str, trim_seconds: float, seconds: float,
               model_rate: int) -> Audio | SoundSpan:
    """The `seconds` of a sound that play after skipping `trim_seconds`: mono float32 at the sound's
    own rate, decoded by Blender's `aud` (all Blender plays, the sound of movie files too) and not
    resampled (the backend resamples once, as `mimic generate` does; aud's resampler differs from it by
    a few percent of the signal). Where there is no `aud`, a SoundSpan (samples at `model_rate`) for
    the backend to decode. `label` names the sound in errors."""
    try:
        import aud
    except ImportError:
        return SoundSpan(path, packed, *audio_span(trim_seconds, seconds, model_rate))
    if packed is not None:
        handle, path = tempfile.mkstemp(suffix=Path(path).suffix or ".wav", prefix="mimic-packed-")
        with os.fdopen(handle, "wb") as f:
            f.write(packed)
    sound = aud.Sound(path)
    try:
        rate = int(sound.specs[0])  # opens the file: an unreadable one raises here, where data() would abort Blender
        samples = np.asarray(sound.rechannel(1).data(), dtype=np.float32)[:, 0]
    except Exception as e:  # aud raises its own error types
        raise JobError(f"cannot read the sound of {label} ({path}): {e}") from None
    finally:
        if packed is not None:
            os.unlink(path)
    start, stop = audio_span(trim_seconds, seconds, rate)
    segment = samples[start:stop]
    if segment.size == 0:
        raise JobError(f"{label} plays no audio (its sound is empty or trimmed away)")
    return Audio(segment, rate)


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
