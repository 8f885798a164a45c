"""Many dialogue lines in one run: one Blender, one warm backend, every line of a manifest in order.

    blender -b --command mimic lines CHARACTER.blend --manifest lines.csv --out DIR [options]
    python -m mimic_blender.lines CHARACTER.blend --manifest lines.csv --out DIR [options]

Per line (the manifest's format: mimic_blender/core/manifest.py) the target gets the line's
shape keys and one Action named after the line id, keying the line's frames from its start frame;
the line's sound becomes a strip there. --export blend writes DIR/ID.blend (the character file
with that line), gltf DIR/ID.glb (the target mesh, its shape keys as morph targets, the Action
as an animation of their weights from time 0 = the audio's start), both writes both.

Re-running skips the lines whose outputs are complete; a bad line is reported and the others run;
DIR/summary.json (summary-A-B.json with --from A --to B) says what happened; exit code 0 only
when every line is done or was complete already. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import bpy

from . import batch, job, scene_io
from .core import compute, session
from .core import lines as core
from .core.errors import BackendError, JobError
from .core.manifest import Line, is_style_file, read_manifest, resolve_style, select
from .core.settings import Settings, SoundSpan
from .core.sources import read_style_file

# Blender's glTF exporter: the selected target only, each action an animation named after it
# (ACTIONS), its shape keys as morph targets and their weights sampled at every frame of the
# scene's range (the line's frames), slid to start at time 0; modifiers are not applied, which
# would drop the shape keys.
GLTF = dict(export_format="GLB", use_selection=True, export_apply=False, export_morph=True, export_animations=True,
            export_animation_mode="ACTIONS", export_morph_animation=True, export_force_sampling=True,
            export_frame_range=True, export_anim_slide_to_zero=True)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mimic lines", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("blend", help="the character .blend")
    ap.add_argument("--manifest", required=True, help="the lines: .csv or .json (see mimic_blender/core/manifest.py)")
    ap.add_argument("--out", required=True, help="folder for the outputs (made if missing)")
    ap.add_argument("--target", help="the head mesh object (default: the active object, else the only mesh)")
    ap.add_argument("--style", help="style of lines without one: a library style's name or a style file (.npz/.npy)")
    ap.add_argument("--export", choices=tuple(core.EXPORTS), default="blend", help="what to write per line")
    ap.add_argument("--from", dest="first", type=int, help="first line to run (1-based, default 1)")
    ap.add_argument("--to", dest="last", type=int, help="last line to run (inclusive, default the last)")
    batch.add_job_options(ap)
    return ap


def find_target(scene, name: str | None):
    if name:
        target = bpy.data.objects.get(name)
        if target is None:
            raise JobError(f"no object named '{name}'")
        return target
    active = bpy.context.view_layer.objects.active
    if active is not None and active.type == "MESH":
        return active
    meshes = [obj for obj in scene.objects if obj.type == "MESH"]
    if len(meshes) != 1:
        raise JobError(f"name the head with --target (the scene has {len(meshes)} mesh objects, none active)")
    return meshes[0]


class Lines:
    """The lines' Blender side: style identities and codes, animating a line, writing its exports."""

    def __init__(self, context, scene, target, settings: Settings, default_style: str | None):
        self.context, self.scene, self.target, self.settings = context, scene, target, settings
        self.default_style = default_style
        self.codes: dict[str, list[float]] = {}
        self.strip = None  # the current line's sound strip
        if target.name not in context.view_layer.objects:
            raise JobError(f"'{target.name}' is not in the view layer of scene '{scene.name}'")
        for obj in context.view_layer.objects:  # the glTF export takes the selection
            obj.select_set(obj == target)

    def job_key(self) -> dict:
        """What every line's outputs are made from besides its own audio, start and style."""
        rest = scene_io.rest_vertices(self.target)
        s = self.settings
        return {"target": self.target.name, "rest": hashlib.sha256(rest.tobytes()).hexdigest(),
                "fps": scene_io.scene_fps(self.scene), "checkpoint": core.checkpoint_digest(Path(s.checkpoint)),
                "error_bound": s.error_bound, "units": s.units, "curves": s.curves}

    def style_value(self, line: Line) -> str:
        value = line.style or self.default_style
        if not value:
            raise JobError("the line has no style: fill its style column, or give the command --style")
        return value

    def style_key(self, line: Line) -> str:
        """The identity of the line's style: its file's digest, or its library code's."""
        value = self.style_value(line)
        if is_style_file(value):
            if not Path(value).is_file():
                raise JobError(f"style file not found: {value}")
            return core.file_digest(Path(value))
        return hashlib.sha256(json.dumps(batch.library_code(self.scene, value)).encode()).hexdigest()

    def style_code(self, line: Line) -> list[float]:
        """The line's style code; a style file is encoded once per run."""
        value = self.style_value(line)
        if not is_style_file(value):
            return batch.library_code(self.scene, value)
        if value not in self.codes:
            with session.use(self.settings) as backend:
                self.codes[value] = compute.encode_style(backend, *read_style_file(value))
        return self.codes[value]

    def animate(self, line: Line) -> core.Animated:
        code = self.style_code(line)
        started = time.perf_counter()
        self.place_sound(line)
        inputs = job.target_inputs(self.context, self.target, line.id, line.start, None,
                                   SoundSpan(str(line.audio), None, 0, None), job.Style(code=code), self.settings)
        generating = []  # when the backend began generating: the audio is read by then
        outputs = compute.compute(inputs, self.settings,
                                  on_progress=lambda *_: generating or generating.append(time.perf_counter()))
        computed = time.perf_counter()
        job.apply(self.context, inputs, outputs, self.settings)
        action = scene_io.mimic_action(self.target)
        action.name = line.id
        if action.name != line.id:
            raise JobError(f"the character file has an action named '{line.id}' already: rename it, or the line")
        frames = len(outputs.tracks)
        self.scene.frame_start, self.scene.frame_end = line.start, line.start + frames - 1
        generated = generating[0] if generating else started
        return core.Animated(
            facts={"frames": frames, "fps": inputs.scene_fps, "shapes": len(outputs.basis),
                   "max_error": outputs.max_error},
            timings={"audio": generated - started, "generate": computed - generated,
                     "write": time.perf_counter() - computed},
            writers={"blend": self.save_blend, "gltf": self.save_gltf})

    def place_sound(self, line: Line) -> None:
        """The line's sound as a strip named after it at its start frame (the last line's removed)."""
        editor = self.scene.sequence_editor or self.scene.sequence_editor_create()
        strips = editor.strips if hasattr(editor, "strips") else editor.sequences
        if self.strip is not None:
            sound = self.strip.sound
            strips.remove(self.strip)
            self.strip = None
            if sound is not None and sound.users == 0:
                bpy.data.sounds.remove(sound)
        self.strip = strips.new_sound(line.id, str(line.audio), channel=1, frame_start=line.start)

    def save_blend(self, path: Path) -> None:
        batch.blender_call(lambda filepath: bpy.ops.wm.save_as_mainfile(filepath=filepath, copy=True), "save", path)

    def save_gltf(self, path: Path) -> None:
        batch.blender_call(lambda filepath: bpy.ops.export_scene.gltf(filepath=filepath, **GLTF), "export", path)


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    kinds = core.EXPORTS[args.export]
    results, facts = [], {"manifest": str(Path(args.manifest).resolve()), "blend": str(Path(args.blend).resolve()),
                          "out": str(Path(args.out).resolve()), "exports": list(kinds), "seconds": {}}
    seconds = facts["seconds"]
    summary = None
    try:
        lines = read_manifest(args.manifest)
        chosen = select(lines, args.first, args.last)
        first, last = chosen[0].number, chosen[-1].number
        facts["range"] = [first, last]
        summary = core.summary_path(Path(args.out), first, last, len(lines))
        results = [core.Result(line, "not run") for line in chosen]
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        clock = time.perf_counter()
        context, scene = batch.open_scene(args)
        target = find_target(scene, args.target)
        job.check_target(target)
        settings = batch.settings_from_args(context, args)
        default_style = args.style and resolve_style(args.style, Path.cwd())
        runner = Lines(context, scene, target, settings, default_style)
        seconds["open"], clock = time.perf_counter() - clock, time.perf_counter()
        results = core.plan(chosen, out, kinds, runner.job_key(), runner.style_key)
        seconds["plan"], clock = time.perf_counter() - clock, time.perf_counter()
        if any(r.status == "run" for r in results):
            with session.use(settings) as backend:
                compute.check_vertex_count(backend, target.name, len(target.data.vertices))
            seconds["backend_start"], clock = time.perf_counter() - clock, time.perf_counter()
            core.run(results, out, kinds, runner.animate, core.Progress())
            seconds["lines"] = time.perf_counter() - clock
    except (JobError, BackendError) as e:
        print(f"mimic: error: {e}", file=sys.stderr)
        facts["error"] = str(e)
        for result in results:
            if result.status == "run":
                result.status = "not run"
    finally:
        session.stop()
    if summary is not None:
        report = core.summary(results, facts)
        core.write_json(summary, report)
        counts = report["lines"]
        print(f"mimic: {counts['done']} done, {counts['skipped']} complete already, {counts['failed']} failed"
              f"{f', {n} not run' if (n := counts['not run']) else ''}; summary {summary}", file=sys.stderr)
        for row in report["results"]:
            if row["status"] == "failed":
                print(f"mimic: line {row['number']} '{row['id']}' failed: {row['error']}", file=sys.stderr)
        return 0 if report["ok"] else 1
    return 1


if __name__ == "__main__":
    batch.main(run)
