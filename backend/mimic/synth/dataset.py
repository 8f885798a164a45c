"""Plan and write a synthetic multi-speaker dataset in the VOCASET layout (see the package docstring).

Numbering follows FaceFormer's VOCASET protocol, which `mimic.data` applies: a train subject's
sentences 01-40 are trained on, a val or test subject's sentences 21-40 are evaluated. So a train
subject's readings are numbered from 01, a val or test subject's from 21 (past the 20th they wrap
to 01, outside the protocol). Sentence numbers are per subject, as in VOCASET; `sentences.json`
maps every file to its text, and texts have ids ("text007") shared by all subjects.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import sys
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from ..errors import MimicError
from . import phonemes as ph
from . import sentences as grammar
from .head import build_head
from .rig import FPS, Rig, Style, identity_template

FORMAT_VERSION = 1
VOICE_MODES = ("espeak", "librivox", "both")
ESPEAK_LANGUAGES = ("en-us", "en-us", "en-gb", "en-gb-x-rp", "en-us-nyc", "en-gb-scotland", "en-029")
ESPEAK_VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 6))
WINDOW_SPAN = (1.5, 3.6)   # s of speech in a LibriVox excerpt (plus 0.2 s of pause or silence each side)
HELDOUT_CLIPS = 2          # the shortest LibriVox clips are held-out texts, whole
MAX_SENTENCES = 40         # VOCASET's per-subject count (two-digit numbers, protocol ranges 1-40)
EVAL_FIRST = 21            # val and test subjects are evaluated on sentences 21-40


@dataclass(frozen=True)
class SynthConfig:
    speakers: int = 10
    sentences_per_speaker: int = 20
    vertices: int = 1500
    seed: int = 0
    voices: str = "both"       # espeak | librivox | both
    transfer_voices: int = 2   # speakers whose audio of each held-out text is re-animated
    transfer_styles: int = 3   # styles per such audio: the speaker's own, a train and a test speaker's

    def check(self) -> None:
        if self.speakers < 2:
            raise MimicError("--speakers must be at least 2 (one to train on, one held out)")
        if not 1 <= self.sentences_per_speaker <= MAX_SENTENCES:
            raise MimicError(f"--sentences-per-speaker must be 1 to {MAX_SENTENCES} (VOCASET's numbering)")
        if self.vertices < 200:
            raise MimicError("--vertices must be at least 200")
        if self.voices not in VOICE_MODES:
            raise MimicError(f"--voices must be one of {', '.join(VOICE_MODES)}")


@dataclass(frozen=True)
class LibrivoxVoice:
    """The LibriVox narrator played `rate` times faster (tempo and pitch together)."""
    rate: float = 1.0


@dataclass(frozen=True)
class Text:
    id: str                 # "text007", shared by every subject reading it
    text: str
    heldout: bool           # never read by a train or val subject
    source: str             # "grammar" (synthetic voices) or "librivox" (an excerpt of a clip)
    clip: str = ""          # for "librivox": the clip and the excerpt's span in it (s)
    start: float = 0.0
    end: float = 0.0


@dataclass
class Speaker:
    name: str
    split: str
    voice: ph.EspeakVoice | LibrivoxVoice
    style: Style
    identity_seed: int
    readings: dict[str, str] = field(default_factory=dict)   # "sentence21" -> text id

    @property
    def kind(self) -> str:
        return "librivox" if isinstance(self.voice, LibrivoxVoice) else "espeak"

    def can_say(self, text: Text) -> bool:
        return self.kind == "espeak" or text.source == "librivox"

    def describe(self) -> dict:
        return {"split": self.split, "voice": {"kind": self.kind, **asdict(self.voice)}, "style": self.style.to_dict(),
                "identity_seed": self.identity_seed, "sentences": self.readings}


@dataclass
class Plan:
    """Who says what, in which style: everything but audio and vertices."""
    config: SynthConfig
    speakers: list[Speaker]
    texts: dict[str, Text]
    transfer: list[tuple[str, str, str]]   # (text id, audio speaker, style speaker)
    clips: dict[str, tuple[np.ndarray, tuple[ph.Phone, ...]]]  # LibriVox clip -> (audio, phones)

    def split(self, name: str) -> list[str]:
        return [s.name for s in self.speakers if s.split == name]

    def speaker(self, name: str) -> Speaker:
        return next(s for s in self.speakers if s.name == name)


def stable_seed(*parts) -> int:
    """A seed from names (Python's hash() changes between runs)."""
    return zlib.crc32(":".join(map(str, parts)).encode())


def _splits(n: int) -> list[str]:
    n_test = max(1, round(0.2 * n))
    n_val = round(0.1 * n) if n >= 5 else 0
    return ["train"] * (n - n_test - n_val) + ["val"] * n_val + ["test"] * n_test


def _numbers(split: str, count: int) -> list[str]:
    """Sentence names of a subject's readings (see the module notes)."""
    if split == "train":
        return [f"sentence{k:02d}" for k in range(1, count + 1)]
    span = MAX_SENTENCES - EVAL_FIRST + 1
    return [f"sentence{EVAL_FIRST + k if k < span else k - span + 1:02d}" for k in range(count)]


def _librivox():
    """Aligned LibriVox clips and excerpts (clip, start, end, text): (clips, seen, held out).
    Excerpts start every second word and run up to WINDOW_SPAN[1] s; the shortest clips are
    held out whole, and no other excerpt is cut from them."""
    clips, seen, held = {}, [], []
    found = ph.librivox_clips()
    shortest = sorted(found, key=lambda c: soundfile.info(str(c.path)).duration)[:HELDOUT_CLIPS]
    for clip in found:
        audio = ph.load_clip(clip)
        phones, spoken = ph.align_words(audio, clip.text)
        clips[clip.name] = (audio, tuple(phones))
        duration = len(audio) / ph.SAMPLE_RATE
        whole = clip in shortest
        for a in ([0] if whole else range(0, len(spoken), 2)):
            b = len(spoken) - 1 if whole else a
            while not whole and b + 1 < len(spoken) and spoken[b + 1].end - spoken[a].start <= WINDOW_SPAN[1]:
                b += 1
            if not whole and spoken[b].end - spoken[a].start < WINDOW_SPAN[0]:
                continue
            before = spoken[a - 1].end if a else 0.0
            after = spoken[b + 1].start if b + 1 < len(spoken) else duration
            start = spoken[a].start - min(0.2, spoken[a].start - before)
            end = spoken[b].end + min(0.2, after - spoken[b].end)
            excerpt = (clip.name, round(start, 2), round(end, 2), " ".join(w.label for w in spoken[a:b + 1]))
            (held if whole else seen).append(excerpt)
    return clips, seen, held


def plan(config: SynthConfig) -> Plan:
    """Speakers (voices, styles, identities, splits), texts, who reads which, and the transfer
    triples. Deterministic for a config; each part has its own random stream."""
    config.check()
    M = config.sentences_per_speaker
    use_espeak, use_librivox = config.voices in ("espeak", "both"), config.voices in ("librivox", "both")

    # speakers; in "both", about 30% of each split (at least one train subject) is the LibriVox narrator
    rng = np.random.default_rng([config.seed, 1])
    splits = _splits(config.speakers)
    speakers = []
    for i, split in enumerate(splits):
        group = [k for k, s in enumerate(splits) if s == split]
        n_libri = round(0.3 * len(group))
        if split == "train":
            n_libri = min(max(n_libri, 1), max(len(group) - 1, 1))
        librivox = config.voices == "librivox" or (config.voices == "both" and i in group[len(group) - n_libri:])
        if librivox:
            voice = LibrivoxVoice(rate=round(float(rng.uniform(0.92, 1.08)), 3))
        else:
            voice = ph.EspeakVoice(f"{ESPEAK_LANGUAGES[rng.integers(len(ESPEAK_LANGUAGES))]}"
                                   f"+{ESPEAK_VARIANTS[rng.integers(len(ESPEAK_VARIANTS))]}",
                                   speed=int(rng.integers(140, 181)), pitch=int(rng.integers(30, 71)))
        speakers.append(Speaker(f"SynthTalk_{i + 1:02d}", split, voice, Style.sample(rng), int(rng.integers(2 ** 31))))

    # texts: seen ones first, then held-out ones
    rng = np.random.default_rng([config.seed, 2])
    clips, seen_ex, held_ex = _librivox() if use_librivox else ({}, [], [])
    n_seen_g, n_held_g = (2 * M, max(2, math.ceil(M / 2))) if use_espeak else (0, 0)
    sentences = grammar.generate(n_seen_g + n_held_g, rng)
    pool = ([(t, False, None) for t in sentences[:n_seen_g]] + [(e[3], False, e) for e in seen_ex]
            + [(t, True, None) for t in sentences[n_seen_g:]] + [(e[3], True, e) for e in held_ex])
    texts = {}
    for k, (text, heldout, ex) in enumerate(pool):
        tid = f"text{k + 1:03d}"
        texts[tid] = Text(tid, text, heldout, "librivox" if ex else "grammar",
                          **({"clip": ex[0], "start": ex[1], "end": ex[2]} if ex else {}))

    # readings: synthetic voices read the grammar's seen texts, the narrator its seen excerpts;
    # test subjects read held-out texts (any they can say) for half their sentences
    for k, speaker in enumerate(speakers):
        own = "librivox" if speaker.kind == "librivox" else "grammar"
        seen = [t for t in texts.values() if not t.heldout and t.source == own]
        offset = (k * M) % max(len(seen), 1)          # rotate, so that texts are read about evenly
        seen = seen[offset:] + seen[:offset]
        picked = []
        if speaker.split == "test":
            held = [t for t in texts.values() if t.heldout and speaker.can_say(t)]
            picked = [held[i] for i in sorted(rng.permutation(len(held))[:math.ceil(M / 2)])]
        picked += seen[:M - len(picked)]
        speaker.readings = dict(zip(_numbers(speaker.split, len(picked)), (t.id for t in picked)))

    # transfer: each held-out text x audio of a train and a test speaker x style of that speaker,
    # of another train speaker and of another test speaker
    transfer = []
    for tid, text in texts.items():
        if not text.heldout:
            continue
        voices = [s for s in speakers if s.can_say(text)]
        audio = [group[rng.integers(len(group))] for group in
                 ([s for s in voices if s.split == "train"], [s for s in voices if s.split == "test"]) if group]
        for a in audio[:config.transfer_voices]:
            styles = [a] + [group[rng.integers(len(group))] for group in
                            ([s for s in speakers if s.split == "train" and s is not a],
                             [s for s in speakers if s.split == "test" and s is not a]) if group]
            transfer += [(tid, a.name, b.name) for b in styles[:config.transfer_styles]]
    return Plan(config, speakers, texts, transfer, clips)


def speak(the_plan: Plan, speaker: Speaker, text: Text) -> ph.Utterance:
    """`speaker`'s recording of `text` with its phone timings."""
    if isinstance(speaker.voice, LibrivoxVoice):
        assert text.source == "librivox", f"{speaker.name} cannot say {text.id}"
        audio, phones = the_plan.clips[text.clip]
        a, b = round(text.start * ph.SAMPLE_RATE), round(text.end * ph.SAMPLE_RATE)
        shifted = [ph.Phone(p.label, p.start - text.start, p.end - text.start) for p in phones
                   if p.end > text.start and p.start < text.end]
        excerpt = ph.Utterance(audio[a:b].copy(), ph.tile(shifted, (b - a) / ph.SAMPLE_RATE), text.text).padded()
        return excerpt.stretched(speaker.voice.rate) if speaker.voice.rate != 1.0 else excerpt
    return ph.utterance(speaker.voice.speak(text.text), text.text)


def blink_seed(config: SynthConfig, style_speaker: str, text_id: str) -> int:
    """Blinks belong to the style: seeded by the style's speaker and the text."""
    return stable_seed(config.seed, style_speaker, text_id)


def write_dataset(out: str | Path, config: SynthConfig, progress: bool = True) -> dict:
    """Write the dataset to `out` (new, or an empty folder), all or nothing. Returns synth.json's content."""
    from tqdm import tqdm

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MimicError(f"{out} already exists and is not an empty folder")
    the_plan = plan(config)
    head = build_head(config.vertices)
    rig = Rig(head)
    templates = {s.name: identity_template(head, s.identity_seed) for s in the_plan.speakers}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("wav", "vertices_npy", "transfer/wav", "transfer/vertices_npy"):
        (tmp / sub).mkdir(parents=True)
    needed = {(tid, a) for tid, a, _ in the_plan.transfer}
    said: dict[tuple[str, str], tuple[ph.Utterance, str]] = {}   # (text, speaker) -> (utterance, main file)
    timings, files, recognized = {}, {}, []
    jobs = [(s, number, tid) for s in the_plan.speakers for number, tid in s.readings.items()]
    try:
        with tqdm(total=len(jobs) + len(the_plan.transfer), unit="clip", desc="synth", disable=not progress,
                  file=sys.stderr) as bar:
            for speaker, number, tid in jobs:
                key = f"{speaker.name}_{number}"
                utt = speak(the_plan, speaker, the_plan.texts[tid])
                if (tid, speaker.name) in needed:
                    said[(tid, speaker.name)] = (utt, f"vertices_npy/{key}.npy")
                offsets = rig.animate(utt, speaker.style, blink_seed(config, speaker.name, tid))
                ph.write_wav(tmp / "wav" / f"{key}.wav", utt.audio)
                np.save(tmp / "vertices_npy" / f"{key}.npy", _flat(templates[speaker.name] + offsets))
                timings[key], files[key] = _timing(utt), tid
                if utt.timing != "aligned":
                    recognized.append(key)
                bar.update()
            manifest = []
            for tid, a_name, b_name in the_plan.transfer:
                a, b = the_plan.speaker(a_name), the_plan.speaker(b_name)
                if (tid, a_name) not in said:
                    said[(tid, a_name)] = (speak(the_plan, a, the_plan.texts[tid]), None)
                utt, main_file = said[(tid, a_name)]
                wav = f"transfer/wav/{a_name}_{tid}.wav"
                if not (tmp / wav).exists():
                    ph.write_wav(tmp / wav, utt.audio)
                    timings[wav[:-4]] = _timing(utt)
                    if utt.timing != "aligned":
                        recognized.append(wav)
                offsets = rig.animate(utt, b.style, blink_seed(config, b_name, tid))
                npy = f"transfer/vertices_npy/{a_name}_{tid}__as__{b_name}.npy"
                np.save(tmp / npy, _flat(templates[a_name] + offsets))
                manifest.append({
                    "text_id": tid, "text": the_plan.texts[tid].text,
                    "audio_speaker": a_name, "audio_split": a.split, "style_speaker": b_name, "style_split": b.split,
                    "template": a_name, "wav": wav, "vertices": npy,
                    "same_as": main_file if a is b else None,
                    "style_references": [f"vertices_npy/{b_name}_{n}.npy" for n, t in b.readings.items() if t != tid]})
                bar.update()

        with open(tmp / "templates.pkl", "wb") as f:
            pickle.dump(templates, f, protocol=4)
        head.save_obj(tmp / "head.obj")
        _json(tmp / "splits.json", {name: the_plan.split(name) for name in ("train", "val", "test")})
        _json(tmp / "speakers.json", {s.name: s.describe() for s in the_plan.speakers})
        _json(tmp / "sentences.json", {
            "texts": {tid: {k: v for k, v in asdict(t).items() if k != "id" and (t.source == "librivox" or
                                                                              k not in ("clip", "start", "end"))}
                      for tid, t in the_plan.texts.items()},
            "files": files})
        _json(tmp / "regions.json", {**{k: v.tolist() for k, v in head.regions.items()},
                                     "lip_edge_upper": head.upper_edge.tolist(),
                                     "lip_edge_lower": head.lower_edge.tolist()})
        _json(tmp / "transfer" / "manifest.json", manifest)
        _json(tmp / "phones.json", timings)
        summary = {"format_version": FORMAT_VERSION, "config": asdict(config), "fps": FPS,
                   "sample_rate": ph.SAMPLE_RATE, "vertex_count": head.vertex_count, "files": len(jobs),
                   "transfer": len(manifest), "texts": len(the_plan.texts),
                   "heldout_texts": sum(t.heldout for t in the_plan.texts.values()),
                   "recognized_not_aligned": recognized}
        _json(tmp / "synth.json", summary)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _timing(utt: ph.Utterance) -> list:
    return [[p.label, p.start, p.end] for p in utt.phones]


def _flat(vertices: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vertices.reshape(len(vertices), -1), dtype=np.float32)


def _json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=1) + "\n")
