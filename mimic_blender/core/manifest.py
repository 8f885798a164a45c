"""The lines manifest: which dialogue lines to animate, one row (CSV) or object (JSON) each.

    id,audio,style,start
    guard_hello,audio/guard_hello.wav,Calm speech,
    guard_warn,audio/guard_warn.flac,styles/angry.npz,101

Columns (CSV header / JSON keys):
    id      required; names the line's Action and output files: letters, digits, _ . - (at most 63)
    audio   required; a sound file, relative paths from the manifest's folder
    style   optional; a style of the .blend's library by name, or a style file (.npz/.npy, relative
            paths from the manifest's folder); empty: the command's --style
    start   optional; the scene frame the line starts at (default 1)
    character, shape_key_mode   reserved for the character feature: read and checked, not run yet

`python -m mimic_blender.core.manifest lines.csv` checks a manifest and prints its line count (the
farm templates need it). Standard library only: any Python 3.10 runs it.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import JobError

REQUIRED = ("id", "audio")
OPTIONAL = ("style", "start", "character", "shape_key_mode")
RESERVED = ("character", "shape_key_mode")  # the character feature's columns (see Line)
SHAPE_KEY_MODES = ("mimic", "character")  # Mimic's own shape keys, or the character's (the character feature)
STYLE_FILES = (".npz", ".npy")
ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")  # a file name and a Blender ID name (63 bytes)
DEFAULT_START = 1
SHOWN_PROBLEMS = 10


class ManifestError(JobError):
    """The manifest cannot be used as a whole; the message lists the problems by row."""


@dataclass(frozen=True)
class Line:
    number: int  # 1-based position in the manifest (what --from/--to count)
    id: str
    audio: Path  # absolute
    style: str | None = None  # a library style's name, or an absolute style-file path (see is_style_file)
    start: int = DEFAULT_START
    character: str | None = None  # reserved: the character to animate (the character feature)
    shape_key_mode: str | None = None  # reserved: one of SHAPE_KEY_MODES (the character feature)

    @property
    def reserved(self) -> list[str]:
        """The reserved columns this line uses."""
        return [name for name in RESERVED if getattr(self, name) is not None]


def is_style_file(style: str) -> bool:
    """Whether a style value names a file (.npz/.npy) rather than a library style."""
    return style.lower().endswith(STYLE_FILES)


def resolve_style(style: str, folder: Path) -> str:
    """A style value with a relative file path made absolute against `folder`; names unchanged."""
    return str((folder / style).resolve()) if is_style_file(style) else style


def read_manifest(path: str | Path) -> list[Line]:
    """The lines of a .csv or .json manifest, checked; ManifestError lists what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often write a byte-order mark
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"cannot read manifest {path}: {e}") from None
    if path.suffix.lower() == ".json":
        rows, where = _json_rows(text, path), "item"
    elif path.suffix.lower() == ".csv":
        rows, where = _csv_rows(text, path), "row"
    else:
        raise ManifestError(f"a manifest is a .csv or .json file, not {path.name}")
    lines, problems, seen = [], [], {}
    for number, row in enumerate(rows, start=1):
        try:
            line = _line(number, row, path.parent.resolve())
        except ValueError as e:
            problems.append(f"{where} {number}: {e}")
            continue
        folded = line.id.casefold()  # ids name files: some file systems do not tell case apart
        if folded in seen:
            problems.append(f"{where} {number}: id '{line.id}' is already used by {where} {seen[folded]}")
        seen.setdefault(folded, number)
        lines.append(line)
    if problems:
        shown = problems[:SHOWN_PROBLEMS] + ([f"... and {len(problems) - SHOWN_PROBLEMS} more"]
                                             if len(problems) > SHOWN_PROBLEMS else [])
        raise ManifestError(f"manifest {path.name} has {len(problems)} problem(s):\n  " + "\n  ".join(shown))
    if not lines:
        raise ManifestError(f"manifest {path.name} lists no lines")
    return lines


def select(lines: list[Line], first: int | None, last: int | None) -> list[Line]:
    """Lines first..last (1-based, inclusive; None: from the first, to the last)."""
    count = len(lines)
    first, last = 1 if first is None else first, count if last is None else last
    if not 1 <= first <= last <= count:
        raise JobError(f"--from {first} --to {last} is not a range of the manifest's {count} lines "
                       f"(need 1 <= from <= to <= {count})")
    return lines[first - 1:last]


def _csv_rows(text: str, path: Path) -> list[dict]:
    reader = csv.DictReader(text.splitlines(), restval="")
    _check_columns(reader.fieldnames or [], path)
    rows = []
    for row in reader:
        if None in row:
            raise ManifestError(f"{path.name} row {len(rows) + 1}: more cells than the header has columns")
        if any(value.strip() for value in row.values()):  # blank rows are skipped
            rows.append({key.strip(): value.strip() for key, value in row.items() if value.strip()})
    return rows


def _json_rows(text: str, path: Path) -> list[dict]:
    try:
        rows = json.loads(text)
    except ValueError as e:
        raise ManifestError(f"{path.name} is not valid JSON: {e}") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ManifestError(f"{path.name} must hold a JSON list of objects, one per line")
    _check_columns(sorted({key for row in rows for key in row}), path)
    return [{key: value for key, value in row.items() if value not in (None, "")} for row in rows]


def _check_columns(columns: list[str], path: Path) -> None:
    columns = [c.strip() for c in columns]
    unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise ManifestError(f"{path.name}: unknown column(s) {', '.join(unknown)} "
                            f"(the columns are {', '.join(REQUIRED + OPTIONAL)})")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ManifestError(f"{path.name}: missing column(s) {', '.join(missing)}")


def _line(number: int, row: dict, folder: Path) -> Line:
    for key in REQUIRED:
        if key not in row:
            raise ValueError(f"'{key}' is empty")
    for key, value in row.items():
        if key != "start" and not isinstance(value, str):
            raise ValueError(f"'{key}' must be text, not {json.dumps(value)}")
    line_id = row["id"]
    if not ID.fullmatch(line_id):
        raise ValueError(f"id '{line_id}' must be 1-63 letters, digits, '_', '.' or '-' (not starting with '.' "
                         "or '-'): it names files and a Blender Action")
    start = row.get("start", DEFAULT_START)
    if isinstance(start, str) and re.fullmatch(r"[+-]?\d+", start):
        start = int(start)
    if not isinstance(start, int) or isinstance(start, bool):
        raise ValueError(f"start must be a whole frame number, not {json.dumps(start)}")
    mode = row.get("shape_key_mode")
    if mode is not None and mode not in SHAPE_KEY_MODES:
        raise ValueError(f"shape_key_mode must be one of {', '.join(SHAPE_KEY_MODES)}, not '{mode}'")
    style = row.get("style")
    return Line(number, line_id, (folder / row["audio"]).resolve(), style and resolve_style(style, folder),
                start, row.get("character"), mode)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m mimic_blender.core.manifest MANIFEST (.csv or .json)", file=sys.stderr)
        return 2
    try:
        lines = read_manifest(argv[0])
    except ManifestError as e:
        print(f"mimic: error: {e}", file=sys.stderr)
        return 1
    missing = [line for line in lines if not line.audio.is_file()]
    for line in missing[:SHOWN_PROBLEMS]:
        print(f"mimic: warning: line {line.number} '{line.id}': audio file not found: {line.audio}", file=sys.stderr)
    print(len(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
