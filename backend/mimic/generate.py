"""Speech -> motion for any audio length, equal to the official demo loop but fast.

The official loop: 150-frame windows sharing 10 frames; each window's audio normalised and
encoded on its own; the next window starts from the motion predicted 10 frames before the end
of the previous one; outputs after the overlap concatenated. Here audio windows of equal
length go through the encoder in batches, the decoder caches keys and values, and windows are
streamed, so memory stays bounded whatever the length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from .errors import MimicError
from .model import Mimic


@dataclass(frozen=True)
class Window:
    start: int  # first frame
    end: int  # one past the last frame
    keep: int  # frames at the start that repeat the previous window's output

    @property
    def frames(self) -> int:
        return self.end - self.start


def plan_windows(frames: int, window: int, overlap: int) -> list[Window]:
    windows, f = [], 0
    while f < frames:
        if f == 0:
            w = Window(0, min(window, frames), 0)
        else:
            w = Window(f - overlap, min(f + window - overlap, frames), overlap)
        windows.append(w)
        f = w.end
    return windows


def normalise(audio: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance, as Wav2Vec2FeatureExtractor does it."""
    return (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MimicError("device 'cuda' asked for, but PyTorch sees no CUDA GPU (install a CUDA build or use --device cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise MimicError("device 'mps' asked for, but this PyTorch has no Apple MPS support (use --device cpu)")
    if name not in ("cpu", "cuda", "mps"):
        raise MimicError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)


class Generator:
    """A loaded model on a device, kept warm between calls."""

    def __init__(self, model: Mimic, device: torch.device, batch_windows: int = 4):
        self.model = model.to(device).eval()
        self.config = model.config
        self.device = device
        self.batch_windows = batch_windows

    def frame_count(self, samples: int) -> int:
        return samples // self.config.samples_per_frame

    @torch.no_grad()
    def style_code(self, reference_motion: np.ndarray) -> torch.Tensor:
        """(F, V, 3) motion (vertices minus neutral) -> style code (C,), from the last `window` frames."""
        motion = torch.from_numpy(reference_motion[-self.config.window:].reshape(1, -1, self.config.motion_dim))
        return self.model.encode_style(motion.to(self.device))[0]

    @torch.inference_mode()
    def stream(self, audio: np.ndarray, style: torch.Tensor) -> Iterator[np.ndarray]:
        """16 kHz mono audio and a style code -> motion chunks (n, V, 3), one per window, in order."""
        frames = self.frame_count(len(audio))
        if frames == 0:
            raise MimicError(f"audio is shorter than one frame ({1000 / self.config.fps:.0f} ms)")
        init_state = torch.zeros(1, self.config.motion_dim, device=self.device)
        style, feedback = style.to(self.device)[None], self.model.decoder.feedback()
        for window, features in self._features(audio, plan_windows(frames, self.config.window, self.config.overlap)):
            motion = self.model.decoder(features[None], style, init_state, feedback)[0]  # (n, M)
            init_state = motion[-min(self.config.overlap, len(motion))][None]  # a next window needs >= overlap
            yield motion[window.keep:].reshape(-1, self.config.vertex_count, 3).float().cpu().numpy()

    def _features(self, audio: np.ndarray, windows: list[Window]) -> Iterator[tuple[Window, torch.Tensor]]:
        """Audio features per window; windows of equal length are encoded together."""
        step = self.config.samples_per_frame
        i = 0
        while i < len(windows):
            group = [windows[i]]
            while (len(group) < self.batch_windows and i + len(group) < len(windows)
                   and windows[i + len(group)].frames == group[0].frames):
                group.append(windows[i + len(group)])
            batch = np.stack([normalise(audio[w.start * step:w.end * step]) for w in group])
            features = self.model.audio_encoder(torch.from_numpy(batch).to(self.device), group[0].frames)
            yield from zip(group, features)
            i += len(group)
