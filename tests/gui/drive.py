"""Driving a windowed Blender as a user would, from timers (tests/gui/window.py's steps): the
screen, the sidebar's tabs, the Mimic button, Esc, the Info log, and what the Mimic panel drew.
Generators here are used with `yield from` inside a timer-driven step generator (they yield the
seconds until the next tick)."""

import importlib
import subprocess
import time

import bpy
import numpy as np

MODULE = "bl_ext.user_default.mimic"


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
    """Whether a Mimic operator (the button, Fit to Character) runs modal in the window."""
    return any(op.bl_idname.lower().startswith("mimic") for op in window.modal_operators)


def idle_model() -> dict | None:
    """The facts of the model the backend has loaded (with what was asked: "requested", (device,
    precision)), once no one is using it; else None."""
    backend = session()._backend
    if session()._lock.locked() or backend is None:
        return None
    return backend.facts.get("model")


def screen(path) -> np.ndarray:
    """The screen as (H, W, 3) floats, rows from the bottom (as Blender counts region y)."""
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


def press(window, area, region, operator: str = "speaker_style"):
    """Invoke a Mimic operator in the sidebar, as its button does."""
    with bpy.context.temp_override(window=window, area=area, region=region):
        return sorted(getattr(bpy.ops.mimic, operator)("INVOKE_DEFAULT"))


def watch(window, samples: list, timeout: float = 300):
    """`yield from` it while the operator runs: samples (seconds, progress, status); its duration."""
    wm, start = bpy.context.window_manager, time.monotonic()

    def ended():
        samples.append((time.monotonic() - start, wm.mimic_progress, wm.mimic_status))
        return not running(window)
    return (yield from until(ended, timeout))


def escape(window) -> dict:
    """`yield from` it while the operator runs: press Esc (xdotool); seconds until the operator had
    ended, from xdotool's launch and from its end (0: ended before xdotool did)."""
    key, sent = subprocess.Popen(["xdotool", "key", "Escape"]), []

    def ended():  # Esc is sent when xdotool has ended
        if not sent and key.poll() is not None:
            sent.append(time.monotonic())
        return not running(window)
    since_launch = yield from until(ended, 10, step=0.005)
    key.wait()
    return {"since_launch": since_launch, "seconds": time.monotonic() - sent[0] if sent else 0.0}


def info_log(window) -> str:
    """Every report in the Info editor, copied as a user would (select all, copy)."""
    area = next(a for a in window.screen.areas if a.type == "INFO")
    with bpy.context.temp_override(window=window, area=area, region=area.regions[-1]):
        bpy.ops.info.select_all(action="SELECT")
        bpy.ops.info.report_copy()
    return bpy.context.window_manager.clipboard


class Recorded:
    """A UILayout that draws as it is told and notes each element: (kind, name), where name is an
    element's first string argument (a property or operator name) or its text (a label's)."""

    def __init__(self, layout, drawn: list):
        object.__setattr__(self, "_layout", layout)
        object.__setattr__(self, "_drawn", drawn)

    def __setattr__(self, name, value):
        setattr(self._layout, name, value)

    def __getattr__(self, name):
        real = getattr(self._layout, name)
        if not callable(real):
            return real

        def call(*args, **kwargs):
            out = real(*args, **kwargs)
            self._drawn.append((name, next((a for a in args if isinstance(a, str)), kwargs.get("text", ""))))
            return Recorded(out, self._drawn) if isinstance(out, bpy.types.UILayout) else out
        return call


def observe_panel(report: dict) -> None:
    """Count the Mimic panel's draws in report["draws"] and keep the elements of its last draw in
    report["drawn"]; it draws as it does."""
    panel = bpy.types.MIMIC_PT_main
    draw = panel.draw

    class Drawn:  # the panel as its draw sees it, its layout noted
        def __init__(self, real):
            self.layout = Recorded(real.layout, [])

    def observed(self, context):
        report["draws"] += 1
        seen = Drawn(self)
        draw(seen, context)
        report["drawn"] = seen.layout._drawn
    panel.draw = observed
