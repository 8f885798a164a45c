"""The 52 ARKit blendshape names, and recognising them in a character's shape keys whatever the
rig's convention: `jawOpen`, `JawOpen`, `jaw_open`, `mouthSmile_L`, `mouthSmileLeft`,
`CC_Base_jawOpen`, `Face.eyeBlink_R`, ... No bpy."""

from __future__ import annotations

import re

NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel",
    "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft",
    "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
_CANONICAL = {name.lower(): name for name in NAMES}
_SIDES = {"l": "left", "r": "right", "left": "left", "right": "right"}


def _tokens(name: str) -> list[str]:
    """Words of a key name: split at separators, lower case; a trailing L/R side spelled out."""
    tokens = [t.lower() for t in re.split(r"[^0-9A-Za-z]+", name) if t]
    if len(tokens) > 1 and tokens[-1] in _SIDES:
        tokens[-2:] = [tokens[-2] + _SIDES[tokens[-1]]]
    return tokens


def canonical(name: str) -> str | None:
    """The ARKit name a shape key stands for, or None. A prefix is allowed where the name has a
    separator (`CC_Base_`, `Face.`), so `jaw_open` and `JawOpen` match `jawOpen`."""
    tokens = _tokens(name)
    for start in range(len(tokens)):
        found = _CANONICAL.get("".join(tokens[start:]))
        if found is not None:
            return found
    return None


def recognise(key_names) -> dict[str, str]:
    """{shape key name: ARKit name} for the keys that are ARKit shapes (the first key wins when two
    stand for the same shape)."""
    out, taken = {}, set()
    for key in key_names:
        name = canonical(key)
        if name is not None and name not in taken:
            out[key], taken = name, taken | {name}
    return out


def choose(key_names, spec: str) -> list[str]:
    """The keys a spec names: "ARKIT" (every ARKit-named key) or comma-separated names."""
    key_names = list(key_names)
    if spec.strip().upper() == "ARKIT":
        return list(recognise(key_names))
    wanted = [n.strip() for n in spec.split(",") if n.strip()]
    missing = [n for n in wanted if n not in key_names]
    if missing:
        raise ValueError(f"no shape key named {', '.join(repr(m) for m in missing)} (keys: {', '.join(key_names)})")
    return wanted
