"""The config of `mimic train`: its schema (every key, with its default, is in
configs/train_vocaset.yaml), its validation and the network it asks for.

Validation is pydantic's, strict: unknown keys are refused, and so are values of the wrong type
(no text for numbers, no true for 1), except that a number written as text is read as one (YAML
reads 1e-4, without a dot, as a string). Every problem becomes one line that names its key
(`training.batch_size must be at least 1, not int 0`), as a MimicError.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_serializer,
    model_validator,
)

from .errors import MimicError
from .losses import OFFICIAL_INVERSE_DECAY, OFFICIAL_WEIGHTS, TERMS, Objective
from .model import MimicConfig
from .wav2vec2 import DEFAULTS, read_geometry
from .windows import MIN_FRAMES

PRESETS = ("hdtf", "vocaset", "biwi")


def _text_number(value):
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _pair(value):
    if not (isinstance(value, list) and len(value) == 2):
        raise ValueError(f"must be an [epoch, factor] pair like [20, 0.1], not {_describe(value)}")
    return tuple(value)


Number = Annotated[float, BeforeValidator(_text_number)]
Count = Annotated[int, Field(ge=1)]
Whole = Annotated[int, Field(ge=0)]
AbsolutePath = Annotated[str, AfterValidator(lambda p: str(Path(p).expanduser().resolve()))]  # made absolute


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DataSection(Section):
    kind: str  # dataset layout, as mimic.data.open_dataset knows it (vocaset, biwi, hdtf)
    root: AbsolutePath  # the dataset's folder
    options: dict = {}  # passed on to open_dataset
    num_workers: Whole = 0  # background processes loading windows (0: in the training process)


class TrainingSection(Section):
    epochs: Count = 150  # reference: 150
    max_steps: Count | None = None  # stop (and save) after this many optimiser steps in all
    batch_size: Count = 6  # windows per step and process; under torchrun the step sees batch_size x processes
    window: Annotated[int, Field(ge=MIN_FRAMES)] = 150  # frames per training window
    windows_per_sequence: Count = 40  # windows drawn from each training sequence per epoch (reference: 40)
    lr: Annotated[Number, Field(gt=0)] = 1e-4
    lr_decay_every: Count | None = None  # multiply the learning rate by lr_decay_gamma every this many epochs
    lr_decay_gamma: Annotated[Number, Field(gt=0)] = 0.1
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"  # under torchrun: cuda:LOCAL_RANK when there is CUDA,
                                                            # else cpu
    amp: bool = True  # mixed precision (float16 autocast + GradScaler); only ever on CUDA
    save_every: Count = 5  # epochs between checkpoints (and model snapshots epoch_NNNN/)
    log_every: Count = 10  # steps between TensorBoard points

    def learning_rate(self, epoch: int) -> float:
        """The learning rate of an epoch: lr, times lr_decay_gamma every lr_decay_every epochs."""
        return self.lr * self.lr_decay_gamma ** (epoch // self.lr_decay_every) if self.lr_decay_every else self.lr


class Term(Section):
    weight: Annotated[Number, Field(ge=0)] | None = None  # None: the official weight
    enabled: bool = True


class InverseTerm(Term):
    alpha: Number = 1.0  # gradient-reversal factor
    # [[from epoch, factor], ...]
    decay: list[Annotated[tuple[int, Number], BeforeValidator(_pair)]] = list(OFFICIAL_INVERSE_DECAY)


class MarginTerm(Term):
    margin: Annotated[Number, Field(gt=0)] = 1.0


class LossesSection(Section):
    """The official weights; `enabled: false` (or weight 0) switches a term off."""
    audio_reconstruction: Term = Term()
    content_reconstruction: Term = Term()
    style_classifier: Term = Term()
    inverse_classifier: InverseTerm = InverseTerm()
    content_clip: Term = Term()
    style_cycle: Term = Term()
    content_cycle: MarginTerm = MarginTerm()

    @model_validator(mode="after")
    def _official_weights(self) -> LossesSection:
        for name in TERMS:
            term = getattr(self, name)
            if term.weight is None:
                term.weight = OFFICIAL_WEIGHTS[name]
        if not self.objective().weights:
            raise ValueError("has every term switched off: enable at least one")
        return self

    def objective(self) -> Objective:
        terms = {name: getattr(self, name) for name in TERMS}
        weights = {name: t.weight for name, t in terms.items() if t.enabled and t.weight != 0}
        inverse = self.inverse_classifier
        return Objective(weights, grl_alpha=inverse.alpha, inverse_decay=tuple(inverse.decay),
                         margin=self.content_cycle.margin)


class Overrides(Section):
    """A section of overrides of defaults that live elsewhere: it holds, and writes, only the keys given."""

    @model_serializer
    def _given(self) -> dict:
        return {k: getattr(self, k) for k in type(self).model_fields if k in self.model_fields_set}


def _model_section() -> type[Overrides]:
    """`model`: a preset, audio_model (transformers config overrides) and any MimicConfig field."""
    hints = typing.get_type_hints(MimicConfig)
    fields = {f.name: (Number if hints[f.name] is float else hints[f.name], None)
              for f in dataclasses.fields(MimicConfig) if f.name != "audio_model"}
    return create_model("ModelSection", __base__=Overrides, preset=(Literal[PRESETS], None), audio_model=(dict, None),
                        **fields)


ModelSection = _model_section()


class TrainConfig(Section):
    output: AbsolutePath  # the run folder
    data: DataSection
    seed: Whole = 0
    model: ModelSection = ModelSection()  # preset + MimicConfig overrides; audio_model: transformers config overrides
    audio_pretrained: AbsolutePath | None = None  # local Hugging Face folder with the audio backbone's pretrained
                                                  # weights
    training: TrainingSection = TrainingSection()
    losses: LossesSection = LossesSection()


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise MimicError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise MimicError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from None
    try:
        return parse_config(data or {})
    except MimicError as e:
        raise MimicError(f"{path}: {e}", e.code) from None


def parse_config(data) -> TrainConfig:
    """A TrainConfig from plain data, every key and type checked. Paths are made absolute."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise MimicError("; ".join(_message(error) for error in e.errors())) from None


# What a value of the wrong kind must be, by pydantic's error type.
EXPECTED = {
    "int_type": "a whole number", "float_type": "a number", "bool_type": "true or false", "string_type": "text",
    "dict_type": "a mapping", "model_type": "a mapping of keys to values", "list_type": "a list",
    "finite_number": "a finite number", "literal_error": "{expected}",
    "greater_than_equal": "at least {ge}", "greater_than": "more than {gt}",
}


def _message(error: dict) -> str:
    loc = error["loc"]
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".") or "the config"
    kind = error["type"]
    if kind == "extra_forbidden":
        where = ".".join(map(str, loc[:-1]))
        return f"unknown key {key!r} (known{' in ' + where if where else ''}: {', '.join(_fields_at(loc[:-1]))})"
    if kind == "missing":
        return f"{key} is required"
    if kind == "value_error":
        return f"{key} {error['ctx']['error']}"
    if kind in EXPECTED:
        return f"{key} must be {EXPECTED[kind].format(**error.get('ctx', {}))}, not {_describe(error['input'])}"
    return f"{key}: {error['msg']}"


def _fields_at(loc: tuple) -> list[str]:
    section = TrainConfig
    for part in loc:
        section = section.model_fields[part].annotation
    return list(section.model_fields)


def _describe(value) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


# ------------------------------------------------------------------------------------- model


def build_config(config: TrainConfig, dataset) -> MimicConfig:
    """The network's MimicConfig: preset + overrides; vertex count, fps and identities from the data."""
    section = config.model.model_dump()
    preset = section.pop("preset", config.data.kind if config.data.kind in PRESETS else None)
    if preset is None:
        raise MimicError(f"model.preset is required for data of kind {config.data.kind!r} "
                         f"(one of {', '.join(PRESETS)})")
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
    if config.audio_pretrained is not None:
        if overrides:
            raise MimicError("model.audio_model and audio_pretrained both given: the pretrained folder's "
                             "config.json sets the audio geometry")
        section["audio_model"] = _pretrained_geometry(Path(config.audio_pretrained))
    else:
        section["audio_model"] = _audio_geometry(MimicConfig.preset(preset).audio_model, overrides)
    return MimicConfig.preset(preset, **section)


def _audio_geometry(base: dict, overrides: dict) -> dict:
    """The preset's audio geometry with the config's overrides; MimicConfig checks the result."""
    kind = overrides.get("model_type", base["model_type"])
    if kind not in DEFAULTS:
        raise MimicError(f"model.audio_model.model_type must be one of {sorted(DEFAULTS)}, not {kind!r}")
    if kind != base["model_type"]:
        base = DEFAULTS[kind]
    for key, value in overrides.items():
        if key not in base:
            raise MimicError(f"unknown key 'model.audio_model.{key}' (not a {kind} setting)")
        known = base[key]
        if known is not None and value is not None and _category(known) != _category(value):
            raise MimicError(f"model.audio_model.{key} must be {_category(known)} like {known!r}, "
                             f"not {_describe(value)}")
    return {**base, **overrides}


def _category(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "text", list: "a list", tuple: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _pretrained_geometry(folder: Path) -> dict:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise MimicError(f"audio_pretrained {folder} is not a Hugging Face model folder (no config.json)")
    return read_geometry(config_file)
