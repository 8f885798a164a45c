"""Recognising ARKit shape keys under the conventions rigs use (mimic_blender/core/arkit.py)."""

import pytest

from mimic_blender.core.arkit import ARKIT_NAMES, arkit_name, arkit_names, choose


@pytest.mark.parametrize("name, canonical", [
    ("jawOpen", "jawOpen"), ("JawOpen", "jawOpen"), ("jaw_open", "jawOpen"), ("JAW_OPEN", "jawOpen"),
    ("jawopen", "jawOpen"), ("mouthSmile_L", "mouthSmileLeft"), ("mouthSmileLeft", "mouthSmileLeft"),
    ("mouthSmile.R", "mouthSmileRight"), ("L_mouthSmile", "mouthSmileLeft"), ("CC_Base_JawOpen", "jawOpen"),
    ("Face.mouthSmile_L", "mouthSmileLeft"), ("A38_Mouth_Smile_Left", "mouthSmileLeft"),
    ("blendShape1.eyeLookUp_R", "eyeLookUpRight"), ("EyeBlink_L", "eyeBlinkLeft"), ("tongue-out", "tongueOut"),
    ("mouthLeft", "mouthLeft"), ("cheekPuff", "cheekPuff"),
    ("Basis", None), ("smile", None), ("mouthSmile", None), ("eyeBlinkLeft2", None), ("", None),
])
def test_arkit_names_in_any_convention(name, canonical):
    assert arkit_name(name) == canonical


def test_all_52_in_several_conventions():
    assert len(ARKIT_NAMES) == len(set(ARKIT_NAMES)) == 52
    for canonical in ARKIT_NAMES:
        side = "Left" if canonical.endswith("Left") else "Right" if canonical.endswith("Right") else ""
        stem = canonical[:-len(side)] if side else canonical
        spellings = [canonical, canonical[0].upper() + canonical[1:], "CC_Base_" + canonical, "Face." + canonical,
                     canonical.lower(), canonical.upper()]
        if side:
            spellings += [f"{stem}_{side[0]}", f"{stem}.{side[0].lower()}", f"{side[0]}_{stem}"]
        for spelling in spellings:
            assert arkit_name(spelling) == canonical, spelling


def test_one_key_per_arkit_shape():
    mapping = arkit_names(["Basis", "mouthSmile_L", "mouthSmileLeft", "JawOpen", "CC_Base_JawOpen", "hat"])
    assert mapping == {"mouthSmileLeft": "mouthSmileLeft", "JawOpen": "jawOpen"}



def test_choose_arkit_or_named_keys():
    keys = ["Basis", "jawOpen", "mouthSmile_L", "custom_snarl", "EyeBlinkRight"]
    assert choose(keys, "arkit") == ["jawOpen", "mouthSmile_L", "EyeBlinkRight"]
    assert choose(keys, "custom_snarl, jawOpen") == ["custom_snarl", "jawOpen"]
    with pytest.raises(ValueError, match="no shape key named 'nope'"):
        choose(keys, "jawOpen,nope")
