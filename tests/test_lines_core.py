"""The lines manifest and the run plan without Blender: reading and checking manifests, ranges,
completion records, resuming, failures, the progress line and the summary. Real files; the
"animation" is a plain function writing real output files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from paths import ROOT

from mimic_blender.core import lines as core
from mimic_blender.core.backend_source import protocol as p
from mimic_blender.core.errors import BackendError, JobError
from mimic_blender.core.manifest import Line, ManifestError, read_manifest, select


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_manifest(tmp_path):
    manifest = write(tmp_path / "lines.csv", "id,audio,style,start\n"
                     "guard_hello,audio/hello.wav,Calm speech,\n"
                     "\n"  # blank rows are skipped
                     "guard.warn-2, audio/warn.flac ,styles/Angry.NPZ,101\n"
                     "guard_bye,/abs/bye.wav,,-5\n")
    lines = read_manifest(manifest)
    assert [line.id for line in lines] == ["guard_hello", "guard.warn-2", "guard_bye"]
    assert [line.number for line in lines] == [1, 2, 3]
    assert lines[0].audio == tmp_path / "audio" / "hello.wav" and lines[0].style == "Calm speech"
    assert lines[0].start == 1  # default
    assert lines[1].style == str(tmp_path / "styles" / "Angry.NPZ") and lines[1].start == 101
    assert lines[2].audio == Path("/abs/bye.wav") and lines[2].style is None and lines[2].start == -5
    assert all(line.reserved == [] for line in lines)


def test_json_manifest_equals_the_csv_one(tmp_path):
    rows = [{"id": "a", "audio": "a.wav", "start": 12, "style": "x.npy"}, {"id": "b", "audio": "b.wav", "style": ""}]
    (tmp_path / "lines.json").write_text(json.dumps(rows))
    write(tmp_path / "lines.csv", "audio,id,start,style\na.wav,a,12,x.npy\nb.wav,b,,\n")
    assert read_manifest(tmp_path / "lines.json") == read_manifest(tmp_path / "lines.csv")


def test_reserved_columns_are_read_and_checked(tmp_path):
    manifest = write(tmp_path / "lines.csv", "id,audio,character,shape_key_mode\na,a.wav,Guard,character\nb,b.wav,,\n")
    a, b = read_manifest(manifest)
    assert (a.character, a.shape_key_mode, a.reserved) == ("Guard", "character", ["character", "shape_key_mode"])
    assert b.reserved == []
    write(manifest, "id,audio,shape_key_mode\na,a.wav,arkit\n")
    with pytest.raises(ManifestError, match="row 1: shape_key_mode must be one of mimic, character, not 'arkit'"):
        read_manifest(manifest)


@pytest.mark.parametrize("name, text, message", [
    ("lines.csv", "id,audio,strat\na,a.wav,3\n", "unknown column(s) strat"),
    ("lines.csv", "id,style\na,x\n", "missing column(s) audio"),
    ("lines.csv", "id,audio\n", "lists no lines"),
    ("lines.csv", "id,audio\na,a.wav,extra\n", "row 1: more cells than the header has columns"),
    ("lines.csv", "id,audio\na,a.wav\n,b.wav\n", "row 2: 'id' is empty"),
    ("lines.csv", "id,audio,start\na,a.wav,ten\n", "row 1: start must be a whole frame number, not \"ten\""),
    ("lines.csv", "id,audio,start\na,a.wav,1.5\n", "start must be a whole frame number"),
    ("lines.csv", "id,audio\na/b,a.wav\n", "row 1: id 'a/b' must be 1-63 letters"),
    ("lines.csv", "id,audio\n.hidden,a.wav\n", "id '.hidden' must be"),
    ("lines.csv", "id,audio\n" + "x" * 64 + ",a.wav\n", "must be 1-63 letters"),
    ("lines.csv", "id,audio\na,a.wav\nb,b.wav\na,c.wav\n", "row 3: id 'a' is already used by row 1"),
    ("lines.csv", "id,audio\nGuard_1,a.wav\nguard_1,b.wav\n", "row 2: id 'guard_1' is already used by row 1"),
    ("lines.json", "{}", "must hold a JSON list of objects"),
    ("lines.json", "[1, 2]", "must hold a JSON list of objects"),
    ("lines.json", "[{\"id\": \"a\", \"audio\": \"a.wav\",", "is not valid JSON"),
    ("lines.json", "[{\"id\": \"a\", \"audio\": \"a.wav\", \"start\": \"x\"}]", "start must be a whole frame number"),
    ("lines.json", "[{\"id\": \"a\", \"audio\": \"a.wav\", \"start\": true}]",
     "start must be a whole frame number, not true"),
    ("lines.json", "[{\"id\": 7, \"audio\": \"a.wav\"}]", "item 1: 'id' must be text, not 7"),
])
def test_bad_manifests_say_what_is_wrong(tmp_path, name, text, message):
    with pytest.raises(ManifestError) as failure:
        read_manifest(write(tmp_path / name, text))
    assert message in str(failure.value)


def test_every_problem_is_listed_by_row(tmp_path):
    rows = "".join(f"bad id {i},{i}.wav\n" for i in range(12))
    with pytest.raises(ManifestError) as failure:
        read_manifest(write(tmp_path / "lines.csv", "id,audio\nok,ok.wav\n" + rows))
    text = str(failure.value)
    assert text.startswith("manifest lines.csv has 12 problem(s):") and "row 2: id 'bad id 0'" in text
    assert "row 11:" in text and "row 12:" not in text and "... and 2 more" in text


def test_other_files_are_not_manifests(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nothing.csv")
    with pytest.raises(ManifestError, match="a .csv or .json file, not lines.txt"):
        read_manifest(write(tmp_path / "lines.txt", "id,audio\na,a.wav\n"))
    (tmp_path / "latin.csv").write_bytes("id,audio\né,a.wav\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(tmp_path / "latin.csv")


def test_select_a_range(tmp_path):
    lines = [Line(n, f"l{n}", tmp_path / f"{n}.wav") for n in range(1, 6)]
    assert select(lines, None, None) == lines
    assert [line.number for line in select(lines, 2, 4)] == [2, 3, 4]
    assert [line.number for line in select(lines, 5, None)] == [5]
    for first, last in ((0, 2), (3, 2), (4, 6), (6, None)):
        with pytest.raises(JobError, match="not a range of the manifest's 5 lines"):
            select(lines, first, last)


def test_the_manifest_command_prints_the_line_count(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    manifest = write(tmp_path / "lines.csv", "id,audio\na,a.wav\nb,b.wav\n")
    done = subprocess.run([sys.executable, "-m", "mimic_blender.core.manifest", str(manifest)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and done.stdout == "2\n"
    assert f"line 2 'b': audio file not found: {tmp_path / 'b.wav'}" in done.stderr
    write(manifest, "id\na\n")
    done = subprocess.run([sys.executable, "-m", "mimic_blender.core.manifest", str(manifest)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1 and done.stdout == "" and "missing column(s) audio" in done.stderr


# ------------------------------------------------------------------------------- plan and run


class Animator:
    """A stand-in for the Blender side: writes each export as text derived from the line; fails
    the lines named in `fail` (JobError), or raises `fatal` at the line named `fatal_at`."""

    def __init__(self, fail=(), fatal_at=None, broken_writer=None):
        self.calls, self.fail, self.fatal_at, self.broken_writer = [], set(fail), fatal_at, broken_writer

    def __call__(self, line: Line) -> core.Animated:
        self.calls.append(line.id)
        if line.id in self.fail:
            raise JobError(f"cannot read the sound of strip '{line.id}'")
        if line.id == self.fatal_at:
            raise BackendError(p.BAD_CHECKPOINT, "checkpoint unreadable")

        def writer(kind):
            def write_it(path: Path):
                if kind == self.broken_writer:
                    path.write_text("half")
                    raise OSError("disk full")
                path.write_text(f"{kind} of {line.id} from {line.audio.read_text()}")
            return write_it
        return core.Animated({"frames": 10}, {"audio": 0.01, "generate": 0.02, "write": 0.03},
                             {kind: writer(kind) for kind in core.SUFFIXES})


@pytest.fixture
def shot(tmp_path):
    """Five lines (audio files of text), line 4's audio missing; an output folder."""
    for n in (1, 2, 3, 5):
        (tmp_path / f"{n}.wav").write_text(f"sound {n}")
    lines = [Line(n, f"l{n}", tmp_path / f"{n}.wav", style="calm") for n in range(1, 6)]
    out = tmp_path / "out"
    out.mkdir()
    return lines, out


def style_key(line: Line) -> str:
    if line.style != "calm":
        raise JobError(f"no style named '{line.style}' in the library")
    return "calm-digest"


def plan_and_run(lines, out, animate, kinds=("blend",), job_key=None):
    results = core.plan(lines, out, kinds, job_key or {"target": "Head"}, style_key)
    stream = io.StringIO()
    core.run(results, out, kinds, animate, core.Progress(stream))
    return results, stream.getvalue()


def test_a_run_then_a_resumed_run(shot):
    lines, out = shot
    animate = Animator(fail={"l2"})
    results, progress = plan_and_run(lines, out, animate, kinds=("blend", "gltf"))
    assert [r.status for r in results] == ["done", "failed", "done", "failed", "done"]
    assert results[1].error == "cannot read the sound of strip 'l2'"
    assert results[3].error == f"audio file not found: {lines[3].audio}"
    assert animate.calls == ["l1", "l2", "l3", "l5"]  # line 4 never reached the animation
    assert (out / "l1.blend").read_text() == "blend of l1 from sound 1"
    assert (out / "l1.glb").read_text() == "gltf of l1 from sound 1"
    assert not (out / "l2.blend").exists() and not (out / "l2.mimic.json").exists()
    assert sorted(f.name for f in out.iterdir()) == sorted(f"l{n}{s}" for n in (1, 3, 5) for s in (".blend", ".glb",
                                                                                                   ".mimic.json"))
    record = json.loads((out / "l1.mimic.json").read_text())
    assert record["key"]["audio"] == core.file_digest(lines[0].audio) and record["key"]["style"] == "calm-digest"
    assert record["outputs"] == {"blend": (out / "l1.blend").stat().st_size, "gltf": (out / "l1.glb").stat().st_size}
    assert record["frames"] == 10 and record["key"]["target"] == "Head"
    assert progress.splitlines()[-1].startswith("mimic lines 4/4 [") and "lines/min] failed 1 | l5 done" in progress

    # Again: only the failed line is tried; line 4 is still missing.
    again = Animator()
    results, _ = plan_and_run(lines, out, again, kinds=("blend", "gltf"))
    assert [r.status for r in results] == ["skipped", "done", "skipped", "failed", "skipped"]
    assert again.calls == ["l2"]
    # Exports asked for before are enough; an export not made yet redoes the line.
    assert [r.status for r in core.plan(lines[:1], out, ("blend",), {"target": "Head"}, style_key)] == ["skipped"]
    (out / "l1.glb").unlink()
    assert [r.status for r in core.plan(lines[:1], out, ("gltf",), {"target": "Head"}, style_key)] == ["run"]


@pytest.mark.parametrize("change", ["audio", "style", "job", "truncated", "record", "format"])
def test_what_redoes_a_complete_line(shot, change):
    lines, out = shot
    plan_and_run(lines[:1], out, Animator())
    line, job_key = lines[0], {"target": "Head"}
    if change == "audio":
        line.audio.write_text("another take")
    elif change == "style":
        line = Line(1, "l1", line.audio, style="angry")
    elif change == "job":
        job_key = {"target": "Head.001"}
    elif change == "truncated":
        (out / "l1.blend").write_text("blend of l1")
    elif change == "record":
        (out / "l1.mimic.json").write_text("{not json")
    else:
        record = json.loads((out / "l1.mimic.json").read_text())
        record["key"]["format"] = core.FORMAT - 1
        (out / "l1.mimic.json").write_text(json.dumps(record))
    [result] = core.plan([line], out, ("blend",), job_key, style_key)
    assert result.status == ("failed" if change == "style" else "run")


def test_a_failed_export_leaves_no_file_and_no_record(shot):
    lines, out = shot
    plan_and_run(lines[:1], out, Animator())
    (out / "l1.blend").write_text("stale")  # the line must be redone
    results, _ = plan_and_run(lines[:1], out, Animator(broken_writer="blend"))
    assert results[0].status == "failed" and results[0].error == "disk full"
    assert (out / "l1.blend").read_text() == "stale"  # the old file is left as it was, the half one removed
    assert not (out / "l1.mimic.json").exists()  # ... and not claimed complete
    assert [f.name for f in out.iterdir() if f.name.startswith(".")] == []


def test_a_fatal_failure_stops_the_run(shot):
    lines, out = shot
    results = core.plan(lines, out, ("blend",), {"target": "Head"}, style_key)
    with pytest.raises(BackendError, match="checkpoint unreadable"):
        core.run(results, out, ("blend",), Animator(fatal_at="l2"), core.Progress(io.StringIO()))
    assert [r.status for r in results] == ["done", "failed", "not run", "failed", "not run"]
    report = core.summary(results, {"error": "checkpoint unreadable"})
    assert report["ok"] is False and report["lines"] == {"total": 5, "done": 1, "skipped": 0, "failed": 2,
                                                         "not run": 2}


def test_reserved_columns_fail_their_lines_as_not_supported_yet(shot):
    lines, out = shot
    character = Line(1, "l1", lines[0].audio, style="calm", character="Guard")
    [result] = core.plan([character], out, ("blend",), {}, style_key)
    assert result.status == "failed"
    assert result.error == ("the character column(s) belong to the character feature, which is not supported yet: "
                            "leave them empty")


def test_summary(shot):
    lines, out = shot
    results, _ = plan_and_run(lines, out, Animator(fail={"l2"}))
    report = core.summary(results, {"manifest": "lines.csv"})
    assert report["manifest"] == "lines.csv" and report["ok"] is False
    assert report["lines"] == {"total": 5, "done": 3, "skipped": 0, "failed": 2, "not run": 0}
    assert set(report["mean_seconds"]) == set(core.STAGES) and report["mean_seconds"]["write"] == 0.03
    assert report["lines_per_minute"] > 0
    rows = {row["id"]: row for row in report["results"]}
    assert rows["l1"]["status"] == "done" and rows["l1"]["frames"] == 10 and "error" not in rows["l1"]
    assert rows["l4"] == {"number": 4, "id": "l4", "status": "failed",
                          "error": f"audio file not found: {lines[3].audio}"}
    again = core.summary(core.plan(lines[:1], out, ("blend",), {"target": "Head"}, style_key), {})
    assert again["ok"] is True and again["lines"]["skipped"] == 1 and again["lines_per_minute"] is None
    core.write_json(out / "summary.json", report)
    assert json.loads((out / "summary.json").read_text()) == report
    assert core.summary_path(out, 1, 5, 5) == out / "summary.json"
    assert core.summary_path(out, 3, 4, 5) == out / "summary-3-4.json"


def test_progress_line_rate_and_eta():
    now = [100.0]
    stream = io.StringIO()
    progress = core.Progress(stream, clock=lambda: now[0])
    line = Line(1, "a", Path("a.wav"))
    now[0] = 130.0
    progress.update(1, 4, core.Result(line, "done"))
    now[0] = 160.0
    progress.update(2, 4, core.Result(line, "failed"))
    first, second = stream.getvalue().splitlines()
    assert first == "mimic lines 1/4 [00:30<01:30, 2.0 lines/min] | a done"
    assert second == "mimic lines 2/4 [01:00<01:00, 2.0 lines/min] failed 1 | a failed"


def test_checkpoint_digest(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    write(model / "config.json", "{}")
    write(model / "model.safetensors", "weights")
    digest = core.checkpoint_digest(model)
    assert digest == core.checkpoint_digest(model) and len(digest) == 64
    write(model / "model.safetensors", "other weights")
    assert core.checkpoint_digest(model) != digest
    assert core.checkpoint_digest(model / "config.json") == core.file_digest(model / "config.json")
    assert core.checkpoint_digest(tmp_path / "missing.pth") == ""


def test_short_rows_leave_the_last_columns_empty(tmp_path):
    [line] = read_manifest(write(tmp_path / "lines.csv", "id,audio,style,start\na,a.wav\n"))
    assert (line.style, line.start) == (None, 1)
