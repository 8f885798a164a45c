"""`mimic eval`: lip sync, upper-face dynamics and style disentanglement of a model on a dataset split.

Protocol (the metric definitions are in `metrics`):
- Each sequence of the split is predicted from its own audio by the official windowed demo loop
  (`Generator.stream`), with the style code of *another* sequence of the same subject: the first
  other one of that subject in the split, else the first of that subject in the train split, else
  (a subject with one sequence and no training data) the sequence itself, flagged `self` in the
  per-sequence results. A style code is read, as in the demo, from the last `window` (150)
  frames of the reference's motion (its vertices minus the subject's template).
- The prediction is resampled to the dataset's frame rate when the model's differs, and
  prediction and ground truth are cut to the shorter of the two (CodeTalker cuts the prediction
  to the ground truth; the model may give a frame less when the audio is a little short).
- LVE pools the frames of all sequences; FDD is the mean over sequences, signed as in CodeTalker;
  the mean of |FDD| over sequences is reported too, as sequences of opposite sign cancel.
- Style space, on the sequences of `style_splits` (default: the evaluated split), each read
  from its last `window` frames of ground-truth motion, as the model's training windows are:
  * style ID accuracy: each sequence's subject identified from its style code as the subject
    whose mean code over their *other* sequences is nearest (cosine), so subjects never trained
    on count too; chance is 1 / subjects;
  * identity leakage: a linear probe (logistic regression) fitted on mean_t(content codes) of
    half of each subject's sequences, scored on the other half; near chance means the content
    codes carry no identity. The same probe on the style codes is the contrast;
  * a 2-D map of the style codes (PCA), coloured by subject, as a PNG.
- Style transfer, on data written by `mimic synth` (it has transfer/manifest.json): the LVE of
  speaker A's audio of a held-out text animated in speaker B's style against the rig's ground
  truth, B being A, another training speaker, or a held-out one (`evaluate_transfer`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .errors import MimicError
from .frames import resample
from .generate import Generator
from .model import Mimic
from .regions import Regions
from .report import save_style_map

# ---------------------------------------------------------------------------------- predicting


def predict_motion(generator: Generator, audio: np.ndarray, style: torch.Tensor,
                   fps: float | None = None) -> np.ndarray:
    """Motion (T, V, 3) for 16 kHz audio and a style code by the demo loop, at `fps` (default: the model's)."""
    motion = np.concatenate(list(generator.stream(audio, style)), axis=0)
    model_fps = generator.config.fps
    if fps is not None and fps != model_fps:
        motion = resample(motion, model_fps, fps)
    return motion


def transfer_lve(model: Mimic, audio: np.ndarray, style_reference_motion: np.ndarray, gt_vertices: np.ndarray,
                 template: np.ndarray, lips, *, fps: float | None = None, device: str | torch.device = "cpu") -> float:
    """Style-transfer error: LVE of the model's animation of `audio` in the style of
    `style_reference_motion` ((F, V, 3) vertices minus the reference's neutral; its last `window`
    frames are used) on `template` (V, 3), against `gt_vertices` (T, V, 3) at `fps` (default:
    the model's). Both are cut to the shorter length."""
    generator = Generator(model, torch.device(device))
    code = generator.style_code(np.asarray(style_reference_motion, dtype=np.float32))
    pred = predict_motion(generator, np.asarray(audio, dtype=np.float32), code, fps) + template
    pred, gt = _common_length(pred, np.asarray(gt_vertices))
    return metrics.lve(pred, gt, np.asarray(lips, dtype=np.int64))


def _common_length(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(pred), len(gt))
    return pred[:n], gt[:n]


# ---------------------------------------------------------------------------------- evaluating


def evaluate(model: Mimic, dataset, regions: Regions, split: str = "test", *, style_splits=None,
             device: str | torch.device = "cpu", seed: int = 0, progress: bool = False,
             map_path: str | Path | None = None) -> dict:
    """All metrics of `model` on `dataset.splits[split]` (see the module doc for the protocol).

    Returns a JSON-ready dict (summary numbers, per-sequence rows, style-space numbers) plus
    "codes": numpy arrays of the style codes and mean content codes with their subjects, which
    `write_report` leaves out of the JSON. With `map_path`, the style map PNG is written there.
    """
    config = model.config
    sequences = list(dataset.splits.get(split) or [])
    if not sequences:
        raise MimicError(f"the {dataset.kind} data at {dataset.root} has no sequences in split {split!r} "
                         f"(splits: {', '.join(f'{k} {len(v)}' for k, v in dataset.splits.items())})")
    if dataset.vertex_count != config.vertex_count:
        raise MimicError(f"the {dataset.kind} meshes have {dataset.vertex_count} vertices but the model animates "
                         f"{config.vertex_count}: evaluate a model trained on this dataset's topology")
    regions.check(config.vertex_count)
    style_splits = [split] if style_splits is None else list(style_splits)
    for s in style_splits:
        if s not in dataset.splits:
            raise MimicError(f"unknown split {s!r}; the dataset has {', '.join(dataset.splits)}")
    generator = Generator(model, torch.device(device))
    train = list(dataset.splits.get("train") or [])
    references = [_reference(q, sequences, train) for q in sequences]

    # Style (and content) codes of every sequence needed, each read once.
    needed = _unique(sequences + [r for r, _ in references] +
                     [q for s in style_splits for q in dataset.splits[s]])
    codes = {}
    for q in _bar(needed, progress, "encode"):
        codes[_key(q)] = _codes(generator, dataset, q)

    rows, lip_frames, fdds = [], [], []
    for q, (ref, how) in zip(_bar(sequences, progress, "generate"), references):
        template = dataset.template(q.subject)
        gt = q.vertices()
        pred = predict_motion(generator, q.audio(config.sample_rate), codes[_key(ref)][0], dataset.fps) + template
        pred, gt = _common_length(pred, gt)
        errors = metrics.lip_errors(pred, gt, regions.lips)
        lip_frames.append(errors)
        row = {"subject": q.subject, "name": q.name, "frames": len(gt), "style_reference": f"{ref.subject}/{ref.name}",
               "reference_from": how, "lve": float(errors.mean())}
        if regions.upper_face is not None:
            row["fdd"] = metrics.fdd(pred - template, gt - template, regions.upper_face)
            fdds.append(row["fdd"])
        rows.append(row)
    lip_frames = np.concatenate(lip_frames)

    analysed = [q for s in style_splits for q in dataset.splits[s]]
    analysed = _unique(analysed)
    labels = [q.subject for q in analysed]
    style = np.stack([codes[_key(q)][0].cpu().numpy() for q in analysed])
    content = np.stack([codes[_key(q)][1] for q in analysed])
    id_accuracy, id_scored = metrics.nearest_mean_accuracy(style, labels)
    subjects = sorted(set(labels))
    result = {
        "dataset": {"kind": dataset.kind, "root": str(dataset.root), "split": split, "fps": float(dataset.fps),
                    "sequences": len(sequences), "subjects": len({q.subject for q in sequences}),
                    "frames": len(lip_frames)},
        "model": {"fps": float(config.fps), "vertex_count": config.vertex_count, "window": config.window},
        "regions": {"source": regions.source, "lips": len(regions.lips),
                    "upper_face": None if regions.upper_face is None else len(regions.upper_face)},
        "lve": float(lip_frames.mean()),
        "fdd": float(np.mean(fdds)) if fdds else None,
        "fdd_abs": float(np.mean(np.abs(fdds))) if fdds else None,
        "self_referenced": sum(how == "self" for _, how in references),
        "style": {
            "splits": style_splits, "sequences": len(analysed), "subjects": len(subjects),
            "id_accuracy": _finite(id_accuracy), "id_scored": id_scored,
            "id_chance": 1 / len(subjects),
            "content_probe": _finite_dict(metrics.probe_accuracy(content, labels, seed)),
            "style_probe": _finite_dict(metrics.probe_accuracy(style, labels, seed)),
        },
        "sequences": rows,
        "codes": {"style": style, "content": content, "subjects": labels, "names": [q.name for q in analysed]},
    }
    if has_transfer(dataset):
        result["transfer"] = evaluate_transfer(model, dataset, regions, device=device, progress=progress)
    if map_path is not None:
        result["style"]["map"] = str(save_style_map(style, labels, map_path,
                                                    f"Style codes, {dataset.kind} {'+'.join(style_splits)}"))
    return result


def _reference(q, split: list, train: list) -> tuple:
    """The sequence whose style animates q, and where it came from: "split", "train" or "self"."""
    for pool, how in ((split, "split"), (train, "train")):
        for r in pool:
            if r.subject == q.subject and _key(r) != _key(q):
                return r, how
    return q, "self"


def _key(q) -> tuple:
    return (q.subject, q.name, str(q.vertices_path))


def _unique(sequences: list) -> list:
    seen, out = set(), []
    for q in sequences:
        if _key(q) not in seen:
            seen.add(_key(q))
            out.append(q)
    return out


@torch.no_grad()
def _codes(generator: Generator, dataset, q) -> tuple[torch.Tensor, np.ndarray]:
    """Style code (C,) and mean content code (C,) of a sequence's last `window` frames of motion."""
    motion = (q.vertices() - dataset.template(q.subject)).astype(np.float32)[-generator.config.window:]
    style = generator.style_code(motion)
    x = torch.from_numpy(motion.reshape(1, len(motion), -1)).to(generator.device)
    content = generator.model.content_encoder(x)[0].mean(dim=0).float().cpu().numpy()
    return style, content


def _bar(items: list, enabled: bool, what: str):
    if not enabled:
        return items
    from tqdm import tqdm
    return tqdm(items, desc=what, unit="seq", file=sys.stderr)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _finite_dict(d: dict) -> dict:
    return {k: _finite(v) if isinstance(v, float) else v for k, v in d.items()}


# ------------------------------------------------------------------- style transfer (mimic synth)

TRANSFER_MANIFEST = Path("transfer") / "manifest.json"


def has_transfer(dataset) -> bool:
    """Whether the dataset holds style-transfer ground truth (data written by `mimic synth`)."""
    return (Path(dataset.root) / TRANSFER_MANIFEST).is_file()


def evaluate_transfer(model: Mimic, dataset, regions: Regions, *, device: str | torch.device = "cpu",
                      progress: bool = False) -> dict:
    """Style-transfer error against ground truth on `mimic synth` data: for every entry of
    transfer/manifest.json, speaker A's audio of a held-out text animated on A's template in the
    style of speaker B (the style code of B's first listed reference), and the LVE against the
    rig's animation of A's phones in B's style.

    Groups: `own` (B is A), `seen` (B another training speaker), `heldout` (B a speaker never
    trained on), `other` (seen + heldout). `copy_own` is the same LVE for a perfect model that
    ignores the reference and moves in A's own style: what transferring the style is worth;
    `still` is the LVE of the template standing still: what moving at all is worth."""
    root = Path(dataset.root)
    manifest = json.loads((root / TRANSFER_MANIFEST).read_text())
    step = round(json.loads((root / "synth.json").read_text())["fps"] / dataset.fps)  # 60 fps files
    regions.check(model.config.vertex_count)
    generator = Generator(model, torch.device(device))
    codes, truths, rows = {}, {}, []

    def truth(entry) -> np.ndarray:
        if entry["vertices"] not in truths:
            truths[entry["vertices"]] = _synth_sequence(dataset, step, entry["template"], entry["wav"],
                                                        entry["vertices"]).vertices()
        return truths[entry["vertices"]]

    own = {(e["text_id"], e["audio_speaker"]): e for e in manifest if e["style_speaker"] == e["audio_speaker"]}
    for e in _bar(manifest, progress, "transfer"):
        reference = e["style_references"][0]
        if reference not in codes:
            motion = _synth_sequence(dataset, step, e["style_speaker"], None, reference).vertices() \
                - dataset.template(e["style_speaker"])
            codes[reference] = generator.style_code(motion.astype(np.float32))
        q = _synth_sequence(dataset, step, e["template"], e["wav"], e["vertices"])
        template = dataset.template(e["template"])
        pred, gt = _common_length(predict_motion(generator, q.audio(model.config.sample_rate), codes[reference],
                                                 dataset.fps) + template, truth(e))
        same = e["style_speaker"] == e["audio_speaker"]
        rows.append({"text_id": e["text_id"], "audio_speaker": e["audio_speaker"], "style_speaker": e["style_speaker"],
                     "style_split": e["style_split"], "style_reference": reference,
                     "group": "own" if same else "seen" if e["style_split"] == "train" else "heldout",
                     "frames": len(gt), "lve": metrics.lve(pred, gt, regions.lips),
                     "still": metrics.lve(np.broadcast_to(template, gt.shape), gt, regions.lips),
                     "copy_own": None if same or (e["text_id"], e["audio_speaker"]) not in own else
                     metrics.lve(*_common_length(truth(own[(e["text_id"], e["audio_speaker"])]), gt), regions.lips)})

    def mean(key: str, groups: tuple) -> float | None:
        values = [r[key] for r in rows if r["group"] in groups and r[key] is not None]
        return float(np.mean(values)) if values else None

    groups = {"own": ("own",), "seen": ("seen",), "heldout": ("heldout",), "other": ("seen", "heldout")}
    return {"entries": len(rows),
            "lve": {g: mean("lve", members) for g, members in groups.items()},
            "copy_own": {g: mean("copy_own", members) for g, members in groups.items() if g != "own"},
            "still": {g: mean("still", members) for g, members in groups.items()},
            "rows": rows}


def _synth_sequence(dataset, step: int, subject: str, wav: str | None, vertices: str):
    """A Sequence of a `mimic synth` file, read at the dataset's frame rate (every step-th frame)."""
    from .data import Sequence

    root = Path(dataset.root)
    path = root / vertices
    return Sequence(subject, path.stem, root / wav if wav else path, path, frame_step=step,
                    fps=dataset.fps if wav else None, vertex_count=dataset.vertex_count)


# ------------------------------------------------------------------------------------ reports
