"""The training data of `mimic train`: random windows of the training sequences, in batches.

An epoch is `windows_per_sequence` windows of every training sequence, shuffled (`plan_epoch`).
A batch's windows are random `window`-frame spans of its sequences (shorter sequences whole; the
batch is cut to its shortest window), each window's audio cut to the same time span and normalised
on its own, init_state the motion of the frame before the window. Window starts and the epoch
order come from (seed, epoch, batch) alone, so a resumed run sees the same data as an
uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import MimicError
from .generate import normalise

MIN_FRAMES = 8  # shorter training sequences are refused (SpecAugment needs 10 audio features)


@dataclass
class Batch:
    audio: torch.Tensor  # (B, S) each window normalised on its own
    motion: torch.Tensor  # (B, T, M) vertices - template
    init_state: torch.Tensor  # (B, M) motion of the frame before the window; zeros at a sequence's start
    labels: torch.Tensor  # (B,) classifier index of each window's subject

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.audio, self.motion, self.init_state, self.labels

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in self.tensors()))

    def pin_memory(self) -> Batch:  # the DataLoader's pin_memory calls this
        return Batch(*(t.pin_memory() for t in self.tensors()))


def plan_epoch(sequences: int, windows_per_sequence: int, batch_size: int, world: int, seed: int,
               epoch: int) -> np.ndarray:
    """(steps * world, batch_size) sequence indices: every sequence `windows_per_sequence` times,
    shuffled by (seed, epoch), wrapped round to fill the last step. Process r runs rows r, r + world, ..."""
    order = np.random.default_rng([seed, epoch]).permutation(np.repeat(np.arange(sequences), windows_per_sequence))
    per_step = batch_size * world
    steps = math.ceil(len(order) / per_step)
    return np.resize(order, steps * per_step).reshape(steps * world, batch_size)


class WindowBatches(torch.utils.data.Dataset):
    """Item i: the batch of windows for row rows[i] of an epoch plan."""

    def __init__(self, sequences: list, templates: dict, labels: dict, plan: np.ndarray, rows: list[int],
                 window: int, sample_rate: int, fps: float, seed: int, epoch: int):
        self.sequences, self.templates, self.labels = sequences, templates, labels
        self.plan, self.rows = plan, rows
        self.window, self.sample_rate, self.fps = window, sample_rate, fps
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Batch:
        row = self.rows[i]
        rng = np.random.default_rng([self.seed, self.epoch, row])
        seqs = [self.sequences[j] for j in self.plan[row]]
        vertices = [s.vertices() for s in seqs]
        for s, v in zip(seqs, vertices):
            template = self.templates[s.subject]
            if v.ndim != 3 or v.shape[1:] != template.shape:
                raise MimicError(f"{s.vertices_path}: vertices of shape {v.shape}, "
                                 f"expected (frames, {template.shape[0]}, 3)")
            if len(v) < MIN_FRAMES:
                raise MimicError(f"{s.name} has {len(v)} frames; training needs at least {MIN_FRAMES}: leave it "
                                 "out of the training split")
        frames = min(self.window, *(len(v) for v in vertices))
        audio, motion, init = [], [], []
        span = round(frames * self.sample_rate / self.fps)  # samples
        for s, v in zip(seqs, vertices):
            template = self.templates[s.subject]
            start = int(rng.integers(0, len(v) - frames + 1))
            motion.append(v[start:start + frames] - template)
            init.append(v[start - 1] - template if start > 0 else np.zeros_like(template))
            first = round(start * self.sample_rate / self.fps)
            piece = np.asarray(s.audio(self.sample_rate), dtype=np.float32)[first:first + span]
            window = np.zeros(span, np.float32)  # audio that ends before the motion is padded with silence
            if len(piece) > 1:
                window[:len(piece)] = normalise(piece)
            audio.append(window)
        return Batch(audio=torch.from_numpy(np.stack(audio)),
                     motion=torch.from_numpy(np.stack(motion).astype(np.float32)).flatten(2),
                     init_state=torch.from_numpy(np.stack(init).astype(np.float32)).flatten(1),
                     labels=torch.tensor([self.labels[s.subject] for s in seqs]))


def collate(batch: Batch) -> Batch:
    """The DataLoader's collate_fn: an item is already a batch."""
    return batch
