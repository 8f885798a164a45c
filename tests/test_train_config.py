"""The config of `mimic train`: every error names its key, in one line; the errors that need the
data; the example config documents every key; a pretrained audio backbone from a local folder."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from tiny_vocaset import TINY_AUDIO, config_dict, write_config
from transformers import Wav2Vec2Config, Wav2Vec2Model

from mimic.cli import main
from mimic.errors import MimicError
from mimic.losses import OFFICIAL_WEIGHTS
from mimic.model import MimicConfig
from mimic.run_state import distributed_from_env
from mimic.train import Trainer
from mimic.train_config import LossesSection, TrainingSection, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


def test_pretrained_audio_and_frozen_feature_encoder(tmp_path, data_root, dataset):
    """audio_pretrained: a local Hugging Face folder's weights go into the backbone (its config sets
    the geometry); the convolutional feature encoder is frozen."""
    pretrained = Wav2Vec2Model(Wav2Vec2Config(vocab_size=32, **TINY_AUDIO))
    pretrained.save_pretrained(tmp_path / "w2v")
    data = config_dict(data_root, tmp_path / "run")
    del data["model"]["audio_model"]
    data["audio_pretrained"] = str(tmp_path / "w2v")
    trainer = Trainer(parse_config(data), dataset, distributed_from_env(), torch.device("cpu"), None)
    assert trainer.audio_source.startswith("pretrained weights from")
    ours = trainer.model.audio_encoder.backbone.state_dict()
    for key, value in pretrained.state_dict().items():
        assert torch.equal(ours[key], value), key
    assert not any(p.requires_grad for p in trainer.model.audio_encoder.backbone.feature_extractor.parameters())
    assert all(p.requires_grad for p in trainer.model.audio_encoder.backbone.encoder.parameters())
    assert trainer.model.config.num_ids == 2 and trainer.model.config.fps == 30

    data["model"]["audio_model"] = {"hidden_size": 32}
    with pytest.raises(MimicError, match="audio_model and audio_pretrained both given"):
        Trainer(parse_config(data), dataset, distributed_from_env(), torch.device("cpu"), None)


BAD = {
    "unknown top key": ({"epochs": 3}, r"unknown key 'epochs' \(known: output, data, seed"),
    "unknown nested key": ({"training": {"batchsize": 2}}, r"unknown key 'training.batchsize'"),
    "unknown loss key": ({"losses": {"style_cycle": {"wieght": 1}}}, r"unknown key 'losses.style_cycle.wieght'"),
    "unknown loss term": ({"losses": {"ctc": {"weight": 1}}}, r"unknown key 'losses.ctc'"),
    "wrong int": ({"training": {"batch_size": "six"}}, r"training.batch_size must be a whole number, not str 'six'"),
    "float is no int": ({"training": {"epochs": 2.5}}, r"training.epochs must be a whole number, not float 2.5"),
    "bool is no int": ({"seed": True}, r"seed must be a whole number, not bool True"),
    "negative seed": ({"seed": -1}, r"seed must be at least 0, not int -1"),
    "wrong float": ({"training": {"lr": "fast"}}, r"training.lr must be a number, not str 'fast'"),
    "infinite float": ({"training": {"lr": float("inf")}}, r"training.lr must be a finite number, not float inf"),
    "wrong bool": ({"losses": {"content_clip": {"enabled": "no"}}},
                   r"losses.content_clip.enabled must be true or false"),
    "wrong text": ({"data": {"kind": 3, "root": "x"}}, r"data.kind must be text, not int 3"),
    "section not a mapping": ({"training": [1, 2]}, r"training must be a mapping"),
    "negative weight": ({"losses": {"style_cycle": {"weight": -1}}}, r"losses.style_cycle.weight must be at least 0"),
    "zero batch": ({"training": {"batch_size": 0}}, r"training.batch_size must be at least 1, not int 0"),
    "short window": ({"training": {"window": 7}}, r"training.window must be at least 8"),
    "zero margin": ({"losses": {"content_cycle": {"margin": 0}}}, r"losses.content_cycle.margin must be more than 0"),
    "bad device": ({"training": {"device": "tpu"}}, r"training.device must be 'auto', 'cpu', 'cuda' or 'mps'"),
    "bad decay": ({"losses": {"inverse_classifier": {"decay": [20, 0.1]}}},
                  r"losses.inverse_classifier.decay\[0\] must be an \[epoch, factor\] pair like \[20, 0.1\], "
                  r"not int 20"),
    "two errors": ({"seed": "x", "training": {"epochs": 0}},
                   r"seed must be a whole number, not str 'x'; training.epochs must be at least 1"),
    "unknown model key": ({"model": {"feature_dims": 8}}, r"unknown key 'model.feature_dims'"),
    "wrong model type": ({"model": {"feature_dim": "wide"}}, r"model.feature_dim must be a whole number"),
    "bad preset": ({"model": {"preset": "flame"}},
                   r"model.preset must be 'hdtf', 'vocaset' or 'biwi', not str 'flame'"),
    "missing data": ({"data": None}, r"data must be a mapping"),
}


@pytest.mark.parametrize("name", BAD)
def test_config_errors_name_the_key(tmp_path, data_root, name):
    change, message = BAD[name]
    data = config_dict(data_root, tmp_path / "run")
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            merged = copy.deepcopy(data[key])
            for k, v in value.items():
                merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
            data[key] = merged
        else:
            data[key] = value
    path = write_config(tmp_path / "bad.yaml", data)
    with pytest.raises(MimicError, match=message):
        load_config(path)
    assert main(["train", "--config", str(path)]) == 1  # one line, no traceback


def test_config_errors_that_need_the_data(tmp_path, data_root, dataset):
    for model, message in (({"audio_model": {"hidden_sise": 8}}, r"unknown key 'model.audio_model.hidden_sise'"),
                           ({"audio_model": {"num_hidden_layers": "two"}}, r"num_hidden_layers must be a number"),
                           ({"vertex_count": 21}, r"model.vertex_count is 21 but the vocaset data has 20"),
                           ({"num_ids": 1}, r"model.num_ids is 1 but the data has 2 training subjects"),
                           ({"preset": "hdtf"}, r"conv alignment .* needs 25 fps")):
        data = config_dict(data_root, tmp_path / "run")
        data["model"] = {**data["model"], **model}
        with pytest.raises(MimicError, match=message):
            Trainer(parse_config(data), dataset, distributed_from_env(), torch.device("cpu"), None)
    with pytest.raises(MimicError, match=r"output is required"):
        parse_config({"data": {"kind": "vocaset", "root": "x"}})
    assert main(["train"]) == 1
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 1


def test_example_config_is_valid_and_documents_every_key():
    path = REPO / "configs" / "train_vocaset.yaml"
    config = load_config(path)
    assert config.training.batch_size == 6 and config.training.lr == 1e-4 and config.training.window == 150
    assert config.losses.objective().weights == OFFICIAL_WEIGHTS
    assert config.losses.objective().inverse_decay == ((20, 0.1), (40, 0.5))
    text = path.read_text()
    for section in (TrainingSection, LossesSection):
        for key in section.model_fields:
            assert re.search(rf"^\s+{key}:", text, re.MULTILINE), f"{section.__name__}.{key} is not in {path.name}"
    for key in ("output", "seed", "data", "kind", "root", "options", "num_workers", "model", "audio_pretrained",
                "alpha", "decay", "margin", "enabled", "weight", "audio_model"):
        assert re.search(rf"^\s*#?\s*{key}:", text, re.MULTILINE), key
    for field in MimicConfig.__dataclass_fields__:
        assert re.search(rf"^\s*#?\s*{field}:", text, re.MULTILINE) or field in ("vertex_count", "fps"), field
