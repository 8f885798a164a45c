"""Fitting the model's head onto a character, and the fit as plain arrays for the .blend.

1. Landmarks: placed by the user, or found (`detect`) on a human-proportioned head in Blender's
   front view.
2. Similarity (scale, rotation, translation) from the model's landmarks to the character's:
   `trimesh.registration.procrustes` with scale, no reflection.
3. Non-rigid registration of the model's surface onto the character's
   (`trimesh.registration.nricp_amberg`: optimal-step non-rigid ICP, Amberg et al. 2007), held by
   the landmarks that were measured (all the user's, or the profile's in automatic mode) in its
   early, stiff steps.
4. Binding: every character vertex in the face region gets the model triangle of its closest
   point on the fitted surface (among the nearest triangles, the one that also faces the same
   way, so the upper lip binds to the upper lip where the lips meet), the barycentric coordinates
   of that point and the signed distance along the triangle's normal; and a weight, 1 on the face
   and falling smoothly to 0 (`landmarks.face_weights`, times a falloff with that distance).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from ..errors import MimicError
from . import detect
from .landmarks import FALLOFF, NAMES, Anchors, check_points, face_axes, face_weights, model_anchors
from .mesh import check_mesh, smoothstep

FORMAT = 1
CANDIDATES = 16           # nearest model triangles tried for each character vertex
FACING = 0.02             # of the face's height: the cost of binding to a triangle facing away
NEAR, FAR = 0.05, 0.15    # of the face's height: vertices this far off the fitted surface fade out
MISFIT = 0.35             # rigid landmark error (of the landmarks' spread) that means wrong landmarks
MIN_FACE = 50             # character vertices on the fitted face (weight 1), at least
NRICP_STEPS = ((0.01, 10.0, 0.5, 10), (0.02, 5.0, 0.5, 10), (0.03, 2.5, 0.5, 10), (0.01, 0.0, 0.0, 10))


@dataclass
class Fit:
    """What the Blender layer stores: all plain arrays (`save`/`load` as one .npz)."""
    vertices: np.ndarray        # (B,) int32 bound character vertices (weight > 0), ascending
    triangles: np.ndarray       # (B,) int32 model triangle of each one's closest fitted-surface point
    barycentric: np.ndarray     # (B, 3) float32 that point on the triangle
    normal_offset: np.ndarray   # (B,) float32 signed distance along the triangle's normal (> 0: outside; world units)
    weight: np.ndarray          # (B,) float32 in (0, 1]: 1 on the face, falling off to 0
    scale: float                # model -> character world: x_world = scale * rotation @ x_model + translation
    rotation: np.ndarray        # (3, 3)
    translation: np.ndarray     # (3,)
    character_matrix: np.ndarray  # (4, 4) the character object's world matrix (local -> world)
    character_vertex_count: int
    model_vertex_count: int
    model_faces: np.ndarray     # (T, 3) int32 the model's triangles (what `triangles` index)
    fitted_model: np.ndarray    # (V, 3) float32 the registered model surface, world space
    landmark_names: np.ndarray  # (L,) str
    landmarks: np.ndarray       # (L, 3) float64 the character's landmarks, world space
    landmark_error: float       # RMS distance of the fitted model's landmarks to the measured ones
    rigid_landmark_error: float  # the same after the similarity alone
    surface_distance: float     # mean distance of the face's vertices (weight 1) to the fitted surface

    def quality(self) -> dict:
        """The quality numbers, in the character's world units."""
        return {"landmark_error": self.landmark_error, "rigid_landmark_error": self.rigid_landmark_error,
                "surface_distance": self.surface_distance, "scale": self.scale,
                "bound_vertices": int(len(self.vertices)), "face_vertices": int(np.sum(self.weight >= 1.0))}

    def character_landmarks(self) -> dict[str, list[float]]:
        return {str(n): [float(x) for x in p] for n, p in zip(self.landmark_names, self.landmarks)}

    def save(self, path: str | Path) -> None:
        """One .npz (no pickles): every field, plus a format number."""
        np.savez(path, format=FORMAT, **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)})

    @classmethod
    def load(cls, path: str | Path) -> Fit:
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise MimicError(f"cannot read the fit {path}: {e or 'it is empty'}") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise MimicError(f"{path} is not a character fit (an .npz that fit_character wrote): "
                             "fit the character again")
        with data:
            arrays = {k: data[k] for k in data.files}
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in arrays]
        if int(arrays.get("format", -1)) != FORMAT or missing:
            raise MimicError(f"{path} is not a character fit of format {FORMAT} (missing: {', '.join(missing) or '-'}):"
                             " fit the character again")
        scalars = {"scale", "landmark_error", "rigid_landmark_error", "surface_distance"}
        counts = {"character_vertex_count", "model_vertex_count"}
        return cls(**{n: float(arrays[n]) if n in scalars else int(arrays[n]) if n in counts else arrays[n]
                      for n in names})


def fit_character(model_vertices, model_faces, character_vertices, character_faces, landmarks: dict | None = None,
                  model_landmarks: dict | Anchors | None = None, character_matrix=None,
                  falloff: float = FALLOFF) -> Fit:
    """Fit the model's head onto a character.

    model_vertices (V, 3), model_faces (T, 3): the neutral head the motion is relative to, in the
        model's own coordinates (+y up, facing +z; the space its motion offsets are in).
    character_vertices (N, 3), character_faces (T', 3): the character's head mesh in world space
        (its object's matrix applied), any units, placement and rotation.
    landmarks: {name: [x, y, z]} world positions on the character (`landmarks.LANDMARKS`; at least
        `landmarks.REQUIRED`), or None to find them (a human-proportioned head in Blender's front view).
    model_landmarks: {name: vertex index} over the built-in table of the model's topology (or
        Anchors, from Python).
    character_matrix: (4, 4) the character object's world matrix, kept for transfers into its
        own space (default: identity, i.e. world = local).
    falloff: the face weight reaches 0 at this multiple of the face region's size.
    """
    model = check_mesh(model_vertices, model_faces, "the model head")
    character = check_mesh(character_vertices, character_faces, "the character")
    matrix = np.eye(4) if character_matrix is None else np.asarray(character_matrix, np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise MimicError("character_matrix must be the object's invertible 4x4 world matrix")
    if not falloff > 1.0:
        raise MimicError(f"falloff must be greater than 1; got {falloff}")
    anchors = model_landmarks if isinstance(model_landmarks, Anchors) else \
        model_anchors(len(model.vertices), model.faces, model_landmarks)
    _, _, forward = face_axes(dict(zip(anchors.names, anchors.points(model.vertices, model.faces))))
    if forward[2] < 0.7:
        raise MimicError("the model head must be given in the model's own coordinates (+y up, facing +z: the "
                         "space its motion is in), not turned by its object's transform")

    if landmarks is None:
        points = detect.character_landmarks(character, model, anchors)
        measured = [n for n in detect.MIDLINE if n in points]
    else:
        points = check_points(landmarks, "landmarks")
        lacking = [n for n in points if n not in anchors.names]
        if lacking:
            raise MimicError(f"the model has no landmark for {', '.join(lacking)}: give model_landmarks for it, "
                             "or leave it out")
        measured = list(points)
    names = [n for n in NAMES if n in points]
    target = np.array([points[n] for n in names])
    source = anchors.subset(names).points(model.vertices, model.faces)
    similarity, aligned, _ = trimesh.registration.procrustes(source, target, reflection=False, scale=True)
    spread = np.sqrt(((target - target.mean(0)) ** 2).sum(1).mean())
    rigid_error = float(np.sqrt(((aligned - target) ** 2).sum(1).mean()))
    if rigid_error > MISFIT * spread:
        raise MimicError(f"the landmarks do not fit the model's face (RMS error {rigid_error:.4g}, "
                         f"{100 * rigid_error / spread:.0f}% of their spread): "
                         "check that each sits where its name says")
    scale = float(np.cbrt(np.linalg.det(similarity[:3, :3])))

    facing = _facing(character, points)
    moved = trimesh.transform_points(model.vertices, similarity)
    guide = anchors.subset(measured)
    fitted, registered = register(moved, model.faces, facing, guide, np.array([points[n] for n in measured]),
                                  dict(zip(names, aligned)), falloff)
    surface = trimesh.Trimesh(fitted, model.faces[registered], process=False)
    height = float(np.linalg.norm(0.5 * (points["eye_outer_left"] + points["eye_outer_right"]) - points["chin"]))
    region = face_weights(points, character.vertices, falloff)
    candidates = np.flatnonzero(region > 0)
    triangle, bary, offset, distance = bind(surface, facing, candidates, FACING * height)
    weight = region[candidates] * (1.0 - smoothstep(NEAR * height, FAR * height, distance))
    keep = weight > 1e-4
    face = keep & (weight >= 1.0)
    if face.sum() < MIN_FACE:
        raise MimicError(f"no face-like region: only {int(face.sum())} character vertices lie on the fitted face; "
                         "check the landmarks (or place them by hand)")
    error = np.linalg.norm(guide.points(fitted, model.faces) - np.array([points[n] for n in measured]), axis=1)
    return Fit(vertices=candidates[keep].astype(np.int32), triangles=registered[triangle[keep]].astype(np.int32),
               barycentric=bary[keep].astype(np.float32), normal_offset=offset[keep].astype(np.float32),
               weight=weight[keep].astype(np.float32), scale=scale, rotation=similarity[:3, :3] / scale,
               translation=similarity[:3, 3].copy(), character_matrix=matrix,
               character_vertex_count=len(character.vertices), model_vertex_count=len(model.vertices),
               model_faces=model.faces.astype(np.int32), fitted_model=fitted.astype(np.float32),
               landmark_names=np.array(names), landmarks=target,
               landmark_error=float(np.sqrt(np.mean(error ** 2))), rigid_landmark_error=rigid_error,
               surface_distance=float(distance[face].mean()))


def register(moved: np.ndarray, faces: np.ndarray, character: trimesh.Trimesh, guide: Anchors,
             guide_points: np.ndarray, model_points: dict[str, np.ndarray],
             falloff: float) -> tuple[np.ndarray, np.ndarray]:
    """Non-rigid registration of the model's face (the triangles of its face region, a margin
    beyond the falloff) onto the character's. Returns the model's vertices (V, 3) with the face's
    registered (the rest as the similarity put them) and the indices of the registered triangles."""
    inside = face_weights(model_points, moved, falloff + 0.25) > 0
    registered = np.flatnonzero(inside[faces].all(axis=1))
    used, local = np.unique(faces[registered], return_inverse=True)
    face = trimesh.Trimesh(moved[used], local.reshape(-1, 3), process=False)
    where = np.full(len(faces), -1)
    where[registered] = np.arange(len(registered))
    if np.any(where[guide.triangles] < 0):
        raise MimicError("a model landmark lies outside the model's face region: check model_landmarks")
    result = trimesh.registration.nricp_amberg(
        face, character.copy(), source_landmarks=(where[guide.triangles], guide.barycentric),
        target_positions=guide_points, steps=[list(s) for s in NRICP_STEPS])
    fitted = moved.copy()
    fitted[used] = result
    return fitted, registered


def _facing(character: trimesh.Trimesh, points: dict[str, np.ndarray]) -> trimesh.Trimesh:
    """The character mesh with its triangles wound so that the face's normals point out of it
    (some exports wind them inwards): registration and binding compare normals."""
    _, _, forward = face_axes(points)
    near = face_weights(points, character.vertices) >= 1.0
    if np.dot(character.vertex_normals[near].sum(axis=0), forward) >= 0:
        return character
    return trimesh.Trimesh(character.vertices, character.faces[:, ::-1], process=False)


def bind(surface: trimesh.Trimesh, character: trimesh.Trimesh, which: np.ndarray,
         facing_cost: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For character vertices `which`: (triangle, barycentric (3,), signed normal offset, distance) of the
    best point on `surface` among its CANDIDATES nearest triangles, by distance plus
    `facing_cost` * (1 - cos) of the angle between the vertex's and the triangle's normals."""
    points = character.vertices[which]
    normals = character.vertex_normals[which]
    k = min(CANDIDATES, len(surface.faces))
    _, near = cKDTree(surface.triangles_center).query(points, k=k)        # (P, k)
    near = near.reshape(len(points), k)
    triangles = surface.triangles[near.ravel()]                           # (P*k, 3, 3)
    repeated = np.repeat(points, k, axis=0)
    closest = trimesh.triangles.closest_point(triangles, repeated)
    distance = np.linalg.norm(repeated - closest, axis=1).reshape(-1, k)
    agree = np.einsum("pkc,pc->pk", surface.face_normals[near], normals)
    best = np.argmin(distance + facing_cost * (1.0 - agree), axis=1)
    rows = np.arange(len(points)) * k + best
    triangle = near[np.arange(len(points)), best]
    bary = trimesh.triangles.points_to_barycentric(triangles[rows], closest[rows])
    bary = np.clip(bary, 0.0, 1.0)
    bary /= bary.sum(axis=1, keepdims=True)
    offset = np.einsum("pc,pc->p", points - closest[rows], surface.face_normals[triangle])
    return triangle, bary, offset, distance[np.arange(len(points)), best]
