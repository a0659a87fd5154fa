"""ARKit-52 names: Apple's order and the spellings other tools write."""

from __future__ import annotations

import pytest

from motion.face.blendshapes import ARKIT_NAMES, arkit_name, name_key


def test_52_names_in_apples_order():
    assert len(ARKIT_NAMES) == 52 and len(set(ARKIT_NAMES)) == 52
    assert ARKIT_NAMES[:2] == ("eyeBlinkLeft", "eyeLookDownLeft") and ARKIT_NAMES[7] == "eyeBlinkRight"
    assert ARKIT_NAMES[14:18] == ("jawForward", "jawLeft", "jawRight", "jawOpen")
    assert ARKIT_NAMES[-1] == "tongueOut" and ARKIT_NAMES.index("browDownLeft") == 41


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("eyeBlink_L", "eyeBlinkLeft"),  # ARKit's own raw values
        ("EyeBlinkLeft", "eyeBlinkLeft"),  # Live Link Face (PascalCase)
        ("eyeblinkright", "eyeBlinkRight"),
        ("EYE_BLINK_R", "eyeBlinkRight"),
        ("eyeBlink.L", "eyeBlinkLeft"),  # Blender's side suffix
        ("blendShape1.eyeBlink_L", "eyeBlinkLeft"),  # Maya's node prefix
        ("Face:mouthSmile_Right", "mouthSmileRight"),
        ("mouthLeft", "mouthLeft"),
        ("MouthRight", "mouthRight"),
        ("JawOpen", "jawOpen"),
        ("browInnerUp", "browInnerUp"),
        ("cheekSquint_R", "cheekSquintRight"),
        ("viseme_aa", None),
        ("mouthOpen", None),
    ],
)
def test_spellings(written, canonical):
    assert arkit_name(written) == canonical


def test_every_name_round_trips_in_each_spelling():
    for name in ARKIT_NAMES:
        pascal = name[0].upper() + name[1:]
        short = (
            name.replace("Left", "_L").replace("Right", "_R") if name.endswith(("Left", "Right")) else name
        )
        for spelling in (name, pascal, short, name.upper(), name.lower()):
            assert arkit_name(spelling) == name, spelling
    assert name_key("eyeBlink_L") == name_key("EyeBlinkLeft") == "eyeblinkleft"
