"""A head mesh made in code: a closed, head-shaped surface with a mouth that can open.

The surface is a latitude/longitude grid (y up, +z forward, metres, like FLAME and VOCASET) on
a squashed ellipsoid, pushed into a face by smooth bumps: brow ridge, eye sockets with eyeballs,
nose, cheeks, lips, chin, ears. Rings and columns crowd onto the face, so most vertices are
where the motion is.

The lips are separate: along the lip line the grid row is doubled between the mouth corners
(the upper lip's edge and the lower lip's edge start at the same place), and the slit between
them leads into a mouth pocket, a small sack of `POCKET_ROWS` rows per side closed at the back.
The mesh stays closed (every edge on two triangles, genus 0) and the mouth can open.

Besides the geometry, a Head carries what the rig needs: each vertex's surface coordinates
(lat, lon), its side of the lip line, its pocket depth, and the vertex pairs that meet when the
lips close; and named vertex regions for evaluation (lips, upper face, eyes, brows, jaw).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

# Surface coordinates of the features (radians on the ellipsoid's parameter sphere). The lip
# line sits where a real mouth does for a ~23 cm tall head: ~6 cm below the eyes.
SEMI_AXES = (0.076, 0.118, 0.098)  # half width, half height, half depth (m)
LIP_LAT = -0.55                    # lip line
MOUTH_HALF = 0.40                  # mouth corners at lon = +-MOUTH_HALF (~2.4 cm either side)
LIP_BAND = 0.08                    # lat span of one lip (~9 mm)
EYE_LAT, EYE_LON = 0.06, 0.42      # eye centres (lon +-EYE_LON: 62 mm apart)
BROW_LAT = 0.24
JAW_PIVOT = (-0.012, -0.004)       # (y, z) of the jaw's hinge axis, which runs along x
POCKET_ROWS = 2                    # rows of the mouth pocket on each side, plus a back row


@dataclass(frozen=True, eq=False)
class Head:
    vertices: np.ndarray      # (V, 3) float32 rest positions (m)
    faces: np.ndarray         # (F, 3) int32, counter-clockwise seen from outside
    lat: np.ndarray           # (V,) surface coordinates (pocket vertices: those of their lip edge)
    lon: np.ndarray           # (V,)
    side: np.ndarray          # (V,) +1 above the lip line / upper lip, -1 below / lower lip, 0 pocket back
    depth: np.ndarray         # (V,) 0 on the skin, 1..POCKET_ROWS into the pocket, POCKET_ROWS+1 the back
    column: np.ndarray        # (V,) index of the vertex's mouth-slit column, -1 outside the slit
    upper_edge: np.ndarray    # (S,) vertex of the upper lip's edge at each slit column
    lower_edge: np.ndarray    # (S,) vertex of the lower lip's edge (same rest position)
    regions: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def vertex_count(self) -> int:
        return len(self.vertices)

    def save_obj(self, path: str | Path, vertices: np.ndarray | None = None) -> None:
        """Wavefront OBJ of the mesh (or of the same topology with other vertex positions)."""
        v = self.vertices if vertices is None else np.asarray(vertices).reshape(-1, 3)
        lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in self.faces]
        Path(path).write_text("\n".join(lines) + "\n")


def grid_size(vertex_count: int) -> tuple[int, int]:
    """(rings, columns) of a grid for about `vertex_count` vertices in all (grid, lips, pocket)."""
    if vertex_count < 200:
        raise ValueError(f"a head needs at least 200 vertices, not {vertex_count}")
    columns = 2 * round(np.sqrt(1.45 * vertex_count) / 2)
    slit = int(np.sum(np.abs(_columns(columns)) < MOUTH_HALF))  # each adds a lip edge and a pocket column
    rings = round((vertex_count - 2 - slit * (2 + 2 * POCKET_ROWS)) / columns)
    return max(rings, 9), columns


def build_head(vertex_count: int = 1500) -> Head:
    """The base head with about `vertex_count` vertices (within a few percent)."""
    rings, columns = grid_size(vertex_count)
    lats, lons = _rings(rings), _columns(columns)
    m = int(np.argmin(np.abs(lats - LIP_LAT)))
    assert abs(lats[m] - LIP_LAT) < 1e-9, "the lip line must be a ring"
    slit = np.flatnonzero(np.abs(lons) < MOUTH_HALF)  # interior columns: the lip row is doubled here
    assert len(slit) >= 2 and np.all(np.diff(slit) == 1), "the mouth must span consecutive columns"
    S = len(slit)

    # ---- vertices: north pole, grid (ring-major), south pole, lower-lip edge, pocket
    grid_lat = np.repeat(lats, columns)
    grid_lon = np.tile(lons, rings)
    lat = np.concatenate([[np.pi / 2], grid_lat, [-np.pi / 2]])
    lon = np.concatenate([[0.0], grid_lon, [0.0]])
    north, south = 0, 1 + rings * columns

    def g(i: int, j: int) -> int:
        return 1 + i * columns + (j % columns)

    upper_edge = np.array([g(m, j) for j in slit])
    lower_edge = south + 1 + np.arange(S)
    P = POCKET_ROWS
    pocket_start = lower_edge[-1] + 1
    # pocket rows in order from the upper lip round to the lower lip: up_1..up_P, back, low_P..low_1
    pocket_rows = [pocket_start + r * S + np.arange(S) for r in range(2 * P + 1)]
    rows = [upper_edge] + pocket_rows + [lower_edge]  # the slit's strip, 2P+3 rows deep
    V = pocket_start + (2 * P + 1) * S

    lat = np.concatenate([lat, lats[m] + np.zeros(S), np.tile(lats[m] + np.zeros(S), 2 * P + 1)])
    lon = np.concatenate([lon, lons[slit], np.tile(lons[slit], 2 * P + 1)])
    surface = _surface(lat, lon)
    side = np.where(lat > LIP_LAT + 1e-9, 1, -1).astype(np.int8)
    side[upper_edge] = 1
    depth = np.zeros(V, np.int8)
    column = np.full(V, -1, np.int32)
    for k, j in enumerate(slit):
        for i in range(rings):
            column[g(i, j)] = k
    for r, row in enumerate(rows):
        column[row] = np.arange(S)
        d = min(r, len(rows) - 1 - r)          # 0 at both lip edges, P+1 at the back
        depth[row] = d
        side[row] = 1 if r < P + 1 else (0 if r == P + 1 else -1)

    # pocket positions: behind the lip edges, going back and away from the lip line
    vertices = surface.copy()
    edge = surface[upper_edge]
    for r in range(1, 2 * P + 2):
        d = min(r, 2 * P + 2 - r) / (P + 1)     # 0 at the lips, 1 at the back
        up = 1.0 if r <= P else (-1.0 if r >= P + 2 else 0.0)
        vertices[rows[r], 0] = edge[:, 0] * (1 - 0.25 * d)
        vertices[rows[r], 1] = edge[:, 1] + up * 0.006 * np.sin(np.pi * d / 2) * (1 - d ** 4)
        vertices[rows[r], 2] = edge[:, 2] - 0.024 * d
    vertices[lower_edge] = surface[upper_edge]

    # ---- faces
    faces: list[tuple[int, int, int]] = []

    def quad(a: int, b: int, c: int, d: int) -> None:  # a b c d counter-clockwise from outside
        faces.append((a, b, c))
        faces.append((a, c, d))

    lower_of = dict(zip((int(j) for j in slit), (int(v) for v in lower_edge)))
    for j in range(columns):
        faces.append((north, g(0, j), g(0, j + 1)))
        faces.append((south, g(rings - 1, j + 1), g(rings - 1, j)))
    for i in range(rings - 1):
        for j in range(columns):
            a, b = g(i, j), g(i, j + 1)
            c, d = g(i + 1, j + 1), g(i + 1, j)
            if i == m:  # below the lip line: the slit columns' top corners are the lower lip edge
                a = lower_of.get(j % columns, a)
                b = lower_of.get((j + 1) % columns, b)
            quad(a, d, c, b)
    # the pocket: a strip between consecutive slit columns, a fan at each mouth corner
    for r in range(len(rows) - 1):
        for k in range(S - 1):
            quad(rows[r][k], rows[r + 1][k], rows[r + 1][k + 1], rows[r][k + 1])
    left, right = g(m, slit[0] - 1), g(m, slit[-1] + 1)
    for r in range(len(rows) - 1):
        faces.append((left, rows[r + 1][0], rows[r][0]))
        faces.append((right, rows[r][-1], rows[r + 1][-1]))
    faces_arr = np.array(faces, np.int32)

    head = Head(vertices=vertices.astype(np.float32), faces=faces_arr, lat=lat, lon=lon, side=side,
                depth=depth, column=column, upper_edge=upper_edge, lower_edge=lower_edge)
    return replace(head, regions=_regions(head))


# --------------------------------------------------------------------------------------------
# shape

def _lat_density(lat):
    face = np.exp(-((lat + 0.3) / 0.62) ** 4)          # chin to brows
    mouth = np.exp(-((lat - LIP_LAT) / 0.16) ** 2)      # and more on the lips
    return 1.0 + 2.6 * face + 1.2 * mouth


def _lon_density(lon):
    return 1.0 + 3.2 * np.exp(-(lon / 0.72) ** 4)


def _rings(n: int) -> np.ndarray:
    """n ring latitudes from top to bottom, one exactly on the lip line."""
    x = np.linspace(-np.pi / 2, np.pi / 2, 4001)
    dens = _lat_density(x)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(x))])
    below = round((n - 1) * np.interp(LIP_LAT, x, cdf) / cdf[-1])
    return np.concatenate([_segment(n - 1 - below, np.pi / 2, LIP_LAT), [LIP_LAT],
                           _segment(below, -np.pi / 2, LIP_LAT)[::-1]])


def _segment(n: int, pole: float, line: float) -> np.ndarray:
    """n latitudes strictly between `line` and `pole`, from the pole's end to the line's end,
    spaced by the density, half a step from the pole, a full step from the line."""
    if n == 0:
        return np.zeros(0)
    x = np.linspace(line, pole, 4001)
    dens = _lat_density(x)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.abs(np.diff(x)))])
    steps = np.arange(n, 0, -1) / (n + 0.5)  # from the pole end towards the line
    return np.interp(steps * cdf[-1], cdf, x)


def _columns(n: int) -> np.ndarray:
    """n longitudes in (-pi, pi], symmetric about the front (lon 0), crowded on the face."""
    x = np.linspace(-np.pi, np.pi, 8001)
    dens = _lon_density(x)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(x))])
    return np.interp((np.arange(n) + 0.5) / n * cdf[-1], cdf, x)


def bump(lat, lon, lat0, lon0, s_lat, s_lon, power=2):
    return np.exp(-(((lat - lat0) / s_lat) ** 2 + ((lon - lon0) / s_lon) ** 2) ** (power / 2))


def _surface(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Skin positions (V, 3) for surface coordinates: an ellipsoid shaped into a head."""
    ax, ay, az = SEMI_AXES
    c, s = np.cos(lat), np.sin(lat)
    front = np.exp(-(lon / 0.95) ** 4)
    low = 0.5 * (1 - np.tanh((lat + 0.35) / 0.25))        # 0 above the cheekbones, 1 at the chin
    x = ax * c ** 0.75 * np.sin(lon) * (1 - 0.22 * low)      # a full skull, a narrower jaw
    y = ay * s
    z = az * c * np.cos(lon)
    z = z + front * 0.028 * low * np.exp(-((lat + 0.75) / 0.5) ** 2) * (c > 0)  # lower face forward
    both = lambda f: f(lon) + f(-lon)
    dz = (0.009 * bump(lat, lon, 0.0, 0.0, 0.16, 0.055)                # nose bridge
          + 0.016 * bump(lat, lon, -0.19, 0.0, 0.12, 0.07)              # nose
          + 0.011 * bump(lat, lon, -0.29, 0.0, 0.065, 0.14)             # nose tip and wings
          + 0.006 * both(lambda lo: bump(lat, lo, BROW_LAT, 0.33, 0.07, 0.28))   # brow ridges
          - 0.012 * both(lambda lo: bump(lat, lo, EYE_LAT, EYE_LON, 0.10, 0.16))  # eye sockets
          + 0.010 * both(lambda lo: bump(lat, lo, EYE_LAT, EYE_LON, 0.06, 0.10))  # eyeballs
          + 0.004 * both(lambda lo: bump(lat, lo, -0.30, 0.62, 0.2, 0.25))        # cheeks
          + 0.007 * bump(lat, lon, LIP_LAT + 0.05, 0.0, 0.05, 0.30, 4)         # upper lip
          + 0.006 * bump(lat, lon, LIP_LAT - 0.055, 0.0, 0.05, 0.26, 4)        # lower lip
          - 0.003 * bump(lat, lon, LIP_LAT - 0.16, 0.0, 0.05, 0.3)             # below the lower lip
          + 0.009 * bump(lat, lon, -0.95, 0.0, 0.13, 0.28))                     # chin
    ears = 0.008 * (bump(lat, lon, 0.0, np.pi / 2, 0.2, 0.1) - bump(lat, lon, 0.0, -np.pi / 2, 0.2, 0.1))
    return np.stack([x + ears, y, z + dz], axis=1)


# --------------------------------------------------------------------------------------------
# regions

def _regions(head: Head) -> dict[str, np.ndarray]:
    """Vertex index sets for evaluation: lips (lip vertex error), upper face (upper-face dynamics
    deviation), eyes, brows, jaw, mouth pocket."""
    lat, lon, skin = head.lat, head.lon, head.depth == 0
    u = np.abs(lon) / MOUTH_HALF
    v = (lat - LIP_LAT) / LIP_BAND
    eye = np.minimum(((np.abs(lon) - EYE_LON) / 0.17) ** 2 + ((lat - EYE_LAT) / 0.11) ** 2, 9.0)
    regions = {
        "lips": skin & (u < 1.2) & (np.abs(v) <= 1.6),
        "upper_face": skin & (lat > -0.12) & (np.abs(lon) < 1.1),
        "eyes": skin & (eye < 1.0),
        "brows": skin & (np.abs(lat - BROW_LAT - 0.03) < 0.09) & (np.abs(np.abs(lon) - 0.36) < 0.3),
        "jaw": skin & (lat < LIP_LAT + 1e-9) & (np.abs(lon) < 1.3) & (lat > -1.35)
               & ~((lat > LIP_LAT - 1e-9) & (head.side > 0)),
        "mouth_pocket": head.depth > 0,
    }
    return {name: np.flatnonzero(mask).astype(np.int64) for name, mask in regions.items()}


def check_closed(faces: np.ndarray, vertex_count: int) -> None:
    """Assert a closed, consistently oriented, genus-0 triangle mesh without unused vertices."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    directed = {tuple(x) for x in e.tolist()}
    assert len(directed) == len(e), "a directed edge is used twice: inconsistent orientation"
    assert all((b, a) in directed for a, b in directed), "an edge has only one face: the mesh is open"
    assert np.array_equal(np.unique(faces), np.arange(vertex_count)), "unused vertices"
    assert vertex_count - len(e) // 2 + len(faces) == 2, "not a sphere (Euler characteristic != 2)"
