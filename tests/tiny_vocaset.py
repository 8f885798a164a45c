"""A tiny VOCASET-layout dataset (4 sequences of 40-46 frames, 20 vertices, 2 subjects) and
`mimic train` configs for a tiny network on it (feature_dim 16, a 1-layer wav2vec2 16 wide),
shared by the training tests. `data_root` and `dataset` are module-scoped fixtures: import them."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from mimic.data import open_dataset

V = 20
SUBJECTS = ("FaceTalk_AA_TA", "FaceTalk_BB_TA")
TINY_AUDIO = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                  conv_dim=[16] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
TINY_MODEL = dict(feature_dim=16, hidden_size=16, conv_layers=1, encoder_layers=1, encoder_heads=2, encoder_ff=32,
                  decoder_heads=2, decoder_ff=32)


def write_vocaset(root: Path) -> None:
    """VOCASET as FaceFormer prepares it: 60 fps vertex files (read at 30 fps), 16 kHz wavs, templates.pkl.
    Each subject moves with its own amplitude, so style is learnable."""
    rng = np.random.default_rng(0)
    (root / "wav").mkdir(parents=True)
    (root / "vertices_npy").mkdir()
    templates = {s: rng.normal(size=(V, 3)).astype(np.float32) for s in SUBJECTS}
    with open(root / "templates.pkl", "wb") as f:
        pickle.dump(templates, f, protocol=2)
    for k, subject in enumerate(SUBJECTS):
        rest = rng.normal(size=(V, 3)) * 0.03  # the subject's resting offset from its template
        for j in range(2):
            frames = 40 + 6 * j  # at 30 fps
            t = np.arange(2 * frames) / 60
            basis = rng.normal(size=(3, V, 3)) * 0.02 * (1 + k)
            motion = rest + sum(np.sin(2 * np.pi * (i + 1) * t + i)[:, None, None] * basis[i] for i in range(3))
            name = f"{subject}_sentence{j + 1:02d}"
            np.save(root / "vertices_npy" / f"{name}.npy", (templates[subject] + motion).reshape(2 * frames, -1)
                    .astype(np.float32))
            ts = np.arange(frames * 16000 // 30) / 16000
            audio = (0.1 * np.sin(2 * np.pi * 220 * ts) * (1 + np.sin(2 * np.pi * 3 * ts))
                     + 0.01 * rng.normal(size=len(ts)))
            soundfile.write(root / "wav" / f"{name}.wav", audio.astype(np.float32), 16000)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vocaset")
    write_vocaset(root)
    return root


def config_dict(data_root: Path, output: Path, **training) -> dict:
    return {
        "output": str(output), "seed": 3,
        "data": {"kind": "vocaset", "root": str(data_root),
                 "options": {"train_subjects": list(SUBJECTS), "val_subjects": [], "test_subjects": []}},
        "model": {"preset": "vocaset", **TINY_MODEL, "audio_model": dict(TINY_AUDIO)},
        "training": {"epochs": 10, "batch_size": 2, "window": 24, "windows_per_sequence": 2, "log_every": 1,
                     "lr": 1e-3, **training},
    }


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def dataset(data_root):
    return open_dataset("vocaset", data_root, train_subjects=list(SUBJECTS), val_subjects=[], test_subjects=[])
