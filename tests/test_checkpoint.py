"""Checkpoint loading and saving: the released format at full size (on the meta device, so nothing
is allocated), broken files, the project's own format, HuBERT as the audio backbone, and presets."""

import json
import pickle
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile
import torch

from mimic import protocol as p
from mimic.checkpoint import load_model, model_from_official, official_to_ours, save_model
from mimic.errors import MimicError
from mimic.model import Mimic, MimicConfig

WEIGHT_NORM = "audio_encoder.audio_encoder.encoder.pos_conv_embed.conv."


def our_name(official_key: str) -> str:
    return next(iter(official_to_ours({official_key: None})))


def mentions_key(message: str, official_key: str) -> bool:
    """The message names the key, as the checkpoint spells it or as the network does."""
    return official_key in message or our_name(official_key) in message


# ------------------------------------------------------------------ released format, full size


def test_full_size_checkpoint_loads(full_params, full_state, tmp_path):
    model = model_from_official({"params": full_params, "model": full_state}, tmp_path, device="meta")
    c = model.config
    assert (c.vertex_count, c.feature_dim, c.conv_layers, c.encoder_layers, c.num_ids, c.alignment, c.fps) == \
        (5023, 128, 5, 4, 150, "conv", 25.0)
    assert c.audio_model["model_type"] == "wav2vec2" and c.audio_model["hidden_size"] == 768
    parameters = dict(model.named_parameters())
    assert all(t.is_meta for t in parameters.values())
    assert parameters["decoder.motion_out.weight"].shape == (15069, 128)
    # the unused nn.Transformer parts of the official decoder are never built
    assert not any("transformer_decoder" in k for k in model.state_dict())


def test_full_size_checkpoint_with_released_weight_norm_names(full_params, full_state, tmp_path):
    """The released checkpoint (PyTorch 1.13) spells the weight-norm parameters weight_g / weight_v."""
    state = dict(full_state)
    state[WEIGHT_NORM + "weight_g"] = state.pop(WEIGHT_NORM + "parametrizations.weight.original0")
    state[WEIGHT_NORM + "weight_v"] = state.pop(WEIGHT_NORM + "parametrizations.weight.original1")
    model = model_from_official({"params": full_params, "model": state}, tmp_path, device="meta")
    weight_g = model.state_dict()[
        "audio_encoder.backbone.encoder.pos_conv_embed.conv.parametrizations.weight.original0"]
    assert tuple(weight_g.shape) == tuple(full_state[WEIGHT_NORM + "parametrizations.weight.original0"].shape)


@pytest.mark.parametrize("key", ["decoder.motion_map.weight", "logit_scale",
                                 "audio_encoder.audio_encoder.encoder.layers.11.final_layer_norm.bias"])
def test_missing_key(full_params, full_state, tmp_path, key):
    del full_state[key]
    with pytest.raises(MimicError) as error:
        model_from_official({"params": full_params, "model": full_state}, tmp_path, device="meta")
    message = str(error.value)
    assert "missing" in message and mentions_key(message, key), message


@pytest.mark.parametrize("key", ["style_encoder.motion_map.weight",
                                 "decoder.transformer_decoder.layers.0.linear1.bias"])
def test_wrong_shape(full_params, full_state, tmp_path, key):
    full_state[key] = torch.empty(tuple(full_state[key].shape[:-1]) + (full_state[key].shape[-1] + 1,), device="meta")
    with pytest.raises(MimicError) as error:
        model_from_official({"params": full_params, "model": full_state}, tmp_path, device="meta")
    message = str(error.value)
    assert "shape" in message and mentions_key(message, key), message


def test_unexpected_key(full_params, full_state, tmp_path):
    full_state["decoder.extra_head.weight"] = torch.empty(3, 128, device="meta")
    with pytest.raises(MimicError) as error:
        model_from_official({"params": full_params, "model": full_state}, tmp_path, device="meta")
    message = str(error.value)
    assert "unexpected" in message and "decoder.extra_head.weight" in message, message


def test_config_not_matching_weights(full_params, full_state, tmp_path):
    """A config that says 6 conv blocks for weights with 5: the sixth block's keys are missing."""
    full_params["NETWORK"]["num_conv_layers"] = 6
    with pytest.raises(MimicError, match="missing"):
        model_from_official({"params": full_params, "model": full_state}, tmp_path, device="meta")


def test_config_lacking_a_field(full_params, full_state, tmp_path):
    del full_params["NETWORK"]["feature_dim"]
    with pytest.raises(MimicError, match="feature_dim"):
        model_from_official({"params": full_params, "model": full_state}, tmp_path, device="meta")


def test_unpublished_variant_refused(full_params, full_state, tmp_path):
    full_params["NETWORK"]["style_fuse"] = "add"
    with pytest.raises(MimicError, match="style_fuse"):
        model_from_official({"params": full_params, "model": full_state}, tmp_path, device="meta")


# ------------------------------------------------------------------ released format, real files


class NeedsCode:
    """Unpickling an instance of this needs code from this module: weights_only refuses it."""

    def __init__(self):
        self.value = 1


def test_pickle_that_needs_code(tmp_path):
    path = tmp_path / "code.pth"
    torch.save({"params": {}, "model": {"x": torch.zeros(1)}, "extra": NeedsCode()}, path)
    with pytest.raises(MimicError) as error:
        load_model(path)
    message = str(error.value)
    assert "weights_only" in message and "code" in message, message


GARBAGE = {
    "random bytes": np.random.default_rng(1).bytes(5000),
    "text": b"this is not a checkpoint\n" * 10,
    "plain pickle": pickle.dumps({"model": [1, 2, 3]}, protocol=4),
    "zip of something else": None,  # made in the test
}


@pytest.mark.parametrize("kind", GARBAGE)
def test_not_a_checkpoint(tmp_path, kind):
    path = tmp_path / "garbage.pth"
    if GARBAGE[kind] is None:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "hello")
    else:
        path.write_bytes(GARBAGE[kind])
    with pytest.raises(MimicError) as error:
        load_model(path)
    message = str(error.value)
    assert re.search(r"not a .*checkpoint", message), message
    assert "need code" not in message and "\n" not in message, message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(MimicError, match="checkpoint"):
        load_model(path)


@pytest.mark.parametrize("obj", [torch.zeros(3), [torch.zeros(3)], {0: torch.zeros(1), "model": {}}],
                         ids=["tensor", "list", "mixed keys"])
def test_not_a_mimic_checkpoint(tmp_path, obj):
    path = tmp_path / "other.pth"
    torch.save(obj, path)
    with pytest.raises(MimicError, match="not a Mimic checkpoint"):
        load_model(path)


def test_dict_without_params(tmp_path, tiny_checkpoint):
    state = torch.load(tiny_checkpoint, weights_only=True)["model"]
    path = tmp_path / "state_only.pth"
    torch.save({"model": state}, path)
    with pytest.raises(MimicError, match="params"):
        load_model(path)


@pytest.mark.parametrize("fraction", [0.5, 0.999])
def test_truncated_checkpoint(tmp_path, tiny_checkpoint, fraction):
    data = tiny_checkpoint.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(MimicError, match="truncated"):
        load_model(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(MimicError, match="not found"):
        load_model(tmp_path / "nowhere.pth")


def test_unknown_audio_model(tmp_path, tiny_checkpoint):
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    checkpoint["params"]["NETWORK"]["wav2vec2model"] = "someone/wav2vec2-unheard-of"
    path = tmp_path / "unknown_audio.pth"
    torch.save(checkpoint, path)
    with pytest.raises(MimicError, match="someone/wav2vec2-unheard-of"):
        load_model(path)


def test_audio_model_folder_next_to_checkpoint(tmp_path, tiny_checkpoint, tiny_model):
    """The tiny wav2vec2's geometry is found in a folder beside the checkpoint, wherever it lives."""
    shutil.copy(tiny_checkpoint, tmp_path / "checkpoint.pth")
    shutil.copytree(tiny_checkpoint.parent / "tiny-wav2vec2", tmp_path / "tiny-wav2vec2")
    model = load_model(tmp_path / "checkpoint.pth")
    assert_same_state(model, tiny_model)


# ----------------------------------------------------------------------------- project format


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def as_json(config: MimicConfig) -> dict:
    """The config as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(config.to_dict()))


def test_project_round_trip(tmp_path, tiny_model, ref):
    folder = save_model(tiny_model, tmp_path / "model")
    assert sorted(f.name for f in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(folder)
    assert not loaded.training
    assert as_json(loaded.config) == as_json(tiny_model.config)
    assert_same_state(loaded, tiny_model)
    args = [torch.from_numpy(ref[k])[None] for k in ("audio_feature_window0", "style_code", "decoder_init_state")]
    with torch.no_grad():
        assert torch.equal(loaded.decoder(*args), tiny_model.decoder(*args))
    # the config file or the weights file may be named instead of the folder
    assert_same_state(load_model(folder / "config.json"), tiny_model)


def test_project_folder_without_weights(tmp_path, tiny_model):
    folder = save_model(tiny_model, tmp_path / "model")
    (folder / "model.safetensors").unlink()
    with pytest.raises(MimicError, match="model.safetensors"):
        load_model(folder)


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_project_corrupt_weights(tmp_path, tiny_model, damage):
    folder = save_model(tiny_model, tmp_path / "model")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(np.random.default_rng(2).bytes(3000) if damage == "random" else data[:len(data) // 2])
    with pytest.raises(MimicError, match="model.safetensors"):
        load_model(folder)


def test_project_weights_of_another_network(tmp_path, tiny_model):
    """A config.json that does not describe the weights: the shapes are reported."""
    folder = save_model(tiny_model, tmp_path / "model")
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["feature_dim"] = 48
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(MimicError, match="shape"):
        load_model(folder)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"format": "something-else", "config": {}}',
                                     '{"format": "mimic", "version": 99, "config": {}}', '{"format": "mimic"}',
                                     '{"format": "mimic", "config": [1]}',
                                     '{"format": "mimic", "config": {"colour": 1}}',
                                     '{"format": "mimic", "config": {"alignment": "sideways"}}',
                                     '{"format": "mimic", "config": {"fps": 30}}'])
def test_project_bad_config(tmp_path, tiny_model, content):
    """Each a bad checkpoint (the protocol's code), named: config.json, or the MimicConfig field."""
    folder = save_model(tiny_model, tmp_path / "model")
    (folder / "config.json").write_text(content)
    with pytest.raises(MimicError, match="config.json") as error:
        load_model(folder)
    assert error.value.code == p.BAD_CHECKPOINT
    for field in ("colour", "alignment", "fps"):
        assert field not in content or field in str(error.value), str(error.value)


def test_official_config_refused_by_the_network(full_params, full_state, tmp_path):
    full_params["NETWORK"]["decoder"]["nhead"] = 3
    with pytest.raises(MimicError, match="feature_dim 128 is not divisible by decoder_heads 3") as error:
        model_from_official({"params": full_params, "model": full_state}, tmp_path, device="meta")
    assert error.value.code == p.BAD_CHECKPOINT


# ------------------------------------------------------------------------ HuBERT and presets


def test_hubert_audio_encoder(tmp_path, tiny_config, tiny_hubert):
    model = Mimic(tiny_config(audio_model=tiny_hubert)).eval()
    assert model.audio_encoder.backbone.model_type == "hubert"
    audio = torch.randn(1, 150 * 640)
    with torch.no_grad():
        features = model.audio_encoder(audio, 150)
    assert features.shape == (1, 150, 32)
    assert torch.isfinite(features).all()

    loaded = load_model(save_model(model, tmp_path / "hubert"))
    assert loaded.config.audio_model["model_type"] == "hubert"
    assert_same_state(loaded, model)
    with torch.no_grad():
        assert torch.equal(loaded.audio_encoder(audio, 150), features)


@pytest.mark.parametrize("preset, per_frame", [("vocaset", 1), ("biwi", 2)])
def test_preset_audio_alignment(tiny_config, preset, per_frame):
    config = tiny_config(preset)
    model = Mimic(config).eval()
    assert model.audio_encoder.downsample is None
    for frames in (45, 150):
        audio = torch.randn(1, frames * config.samples_per_frame)
        with torch.no_grad():
            features = model.audio_encoder(audio, frames)
        assert features.shape == (1, per_frame * frames, config.feature_dim)
        assert torch.isfinite(features).all()


def test_preset_values():
    assert MimicConfig.preset("vocaset").fps == 30 and MimicConfig.preset("vocaset").samples_per_frame == 533
    biwi = MimicConfig.preset("biwi")
    assert (biwi.vertex_count, biwi.alignment, biwi.features_per_frame) == (23370, "pair", 2)
    hdtf = MimicConfig.preset("hdtf")
    assert (hdtf.vertex_count, hdtf.alignment, hdtf.samples_per_frame) == (5023, "conv", 640)
    with pytest.raises(MimicError, match="unknown preset"):
        MimicConfig.preset("nope")


def test_saved_config_is_plain_json(tmp_path, tiny_config, tiny_hubert):
    """config.json holds the whole MimicConfig, the audio geometry included, as plain JSON."""
    config = tiny_config("vocaset", audio_model=tiny_hubert)
    folder = save_model(Mimic(config), tmp_path / "m")
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format"] == "mimic" and meta["version"] == 1
    assert as_json(MimicConfig(**meta["config"])) == as_json(config)
    assert meta["config"]["audio_model"]["model_type"] == "hubert"


def test_checkpoint_of_the_legacy_format_loads_too(tmp_path, tiny_checkpoint, tiny_model):
    """Zip checkpoints (PyTorch >= 1.6) are memory-mapped; the older format cannot be, and is read whole."""
    legacy = tmp_path / "legacy.pth"
    shutil.copytree(tiny_checkpoint.parent / "tiny-wav2vec2", tmp_path / "tiny-wav2vec2")
    torch.save(torch.load(tiny_checkpoint, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    assert legacy.read_bytes()[:4] != b"PK\x03\x04" and tiny_checkpoint.read_bytes()[:4] == b"PK\x03\x04"
    loaded = load_model(legacy)
    for (name, mine), (_, theirs) in zip(loaded.state_dict().items(), tiny_model.state_dict().items()):
        assert torch.equal(mine, theirs), name


def test_generate_never_imports_transformers(tmp_path, tiny_checkpoint, ref):
    """The command imports no torch before it parses its arguments, and `mimic generate` (here on the
    official checkpoint whose audio geometry is a local Hugging Face folder) and `mimic serve`'s
    module never import transformers: the audio backbone is mimic.wav2vec2."""
    soundfile.write(tmp_path / "speech.wav", ref["speech_16k"], 16000, subtype="FLOAT")
    np.save(tmp_path / "template.npy", ref["template"].reshape(64, 3))
    np.save(tmp_path / "style.npy", (ref["style_motion"] + ref["template"]).reshape(150, 64, 3))
    argv = ["generate", "--checkpoint", str(tiny_checkpoint), "--audio", "speech.wav", "--style", "style.npy",
            "--template", "template.npy", "--out", "anim.npy"]
    code = ("import json, sys, mimic.cli; assert 'torch' not in sys.modules; "
            f"status = mimic.cli.main({argv!r}); import mimic.service; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))); "
            "sys.exit(status)")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert np.load(tmp_path / "anim.npy").shape == (len(ref["demo_vertices"]), 64, 3)
    assert json.loads(run.stdout) == []
