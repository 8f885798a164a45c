"""Benchmark: writing a long Mimic result into Blender (real bpy).

    .venv/bin/python -m benchmarks.blender_write      (from the repository root)

A synthetic performance stands in for the decoder's output: a 5023-vertex head (points on a
sphere of radius 0.1 m) and 18,000 frames (10 minutes at 30 fps) of motion living in a
128-dimensional affine subspace, motion = H @ W.T + b (smooth random latents H with a decaying
spectrum, smooth random vertex fields W, offsets of a few millimetres). The backend's
compression (mimic.compress.Subspace) turns it into mean + K basis shapes + K weight tracks;
scene_io.write_result writes them as shape keys + one Action (baked to samples, as the add-on's
Weight Curves: Auto does for a result this long; keyframes shown as an option). Its write time, the growth of the
saved .blend and the largest per-vertex error (evaluated through the depsgraph) are compared,
in the same run, with writing one shape key per frame (keyed 0/1/0 with the same bulk
keyframe_points.add + foreach_set method). Exits 1 when a target (write <= 3 s, .blend growth
<= 20 MB, every checked vertex within 1e-4 m) is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np

from mimic.compress import Subspace
from mimic_blender import scene_io
from mimic_blender.core import mapping
from mimic_blender.core.settings import sampled as baked

VERTICES = 5023
LATENT = 128
RADIUS = 0.1  # metres
BOUND = 1e-4  # metres: every vertex of every frame within this of the exact motion
FLOAT_SLACK = 1e-6  # float32 arithmetic in Blender's shape-key mix (values ~0.1 m)


# ------------------------------------------------------------------------- synthetic performance


def head_points(n: int) -> np.ndarray:
    """(n, 3) points spread evenly over a sphere (Fibonacci lattice), slightly squashed like a head."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (1 + 5 ** 0.5) * i
    return (RADIUS * np.column_stack([0.85 * r * np.cos(phi), r * np.sin(phi), 1.1 * z])).astype(np.float32)


def smooth_fields(points: np.ndarray, count: int, rng, bumps: int = 6) -> np.ndarray:
    """(3V, count) random smooth displacement fields: sums of Gaussian bumps with random
    directions, each field scaled to a largest vertex displacement of 1."""
    v = len(points)
    fields = np.zeros((count, v, 3))
    for j in range(count):
        centres = points[rng.integers(0, v, bumps)]
        widths = rng.uniform(0.02, 0.05, bumps)
        directions = rng.standard_normal((bumps, 3))
        d2 = ((points[:, None, :] - centres[None]) ** 2).sum(axis=2)  # (V, bumps)
        fields[j] = np.exp(-d2 / (2 * widths ** 2)) @ directions
        fields[j] /= np.linalg.norm(fields[j], axis=1).max()
    return fields.reshape(count, -1).T.astype(np.float32)


def smooth_latents(frames: int, dims: int, rng, smoothing: float = 3.0, decay: float = 12.0,
                   amplitude: float = 1.5e-3) -> np.ndarray:
    """(frames, dims) Gaussian-smoothed noise (std `smoothing` frames), column j with std
    amplitude * exp(-j / decay): a decaying spectrum, like a decoder's latent motion."""
    noise = rng.standard_normal((frames, dims))
    freq = np.fft.rfftfreq(frames)
    kernel = np.exp(-0.5 * (2 * np.pi * freq * smoothing) ** 2)
    h = np.fft.irfft(np.fft.rfft(noise, axis=0) * kernel[:, None], n=frames, axis=0)
    h /= h.std(axis=0)
    return (h * amplitude * np.exp(-np.arange(dims) / decay)).astype(np.float32)


class Performance:
    """motion(t) = H[t] @ W.T + b, as (V, 3) offsets from the rest shape."""

    def __init__(self, frames: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.rest = head_points(VERTICES)
        self.w = smooth_fields(self.rest, LATENT, rng)  # (3V, C)
        self.b = (1e-3 * smooth_fields(self.rest, 1, rng)[:, 0]).astype(np.float32)  # (3V,)
        self.h = smooth_latents(frames, LATENT, rng)  # (T, C)

    def motion(self, rows) -> np.ndarray:  # exact offsets, float64, (len(rows), V, 3)
        h = self.h[rows].astype(np.float64)
        return (h @ self.w.T.astype(np.float64) + self.b).reshape(len(h), VERTICES, 3)


# --------------------------------------------------------------------------------- Blender side


def fresh_head(rest: np.ndarray):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    mesh = bpy.data.meshes.new("Head")
    mesh.vertices.add(len(rest))
    mesh.vertices.foreach_set("co", rest.ravel())
    mesh.update()
    obj = bpy.data.objects.new("Head", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def saved_size(path: Path, compress: bool = False) -> int:
    bpy.ops.wm.save_as_mainfile(filepath=str(path), check_existing=False, compress=compress, copy=True)
    size = path.stat().st_size
    path.unlink()
    return size


def max_error(obj, perf: Performance, frames: list[int], first_frame: int, count: int) -> float:
    """Largest per-vertex distance between the depsgraph's vertices and rest + exact motion
    (frames first_frame .. first_frame + count - 1; the rest shape outside them)."""
    scene = bpy.context.scene
    worst = 0.0
    for frame in frames:
        scene.frame_set(frame)
        evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        mesh = evaluated.to_mesh()
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        evaluated.to_mesh_clear()
        exact = perf.rest.astype(np.float64)
        if 0 <= frame - first_frame < count:
            exact = exact + perf.motion([frame - first_frame])[0]
        worst = max(worst, float(np.linalg.norm(co.reshape(-1, 3) - exact, axis=1).max()))
    return worst


def sample_frames(first: int, count: int, samples: int) -> list[int]:
    """`samples` frames spread over the range, first and last included, and the frames just
    before and after it (where the result must give back the rest shape)."""
    inside = {first + int(round(x)) for x in np.linspace(0, count - 1, samples)}
    return sorted(inside | {first - 1, first + count})


def write_per_frame_keys(obj, exact: np.ndarray, first_frame: int) -> tuple[float, float]:
    """The baseline: one shape key per frame holding that frame's vertices, keyed 0/1/0 around
    its frame, keyframes written in bulk. Returns the seconds its first and second halves of
    shape keys took (a linearity check); the caller times the whole."""
    obj.shape_key_add(name="Basis", from_mix=False)
    names = []
    marks = [time.perf_counter()]
    for i, vertices in enumerate(exact):
        if i == len(exact) // 2:
            marks.append(time.perf_counter())
        block = obj.shape_key_add(name=f"Frame.{i:05d}", from_mix=False)
        block.data.foreach_set("co", vertices.ravel())
        names.append(block.name)
    marks.append(time.perf_counter())
    keys = obj.data.shape_keys
    action = bpy.data.actions.new(name="Per-frame keys")
    curves = scene_io.new_fcurves(action, keys, [f'key_blocks["{n}"].value' for n in names])
    for i, curve in enumerate(curves):
        frame = first_frame + i
        points = curve.keyframe_points
        points.add(3)
        points.foreach_set("co", np.array([frame - 1, 0, frame, 1, frame + 1, 0], dtype=np.float32))
        points.foreach_set("interpolation", np.full(3, scene_io.LINEAR, dtype=np.int32))
        curve.update()
    return marks[1] - marks[0], marks[2] - marks[1]


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=18_000)
    parser.add_argument("--baseline-frames", type=int, default=18_000,
                        help="frames the one-key-per-frame baseline really writes (then extrapolated to --frames)")
    parser.add_argument("--samples", type=int, default=50, help="frames at which the depsgraph is checked")
    args = parser.parse_args()
    first_frame = 1
    fps = 30
    t_run = time.perf_counter()

    print(f"bpy {bpy.app.version_string}; {VERTICES} vertices, {args.frames} frames "
          f"({args.frames / fps / 60:g} min at {fps} fps)")
    t = time.perf_counter()
    perf = Performance(args.frames)
    print(f"synthetic performance made in {time.perf_counter() - t:.1f} s (not part of any timing)")

    # Backend side: coordinates in span(W) + b (chunked, as the generator's windows are), compression.
    subspace = Subspace(perf.w, perf.b)
    coords, t_coords, stats = [], 0.0, []
    for start in range(0, args.frames, 1000):
        rows = np.arange(start, min(start + 1000, args.frames))
        motion = perf.motion(rows).astype(np.float32)
        stats.append((np.linalg.norm(motion, axis=2).max(), np.sqrt((motion ** 2).sum(axis=2).mean())))
        t = time.perf_counter()
        coords.append(subspace.coordinates(motion))
        t_coords += time.perf_counter() - t
    coords = np.concatenate(coords)
    print(f"motion: largest vertex offset {max(s[0] for s in stats) * 1e3:.2f} mm, "
          f"RMS {np.sqrt(np.mean([s[1] ** 2 for s in stats])) * 1e3:.2f} mm")
    t = time.perf_counter()
    compact = subspace.compress(coords, BOUND)
    t_compress = time.perf_counter() - t
    k = len(compact.basis)
    print(f"backend (not in Blender): coordinates {t_coords:.2f} s, compress {t_compress:.2f} s -> "
          f"K = {k} basis shapes, max error {compact.max_error:.3g} m (bound {BOUND:g})")
    basis, tracks = mapping.unit_tracks(compact.basis, compact.weights)  # as core.compute does (fps equal)

    with tempfile.TemporaryDirectory(prefix="mimic-bench-") as tmp:
        blend = Path(tmp) / "scene.blend"

        # Ours, as the add-on writes it by default (Weight Curves: Auto): a result this long is
        # baked to F-curve samples; then, as options, editable keyframes (Weight Curves: Keyframes)
        # saved plain and with "Compress".
        checked = sample_frames(first_frame, args.frames, args.samples)
        sampled = baked("AUTO", tracks.shape)
        obj = fresh_head(perf.rest)
        before = saved_size(blend)
        t = time.perf_counter()
        scene_io.write_result(obj, "bench", compact.mean, basis, tracks, first_frame=first_frame, sampled=sampled)
        ours_s = time.perf_counter() - t
        ours_mb = (saved_size(blend) - before) / 1e6
        ours_err = max_error(obj, perf, checked, first_frame, args.frames)

        obj = fresh_head(perf.rest)
        before, before_z = saved_size(blend), saved_size(blend, compress=True)
        t = time.perf_counter()
        scene_io.write_result(obj, "bench", compact.mean, basis, tracks, first_frame=first_frame, sampled=False)
        keys_s = time.perf_counter() - t
        keys_mb = (saved_size(blend) - before) / 1e6
        keys_z_mb = (saved_size(blend, compress=True) - before_z) / 1e6
        keys_err = max_error(obj, perf, checked, first_frame, args.frames)

        # Baseline: one shape key per frame; on a prefix (then extrapolated) if --baseline-frames < --frames.
        n = min(args.baseline_frames, args.frames)
        exact = np.empty((n, VERTICES, 3), dtype=np.float32)
        for start in range(0, n, 1000):
            rows = np.arange(start, min(start + 1000, n))
            exact[rows] = perf.rest + perf.motion(rows)
        obj = fresh_head(perf.rest)
        before = saved_size(blend)
        t = time.perf_counter()
        halves = write_per_frame_keys(obj, exact, first_frame)
        base_n_s = time.perf_counter() - t
        base_n_mb = (saved_size(blend) - before) / 1e6
        base_err = max_error(obj, perf, sample_frames(first_frame, n, min(args.samples, 10)), first_frame, n)
        del exact
    scale = args.frames / n
    base_s, base_mb = base_n_s * scale, base_n_mb * scale

    print()
    print(f"Baseline: its first {n // 2} shape keys took {halves[0]:.2f} s, "
          f"the next {n - n // 2} took {halves[1]:.2f} s "
          f"(of {base_n_s:.2f} s in all).")
    if n < args.frames:
        print(f"Baseline written for the first {n} frames only and EXTRAPOLATED LINEARLY x{scale:g} to {args.frames} "
              f"(its shape keys alone would be {args.frames * VERTICES * 12 / 1e9:.2f} GB).")
    ours = f"ours: K basis keys + {'sampled' if sampled else 'keyed'} weights"
    rows = [(ours, f"{args.frames}", ours_s, ours_mb, f"{ours_err:.3g}"),
            ("one shape key per frame (measured)", f"{n}", base_n_s, base_n_mb, f"{base_err:.3g}")]
    if n < args.frames:
        rows.append(("one shape key per frame (extrapolated)", f"{args.frames}", base_s, base_mb, "-"))
    options = [("option: keyframed weights", f"{args.frames}", keys_s, keys_mb, f"{keys_err:.3g}"),
               ("option: keyframed, .blend saved compressed", f"{args.frames}", keys_s, keys_z_mb, f"{keys_err:.3g}")]
    print(f"{'method':<44} {'frames':>7} {'write s':>9} {'growth MB':>10} {'max error m':>12}")
    for name, frames, s, mb, err in rows + options:
        print(f"{name:<44} {frames:>7} {s:>9.2f} {mb:>10.1f} {err:>12}")
    print(f"ratios (per-frame keys / ours, at {args.frames} frames): write time x{base_s / ours_s:.1f}, "
          f".blend growth x{base_mb / ours_mb:.1f}")
    print(f"(whole run {time.perf_counter() - t_run:.0f} s; .blend growth measured on uncompressed saves unless said)")
    ok = ours_s <= 3.0 and ours_mb <= 20.0 and ours_err <= BOUND + FLOAT_SLACK
    print(f"targets (write <= 3 s, growth <= 20 MB, error <= {BOUND:g} m): "
          f"time {'ok' if ours_s <= 3.0 else 'MISSED'}, size {'ok' if ours_mb <= 20.0 else 'MISSED'}, "
          f"error {'ok' if ours_err <= BOUND + FLOAT_SLACK else 'MISSED'}; K = {k}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
