"""`mimic eval`'s report of an `evaluate` result: results.md (a summary table, then one row per
sequence), results.json, and the PNG map of the style codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import metrics
from .errors import MimicError


def save_style_map(codes: np.ndarray, labels, path: str | Path, title: str = "Style codes") -> Path:
    """A PNG scatter of the codes on their first two principal axes, one colour per subject."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MimicError("the style map needs matplotlib: pip install 'mimic[eval]' (or matplotlib)") from None

    path = Path(path)
    points, explained = metrics.pca_2d(codes)
    labels = np.asarray(labels)
    subjects = sorted(set(labels.tolist()))
    figure = Figure(figsize=(6.4, 5.2), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    cmap = matplotlib.colormaps["tab20" if len(subjects) > 10 else "tab10"]
    for i, s in enumerate(subjects):
        mask = labels == s
        ax.scatter(points[mask, 0], points[mask, 1], s=22, color=cmap(i % cmap.N), label=s,
                   marker="os^Dv"[(i // cmap.N) % 5], alpha=0.85, edgecolors="none")
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
    ax.set_title(title)
    if len(subjects) <= 30:
        ax.legend(fontsize=6, markerscale=0.8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def format_table(result: dict) -> str:
    """The results as Markdown: a summary table, then one row per sequence."""
    d, st = result["dataset"], result["style"]
    cp, sp = st["content_probe"], st["style_probe"]

    def num(x, fmt="{:.4e}"):
        return "n/a" if x is None else fmt.format(x)

    lines = [
        (f"## Mimic evaluation: {d['kind']} {d['split']} ({d['sequences']} sequences, {d['subjects']} subjects, "
         f"{d['frames']} frames at {d['fps']:g} fps)"),
        "",
        "| metric | value | definition |",
        "| --- | --- | --- |",
        (f"| LVE | {num(result['lve'])} | max over {result['regions']['lips']} lip vertices of the squared L2 error, "
         f"mean over all frames (data units squared) |"),
        (f"| FDD | {num(result['fdd'])} | upper-face dynamics (std over time of the squared motion norm) of "
         f"ground truth minus prediction, mean over sequences (CodeTalker) |"),
        f"| mean abs FDD | {num(result['fdd_abs'])} | the same, absolute value per sequence |",
        (f"| style ID accuracy | {num(st['id_accuracy'], '{:.3f}')} | nearest subject mean style code (cosine), "
         f"leave one out, {st['id_scored']} sequences, {st['subjects']} subjects; chance {st['id_chance']:.3f} |"),
        (f"| content identity probe | {num(cp['accuracy'], '{:.3f}')} | logistic regression on mean content codes, "
         f"{cp['train']} train / {cp['test']} test sequences; "
         f"chance {num(cp['chance'], '{:.3f}')} (lower is better) |"),
        f"| style identity probe | {num(sp['accuracy'], '{:.3f}')} | the same probe on style codes |",
    ]
    if result["self_referenced"]:
        lines.append(f"\n{result['self_referenced']} sequence(s) had no other sequence of their subject and took "
                     "their own style reference.")
    if "transfer" in result:
        tr = result["transfer"]
        lines += ["",
                  f"### Style transfer against the rig's ground truth ({tr['entries']} held-out texts x styles)", "",
                  "| style of | LVE | a perfect model that keeps the audio speaker's own style "
                  "| the head standing still |",
                  "| --- | --- | --- | --- |"]
        for group, what in (("own", "the audio's own speaker"), ("seen", "another training speaker"),
                            ("heldout", "a held-out speaker"), ("other", "another speaker (seen + held-out)")):
            lines.append(f"| {what} | {num(tr['lve'][group])} | {num(tr['copy_own'].get(group))} "
                         f"| {num(tr['still'][group])} |")
    lines += ["", "| subject | sequence | frames | style from | LVE | FDD |", "| --- | --- | --- | --- | --- | --- |"]
    for r in result["sequences"]:
        lines.append(f"| {r['subject']} | {r['name']} | {r['frames']} | {r['style_reference']} ({r['reference_from']}) "
                     f"| {num(r['lve'])} | {num(r.get('fdd'))} |")
    return "\n".join(lines) + "\n"


def write_report(result: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """results.md and results.json in out_dir (the JSON without the code arrays)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "results.md", out_dir / "results.json"
    md.write_text(format_table(result))
    js.write_text(json.dumps({k: v for k, v in result.items() if k != "codes"}, indent=1, allow_nan=False))
    return md, js
