"""The articulation rig: phones + a speaking style -> per-frame vertex offsets of the base head.

Two stages, both pure functions of their inputs:

1. `tracks`: phones -> articulator activations over time (one value per frame):
   jaw      opening of the jaw (a rotation about the hinge axis, 1 = 0.18 rad)
   open     lip aperture on top of the jaw (upper lip up, lower lip down)
   round    rounding: mouth corners in, lips forward (o, u, w, r, sh)
   spread   spreading: corners out and back (i, e, y, s)
   close    bilabial closure (p, b, m): 1 = the lips meet, whatever the rest is doing
   tuck     labiodental (f, v): the lower lip goes up under the upper one
   brow     brow raise on prominent (loud, long) vowels
   blink    eyelid closure
   Jaw, open, round and spread follow Cohen & Massaro's coarticulation model: each phone pulls
   a track towards its target with a dominance that peaks over the phone and decays outside it,
   so neighbours blend; consonants that do not use the lips barely pull on them. Closure and
   tuck are plateaus over their phones (the lips really meet on every p, b, m) with ramps.

2. `Rig.deform`: activations -> offsets (T, V, 3) from displacement fields defined on the base
   head. Offsets do not depend on the identity: the same offsets are added to every speaker's
   template (`identity_template`), so identity and style are independent by construction.

A `Style` scales and shifts stage 1 (amplitude, rounding, jaw share, lead, smoothness, brow
emphasis, blink rate) and skews stage 2 (asymmetry). `Rig.animate` runs both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from . import head as H
from .phonemes import BILABIALS, VOWELS, Utterance

FPS = 60.0                 # VOCASET's capture rate
JAW_MAX = 0.18             # rad of jaw rotation at jaw = 1
COARTICULATION = 0.045     # s: width of a phone's dominance outside its interval (x smoothness)
RAMP = 0.03                # s: closure / tuck ramp (x smoothness)
TRACKS = ("jaw", "open", "round", "spread", "close", "tuck", "brow", "blink")


@dataclass(frozen=True)
class Style:
    """How a speaker moves; `RANGES` holds the span speakers are sampled from."""
    amplitude: float = 1.0    # gain of every mouth gesture (jaw, lips, rounding, spreading)
    rounding: float = 1.0     # extra gain of rounding and protrusion
    jaw: float = 1.0          # share of the opening done by the jaw (>1) rather than the lips (<1)
    asymmetry: float = 0.0    # -1..1: the face's +x side moves (1 + a) times, the other (1 - a) times
    lead: float = 0.0         # s: >0 the face moves ahead of the sound, <0 behind it
    smoothness: float = 1.0   # width of coarticulation and of closure ramps
    brow: float = 0.5         # brow raise on prominent syllables (0: still brows)
    blink_rate: float = 15.0  # blinks per minute (Poisson)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Style:
        values = {}
        for name, (lo, hi, log) in RANGES.items():
            values[name] = float(np.exp(rng.uniform(np.log(lo), np.log(hi))) if log else rng.uniform(lo, hi))
        return cls(**{k: round(v, 4) for k, v in values.items()})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Style:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        assert not unknown, f"unknown style parameters: {sorted(unknown)}"
        return cls(**values)


# name: (low, high, log-uniform) for sampled speakers
RANGES = {
    "amplitude": (0.6, 1.5, True),
    "rounding": (0.4, 1.7, True),
    "jaw": (0.6, 1.4, False),
    "asymmetry": (-0.35, 0.35, False),
    "lead": (-0.04, 0.08, False),
    "smoothness": (0.6, 2.0, True),
    "brow": (0.0, 1.5, False),
    "blink_rate": (6.0, 30.0, True),
}

# ---- phone targets: (jaw, open, round, spread)
_T = {
    "AA": (0.85, 0.55, 0.00, 0.10), "AE": (0.75, 0.50, 0.00, 0.40), "AH": (0.55, 0.40, 0.00, 0.05),
    "AO": (0.70, 0.45, 0.55, 0.00), "EH": (0.55, 0.40, 0.00, 0.40), "ER": (0.35, 0.25, 0.35, 0.00),
    "IH": (0.35, 0.30, 0.00, 0.55), "IY": (0.20, 0.20, 0.00, 0.85), "UH": (0.30, 0.25, 0.60, 0.00),
    "UW": (0.20, 0.15, 1.00, 0.00),
    "P": (0.10, 0.0, 0.0, 0.0), "B": (0.10, 0.0, 0.0, 0.0), "M": (0.10, 0.0, 0.0, 0.0),
    "F": (0.15, 0.10, 0.0, 0.0), "V": (0.15, 0.10, 0.0, 0.0),
    "W": (0.15, 0.05, 0.95, 0.0), "R": (0.20, 0.10, 0.45, 0.0),
    "SH": (0.15, 0.15, 0.50, 0.0), "ZH": (0.15, 0.15, 0.50, 0.0), "CH": (0.15, 0.15, 0.50, 0.0),
    "JH": (0.15, 0.15, 0.50, 0.0), "S": (0.10, 0.10, 0.0, 0.30), "Z": (0.10, 0.10, 0.0, 0.30),
    "T": (0.20, 0.15, 0.0, 0.10), "D": (0.20, 0.15, 0.0, 0.10), "N": (0.20, 0.15, 0.0, 0.10),
    "L": (0.25, 0.20, 0.0, 0.10), "TH": (0.25, 0.15, 0.0, 0.10), "DH": (0.25, 0.15, 0.0, 0.10),
    "K": (0.30, 0.15, 0.0, 0.0), "G": (0.30, 0.15, 0.0, 0.0), "NG": (0.30, 0.15, 0.0, 0.0),
    "Y": (0.15, 0.15, 0.0, 0.60), "HH": (0.35, 0.30, 0.0, 0.0), "SIL": (0.0, 0.0, 0.0, 0.0),
}
_DIPHTHONGS = {"AW": ("AA", "UH"), "AY": ("AA", "IY"), "EY": ("EH", "IY"), "OW": ("AO", "UW"), "OY": ("AO", "IY")}
# dominance (jaw, open, round, spread) by phone class: how hard a phone pulls each track
_D = {
    "vowel": (1.0, 1.0, 1.0, 1.0), "lips": (0.6, 0.3, 0.15, 0.15), "rounded": (0.5, 0.4, 1.0, 0.6),
    "sibilant": (0.9, 0.5, 0.2, 0.5), "y": (0.5, 0.4, 0.3, 0.9), "other": (0.5, 0.3, 0.15, 0.2),
    "hh": (0.05, 0.05, 0.05, 0.05), "SIL": (0.6, 0.6, 0.6, 0.6),
}
_CLASS = {**{p: "vowel" for p in VOWELS}, **{p: "lips" for p in ["P", "B", "M", "F", "V"]},
          **{p: "rounded" for p in ["W", "R", "SH", "ZH", "CH", "JH"]}, "S": "sibilant", "Z": "sibilant",
          "Y": "y", "HH": "hh", "SIL": "SIL"}
_ANTICIPATION = np.array([1.0, 1.0, 2.0, 1.0])  # rounding starts early (anticipatory coarticulation)


def _segments(phones) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Phones -> (start, end, targets (P, 4), dominance (P, 4)); diphthongs as two halves."""
    start, end, target, dom = [], [], [], []
    for p in phones:
        parts = _DIPHTHONGS.get(p.label, (p.label,))
        step = (p.end - p.start) / len(parts)
        for k, label in enumerate(parts):
            start.append(p.start + k * step)
            end.append(p.start + (k + 1) * step)
            target.append(_T.get(label, _T["SIL"]))
            dom.append(_D[_CLASS.get(p.label, "other")])
    return np.array(start), np.array(end), np.array(target), np.array(dom)


def frame_count(duration: float, fps: float = FPS) -> int:
    return max(1, round(duration * fps))


def _plateaus(times: np.ndarray, phones, labels, ramp: float) -> np.ndarray:
    """1 over each phone of `labels`, Gaussian ramps of width `ramp` outside, max over phones."""
    out = np.zeros(len(times))
    for p in phones:
        if p.label in labels:
            dist = np.maximum(np.maximum(p.start - times, times - p.end), 0.0)
            out = np.maximum(out, np.exp(-(dist / ramp) ** 2))
    return out


def brow_events(utt: Utterance) -> list[float]:
    """Times of the prominent syllables that raise the brows: the loudest long vowels, at least
    0.7 s apart, about one per 1.5 s of speech."""
    loud = utt.loudness()
    candidates = [(loud[i], p.center) for i, p in enumerate(utt.phones)
                  if p.label in VOWELS and p.end - p.start >= 0.06 and loud[i] > -8.0]
    picked: list[float] = []
    for _, t in sorted(candidates, reverse=True):
        if len(picked) >= 1 + int(utt.duration / 1.5):
            break
        if all(abs(t - s) >= 0.7 for s in picked):
            picked.append(t)
    return sorted(picked)


def blink_times(duration: float, rate: float, seed: int) -> np.ndarray:
    """Blink onsets: a Poisson process of `rate` per minute (>= 0.4 s apart), fixed by `seed`."""
    rng = np.random.default_rng(seed)
    times, t = [], 0.0
    while rate > 0:
        t += max(rng.exponential(60.0 / rate), 0.4)
        if t >= duration:
            break
        times.append(t)
    return np.array(times)


def tracks(utt: Utterance, style: Style, seed: int = 0, fps: float = FPS) -> dict[str, np.ndarray]:
    """Articulator activations at each frame (frame k at k / fps seconds), style applied."""
    n = frame_count(utt.duration, fps)
    times = np.arange(n) / fps + style.lead     # the face at t shows the sound at t + lead
    start, end, target, dom = _segments(utt.phones)
    dist_before = np.maximum(start[None, :] - times[:, None], 0.0)   # (T, P)
    dist_after = np.maximum(times[:, None] - end[None, :], 0.0)
    width = COARTICULATION * style.smoothness
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(("jaw", "open", "round", "spread")):
        d = dom[None, :, k] * np.exp(-(dist_before / (width * _ANTICIPATION[k])) ** 2 - (dist_after / width) ** 2)
        d = np.concatenate([d, np.full((n, 1), 1e-3)], axis=1)   # a faint pull to rest
        t = np.concatenate([target[:, k], [0.0]])
        out[name] = (d @ t) / d.sum(axis=1)
    jaw_share = float(np.clip(style.jaw, 0.0, 2.0))
    out["jaw"] *= style.amplitude * jaw_share
    out["open"] *= style.amplitude * (2.0 - jaw_share)
    out["round"] *= style.amplitude * style.rounding
    out["spread"] *= style.amplitude
    ramp = RAMP * style.smoothness
    out["close"] = _plateaus(times, utt.phones, BILABIALS, ramp)
    out["tuck"] = _plateaus(times, utt.phones, {"F", "V"}, ramp)
    brow = np.zeros(n)
    for c in brow_events(utt):  # raised cosine, 0.5 s wide, brows slightly ahead of the vowel
        x = np.clip((times - (c - 0.04)) / 0.25, -1.0, 1.0)
        brow = np.maximum(brow, 0.5 * (1 + np.cos(np.pi * x)))
    out["brow"] = brow * style.brow
    clock = np.arange(n) / fps  # blinks are not speech: no lead
    blink = np.zeros(n)
    for b in blink_times(utt.duration, style.blink_rate, seed):
        s = clock - b
        closing = np.clip(s / 0.08, 0.0, 1.0)
        opening = np.clip(1.0 - (s - 0.12) / 0.15, 0.0, 1.0)
        shape = np.minimum(closing, opening)
        blink = np.maximum(blink, shape * shape * (3 - 2 * shape))
    out["blink"] = blink
    return {k: out[k].astype(np.float64) for k in TRACKS}


# --------------------------------------------------------------------------------------------
# geometry

def _smoothstep(lo: float, hi: float, x):
    t = np.clip((np.asarray(x) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _local(weight: np.ndarray, floor: float = 1e-4) -> np.ndarray:
    """Weights below `floor` become exactly 0: each field moves its own region and nothing else."""
    return np.where(np.abs(weight) < floor, 0.0, weight)


class Rig:
    """Displacement fields of one head topology (built from the base head, used for all identities)."""

    def __init__(self, head: H.Head):
        self.head = head
        v = head.vertices.astype(np.float64)
        self.rest = v
        lat, lon, side, depth = head.lat, head.lon, head.side.astype(np.float64), head.depth
        P1 = H.POCKET_ROWS + 1
        skin = depth == 0
        inside = 1.0 - depth / P1                   # 1 at the lips, 0 at the pocket's back
        u = np.abs(lon) / H.MOUTH_HALF              # 0 mid-mouth, 1 at the corners
        vv = np.where(skin, (lat - H.LIP_LAT) / H.LIP_BAND, 0.0)
        in_slit = head.column >= 0
        lip_shape = np.where(in_slit, np.cos(0.5 * np.pi * np.minimum(u, 1.0)) ** 1.2, 0.0)  # 0 at corners
        near_line = np.exp(-(vv / 1.3) ** 2)

        # jaw: the lower face, the lower lip and the lower pocket follow the jaw; the lips are
        # separate inside the slit, and the skin beside the corners stretches between the two
        base = 0.5 * (1 - np.tanh(vv / 1.2))
        separate = np.where(u < 1, 1 - _smoothstep(0.55, 1.0, u), 0.0) * np.exp(-(vv / 2.0) ** 2)
        goal = np.where(side > 0, 0.0, np.where(side < 0, 1.0, 0.5))
        self.w_jaw = _local((base + separate * (goal - base)) * np.exp(-(lon / 1.25) ** 6)
                            * _smoothstep(-1.5, -1.2, lat))
        self.arm = np.stack([v[:, 1] - H.JAW_PIVOT[0], v[:, 2] - H.JAW_PIVOT[1]], axis=1)  # (V, 2) y, z

        lips = _local(lip_shape * near_line * np.where(skin, 1.0, inside))
        self.f_open = np.zeros_like(v)
        self.f_open[:, 1] = lips * np.where(side > 0, 0.0035, np.where(side < 0, -0.0030, 0.0))
        self.f_open[:, 2] = lips * 0.0008

        region = _local(np.exp(-((u / 1.25) ** 2 + (vv / 2.2) ** 2) ** 1.5) * np.where(skin, 1.0, 0.5 + 0.5 * inside))
        self.f_round = np.stack([-0.38 * v[:, 0] * region,
                                 lips * np.sign(side) * 0.0012,
                                 0.008 * region * (1 - 0.5 * np.minimum(u, 1.0) ** 2)], axis=1)
        region = _local(np.exp(-((u / 1.3) ** 2 + (vv / 2.5) ** 2) ** 1.5) * np.where(skin, 1.0, 0.5 + 0.5 * inside))
        self.f_spread = np.stack([0.28 * v[:, 0] * region, np.zeros(len(v)),
                                  -0.0025 * region * np.minimum(u, 1.0) ** 2], axis=1)

        across = np.exp(-((np.abs(lon) - 0.36) / 0.32) ** 4)
        up = np.where(lat < H.BROW_LAT, np.exp(-((lat - H.BROW_LAT) / 0.10) ** 2),
                      np.exp(-((lat - H.BROW_LAT) / 0.45) ** 2))
        brow = _local(across * up * skin)
        self.f_brow = np.stack([np.zeros(len(v)), 0.0055 * brow, 0.0008 * brow], axis=1)

        ex = (np.abs(lon) - H.EYE_LON) / 0.15
        ey = (lat - H.EYE_LAT) / 0.07
        lid = np.where(ey < 0.45, _smoothstep(-0.6, 0.45, ey), 1 - _smoothstep(0.45, 2.0, ey))
        lid = _local(lid * np.exp(-ex ** 4) * skin)
        travel = 1.05 * 0.07 * H.SEMI_AXES[1] * np.cos(H.EYE_LAT)
        self.f_blink = np.stack([np.zeros(len(v)), -travel * lid, 0.0015 * lid], axis=1)

        self.asym_x = np.tanh(v[:, 0] / 0.02)     # -1 .. 1 across the face
        # closure: how much each vertex of a slit column follows its lip edge to the meeting point
        self.w_close = _local(np.where(in_slit, np.where(skin, np.exp(-vv ** 2), inside), 0.0) * (side != 0))
        self.upper_side = in_slit & (side > 0)
        self.lower_side = in_slit & (side < 0)

    def deform(self, act: dict[str, np.ndarray], asymmetry: float = 0.0) -> np.ndarray:
        """Activations (each (T,)) -> offsets (T, V, 3) float32 of the base head."""
        theta = JAW_MAX * np.asarray(act["jaw"])[:, None]                     # (T, 1)
        c, s = np.cos(theta) - 1.0, np.sin(theta)
        ry, rz = self.arm[None, :, 0], self.arm[None, :, 1]
        off = np.zeros((len(theta), len(self.rest), 3))
        off[:, :, 1] = (c * ry - s * rz) * self.w_jaw
        off[:, :, 2] = (s * ry + c * rz) * self.w_jaw
        for name, f in (("open", self.f_open), ("round", self.f_round), ("spread", self.f_spread),
                        ("brow", self.f_brow)):
            off += np.asarray(act[name])[:, None, None] * f[None]
        off *= (1.0 + asymmetry * self.asym_x)[None, :, None]
        off += np.asarray(act["blink"])[:, None, None] * self.f_blink[None]

        head = self.head
        col = np.maximum(head.column, 0)
        # tuck (f, v): the lower lip rises to just under and behind the upper lip
        upper, lower = off[:, head.upper_edge], off[:, head.lower_edge]              # (T, S, 3)
        goal = upper + np.array([0.0, -0.0015, -0.004])
        pull = np.asarray(act["tuck"])[:, None, None] * (goal - lower)
        off[:, self.lower_side] += pull[:, col[self.lower_side]] * self.w_close[self.lower_side, None]
        # closure (p, b, m): both lips go to where their edges meet, dragging their neighbours
        upper, lower = off[:, head.upper_edge], off[:, head.lower_edge]
        mid = 0.5 * (upper + lower)
        close = np.asarray(act["close"])[:, None, None]
        for mask, edge in ((self.upper_side, upper), (self.lower_side, lower)):
            off[:, mask] += (close * (mid - edge))[:, col[mask]] * self.w_close[mask, None]
        return off.astype(np.float32)

    def animate(self, utt: Utterance, style: Style, seed: int = 0, fps: float = FPS) -> np.ndarray:
        """Offsets (T, V, 3) of the base head for `utt` spoken in `style` (T = duration * fps)."""
        return self.deform(tracks(utt, style, seed, fps), style.asymmetry)

    def lip_gap(self, offsets: np.ndarray) -> np.ndarray:
        """(T, S) distance between the upper and lower lip edge at each slit column."""
        return np.linalg.norm(offsets[:, self.head.upper_edge] - offsets[:, self.head.lower_edge], axis=-1)


def identity_template(head: H.Head, seed: int, strength: float = 1.0) -> np.ndarray:
    """A speaker's neutral face (V, 3) float32: the base head under a random smooth deformation.

    Per-axis scale (about +-5%), then a sum of broad random bumps outwards from the head's
    centre (about +-3 mm) and feature-sized ones on the nose, lips, cheeks, chin and brows. Every
    term is a smooth function of the base position (the pocket follows its lips), so coincident
    vertices (the two lip edges) stay together and the mouth stays closed at rest.
    """
    rng = np.random.default_rng(seed)
    v = head.vertices.astype(np.float64)
    scale = np.exp(rng.normal(0.0, 0.05 * strength, 3))
    outward = v / np.linalg.norm(v, axis=1, keepdims=True)
    shift = np.zeros(len(v))
    for _ in range(10):  # broad shape
        c = rng.normal(size=3)
        c /= np.linalg.norm(c)
        width = rng.uniform(0.35, 0.8)
        angle = np.arccos(np.clip(outward @ c, -1, 1))
        shift += rng.normal(0.0, 0.003 * strength) * np.exp(-(angle / width) ** 2)
    features = [(-0.2, 0.0, 0.12, 0.09), (H.LIP_LAT, 0.0, 0.07, 0.3), (-0.95, 0.0, 0.15, 0.3),
                (-0.3, 0.6, 0.2, 0.25), (-0.3, -0.6, 0.2, 0.25), (H.BROW_LAT, 0.0, 0.1, 0.6)]
    forward = np.zeros(len(v))
    for lat0, lon0, s_lat, s_lon in features:
        forward += rng.normal(0.0, 0.0025 * strength) * H.bump(head.lat, head.lon, lat0, lon0, s_lat, s_lon)
    out = v * scale + shift[:, None] * outward
    out[:, 2] += forward
    return out.astype(np.float32)
