"""The 52 ARKit blendshape names, and recognising them in a character's shape-key names whatever
the convention: any case, separators or none (`jawOpen`, `JawOpen`, `jaw_open`, `JAW-OPEN`),
sides as `Left`/`Right`, `_L`/`.R`, `L_`... at either end (`mouthSmile_L`, `mouthSmileLeft`,
`L_mouthSmile`), and any prefix (`CC_Base_`, `Face.`, `blendShape1.`, `A38_`)."""

from __future__ import annotations

import re

ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose",
    "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
SIDES = {"l": "left", "left": "left", "r": "right", "right": "right"}
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def words(name: str) -> list[str]:
    """Lower-case words of a name: split at separators and case changes (`mouthSmile_L` ->
    mouth, smile, l; `JAWOpen` -> jaw, open)."""
    return [w.lower() for w in _WORD.findall(name)]


def _key(name: str) -> str:
    """The words run together, a side word moved to the end and spelled out."""
    parts = words(name)
    if len(parts) > 1 and parts[0] in SIDES and parts[-1] not in SIDES:
        parts = parts[1:] + parts[:1]
    if parts and parts[-1] in SIDES:
        parts[-1] = SIDES[parts[-1]]
    return "".join(parts)


_CANONICAL = {_key(n): n for n in ARKIT_NAMES}
_LONGEST_FIRST = sorted(_CANONICAL, key=len, reverse=True)


def arkit_name(name: str) -> str | None:
    """The canonical ARKit name a shape key stands for, or None."""
    key = _key(name)
    for canonical in _LONGEST_FIRST:   # the longest match: `eyeLookUpLeft`, not a shorter tail of it
        if key.endswith(canonical):
            return _CANONICAL[canonical]
    return None


def arkit_names(names) -> dict[str, str]:
    """{shape-key name: canonical ARKit name} for the names that are ARKit shapes, one key per
    ARKit shape: when two names mean the same shape, the one spelled exactly as ARKit does wins,
    otherwise the first."""
    out: dict[str, str] = {}
    owner: dict[str, str] = {}
    for name in names:
        canonical = arkit_name(name)
        if canonical is None:
            continue
        if canonical not in owner or (name == canonical and owner[canonical] != canonical):
            out.pop(owner.get(canonical, ""), None)
            owner[canonical] = name
            out[name] = canonical
    return out


def choose(key_names, spec: str) -> list[str]:
    """The keys a spec names: "ARKIT" (every ARKit-named key) or comma-separated names."""
    key_names = list(key_names)
    if spec.strip().upper() == "ARKIT":
        return list(arkit_names(key_names))
    wanted = [n.strip() for n in spec.split(",") if n.strip()]
    missing = [n for n in wanted if n not in key_names]
    if missing:
        raise ValueError(f"no shape key named {', '.join(repr(m) for m in missing)} (keys: {', '.join(key_names)})")
    return wanted
