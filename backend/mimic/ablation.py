"""The ablation of docs/RESULTS.md: what each of Mimic's four constraints is worth, measured on
data with ground truth for style transfer.

    python -m mimic.ablation [--data data/synth] [--out runs/ablation] [--steps 400] [--seeds 0,1]
                             [--report FILE.md]

`make results [SEEDS=0,1]` runs it and writes docs/RESULTS.md (about 20 min a seed on 2 CPU cores). Steps:
1. the synthetic benchmark (`mimic synth`, SYNTH below) unless --data already holds it;
2. every variant of VARIANTS trained by `mimic train` with the network and training settings of
   --config (configs/synth_demo.yaml), for --steps steps each, once per seed (every variant of a
   seed starts from the same initial weights and sees the same windows);
3. each evaluated by `mimic eval`'s protocol (`mimic.evaluate.evaluate`): LVE on the test
   speakers, the style-space metrics on the val + test speakers (never trained on), and style
   transfer on held-out texts against the rig's ground truth;
4. the report: one table, the comparisons the paper's claim rests on, and the setup.
A variant already done with the same settings (its ablation.json) is not run again, so an
interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from .errors import MimicError

SYNTH = dict(speakers=14, sentences_per_speaker=20, vertices=600, seed=0)
CONSTRAINTS = ("style_classifier", "inverse_classifier", "content_clip", "style_cycle", "content_cycle")


@dataclass(frozen=True)
class Variant:
    name: str
    off: tuple[str, ...]  # loss terms switched off
    note: str  # what it is, for the report
    style_input: bool = True

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-")


VARIANTS = (
    Variant("full", (), note="both reconstructions + all four constraints (the paper's model)"),
    Variant("reconstruction only", CONSTRAINTS, note="no constraint: the two reconstructions alone"),
    Variant("no style classifier", ("style_classifier",), note="one constraint removed"),
    Variant("no inverse classifier", ("inverse_classifier",),
            note="one constraint removed (with its gradient reversal)"),
    Variant("no content contrastive", ("content_clip",), note="one constraint removed"),
    Variant("no cycle losses", ("style_cycle", "content_cycle"), note="one constraint removed: the pair of latent "
                                                                       "cycle losses"),
    Variant("no style", CONSTRAINTS, note="baseline: the decoder sees a zero style code; reconstructions only",
            style_input=False),
)


def variant_config(base: dict, variant: Variant, data: Path, out: Path, steps: int, seed: int) -> dict:
    """The training config of one variant: `base` with its terms off, its seed, folder and step count."""
    config = copy.deepcopy(base)
    config["output"] = str(out / f"seed-{seed}" / variant.slug)
    config["seed"] = seed
    config["data"] = {**config.get("data", {}), "kind": "vocaset", "root": str(data)}
    config.setdefault("training", {})["max_steps"] = steps
    config["losses"] = {**config.get("losses", {}), **{term: {"enabled": False} for term in variant.off}}
    if not variant.style_input:
        config.setdefault("model", {})["style_input"] = False
    return config


def run_variant(variant: Variant, config: dict, dataset, regions, device: torch.device) -> dict:
    """Train (unless done) and evaluate one variant; returns and saves its ablation.json."""
    from .checkpoint import load_model
    from .evaluate import evaluate
    from .report import write_report
    from .train import run as train

    folder = Path(config["output"])
    record_file = folder / "ablation.json"
    if record_file.is_file():
        record = json.loads(record_file.read_text())
        if record.get("config") == config:
            print(f"ablation: {variant.name}: done before, {record_file}", file=sys.stderr)
            return record
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    config_file = folder.with_suffix(".yaml")
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"ablation: {variant.name}: training ({', '.join(variant.off) or 'every term'} "
          f"{'off' if variant.off else 'on'}{'' if variant.style_input else ', no style input'})", file=sys.stderr)
    started = time.perf_counter()
    last = train(str(config_file), None, dataset)
    trained = time.perf_counter()
    result = evaluate(load_model(last), dataset, regions, "test", style_splits=["val", "test"], device=device,
                      progress=True, map_path=folder / "style_map.png")
    write_report(result, folder / "eval")
    record = {"variant": variant.name, "config": config, "train_seconds": trained - started,
              "eval_seconds": time.perf_counter() - trained,
              "result": {k: v for k, v in result.items() if k not in ("codes", "sequences")}}
    record["result"]["transfer"] = {k: v for k, v in result["transfer"].items() if k != "rows"}
    record_file.write_text(json.dumps(record, indent=1))
    return record


# ------------------------------------------------------------------------------------- report


COLUMNS = (  # (header, path into a record's result, format)
    ("transfer LVE, B held out", ("transfer", "lve", "heldout"), "mm2"),
    ("transfer LVE, B seen", ("transfer", "lve", "seen"), "mm2"),
    ("transfer LVE, all B ≠ A", ("transfer", "lve", "other"), "mm2"),
    ("LVE, own style", ("transfer", "lve", "own"), "mm2"),
    ("LVE, test speakers", ("lve",), "mm2"),
    ("style ID accuracy", ("style", "id_accuracy"), "acc"),
    ("content identity probe", ("style", "content_probe", "accuracy"), "acc"),
    ("style identity probe", ("style", "style_probe", "accuracy"), "acc"),
)
TRANSFER = ("transfer", "lve", "other")  # the style-transfer error the comparisons use


def _value(record: dict, path: tuple) -> float | None:
    value = record["result"]
    for key in path:
        value = value[key]
    return value


def _mean(runs: dict, name: str, path: tuple) -> float | None:
    """The mean over seeds of one number of variant `name` (None when a seed has none)."""
    values = [_value(records[name], path) for records in runs.values()]
    return None if any(v is None for v in values) else sum(values) / len(values)


def _fmt(x, kind: str) -> str:
    if x is None:
        return "n/a"
    return f"{x * 1e6:.2f}" if kind == "mm2" else f"{x:.2f}"  # LVE in mm^2: the data is in metres


def _compare(runs: dict, a: str, b: str) -> str:
    x, y = _mean(runs, a, TRANSFER), _mean(runs, b, TRANSFER)
    signs = {_value(records[a], TRANSFER) < _value(records[b], TRANSFER) for records in runs.values()}
    verdict = "lower (better)" if x < y else "higher (worse)"
    agree = "" if len(runs) == 1 else " — the same in every seed" if len(signs) == 1 else \
        " — but not in every seed"
    return f"{a} {_fmt(x, 'mm2')} vs {b} {_fmt(y, 'mm2')} mm²: {abs(x - y) / y:.1%} {verdict}{agree}"


def report(runs: dict, synth: dict, base: dict, steps: int, minutes: float, command: str) -> str:
    """runs: seed -> variant name -> record."""
    seeds = list(runs)
    first = next(iter(runs[seeds[0]].values()))["result"]
    names = list(runs[seeds[0]])
    style, transfer = first["style"], first["transfer"]
    over = "" if len(seeds) == 1 else f", means over seeds {', '.join(map(str, seeds))}"
    lines = [
        "# Results: the ablation on the synthetic style benchmark",
        "",
        f"Made by `{command}`: {minutes:.1f} min of training and evaluation on {torch.get_num_threads()} CPU threads "
        f"({platform.machine()}, PyTorch {torch.__version__}); the code is `backend/mimic/ablation.py`.",
        "",
        "Each variant is the same small network trained from the same seed for the same number of steps; only the",
        "loss terms differ. Lower LVE is better; LVE is in mm² (the maximum over lip vertices of the squared",
        "error, averaged over frames). Style-transfer columns animate a held-out text spoken by speaker A in the",
        "style of another speaker B and compare with the rig's animation of A's phones in B's style.",
        "",
        f"| variant{over} | " + " | ".join(header for header, _, _ in COLUMNS) + " |",
        "| --- " * (len(COLUMNS) + 1) + "|",
    ]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(_fmt(_mean(runs, name, path), kind) for _, path, kind in COLUMNS)
                     + " |")
    c, still = transfer["copy_own"], transfer["still"]
    lines += [
        f"| *reference: perfect motion in A's own style* | {_fmt(c['heldout'], 'mm2')} | {_fmt(c['seen'], 'mm2')} "
        f"| {_fmt(c['other'], 'mm2')} | 0 | | | | |",
        f"| *reference: the head standing still* | {_fmt(still['heldout'], 'mm2')} | {_fmt(still['seen'], 'mm2')} "
        f"| {_fmt(still['other'], 'mm2')} | {_fmt(still['own'], 'mm2')} | | | | |",
        "",
        f"Chance is {style['id_chance']:.2f} for style ID ({style['subjects']} speakers never trained on, "
        f"{style['sequences']} sequences, nearest mean style code, leave one out) and "
        f"{_fmt(style['content_probe']['chance'], 'acc')} for the identity probes (logistic regression on the "
        "mean content / style code, half of each speaker's sequences to fit, half to score); a content probe "
        "near chance means the content codes carry no identity.",
        "",
        "## What the claim rests on",
        "",
        "Style-transfer LVE, all B ≠ A:",
        "",
    ]
    for name in names:
        if name in ("reconstruction only", "no style"):
            lines.append(f"- The full model against {name}: {_compare(runs, 'full', name)}.")
        elif name != "full":
            lines.append(f"- Removing one constraint: {_compare(runs, name, 'full')}.")
    if len(seeds) > 1:
        lines += ["", "Per seed (style-transfer LVE, all B ≠ A, mm²):", "",
                  "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " |", "| --- " * (len(seeds) + 1) + "|"]
        for name in names:
            lines.append(f"| {name} | " + " | ".join(_fmt(_value(runs[s][name], TRANSFER), "mm2") for s in seeds)
                         + " |")
    lines += [
        "",
        "## Setup",
        "",
        f"- Data: `mimic synth` with {', '.join(f'{k}={v}' for k, v in synth['config'].items())}: "
        f"{synth['files']} sequences, {synth['vertex_count']} vertices, {synth['transfer']} style-transfer ground "
        f"truths of {synth['heldout_texts']} held-out texts (never read by a training speaker).",
        f"- Network and training: `{base['__file__']}` (model {json.dumps(base.get('model', {}))}), "
        f"{steps} steps of batch {base['training'].get('batch_size', 6)}, window {base['training'].get('window', 150)} "
        f"frames, lr {base['training'].get('lr', 1e-4)}, seed {', '.join(map(str, seeds))}, official loss weights.",
        f"- Evaluation: `mimic eval` on the test speakers; {transfer['entries']} transfer entries; the style reference "
        "is one other sentence of the style's speaker (its last 150 frames).",
        "",
        "| variant | what | switched off | "
        + " | ".join(f"train s, seed {s} | eval s, seed {s}" for s in seeds) + " |",
        "| --- | --- | --- " + "| --- | --- " * len(seeds) + "|",
    ]
    for v in VARIANTS:
        if v.name in names:
            off = ", ".join(v.off) + ("" if v.style_input else "; style_input false")
            times = " | ".join(f"{runs[s][v.name]['train_seconds']:.0f} | {runs[s][v.name]['eval_seconds']:.0f}"
                               for s in seeds)
            lines.append(f"| {v.name} | {v.note} | {off or '—'} | {times} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mimic.ablation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/synth_demo.yaml", help="network and training settings")
    parser.add_argument("--data", default="data/synth", help="synthetic benchmark folder (written if missing)")
    parser.add_argument("--out", default="runs/ablation", help="run folders of the variants")
    parser.add_argument("--steps", type=int, default=400, help="training steps of each variant (default: 400)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; each trains every variant again "
                                                     "(default: 0; about 20 min a seed on 2 CPU cores)")
    parser.add_argument("--only", help="comma-separated variants to run, by folder name (default: all: "
                                       f"{', '.join(v.slug for v in VARIANTS)}); the report needs full")
    parser.add_argument("--report", help="the report (default: OUT/RESULTS.md)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    args = parser.parse_args(argv)
    try:
        run(args, " ".join(["python -m mimic.ablation", *(argv if argv is not None else sys.argv[1:])]))
    except MimicError as e:
        print(f"ablation: error: {e}", file=sys.stderr)
        return 1
    return 0


def run(args, command: str) -> None:
    from .data import open_dataset
    from .generate import pick_device
    from .regions import load_regions
    from .synth.dataset import SynthConfig, write_dataset

    started = time.perf_counter()
    if args.steps < 1:
        raise MimicError("--steps must be at least 1")
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise MimicError(f"--seeds must be comma-separated integers, not {args.seeds!r}") from None
    if not seeds:
        raise MimicError("--seeds names no seed")
    variants = VARIANTS
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = sorted(set(wanted) - {v.slug for v in VARIANTS})
        if unknown or "full" not in wanted:
            raise MimicError(f"--only must name full and any of {', '.join(v.slug for v in VARIANTS[1:])}"
                             + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        variants = tuple(v for v in VARIANTS if v.slug in wanted)
    base = yaml.safe_load(Path(args.config).read_text())
    data, out = Path(args.data), Path(args.out)
    if not (data / "synth.json").is_file():
        print(f"ablation: writing the benchmark to {data}", file=sys.stderr)
        write_dataset(data, SynthConfig(**SYNTH))
    synth = json.loads((data / "synth.json").read_text())
    dataset = open_dataset("vocaset", data)
    regions = load_regions(data / "regions.json")
    device = pick_device(args.device)
    runs = {}
    for seed in seeds:
        for variant in variants:
            config = variant_config(base, variant, data.resolve(), out.resolve(), args.steps, seed)
            config["training"]["device"] = device.type
            runs.setdefault(seed, {})[variant.name] = run_variant(variant, config, dataset, regions, device)
    compute = sum(r["train_seconds"] + r["eval_seconds"] for records in runs.values() for r in records.values()) / 60
    text = report(runs, synth, {**base, "__file__": args.config}, args.steps, compute, command)
    path = Path(args.report or out / "RESULTS.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text, end="")
    print(f"ablation: wrote {path} ({(time.perf_counter() - started) / 60:.1f} min)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
