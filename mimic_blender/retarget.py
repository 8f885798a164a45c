"""Retarget an existing animation of a model-topology head (a Mimic result, or any FLAME
animation) onto a character of any topology, with no model and no sound:

    python -m mimic_blender.retarget SHOT.blend --source SRC --character CHAR \\
        [--character-mode dense|shape-keys] \\
        [--shape-keys arkit|NAME,NAME,...] [--frames A-B] --save OUT.blend
    blender -b --command mimic retarget SHOT.blend ... (the same arguments)

The source's animation (evaluated through the depsgraph: shape keys, modifiers, caches) over the
scene's frame range (or --frames) becomes a compact result, carried through the character's fit
(made first, automatically, when the .blend has none). Exit 1 with one line on error.
"""

from __future__ import annotations

import argparse
import re

import bpy

from . import batch, job, properties, scene_io
from . import character as ch
from .core import character as character_core
from .core.character import Carried
from .core.errors import JobError
from .core.settings import Inputs


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mimic retarget", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("blend", help="the shot .blend")
    ap.add_argument("--source", required=True, help="the animated head with the model's topology")
    batch.add_character_options(ap, required=True)
    ap.add_argument("--frames", help="frame range A-B (default: the scene's)")
    batch.add_job_options(ap, model=False)
    ap.add_argument("--save", required=True, help="where to save the animated .blend")
    return ap


def frame_range(text: str | None, scene) -> range:
    if text is None:
        return range(scene.frame_start, scene.frame_end + 1)
    match = re.fullmatch(r"(-?\d+)-(-?\d+)", text)
    if not match or int(match[2]) < int(match[1]):
        raise JobError(f"--frames must look like 1-250, not '{text}'")
    return range(int(match[1]), int(match[2]) + 1)


def retarget(context, source, character, mode: str, spec: str, smoothness: float, frames: range, settings) -> str:
    """The source's animation over `frames` onto the character; a one-line summary."""
    job.check_target(source)
    wanted, pending = ch.character_inputs(character, source, mode, spec, smoothness)
    rest = scene_io.rest_vertices(source)
    motion = scene_io.evaluated_vertices(context, source, frames) - rest
    outputs = character_core.compact_motion(motion, settings.error_bound)
    made, quality = character_core.ensure_fit(wanted, settings, pending)
    carried = Carried(character_core.onto(outputs, wanted, settings), made, quality)
    inputs = Inputs(source.name, f"retarget {source.name}", frames.start, len(frames),
                    scene_io.scene_fps(context.scene), rest, 1.0, None)
    return job.apply_character(context, inputs, wanted, carried, settings)


def run(argv: list[str]) -> int:
    return batch.save_after(parser().parse_args(argv), retarget_shot)


def retarget_shot(args, context, scene) -> str:
    source = bpy.data.objects.get(args.source)
    if source is None:
        raise JobError(f"no object named '{args.source}'")
    character, mode, spec, smoothness = batch.character_from_args(args)
    error_bound = None if args.error_bound_mm is None else args.error_bound_mm / 1000.0
    settings = properties.settings(context, python=args.python, error_bound=error_bound)
    return retarget(context, source, character, mode, spec, smoothness, frame_range(args.frames, scene), settings)


if __name__ == "__main__":
    batch.main(run)
