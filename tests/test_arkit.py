"""Recognising ARKit shape keys under the conventions rigs use (mimic_blender/core/arkit.py)."""

import pytest

from mimic_blender.core import arkit


def test_there_are_52_distinct_names():
    assert len(arkit.NAMES) == 52 == len(set(arkit.NAMES))


@pytest.mark.parametrize("key, want", [
    ("jawOpen", "jawOpen"), ("JawOpen", "jawOpen"), ("jaw_open", "jawOpen"), ("JAW_OPEN", "jawOpen"),
    ("mouthSmile_L", "mouthSmileLeft"), ("mouthSmileLeft", "mouthSmileLeft"), ("mouthSmile.R", "mouthSmileRight"),
    ("CC_Base_jawOpen", "jawOpen"), ("Face.eyeBlink_R", "eyeBlinkRight"), ("blendShape1.browInnerUp", "browInnerUp"),
    ("eye_blink_left", "eyeBlinkLeft"), ("tongueOut", "tongueOut"),
    ("Basis", None), ("jawOpenWide", None), ("smile", None), ("mouthSmile", None), ("Key 1", None),
])
def test_canonical(key, want):
    assert arkit.canonical(key) == want


def test_recognise_and_choose():
    keys = ["Basis", "jawOpen", "JawOpen", "mouthSmile_L", "custom_snarl", "EyeBlinkRight"]
    assert arkit.recognise(keys) == {"jawOpen": "jawOpen", "mouthSmile_L": "mouthSmileLeft",
                                     "EyeBlinkRight": "eyeBlinkRight"}
    assert arkit.choose(keys, "arkit") == ["jawOpen", "mouthSmile_L", "EyeBlinkRight"]
    assert arkit.choose(keys, "custom_snarl, jawOpen") == ["custom_snarl", "jawOpen"]
    with pytest.raises(ValueError, match="no shape key named 'nope'"):
        arkit.choose(keys, "jawOpen,nope")
