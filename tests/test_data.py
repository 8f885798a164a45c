"""Dataset readers (mimic.data): the splits, rates and shapes of VOCASET, BIWI and 3D-HDTF, on the tiny
layouts of tests/dataset_layouts.py (written in code, in each dataset's real on-disk layout)."""

from __future__ import annotations

import json

import numpy as np
from dataset_layouts import (
    BIWI_TRAIN,
    BIWI_UNSEEN,
    VOCASET_TEST,
    VOCASET_TRAIN,
    VOCASET_VAL,
    V,
    error,
    motion,
    names,
    template,
    write_hdtf,
    write_wav_layout,
)

from mimic.data import open_dataset

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
