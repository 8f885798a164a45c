"""Operators: thin wrappers that parse the scene, call job.py, and report."""

from __future__ import annotations

import json
from pathlib import Path

import bpy

from . import character as ch
from . import job, properties
from .core import character as character_core
from .core import compute, session, stages
from .core.backend_source import SOURCE
from .core.errors import BackendError, JobError, SetupError
from .core.mapping import mix_styles
from .core.setup_backend import find_python_problems, setup_backend
from .core.worker import Worker

FAILURES = (JobError, BackendError, SetupError)


def style_from_scene(scene) -> job.Style:
    s = scene.mimic
    if s.style_source == "OBJECT":
        if s.style_object is None:
            raise JobError("pick a reference object for the style (or another style source)")
        return job.Style(object=s.style_object, frames=(s.style_start, s.style_end),
                         label=f"{s.style_object.name} frames {s.style_start}-{s.style_end}")
    if s.style_source == "FILE":
        if not s.style_file:
            raise JobError("pick a style file (or another style source)")
        return job.Style(file=bpy.path.abspath(s.style_file), label=s.style_file)
    if not 0 <= s.style_index < len(s.styles):
        raise JobError("the style library is empty: capture a style first")
    item = s.styles[s.style_index]
    return job.Style(code=properties.style_code(item), label=item.name)


class ModalWork:
    """Mixin for operators whose work runs on a Worker thread: progress in the window manager
    (drawn by the panel); Esc gives control back at once, changing nothing (the worker finishes
    cancelling by itself, and its outcome is dropped); the outcome is handled on the main thread,
    after one redraw showing `finishing` when that is set."""

    finishing = ""
    cancelled_message = "Cancelled: nothing changed"

    def start_work(self, context, work, status: str):
        wm = context.window_manager
        wm.mimic_running, wm.mimic_progress, wm.mimic_status = True, 0.0, status
        self.worker, self.outcome = Worker(work, FAILURES).start(), None
        self.timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def end_work(self, context) -> None:
        wm = context.window_manager
        wm.event_timer_remove(self.timer)
        wm.mimic_running, wm.mimic_status = False, ""
        redraw(context)

    def modal(self, context, event):
        wm = context.window_manager
        if event.type == "ESC" and event.value == "PRESS":
            self.worker.cancel.set()
            self.end_work(context)
            self.report({"WARNING"}, self.cancelled_message)
            return {"CANCELLED"}
        if self.outcome is not None:
            self.end_work(context)
            return self.work_done(context, self.outcome)
        events = self.worker.poll()
        for kind, payload in events:
            if kind == "progress":
                fraction, text = payload
                wm.mimic_progress = wm.mimic_progress if fraction is None else fraction
                wm.mimic_status = text
            elif kind == "done" and self.finishing:
                self.outcome, wm.mimic_status = payload, self.finishing
            elif kind == "done":
                self.end_work(context)
                return self.work_done(context, payload)
            else:
                self.end_work(context)
                self.report({"ERROR"}, str(payload))
                return {"CANCELLED"}
        if events:
            redraw(context)
        return {"RUNNING_MODAL"}


def redraw(context) -> None:
    """Redraw the sidebars that hold the panel, and nothing else (a 3D view's own redraw can take
    long enough to delay Esc)."""
    for area in context.screen.areas if context.screen else ():
        if area.type == "VIEW_3D":
            for region in area.regions:
                if region.type == "UI":
                    region.tag_redraw()


class MIMIC_OT_speaker_style(ModalWork, bpy.types.Operator):
    """Animate the active head's shape keys from the selected sound strip in the chosen speaking style"""
    bl_idname = "mimic.speaker_style"
    bl_label = "Mimic Speaker Style"
    bl_options = {"REGISTER", "UNDO"}
    finishing = stages.LABELS[stages.WRITE]

    strip: bpy.props.StringProperty(name="Strip", description="Sound strip name (default: the active one)")

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            cls.poll_message_set("Select the head mesh to animate")
            return False
        if context.window_manager.mimic_running:
            cls.poll_message_set("Mimic is already working")
            return False
        return True

    def _prepare(self, context) -> job.Job:
        scene = context.scene
        strip = job.find_strip(scene, self.strip or None)
        target, character = context.active_object, character_from_scene(context)
        if character is not None:
            target = scene.mimic.model_head
        return job.prepare(context, target, strip, style_from_scene(scene), properties.settings(context), character)

    def execute(self, context):
        """Synchronous: background mode and scripts."""
        try:
            work = self._prepare(context)
            done = work.finish(context, work.compute(on_progress=compute.print_progress))
        except FAILURES as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, "Mimic: " + done)
        return {"FINISHED"}

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        try:
            self.job = self._prepare(context)
        except FAILURES as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}

        def work(progress, cancelled):  # on the worker thread: no bpy
            return self.job.compute(lambda done, total, stage: progress(*stages.describe(done, total, stage)),
                                    cancelled)
        return self.start_work(context, work, "Starting")

    def work_done(self, context, result):
        try:
            done = self.job.finish(context, result)
        except FAILURES as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, "Mimic: " + done)
        return {"FINISHED"}


def character_from_scene(context):
    """(character, mode, key spec, smoothness) when the panel animates a character, else None."""
    s = context.scene.mimic
    if s.character_mode == "MODEL":
        return None
    if s.model_head is None:
        raise JobError("pick the Model Head (a head with the model's topology) to fit onto the character")
    return context.active_object, s.character_mode, s.shape_keys, s.smoothness


class MIMIC_OT_fit_character(ModalWork, bpy.types.Operator):
    """Fit the model head onto the active character (landmarks: the placed ones, else found) and keep the
    fit in this .blend; shows the fitted surface and places the landmarks used, to adjust and fit again"""
    bl_idname = "mimic.fit_character"
    bl_label = "Fit to Character"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        obj, model = context.active_object, context.scene.mimic.model_head
        if obj is None or obj.type != "MESH" or model is None or obj == model:
            cls.poll_message_set("Select the character mesh and pick the Model Head")
            return False
        if context.window_manager.mimic_running:
            cls.poll_message_set("Mimic is already working")
            return False
        return True

    def _work(self, context):
        """The fit, as work for a Worker (no bpy in it); the objects' names for work_done."""
        character, model = context.active_object, context.scene.mimic.model_head
        self.names = character.name, model.name
        settings, meshes = properties.settings(context), (ch.model_mesh(model), ch.character_mesh(character))
        landmarks = ch.placed_landmarks(character)
        return lambda progress, cancelled: character_core.fit(settings, *meshes, landmarks, progress, cancelled)

    def execute(self, context):
        """Synchronous: background mode and scripts."""
        try:
            return self.work_done(context, self._work(context)(compute.print_progress, lambda: False))
        except FAILURES as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        work = self._work(context)
        return self.start_work(context, lambda progress, cancelled: work(
            lambda done, total, stage: progress(*stages.describe(done, total, stage)), cancelled), "Starting")

    def work_done(self, context, fitted):
        character, model = (bpy.data.objects.get(name) for name in self.names)
        if character is None or model is None:
            self.report({"ERROR"}, f"'{self.names[0]}' or '{self.names[1]}' went away during the fit: nothing changed")
            return {"CANCELLED"}
        fit, quality = fitted
        ch.store_fit(context, character, model, fit, quality)
        ch.place_landmarks(context, character, quality["landmarks"])
        self.report({"INFO"}, f"Fitted '{model.name}' to '{character.name}': {character_core.quality_line(quality)}")
        return {"FINISHED"}


class MIMIC_OT_capture_style(bpy.types.Operator):
    """Encode the current style source into the style library of this .blend"""
    bl_idname = "mimic.capture_style"
    bl_label = "Capture Style"
    bl_options = {"REGISTER", "UNDO"}

    name: bpy.props.StringProperty(name="Name")

    def execute(self, context):
        scene = context.scene
        try:
            style = style_from_scene(scene)
            if style.code is not None:
                raise JobError("choose an object or a file as the style source to capture from")
            settings = properties.settings(context)
            vertices, neutral = job.style_arrays(context, style, settings.units)
            with session.use(settings) as backend:
                code = compute.encode_style(backend, vertices, neutral)
        except FAILURES as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        item = add_style(scene.mimic, self.name or style.label, code, style.label, settings.checkpoint)
        self.report({"INFO"}, f"Captured style '{item.name}'")
        return {"FINISHED"}


def add_style(settings, name: str, code: list[float], source: str, checkpoint: str):
    """A new library style, made the active one."""
    item = settings.styles.add()
    item.name, item.code, item.source, item.checkpoint = name, json.dumps(code), source, checkpoint
    settings.style_index = len(settings.styles) - 1
    return item


class MIMIC_OT_style_remove(bpy.types.Operator):
    """Delete the active style from the library"""
    bl_idname = "mimic.style_remove"
    bl_label = "Delete Style"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return 0 <= context.scene.mimic.style_index < len(context.scene.mimic.styles)

    def execute(self, context):
        s = context.scene.mimic
        s.styles.remove(s.style_index)
        s.style_index = min(s.style_index, len(s.styles) - 1)
        return {"FINISHED"}


class MIMIC_OT_style_mix(bpy.types.Operator):
    """Add a style mixing the active one with another by a weight"""
    bl_idname = "mimic.style_mix"
    bl_label = "Mix Styles"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return len(context.scene.mimic.styles) >= 2

    def execute(self, context):
        s = context.scene.mimic
        a, b = s.styles[s.style_index], s.styles.get(s.mix_with)
        if b is None:
            self.report({"ERROR"}, "choose the style to mix with")
            return {"CANCELLED"}
        try:
            code = mix_styles(properties.style_code(a), properties.style_code(b), s.mix_weight)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        add_style(s, f"{a.name} + {b.name} {s.mix_weight:.2f}", code, f"mix of {a.name} and {b.name}", a.checkpoint)
        return {"FINISHED"}


class MIMIC_OT_check_backend(bpy.types.Operator):
    """Start the backend and load the checkpoint; report what is wrong in words"""
    bl_idname = "mimic.check_backend"
    bl_label = "Check Backend"

    def execute(self, context):
        settings = properties.settings(context)
        problems = find_python_problems(settings.python) if settings.python else ["no backend interpreter set"]
        if problems:
            self.report({"ERROR"}, f"Backend interpreter {settings.python or '(none)'}: " + "; ".join(problems) +
                        ". Click Set up backend, or point Preferences at an environment made by install/setup.sh")
            return {"CANCELLED"}
        try:
            with session.use(settings) as backend:
                f, m = backend.facts, backend.facts["model"]
        except FAILURES as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Backend OK: torch {f['torch']} on {m['device']}; model animates "
                              f"{m['vertex_count']} vertices at {m['fps']:g} fps")
        return {"FINISHED"}


class MIMIC_OT_setup_backend(ModalWork, bpy.types.Operator):
    """Make the backend's Python environment in the extension's user folder: PyTorch (CPU, or CUDA when
    ticked) and the bundled backend. Downloads about 1 GB (CPU) or several GB (CUDA)"""
    bl_idname = "mimic.setup_backend"
    bl_label = "Set up Backend"
    cancelled_message = "Set up Backend cancelled: click it again to finish the environment"

    @classmethod
    def poll(cls, context):
        if context.window_manager.mimic_running:
            cls.poll_message_set("Mimic is already working")
            return False
        return True

    def _work(self, context):
        prefs = properties.preferences(context)
        venv = Path(bpy.utils.extension_path_user(__package__, path="venv", create=True))
        torch = "cuda" if prefs is not None and prefs.cuda else "cpu"
        return lambda progress, cancelled: setup_backend(venv, SOURCE, torch, on_line=lambda line: progress(None, line),
                                                         cancelled=cancelled)

    def execute(self, context):
        """Synchronous (background mode)."""
        try:
            python = self._work(context)(lambda fraction, line: print(line, flush=True), lambda: False)
        except FAILURES as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        return self.work_done(context, python)

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        return self.start_work(context, self._work(context), "Setting up the backend")

    def work_done(self, context, python):
        prefs = properties.preferences(context)
        if prefs is not None:
            prefs.python = str(python)
        session.stop()
        self.report({"INFO"}, f"Backend ready: {python}")
        return {"FINISHED"}


CLASSES = (MIMIC_OT_speaker_style, MIMIC_OT_fit_character, MIMIC_OT_setup_backend, MIMIC_OT_capture_style,
           MIMIC_OT_style_remove, MIMIC_OT_style_mix, MIMIC_OT_check_backend)
