"""Landmarks found from geometry, for heads of human proportions in Blender's front view
(-Y forward, +Z up, world space).

The midline profile comes first: the mesh is cut by the vertical plane through the head's
centre (x), and the front-most point of the cut at each height gives the face's profile. Its
most forward point is the nose tip; below it, the profile's two most forward bumps are the upper
and the lower lip, and the chin landmark is where, below the lower lip, the profile first goes
back as fast as it goes down (the chin's front turning into its underside). The corners of the
eyes and the mouth have no such signature: the model's face is aligned to the character (a
similarity from the midline points and the front view's left-right axis, refined by ICP of the
model's face onto the character's surface) and its corners are carried over, onto the
character's surface.
"""

from __future__ import annotations

import numpy as np
import trimesh
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from ..errors import MimicError
from .landmarks import MIDLINE, Anchors, face_axes, face_weights

BINS = 600            # heights sampled along the head
ICP_POINTS = 600      # model face vertices (at most) the rigid refinement matches
PROMINENCE = 0.002    # of the head's width: the smallest bump of the profile that counts
NO_FACE = ("no face-like region: {why}. Automatic landmarks need a human-proportioned head facing "
           "Blender's front view (-Y forward, +Z up); otherwise place the landmarks by hand")


def midline_landmarks(mesh: trimesh.Trimesh) -> dict[str, np.ndarray]:
    """{nose_tip, upper_lip, lower_lip, chin} of a head in the front view, from its midline profile."""
    v = mesh.vertices
    top = v[:, 2].max()
    height = top - v[:, 2].min()
    width = np.ptp(v[v[:, 2] > top - 0.3 * height, 0])   # of the skull's top
    low = max(v[:, 2].min(), top - 2.0 * width)            # the head (and a neck), not the body below it
    in_head = v[:, 2] >= low
    centre = 0.5 * (v[in_head, 0].min() + v[in_head, 0].max())
    cut = trimesh.intersections.mesh_plane(mesh, [1.0, 0.0, 0.0], [centre, 0.0, 0.0])
    if len(cut) == 0:
        raise MimicError(NO_FACE.format(why="the mesh does not cross its own centre plane"))
    z = np.linspace(low, top, BINS)
    step = z[1] - z[0]
    (y0, z0), (y1, z1) = cut[:, 0, 1:].T, cut[:, 1, 1:].T            # (S,) ends of each cut segment
    t = (z[None, :] - z0[:, None]) / np.where(z1 == z0, np.inf, z1 - z0)[:, None]   # (S, BINS)
    crossing = (t >= 0.0) & (t <= 1.0)
    ahead = np.where(crossing, -(y0[:, None] + t * (y1 - y0)[:, None]), -np.inf)
    forward = ahead.max(axis=0)                             # the cut's front-most point at each height
    seen = np.isfinite(forward)
    if seen.sum() < BINS // 4:
        raise MimicError(NO_FACE.format(why="the centre cut is too small to hold a profile"))
    forward = gaussian_filter1d(np.interp(z, z[seen], forward[seen]), 1.5)

    tip = int(np.argmax(np.where(z > top - 1.5 * width, forward, -np.inf)))  # the nose is above the neck
    # the lips: the two most forward bumps 0.06 to 0.45 head widths below the tip
    near, far = tip - int(0.06 * width / step), max(0, tip - int(0.45 * width / step))
    peaks, _ = find_peaks(forward[far:near], prominence=PROMINENCE * width, wlen=int(0.1 * width / step) | 1)
    if len(peaks) < 2:
        raise MimicError(NO_FACE.format(why="below the most forward point (the nose) the profile has no two "
                                        "bumps of lips"))
    lower, upper = np.sort(far + peaks[np.argsort(forward[far + peaks])[-2:]])
    # the chin: below the lower lip's underside, the first height where the profile goes back as
    # fast as it goes down
    slope = np.gradient(forward, step)
    start = lower - int(0.08 * width / step)
    under = np.flatnonzero(slope[:max(start, 0)] >= 1.0)
    if len(under) == 0 or (z[lower] - z[under[-1]]) / width > 0.45:
        raise MimicError(NO_FACE.format(why="below the lips the profile has no chin"))
    chin = int(under[-1])
    out = {}
    for name, i in zip(MIDLINE, (tip, upper, lower, chin)):
        out[name] = np.array([centre, -forward[i], z[i]])
    return out


def character_landmarks(character: trimesh.Trimesh, model: trimesh.Trimesh, anchors: Anchors,
                        icp_iterations: int = 30) -> dict[str, np.ndarray]:
    """All the model's landmark names on the character (world space): the midline from its
    profile, the rest carried over from the model aligned to it."""
    found = midline_landmarks(character)
    model_points = dict(zip(anchors.names, anchors.points(model.vertices, model.faces)))
    left_m, _, forward_m = face_axes(model_points)
    a = np.array([model_points[n] for n in MIDLINE])
    b = np.array([found[n] for n in MIDLINE])
    spread_a = np.linalg.norm(a - a.mean(0), axis=1).mean()
    spread_b = np.linalg.norm(b - b.mean(0), axis=1).mean()
    side = [-1.0, 1.0]   # two points beside the midline fix the turn about the profile's line
    a = np.vstack([a, a.mean(0) + np.outer(side, left_m) * spread_a])
    b = np.vstack([b, b.mean(0) + np.outer(side, [1.0, 0.0, 0.0]) * spread_b])
    initial = trimesh.registration.procrustes(a, b, reflection=False, scale=True, return_cost=False)
    face = np.flatnonzero((face_weights(model_points, model.vertices) > 0.5) & (model.vertex_normals @ forward_m > 0.2))
    face = face[::max(1, len(face) // ICP_POINTS)]
    matrix, _, _ = trimesh.registration.icp(model.vertices[face], character, initial=initial,
                                            max_iterations=icp_iterations, reflection=False, scale=True)
    rest = [n for n in anchors.names if n not in MIDLINE]
    carried = trimesh.transform_points(np.array([model_points[n] for n in rest]), matrix)
    on_surface, _, _ = trimesh.proximity.closest_point(character, carried)
    return {**found, **dict(zip(rest, on_surface))}
