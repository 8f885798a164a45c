"""Batch jobs, one line per shot, the same arguments in both forms:

    blender --command mimic SHOT.blend --target OBJ --strip STRIP STYLE [options] --save OUT.blend
    python -m mimic_blender.batch SHOT.blend --target OBJ --strip STRIP STYLE [options] --save OUT.blend

STYLE is one of --style-object OBJ --style-frames A-B | --style-file FILE | --style NAME (a style
in the .blend's library). Progress goes to stderr; any error is one line and exit code 1.

Many lines of a manifest in one run: `blender --command mimic lines ...` (see mimic_blender/lines.py).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import bpy

from . import job, properties
from .core import compute, session
from .core.character import CharacterInputs
from .core.errors import BackendError, JobError
from .core.settings import Settings


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mimic", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("blend", help="the shot .blend")
    ap.add_argument("--target", required=True, help="name of the head mesh object to animate")
    ap.add_argument("--strip", help="name of the sound strip (default: the active one)")
    style = ap.add_mutually_exclusive_group(required=True)
    style.add_argument("--style-object", help="mesh object whose animation is the reference performance")
    style.add_argument("--style-file", help=".npz (vertices, template) or .npy of offsets")
    style.add_argument("--style", help="a style saved in the .blend's style library")
    ap.add_argument("--style-frames", help="frame range A-B of --style-object (default: the scene's range)")
    add_job_options(ap)
    add_character_options(ap)
    ap.add_argument("--save", required=True, help="where to save the animated .blend")
    return ap


def add_job_options(ap: argparse.ArgumentParser, model: bool = True) -> None:
    """The options batch jobs share: scene, backend, result; with `model`, the model's and the curves'."""
    ap.add_argument("--scene", help="scene name (default: the file's active scene)")
    ap.add_argument("--python", help="backend interpreter (default: the add-on's Preferences)")
    ap.add_argument("--error-bound-mm", type=float, help="largest vertex error of the compact result")
    if not model:
        return
    ap.add_argument("--checkpoint", help="model (default: the add-on's Preferences)")
    ap.add_argument("--device", choices=[d for d, *_ in properties.DEVICES])
    ap.add_argument("--precision", choices=["fp32", "fast", "bf16", "fp16"],
                    help="the audio encoder's arithmetic (default: the add-on's Preferences, else fp32)")
    ap.add_argument("--curves", choices=[c for c, *_ in properties.CURVE_ITEMS],
                    help="weight curves as keyframes, baked samples, or AUTO (samples for long shots)")


def add_character_options(ap: argparse.ArgumentParser, required: bool = False) -> None:
    """Carrying a result onto a character of any topology (see character_from_args)."""
    ap.add_argument("--character", required=required,
                    help="the character mesh to animate (fitted first when the .blend has no fit)")
    ap.add_argument("--character-mode", choices=["dense", "shape-keys"], default="dense",
                    help="dense: shape keys of its own; shape-keys: weights of its existing keys")
    ap.add_argument("--shape-keys", default="arkit", help="arkit, or the key names to solve for (comma-separated)")
    ap.add_argument("--smoothness", type=float, default=CharacterInputs.smoothness,
                    help="penalty on frame-to-frame weight changes (shape-key mode)")


def open_scene(args):
    """Open args.blend; (the context, args.scene or the file's active scene), made current when
    there is a window."""
    if not Path(args.blend).is_file():
        raise JobError(f"no such .blend: {args.blend}")
    blender_call(bpy.ops.wm.open_mainfile, "open", args.blend)
    scene = bpy.data.scenes.get(args.scene) if args.scene else bpy.context.scene
    if scene is None:
        raise JobError(f"no scene named '{args.scene}'")
    context = bpy.context
    if context.window is not None:
        context.window.scene = scene
    return context, scene


def settings_from_args(context, args) -> Settings:
    error_bound = None if args.error_bound_mm is None else args.error_bound_mm / 1000.0
    return properties.settings(context, checkpoint=args.checkpoint and str(Path(args.checkpoint).resolve()),
                               device=args.device, precision=args.precision, python=args.python,
                               error_bound=error_bound, curves=args.curves)


def character_from_args(args):
    """(character, mode, key spec, smoothness) for job.run, or None."""
    if not args.character:
        return None
    character = bpy.data.objects.get(args.character)
    if character is None:
        raise JobError(f"no object named '{args.character}'")
    return character, args.character_mode.upper().replace("-", "_"), args.shape_keys, args.smoothness


def style_from_args(args, scene) -> job.Style:
    if args.style_object:
        source = bpy.data.objects.get(args.style_object)
        if source is None:
            raise JobError(f"no object named '{args.style_object}'")
        if args.style_frames:
            match = re.fullmatch(r"(-?\d+)-(-?\d+)", args.style_frames)
            if not match:
                raise JobError(f"--style-frames must look like 1-150, not '{args.style_frames}'")
            frames = (int(match[1]), int(match[2]))
        else:
            frames = (scene.frame_start, scene.frame_end)
        return job.Style(object=source, frames=frames)
    if args.style_file:
        return job.Style(file=str(Path(args.style_file).resolve()))
    return job.Style(code=library_code(scene, args.style))


def library_code(scene, name: str) -> list[float]:
    """The code of the style `name` in the scene's style library."""
    item = scene.mimic.styles.get(name)
    if item is None:
        names = ", ".join(s.name for s in scene.mimic.styles) or "none"
        raise JobError(f"no style named '{name}' in the library (saved styles: {names})")
    return properties.style_code(item)


def blender_call(operator, verb: str, path: str) -> None:
    """Open or save a .blend; Blender's complaint (a RuntimeError) becomes a JobError."""
    try:
        operator(filepath=str(Path(path).resolve()))
    except RuntimeError as e:
        raise JobError(f"cannot {verb} {path}: {str(e).removeprefix('Error: ').strip()}") from None


def run(argv: list[str]) -> int:
    return save_after(parser().parse_args(argv), animate_shot)


def animate_shot(args, context, scene) -> str:
    target = bpy.data.objects.get(args.target)
    if target is None:
        raise JobError(f"no object named '{args.target}'")
    settings = settings_from_args(context, args)
    strip = job.find_strip(scene, args.strip)
    return job.run(context, target, strip, style_from_args(args, scene), settings,
                   on_progress=compute.print_progress, character=character_from_args(args))


def save_after(args, work) -> int:
    """Open args.blend, `work(args, context, scene)` -> its summary, save args.save; the exit code,
    and on error one line. The backend is stopped whatever happens."""
    try:
        if not Path(args.save).resolve().parent.is_dir():
            raise JobError(f"folder for --save does not exist: {Path(args.save).parent}")
        context, scene = open_scene(args)
        done = work(args, context, scene)
        blender_call(bpy.ops.wm.save_as_mainfile, "save", args.save)
    except (JobError, BackendError) as e:
        print(f"mimic: error: {e}", file=sys.stderr)
        return 1
    finally:
        session.stop()
    print(f"mimic: saved {args.save}: {done}", file=sys.stderr)
    return 0


def cli_command(argv: list[str]) -> int:
    """`blender --command mimic ...` (registered by the add-on): one shot, `lines ...` or `retarget ...`."""
    if argv[:1] == ["lines"]:
        from . import lines  # it imports this module

        return lines.run(argv[1:])
    if argv[:1] == ["retarget"]:
        from . import retarget

        return retarget.run(argv[1:])
    return run(argv)


def main(command) -> None:
    """`python -m mimic_blender.<module>` (Blender as a Python module): command(sys.argv[1:]) with
    the add-on registered for it, then exit with its status."""
    import mimic_blender

    # Blender as a module crashes on exit (SIGSEGV, not our exit code) while the add-on is registered.
    needs_register = not hasattr(bpy.types.Scene, "mimic")
    if needs_register:
        mimic_blender.register()
    try:
        status = command(sys.argv[1:])
    finally:
        if needs_register:
            mimic_blender.unregister()
    sys.exit(status)


if __name__ == "__main__":
    main(run)
