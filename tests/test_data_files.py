"""Dataset files that are not what they should be (mimic.data_files): pickles that would run code or
come from Python 2, missing, unreadable or mismatched templates, audio and vertex files, bad options;
each refused with one clear message, on the tiny layouts of tests/dataset_layouts.py."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from dataset_layouts import (
    V,
    error,
    mini_options,
    mini_vocaset,
    motion,
    names,
    python2_pickle,
    template,
    write_hdtf,
    write_wav,
)

from mimic.data import open_dataset, read_templates

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
