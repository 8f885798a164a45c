"""Speech -> motion for any audio length, equal to the official demo loop but fast.

The official loop: 150-frame windows sharing 10 frames; each window's audio normalised and
encoded on its own; the next window starts from the motion predicted 10 frames before the end
of the previous one; outputs after the overlap concatenated. Here all audio is encoded first,
windows of equal length in batches (the features are small: 128 floats a frame), then the
decoder, which caches keys and values, runs window after window and the motion is streamed, so
memory stays bounded whatever the length. The audio encoder may run at a lower precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .errors import MimicError
from .model import Mimic
from .precision import pick_precision, set_precision
from .protocol import ENCODING, FP32, GENERATING

Progress = Callable[[str, int, int], None]  # (stage, frames done, frames in all)
PROGRESS_FRAMES = 10  # the decoder reports (and can be stopped) every this many frames
BATCH_WINDOWS = 4  # windows the audio encoder takes at once


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


def batches(windows: list[Window], size: int) -> list[list[Window]]:
    """Consecutive windows of equal length, up to `size` together: what the audio encoder takes at once."""
    groups: list[list[Window]] = []
    for w in windows:
        if groups and len(groups[-1]) < size and groups[-1][0].frames == w.frames:
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


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
        raise MimicError("device 'cuda' asked for, but PyTorch sees no CUDA GPU "
                         "(install a CUDA build or use --device cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise MimicError("device 'mps' asked for, but this PyTorch has no Apple MPS support (use --device cpu)")
    if name not in ("cpu", "cuda", "mps"):
        raise MimicError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)


class Generator:
    """A loaded model on a device, kept warm between calls. It takes the model over: moves it to
    the device and sets its audio encoder's `precision` (mimic.precision; fp32, the default, is
    the official network's arithmetic)."""

    def __init__(self, model: Mimic, device: torch.device | str, batch_windows: int = BATCH_WINDOWS,
                 precision: str = FP32):
        device = torch.device(device)
        self.precision = pick_precision(precision, device)
        self.model = model.to(device).eval()
        set_precision(self.model.audio_encoder, self.precision)
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
    def stream(self, audio: np.ndarray, style: torch.Tensor, progress: Progress | None = None) -> Iterator[np.ndarray]:
        """16 kHz mono audio and a style code -> motion chunks (n, V, 3), one per window, in order.
        progress(stage, done, total) is called while the audio is encoded (after each step of the
        audio encoder, `_after_each_layer`) and while frames are generated (every PROGRESS_FRAMES); an exception it
        raises (a cancel) ends the stream there."""
        frames = self.frame_count(len(audio))
        if frames == 0:
            raise MimicError(f"audio is shorter than one frame ({1000 / self.config.fps:.0f} ms)")
        report = progress or (lambda stage, done, total: None)
        windows = plan_windows(frames, self.config.window, self.config.overlap)
        features = self._features(audio, windows, lambda done: report(ENCODING, done, frames))
        init_state = torch.zeros(1, self.config.motion_dim, device=self.device)
        style, feedback = style.to(self.device)[None], self.model.decoder.feedback()
        done = 0
        report(GENERATING, done, frames)
        for window, f in zip(windows, features):
            def on_frame(i: int, window=window, done=done):  # i frames of this window decoded
                if i > window.keep and (i % PROGRESS_FRAMES == 0 or i == window.frames):
                    report(GENERATING, done + i - window.keep, frames)
            motion = self.model.decoder(f[None], style, init_state, feedback, on_frame)[0]  # (n, M)
            init_state = motion[-min(self.config.overlap, len(motion))][None]  # a next window needs >= overlap
            done += window.frames - window.keep
            yield motion[window.keep:].reshape(-1, self.config.vertex_count, 3).float().cpu().numpy()

    def _features(self, audio: np.ndarray, windows: list[Window],
                  on_encoded: Callable[[int], None]) -> list[torch.Tensor]:
        """Audio features (n, C) of every window; windows of equal length are encoded together.
        on_encoded(frames) after each step of the encoder, counting the new frames of each window."""
        step = self.config.samples_per_frame
        features, done = [], 0
        on_encoded(done)
        for group in batches(windows, self.batch_windows):
            new = sum(w.frames - w.keep for w in group)
            batch = np.stack([normalise(audio[w.start * step:w.end * step]) for w in group])
            with self._after_each_layer(lambda k, n, done=done, new=new: on_encoded(done + new * k // n)):
                encoded = self.model.audio_encoder(torch.from_numpy(batch).to(self.device), group[0].frames)
            features.extend(encoded.float())
            done += new
        return features

    @contextlib.contextmanager
    def _after_each_layer(self, callback: Callable[[int, int], None]):
        """callback(k, n) after step k of the audio backbone's n, while in the block: each
        convolution of its feature extractor and the rest of that layer (the convolutions on the
        raw audio are its longest steps), then each transformer layer."""
        backbone = self.model.audio_encoder.backbone
        steps = [m for layer in backbone.feature_extractor.conv_layers for m in (layer.conv, layer)]
        steps += list(backbone.encoder.layers)
        handles = [step.register_forward_hook(lambda *_, k=k: callback(k, len(steps)))
                   for k, step in enumerate(steps, 1)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
