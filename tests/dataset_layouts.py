"""Tiny datasets in each dataset's real on-disk layout, written in code for tests/test_data*.py
(VOCASET and BIWI as FaceFormer/CodeTalker prepare them, 3D-HDTF as the Mimic authors publish it):
20-vertex meshes and a few hundred milliseconds of generated tones. No dataset file is stored."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import soundfile

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
