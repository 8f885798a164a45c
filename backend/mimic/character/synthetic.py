"""Characters made in code, with ground truth: for the tests and the benchmark.

A character here is a synthetic head (`mimic.synth.head`, usually another speaker's identity from
`mimic.synth.rig.identity_template`) remeshed to another topology, put into a Blender scene's
units and placement. Every character vertex is a known convex combination of at most three
vertices of one model triangle (`truth`, a sparse (N, V) matrix), so whatever moves on the model
moves on the character exactly as `truth @ model_offsets` (then scaled and rotated into the
character's space). Remeshing: midpoint subdivision (each triangle into four), then every vertex
slides a random distance inside one of its triangles; vertices where the lips meet stay where they
are, so the mouth is closed at rest and opens, as on the head.

ARKit-named shapes are made from the rig's displacement fields (`arkit_fields`), split into
left and right halves where ARKit has two keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from ..synth import head as H
from ..synth.phonemes import Phone, Utterance, tile
from ..synth.rig import Rig, Style, tracks

# Blender's front view: -Y forward, +Z up. The synthetic head (like FLAME) has +z forward, +y up.
MODEL_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class Character:
    vertices: np.ndarray   # (N, 3) world positions (the object's matrix applied)
    faces: np.ndarray      # (T, 3) int32
    matrix: np.ndarray     # (4, 4) the object's world matrix: world = matrix @ local
    truth: sparse.csr_matrix  # (N, V) character vertex = truth @ model-topology vertex values
    units: float           # character units per metre of the head
    rotation: np.ndarray   # (3, 3) model axes -> world axes (without the units)

    @property
    def local(self) -> np.ndarray:
        """(N, 3) vertex positions in the object's own space (what its mesh stores)."""
        inverse = np.linalg.inv(self.matrix)
        return self.vertices @ inverse[:3, :3].T + inverse[:3, 3]

    def world_offsets(self, model_offsets: np.ndarray) -> np.ndarray:
        """Model-topology offsets (..., V, 3) in metres -> the true world offsets (..., N, 3)."""
        moved = np.asarray(model_offsets, np.float64)
        flat = moved.reshape(-1, moved.shape[-2], 3)
        out = np.stack([self.truth @ frame for frame in flat]) * self.units @ self.rotation.T
        return out.reshape(moved.shape[:-2] + out.shape[-2:])

    def local_offsets(self, model_offsets: np.ndarray) -> np.ndarray:
        """The same in the object's own space (what its shape keys store)."""
        return self.world_offsets(model_offsets) @ np.linalg.inv(self.matrix[:3, :3]).T


def subdivide(faces: np.ndarray, truth: sparse.csr_matrix) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Each triangle into four; a new vertex is the mean of its edge's two ends."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    n = truth.shape[0]
    mid = (n + inverse.reshape(-1, 3)).astype(np.int64)  # (T, 3): midpoints of edges 01, 12, 20
    a, b, c = faces.T
    ab, bc, ca = mid.T
    new_faces = np.concatenate([np.stack(x, axis=1) for x in
                                ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))]).astype(np.int32)
    midpoints = 0.5 * (truth[unique[:, 0]] + truth[unique[:, 1]])
    return new_faces, sparse.vstack([truth, midpoints]).tocsr()


def remesh(vertices: np.ndarray, faces: np.ndarray, levels: int, seed: int,
           jitter: float = 0.35) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Faces and the truth matrix of a remeshed copy: `levels` subdivisions (4**levels times the
    triangles), then each vertex moves up to `jitter` of the way to a random point of one of its
    triangles. Coincident vertices (the lips' edges) do not move."""
    rng = np.random.default_rng(seed)
    truth = sparse.identity(len(vertices), format="csr")
    for _ in range(levels):
        faces, truth = subdivide(faces, truth)
    position = truth @ vertices
    pinned = np.zeros(len(position), bool)
    pinned[list({i for pair in cKDTree(position).query_pairs(1e-9) for i in pair})] = True
    corner = rng.integers(0, 3, len(faces))
    owner = np.full(len(position), -1)
    owner[faces[np.arange(len(faces)), corner]] = np.arange(len(faces))  # one triangle per vertex
    movable = np.flatnonzero((owner >= 0) & ~pinned)
    target = rng.dirichlet(np.ones(3), len(movable))   # a random point of that triangle
    amount = rng.uniform(0.0, jitter, len(movable))[:, None]
    corners = faces[owner[movable]]                     # (M, 3)
    rows = np.repeat(movable, 3)
    blend = sparse.csr_matrix(((amount * target).ravel(), (rows, corners.ravel())), shape=(len(position),) * 2)
    keep = np.ones(len(position))
    keep[movable] -= amount[:, 0]
    return faces, (sparse.diags(keep) @ truth + blend @ truth).tocsr()


def rotation_about(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def make_character(head: H.Head, template: np.ndarray, levels: int = 1, units: float = 1.0,
                   location=(0.0, 0.0, 0.0), turn: np.ndarray | None = None, y_up_import: bool = False,
                   seed: int = 0) -> Character:
    """A remeshed copy of `template` (a (V, 3) face with `head`'s topology, metres), `units` per
    metre, standing in Blender's front view (turned by `turn` about its centre if given) at
    `location`. With `y_up_import`, the object's own space is the file's (Y up) and its matrix
    turns it upright, as an OBJ/FBX import with axis conversion leaves it."""
    faces, truth = remesh(template, head.faces, levels, seed)
    rotation = MODEL_TO_BLENDER if turn is None else turn @ MODEL_TO_BLENDER
    world = (truth @ template) * units @ rotation.T + np.asarray(location, np.float64)
    matrix = np.eye(4)
    matrix[:3, 3] = location
    if y_up_import:
        matrix[:3, :3] = rotation                      # local = the file's Y-up coordinates
    if turn is not None and not y_up_import:
        matrix[:3, :3] = turn
    return Character(vertices=world, faces=faces, matrix=matrix, truth=truth, units=units, rotation=rotation)


# --------------------------------------------------------------------------------------------
# ARKit-named shapes from the rig's fields

def side_masks(rest: np.ndarray, width: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """(V,) smooth weights of the face's left (+x) and right half; they sum to 1."""
    left = 0.5 * (1.0 + np.tanh(rest[:, 0] / width))
    return left, 1.0 - left


def arkit_fields(rig: Rig) -> dict[str, np.ndarray]:
    """Model-topology offsets (V, 3) of ARKit-named shapes made from the rig's linear fields;
    `arkit_weights` gives each shape's weight for a set of rig activations."""
    left, right = side_masks(rig.rest)
    upper = (rig.head.side > 0).astype(np.float64)
    inner = np.exp(-(rig.head.lon / 0.25) ** 2)
    jaw = rig.deform({name: np.array([1.0 if name == "jaw" else 0.0]) for name in
                      ("jaw", "open", "round", "spread", "close", "tuck", "brow", "blink")})[0]
    halves = lambda f, mask: f * mask[:, None]
    return {
        "jawOpen": jaw.astype(np.float64),
        "mouthFunnel": rig.f_round,
        "mouthSmileLeft": halves(rig.f_spread, left), "mouthSmileRight": halves(rig.f_spread, right),
        "mouthUpperUpLeft": halves(rig.f_open, left * upper), "mouthUpperUpRight": halves(rig.f_open, right * upper),
        "mouthLowerDownLeft": halves(rig.f_open, left * (1 - upper)),
        "mouthLowerDownRight": halves(rig.f_open, right * (1 - upper)),
        "browInnerUp": halves(rig.f_brow, inner),
        "browOuterUpLeft": halves(rig.f_brow, left * (1 - inner)),
        "browOuterUpRight": halves(rig.f_brow, right * (1 - inner)),
        "eyeBlinkLeft": halves(rig.f_blink, left), "eyeBlinkRight": halves(rig.f_blink, right),
    }


# which rig activation drives each shape of `arkit_fields` (weight = that activation)
ARKIT_DRIVER = {"jawOpen": "jaw", "mouthFunnel": "round", "mouthSmileLeft": "spread", "mouthSmileRight": "spread",
                "mouthUpperUpLeft": "open", "mouthUpperUpRight": "open", "mouthLowerDownLeft": "open",
                "mouthLowerDownRight": "open", "browInnerUp": "brow", "browOuterUpLeft": "brow",
                "browOuterUpRight": "brow", "eyeBlinkLeft": "blink", "eyeBlinkRight": "blink"}


def arkit_weights(activations: dict[str, np.ndarray], names) -> np.ndarray:
    """(F, S) the weights of shapes `names` that reproduce the rig's linear fields."""
    return np.stack([np.asarray(activations[ARKIT_DRIVER[n]], np.float64) for n in names], axis=1)


def bump_fields(head: H.Head, count: int, seed: int) -> list[np.ndarray]:
    """`count` smooth local displacement fields (V, 3) on the face (a few mm, random places and
    directions): stand-ins for the ARKit shapes the rig has no field for."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        lat0, lon0 = rng.uniform(-1.0, 0.35), rng.uniform(-0.8, 0.8)
        weight = H.bump(head.lat, head.lon, lat0, lon0, rng.uniform(0.08, 0.2), rng.uniform(0.1, 0.3))
        direction = rng.normal(size=3)
        out.append(weight[:, None] * 0.004 * direction / np.linalg.norm(direction) * (head.depth == 0)[:, None])
    return out


# --------------------------------------------------------------------------------------------
# speech-like motion with known lip closures

SPEECH = "SIL M AA P AH B IY M OW W AH S IY SIL B AE M UW P IH F AO M SIL"


SPEECH_STYLE = Style(brow=0.8, blink_rate=20.0)


def speech_tracks(fps: float, seconds_per_phone: float = 0.12, style: Style = SPEECH_STYLE,
                  repeat: int = 1) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Rig activations at `fps` for a phone string with many p/b/m, and (F,) True where the lips
    are shut by a bilabial (the rig's closure at its plateau)."""
    labels = (SPEECH.split() * repeat)
    phones = [Phone(p, i * seconds_per_phone, (i + 1) * seconds_per_phone) for i, p in enumerate(labels)]
    duration = len(labels) * seconds_per_phone
    utt = Utterance(np.zeros(int(duration * 16000), np.float32), tile(phones, duration))
    act = tracks(utt, style, seed=0, fps=fps)
    return act, act["close"] > 0.999
