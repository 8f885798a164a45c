"""Dataset readers (mimic.data) on tiny datasets written here, in each dataset's real on-disk layout
(VOCASET and BIWI as FaceFormer/CodeTalker prepare them, 3D-HDTF as the Mimic authors publish it),
with 20-vertex meshes and a few hundred milliseconds of generated tones. No dataset file is stored."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
from collections import OrderedDict
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import soundfile

from mimic.data import open_dataset, read_templates
from mimic.errors import MimicError

V = 20  # vertices of the tiny meshes (FLAME has 5023, BIWI 23370)
STEP = 0.01  # motion: frame t of a file is the template moved by t * STEP

VOCASET_TRAIN = ["FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA", "FaceTalk_170725_00137_TA",
                 "FaceTalk_170915_00223_TA", "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
                 "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA"]
VOCASET_VAL = ["FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA"]
VOCASET_TEST = ["FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA"]
BIWI_TRAIN = ["F2", "F3", "F4", "M3", "M4", "M5"]
BIWI_UNSEEN = ["F1", "F5", "F6", "F7", "F8", "M1", "M2", "M6"]


# --- writing datasets ----------------------------------------------------------------------------

def write_wav(path: Path, seconds: float, rate: int = 16000, channels: int = 1):
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))  # a wobbling 220 Hz
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.repeat(tone[:, None], channels, axis=1), rate, subtype="PCM_16")


def template(seed: int, count: int = V) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3))  # float64, as the datasets store them


def motion(base: np.ndarray, frames: int) -> np.ndarray:  # (frames, V, 3)
    return base[None] + STEP * np.arange(frames)[:, None, None]


class Python2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2's byte strings (SHORT_BINSTRING/BINSTRING), as Python 2 pickled
    VOCASET's templates.pkl: only encoding="latin1" reads the arrays' data back in Python 3."""
    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def save_py2_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string


def python2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_wav_layout(root: Path, names: list[str], templates: dict, fps: float, seconds: float,
                     rate: int = 16000, channels: int = 1, python2: bool = False):
    """wav/<name>.wav, vertices_npy/<name>.npy as (frames, V*3), templates.pkl."""
    (root / "vertices_npy").mkdir(parents=True, exist_ok=True)
    for name in names:
        write_wav(root / "wav" / f"{name}.wav", seconds, rate, channels)
        frames = round(seconds * fps)
        moves = motion(templates[name.rpartition("_")[0]], frames)
        np.save(root / "vertices_npy" / f"{name}.npy", moves.reshape(frames, -1))
    data = python2_pickle(templates) if python2 else pickle.dumps(templates)
    (root / "templates.pkl").write_bytes(data)


def mini_vocaset(root: Path) -> dict:
    """Subjects A (sentences 21, 22), B, C (21) at 60 fps, 0.3 s; open it with mini_options()."""
    templates = {s: template(i) for i, s in enumerate(["A", "B", "C"])}
    write_wav_layout(root, ["A_sentence21", "A_sentence22", "B_sentence21", "C_sentence21"], templates, 60, 0.3)
    return templates


def mini_options(**more) -> dict:
    return {"train_subjects": ["A"], "val_subjects": ["B"], "test_subjects": ["C"], **more}


def names(sequences) -> list[str]:
    return [s.name for s in sequences]


def error(call, *args, **kwargs) -> str:
    with pytest.raises(MimicError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


# --- VOCASET ---------------------------------------------------------------------------------------

def test_vocaset_standard_splits_rate_and_shapes(tmp_path):
    subjects = VOCASET_TRAIN + VOCASET_VAL + VOCASET_TEST
    templates = {s: template(i) for i, s in enumerate(subjects)}
    sequences = [f"{s}_sentence{n:02d}" for s in subjects for n in (1, 21, 40)]
    # 19 frames at 60 fps, audio at VOCASET's 22,050 Hz; a Python 2 templates.pkl, as released
    write_wav_layout(tmp_path, sequences, templates, 60, 19 / 60, rate=22050, python2=True)

    ds = open_dataset("vocaset", tmp_path)
    assert (ds.kind, ds.root, ds.fps, ds.vertex_count) == ("vocaset", tmp_path, 30.0, V)
    assert ds.train_subjects == VOCASET_TRAIN
    assert set(ds.splits) == {"train", "val", "test"}
    # FaceFormer: training subjects' sentences 1-40, validation and test subjects' 21-40
    assert names(ds.splits["train"]) == sorted(f"{s}_sentence{n:02d}" for s in VOCASET_TRAIN for n in (1, 21, 40))
    assert names(ds.splits["val"]) == sorted(f"{s}_sentence{n:02d}" for s in VOCASET_VAL for n in (21, 40))
    assert names(ds.splits["test"]) == sorted(f"{s}_sentence{n:02d}" for s in VOCASET_TEST for n in (21, 40))
    assert set(ds.templates) == set(subjects)
    for subject in subjects:
        assert ds.template(subject).dtype == np.float32 and ds.template(subject).shape == (V, 3)
        np.testing.assert_allclose(ds.template(subject), templates[subject], rtol=1e-6)

    sequence = next(s for s in ds.splits["val"] if s.name == "FaceTalk_170908_03277_TA_sentence40")
    assert sequence.subject == "FaceTalk_170908_03277_TA"
    assert sequence.audio_path == tmp_path / "wav" / "FaceTalk_170908_03277_TA_sentence40.wav"
    assert sequence.vertices_path == tmp_path / "vertices_npy" / "FaceTalk_170908_03277_TA_sentence40.npy"
    vertices = sequence.vertices()
    assert vertices.dtype == np.float32 and vertices.shape == (10, V, 3)  # 60 -> 30 fps: frames 0, 2, ..., 18
    np.testing.assert_allclose(vertices, motion(templates[sequence.subject], 19)[::2], rtol=1e-6, atol=1e-6)
    vertices[0] += 1  # a writable copy, not the file's read-only map
    audio = sequence.audio()
    assert audio.dtype == np.float32 and audio.ndim == 1 and abs(len(audio) - 19 / 60 * 16000) <= 2
    assert len(sequence.audio(22050)) == round(19 / 60 * 22050)
    assert "FaceTalk_x" in error(ds.template, "FaceTalk_x")


def test_vocaset_subject_lists_from_splits_json_then_options(tmp_path):
    """A dataset written in the VOCASET layout with its own subjects (a synthetic one) names them."""
    subjects = ["synth_a", "synth_b", "synth_c", "synth_d"]
    templates = {s: template(i) for i, s in enumerate(subjects)}
    write_wav_layout(tmp_path, [f"{s}_sentence{n:02d}" for s in subjects for n in (1, 21)], templates, 60, 0.25)
    (tmp_path / "splits.json").write_text(json.dumps(
        {"train": ["synth_b", "synth_a"], "val": ["synth_c"], "test": ["synth_d"]}))

    ds = open_dataset("vocaset", tmp_path)
    assert ds.train_subjects == ["synth_b", "synth_a"]  # class-index order as listed
    assert names(ds.splits["train"]) == ["synth_a_sentence01", "synth_a_sentence21",
                                         "synth_b_sentence01", "synth_b_sentence21"]
    assert names(ds.splits["val"]) == ["synth_c_sentence21"] and names(ds.splits["test"]) == ["synth_d_sentence21"]

    ds = open_dataset("vocaset", tmp_path, train_subjects="synth_a synth_b", test_subjects=[])
    assert ds.train_subjects == ["synth_a", "synth_b"]
    assert names(ds.splits["val"]) == ["synth_c_sentence21"] and ds.splits["test"] == []

    (tmp_path / "splits.json").write_text(json.dumps({"train": ["synth_a"], "holdout": ["synth_d"]}))
    assert "splits.json" in error(open_dataset, "vocaset", tmp_path)
    (tmp_path / "splits.json").write_text("{not json")
    assert "splits.json" in error(open_dataset, "vocaset", tmp_path)
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["synth_a", "synth_a"]}))
    assert "twice" in error(open_dataset, "vocaset", tmp_path)


# --- BIWI ------------------------------------------------------------------------------------------

def test_biwi_splits_test_a_and_test_b(tmp_path):
    templates = {s: template(i) for i, s in enumerate(BIWI_TRAIN + BIWI_UNSEEN)}
    sequences = [f"{s}_e{n:02d}" for s in BIWI_TRAIN for n in (1, 32, 33, 37)]
    sequences += [f"{s}_e{n:02d}" for s in BIWI_UNSEEN for n in (1, 37)]
    write_wav_layout(tmp_path, sequences, templates, 25, 0.4, rate=44100, channels=2)  # BIWI's audio: 44.1 kHz

    ds = open_dataset("biwi", tmp_path)
    assert (ds.kind, ds.fps, ds.vertex_count) == ("biwi", 25.0, V)
    assert ds.train_subjects == BIWI_TRAIN
    assert set(ds.splits) == {"train", "val", "test_a", "test_b", "test"}
    assert names(ds.splits["train"]) == sorted(f"{s}_e{n:02d}" for s in BIWI_TRAIN for n in (1, 32))
    assert names(ds.splits["val"]) == sorted(f"{s}_e33" for s in BIWI_TRAIN)
    assert names(ds.splits["test_a"]) == sorted(f"{s}_e37" for s in BIWI_TRAIN)
    assert names(ds.splits["test_b"]) == sorted(f"{s}_e37" for s in BIWI_UNSEEN)
    assert ds.splits["test"] == ds.splits["test_a"] + ds.splits["test_b"]
    assert "F1_e01" not in names(s for split in ds.splits.values() for s in split)  # unseen: only 37-40

    sequence = ds.splits["test_b"][0]
    assert (sequence.subject, sequence.name) == ("F1", "F1_e37")
    vertices = sequence.vertices()
    assert vertices.shape == (10, V, 3)  # 25 fps kept as is
    np.testing.assert_allclose(vertices, motion(templates["F1"], 10), rtol=1e-6, atol=1e-6)
    audio = sequence.audio()
    assert audio.ndim == 1 and abs(len(audio) - 6400) <= 2  # stereo 44.1 kHz -> mono 16 kHz


# --- 3D-HDTF ---------------------------------------------------------------------------------------

HDTF_VIDEOS = [  # video, id, tag
    ("WDA_Anna_000", 1, "train"), ("WDA_Bert_000", 2, "train"), ("RD_Cleo_000", 3, "train"),
    ("WDA_Bert_001", 2, "test"), ("WRA_Dan_000", 4, "train")]


def write_hdtf(root: Path, frames: int = 10, count: int = V) -> dict:
    """The released layout: a video list, 16 kHz wavs, SPECTRE's pickled codedicts, templates keyed by id.
    RD_Cleo_000 has no wav, only the pickled audio_librosa.npy the reference reads."""
    root.mkdir(parents=True, exist_ok=True)
    templates = {identity: template(identity) for identity in (1, 2, 3, 4)}
    (root / "templates.pkl").write_bytes(pickle.dumps(templates))
    lines = [f"{video} {identity} {frames} {tag}" for video, identity, tag in HDTF_VIDEOS]
    (root / "video_list_id_framenum-train_test.txt").write_text("\n".join(lines) + "\n")
    for video, identity, _ in HDTF_VIDEOS:
        folder = root / "spectre_processed_25fps_16kHz" / video
        folder.mkdir(parents=True)
        verts = motion(templates[identity][:count] if count <= V else template(identity, count), frames)
        np.save(folder / "verts_new_shape1.npy", {"verts": verts.astype(np.float32), "cam": np.zeros((frames, 3))})
        if video == "RD_Cleo_000":
            speech = (0.1 * np.sin(np.arange(frames * 640) / 7)).astype(np.float32)
            np.save(folder / "audio_librosa.npy", {"speech_array": speech, "sampling_rate": 16000})
        else:
            write_wav(root / "audio_16000Hz_from_video" / f"{video}.wav", frames / 25)
    return templates


def test_hdtf_splits_ids_and_pickled_motion(tmp_path):
    templates = write_hdtf(tmp_path)
    ds = open_dataset("hdtf", tmp_path, train_ids=3)
    assert (ds.kind, ds.fps, ds.vertex_count) == ("hdtf", 25.0, V)
    assert ds.train_subjects == ["id_001", "id_002", "id_003"]  # head index = id - 1
    assert names(ds.splits["train"]) == ["WDA_Anna_000", "WDA_Bert_000", "RD_Cleo_000"]  # list order
    assert names(ds.splits["test"]) == ["WDA_Bert_001"]  # tagged 'test'
    assert names(ds.splits["val"]) == ["WRA_Dan_000"]  # untagged, id above train_ids
    assert [s.subject for s in ds.splits["train"]] == ["id_001", "id_002", "id_003"]
    assert set(ds.templates) == {"id_001", "id_002", "id_003", "id_004"}
    np.testing.assert_allclose(ds.template("id_002"), templates[2], rtol=1e-6)

    bert = ds.splits["test"][0]
    assert bert.audio_path == tmp_path / "audio_16000Hz_from_video" / "WDA_Bert_001.wav"
    assert bert.vertices_path == tmp_path / "spectre_processed_25fps_16kHz" / "WDA_Bert_001" / "verts_new_shape1.npy"
    np.testing.assert_allclose(bert.vertices(), motion(templates[2], 10), rtol=1e-6, atol=1e-6)
    assert abs(len(bert.audio()) - 6400) <= 2
    cleo = ds.splits["train"][2]
    assert cleo.audio_path.name == "audio_librosa.npy"
    np.testing.assert_array_equal(cleo.audio(), (0.1 * np.sin(np.arange(6400) / 7)).astype(np.float32))
    assert abs(len(cleo.audio(8000)) - 3200) <= 1
    assert cleo.vertices().shape == (10, V, 3)

    ds = open_dataset("hdtf", tmp_path)  # the released config: ids 1..150 are training ids
    assert len(ds.train_subjects) == 150 and ds.train_subjects[149] == "id_150"
    assert "WRA_Dan_000" in names(ds.splits["train"]) and ds.splits["val"] == []

    (tmp_path / "video_list_id_framenum-val.txt").write_text("WDA_Anna_000 1 10\n")  # the config's val list
    assert names(open_dataset("hdtf", tmp_path, train_ids=3).splits["val"]) == ["WDA_Anna_000"]


# --- pickles ---------------------------------------------------------------------------------------

class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickles_that_run_code_are_refused_unexecuted(tmp_path):
    marker = tmp_path / "it_ran"
    path = tmp_path / "templates.pkl"
    path.write_bytes(pickle.dumps({"A": RunsCode(marker)}))
    message = error(read_templates, path)
    assert str(path) in message and f"{os.system.__module__}.system" in message
    assert not marker.exists()

    # an innocuous class is refused too: only numpy arrays are admitted
    path.write_bytes(pickle.dumps(OrderedDict(A=template(0))))
    assert "collections.OrderedDict" in error(read_templates, path)

    # inside a pickled .npy (3D-HDTF's codedicts): refused when the sequence is loaded
    write_hdtf(tmp_path / "hdtf")
    verts = tmp_path / "hdtf" / "spectre_processed_25fps_16kHz" / "WDA_Anna_000" / "verts_new_shape1.npy"
    np.save(verts, {"verts": RunsCode(marker)})
    sequence = open_dataset("hdtf", tmp_path / "hdtf").splits["train"][0]
    message = error(sequence.vertices)
    assert str(verts) in message and "system" in message
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_templates_of_every_pickle_protocol(tmp_path, protocol):
    templates = {"A": template(0), "B": template(1).reshape(-1).astype(np.float32)}  # (V, 3) or flat (3V,)
    path = tmp_path / "templates.pkl"
    path.write_bytes(pickle.dumps(templates, protocol=protocol))
    loaded = read_templates(path)
    assert set(loaded) == {"A", "B"}
    np.testing.assert_allclose(loaded["A"], templates["A"], rtol=1e-6)
    np.testing.assert_array_equal(loaded["B"], templates["B"].reshape(V, 3))
    assert all(t.dtype == np.float32 and t.shape == (V, 3) and t.flags.writeable for t in loaded.values())


def test_python2_templates_need_latin1(tmp_path):
    templates = {"FaceTalk_170725_00137_TA": template(0), "FaceTalk_170731_00024_TA": template(1)}
    data = python2_pickle(templates)
    assert b"_codecs" not in data and pickle.SHORT_BINSTRING + bytes([24]) + b"FaceTalk_170725_00137_TA" in data
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(data)  # Python 3's default reading fails on the arrays' bytes
    path = tmp_path / "templates.pkl"
    path.write_bytes(data)
    loaded = read_templates(path)
    assert set(loaded) == set(templates)
    for subject, array in templates.items():
        np.testing.assert_allclose(loaded[subject], array, rtol=1e-6)


# --- malformed datasets ----------------------------------------------------------------------------

def test_mini_vocaset_opens(tmp_path):
    """The baseline the malformed cases below break one thing of."""
    mini_vocaset(tmp_path)
    ds = open_dataset("vocaset", tmp_path, **mini_options())
    assert names(ds.splits["train"]) == ["A_sentence21", "A_sentence22"]
    assert names(ds.splits["val"]) == ["B_sentence21"] and names(ds.splits["test"]) == ["C_sentence21"]
    assert ds.splits["train"][0].vertices().shape == (9, V, 3)


def test_missing_or_unreadable_templates(tmp_path):
    mini_vocaset(tmp_path)
    (tmp_path / "templates.pkl").unlink()
    message = error(open_dataset, "vocaset", tmp_path, **mini_options())
    assert "templates.pkl not found" in message and str(tmp_path) in message
    (tmp_path / "templates.pkl").write_bytes(b"\x80\x04garbage, not a pickle")
    assert f"cannot read {tmp_path / 'templates.pkl'}" in error(open_dataset, "vocaset", tmp_path, **mini_options())
    (tmp_path / "templates.pkl").write_bytes(pickle.dumps([template(0)]))
    assert "must hold a non-empty dict" in error(read_templates, tmp_path / "templates.pkl")
    (tmp_path / "templates.pkl").write_bytes(pickle.dumps({"A": template(0), "B": template(1, V + 1)}))
    assert "differ in vertex count" in error(open_dataset, "vocaset", tmp_path, **mini_options())


def test_subject_without_template(tmp_path):
    templates = mini_vocaset(tmp_path)
    del templates["C"]
    (tmp_path / "templates.pkl").write_bytes(pickle.dumps(templates))
    message = error(open_dataset, "vocaset", tmp_path, **mini_options())
    assert "no template for subject C" in message and "templates.pkl" in message


def test_audio_and_motion_lengths_must_agree(tmp_path):
    mini_vocaset(tmp_path)  # 0.3 s of motion
    write_wav(tmp_path / "wav" / "B_sentence21.wav", 0.7)  # 0.4 s longer: within the 0.5 s tolerance
    open_dataset("vocaset", tmp_path, **mini_options())
    write_wav(tmp_path / "wav" / "B_sentence21.wav", 1.2)
    message = error(open_dataset, "vocaset", tmp_path, **mini_options())
    assert "B_sentence21.wav lasts 1.20 s" in message
    assert "B_sentence21.npy holds 18 frames at 60 fps (0.30 s)" in message
    assert "at most 0.5 s" in message
    assert open_dataset("vocaset", tmp_path, **mini_options(tolerance=1.0)).splits["val"][0].name == "B_sentence21"


def test_wrong_vertex_count(tmp_path):
    mini_vocaset(tmp_path)
    npy = tmp_path / "vertices_npy" / "B_sentence21.npy"
    np.save(npy, motion(template(5, V + 1), 18).reshape(18, -1))
    message = error(open_dataset, "vocaset", tmp_path, **mini_options())
    assert f"{npy} has {V + 1} vertices per frame but the template of B has {V}" in message
    np.save(npy, np.zeros((18, 7)))  # not a multiple of 3
    assert f"{npy} holds an array of shape (18, 7)" in error(open_dataset, "vocaset", tmp_path, **mini_options())
    assert "not the 5023 expected" in error(open_dataset, "vocaset", tmp_path, **mini_options(vertex_count=5023))


def test_missing_vertex_file(tmp_path):
    mini_vocaset(tmp_path)
    (tmp_path / "vertices_npy" / "A_sentence22.npy").unlink()
    message = error(open_dataset, "vocaset", tmp_path, **mini_options())
    assert f"vertex file not found: {tmp_path / 'vertices_npy' / 'A_sentence22.npy'}" in message
    assert "A_sentence22.wav" in message
    ds = open_dataset("vocaset", tmp_path, **mini_options(skip_missing=True))  # FaceFormer's behaviour
    assert names(ds.splits["train"]) == ["A_sentence21"]


def test_unreadable_audio_and_vertex_files(tmp_path):
    mini_vocaset(tmp_path)
    wav = tmp_path / "wav" / "C_sentence21.wav"
    wav.write_bytes(b"RIFF not really a wav file")
    assert f"cannot read audio {wav}" in error(open_dataset, "vocaset", tmp_path, **mini_options())
    write_wav(wav, 0.3)

    npy = tmp_path / "vertices_npy" / "C_sentence21.npy"
    npy.write_bytes(b"garbage")
    assert f"cannot read {npy}" in error(open_dataset, "vocaset", tmp_path, **mini_options())
    np.save(npy, motion(template(2), 18).reshape(18, -1))
    npy.write_bytes(npy.read_bytes()[:-100])  # truncated: the header is fine, the data is not
    sequence = open_dataset("vocaset", tmp_path, **mini_options()).splits["test"][0]
    assert f"cannot read {npy}" in error(sequence.vertices)
    data = motion(template(2), 18).reshape(18, -1)
    data[4, 5] = np.nan  # a kept frame (60 -> 30 fps keeps the even ones)
    np.save(npy, data)
    assert "NaN" in error(open_dataset("vocaset", tmp_path, **mini_options()).splits["test"][0].vertices)


def test_badly_named_wav_and_subject_without_sequences(tmp_path):
    templates = mini_vocaset(tmp_path)
    templates["Z"] = template(9)
    (tmp_path / "templates.pkl").write_bytes(pickle.dumps(templates))
    message = error(open_dataset, "vocaset", tmp_path, **mini_options(train_subjects=["A", "Z"]))
    assert "split 'train': subject Z has no sequence with a sentence 1-40" in message
    message = error(open_dataset, "vocaset", tmp_path, **mini_options(val_subjects=["Z"]))
    assert "split 'val': subject Z has no sequence with a sentence 21-40" in message
    write_wav(tmp_path / "wav" / "notes.wav", 0.3)
    assert "notes.wav: expected a name <subject>_<sentence>.wav" in error(
        open_dataset, "vocaset", tmp_path, **mini_options())


def test_bad_arguments(tmp_path):
    mini_vocaset(tmp_path)
    assert "unknown dataset kind 'voca'" in error(open_dataset, "voca", tmp_path)
    assert open_dataset("VOCASET", str(tmp_path), **mini_options()).kind == "vocaset"
    assert "unknown option(s) for a vocaset dataset: train_ids" in error(open_dataset, "vocaset", tmp_path, train_ids=3)
    assert "dataset folder not found" in error(open_dataset, "vocaset", tmp_path / "nowhere")
    assert "tolerance" in error(open_dataset, "vocaset", tmp_path, **mini_options(tolerance=-1))
    assert "no training subjects" in error(open_dataset, "vocaset", tmp_path, **mini_options(train_subjects=[]))


def test_malformed_hdtf(tmp_path):
    write_hdtf(tmp_path)
    listing = tmp_path / "video_list_id_framenum-train_test.txt"
    lines = listing.read_text()
    listing.write_text(lines + "WDA_Eve_000 five 10 train\n")
    assert f"{listing} line 6" in error(open_dataset, "hdtf", tmp_path, train_ids=3)
    listing.write_text(lines + "WDA_Eve_000 5 10 train\n")  # id 5 has no template
    assert "no template for id 5 (video WDA_Eve_000" in error(open_dataset, "hdtf", tmp_path, train_ids=5)
    listing.unlink()
    assert f"video list not found: {listing}" in error(open_dataset, "hdtf", tmp_path)
    listing.write_text(lines)

    folder = tmp_path / "spectre_processed_25fps_16kHz" / "WDA_Anna_000"
    (folder / "verts_new_shape1.npy").rename(folder / "kept.npy")
    assert f"vertex file not found: {folder / 'verts_new_shape1.npy'}" in error(open_dataset, "hdtf", tmp_path)
    (folder / "kept.npy").rename(folder / "verts_new_shape1.npy")
    wav = tmp_path / "audio_16000Hz_from_video" / "WDA_Anna_000.wav"
    wav.rename(tmp_path / "kept.wav")
    assert "no audio for video WDA_Anna_000" in error(open_dataset, "hdtf", tmp_path)
    (tmp_path / "kept.wav").rename(wav)

    # a pickled codedict is checked when loaded: its keys, vertex count and length
    verts = folder / "verts_new_shape1.npy"
    np.save(verts, {"vertices": np.zeros((10, V, 3))})
    anna = open_dataset("hdtf", tmp_path).splits["train"][0]
    assert "without a 'verts' array (keys: ['vertices'])" in error(anna.vertices)
    np.save(verts, {"verts": np.zeros((10, V + 3, 3))})
    assert f"has {V + 3} vertices per frame but the template of id_001 has {V}" in error(
        open_dataset("hdtf", tmp_path).splits["train"][0].vertices)
    np.save(verts, {"verts": np.zeros((40, V, 3))})  # 1.6 s of motion, 0.4 s of audio
    assert "holds 40 frames at 25 fps (1.60 s)" in error(open_dataset("hdtf", tmp_path).splits["train"][0].vertices)
    np.save(verts, np.zeros((40, V * 3)))  # a plain array is checked when the dataset opens
    assert "holds 40 frames at 25 fps (1.60 s)" in error(open_dataset, "hdtf", tmp_path)
