"""Speech for the synthetic dataset: espeak-ng voices, the LibriVox clips of Debian's
pocketsphinx-testdata, and phone timings from PyPI pocketsphinx's bundled en-us model.

Timings come from forced alignment when the words are known (every sentence here has its text):
a word pass, then a phone pass over the same audio, both at pocketsphinx's 100 frames per second.
Without a text, or when the alignment cannot reach the end of the audio, phones are recognised
with the bundled phone language model (allphone search) instead. Phones are CMU/ARPAbet labels
without stress ("AA", "B", "SIL", ...); noises become "SIL".
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from ..errors import MimicError

SAMPLE_RATE = 16000
PHONE_RATE = 100  # pocketsphinx frames per second (its default -frate)
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")

VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})
BILABIALS = frozenset({"P", "B", "M"})
PHONES = VOWELS | {"B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
                   "SIL", "T", "TH", "V", "W", "Y", "Z", "ZH"}


@dataclass(frozen=True)
class Phone:
    label: str    # ARPAbet without stress, or "SIL"
    start: float  # seconds from the start of the audio
    end: float

    @property
    def center(self) -> float:
        return 0.5 * (self.start + self.end)


@dataclass(frozen=True)
class Utterance:
    """One spoken sentence: 16 kHz mono audio and its phones, which tile [0, duration]."""
    audio: np.ndarray          # (N,) float32 at 16 kHz, on the 16-bit grid (see `quantize`)
    phones: tuple[Phone, ...]
    text: str = ""
    timing: str = "aligned"    # how the phones were found: "aligned" or "recognized"

    def __post_init__(self):
        object.__setattr__(self, "audio", quantize(self.audio))

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def loudness(self) -> np.ndarray:
        """Per phone: RMS level in dB relative to the loudest phone (0 = loudest, SIL included)."""
        rms = np.empty(len(self.phones))
        for i, p in enumerate(self.phones):
            a = int(p.start * SAMPLE_RATE)
            chunk = self.audio[a:max(int(p.end * SAMPLE_RATE), a + 1)]
            rms[i] = np.sqrt(np.mean(np.square(chunk, dtype=np.float64))) if len(chunk) else 0.0
        db = 20 * np.log10(np.maximum(rms, 1e-6))
        return db - db.max()

    def padded(self, pause: float = 0.2) -> Utterance:
        """With digital silence added where needed, so that it starts and ends with `pause` s of SIL."""
        def silence(p: Phone) -> float:
            return p.end - p.start if p.label == "SIL" else 0.0
        before = round(max(0.0, pause - silence(self.phones[0])) * SAMPLE_RATE)
        after = round(max(0.0, pause - silence(self.phones[-1])) * SAMPLE_RATE)
        if not before and not after:
            return self
        shift = before / SAMPLE_RATE
        audio = np.concatenate([np.zeros(before, np.float32), self.audio, np.zeros(after, np.float32)])
        phones = [Phone(p.label, p.start + shift, p.end + shift) for p in self.phones]
        return Utterance(audio, tile(phones, len(audio) / SAMPLE_RATE), self.text, self.timing)

    def stretched(self, factor: float) -> Utterance:
        """Played `factor` times faster (tape speed: tempo and pitch together); phones follow exactly."""
        audio = soxr.resample(self.audio, SAMPLE_RATE * factor, SAMPLE_RATE, quality="HQ").astype(np.float32)
        duration = len(audio) / SAMPLE_RATE
        phones = [Phone(p.label, p.start / factor, p.end / factor) for p in self.phones]
        return Utterance(audio, tile(phones, duration), self.text, self.timing)


# --------------------------------------------------------------------------------------------
# pocketsphinx

def _model_path() -> Path:
    try:
        import pocketsphinx
    except ImportError:
        raise MimicError("phone timings need PyPI pocketsphinx: pip install pocketsphinx") from None
    return Path(pocketsphinx.get_model_path())


@functools.lru_cache(maxsize=1)
def _aligner():
    """A decoder for forced alignment. No n-gram model: alignment does not use one, and loading
    it costs most of a second. Bestpath off: it can give the first phone an impossible 1-frame
    duration, which then fails the phone pass. Wide beams: with the default ones, synthetic
    voices (which the acoustic model scores poorly) often lose every path before the end."""
    from pocketsphinx import Decoder
    model = _model_path()
    return Decoder(hmm=str(model / "en-us" / "en-us"), dict=str(model / "en-us" / "cmudict-en-us.dict"),
                   lm=None, bestpath=False, beam=1e-200, wbeam=1e-200, pbeam=1e-200, loglevel="FATAL")


@functools.lru_cache(maxsize=1)
def _recognizer():
    """A phone recogniser: allphone search with the bundled phone trigram model."""
    from pocketsphinx import Decoder
    model = _model_path()
    return Decoder(hmm=str(model / "en-us" / "en-us"), allphone=str(model / "en-us" / "en-us-phone.lm.bin"),
                   lm=None, dict=None, beam=1e-20, pbeam=1e-20, lw=2.0, bestpath=False, loglevel="FATAL")


def words(text: str) -> list[str]:
    """The text as the dictionary spells it: lower case, letters, digits and apostrophes."""
    return re.findall(r"[a-z0-9']+", text.lower())


def pronunciation(word: str) -> str | None:
    """The dictionary's (first) phones of a word, e.g. "M AY T"; None if it lacks the word."""
    return _aligner().lookup_word(word.lower())


def missing_words(text: str) -> list[str]:
    """The words of `text` that the pronunciation dictionary lacks (they cannot be aligned)."""
    return [w for w in words(text) if pronunciation(w) is None]


def _int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(audio, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def _pcm(audio: np.ndarray) -> bytes:
    return _int16(audio).astype("<i2").tobytes()


def align(audio: np.ndarray, text: str) -> list[Phone]:
    """Forced phone alignment of 16 kHz `audio` to `text`. Raises MimicError if it fails."""
    return align_words(audio, text)[0]


def align_words(audio: np.ndarray, text: str) -> tuple[list[Phone], list[Phone]]:
    """Forced alignment: (phones, words), the words as Phones labelled with the word (no silences)."""
    unknown = missing_words(text)
    if unknown:
        raise MimicError(f"not in the pronunciation dictionary: {', '.join(unknown)}")
    decoder, data = _aligner(), _pcm(audio)
    try:
        decoder.set_align_text(" ".join(words(text)))
        for setup in (None, decoder.set_alignment):  # word pass, then the phone pass
            if setup is not None:
                setup()
            decoder.start_utt()
            decoder.process_raw(data, full_utt=True)
            decoder.end_utt()
        alignment = decoder.get_alignment()
        phones = [(p.name, p.start, p.start + p.duration) for p in alignment.phones()]
        spoken = [Phone(re.sub(r"\(\d+\)$", "", w.name), w.start / PHONE_RATE, (w.start + w.duration) / PHONE_RATE)
                  for w in alignment.words() if not w.name.startswith(("<", "["))]
    except RuntimeError as e:
        raise MimicError(f"pocketsphinx could not align {text!r}: {e}") from None
    return list(_to_phones(phones, len(audio) / SAMPLE_RATE)), spoken


def recognize(audio: np.ndarray) -> list[Phone]:
    """Phones recognised in 16 kHz `audio` without a text (less accurate than `align`)."""
    decoder = _recognizer()
    decoder.start_utt()
    decoder.process_raw(_pcm(audio), full_utt=True)
    decoder.end_utt()
    return list(_to_phones([(s.word, s.start_frame, s.end_frame + 1) for s in decoder.seg()], len(audio) / SAMPLE_RATE))


def phones(audio: np.ndarray, text: str | None = None) -> tuple[list[Phone], str]:
    """Phone timings and how they were found ("aligned" or "recognized")."""
    if text and not missing_words(text):
        try:
            return align(audio, text), "aligned"
        except MimicError:
            pass
    return recognize(audio), "recognized"


def _to_phones(frames: list[tuple[str, int, int]], duration: float) -> tuple[Phone, ...]:
    """(label, start frame, end frame) -> Phones tiling [0, duration]: noises and unknown labels
    become SIL, neighbours with the same label merge."""
    out: list[Phone] = []
    for label, start, end in frames:
        label = re.sub(r"\d", "", label.upper())
        label = label if label in PHONES else "SIL"
        start, end = start / PHONE_RATE, end / PHONE_RATE
        if end <= start:
            continue
        out.append(Phone(label, start, end))
    return tile(out, duration)


def tile(phones: list[Phone], duration: float) -> tuple[Phone, ...]:
    """Clip to [0, duration], fill gaps with SIL, merge repeated SIL."""
    out: list[Phone] = []
    t = 0.0
    for p in phones:
        start, end = max(p.start, t), min(p.end, duration)
        if end - start <= 1e-9:
            continue
        if start > t + 1e-9:
            out.append(Phone("SIL", t, start))
        out.append(Phone(p.label, start, end))
        t = end
    if t < duration - 1e-9:
        out.append(Phone("SIL", t, duration))
    merged: list[Phone] = []
    for p in out:
        if merged and p.label == "SIL" and merged[-1].label == "SIL":
            merged[-1] = Phone("SIL", merged[-1].start, p.end)
        else:
            merged.append(p)
    return tuple(merged)


# --------------------------------------------------------------------------------------------
# voices

@dataclass(frozen=True)
class EspeakVoice:
    """An espeak-ng voice: language/dialect + variant (e.g. "en-us+f3"), words per minute, pitch 0-99."""
    name: str = "en-us"
    speed: int = 160
    pitch: int = 50

    def speak(self, text: str, pad: float = 0.2) -> np.ndarray:
        """16 kHz float32 speech of `text`, with `pad` seconds of silence on both sides."""
        exe = _espeak()
        language, _, variant = self.name.partition("+")
        languages, variants = _espeak_voices()
        if language not in languages or (variant and variant not in variants):
            raise MimicError(f"espeak-ng has no voice {self.name} (languages: espeak-ng --voices; "
                             "variants after '+': espeak-ng --voices=variant)")
        run = subprocess.run([exe, "--stdout", "-v", self.name, "-s", str(self.speed), "-p", str(self.pitch), text],
                             capture_output=True, check=False, env={**os.environ, "LC_ALL": "C.UTF-8"})
        if run.returncode != 0 or not run.stdout:
            raise MimicError(f"espeak-ng failed for voice {self.name}: {run.stderr.decode(errors='replace').strip()}")
        data, rate = soundfile.read(io.BytesIO(run.stdout), dtype="float32")
        audio = soxr.resample(data, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
        gap = np.zeros(round(pad * SAMPLE_RATE), np.float32)
        return np.concatenate([gap, audio, gap])


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise MimicError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return exe


@functools.lru_cache(maxsize=1)
def _espeak_voices() -> tuple[frozenset[str], frozenset[str]]:
    """(languages and voice files, variants) espeak-ng knows; it silently falls back to its
    default voice for a name it does not know."""
    def table(*args: str) -> list[list[str]]:
        run = subprocess.run([_espeak(), *args], capture_output=True, text=True, check=False)
        return [line.split() for line in run.stdout.splitlines()[1:] if len(line.split()) >= 5]
    languages = {row[1] for row in table("--voices")} | {row[4].rsplit("/", 1)[-1] for row in table("--voices")}
    variants = {row[4].rsplit("/", 1)[-1] for row in table("--voices=variant")}
    return frozenset(languages), frozenset(variants)


@dataclass(frozen=True)
class Clip:
    """A LibriVox recording from pocketsphinx-testdata with its transcript."""
    name: str
    path: Path
    text: str


def librivox_clips(folder: Path = LIBRIVOX) -> list[Clip]:
    """The clips of pocketsphinx-testdata, in file order."""
    listing = folder / "transcription"
    if not listing.is_file():
        raise MimicError(f"no LibriVox clips at {folder} (Debian/Ubuntu: apt-get install pocketsphinx-testdata)")
    clips = []
    for line in listing.read_text().splitlines():
        match = re.fullmatch(r"\s*(.*?)\s*\((\S+)\)\s*", line)
        if not match:
            continue
        text = re.sub(r"</?s>", "", match.group(1)).strip()
        path = folder / f"{match.group(2)}.wav"
        if path.is_file():
            clips.append(Clip(match.group(2), path, text))
    if not clips:
        raise MimicError(f"no readable clips listed in {listing}")
    return clips


def load_clip(clip: Clip) -> np.ndarray:
    data, rate = soundfile.read(clip.path, dtype="float32", always_2d=True)
    audio = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(audio, dtype=np.float32)


def utterance(audio: np.ndarray, text: str) -> Utterance:
    """Audio + text -> an Utterance with aligned (or, failing that, recognised) phones."""
    audio = quantize(audio)
    found, how = phones(audio, text)
    return Utterance(audio, tuple(found), text, how)


def quantize(audio: np.ndarray) -> np.ndarray:
    """float32 audio on the 16-bit grid: exactly what reading its 16-bit WAV gives back."""
    return (_int16(audio) / 32768.0).astype(np.float32)


def write_wav(path: str | Path, audio: np.ndarray) -> None:
    """16 kHz 16-bit mono WAV of quantized audio (lossless for `quantize`d input)."""
    soundfile.write(str(path), _int16(audio), SAMPLE_RATE, subtype="PCM_16")
