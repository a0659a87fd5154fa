import json

import numpy as np
import pytest

from motion.face.blendshapes.arkit import ARKIT_NAMES
from motion.face.blendshapes.errors import RigFormatError, RigNotFoundError
from motion.face.blendshapes.weights_io import (
    LIVE_LINK_COLUMNS,
    read_live_link_csv,
    read_weights_json,
    write_live_link_csv,
    write_weights_json,
)


def _weights(frames: int = 45, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.2, 1.2, (frames, 52))  # out of range on purpose: clipped


def test_live_link_csv_has_the_apps_header_timecodes_and_round_trips(tmp_path):
    weights = _weights()
    path = write_live_link_csv(tmp_path / "take.csv", weights, fps=30)
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    assert header[:4] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft", "EyeLookDownLeft"]
    assert header[16:20] == ["JawForward", "JawRight", "JawLeft", "JawOpen"]  # the app's order, not Apple's
    assert header[23:25] == ["MouthRight", "MouthLeft"]
    assert header[-9:] == [
        "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
        "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
    ]  # fmt: skip
    assert len(header) == 2 + 61 and len(LIVE_LINK_COLUMNS) == 52
    rows = [line.split(",") for line in lines[1:]]
    assert [r[0] for r in rows[:2]] + [rows[29][0], rows[30][0], rows[44][0]] == [
        "00:00:00:00.000", "00:00:00:01.000", "00:00:00:29.000", "00:00:01:00.000", "00:00:01:14.000",
    ]  # fmt: skip
    assert {r[1] for r in rows} == {"61"} and {v for r in rows for v in r[-9:]} == {"0"}
    jaw_open = header.index("JawOpen")
    assert float(rows[3][jaw_open]) == pytest.approx(
        np.clip(weights[3, ARKIT_NAMES.index("jawOpen")], 0, 1), abs=1e-6
    )
    track = read_live_link_csv(path, fps=30)
    np.testing.assert_allclose(track.weights, np.clip(weights, 0, 1), atol=1e-6)
    assert track.fps == 30 and track.ignored == ()


def test_a_csv_as_the_app_records_it_is_read_in_arkit_order_at_a_uniform_rate(tmp_path):
    # 60 fps with a dropped frame, camelCase names in a shuffled order, and an extra column
    names = list(ARKIT_NAMES)[::-1]
    lines = ["Timecode,BlendShapeCount," + ",".join(names) + ",HeadYaw,Custom"]
    stamps = ["10:00:00:58.500", "10:00:00:59.500", "10:00:01:00.500", "10:00:01:02.500"]
    for i, stamp in enumerate(stamps):
        lines.append(f"{stamp},61," + ",".join(str((i + 1) / 10 * (k % 2)) for k in range(52)) + ",0.1,7")
    (tmp_path / "app.csv").write_text("\n".join(lines) + "\n")
    track = read_live_link_csv(tmp_path / "app.csv", fps=60)
    assert track.weights.shape == (5, 52) and track.ignored == ("Custom",)
    column = names.index("jawOpen")
    expected = [
        (i + 1) / 10 * (column % 2) for i in (0, 1, 2, 2, 3)
    ]  # frame 3 missing: nearest (ties: earlier)
    np.testing.assert_allclose(track.weights[:, ARKIT_NAMES.index("jawOpen")], expected)


def test_weights_json_round_trips_and_reads_other_spellings(tmp_path):
    weights = _weights(7, seed=1)
    path = write_weights_json(tmp_path / "w.json", weights, fps=25)
    document = json.loads(path.read_text())
    assert (document["exportFps"], document["numPoses"], document["numFrames"]) == (25.0, 52, 7)
    assert document["facsNames"] == list(ARKIT_NAMES)
    track = read_weights_json(path)
    np.testing.assert_allclose(track.weights, np.clip(weights, 0, 1), atol=1e-6)
    other = {
        "exportFps": 30,
        "facsNames": ["JawOpen", "eyeBlink_L", "viseme_aa"],
        "weightMat": [[0.5, 1, 0.2]],
    }
    (tmp_path / "a2f.json").write_text(json.dumps(other))
    track = read_weights_json(tmp_path / "a2f.json")
    assert track.ignored == ("viseme_aa",)
    assert track.weights[0, ARKIT_NAMES.index("jawOpen")] == 0.5
    assert track.weights[0, ARKIT_NAMES.index("eyeBlinkLeft")] == 1.0


def test_bad_weight_files_give_one_line(tmp_path):
    (tmp_path / "not.csv").write_text("a,b\n1,2\n")
    (tmp_path / "bad.json").write_text("{}")
    for call, error in (
        (lambda: read_live_link_csv(tmp_path / "missing.csv"), RigNotFoundError),
        (lambda: read_live_link_csv(tmp_path / "not.csv"), RigFormatError),
        (lambda: read_weights_json(tmp_path / "bad.json"), RigFormatError),
    ):
        with pytest.raises(error) as caught:
            call()
        assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)
    with pytest.raises(ValueError, match=r"\[T, 52\]"):
        write_live_link_csv(tmp_path / "x.csv", np.zeros((3, 51)), 30)
