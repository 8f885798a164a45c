"""Many lines in one run, without bpy: which lines to run, their outputs and completion records,
the progress line and the summary. The Blender layer (mimic_blender/lines.py) supplies the two
things only Blender can do: a line's style identity, and animating a line (plus how to write
each export).

Outputs of line L in the folder OUT:

    OUT/L.blend, OUT/L.glb    the exports asked for, each written whole (temp file + rename)
    OUT/L.mimic.json          the completion record, written last: what the outputs were made
                              from (the key) and their sizes; a line is complete when its record's
                              key equals this run's and every export asked for is there, whole
    OUT/summary.json          (summary-A-B.json for --from A --to B) what happened to each line
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import errors
from .backend_source import protocol as p
from .errors import BackendError, JobError
from .manifest import Line

FORMAT = 1  # of the completion record; a new format redoes every line
SUFFIXES = {"blend": ".blend", "gltf": ".glb"}
EXPORTS = {"blend": ("blend",), "gltf": ("gltf",), "both": ("blend", "gltf")}
STAGES = ("audio", "generate", "write", "export")  # the parts of a line's time, in order
# Failures that every further line would meet too: the run stops.
FATAL = {errors.INTERPRETER_MISSING, errors.PACKAGE_MISSING, p.BAD_CHECKPOINT, p.NO_MODEL, p.VERSION_MISMATCH}
LINE_FAILURES = (JobError, BackendError, OSError)


@dataclass
class Animated:
    """A line animated in the scene: facts for the record, seconds per stage so far, and a writer
    per export kind (writer(path) writes that file)."""
    facts: dict
    timings: dict[str, float]
    writers: dict[str, Callable[[Path], None]]


@dataclass
class Result:
    line: Line
    status: str  # "run" (planned), "done", "skipped" (complete already), "failed", "not run" (the run stopped)
    key: dict | None = None
    error: str = ""
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)


def output_path(out: Path, line_id: str, kind: str) -> Path:
    return out / f"{line_id}{SUFFIXES[kind]}"


def record_path(out: Path, line_id: str) -> Path:
    return out / f"{line_id}.mimic.json"


def summary_path(out: Path, first: int, last: int, count: int) -> Path:
    return out / ("summary.json" if (first, last) == (1, count) else f"summary-{first}-{last}.json")


def file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def checkpoint_digest(path: Path) -> str:
    """The model's identity: its file's digest, or that of a model folder's files ("" when missing:
    the backend will say so)."""
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file())
        listing = "".join(f"{f.relative_to(path).as_posix()} {file_digest(f)}\n" for f in files)
        return hashlib.sha256(listing.encode()).hexdigest()
    return file_digest(path) if path.is_file() else ""


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """write(temp) makes the file beside `path`; it appears at `path` only whole."""
    temp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(temp)
        if not temp.is_file():
            raise OSError(f"nothing was written to {temp}")
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def is_complete(out: Path, line_id: str, key: dict, kinds: tuple[str, ...]) -> bool:
    try:
        record = json.loads(record_path(out, line_id).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("key") != key:
        return False
    sizes = record.get("outputs", {})
    for kind in kinds:
        path = output_path(out, line_id, kind)
        if kind not in sizes or not path.is_file() or path.stat().st_size != sizes[kind]:
            return False
    return True


def plan(lines: list[Line], out: Path, kinds: tuple[str, ...], job_key: dict,
         style_key: Callable[[Line], str]) -> list[Result]:
    """Each line as "run", "skipped" (complete for this key) or "failed" (its audio is missing, its
    style is wrong, it uses the character feature's columns)."""
    results = []
    for line in lines:
        result = Result(line, "run")
        try:
            if line.reserved:
                raise JobError(f"the {' and '.join(line.reserved)} column(s) belong to the character feature, "
                               "which is not supported yet: leave them empty")
            if not line.audio.is_file():
                raise JobError(f"audio file not found: {line.audio}")
            result.key = {"format": FORMAT, **job_key, "audio": file_digest(line.audio), "start": line.start,
                          "style": style_key(line)}
            if is_complete(out, line.id, result.key, kinds):
                result.status = "skipped"
        except LINE_FAILURES as e:
            result.status, result.error = "failed", str(e)
        results.append(result)
    return results


def run(results: list[Result], out: Path, kinds: tuple[str, ...], animate: Callable[[Line], Animated],
        progress: Progress | None = None) -> None:
    """Animate and export every planned line in order, updating `results`. A failed line is
    recorded and the next one runs; a failure every line would meet (FATAL) stops the run,
    leaving the rest "not run" and raising it."""
    todo = [r for r in results if r.status == "run"]
    for n, result in enumerate(todo):
        start = time.perf_counter()
        try:
            record_path(out, result.line.id).unlink(missing_ok=True)  # incomplete until the record is back
            animated = animate(result.line)
            result.timings, result.facts = dict(animated.timings), animated.facts
            exported = time.perf_counter()
            sizes = {}
            for kind in kinds:
                path = output_path(out, result.line.id, kind)
                atomic_write(path, animated.writers[kind])
                sizes[kind] = path.stat().st_size
            result.timings["export"] = time.perf_counter() - exported
            write_json(record_path(out, result.line.id),
                       {"id": result.line.id, "key": result.key, "outputs": sizes, **result.facts})
            result.status = "done"
        except LINE_FAILURES as e:
            result.status, result.error = "failed", str(e)
            if isinstance(e, BackendError) and e.code in FATAL:
                for later in todo[n + 1:]:
                    later.status = "not run"
                raise
        finally:
            result.seconds = time.perf_counter() - start
            if progress is not None:
                progress.update(n + 1, len(todo), result)


class Progress:
    """A tqdm-like line on stderr, `lines 37/100 [01:02<01:45, 35.6 lines/min] failed 1 | L037 done`:
    rewritten in place on a terminal, one line per line in a log."""

    def __init__(self, stream=None, clock: Callable[[], float] = time.monotonic):
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = clock()
        self.failed = 0

    def update(self, done: int, total: int, result: Result) -> None:
        self.failed += result.status == "failed"
        elapsed = self.clock() - self.started
        rate = done / elapsed * 60 if elapsed > 0 else 0.0
        eta = (total - done) / rate * 60 if rate > 0 else 0.0
        text = (f"mimic lines {done}/{total} [{_clock(elapsed)}<{_clock(eta)}, {rate:.1f} lines/min]"
                f"{f' failed {self.failed}' if self.failed else ''} | {result.line.id} {result.status}")
        if self.stream.isatty():
            text = "\r" + text + "\x1b[K" + ("\n" if done == total else "")
        else:
            text += "\n"
        self.stream.write(text)
        self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def summary(results: list[Result], facts: dict) -> dict:
    """What happened: counts, rate, mean seconds per stage of the lines run, then each line."""
    counts = {status: sum(r.status == status for r in results) for status in ("done", "skipped", "failed", "not run")}
    ran = [r for r in results if r.status == "done"]
    busy = sum(r.seconds for r in results if r.status in ("done", "failed"))
    return {
        **facts,
        "ok": counts["failed"] == counts["not run"] == 0 and not facts.get("error"),
        "lines": {"total": len(results), **counts},
        "lines_per_minute": round(len(ran) / busy * 60, 2) if busy > 0 and ran else None,
        "mean_seconds": {stage: round(sum(r.timings.get(stage, 0.0) for r in ran) / len(ran), 4)
                         for stage in STAGES} if ran else {},
        "results": [_row(r) for r in results],
    }


def _row(result: Result) -> dict:
    row = {"number": result.line.number, "id": result.line.id, "status": result.status}
    if result.error:
        row["error"] = result.error
    if result.status == "done":
        row.update(seconds=round(result.seconds, 4), timings={k: round(v, 4) for k, v in result.timings.items()},
                   **result.facts)
    return row


def write_json(path: Path, value: dict) -> None:
    atomic_write(path, lambda temp: temp.write_text(json.dumps(value, indent=1)))

