"""The 52 ARKit blendshape names in Apple's order, and how target names written by other tools map onto them.

``ARKIT_NAMES`` follows Apple's ``ARFaceAnchor.BlendShapeLocation`` documentation, group by group (left eye, right
eye, mouth and jaw, eyebrows / cheeks / nose, tongue); Unreal's ``EARFaceBlendShape`` enumerates the same 52 in the
same order. The names are the Swift property names (camelCase, ``eyeBlinkLeft``).

The same target reaches ``talk`` spelled many ways: ARKit's own raw string values use ``_L`` / ``_R``
(``eyeBlink_L``), the Live Link Face app writes PascalCase (``EyeBlinkLeft``), Blender users write ``eyeBlink.L``,
Maya exports prefix the blendShape node (``blendShape1.eyeBlink_L``), others shout (``EYEBLINK_LEFT``).
:func:`name_key` maps every one of those to one comparison key, and :func:`arkit_name` to the canonical name.
"""

from __future__ import annotations

import re

__all__ = ["ARKIT_NAMES", "arkit_name", "name_key"]

ARKIT_NAMES: tuple[str, ...] = (
    # left eye
    "eyeBlinkLeft",
    "eyeLookDownLeft",
    "eyeLookInLeft",
    "eyeLookOutLeft",
    "eyeLookUpLeft",
    "eyeSquintLeft",
    "eyeWideLeft",
    # right eye
    "eyeBlinkRight",
    "eyeLookDownRight",
    "eyeLookInRight",
    "eyeLookOutRight",
    "eyeLookUpRight",
    "eyeSquintRight",
    "eyeWideRight",
    # mouth and jaw
    "jawForward",
    "jawLeft",
    "jawRight",
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthLeft",
    "mouthRight",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    # eyebrows, cheeks and nose
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "noseSneerLeft",
    "noseSneerRight",
    # tongue
    "tongueOut",
)

# A one-letter side after a separator ("_L", ".R", "-l", " r"), or a whole side word after one ("_Left").
_SHORT_SIDE = re.compile(r"[._\-\s](?P<side>[LRlr]|left|right|Left|Right|LEFT|RIGHT)$")
# A namespace / node prefix: everything up to the last '.', ':' or '|' ("blendShape1.", "Face:", "|head|").
_PREFIX = re.compile(r"^.*[.:|]")
_NON_ALNUM = re.compile(r"[^0-9a-z]")


def name_key(name: str) -> str:
    """The comparison key of a target name: lower case, no separators, the side spelled out at the end.

    ``eyeBlink_L``, ``EyeBlinkLeft``, ``eyeBlinkLeft``, ``eyeBlink.L``, ``blendShape1.eyeBlink_L`` and
    ``EYE_BLINK_LEFT`` all give ``"eyeblinkleft"``. The side suffix is read before the namespace prefix is cut, so
    that Blender's ``.L`` is a side and not a namespace.

    Args:
        name: a target name as a file stores it.

    Returns:
        The key; two names with the same key name the same target.
    """
    name = name.strip()
    side = ""
    m = _SHORT_SIDE.search(name)
    if m is not None:
        side = "left" if m.group("side").lower() in ("l", "left") else "right"
        name = name[: m.start()]
    name = _PREFIX.sub("", name)
    return _NON_ALNUM.sub("", name.lower()) + side


_ARKIT_BY_KEY: dict[str, str] = {name_key(n): n for n in ARKIT_NAMES}


def arkit_name(name: str) -> str | None:
    """The canonical ARKit name (``eyeBlinkLeft``) that ``name`` spells, or None when it is not an ARKit target.

    Args:
        name: a target name in any of the spellings :func:`name_key` accepts.
    """
    return _ARKIT_BY_KEY.get(name_key(name))
