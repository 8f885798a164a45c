"""Named face landmarks: what each name means, where they sit on the model's topology, and the
checks on landmarks a user placed.

Left and right are the character's own: its left is +X in Blender's front view (the viewer's
right), and +x of the model (which faces +z with +y up, as FLAME and the synthetic head do).

A model landmark is a point on a model triangle (triangle index + barycentric coordinates), so it
can sit between vertices: the synthetic head has no vertex on its midline.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import MimicError
from .mesh import smoothstep

# name -> where a user puts it (the iBUG 68-point scheme's number in brackets)
LANDMARKS = {
    "nose_tip": "the tip of the nose, its most forward point [30]",
    "nose_bridge": "the top of the nose between the eyes [27]",
    "upper_lip": "the middle of the upper lip's outer edge, on the midline [51]",
    "lower_lip": "the middle of the lower lip's outer edge, on the midline [57]",
    "chin": "the bottom of the chin on the midline, where its front turns into its underside [8]",
    "mouth_corner_left": "the left corner of the mouth, where the lips meet [54]",
    "mouth_corner_right": "the right corner of the mouth [48]",
    "eye_outer_left": "the outer corner of the left eye, where the eyelids meet [45]",
    "eye_inner_left": "the inner corner of the left eye [42]",
    "eye_inner_right": "the inner corner of the right eye [39]",
    "eye_outer_right": "the outer corner of the right eye [36]",
}
NAMES = tuple(LANDMARKS)
REQUIRED = ("nose_tip", "chin", "mouth_corner_left", "mouth_corner_right", "eye_outer_left", "eye_outer_right")
MIDLINE = ("nose_tip", "upper_lip", "lower_lip", "chin")  # found in the profile by `detect`

# FLAME's vertices at the iBUG 68 landmarks (the numbers in LANDMARKS), from the 68 FLAME vertex
# indices in iBUG order that SAiD publishes (github.com/yunik1004/SAiD, data/FLAME_landmarks.txt).
# The nose ridge 3561 > 3501 > 3564 (tip) also appears in Medusa's FLAME constants
# (github.com/SchynsLab/medusa, gmfx/constants.py).
FLAME_VERTEX_COUNT = 5023
FLAME_LANDMARKS = {"nose_tip": 3564, "nose_bridge": 3560, "upper_lip": 3543, "lower_lip": 3503, "chin": 3414,
                   "mouth_corner_left": 1703, "mouth_corner_right": 2820, "eye_outer_left": 1154,
                   "eye_inner_left": 3832, "eye_inner_right": 3631, "eye_outer_right": 2428}
DEMO_VERTEX_COUNT = 602  # models/synth-demo: mimic.synth.head.build_head(600)


@dataclass(frozen=True)
class Anchors:
    """Landmarks on a mesh's surface: names, triangle indices (L,), barycentric coordinates (L, 3)."""
    names: tuple[str, ...]
    triangles: np.ndarray
    barycentric: np.ndarray

    def points(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """(L, 3) positions on a mesh of this topology."""
        corners = np.asarray(vertices, np.float64)[faces[self.triangles]]  # (L, 3, 3)
        return np.einsum("lk,lkc->lc", self.barycentric, corners)

    def subset(self, names) -> Anchors:
        keep = [self.names.index(n) for n in names]
        return Anchors(tuple(names), self.triangles[keep], self.barycentric[keep])

    def replaced(self, other: Anchors) -> Anchors:
        """These anchors with other's names taken from other."""
        rows = {n: (t, b) for n, t, b in zip(self.names, self.triangles, self.barycentric)}
        rows.update({n: (t, b) for n, t, b in zip(other.names, other.triangles, other.barycentric)})
        names = tuple(n for n in NAMES if n in rows)
        return Anchors(names, np.array([rows[n][0] for n in names]), np.array([rows[n][1] for n in names]))


def vertex_anchors(faces: np.ndarray, indices: dict[str, int], vertex_count: int) -> Anchors:
    """Anchors exactly at vertices: any triangle using the vertex, weight 1 on it."""
    names, triangles, bary = [], [], []
    for name, index in indices.items():
        if name not in LANDMARKS:
            raise MimicError(f"unknown model landmark {name!r}; the names are: {', '.join(NAMES)}")
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or not 0 <= index < vertex_count:
            raise MimicError(f"model landmark {name!r} must be a vertex index 0..{vertex_count - 1}; got {index!r}")
        rows, cols = np.nonzero(faces == index)
        if len(rows) == 0:
            raise MimicError(f"model landmark {name!r}: vertex {index} is on no triangle")
        names.append(name)
        triangles.append(rows[0])
        b = np.zeros(3)
        b[cols[0]] = 1.0
        bary.append(b)
    order = [names.index(n) for n in NAMES if n in names]
    return Anchors(tuple(names[i] for i in order), np.array(triangles)[order], np.array(bary)[order])


@lru_cache(maxsize=4)
def synth_anchors(vertex_count: int) -> Anchors:
    """Landmarks of `mimic.synth.head.build_head(vertex_count)`, from its surface coordinates:
    on the midline (lon 0) the most forward points of the nose and of each lip, and the chin
    where the profile goes back as fast as it goes down; the mouth's corner vertices; the eye
    corners where the rig's eyelids end (lon = EYE_LON -+ 0.15); the bridge between the eyes."""
    from ..synth import head as H

    head = H.build_head(vertex_count)
    lat = np.arange(-1.3, 0.3, 0.001)
    triangles, bary = _grid_points(head, lat, np.zeros_like(lat))
    profile = np.einsum("lk,lkc->lc", bary, head.vertices[head.faces[triangles]].astype(np.float64))
    up, forward = profile[:, 1], profile[:, 2]

    def most_forward(lo, hi):
        inside = np.flatnonzero((lat > lo) & (lat < hi))
        return inside[np.argmax(forward[inside])]

    rows = {"nose_tip": most_forward(-0.45, 0.0),
            "upper_lip": most_forward(H.LIP_LAT + 1e-6, H.LIP_LAT + 2 * H.LIP_BAND),
            "lower_lip": most_forward(H.LIP_LAT - 2 * H.LIP_BAND, H.LIP_LAT - 1e-6)}
    slope = np.gradient(forward, up)
    rows["chin"] = np.flatnonzero((lat < -0.8) & (slope >= 1.0))[-1]
    midline = Anchors(tuple(rows), triangles[list(rows.values())], bary[list(rows.values())])
    ring = np.flatnonzero((head.depth == 0) & (np.abs(head.lat - H.LIP_LAT) < 1e-9) & (head.column < 0))
    corners = {}
    for name, sign in (("mouth_corner_left", 1), ("mouth_corner_right", -1)):
        beside = ring[np.sign(head.lon[ring]) == sign]
        corners[name] = int(beside[np.argmin(np.abs(head.lon[beside]))])  # next to the slit's end
    places = {"nose_bridge": (H.EYE_LAT, 0.0)}
    places.update({f"eye_{where}_{side}": (H.EYE_LAT, sign * (H.EYE_LON + out * 0.15))
                   for side, sign in (("left", 1), ("right", -1)) for where, out in (("outer", 1), ("inner", -1))})
    triangles, bary = _grid_points(head, *np.array(list(places.values())).T)
    return midline.replaced(vertex_anchors(head.faces, corners, head.vertex_count)).replaced(
        Anchors(tuple(places), triangles, bary))


def _grid_points(head, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Skin triangles and barycentric coordinates of surface coordinates (lat, lon): where they
    fall in the head's (lat, lon) grid."""
    skin = np.flatnonzero(np.all(head.depth[head.faces] == 0, axis=1)
                          & (np.ptp(head.lon[head.faces], axis=1) < 1.0)                          # not across
                          & np.all(np.abs(head.lat[head.faces]) < 1.5, axis=1))                  # the seam, poles
    corners = np.stack([head.lat, head.lon], axis=1)[head.faces[skin]]         # (T, 3, 2)
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    p = np.stack([lat, lon], axis=1)[:, None]                                  # (P, 1, 2)
    cross = lambda u, v: u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    area = cross(b - a, c - a)                                                 # (T,)
    w1 = cross(p - a, c - a) / area
    w2 = cross(b - a, p - a) / area
    w = np.stack([1 - w1 - w2, w1, w2], axis=-1)                               # (P, T, 3)
    best = np.argmax(w.min(axis=-1), axis=1)                                   # the triangle holding p
    chosen = np.clip(w[np.arange(len(p)), best], 0.0, 1.0)
    return skin[best], chosen / chosen.sum(axis=1, keepdims=True)


def model_anchors(vertex_count: int, faces: np.ndarray, given: dict | None) -> Anchors:
    """The model's landmarks: `given` ({name: vertex index}) over the built-in table of its
    topology (FLAME's 5,023 vertices, the demo head's 602)."""
    if vertex_count == FLAME_VERTEX_COUNT:
        table = vertex_anchors(faces, FLAME_LANDMARKS, vertex_count)
    elif vertex_count == DEMO_VERTEX_COUNT:
        table = synth_anchors(600)
    elif not given:
        raise MimicError(f"no landmark table for a model with {vertex_count} vertices (known: FLAME's "
                         f"{FLAME_VERTEX_COUNT}, the demo head's {DEMO_VERTEX_COUNT}): give model_landmarks "
                         f"{{name: vertex index}} for at least {', '.join(REQUIRED)}")
    else:
        table = Anchors((), np.zeros(0, int), np.zeros((0, 3)))
    anchors = table.replaced(vertex_anchors(faces, given, vertex_count)) if given else table
    missing = [n for n in REQUIRED if n not in anchors.names]
    if missing:
        raise MimicError(f"model landmarks missing: {', '.join(missing)} (give their vertex indices)")
    return anchors


def check_points(given, what: str) -> dict[str, np.ndarray]:
    """User-placed landmarks {name: [x, y, z]} -> {name: (3,) float}, every name known, the
    required ones present, no two at one place, not all on a line, left and right not swapped."""
    if not isinstance(given, dict):
        raise MimicError(f"{what} must be a mapping of landmark names to [x, y, z]")
    unknown = sorted(set(given) - set(LANDMARKS))
    if unknown:
        raise MimicError(f"unknown {what}: {', '.join(map(str, unknown))}; the names are: {', '.join(NAMES)}")
    missing = [n for n in REQUIRED if n not in given]
    if missing:
        raise MimicError(f"{what} missing: {', '.join(missing)} (needed: {', '.join(REQUIRED)})")
    points = {}
    for name in NAMES:
        if name not in given:
            continue
        p = np.asarray(given[name], dtype=np.float64) if _numeric(given[name]) else np.zeros(0)
        if p.shape != (3,) or not np.isfinite(p).all():
            raise MimicError(f"{what}: {name} must be three finite numbers [x, y, z]; got {given[name]!r}")
        points[name] = p
    check_layout(points, what)
    return points


def _numeric(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) and all(
        isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in np.asarray(value, object).ravel())


def check_layout(points: dict[str, np.ndarray], what: str) -> None:
    """Degenerate landmarks: two at one place, all on a line, or left and right swapped."""
    names = list(points)
    p = np.array([points[n] for n in names])
    span = float(np.linalg.norm(np.ptp(p, axis=0)))
    gaps = np.linalg.norm(p[:, None] - p[None], axis=-1)
    np.fill_diagonal(gaps, np.inf)
    i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
    if not span > 0 or gaps[i, j] < 0.02 * span:
        raise MimicError(f"{what}: {names[i]} and {names[j]} are at the same place; put each where its name says")
    s = np.linalg.svd(p - p.mean(axis=0), compute_uv=False)
    if s[1] < 0.05 * s[0]:
        raise MimicError(f"{what} lie on one line; they must spread over the face (eyes, mouth, nose, chin)")
    left, up, forward = face_axes(points)
    if np.dot(np.cross(left, up), forward) < 0:
        raise MimicError(f"{what}: left and right are swapped (the character's left is +X in Blender's front "
                         "view, the viewer's right)")


def face_axes(points: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (left, up, forward) of a face from its required landmarks; `forward` is the
    nose's direction from the eyes and mouth, so left x up = +forward when the sides are right."""
    left = (points["mouth_corner_left"] - points["mouth_corner_right"]
            + points["eye_outer_left"] - points["eye_outer_right"])
    eyes = 0.5 * (points["eye_outer_left"] + points["eye_outer_right"])
    mouth = 0.5 * (points["mouth_corner_left"] + points["mouth_corner_right"])
    up = eyes - points["chin"]
    forward = points["nose_tip"] - 0.5 * (eyes + mouth)
    left = left / np.linalg.norm(left)
    up = up - np.dot(up, left) * left
    up /= np.linalg.norm(up)
    forward = forward - np.dot(forward, left) * left - np.dot(forward, up) * up
    return left, up, forward / max(np.linalg.norm(forward), 1e-300)


# The face region, in units of the face from its landmarks (h: eyes to chin, w: between the outer
# eye corners), centred between the eyes and the chin: 1 inside the half-ellipsoid below, falling
# smoothly to 0 at FALLOFF times its size. It reaches 0.8 h below the chin (the jaw's underside),
# 0.7 h above the eyes (the brows and forehead), 0.9 w to each side; behind the eye corners'
# plane it ends 0.7 w back (before the ears).
REGION = {"up": 0.2, "half_height": 1.0, "half_width": 0.9, "depth": 0.7}
FALLOFF = 1.4


def face_weights(points: dict[str, np.ndarray], vertices: np.ndarray, falloff: float = FALLOFF) -> np.ndarray:
    """(N,) weight of each vertex in the face region of the face with these landmarks."""
    left, up, forward = face_axes(points)
    eyes = 0.5 * (points["eye_outer_left"] + points["eye_outer_right"])
    h = float(np.dot(eyes - points["chin"], up))
    w = float(np.linalg.norm(points["eye_outer_left"] - points["eye_outer_right"]))
    centre = 0.5 * (eyes + points["chin"])
    d = np.asarray(vertices, np.float64) - centre
    x = d @ left / (REGION["half_width"] * w)
    y = (d @ up - REGION["up"] * h) / (REGION["half_height"] * h)
    z = np.maximum(0.0, (eyes - centre) @ forward - d @ forward) / (REGION["depth"] * w)
    r = np.sqrt(x * x + y * y + z * z)
    return 1.0 - smoothstep(1.0, falloff, r)
