"""`mimic synth` and its parts, on real inputs: a LibriVox clip of pocketsphinx-testdata, real
espeak-ng speech, pocketsphinx's bundled model, the real command on a tiny configuration."""

from __future__ import annotations

import filecmp
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from mimic.cli import main
from mimic.data import open_dataset, read_templates
from mimic.synth import dataset as ds
from mimic.synth import head as H
from mimic.synth import phonemes as ph
from mimic.synth import sentences
from mimic.synth.rig import (
    FPS,
    RANGES,
    Rig,
    Style,
    frame_count,
    identity_template,
    tracks,
)

CLIP = "sense_and_sensibility_01_austen_64kb-0930"  # "he might even have been made amiable himself"
STILL = {"blink_rate": 0.0, "brow": 0.0}               # styles whose only motion is the mouth
TINY = ["--speakers", "3", "--sentences-per-speaker", "2", "--vertices", "300", "--seed", "3"]


@pytest.fixture(scope="module")
def clip_utt() -> ph.Utterance:
    clip = next(c for c in ph.librivox_clips() if c.name == CLIP)
    return ph.utterance(ph.load_clip(clip), clip.text)


@pytest.fixture(scope="module")
def head() -> H.Head:
    return H.build_head(1000)


@pytest.fixture(scope="module")
def rig(head) -> Rig:
    return Rig(head)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The real command, as a user runs it, on a tiny configuration."""
    out = tmp_path_factory.mktemp("synth") / "tiny"
    run = subprocess.run([sys.executable, "-m", "mimic.cli", "synth", "--out", str(out), *TINY],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stderr
    return out


def frames_of(phone: ph.Phone, lead: float = 0.0) -> np.ndarray:
    """Frames whose time (+ lead) falls inside the phone."""
    k = np.arange(int(phone.start * FPS) - 2, int(phone.end * FPS) + 3)
    t = k / FPS + lead
    return k[(t >= phone.start) & (t <= phone.end) & (k >= 0)]


# ------------------------------------------------------------------------------------ phonemes

def test_librivox_phone_timings(clip_utt):
    phones, duration = clip_utt.phones, clip_utt.duration
    assert clip_utt.timing == "aligned" and abs(duration - 3.29) < 0.01
    # the phones tile the clip, in order
    assert phones[0].start == 0 and abs(phones[-1].end - duration) < 1e-9
    assert all(a.end == b.start and a.start < a.end for a, b in itertools.pairwise(phones))
    # in the order the dictionary spells the words
    expected = " ".join(ph.pronunciation(w) for w in ph.words(clip_utt.text)).split()
    assert [p.label for p in phones if p.label != "SIL"] == expected
    # speech: the loud 10 ms frames are inside phones, and the phones span the speech
    frame = ph.SAMPLE_RATE // 100
    rms = np.sqrt(np.mean(clip_utt.audio[:len(clip_utt.audio) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > 0.1 * rms.max()) / 100 + 0.005
    speech = [p for p in phones if p.label != "SIL"]
    inside = [any(p.start <= t <= p.end for p in speech) for t in loud]
    assert np.mean(inside) > 0.95
    assert speech[0].start < loud[0] + 0.05 and speech[-1].end > loud[-1] - 0.05
    assert 0.1 < speech[0].start < 0.4 and 2.8 < speech[-1].end < 3.2
    # lip closures: might, been, made, amiable (m, b), himself
    closures = [p for p in phones if p.label in ph.BILABIALS]
    assert [p.label for p in closures] == ["M", "B", "M", "M", "B", "M"]
    assert all(p.end - p.start >= 0.03 for p in closures)


def test_phone_recognition_without_text(clip_utt):
    found = ph.recognize(clip_utt.audio)
    assert found[0].start == 0 and abs(found[-1].end - clip_utt.duration) < 1e-9
    assert all(a.end == b.start for a, b in itertools.pairwise(found))
    assert sum(p.label != "SIL" for p in found) >= 20
    assert {p.label for p in found} <= ph.PHONES


def test_espeak_voice_is_aligned():
    text = "Maybe Paul will bring some blue shoes."
    audio = ph.EspeakVoice("en-us+f3", speed=160, pitch=60).speak(text)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(audio[:3000] == 0) and np.all(audio[-3000:] == 0)   # 0.2 s of silence each side
    utt = ph.utterance(audio, text)
    assert utt.timing == "aligned" and 1.5 < utt.duration < 4.0
    speech = [p for p in utt.phones if p.label != "SIL"]
    assert speech[0].label == "M" and abs(speech[0].start - 0.2) < 0.08
    assert [p.label for p in speech if p.label in ph.BILABIALS] == ["M", "B", "P", "B", "M", "B"]


def test_unknown_voice_and_words_are_clear_errors():
    with pytest.raises(ph.MimicError, match="espeak-ng has no voice no-such-voice"):
        ph.EspeakVoice("no-such-voice").speak("hello")
    with pytest.raises(ph.MimicError, match="not in the pronunciation dictionary: zzxqv"):
        ph.align(np.zeros(16000, np.float32), "hello zzxqv")


def test_grammar_words_are_in_the_dictionary():
    assert ph.missing_words(" ".join(sorted(sentences.vocabulary()))) == []
    texts = sentences.generate(30, np.random.default_rng(0))
    assert len(set(texts)) == 30 and all(5 <= len(t.split()) <= 11 for t in texts)


# ---------------------------------------------------------------------------------------- head

@pytest.mark.parametrize("count", [300, 1500, 2500])
def test_head_is_closed_and_sized(count):
    head = H.build_head(count)
    assert abs(head.vertex_count - count) <= 0.05 * count
    H.check_closed(head.faces, head.vertex_count)
    v = head.vertices
    assert head.faces.dtype == np.int32 and v.dtype == np.float32
    assert 0.2 < np.ptp(v[:, 1]) < 0.26 and 0.13 < np.ptp(v[:, 0]) < 0.18    # head-sized, metres, y up
    assert np.array_equal(v[head.upper_edge], v[head.lower_edge])            # the mouth is closed at rest
    assert v[head.upper_edge, 2].min() > 0.09                                 # the lips face +z


def test_head_regions(head):
    r, v = head.regions, head.vertices
    assert all(len(idx) for idx in r.values())
    assert not set(r["lips"]) & set(r["upper_face"])
    assert set(head.upper_edge) | set(head.lower_edge) <= set(r["lips"])
    assert set(r["eyes"]) <= set(r["upper_face"]) and set(r["brows"]) <= set(r["upper_face"])
    assert v[r["upper_face"], 1].min() > v[r["lips"], 1].max()
    assert v[r["brows"], 1].mean() > v[r["eyes"], 1].mean()
    assert v[r["jaw"], 1].max() <= v[head.lower_edge, 1].max() + 1e-6


# ----------------------------------------------------------------------------------------- rig

def test_lips_close_on_bilabials_and_jaw_opens_on_vowels(clip_utt, rig, head):
    style = Style(**STILL)
    off = rig.animate(clip_utt, style)
    assert off.shape == (frame_count(clip_utt.duration), head.vertex_count, 3) and off.dtype == np.float32
    gap = rig.lip_gap(off)                                                     # (T, slit columns)
    chin = np.argmin(np.abs(head.lat + 0.95) + np.abs(head.lon) + 9 * (head.depth > 0))
    jaw_drop = -off[:, chin, 1]
    for p in clip_utt.phones:
        if p.label in ph.BILABIALS:
            k = frames_of(p)
            assert len(k) and gap[k].max() < 1e-6, p                          # the lips meet
    vowels = [p for p in clip_utt.phones if p.label in ph.VOWELS and p.end - p.start >= 0.06]
    at = np.array([round(p.center * FPS) for p in vowels])
    assert jaw_drop[at].mean() > 0.003 and gap[at, gap.shape[1] // 2].mean() > 0.004
    assert np.abs(off[:3]).max() < 1e-4 and np.abs(off[-3:]).max() < 1e-4      # at rest in the silences


def test_amplitude_scales_lip_motion(clip_utt, rig, head):
    lips = head.regions["lips"]
    one = rig.animate(clip_utt, Style(**STILL))
    two = rig.animate(clip_utt, Style(amplitude=2.0, **STILL))
    ratio = np.linalg.norm(two[:, lips]) / np.linalg.norm(one[:, lips])
    assert 1.6 < ratio < 2.1
    assert rig.lip_gap(two).max() > 1.6 * rig.lip_gap(one).max()


def test_lead_shifts_timing(clip_utt, rig):
    shift = 3                                                      # frames: 50 ms at 60 fps
    base = rig.animate(clip_utt, Style(**STILL))
    early = rig.animate(clip_utt, Style(lead=shift / FPS, **STILL))
    late = rig.animate(clip_utt, Style(lead=-shift / FPS, **STILL))
    np.testing.assert_allclose(early[:-shift], base[shift:], atol=1e-6)
    np.testing.assert_allclose(late[shift:], base[:-shift], atol=1e-6)
    assert np.abs(early - base).max() > 1e-3
    for p in clip_utt.phones:                                        # closures come 50 ms early
        if p.label in ph.BILABIALS:
            assert rig.lip_gap(early)[frames_of(p, lead=shift / FPS)].max() < 1e-6


def test_other_style_parameters_do_what_they_say(clip_utt, rig, head):
    v = head.vertices
    lips = head.regions["lips"]
    # rounding ("we sue"; the clip has no rounded sound): mouth corners further in, lips further forward
    we_sue = ph.Utterance(np.zeros(16000, np.float32), ph.tile(
        [ph.Phone(label, start, end) for label, start, end in
         [("W", 0.2, 0.3), ("IY", 0.3, 0.45), ("S", 0.45, 0.55), ("UW", 0.55, 0.8)]], 1.0))
    rounded = frames_of(we_sue.phones[-2])
    corners = lips[np.abs(np.abs(head.lon[lips]) - H.MOUTH_HALF) < 0.08]
    weak = rig.animate(we_sue, Style(rounding=0.5, **STILL))
    strong = rig.animate(we_sue, Style(rounding=2.0, **STILL))
    inward = lambda off: -(off[rounded][:, corners, 0] * np.sign(v[corners, 0])).mean()
    assert inward(strong) > 2 * inward(weak) > 0.001
    assert strong[rounded][:, lips, 2].mean() > 2 * weak[rounded][:, lips, 2].mean() > 0.0005
    plain = rig.animate(clip_utt, Style(**STILL))
    # asymmetry: the +x half of the mouth moves more
    skew = rig.animate(clip_utt, Style(asymmetry=0.3, **STILL))
    left, right = lips[v[lips, 0] > 0.01], lips[v[lips, 0] < -0.01]
    ratio = np.linalg.norm(skew[:, left]) / np.linalg.norm(skew[:, right])
    assert 1.4 < ratio < 2.2
    assert 0.9 < np.linalg.norm(plain[:, left]) / np.linalg.norm(plain[:, right]) < 1.1
    # smoothness: slower changes
    speed = lambda off: np.abs(np.diff(off[:, lips], axis=0)).mean()
    assert speed(rig.animate(clip_utt, Style(smoothness=2.0, **STILL))) < 0.8 * speed(
        rig.animate(clip_utt, Style(smoothness=0.6, **STILL)))
    # brows: still at 0, raised on prominent syllables otherwise; blinks: never at rate 0
    brows, eyes = head.regions["brows"], head.regions["eyes"]
    assert np.abs(plain[:, brows]).max() == 0 and np.abs(plain[:, eyes]).max() == 0
    raised = rig.animate(clip_utt, Style(brow=1.0, blink_rate=0.0))
    assert raised[:, brows, 1].max() > 0.004 and raised[:, brows, 1].max() > 1.5 * raised[:, eyes, 1].max()
    np.testing.assert_array_equal(raised[:, lips], plain[:, lips])
    blinking = rig.animate(clip_utt, Style(blink_rate=120.0, brow=0.0), seed=1)
    assert -blinking[:, eyes, 1].min() > 0.004
    assert tracks(clip_utt, Style(blink_rate=120.0), seed=1)["blink"].max() > 0.99


def test_identity_changes_the_template_not_the_motion(clip_utt, rig, head):
    one, two = identity_template(head, 1), identity_template(head, 2)
    differ = np.linalg.norm(one - two, axis=1)
    assert differ.mean() > 0.002 and differ.max() < 0.03
    for t in (one, two):
        assert np.array_equal(t[head.upper_edge], t[head.lower_edge])    # closed mouth at rest
    np.testing.assert_array_equal(identity_template(head, 1), one)      # a seed is an identity
    # a speaker's motion is offsets of the base head: on any face, the same offsets
    style = Style.sample(np.random.default_rng(5))
    off = rig.animate(clip_utt, style, seed=4)
    np.testing.assert_array_equal(rig.animate(clip_utt, style, seed=4), off)
    a, b = one + off, two + off
    np.testing.assert_allclose(a - one, b - two, atol=1e-6)
    assert np.linalg.norm(a[:, head.upper_edge] - a[:, head.lower_edge], axis=-1).min() < 1e-6


def test_sampled_styles_stay_in_range():
    rng = np.random.default_rng(0)
    for _ in range(50):
        style = Style.sample(rng)
        for name, (lo, hi, _) in RANGES.items():
            assert lo <= getattr(style, name) <= hi
        assert Style.from_dict(style.to_dict()) == style


# ----------------------------------------------------------------------------------- the command

def test_synth_writes_a_vocaset_layout(tiny):
    speakers = json.loads((tiny / "speakers.json").read_text())
    splits = json.loads((tiny / "splits.json").read_text())
    texts = json.loads((tiny / "sentences.json").read_text())
    regions = json.loads((tiny / "regions.json").read_text())
    summary = json.loads((tiny / "synth.json").read_text())
    templates = read_templates(tiny / "templates.pkl")            # the project's restricted unpickler
    V = summary["vertex_count"]
    assert abs(V - 300) <= 15 and summary["fps"] == 60 and summary["recognized_not_aligned"] == []
    assert set(splits) == {"train", "val", "test"}
    assert sorted(s for subjects in splits.values() for s in subjects) == sorted(speakers) == sorted(templates)
    assert splits["test"] and splits["train"]
    for _subject, t in templates.items():
        assert t.shape == (V, 3) and t.dtype == np.float32
    assert len({t.tobytes() for t in templates.values()}) == len(templates)   # every subject its own face
    for name in ("lips", "upper_face", "eyes", "brows", "jaw", "lip_edge_upper", "lip_edge_lower"):
        assert regions[name] and max(regions[name]) < V
    wavs = sorted((tiny / "wav").glob("*.wav"))
    assert len(wavs) == 3 * 2 == len(list((tiny / "vertices_npy").glob("*.npy")))
    for wav in wavs:
        info = soundfile.info(str(wav))
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        motion = np.load(tiny / "vertices_npy" / f"{wav.stem}.npy")
        assert motion.dtype == np.float32 and motion.ndim == 2 and motion.shape[1] == 3 * V
        assert motion.shape[0] == round(info.frames / 16000 * 60)                # 60 fps
        subject = wav.stem.rpartition("_")[0]
        assert wav.stem in texts["files"] and wav.stem.rpartition("_")[2] in speakers[subject]["sentences"]
        # the face at rest in the leading silence is the subject's template
        np.testing.assert_allclose(motion[0].reshape(V, 3), templates[subject], atol=2e-4)
    for _subject, info in speakers.items():
        Style.from_dict(info["style"])
        numbers = sorted(info["sentences"])
        assert numbers == (["sentence01", "sentence02"] if info["split"] == "train" else ["sentence21", "sentence22"])
        heldout = [texts["texts"][t]["heldout"] for t in info["sentences"].values()]
        assert any(heldout) if info["split"] == "test" else not any(heldout)
    # the project's VOCASET reader takes it as it is (train 01-40, test 21-40, every 2nd frame)
    data = open_dataset("vocaset", tiny)
    assert data.vertex_count == V and data.fps == 30
    assert {q.subject for q in data.splits["train"]} == set(splits["train"])
    assert {q.subject for q in data.splits["test"]} == set(splits["test"])
    assert data.splits["test"][0].vertices().shape[1:] == (V, 3)


def test_transfer_is_the_rig_driven_by_a_in_the_style_of_b(tiny):
    summary = json.loads((tiny / "synth.json").read_text())
    config = ds.SynthConfig(**summary["config"])
    speakers = json.loads((tiny / "speakers.json").read_text())
    texts = json.loads((tiny / "sentences.json").read_text())["texts"]
    phones = json.loads((tiny / "phones.json").read_text())
    templates = read_templates(tiny / "templates.pkl")
    manifest = json.loads((tiny / "transfer" / "manifest.json").read_text())
    rig = Rig(H.build_head(config.vertices))
    V = rig.head.vertex_count
    assert manifest and all(texts[m["text_id"]]["heldout"] for m in manifest)
    assert {m["audio_split"] for m in manifest} == {"train", "test"}
    assert {m["style_split"] for m in manifest} == {"train", "test"}
    pairs = {(m["text_id"], m["audio_speaker"]) for m in manifest}
    for tid, a in pairs:
        entries = [m for m in manifest if (m["text_id"], m["audio_speaker"]) == (tid, a)]
        assert {m["style_speaker"] for m in entries} >= {a} and len(entries) >= 2
        audio, rate = soundfile.read(tiny / entries[0]["wav"], dtype="float32")
        assert rate == 16000
        utt = ph.Utterance(audio, tuple(ph.Phone(*p) for p in phones[entries[0]["wav"][:-4]]), texts[tid]["text"])
        results = {}
        for m in entries:
            b = m["style_speaker"]
            truth = np.load(tiny / m["vertices"]).reshape(-1, V, 3)
            expected = templates[a] + rig.animate(utt, Style.from_dict(speakers[b]["style"]),
                                                  ds.blink_seed(config, b, tid))
            np.testing.assert_allclose(truth, expected, atol=1e-6)
            assert truth.shape[0] == round(len(audio) / 16000 * 60)
            assert all((tiny / r).is_file() and tid not in r for r in m["style_references"])
            if m["same_as"]:
                np.testing.assert_array_equal(np.load(tiny / m["same_as"]), np.load(tiny / m["vertices"]))
            results[b] = truth
            for p in utt.phones:                                     # A's closures, at B's timing
                if p.label in ph.BILABIALS:
                    k = frames_of(p, Style.from_dict(speakers[b]["style"]).lead)
                    gap = np.linalg.norm(truth[k][:, rig.head.upper_edge] - truth[k][:, rig.head.lower_edge], axis=-1)
                    assert gap.max() < 1e-5
        others = [truth for b, truth in results.items() if b != a]
        assert all(np.abs(truth - results[a]).max() > 1e-3 for truth in others)   # the style matters


def test_synth_is_deterministic_and_refuses_to_overwrite(tiny, tmp_path, capsys):
    again = tmp_path / "again"
    assert main(["synth", "--out", str(again), *TINY]) == 0
    left = sorted(p.relative_to(tiny) for p in tiny.rglob("*") if p.is_file())
    assert left == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all(filecmp.cmp(tiny / p, again / p, shallow=False) for p in left)
    capsys.readouterr()
    assert main(["synth", "--out", str(again), *TINY]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mimic synth: error: {again} already exists and is not an empty folder"]
    assert main(["synth", "--out", str(tmp_path / "x"), "--speakers", "1"]) == 1
    assert "--speakers must be at least 2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.partial*"))
