"""Shared fixtures: the official tiny checkpoint and its reference numbers, a full-size official
config, and builders for tiny random-weight networks. Everything is local; nothing is downloaded."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from blender_addon import addon  # noqa: F401  (the extension, for every Blender test)
from blender_shot import expected, scene, shot  # noqa: F401  (the shot of tests/test_blender*.py)
from paths import FIXTURES, IO, TINY
from service_backend import s  # noqa: F401  (a `mimic serve` per module, for tests/test_service*.py)
from tiny_vocaset import data_root, dataset  # noqa: F401  (fixtures, for the training tests)
from transformers import HubertConfig

from mimic.checkpoint import load_model
from mimic.model import MimicConfig

# The tests' tensors are small: one thread is faster than two, and does not collapse when the
# machine is busy (the CLI tests run their subprocesses two at a time).
torch.set_num_threads(1)


# Sizes of the scaled-down networks the tests build with random weights.
TINY_SIZES = dict(vertex_count=64, feature_dim=32, hidden_size=32, conv_layers=2, encoder_layers=1,
                  encoder_heads=4, encoder_ff=64, decoder_ff=64, num_ids=4)


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """The official-format tiny checkpoint (.pth) made by the reference implementation."""
    return TINY / "checkpoint.pth"


@pytest.fixture(scope="session")
def ref() -> dict[str, np.ndarray]:
    """Inputs and the reference's outputs for the tiny checkpoint (see fixtures/README.md)."""
    with np.load(IO) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The tiny checkpoint loaded through the public loader (eval mode). Do not modify it."""
    return load_model(tiny_checkpoint)


@pytest.fixture(scope="session")
def tiny_params(tiny_checkpoint) -> dict:
    """The tiny checkpoint's nested official config. Shared: copy it before changing it."""
    return torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)["params"]


@pytest.fixture(scope="session")
def full_keys() -> dict[str, list[int]]:
    """Every key and shape of the full-size released checkpoint (559 keys)."""
    return json.loads((FIXTURES / "official_full_keys.json").read_text())


@pytest.fixture
def full_params(tiny_params) -> dict:
    """The released 3D-HDTF model's official config: the tiny one scaled up to full size."""
    params = copy.deepcopy(tiny_params)
    params["NETWORK"].update(
        motion_dim=15069, feature_dim=128, hidden_size=128, num_conv_layers=5, encoder_layers=4, nhead_encoder=4,
        dim_feedforward=256, audio_hidden_size=768, wav2vec2model="facebook/wav2vec2-base-960h")
    params["NETWORK"]["decoder"].update(nhead=4, dim_feedforward=256)
    params["DATA"]["train_ids"] = 150
    return params


@pytest.fixture
def full_state(full_keys) -> dict[str, torch.Tensor]:
    """An official-format full-size state dict on the meta device: right keys and shapes, no memory."""
    return {key: torch.empty(shape, device="meta") for key, shape in full_keys.items()}


@pytest.fixture(scope="session")
def tiny_wav2vec2() -> dict:
    """Geometry of the fixture's tiny wav2vec2 (hidden 32, 2 layers, 50 Hz)."""
    return json.loads((TINY / "tiny-wav2vec2" / "config.json").read_text())


@pytest.fixture(scope="session")
def tiny_hubert() -> dict:
    return HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4).to_dict()


@pytest.fixture(scope="session")
def tiny_config(tiny_wav2vec2):
    """make(preset="hdtf", **overrides) -> a small MimicConfig of that preset (tiny wav2vec2 by default)."""
    def make(preset: str = "hdtf", **overrides) -> MimicConfig:
        return MimicConfig.preset(preset, **{**TINY_SIZES, "audio_model": tiny_wav2vec2, **overrides})
    return make


@pytest.fixture(autouse=True)
def _seed():
    """Random weights and data are the same on every run."""
    torch.manual_seed(0)
