"""Loading and saving Mimic checkpoints.

Two formats:
- the authors' released `.pth`: `{'params': nested config, 'model': state_dict, ...}`, read with
  `torch.load(weights_only=True)` only; its names are mapped to ours by `OFFICIAL_RENAMES`;
- the project's own: a folder with `config.json` (the MimicConfig) and `model.safetensors`.
Both load offline: the audio backbone's geometry is built in or read from a local folder.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import protocol as p
from .errors import MimicError
from .model import Mimic, MimicConfig
from .wav2vec2 import PUBLISHED, published_geometry, read_geometry

FORMAT_NAME, FORMAT_VERSION = "mimic", 1

# Official state-dict name -> ours; anchored patterns, first match wins.
OFFICIAL_RENAMES = [
    (r"^(style|content)_encoder\.motion_map\.(weight|bias)$", r"\1_encoder.motion_map.\2"),
    (r"^(style|content)_encoder\.conv_layers\.(\d+)\.conv\.weight$", r"\1_encoder.convs.\2.weight"),
    (r"^style_encoder\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)$", r"style_encoder.conv_norms.\1.\2"),
    (r"^style_encoder\.feature_projection\.layer_norm\.(weight|bias)$", r"style_encoder.proj_norm.\1"),
    (r"^(style|content)_encoder\.feature_projection\.projection\.(weight|bias)$", r"\1_encoder.projection.\2"),
    (r"^(style|content)_encoder\.transformer_encoder\.(.+)$", r"\1_encoder.transformer.\2"),
    (r"^(style|content)_encoder\.feature_map\.(weight|bias)$", r"\1_encoder.out_proj.\2"),
    # weight norm: PyTorch < 2.1 names (released checkpoint) and parametrizations (newer)
    (r"^audio_encoder\.audio_encoder\.encoder\.pos_conv_embed\.conv\.weight_g$",
     "audio_encoder.backbone.encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"^audio_encoder\.audio_encoder\.encoder\.pos_conv_embed\.conv\.weight_v$",
     "audio_encoder.backbone.encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"^audio_encoder\.audio_encoder\.(.+)$", r"audio_encoder.backbone.\1"),
    (r"^audio_encoder\.down_sample\.(weight|bias)$", r"audio_encoder.downsample.\1"),
    (r"^audio_encoder\.audio_feature_map\.(weight|bias)$", r"audio_encoder.out_proj.\1"),
    (r"^decoder\.transformer_decoder\.layers\.0\.self_attn\.in_proj_(weight|bias)$", r"decoder.self_attn.in_proj.\1"),
    (r"^decoder\.transformer_decoder\.layers\.0\.self_attn\.out_proj\.(weight|bias)$",
     r"decoder.self_attn.out_proj.\1"),
    (r"^decoder\.transformer_decoder\.layers\.0\.multihead_attn\.in_proj_(weight|bias)$",
     r"decoder.cross_attn.in_proj.\1"),
    (r"^decoder\.transformer_decoder\.layers\.0\.multihead_attn\.out_proj\.(weight|bias)$",
     r"decoder.cross_attn.out_proj.\1"),
    (r"^decoder\.transformer_decoder\.layers\.0\.linear([12])\.(weight|bias)$", r"decoder.ff\1.\2"),
    (r"^decoder\.transformer_decoder\.layers\.0\.norm([123])\.style\.affine\.(weight|bias)$",
     r"decoder.norm\1.affine.\2"),
    (r"^decoder\.motion_map\.(weight|bias)$", r"decoder.motion_in.\1"),
    (r"^decoder\.motion_map_r\.(weight|bias)$", r"decoder.motion_out.\1"),
    (r"^style_class_head\.class_head\.(weight|bias)$", r"style_classifier.\1"),
    (r"^content_grl_head\.class_head\.(weight|bias)$", r"inverse_classifier.\1"),
    (r"^logit_scale$", "logit_scale"),
]
# Official keys we do not load: fixed tables we compute, and the unused nn.Transformer parts
# that the official decoder class builds by deriving from nn.Transformer.
OFFICIAL_IGNORED = [
    r"^(style|content)_encoder\.PE\.pe$",
    r"^decoder\.PPE\.pe$",
    r"^decoder\.biased_mask$",
    r"^decoder\.transformer_decoder\.(encoder|decoder)\.",
]


def load_model(path: str | Path, device: str | torch.device = "cpu", keep: bool = False) -> Mimic:
    """A Mimic in eval mode from an official `.pth` or a project folder.

    The tensors stay mapped from the file (`.pth` and safetensors alike), read when first used: a
    quick start for one run. `keep` copies them into the process, for one that keeps the model while
    the file may be overwritten (`mimic serve`: a mapped file cut short under it would kill it)."""
    path = Path(path)
    if path.is_dir() or path.name in ("config.json", "model.safetensors"):
        model = _load_project(path if path.is_dir() else path.parent)
    elif path.is_file():
        model = model_from_official(read_official(path), path.parent)
    else:
        raise MimicError(f"checkpoint not found: {path}", p.BAD_CHECKPOINT)
    if keep and torch.device(device).type == "cpu":  # (moved to another device, they are copied anyway)
        for tensor in model.state_dict(keep_vars=True).values():
            tensor.data = tensor.data.clone()
    return model.to(device).eval()


# ------------------------------------------------------------------------------ official .pth


def read_official(path: Path) -> dict:
    """The checkpoint dict. A zip archive (every torch.save since PyTorch 1.6) is memory-mapped:
    its tensors are read from the file when first used, and the keys never loaded are never read."""
    try:
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as e:
        # torch wraps every failure of its restricted unpickler in "Weights only load failed";
        # only a refused global/class/function means the file needs code (garbage gives e.g.
        # "Unsupported operand").
        reason = _unpickler_reason(e)
        if re.search(r"unsupported (global|class)|unrecognized function|not an allowed global", reason.lower()):
            raise MimicError(
                f"{path} contains Python objects that need code to load; Mimic loads only plain tensors "
                "(torch.load weights_only=True). Re-save it as a plain dict of tensors where you trust it.",
                p.BAD_CHECKPOINT) from None
        raise MimicError(f"{path} is not a PyTorch checkpoint ({reason})", p.BAD_CHECKPOINT) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise MimicError(f"{path} is not a readable PyTorch checkpoint, or it is truncated ({_first_line(e)})",
                         p.BAD_CHECKPOINT) from None
    except Exception as e:  # garbage read as a legacy checkpoint: KeyError, IndexError, UnicodeDecodeError, ...
        raise MimicError(f"{path} is not a PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})",
                         p.BAD_CHECKPOINT) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict) or not isinstance(obj.get("params"), dict):
        found = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
        raise MimicError(f"{path} is not a Mimic checkpoint: expected a dict with 'params' and 'model' (found {found})",
                         p.BAD_CHECKPOINT)
    return obj


def model_from_official(checkpoint: dict, base_dir: Path, device: str = "cpu") -> Mimic:
    """Build the network from an official checkpoint dict. With device="meta" nothing is
    allocated: keys and shapes are checked all the same."""
    config = config_from_official(checkpoint["params"], base_dir)
    return _assemble(config, official_to_ours(checkpoint["model"]), "the checkpoint", device)


def official_to_ours(state: dict) -> dict:
    ours = {}
    for key, value in state.items():
        if any(re.match(pattern, key) for pattern in OFFICIAL_IGNORED):
            continue
        for pattern, replacement in OFFICIAL_RENAMES:
            if re.match(pattern, key):
                ours[re.sub(pattern, replacement, key)] = value
                break
        else:
            ours[key] = value  # reported as unexpected by the strict check
    return ours


def config_from_official(params: dict, base_dir: Path) -> MimicConfig:
    """MimicConfig from the official nested config (sections DATA, NETWORK, ...)."""
    flat = {}
    for section in params.values():
        if isinstance(section, dict):
            flat.update(section)
    try:
        decoder = flat["decoder"]
        expect = {"style_fuse": "SALN", "content_norm": "IN", "content_attention": True, "style_pooling": "mean"}
        for key, value in expect.items():
            if flat.get(key, value) != value:
                raise MimicError(f"checkpoint variant {key}={flat[key]!r} is not the published Mimic ({key}={value!r})",
                                 p.BAD_CHECKPOINT)
        if decoder.get("num_layers", 1) != 1:
            raise MimicError(f"checkpoint has {decoder['num_layers']} decoder layers; Mimic has one", p.BAD_CHECKPOINT)
        dataset = flat["dataset"]
        if dataset == "BIWI":
            alignment = "pair"
        elif dataset == "HDTF" and flat.get("audio_feature_align") == "conv":
            alignment = "conv"
        else:
            alignment = "interpolate"
        audio = resolve_audio_model(flat["wav2vec2model"], base_dir)
        if audio["hidden_size"] != flat.get("audio_hidden_size", audio["hidden_size"]):
            raise MimicError(f"audio model {flat['wav2vec2model']!r} is {audio['hidden_size']} wide but the checkpoint "
                             f"expects {flat['audio_hidden_size']}", p.BAD_CHECKPOINT)
        return _checked_config("the checkpoint", dict(
            vertex_count=flat["motion_dim"] // 3, fps=float(flat["video_fps"]), alignment=alignment,
            feature_dim=flat["feature_dim"], hidden_size=flat["hidden_size"], conv_layers=flat["num_conv_layers"],
            encoder_layers=flat["encoder_layers"], encoder_heads=flat["nhead_encoder"],
            encoder_ff=flat["dim_feedforward"], decoder_heads=decoder["nhead"], decoder_ff=decoder["dim_feedforward"],
            num_ids=flat["train_ids"], window=flat.get("window", 150), audio_model=audio))
    except KeyError as e:
        raise MimicError(f"checkpoint config lacks {e.args[0]!r}; is this a Mimic checkpoint?",
                         p.BAD_CHECKPOINT) from None


def resolve_audio_model(name: str, base_dir: Path) -> dict:
    """Geometry of the audio backbone: built in for the published models, else a local
    Hugging Face folder (its config.json; weights come from the Mimic checkpoint)."""
    if name in PUBLISHED:
        return published_geometry(name)
    candidates = [base_dir / name, Path(name)]
    for folder in candidates:
        config_file = folder / "config.json"
        if config_file.is_file():
            return read_geometry(config_file, p.BAD_CHECKPOINT)
    raise MimicError(
        f"audio model {name!r} is not built in ({', '.join(PUBLISHED)}) and no folder with its "
        f"config.json was found (looked in {', '.join(str(c) for c in candidates)})", p.BAD_CHECKPOINT)


# ------------------------------------------------------------------------------ project format


def save_model(model: Mimic, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, folder / "model.safetensors")
    config = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": model.config.to_dict()}
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return folder


def _load_project(folder: Path) -> Mimic:
    config_file, weights_file = folder / "config.json", folder / "model.safetensors"
    for f in (config_file, weights_file):
        if not f.is_file():
            raise MimicError(f"{folder} is not a Mimic model folder: {f.name} is missing", p.BAD_CHECKPOINT)
    try:
        meta = json.loads(config_file.read_text())
        if meta.get("format") != FORMAT_NAME:
            raise MimicError(f"{config_file} is not a Mimic config (format {meta.get('format')!r})", p.BAD_CHECKPOINT)
        if meta.get("version", 0) > FORMAT_VERSION:
            raise MimicError(f"{config_file} is format version {meta['version']}; this Mimic reads up to "
                             f"{FORMAT_VERSION}: update Mimic", p.BAD_CHECKPOINT)
        values = meta["config"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, AttributeError) as e:
        raise MimicError(f"{config_file} is not a valid Mimic config ({_first_line(e)})", p.BAD_CHECKPOINT) from None
    config = _checked_config(str(config_file), values)
    try:
        state = load_file(weights_file)
    except (SafetensorError, OSError) as e:
        raise MimicError(f"{weights_file} is not a readable safetensors file ({_first_line(e)})",
                         p.BAD_CHECKPOINT) from None
    return _assemble(config, state, str(weights_file), "cpu")


# ------------------------------------------------------------------------------------ shared


def _checked_config(source: str, values: dict) -> MimicConfig:
    """MimicConfig(**values); values it refuses make a bad checkpoint."""
    try:
        return MimicConfig(**values)
    except (TypeError, MimicError) as e:
        raise MimicError(f"{source} holds no valid Mimic config ({_first_line(e)})", p.BAD_CHECKPOINT) from None


def _assemble(config: MimicConfig, state: dict, source: str, device: str) -> Mimic:
    """Build on the meta device (no random init), check every key and shape, then take the tensors."""
    with torch.device("meta"):
        model = Mimic(config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    check_state_dict(expected, state, source)
    model.load_state_dict(state, strict=True, assign=True)
    return model if device == "meta" else model.to(device)


def check_state_dict(expected: dict, given: dict, source: str) -> None:
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = [f"{k} is {tuple(given[k].shape)}, expected {tuple(expected[k])}"
                  for k in sorted(expected) if k in given and tuple(given[k].shape) != tuple(expected[k])]
    problems = []
    for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            problems.append(f"{len(items)} {what}: {'; '.join(items[:3])}{' ...' if len(items) > 3 else ''}")
    if problems:
        raise MimicError(f"{source} does not fit the Mimic network ({' | '.join(problems)})", p.BAD_CHECKPOINT)


def _unpickler_reason(error: Exception) -> str:
    """The useful part of torch's weights-only error: what follows "WeightsUnpickler error:"."""
    text = str(error)
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (rest if found else text).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(error).__name__


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
