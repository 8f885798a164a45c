"""The `mimic` command. Results go to files, messages to stderr; a bad input is one line and a
non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import MimicError
from .protocol import FP32, PRECISIONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mimic", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    g = commands.add_parser("generate", help="speech + style reference -> vertex animation (.npy)")
    g.add_argument("--checkpoint", required=True, help="official Mimic .pth or a converted model folder")
    g.add_argument("--audio", required=True, help="speech: any file soundfile reads, any rate and channels")
    g.add_argument("--style", required=True, help="reference animation .npy, (F, V, 3) absolute vertices; its last "
                                                  "`window` (150) frames are used")
    g.add_argument("--template", required=True, help="neutral head .npy (V, 3) to animate")
    g.add_argument("--style-template", help="the reference performer's neutral (V, 3); default: --template")
    g.add_argument("--out", required=True, help="output .npy, (T, V, 3) absolute vertices")
    g.add_argument("--fps", type=float, help="resample the output to this frame rate (default: the model's)")
    g.add_argument("--offsets", action="store_true", help="write motion (vertices minus template) instead")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    g.add_argument("--precision", default=FP32, choices=PRECISIONS,
                   help="arithmetic of the audio encoder: fp32 (default, the official network's), bf16 (CPUs with "
                        "bf16 instructions, GPUs), fp16 (CUDA), fast (the fastest the device supports)")
    g.set_defaults(run=run_generate)

    c = commands.add_parser("convert", help="official .pth -> model folder (config.json + model.safetensors)")
    c.add_argument("checkpoint")
    c.add_argument("out_dir")
    c.set_defaults(run=run_convert)

    e = commands.add_parser("eval", help="LVE, FDD and style-space metrics of a model on a dataset split")
    e.add_argument("--checkpoint", required=True, help="official Mimic .pth or a converted model folder")
    e.add_argument("--data", required=True, help="dataset root folder")
    e.add_argument("--kind", required=True, choices=["vocaset", "biwi", "hdtf"], help="dataset layout")
    e.add_argument("--regions", required=True, help="vertex sets: JSON {\"lips\": [...], \"upper_face\": [...]}, "
                                                    "or CodeTalker's lve.txt (+ fdd.txt beside it) or their folder")
    e.add_argument("--split", default="test", help="split to evaluate (default: test)")
    e.add_argument("--style-splits", help="comma-separated splits for the style-space metrics (default: --split)")
    e.add_argument("--out", help="folder for results.md, results.json, style_map.png (default: eval-KIND-SPLIT)")
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    e.set_defaults(run=run_eval)

    t = commands.add_parser("train", help="train a network on a dataset (YAML config; several GPUs with torchrun)")
    t.add_argument("--config", help="training config .yaml (every key: configs/train_vocaset.yaml)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue this run folder from its last checkpoint (with "
                                                      "its own config, or --config for new training settings)")
    t.set_defaults(run=run_train)

    y = commands.add_parser("synth", help="write a synthetic multi-speaker dataset (VOCASET layout) with known "
                                          "speaking styles and style-transfer ground truth")
    y.add_argument("--out", required=True, help="dataset folder to create (must not exist, or be empty)")
    y.add_argument("--speakers", type=int, default=10, help="subjects, split train/val/test (default: 10)")
    y.add_argument("--sentences-per-speaker", type=int, default=20, help="sentences each subject reads (default: 20)")
    y.add_argument("--vertices", type=int, default=1500, help="about this many head vertices (default: 1500)")
    y.add_argument("--seed", type=int, default=0, help="the same seed writes the same dataset (default: 0)")
    y.add_argument("--voices", default="both", choices=["espeak", "librivox", "both"],
                   help="synthetic espeak-ng voices, the LibriVox clips of pocketsphinx-testdata, or both")
    y.set_defaults(run=run_synth)

    s = commands.add_parser("serve", help="the backend process of the Blender add-on (JSON lines on stdin/stdout)")
    s.set_defaults(run=lambda args: __import__("mimic.service").service.serve())

    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except MimicError as e:
        print(f"mimic {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mimic {args.command}: interrupted; nothing written", file=sys.stderr)
        return 130


def run_generate(args) -> None:
    from tqdm import tqdm

    from .checkpoint import load_model
    from .files import atomic_npy, load_audio, load_vertices
    from .frames import resample, resample_count
    from .generate import Generator, pick_device
    from .memory import keep_freed_memory
    from .precision import pick_precision

    keep_freed_memory()
    started = time.perf_counter()
    if args.fps is not None and not 0 < args.fps < float("inf"):
        raise MimicError("--fps must be a positive number")
    device = pick_device(args.device)
    pick_precision(args.precision, device)  # an unsupported choice fails before the slow load
    generator = Generator(load_model(args.checkpoint), device, precision=args.precision)
    config = generator.config
    template = load_vertices(args.template, "template", config.vertex_count, frames=False)
    style = load_vertices(args.style, "style", config.vertex_count, frames=True)
    neutral = load_vertices(args.style_template, "style template", config.vertex_count, frames=False) \
        if args.style_template else template
    audio = load_audio(args.audio, config.sample_rate)
    frames = generator.frame_count(len(audio))
    if frames == 0:
        raise MimicError(f"audio {args.audio} is shorter than one frame ({1000 / config.fps:.0f} ms)")
    fps = args.fps or config.fps
    base = np.zeros_like(template) if args.offsets else template
    code = generator.style_code(style - neutral)

    with atomic_npy(args.out, (resample_count(frames, config.fps, fps), config.vertex_count, 3)) as out, \
            tempfile.TemporaryDirectory(dir=Path(args.out).parent) as scratch:
        native = out if fps == config.fps else \
            np.lib.format.open_memmap(Path(scratch) / "native.npy", "w+", np.float32, (frames,) + out.shape[1:])
        with tqdm(total=frames, unit="frame", disable=frames <= config.window, file=sys.stderr) as bar:
            def progress(stage: str, done: int, total: int) -> None:
                if getattr(bar, "desc", None) != stage:  # a disabled bar (a short clip) has no desc
                    bar.set_description_str(stage, refresh=False)
                    bar.reset(total)
                bar.update(done - bar.n)

            done = 0
            for chunk in generator.stream(audio, code, progress):
                native[done:done + len(chunk)] = chunk + base
                done += len(chunk)
        if native is not out:
            resample(native, config.fps, fps, out)
    print(f"wrote {args.out}: {len(out)} frames at {fps:g} fps, {config.vertex_count} vertices "
          f"({time.perf_counter() - started:.1f} s on {generator.device}, {generator.precision})", file=sys.stderr)


def run_convert(args) -> None:
    from .checkpoint import load_model, save_model

    model = load_model(args.checkpoint)
    save_model(model, args.out_dir)
    c = model.config
    print(f"wrote {args.out_dir}: {c.vertex_count} vertices, {c.fps:g} fps, alignment {c.alignment}, "
          f"audio {c.audio_model['model_type']}", file=sys.stderr)


def run_eval(args) -> None:
    from .regions import load_regions

    started = time.perf_counter()
    regions = load_regions(args.regions)  # before the slow imports: a typo fails at once

    from .checkpoint import load_model
    from .data import open_dataset
    from .evaluate import evaluate
    from .generate import pick_device
    from .report import format_table, write_report

    device = pick_device(args.device)
    out = Path(args.out or f"eval-{args.kind}-{args.split}")
    dataset = open_dataset(args.kind, args.data)
    model = load_model(args.checkpoint)
    style_splits = [s.strip() for s in args.style_splits.split(",") if s.strip()] if args.style_splits else None
    result = evaluate(model, dataset, regions, args.split, style_splits=style_splits, device=device,
                      progress=True, map_path=out / "style_map.png")
    md, js = write_report(result, out)
    print(format_table(result), end="")
    print(f"wrote {md}, {js} and {result['style']['map']} ({time.perf_counter() - started:.1f} s on {device})",
          file=sys.stderr)


def run_train(args) -> int | None:
    from .train import TrainingInterrupted, run

    try:
        run(args.config, args.resume)
    except TrainingInterrupted:  # the checkpoint it saved is already reported
        return 130


def run_synth(args) -> None:
    from .synth.dataset import SynthConfig, write_dataset

    started = time.perf_counter()
    config = SynthConfig(speakers=args.speakers, sentences_per_speaker=args.sentences_per_speaker,
                         vertices=args.vertices, seed=args.seed, voices=args.voices)
    summary = write_dataset(args.out, config)
    print(f"wrote {args.out}: {summary['files']} sequences of {config.speakers} subjects, {summary['transfer']} "
          f"style-transfer ground truths, {summary['vertex_count']} vertices at {summary['fps']:g} fps "
          f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
