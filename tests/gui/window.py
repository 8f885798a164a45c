"""Runs inside a windowed Blender (tests/gui/test_window.py starts it with ../shared/tools/gui-blender
and `--python` this file, `-- CONFIG.json`): installs the extension zip from disk, sets the
Preferences, builds the shot, and then drives the window as a user would, from timers (they
fire in a window): opens the shot, opens the sidebar and clicks the Mimic tab, presses the
button, presses Esc, undoes, makes it fail; it records what happened and writes a JSON report
(CONFIG["report"]) for the pytest side to check, then quits Blender."""

import importlib
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

import bpy
import numpy as np

C = json.loads(Path(sys.argv[sys.argv.index("--") + 1]).read_text())
sys.path.insert(0, C["tests"])
import blender_scene as bs  # noqa: E402

MODULE = "bl_ext.user_default.mimic"
OUT = Path(C["out"])
R = {"draws": 0}  # the report


def session():
    return importlib.import_module(f"{MODULE}.core.session")


def pid():
    backend = session()._backend
    return backend.process.pid if backend is not None and backend.process is not None else None


def view3d():
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    return window, area, next(r for r in area.regions if r.type == "UI")


def running(window) -> bool:
    return any("speaker_style" in op.bl_idname.lower() for op in window.modal_operators)


def screenshot(name: str) -> np.ndarray:
    """The screen as (H, W, 3) floats, rows from the bottom (as Blender counts region y)."""
    path = OUT / f"{name}.png"
    subprocess.run(["import", "-window", "root", str(path)], check=True)
    image = bpy.data.images.load(str(path))
    w, h = image.size
    pixels = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(h, w, 4)[:, :, :3]


def crop(pixels, window, region) -> np.ndarray:
    x, y = window.x + region.x, window.y + region.y
    return pixels[y:y + region.height, x:x + region.width]


def until(condition, timeout: float, step: float = 0.05):
    """`yield from` it: seconds until condition() held, None after `timeout`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            return None
        yield step
    return time.monotonic() - start


def click_tab(window, region, name: str):
    """Click down the sidebar's tab strip (its right edge) until tab `name` is the active one."""
    x = window.x + region.x + region.width - 10
    for dy in range(8, region.height, 12):
        y = window.height - (window.y + region.y + region.height) + dy  # X counts from the top
        subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "1"], check=True)
        yield 0.25
        if region.active_panel_category == name:
            return dy
    return None


def press(window, area, region):
    with bpy.context.temp_override(window=window, area=area, region=region):
        return sorted(bpy.ops.mimic.speaker_style("INVOKE_DEFAULT"))


def watch(window, samples: list, timeout: float = 300):
    """`yield from` it while the operator runs: samples (seconds, progress, status); its duration."""
    wm, start = bpy.context.window_manager, time.monotonic()

    def ended():
        samples.append((time.monotonic() - start, wm.mimic_progress, wm.mimic_status))
        return not running(window)
    return (yield from until(ended, timeout))


def mimic_keys() -> list:
    return [name for name in bs.shape_key_names(bpy.data.objects["Head"]) if name.startswith("Mimic.")]


def info_log(window) -> str:
    """Every report in the Info editor, copied as a user would (select all, copy)."""
    area = next(a for a in window.screen.areas if a.type == "INFO")
    with bpy.context.temp_override(window=window, area=area, region=area.regions[-1]):
        bpy.ops.info.select_all(action="SELECT")
        bpy.ops.info.report_copy()
    return bpy.context.window_manager.clipboard


def setup():
    R["install"] = sorted(bpy.ops.extensions.package_install_files(filepath=C["zip"], repo="user_default",
                                                                     enable_on_install=True))
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.python, prefs.checkpoint, prefs.device = C["python"], C["checkpoint"], "cpu"
    panel = bpy.types.MIMIC_PT_main
    draw = panel.draw

    def counted(self, context):  # observes the panel's draws, then draws it as it does
        R["draws"] += 1
        draw(self, context)
    panel.draw = counted
    with np.load(C["io"]) as io:
        template, motion = io["template"].reshape(-1, 3), io["style_motion"].reshape(150, -1, 3)
    scene = bs.build_shot(template, motion, Path(C["sound"]))
    bs.sound_strip(scene, "Long", Path(C["long_sound"]), frame_start=300, channel=2)
    scene.mimic.style_source, scene.mimic.style_object = "OBJECT", bpy.data.objects["Ref"]
    scene.mimic.style_start, scene.mimic.style_end = bs.STYLE_FRAMES
    bpy.ops.wm.save_as_mainfile(filepath=str(OUT / "shot.blend"))


def active_strip(name: str) -> None:
    editor = bpy.context.scene.sequence_editor
    editor.active_strip = editor.sequences_all[name]  # Blender 4.3's name


def steps():
    yield 1.0  # the window is up
    setup()
    yield 1.0
    R["backend_before_open"] = pid() is not None or session()._lock.locked()

    bpy.ops.wm.open_mainfile(filepath=str(OUT / "shot.blend"))  # Mimic data: load_post starts the backend
    window, area, region = view3d()
    R["prewarm"] = {"started": session()._lock.locked(), "sidebar_shown": area.spaces.active.show_region_ui,
                    "draws": R["draws"]}
    R["prewarm"]["seconds"] = yield from until(lambda: pid() is not None and not session()._lock.locked(), 180)
    R["prewarm"]["pid"], R["prewarm"]["status"] = pid(), session().status()

    next(a for a in window.screen.areas if a.type == "DOPESHEET_EDITOR").type = "INFO"
    area.spaces.active.show_region_ui = True
    yield 1.0
    window, area, region = view3d()
    other = crop(screenshot("sidebar"), window, region)
    R["panel"], draws = {"tab_before": region.active_panel_category}, R["draws"]
    R["panel"]["clicked_at"] = yield from click_tab(window, region, "Mimic")
    subprocess.run(["xdotool", "mousemove", str(window.width // 3), str(window.height // 2)], check=True)
    yield 1.0  # the pointer rests in the viewport (a tooltip over the tab would redraw the whole time)
    mimic = crop(screenshot("panel"), window, region)
    R["panel"].update(tab=region.active_panel_category, registered=bpy.types.MIMIC_PT_main.is_registered,
                      drawn=R["draws"] - draws, contrast=float(mimic.std()),
                      difference=float(np.abs(mimic - other).mean()), status=session().status())

    ticks, draws = [], R["draws"]
    yield from until(lambda: ticks.append(time.monotonic()) or len(ticks) > 20, 30, step=0.01)
    R["idle_tick"] = float(np.diff(ticks).mean())  # how often the main loop runs a timer while idle
    R["idle_draws"] = R["draws"] - draws

    active_strip("Long")  # the first click: progress over a minute of speech
    samples, start = [], time.monotonic()
    R["first_click"] = {"invoke": press(window, area, region), "pid": pid()}
    R["first_click"]["seconds"] = yield from watch(window, samples)
    R["first_click"].update(samples=samples, keys=len(mimic_keys()), pid_after=pid(),
                            wall=time.monotonic() - start)
    with bpy.context.temp_override(window=window, area=area):
        bpy.ops.ed.undo()
    yield 0.5
    R["undo"] = {"keys": mimic_keys(), "action": bs.shape_key_action(bpy.data.objects["Head"]) is not None}

    active_strip("Long")  # Esc while the backend generates
    samples = []
    R["esc"] = {"invoke": press(window, area, region)}
    wm = bpy.context.window_manager
    R["esc"]["generating_after"] = yield from until(
        lambda: wm.mimic_status.startswith("Generating") and wm.mimic_progress > 0, 120)
    busy = crop(screenshot("running"), window, region)
    R["esc"]["panel_changed"] = float(np.abs(busy - mimic).mean())
    R["esc"]["status"] = wm.mimic_status
    key, sent = subprocess.Popen(["xdotool", "key", "Escape"]), []

    def ended():  # Esc is sent when xdotool has ended
        if not sent and key.poll() is not None:
            sent.append(time.monotonic())
        return not running(window)
    R["esc"]["since_launch"] = yield from until(ended, 10, step=0.005)
    key.wait()
    R["esc"]["seconds"] = time.monotonic() - sent[0] if sent else 0.0  # 0: ended before xdotool did
    R["esc"].update(keys=mimic_keys(), running_flag=wm.mimic_running)

    active_strip("Line01")  # at once: the cancelled job may still be finishing its window
    samples = []
    R["after_esc"] = {"invoke": press(window, area, region)}
    R["after_esc"]["seconds"] = yield from watch(window, samples)
    head = bpy.data.objects["Head"]
    R["after_esc"].update(statuses=sorted({s for *_, s in samples}), keys=len(mimic_keys()),
                          result=json.loads(head.data.get("mimic_result", "{}")),
                          action=bs.shape_key_action(head).name if bs.shape_key_action(head) else None)

    bpy.context.preferences.addons[MODULE].preferences.checkpoint = C["missing"]
    yield 1.0  # the panel redraws: a prewarm with the new checkpoint
    R["failure"] = {"invoke": press(window, area, region), "keys_before": mimic_keys()}
    R["failure"]["seconds"] = yield from watch(window, [])
    yield 0.5
    screenshot("failure")
    R["failure"].update(keys=mimic_keys(), log=info_log(window), status=session().status())

    bpy.context.preferences.addons[MODULE].preferences.checkpoint = C["checkpoint"]  # fixed: no click needed
    draws = R["draws"]
    region.tag_redraw()  # as any event over the sidebar does
    R["redraw_prewarm"] = {"seconds": (yield from until(lambda: session().status().startswith("Backend ready"), 60))}
    R["redraw_prewarm"].update(draws=R["draws"] - draws, status=session().status())

    warm, cold = [], []  # the same click with the backend warm, then cold (what the prewarm saves)
    for name, samples in (("warm_click", warm), ("cold_click", cold)):
        if samples is cold:
            session().stop()
        R[name] = {"invoke": press(window, area, region)}
        R[name]["seconds"] = yield from watch(window, samples)
        R[name]["samples"] = samples
    R["pid_at_quit"] = pid()


def main():
    run = steps()

    def tick():
        try:
            return next(run)
        except StopIteration:
            pass
        except Exception:
            R["error"] = traceback.format_exc()
        Path(C["report"]).write_text(json.dumps(R, indent=1))
        bpy.ops.wm.quit_blender()
        return None
    bpy.app.timers.register(tick, first_interval=0.5, persistent=True)


bpy.context.preferences.view.show_splash = False
main()
