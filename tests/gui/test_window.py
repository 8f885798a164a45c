"""The add-on in a real Blender window (Debian 13's Blender 4.3 under Xvfb, through
../shared/tools/gui-blender, which needs root): what only a window shows. tests/gui/window.py
drives it (installs the zip, opens the shot, clicks, presses Esc, undoes) and reports; these
tests check the report. The backend is a real `mimic serve` of this checkout (the window's
backend interpreter is the tool's host-python, which runs this Python on the host)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from blender_addon import serving
from paths import CHECKPOINT, IO, LINE, ROOT

pytestmark = pytest.mark.gui

TOOL = Path(os.environ.get("GUI_BLENDER", ROOT.parent / "shared" / "tools" / "gui-blender"))
CHROOT = Path(os.environ.get("GUI_BLENDER_ROOT", "/var/cache/mimic-gui-blender")) / "trixie"
# what the bar says, in order (Reading the sound: a Blender without its aud module, as Debian's)
STAGES = ["Starting", "Encoding the style", "Reading the sound", "Encoding the audio", "Generating", "Compressing",
          "Writing keys"]
ESC_TARGET = 0.5  # seconds: the aim, recorded; the tests assert a generous bound only


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    if os.geteuid() != 0:
        pytest.skip("the windowed Blender (gui-blender) needs root")
    if not TOOL.is_file():
        pytest.skip(f"no gui-blender tool at {TOOL} (set GUI_BLENDER)")
    numpy_there = subprocess.run(["chroot", str(CHROOT), "python3", "-c", "import numpy"], capture_output=True)
    assert numpy_there.returncode == 0, "the window Blender lacks numpy: run tests/gui/setup.sh"
    tmp = tmp_path_factory.mktemp("gui")
    out = tmp / "out"
    out.mkdir()
    built = subprocess.run([sys.executable, ROOT / "install" / "build_extension.py", "--out", tmp / "mimic.zip"],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    shutil.copy(LINE, tmp / "line01.wav")  # the window's /usr is the chroot's: the speech goes by /tmp
    samples, rate = soundfile.read(LINE, dtype="float32")
    soundfile.write(tmp / "long.wav", np.tile(samples, 10), rate)  # 71 s: long enough to press Esc in
    config = dict(zip=str(tmp / "mimic.zip"), python="/usr/local/bin/host-python", checkpoint=str(CHECKPOINT),
                  missing=str(tmp / "no such model.pth"), io=str(IO), sound=str(tmp / "line01.wav"),
                  long_sound=str(tmp / "long.wav"), tests=str(ROOT / "tests"), out=str(out),
                  report=str(tmp / "report.json"))
    (tmp / "config.json").write_text(json.dumps(config))
    user, temp = tmp / "blender-user", tmp / "temp"
    for folder in (user, temp):
        folder.mkdir()
    done = subprocess.run([str(TOOL), "--timeout", "600", "--", "--factory-startup", "--python",
                           str(ROOT / "tests" / "gui" / "window.py"), "--", str(tmp / "config.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, HOST_PYTHON=sys.executable, BLENDER_USER_RESOURCES=str(user),
                                   TMPDIR=str(temp)))
    assert Path(config["report"]).is_file(), f"no report (exit code {done.returncode}):\n{done.stdout[-3000:]}" \
                                             f"\n{done.stderr[-3000:]}"
    result = json.loads(Path(config["report"]).read_text())
    assert "error" not in result, result["error"]
    result["exit_code"] = done.returncode
    print(json.dumps({key: result[key] for key in ("prewarm", "esc", "idle_tick")}, indent=1))  # the numbers
    return result


def test_the_extension_installs_and_its_tab_shows_the_panel(report):
    assert report["install"] == ["FINISHED"]
    panel = report["panel"]
    assert panel["clicked_at"] is not None and panel["tab"] == "Mimic" and panel["tab_before"] != "Mimic"
    assert panel["registered"] and panel["drawn"] > 0
    assert panel["contrast"] > 0.02  # the sidebar is not blank...
    assert panel["difference"] > 0.005  # ...and shows something else than the tab before
    assert panel["status"].startswith("Backend ready")


def test_the_backend_is_started_ahead_of_the_first_click(report):
    assert not report["backend_before_open"]  # a shot without Mimic data started nothing
    prewarm = report["prewarm"]
    assert prewarm["started"] and not prewarm["sidebar_shown"] and prewarm["draws"] == 0  # by opening the file
    assert prewarm["seconds"] is not None and prewarm["pid"] is not None
    assert report["first_click"]["pid"] == prewarm["pid"]  # the click found it warm


def test_the_first_click_shows_progress_that_moves(report):
    click = report["first_click"]
    assert click["invoke"] == ["RUNNING_MODAL"] and click["seconds"] is not None and click["keys"] >= 2
    labels = list(dict.fromkeys(re.sub(r" \d+/\d+$", "", status) for _, _, status in click["samples"]))
    assert labels[0] == "Starting" and labels[-1] == ""  # the bar goes when the job ends
    assert [label for label in STAGES if label in labels] == labels[:-1]  # the stages in order, no "Loading": warm
    generating = [progress for _, progress, status in click["samples"] if status.startswith("Generating")]
    assert {p for p in generating if 0 < p < 1}  # it moves before the end (the tiny model is quick: once, or more)
    assert generating == sorted(generating)


def test_undo_removes_the_result(report):
    assert report["undo"] == {"keys": [], "action": False}


def test_esc_gives_control_back_at_once_and_changes_nothing(report):
    esc = report["esc"]
    assert esc["generating_after"] is not None and esc["status"].startswith("Generating")
    assert esc["panel_changed"] > 0.001  # the bar is drawn
    assert esc["since_launch"] is not None and esc["since_launch"] < 5 * ESC_TARGET  # xdotool's own start included
    assert esc["seconds"] <= esc["since_launch"]
    assert esc["keys"] == [] and not esc["running_flag"]


def test_the_job_after_a_cancelled_one_gets_its_own_result(report):
    after = report["after_esc"]
    assert after["invoke"] == ["RUNNING_MODAL"] and after["seconds"] is not None
    assert after["result"]["strip"] == "Line01" and after["action"] == "Mimic Line01" and after["keys"] >= 2


def test_a_failure_is_reported_and_changes_nothing(report):
    failure = report["failure"]
    assert failure["invoke"] == ["RUNNING_MODAL"] and failure["seconds"] is not None
    assert failure["keys"] == failure["keys_before"] != []
    assert "no such model.pth" in failure["log"] and "Cancelled: nothing changed" in failure["log"]
    assert failure["status"].startswith("Backend failed:") and "no such model.pth" in failure["status"]


def test_drawing_the_panel_with_new_preferences_loads_them_ahead_of_the_click(report):
    redraw = report["redraw_prewarm"]
    assert redraw["draws"] > 0 and redraw["seconds"] is not None and redraw["status"].startswith("Backend ready")


def until_generating(click: dict) -> float:
    """Seconds from the click until the backend generated (start, load and style encoding behind)."""
    return next(t for t, _, status in click["samples"] if status.startswith("Generating"))


def test_a_cold_click_names_what_it_waits_for_and_a_warm_one_skips_it(report):
    cold, warm = report["cold_click"], report["warm_click"]
    assert cold["seconds"] is not None and warm["seconds"] is not None
    statuses = [status for _, _, status in cold["samples"]]
    assert "Loading PyTorch" in statuses and "Loading the model" in statuses
    assert not any(status.startswith("Loading") for _, _, status in warm["samples"])
    assert until_generating(cold) > until_generating(warm)


def test_quitting_blender_leaves_no_backend(report):
    assert report["exit_code"] == 0
    assert report["pid_at_quit"] is not None and not serving(report["pid_at_quit"])
