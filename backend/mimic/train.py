"""`mimic train --config FILE.yaml`: train a Mimic network on a dataset.

One process, or one per GPU (or CPU) under torchrun (DistributedDataParallel). The config is a
YAML file; every key, with its default, is in configs/train_vocaset.yaml. A run folder holds:

    train.yaml          the resolved config (every default filled in, paths absolute)
    last/               the latest checkpoint: config.json + model.safetensors (a model folder
                        that `mimic generate` and `load_model` read) + training_state.pt
    epoch_NNNN/         a model folder every `save_every` epochs
    tensorboard/        scalars for TensorBoard

Training follows the reference: random `window`-frame windows of the training sequences (shorter
sequences whole; a batch is cut to its shortest window), each window's audio cut to the same
time span and normalised on its own, init_state = the motion of the frame before the window;
Adam; the objective of `mimic.losses`. An epoch is `windows_per_sequence` windows of every
training sequence, shuffled. Window starts and the epoch order come from (seed, epoch, batch)
alone, so a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml

from .checkpoint import load_model, save_model
from .errors import MimicError
from .generate import normalise, pick_device
from .losses import OFFICIAL_INVERSE_DECAY, OFFICIAL_WEIGHTS, TERMS, Objective, TrainingStep
from .model import AUDIO_BACKBONES, Mimic, MimicConfig, audio_backbone

STATE_FILE = "training_state.pt"
STATE_FORMAT, STATE_VERSION = "mimic-training", 1
MIN_FRAMES = 8  # shorter training sequences are refused (SpecAugment needs 10 audio features)

# ------------------------------------------------------------------------------------ config


@dataclass
class DataSection:
    kind: str  # dataset layout, as mimic.data.open_dataset knows it (vocaset, biwi, hdtf)
    root: str  # the dataset's folder
    options: dict = field(default_factory=dict)  # passed on to open_dataset
    num_workers: int = 0  # background processes loading windows (0: in the training process)


@dataclass
class TrainingSection:
    epochs: int = 150  # reference: 150
    max_steps: int | None = None  # stop (and save) after this many optimiser steps in all
    batch_size: int = 6  # windows per step and process; under torchrun the step sees batch_size x processes
    window: int = 150  # frames per training window
    windows_per_sequence: int = 40  # windows drawn from each training sequence per epoch (reference: 40)
    lr: float = 1e-4
    lr_decay_every: int | None = None  # multiply the learning rate by lr_decay_gamma every this many epochs
    lr_decay_gamma: float = 0.1
    device: str = "auto"  # auto, cpu, cuda, mps; under torchrun: cuda:LOCAL_RANK when there is CUDA, else cpu
    amp: bool = True  # mixed precision (float16 autocast + GradScaler); only ever on CUDA
    save_every: int = 5  # epochs between checkpoints (and model snapshots epoch_NNNN/)
    log_every: int = 10  # steps between TensorBoard points

    def __post_init__(self):
        for name in ("epochs", "batch_size", "window", "windows_per_sequence", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise MimicError(f"training.{name} must be at least 1, not {getattr(self, name)}")
        if self.window < MIN_FRAMES:
            raise MimicError(f"training.window must be at least {MIN_FRAMES} frames, not {self.window}")
        for name in ("max_steps", "lr_decay_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise MimicError(f"training.{name} must be at least 1 (or null), not {getattr(self, name)}")
        if not self.lr > 0 or not self.lr_decay_gamma > 0:
            raise MimicError("training.lr and training.lr_decay_gamma must be positive")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise MimicError(f"training.device must be auto, cpu, cuda or mps, not {self.device!r}")


@dataclass
class Term:
    weight: float | None = None  # None: the official weight
    enabled: bool = True


@dataclass
class InverseTerm(Term):
    alpha: float = 1.0  # gradient-reversal factor
    decay: list = field(default_factory=lambda: [list(d) for d in OFFICIAL_INVERSE_DECAY])  # [[from epoch, factor], ...]

    def __post_init__(self):
        if not (isinstance(self.decay, list) and all(
                isinstance(d, list) and len(d) == 2 and _is_int(d[0]) and _is_number(d[1]) for d in self.decay)):
            raise MimicError("losses.inverse_classifier.decay must be a list of [epoch, factor] pairs, "
                             f"e.g. [[20, 0.1], [40, 0.5]], not {self.decay!r}")


@dataclass
class MarginTerm(Term):
    margin: float = 1.0


@dataclass
class LossesSection:
    """The official weights; `enabled: false` (or weight 0) switches a term off."""
    audio_reconstruction: Term = field(default_factory=Term)
    content_reconstruction: Term = field(default_factory=Term)
    style_classifier: Term = field(default_factory=Term)
    inverse_classifier: InverseTerm = field(default_factory=InverseTerm)
    content_clip: Term = field(default_factory=Term)
    style_cycle: Term = field(default_factory=Term)
    content_cycle: MarginTerm = field(default_factory=MarginTerm)

    def __post_init__(self):
        for name in TERMS:
            term = getattr(self, name)
            if term.weight is None:
                term.weight = OFFICIAL_WEIGHTS[name]
            if term.weight < 0:
                raise MimicError(f"losses.{name}.weight must be 0 or more, not {term.weight}")
        if not self.content_cycle.margin > 0:
            raise MimicError(f"losses.content_cycle.margin must be positive, not {self.content_cycle.margin}")

    def objective(self) -> Objective:
        terms = {name: getattr(self, name) for name in TERMS}
        weights = {name: t.weight for name, t in terms.items() if t.enabled and t.weight != 0}
        if not weights:
            raise MimicError("every loss term is switched off: enable at least one under losses")
        inverse = self.inverse_classifier
        return Objective(weights, grl_alpha=inverse.alpha, inverse_decay=tuple((int(e), float(f)) for e, f in inverse.decay),
                         margin=self.content_cycle.margin)


@dataclass
class TrainConfig:
    output: str  # the run folder
    data: DataSection
    seed: int = 0
    model: dict = field(default_factory=dict)  # preset + MimicConfig overrides; audio_model: transformers config overrides
    audio_pretrained: str | None = None  # local Hugging Face folder with the audio backbone's pretrained weights
    training: TrainingSection = field(default_factory=TrainingSection)
    losses: LossesSection = field(default_factory=LossesSection)


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise MimicError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise MimicError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from None
    try:
        config = parse_config(data or {})
    except MimicError as e:
        raise MimicError(f"{path}: {e}", e.code) from None
    return config


def parse_config(data: dict) -> TrainConfig:
    """A TrainConfig from plain data, every key and type checked. Paths are made absolute."""
    config = _from_dict(TrainConfig, data, "")
    _check_model_section(config.model)
    config.output = str(Path(config.output).expanduser().resolve())
    config.data.root = str(Path(config.data.root).expanduser().resolve())
    if config.audio_pretrained is not None:
        config.audio_pretrained = str(Path(config.audio_pretrained).expanduser().resolve())
    config.losses.objective()  # at least one term
    return config


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _describe(value) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def _check_value(kind, value, where: str):
    """value checked against the annotation `kind`; numbers written as text (YAML reads 1e-4,
    without a dot, as a string) are taken as numbers."""
    if dataclasses.is_dataclass(kind):
        return _from_dict(kind, value, where)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(kind):
            return None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and _is_int(value):
        return value
    if kind is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if _is_number(value) and math.isfinite(value):
            return float(value)
    if kind is str and isinstance(value, str):
        return value
    if kind in (dict, list) and isinstance(value, kind):
        return value
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text", dict: "a mapping",
             list: "a list"}
    raise MimicError(f"{where} must be {names.get(kind, kind)}, not {_describe(value)}")


def _from_dict(cls, data, where: str):
    if not isinstance(data, dict):
        raise MimicError(f"{where or 'the config'} must be a mapping of keys to values, not {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise MimicError(f"unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(f'{where}.{k}' if where else str(k)) for k in unknown)}"
                         f" (known{' in ' + where if where else ''}: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name in data:
            values[name] = _check_value(hints[name], data[name], key)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise MimicError(f"{key} is required")
    return cls(**values)


# ------------------------------------------------------------------------------------- model

MODEL_FIELDS = {f.name: f for f in dataclasses.fields(MimicConfig) if f.name != "audio_model"}
PRESETS = ("hdtf", "vocaset", "biwi")


def _check_model_section(section: dict) -> None:
    """Keys and types of the `model` section (values that need the dataset are checked later)."""
    hints = typing.get_type_hints(MimicConfig)
    for key, value in section.items():
        if key == "preset":
            if value not in PRESETS:
                raise MimicError(f"model.preset must be one of {', '.join(PRESETS)}, not {value!r}")
        elif key == "audio_model":
            _check_value(dict, value, "model.audio_model")
        elif key in MODEL_FIELDS:
            section[key] = _check_value(hints[key], value, f"model.{key}")
        else:
            raise MimicError(f"unknown key 'model.{key}' (known in model: preset, audio_model, {', '.join(MODEL_FIELDS)})")


def build_config(config: TrainConfig, dataset) -> MimicConfig:
    """The network's MimicConfig: preset + overrides; vertex count, fps and identities from the data."""
    section = dict(config.model)
    preset = section.pop("preset", config.data.kind if config.data.kind in PRESETS else None)
    if preset is None:
        raise MimicError(f"model.preset is required for data of kind {config.data.kind!r} (one of {', '.join(PRESETS)})")
    overrides = section.pop("audio_model", {})
    for key, actual in (("vertex_count", dataset.vertex_count), ("fps", float(dataset.fps))):
        if key in section and section[key] != actual:
            raise MimicError(f"model.{key} is {section[key]} but the {config.data.kind} data has {actual}")
        section[key] = actual
    ids = len(dataset.train_subjects)
    if section.setdefault("num_ids", ids) < ids:
        raise MimicError(f"model.num_ids is {section['num_ids']} but the data has {ids} training subjects")
    styled = sorted({"style_classifier", "style_cycle"} & config.losses.objective().weights.keys())
    if not section.get("style_input", True) and styled:
        raise MimicError(f"model.style_input is false (the no-style baseline): switch off losses "
                         f"{' and '.join(styled)}, which need a style code")
    base = MimicConfig.preset(preset).audio_model
    if config.audio_pretrained is not None:
        if overrides:
            raise MimicError("model.audio_model and audio_pretrained both given: the pretrained folder's "
                             "config.json sets the audio geometry")
        section["audio_model"] = _pretrained_geometry(Path(config.audio_pretrained))
    else:
        section["audio_model"] = _audio_geometry(base, overrides)
    try:
        return MimicConfig.preset(preset, **section)
    except (AssertionError, ValueError, TypeError) as e:
        raise MimicError(f"model: {e}") from None


def _audio_geometry(base: dict, overrides: dict) -> dict:
    kind = overrides.get("model_type", base["model_type"])
    if kind not in AUDIO_BACKBONES:
        raise MimicError(f"model.audio_model.model_type must be one of {sorted(AUDIO_BACKBONES)}, not {kind!r}")
    config_class = audio_backbone(kind)[0]
    if kind != base["model_type"]:
        base = config_class().to_dict()
    for key, value in overrides.items():
        if key not in base:
            raise MimicError(f"unknown key 'model.audio_model.{key}' (not a {config_class.__name__} setting)")
        known = base[key]
        if known is not None and value is not None and _category(known) != _category(value):
            raise MimicError(f"model.audio_model.{key} must be {_category(known)} like {known!r}, not {_describe(value)}")
    try:
        return config_class.from_dict({**base, **overrides}).to_dict()
    except Exception as e:  # transformers validates in its own ways
        raise MimicError(f"model.audio_model is not a valid {config_class.__name__} ({e})") from None


def _category(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    if _is_number(value):
        return "a number"
    return {str: "text", list: "a list", tuple: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _pretrained_geometry(folder: Path) -> dict:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise MimicError(f"audio_pretrained {folder} is not a Hugging Face model folder (no config.json)")
    try:
        kind = json.loads(config_file.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise MimicError(f"{config_file} is not a readable model config ({e})") from None
    if kind not in AUDIO_BACKBONES:
        raise MimicError(f"{config_file}: model_type {kind!r} is not one of {sorted(AUDIO_BACKBONES)}")
    return audio_backbone(kind)[0].from_pretrained(folder, local_files_only=True).to_dict()


def load_pretrained_audio(model: Mimic, folder: Path) -> None:
    """The backbone's weights from a local Hugging Face folder (e.g. facebook/wav2vec2-base-960h)."""
    model_class = audio_backbone(model.config.audio_model["model_type"])[1]
    try:
        pretrained = model_class.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise MimicError(f"cannot load pretrained audio weights from {folder} ({str(e).splitlines()[0]})") from None
    result = model.audio_encoder.backbone.load_state_dict(pretrained.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise MimicError(f"the weights in {folder} do not fit its config (missing {result.missing_keys[:3]}, "
                         f"unexpected {result.unexpected_keys[:3]})")


def describe_audio(config: MimicConfig) -> str:
    a = config.audio_model
    layers = a["num_hidden_layers"]
    return f"{a['model_type']} {a['hidden_size']} wide x {layers} layer{'s' if layers != 1 else ''}"


# -------------------------------------------------------------------------------------- data


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
                raise MimicError(f"{s.vertices_path}: vertices of shape {v.shape}, expected (frames, {template.shape[0]}, 3)")
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


def _collate(batch: Batch) -> Batch:
    return batch


# ------------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def distributed_from_env() -> Distributed:
    """The process's place when started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK), else alone."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return Distributed(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))) \
            if world > 1 else Distributed()
    except ValueError:
        raise MimicError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (torchrun sets them)") from None


def setup_device(name: str, place: Distributed) -> torch.device:
    if not place.active:
        return pick_device(name)
    cuda = torch.cuda.is_available() and name in ("auto", "cuda")
    if name == "cuda" and not cuda:
        raise MimicError("device 'cuda' asked for, but PyTorch sees no CUDA GPU")
    if cuda:
        torch.cuda.set_device(place.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return torch.device("cuda", place.local_rank) if cuda else torch.device("cpu")


def parameter_checksum(state: dict[str, torch.Tensor]) -> str:
    """sha256 of every tensor of a state dict, in key order: equal checksums, equal networks."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# -------------------------------------------------------------------------------- run state


def rng_state(device: torch.device) -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
            "python": random.getstate()}


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move tmp to final, replacing it; a crash leaves either the old or the new folder."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def read_state(folder: Path) -> dict:
    path = folder / STATE_FILE
    if not path.is_file():
        raise MimicError(f"{folder} has no {STATE_FILE}: not a resumable checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file fails in many ways (UnpicklingError, RuntimeError, EOFError, ...)
        raise MimicError(f"{path} is not a readable training state ({str(e).strip().splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise MimicError(f"{path} is not a Mimic training state")
    if state.get("version", 0) > STATE_VERSION:
        raise MimicError(f"{path} is training-state version {state['version']}; this Mimic reads up to {STATE_VERSION}")
    return state


# ------------------------------------------------------------------------------------ trainer


def log(message: str) -> None:
    print(f"mimic train: {message}", file=sys.stderr, flush=True)


class Trainer:
    def __init__(self, config: TrainConfig, dataset, place: Distributed, device: torch.device,
                 resume: Path | None):
        self.config, self.dataset, self.place, self.device = config, dataset, place, device
        self.run_dir = Path(config.output)
        t = config.training
        self.amp = t.amp and device.type == "cuda"

        self.sequences = list(dataset.splits.get("train", []))
        self.labels = {subject: i for i, subject in enumerate(dataset.train_subjects)}
        strangers = sorted({s.subject for s in self.sequences} - set(self.labels))
        if strangers:
            raise MimicError(f"training sequences of subjects {strangers[:5]} that are not in the data's train_subjects")
        if not self.sequences:
            raise MimicError(f"the {dataset.kind} data at {dataset.root} has no training sequence")
        self.templates = {s: np.asarray(dataset.template(s), dtype=np.float32) for s in self.labels}

        seed_everything(config.seed)
        if resume is not None:
            self.model = load_model(resume / "last").train()
            self.audio_source = "from the checkpoint"
        else:
            self.model = Mimic(build_config(config, dataset))
            if config.audio_pretrained is not None:
                load_pretrained_audio(self.model, Path(config.audio_pretrained))
                self.audio_source = f"pretrained weights from {config.audio_pretrained}"
            else:
                self.audio_source = "random init (no audio_pretrained in the config)"
        mc = self.model.config
        if mc.vertex_count != dataset.vertex_count or mc.fps != float(dataset.fps):
            raise MimicError(f"the network animates {mc.vertex_count} vertices at {mc.fps:g} fps but the data has "
                             f"{dataset.vertex_count} at {float(dataset.fps):g}")
        if mc.num_ids < len(self.labels):
            raise MimicError(f"the network's classifiers know {mc.num_ids} subjects but the data has {len(self.labels)}")
        self.model.audio_encoder.freeze_feature_encoder()
        self.model.to(device).train()
        self.objective = config.losses.objective()
        self.step_module = TrainingStep(self.model, self.objective)
        if place.active:
            seed_everything(config.seed + place.rank)  # dropout and shuffles differ between processes
            self.step_module = torch.nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True)  # switched-off terms, layerdrop and unmasked SpecAugment leave some unused
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=t.lr, betas=(0.9, 0.999))
        every = t.lr_decay_every
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=every or 1,
                                                         gamma=t.lr_decay_gamma if every else 1.0)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.epoch, self.batch, self.step = 0, 0, 0
        if resume is not None:
            self._load_state(read_state(resume / "last"))

    def _load_state(self, state: dict) -> None:
        if list(state["train_subjects"]) != list(self.dataset.train_subjects):
            raise MimicError("the data's training subjects differ from the run's (the classifiers' classes would "
                             "change meaning); resume with the same data")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        # the config's learning-rate settings hold, also when they changed for the resumed run
        t, every = self.config.training, self.config.training.lr_decay_every
        gamma = t.lr_decay_gamma if every else 1.0
        self.scheduler.base_lrs, self.scheduler.step_size, self.scheduler.gamma = [t.lr], every or 1, gamma
        for group in self.optimizer.param_groups:
            group["initial_lr"] = t.lr
            group["lr"] = t.lr * gamma ** (self.epoch // (every or 1))
        self.scheduler.last_epoch, self.scheduler._last_lr = self.epoch, [g["lr"] for g in self.optimizer.param_groups]
        if state["world_size"] == self.place.world:
            set_rng_state(state["rng"][self.place.rank], self.device)
        else:  # a different number of processes: fresh random streams, the same data order
            seed_everything(self.config.seed + self.place.rank + 1000 * self.step)
            if self.place.main:
                log(f"resumed with {self.place.world} processes instead of {state['world_size']}: "
                    "dropout and style shuffles take new random streams")

    # ---------------------------------------------------------------------------- loop

    def steps_per_epoch(self) -> int:
        t = self.config.training
        return math.ceil(len(self.sequences) * t.windows_per_sequence / (t.batch_size * self.place.world))

    def run(self) -> Path:
        t, place = self.config.training, self.place
        writer = None
        if place.main:
            from torch.utils.tensorboard import SummaryWriter
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "train.yaml").write_text(yaml.safe_dump(asdict(self.config), sort_keys=False))
            writer = SummaryWriter(str(self.run_dir / "tensorboard"))
            self._announce()
        try:
            stop = t.max_steps is not None and self.step >= t.max_steps
            while self.epoch < t.epochs and not stop:
                stop = self._epoch(writer)
                if self.batch == 0 and (self.epoch % t.save_every == 0 or self.epoch == t.epochs):
                    self.save(snapshot=True)
                elif stop:
                    self.save(snapshot=False)
        finally:
            if writer is not None:
                writer.close()
        if place.active:
            self._check_agreement()
        if place.main:
            log(f"done at step {self.step}, {self.epoch} of {t.epochs} epochs complete; model in {self.run_dir / 'last'}")
        return self.run_dir / "last"

    def _epoch(self, writer) -> bool:
        """Run (the rest of) the current epoch; True when max_steps stopped it."""
        from tqdm import tqdm

        t, place, config = self.config.training, self.place, self.config
        plan = plan_epoch(len(self.sequences), t.windows_per_sequence, t.batch_size, place.world, config.seed, self.epoch)
        rows = list(range(place.rank, len(plan), place.world))  # this process's batches, in order
        items = WindowBatches(self.sequences, self.templates, self.labels, plan, rows, t.window,
                              self.model.config.sample_rate, self.model.config.fps, config.seed, self.epoch)
        loader = torch.utils.data.DataLoader(
            items, batch_size=None, sampler=range(self.batch, len(rows)), collate_fn=_collate,
            num_workers=config.data.num_workers, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(config.seed + self.epoch))  # leaves the global RNG alone
        weights = self.objective.weights_at(self.epoch)
        keys = ["loss", *weights] + [f"{head}_accuracy" for head in ("style", "inverse") if f"{head}_classifier" in weights]
        totals, count, stop = np.zeros(len(keys)), 0, False
        bar = tqdm(total=len(rows), initial=self.batch, desc=f"epoch {self.epoch + 1}/{t.epochs}", unit="step",
                   file=sys.stderr, disable=not place.main, dynamic_ncols=True)
        try:
            for batch in loader:
                values = self._train_step(batch.to(self.device), weights, keys)
                self.step += 1
                self.batch += 1
                totals += values
                count += 1
                bar.update(1)
                bar.set_postfix(loss=f"{values[0]:.4g}")
                if writer is not None and (self.step % t.log_every == 0 or self.step == 1):
                    for k, v in zip(keys, values):
                        writer.add_scalar(f"{'accuracy' if k.endswith('accuracy') else 'loss'}/{k}", v, self.step)
                    writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.step)
                    writer.add_scalar("train/logit_scale", self.model.logit_scale.exp().item(), self.step)
                    if "inverse_classifier" in weights:
                        writer.add_scalar("train/inverse_classifier_weight", weights["inverse_classifier"], self.step)
                if t.max_steps is not None and self.step >= t.max_steps:
                    stop = True
                    break
        finally:
            bar.close()
        if self.batch == len(rows):
            if writer is not None and count:
                for k, v in zip(keys, totals / count):
                    writer.add_scalar(f"epoch/{k}", v, self.epoch + 1)
            self.epoch += 1
            self.batch = 0
            self.scheduler.step()
        if writer is not None:
            writer.flush()
        return stop

    def _train_step(self, batch: Batch, weights: dict, keys: list[str]) -> np.ndarray:
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.step_module(batch.audio, batch.motion, batch.init_state, batch.labels, weights)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(out["loss"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            out["loss"].backward()
            self.optimizer.step()
        values = torch.stack([out[k].detach().float() for k in keys])
        if self.place.active:
            dist.all_reduce(values)
            values /= self.place.world
        values = values.cpu().numpy()
        if not np.isfinite(values[0]) and self.scaler is None:
            raise MimicError(f"the loss is {values[0]} at step {self.step + 1} (epoch {self.epoch + 1}): training "
                             "diverged; lower training.lr, or resume from the last checkpoint")
        return values

    # ------------------------------------------------------------------------- saving

    def save(self, snapshot: bool) -> None:
        """last/ (model + training state) and, with snapshot, a model folder epoch_NNNN/. Every
        process must call this (it gathers their random states); the main one writes."""
        rng = rng_state(self.device)
        states = [None] * self.place.world
        if self.place.active:
            dist.all_gather_object(states, rng)
        else:
            states = [rng]
        if not self.place.main:
            return
        state = {"format": STATE_FORMAT, "version": STATE_VERSION, "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                 "epoch": self.epoch, "batch": self.batch, "step": self.step, "world_size": self.place.world,
                 "rng": states, "train_subjects": list(self.dataset.train_subjects)}
        tmp = self.run_dir / "last.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        save_model(self.model, tmp)
        torch.save(state, tmp / STATE_FILE)
        _replace_dir(tmp, self.run_dir / "last")
        if snapshot:
            folder = self.run_dir / f"epoch_{self.epoch:04d}"
            folder.mkdir(exist_ok=True)
            for name in ("config.json", "model.safetensors"):
                shutil.copyfile(self.run_dir / "last" / name, folder / name)

    def _check_agreement(self) -> None:
        """Every process must hold the same network at the end: DDP keeps them in step."""
        checksum = parameter_checksum(self.model.state_dict())
        print(f"mimic train: rank {self.place.rank}/{self.place.world}: parameters sha256 {checksum}",
              file=sys.stderr, flush=True)
        sums = [None] * self.place.world
        dist.all_gather_object(sums, checksum)
        if len(set(sums)) != 1:
            raise MimicError(f"the processes' networks differ at the end ({sums}): distributed training went wrong")

    def _announce(self) -> None:
        d, mc, t = self.dataset, self.model.config, self.config.training
        resumed = f" (resumed at epoch {self.epoch + 1}, step {self.step})" if self.step else ""
        log(f"run folder {self.run_dir}{resumed}")
        log(f"data: {d.kind} at {d.root}: {len(self.sequences)} training sequences of "
            f"{len(self.labels)} subjects, {d.vertex_count} vertices, {float(d.fps):g} fps")
        params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log(f"network: {mc.alignment} alignment, features {mc.feature_dim}, {params / 1e6:.2f} M trainable parameters; "
            f"audio encoder {describe_audio(mc)}, {self.audio_source}")
        on = ", ".join(f"{k} {w:g}" for k, w in self.objective.weights.items())
        off = [k for k in TERMS if k not in self.objective.weights]
        log(f"losses: {on}{'; off: ' + ', '.join(off) if off else ''}")
        processes = f"{self.place.world} processes ({dist.get_backend()})" if self.place.active else "1 process"
        log(f"device {self.device}, {processes}, AMP {'on' if self.amp else 'off'}; {self.steps_per_epoch()} step{'s' if self.steps_per_epoch() != 1 else ''} "
            f"per epoch of batch {t.batch_size}{' x ' + str(self.place.world) if self.place.active else ''}")


# -------------------------------------------------------------------------------------- entry


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the checkpoint was saved."""


def run(config_path: str | None, resume: str | None, dataset=None) -> Path:
    """`mimic train`: a new run from a config, or `resume` a run folder (with its own config, or
    with `config_path` for new training settings; the network must stay the same). `dataset`
    (a mimic.data.Dataset) replaces the config's data section, for programs and tests."""
    if config_path is None and resume is None:
        raise MimicError("give --config FILE.yaml (a new run) or --resume RUN_DIR (or both)")
    run_dir = Path(resume).expanduser().resolve() if resume is not None else None
    if run_dir is not None:
        saved_file = run_dir / "train.yaml"
        if not (run_dir / "last").is_dir() or not saved_file.is_file():
            raise MimicError(f"{run_dir} is not a run folder with a checkpoint to resume (no last/ or train.yaml)")
        saved = load_config(saved_file)
        config = load_config(config_path) if config_path is not None else saved
        if config.model != saved.model:
            raise MimicError(f"the config's model section differs from the run's ({saved_file}); the network "
                             "cannot change when resuming")
        config.output = str(run_dir)
    else:
        config = load_config(config_path)
        if (Path(config.output) / "last").exists():
            raise MimicError(f"{config.output} already holds a run: continue it with --resume {config.output}, "
                             "or set another output")
    place = distributed_from_env()
    if dataset is None:
        from .data import open_dataset
        dataset = open_dataset(config.data.kind, config.data.root, **config.data.options)
    device = setup_device(config.training.device, place)
    trainer = None
    try:
        trainer = Trainer(config, dataset, place, device, run_dir)
        started = time.perf_counter()
        try:
            out = trainer.run()
        except KeyboardInterrupt:
            if place.active:
                raise
            trainer.save(snapshot=False)
            log(f"interrupted at step {trainer.step}; saved {trainer.run_dir / 'last'}: continue with "
                f"--resume {trainer.run_dir}")
            raise TrainingInterrupted() from None
        if place.main:
            log(f"{time.perf_counter() - started:.1f} s")
        return out
    finally:
        if place.active and dist.is_initialized():
            del trainer  # DistributedDataParallel goes before its process group: the other order can hang
            dist.destroy_process_group()
