"""Runs inside a windowed Blender (tests/gui/test_window.py starts it with ../shared/tools/gui-blender
and `--python` this file, `-- CONFIG.json`): installs the extension zip from disk, sets the
Preferences, builds the shot, and then drives the window as a user would, from timers (they
fire in a window): opens the shot, opens the sidebar and clicks the Mimic tab, presses the
button, presses Esc, undoes, makes it fail, runs at the Fast precision, animates a character;
it records what happened and writes a JSON report (CONFIG["report"], arrays beside it) for the
pytest side to check, then quits Blender."""

import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

C = json.loads(Path(sys.argv[sys.argv.index("--") + 1]).read_text())
sys.path[:0] = [C["tests"], str(Path(C["tests"]) / "gui")]
import blender_scene as bs  # noqa: E402
from drive import (  # noqa: E402
    MODULE,
    click_tab,
    crop,
    escape,
    idle_model,
    info_log,
    observe_panel,
    pid,
    press,
    running,
    screen,
    session,
    until,
    view3d,
    watch,
)

OUT = Path(C["out"])
R = {"draws": 0}  # the report


def mimic_keys(name: str = "Head") -> list:
    return [key for key in bs.shape_key_names(bpy.data.objects[name]) if key.startswith("Mimic.")]


def screenshot(name: str) -> np.ndarray:
    return screen(OUT / f"{name}.png")


def strip_frames(name: str) -> range:
    """The scene frames strip `name` plays."""
    strip = bpy.context.scene.sequence_editor.sequences_all[name]
    return range(strip.frame_final_start, strip.frame_final_end)


def mimic_lines(window) -> list:
    """The Mimic reports in the Info log, oldest first."""
    return [line for line in info_log(window).splitlines() if line.startswith("Mimic: ")]


def setup():
    R["install"] = sorted(bpy.ops.extensions.package_install_files(filepath=C["zip"], repo="user_default",
                                                                     enable_on_install=True))
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.python, prefs.checkpoint, prefs.device = C["python"], C["checkpoint"], "cpu"
    observe_panel(R)
    with np.load(C["io"]) as io:
        template, motion = io["template"].reshape(-1, 3), io["style_motion"].reshape(150, -1, 3)
    scene = bs.build_shot(template, motion, Path(C["sound"]))
    bs.sound_strip(scene, "Long", Path(C["long_sound"]), frame_start=300, channel=2)
    scene.mimic.style_source, scene.mimic.style_object = "OBJECT", bpy.data.objects["Ref"]
    scene.mimic.style_start, scene.mimic.style_end = bs.STYLE_FRAMES
    with np.load(C["character"]) as character:  # the demo model's head, and a character of another topology
        bs.mesh_object("ModelHead", character["model_vertices"], scene, faces=character["model_faces"])
        char = bs.mesh_object("Char", character["vertices"], scene, faces=character["faces"])
        char.matrix_world = Matrix(character["matrix"].tolist())
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
    R["esc"].update((yield from escape(window)))
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
        np.save(OUT / f"{name}.npy", bs.vertices_at(bpy.data.objects["Head"], strip_frames("Line01")))
    yield from fast_precision(window, area, region)
    yield from character(window, area, region)
    R["pid_at_quit"] = pid()


def fast_precision(window, area, region):
    """Preferences > Precision: Fast, and the same shot again as the (exact, fp32) clicks before."""
    head, frames = bpy.data.objects["Head"], strip_frames("Line01")
    exact = json.loads(head.data["mimic_result"])
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.precision = "fast"  # as a user sets it (the Preferences' RNA)
    region.tag_redraw()  # the panel is drawn: a prewarm at the new precision
    R["fast"] = {"prewarm": (yield from until(lambda: (idle_model() or {}).get("requested", [0, 0])[1] == "fast", 60))}
    samples = []
    R["fast"].update(invoke=press(window, area, region), exact_result=exact)
    R["fast"]["seconds"] = yield from watch(window, samples)
    region.tag_redraw()
    yield 0.5
    R["fast"].update(statuses=list(dict.fromkeys(s for *_, s in samples)), keys=len(mimic_keys()),
                     result=json.loads(head.data["mimic_result"]), report=mimic_lines(window)[-1],
                     status=session().status(), panel_labels=[text for kind, text in R["drawn"] if kind == "label"])
    np.save(OUT / "fast.npy", bs.vertices_at(head, frames))
    prefs.precision = "fp32"


def character(window, area, region):
    """A character of another topology with the demo model: the panel's character box, Fit to
    Character, Dense mode pressed, Esc during a character job; then the model head's own result
    (what the character's must follow)."""
    scene, wm = bpy.context.scene, bpy.context.window_manager
    prefs, settings = bpy.context.preferences.addons[MODULE].preferences, scene.mimic
    char = bpy.data.objects["Char"]
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj == char)
    bpy.context.view_layer.objects.active = char
    prefs.checkpoint = C["demo"]
    settings.style_source, settings.style_file = "FILE", C["demo_style"]
    settings.model_head = bpy.data.objects["ModelHead"]
    region.tag_redraw()  # a prewarm of the demo model
    R["character"] = {"load": (yield from until(lambda: (idle_model() or {}).get("checkpoint") == C["demo"], 120))}
    model_panel = crop(screenshot("model_mode"), window, region)
    settings.character_mode = "DENSE"
    region.tag_redraw()
    yield 0.5
    box = crop(screenshot("character_box"), window, region)
    R["character"].update(drawn=R["drawn"], difference=float(np.abs(box - model_panel).mean()))

    samples = []
    R["fit"] = {"invoke": press(window, area, region, "fit_character")}  # modal: the window goes on
    R["fit"]["seconds"] = yield from watch(window, samples)
    R["fit"]["statuses"] = sorted({status for *_, status in samples})
    region.tag_redraw()
    yield 0.5
    collection = bpy.data.collections.get("Mimic Landmarks: Char")
    R["fit"].update(quality=json.loads(char.get("mimic_fit_quality", "null")), drawn=R["drawn"],
                    landmarks=len(collection.objects) if collection else 0,
                    preview=bpy.data.objects.get("Mimic Fit: Char") is not None)

    active_strip("Line01")
    samples, frames = [], strip_frames("Line01")
    R["dense"] = {"invoke": press(window, area, region)}
    R["dense"]["seconds"] = yield from watch(window, samples)
    action = bs.shape_key_action(char)
    R["dense"].update(statuses=list(dict.fromkeys(s for *_, s in samples)), keys=mimic_keys("Char"),
                      action=action.name if action else None, result=json.loads(char.data.get("mimic_result", "{}")),
                      model_head_keys=mimic_keys("ModelHead"), report=mimic_lines(window)[-1])
    np.save(OUT / "character_rest.npy", bs.mesh_vertices(char))
    dense = bs.vertices_at(char, frames[::4])
    np.save(OUT / "character_dense.npy", dense)

    active_strip("Long")  # Esc during a character job, while the backend encodes the audio
    R["character_esc"] = {"invoke": press(window, area, region)}
    R["character_esc"]["encoding_after"] = yield from until(
        lambda: wm.mimic_status.startswith("Encoding the audio") and wm.mimic_progress > 0, 120)
    R["character_esc"]["status"] = wm.mimic_status
    R["character_esc"].update((yield from escape(window)))
    action = bs.shape_key_action(char)
    R["character_esc"].update(running=running(window), keys=mimic_keys("Char"), action=action.name if action else None,
                              moved=float(np.abs(bs.vertices_at(char, frames[::4]) - dense).max()))
    R["character_esc"]["backend_free_after"] = yield from until(lambda: not session()._lock.locked(), 60)

    model = bpy.data.objects["ModelHead"]
    bpy.context.view_layer.objects.active, settings.character_mode = model, "MODEL"
    active_strip("Line01")
    R["model_head"] = {"invoke": press(window, area, region)}
    R["model_head"]["seconds"] = yield from watch(window, [])
    np.save(OUT / "model_motion.npy", bs.vertices_at(model, frames[::4]) - bs.mesh_vertices(model))


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
