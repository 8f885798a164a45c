"""The vertex sets `mimic eval` measures: the lips (LVE) and the upper face (FDD), read from a JSON
file or CodeTalker's index text files, and checked against the mesh they are used on."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MimicError

LIP_KEYS = ("lips", "lip", "mouth", "lve")
UPPER_KEYS = ("upper_face", "upper", "fdd")


@dataclass
class Regions:
    lips: np.ndarray  # vertex indices for LVE
    upper_face: np.ndarray | None  # vertex indices for FDD; None: FDD is not computed
    source: str

    def check(self, vertex_count: int) -> Regions:
        for what, idx in (("lips", self.lips), ("upper_face", self.upper_face)):
            if idx is not None and idx.max() >= vertex_count:
                raise MimicError(f"{self.source}: {what} index {int(idx.max())} is outside the mesh's {vertex_count} "
                                 "vertices: is this region file for another mesh?")
        return self


def load_regions(path: str | Path) -> Regions:
    """Vertex sets for the metrics, from one of:
    - a JSON file {"lips": [...], "upper_face": [...]} ("upper_face" optional);
    - a folder with CodeTalker's `lve.txt` (lips) and `fdd.txt` (upper face, optional), each a
      list of indices separated by commas and/or white space;
    - one such text file of lip indices (e.g. `lve.txt`); an `fdd.txt` beside it gives the upper face.
    """
    path = Path(path)
    if path.is_dir():
        lips_file = path / "lve.txt"
        if not lips_file.is_file():
            raise MimicError(f"region folder {path} has no lve.txt (the lip vertex indices)")
        return _text_regions(lips_file)
    if not path.is_file():
        raise MimicError(f"region file not found: {path} (give a JSON file {{\"lips\": [...], \"upper_face\": [...]}}, "
                         "or CodeTalker's lve.txt / its folder)")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MimicError(f"region file {path} is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise MimicError(f"region file {path} must hold an object with \"lips\" and \"upper_face\" index lists")
        lips = next((data[k] for k in LIP_KEYS if k in data), None)
        if lips is None:
            raise MimicError(f"region file {path} has no \"lips\" list (keys found: {sorted(data)[:8]})")
        upper = next((data[k] for k in UPPER_KEYS if k in data), None)
        return Regions(_indices(lips, f"{path} lips"),
                       None if upper is None else _indices(upper, f"{path} upper_face"), str(path))
    return _text_regions(path)


def _text_regions(lips_file: Path) -> Regions:
    upper_file = lips_file.with_name("fdd.txt")
    upper = _read_index_text(upper_file) if upper_file.is_file() and upper_file != lips_file else None
    return Regions(_read_index_text(lips_file), upper, str(lips_file))


def _read_index_text(path: Path) -> np.ndarray:
    try:
        tokens = [t for t in re.split(r"[\s,;\[\]]+", path.read_text()) if t]
    except (OSError, UnicodeDecodeError) as e:
        raise MimicError(f"cannot read region file {path}: {e}") from None
    return _indices(tokens, str(path))


def _indices(values, what: str) -> np.ndarray:
    try:
        numbers = [float(v) for v in values] if isinstance(values, list) else None
    except (TypeError, ValueError):
        numbers = None
    if not numbers or any(not math.isfinite(n) or n != int(n) for n in numbers):
        raise MimicError(f"{what} must be a non-empty list of vertex indices (whole numbers)")
    idx = np.array(numbers, dtype=np.int64)
    if idx.min() < 0:
        raise MimicError(f"{what} holds a negative vertex index ({idx.min()})")
    return idx
