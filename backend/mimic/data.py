"""Dataset readers for training and evaluation: numpy and soundfile only (no torch).

Three layouts, as people have them on disk:
- **VOCASET** as FaceFormer/CodeTalker prepare it: `wav/<subject>_<sentence>.wav`,
  `vertices_npy/<subject>_<sentence>.npy` ((T, V*3) at 60 fps; every 2nd frame is kept -> 30 fps),
  `templates.pkl` (subject -> (V, 3); written by Python 2).
- **BIWI** as CodeTalker prepares it: the same three, 25 fps, subjects F1..F8 M1..M6, sentences e01..e40.
- **3D-HDTF** as the Mimic authors publish it: `video_list_id_framenum-train_test.txt`,
  `audio_16000Hz_from_video/<video>.wav`, `spectre_processed_25fps_16kHz/<video>/verts_new_shape1.npy`
  (a pickled dict; its 'verts' are the frames), `templates.pkl` keyed by integer id, 25 fps.

`open_dataset` checks what is cheap up front (every file a split uses exists, the templates, and for
plain .npy files the vertex count and the length against the audio); `Sequence.vertices()` checks
the rest when it loads (pickled .npy files). A malformed dataset is a MimicError naming the file.

Pickles (`templates.pkl`, 3D-HDTF's pickled .npy dicts) go through a restricted unpickler that
admits only numpy's array-rebuilding globals: a downloaded pickle can otherwise run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr

from .data_files import (
    audio_duration,
    frames_and_vertices,
    load_npy,
    motion_array,
    plain_npy_shape,
    read_speech_npy,
    read_templates,
)
from .errors import MimicError
from .files import check_vertices, load_audio

# Audio and motion of one sequence may differ by this much (frame rounding, a trailing breath)
# before the sequence is refused as mismatched.
LENGTH_TOLERANCE = 0.5  # seconds

# Subject lists and sentence ranges of FaceFormer (github.com/EvelynFan/FaceFormer: data_loader.py,
# biwi/data_loader.py, biwi/main.py) and CodeTalker (github.com/Doubiiu/CodeTalker:
# dataset/data_loader.py, config/vocaset/stage2.yaml, config/BIWI/stage2.yaml). A file's subject is
# its stem up to the last "_", its sentence the stem's last two digits.
VOCASET_SUBJECTS = {
    "train": ["FaceTalk_170728_03272_TA", "FaceTalk_170904_00128_TA", "FaceTalk_170725_00137_TA",
              "FaceTalk_170915_00223_TA", "FaceTalk_170811_03274_TA", "FaceTalk_170913_03279_TA",
              "FaceTalk_170904_03276_TA", "FaceTalk_170912_03278_TA"],
    "val": ["FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA"],
    "test": ["FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA"],
}
BIWI_SUBJECTS = {
    "train": ["F2", "F3", "F4", "M3", "M4", "M5"],
    "val": ["F2", "F3", "F4", "M3", "M4", "M5"],  # the same six: val is sentences 33-36 of the seen subjects
    "test": ["F1", "F5", "F6", "F7", "F8", "M1", "M2", "M6"],  # the unseen subjects (Test-B)
}
# (split, subject list it draws from, sentences). VOCASET: FaceFormer's
# {'train': range(1,41), 'val': range(21,41), 'test': range(21,41)}. BIWI: 1-32 train, 33-36 val,
# 37-40 test; the code's test subjects are the unseen ones (Test-B); Test-A is sentences 37-40 of
# the training subjects (FaceFormer paper: 24 sentences of 6 seen subjects, 32 of 8 unseen).
VOCASET_RULES = (("train", "train", range(1, 41)), ("val", "val", range(21, 41)), ("test", "test", range(21, 41)))
BIWI_RULES = (("train", "train", range(1, 33)), ("val", "val", range(33, 37)),
              ("test_a", "train", range(37, 41)), ("test_b", "test", range(37, 41)))

# 3D-HDTF as the Mimic reference reads it (github.com/huifu99/Mimic: config/HDTF/config.yaml,
# data/dataloader_HDTF.py).
HDTF_LIST = "video_list_id_framenum-train_test.txt"  # lines "<video> <id> <frames> <train|test>"
HDTF_VAL_LIST = "video_list_id_framenum-val.txt"  # the config's val_video_list (the released code never reads it)
HDTF_AUDIO = "audio_16000Hz_from_video"  # <video>.wav
HDTF_MOTION = "spectre_processed_25fps_16kHz"  # <video>/verts_new_shape1.npy, <video>/audio_librosa.npy
HDTF_VERTS = "verts_new_shape1.npy"
HDTF_AUDIO_NPY = "audio_librosa.npy"  # what the reference actually reads: {'speech_array', 'sampling_rate'}
HDTF_TRAIN_IDS = 150  # config train_ids: ids 1..150 train, one classifier head each (index id-1)

TEMPLATES = "templates.pkl"
SPLITS_JSON = "splits.json"


# --- sequences and datasets ------------------------------------------------------------------

@dataclass
class Sequence:
    """One recorded sentence (or video): its audio and its per-frame vertices."""
    subject: str  # identity, e.g. "FaceTalk_170725_00137_TA", "F2", "id_002"
    name: str  # unique sequence name, e.g. "FaceTalk_170725_00137_TA_sentence01"
    audio_path: Path
    vertices_path: Path
    # Set by open_dataset; a hand-made Sequence(subject, name, audio, vertices) loads unchecked at step 1.
    frame_step: int = field(default=1, repr=False)  # frames kept: VOCASET's 60 fps files -> 30 fps = 2
    fps: float | None = field(default=None, repr=False)  # frames per second after frame_step
    vertex_count: int | None = field(default=None, repr=False)  # the subject's template's
    tolerance: float = field(default=LENGTH_TOLERANCE, repr=False)  # seconds audio and motion may differ
    _length_checked: bool = field(default=False, init=False, repr=False, compare=False)

    def audio(self, sample_rate: int = 16000) -> np.ndarray:
        """Mono float32 samples at sample_rate."""
        if self.audio_path.suffix != ".npy":
            return load_audio(self.audio_path, sample_rate)
        samples, rate = read_speech_npy(self.audio_path)
        samples = samples.astype(np.float32)
        if not np.isfinite(samples).all():
            raise MimicError(f"audio file {self.audio_path} contains NaN or infinite samples")
        if rate != sample_rate:
            samples = soxr.resample(samples, rate, sample_rate, quality="HQ").astype(np.float32)
        return np.ascontiguousarray(samples)

    def vertices(self) -> np.ndarray:
        """(T, V, 3) float32 at the dataset's fps (every frame_step-th frame of the file)."""
        array = motion_array(load_npy(self.vertices_path), self.vertices_path)
        frames, count = frames_and_vertices(array.shape, self.vertices_path)
        self._check_vertex_count(count)
        self._check_length(frames)
        with np.errstate(over="ignore"):  # values beyond float32 become inf, reported by check_vertices
            kept = np.array(array[::self.frame_step], dtype=np.float32)  # a copy: never the read-only map
        return check_vertices(kept, str(self.vertices_path), count, frames=True)

    def _check_vertex_count(self, count: int):
        if self.vertex_count is not None and count != self.vertex_count:
            raise MimicError(f"{self.vertices_path} has {count} vertices per frame but the template of "
                             f"{self.subject} has {self.vertex_count}")

    def _check_length(self, frames: int):
        """`frames` as stored in the file (before frame_step) against the audio's duration."""
        if self.fps is None or self._length_checked:
            return
        rate = self.fps * self.frame_step
        audio, motion = audio_duration(self.audio_path), frames / rate
        if abs(audio - motion) > self.tolerance:
            raise MimicError(f"{self.name}: the audio {self.audio_path} lasts {audio:.2f} s but "
                             f"{self.vertices_path} holds {frames} frames at {rate:g} fps ({motion:.2f} s); "
                             f"they may differ by at most {self.tolerance:g} s")
        self._length_checked = True


@dataclass
class Dataset:
    """A dataset's sequences by split, its subjects' neutral templates and its frame rate."""
    kind: str  # "vocaset" | "biwi" | "hdtf"
    root: Path
    fps: float  # 30 vocaset, 25 biwi and hdtf
    vertex_count: int
    templates: dict[str, np.ndarray]  # subject -> (V, 3) float32
    splits: dict[str, list[Sequence]]  # "train", "val", "test" (BIWI also "test_a", "test_b"; test = a + b)
    train_subjects: list[str]  # the identities of the classifier heads, in class-index order

    def template(self, subject: str) -> np.ndarray:
        if subject not in self.templates:
            raise MimicError(f"{self.root / TEMPLATES} has no template for subject {subject}")
        return self.templates[subject]


def open_dataset(kind: str, root: str | Path, **options) -> Dataset:
    """Read a dataset's layout, splits and templates, checking its files (see the module notes).

    vocaset, biwi: train_subjects=, val_subjects=, test_subjects= (lists, or space-separated strings)
    replace the standard lists (BIWI: test_subjects are the unseen Test-B ones), as does a
    `splits.json` {"train": [...], "val": [...], "test": [...]} at the root (options win over it);
    skip_missing=True leaves out wavs without a vertex file (what FaceFormer/CodeTalker do silently).
    hdtf: train_ids= (150): ids 1..train_ids are the training identities.
    All: vertex_count= (checked against the templates), tolerance= (seconds, default 0.5).
    """
    root = Path(root)
    kind = kind.lower() if isinstance(kind, str) else kind
    readers = {"vocaset": _open_vocaset, "biwi": _open_biwi, "hdtf": _open_hdtf}
    if kind not in readers:
        raise MimicError(f"unknown dataset kind {kind!r}; choose one of {', '.join(readers)}")
    allowed = {"vertex_count", "tolerance"} | (
        {"train_ids"} if kind == "hdtf" else {"train_subjects", "val_subjects", "test_subjects", "skip_missing"})
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise MimicError(f"unknown option(s) for a {kind} dataset: {', '.join(unknown)} "
                         f"(accepted: {', '.join(sorted(allowed))})")
    if not root.is_dir():
        raise MimicError(f"dataset folder not found: {root}")
    tolerance = options.pop("tolerance", LENGTH_TOLERANCE)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise MimicError(f"tolerance must be a number of seconds >= 0, not {tolerance!r}")
    return readers[kind](root, tolerance=float(tolerance), **options)


def _templates(root: Path, kind: str, vertex_count: int | None, rename=str) -> tuple[dict[str, np.ndarray], int]:
    path = root / TEMPLATES
    if not path.is_file():
        layout = ("video_list_id_framenum-train_test.txt, audio_16000Hz_from_video/ and spectre_processed_25fps_16kHz/"
                  if kind == "hdtf" else "wav/ and vertices_npy/")
        raise MimicError(f"{TEMPLATES} not found in {root}: a {kind} dataset holds {TEMPLATES}, {layout}")
    loaded = read_templates(path)
    templates = {rename(subject): template for subject, template in loaded.items()}
    if len(templates) != len(loaded):
        raise MimicError(f"{path} holds two templates for one subject (keys {sorted(loaded)})")
    counts = {subject: len(template) for subject, template in templates.items()}
    first = next(iter(counts))
    for subject, count in counts.items():
        if count != counts[first]:
            raise MimicError(f"{path}: the templates differ in vertex count ({first}: {counts[first]}, "
                             f"{subject}: {count})")
    if vertex_count is not None and counts[first] != vertex_count:
        raise MimicError(f"{path}: the templates have {counts[first]} vertices, not the {vertex_count} expected")
    return templates, counts[first]


def _check_plain_vertices(sequence: Sequence):
    """Vertex count and length of a numeric .npy from its header; pickled ones wait for vertices()."""
    if not sequence.vertices_path.is_file():
        raise MimicError(f"vertex file not found: {sequence.vertices_path} (for {sequence.audio_path})")
    shape = plain_npy_shape(sequence.vertices_path)
    if shape is not None:
        frames, count = frames_and_vertices(shape, sequence.vertices_path)
        sequence._check_vertex_count(count)
        sequence._check_length(frames)


def _subject_list(value, what: str) -> list[str]:
    if isinstance(value, str):
        value = value.split()  # FaceFormer's "A B C"
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) and s.strip() for s in value):
        raise MimicError(f"{what} must be a list of subject names, not {value!r}")
    if len(set(value)) != len(value):
        raise MimicError(f"{what} names a subject twice: {list(value)}")
    return list(value)


def _subject_lists(root: Path, defaults: dict[str, list[str]], options: dict) -> dict[str, list[str]]:
    """Defaults < root/splits.json < options."""
    lists = {split: list(subjects) for split, subjects in defaults.items()}
    path = root / SPLITS_JSON
    if path.is_file():
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MimicError(f"cannot read {path}: {e}") from None
        if not isinstance(content, dict) or set(content) - set(lists):
            raise MimicError(f"{path} must be an object with lists under {', '.join(lists)}")
        for split, subjects in content.items():
            lists[split] = _subject_list(subjects, f"{path} '{split}'")
    for split in lists:
        if options.get(f"{split}_subjects") is not None:
            lists[split] = _subject_list(options[f"{split}_subjects"], f"{split}_subjects")
    if not lists["train"]:
        raise MimicError(f"no training subjects for the dataset in {root}")
    return lists


def _parse_stem(wav: Path) -> tuple[str, int]:
    """FaceFormer's naming: subject = stem up to the last "_", sentence = the stem's last two digits."""
    subject, _, sentence = wav.stem.rpartition("_")
    if not subject or len(sentence) < 2 or not sentence[-2:].isdigit():
        raise MimicError(f"{wav}: expected a name <subject>_<sentence>.wav ending in a two-digit sentence "
                         "number, e.g. F2_e01.wav or FaceTalk_170725_00137_TA_sentence01.wav")
    return subject, int(sentence[-2:])


def _open_wav_layout(root: Path, kind: str, fps: float, frame_step: int, defaults, rules, *, tolerance: float,
                     train_subjects=None, val_subjects=None, test_subjects=None, skip_missing: bool = False,
                     vertex_count: int | None = None) -> Dataset:
    templates, count = _templates(root, kind, vertex_count)
    lists = _subject_lists(root, defaults, {"train_subjects": train_subjects, "val_subjects": val_subjects,
                                            "test_subjects": test_subjects})
    for split, subjects in lists.items():
        for subject in subjects:
            if subject not in templates:
                raise MimicError(f"{root / TEMPLATES} has no template for subject {subject} (a {split} subject)")
    wav_dir, vertex_dir = root / "wav", root / "vertices_npy"
    if not wav_dir.is_dir():
        raise MimicError(f"audio folder not found: {wav_dir} (a {kind} dataset holds wav/<subject>_<sentence>.wav)")

    splits: dict[str, list[Sequence]] = {split: [] for split, _, _ in rules}
    seen: dict[str, Path] = {}
    for wav in sorted(p for p in wav_dir.rglob("*") if p.suffix.lower() == ".wav"):  # FaceFormer walks subfolders too
        subject, sentence = _parse_stem(wav)
        if wav.stem in seen:
            raise MimicError(f"two audio files for sequence {wav.stem}: {seen[wav.stem]} and {wav}")
        seen[wav.stem] = wav
        targets = [split for split, source, sentences in rules if subject in lists[source] and sentence in sentences]
        if not targets:
            continue
        sequence = Sequence(subject, wav.stem, wav, vertex_dir / f"{wav.stem}.npy", frame_step=frame_step, fps=fps,
                            vertex_count=count, tolerance=tolerance)
        if skip_missing and not sequence.vertices_path.is_file():
            continue
        _check_plain_vertices(sequence)
        for split in targets:
            splits[split].append(sequence)

    for split, source, sentences in rules:
        present = {sequence.subject for sequence in splits[split]}
        for subject in lists[source]:
            if subject not in present:
                raise MimicError(f"{kind} split '{split}': subject {subject} has no sequence with a sentence "
                                 f"{sentences.start}-{sentences.stop - 1} in {wav_dir} (with its vertex file)")
    if "test_a" in splits:
        splits["test"] = splits["test_a"] + splits["test_b"]
    return Dataset(kind, root, fps, count, templates, splits, list(lists["train"]))


def _open_vocaset(root: Path, **options) -> Dataset:
    return _open_wav_layout(root, "vocaset", 30.0, 2, VOCASET_SUBJECTS, VOCASET_RULES, **options)


def _open_biwi(root: Path, **options) -> Dataset:
    return _open_wav_layout(root, "biwi", 25.0, 1, BIWI_SUBJECTS, BIWI_RULES, **options)


def _hdtf_subject(key) -> str:
    """3D-HDTF identities are integer ids (1-based: the reference's one-hot index is id-1): "id_002"."""
    try:
        return f"id_{int(key):03d}"
    except (TypeError, ValueError):
        return str(key)


def _read_video_list(path: Path) -> list[tuple[str, int, bool, int]]:
    """(video, id, tagged 'test', line number) per line "<video> <id> <frames> <train|test>"."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise MimicError(f"cannot read {path}: {e}") from None
    entries, ids = [], {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        try:
            video, identity = fields[0], int(fields[1])
        except (IndexError, ValueError):
            raise MimicError(f"{path} line {number}: expected '<video> <id> <frames> <train|test>', "
                             f"got {line.strip()!r}") from None
        if video in ids:  # listed twice: the reference's dict keeps one entry
            if ids[video] != identity:
                raise MimicError(f"{path} line {number}: video {video} listed with ids {ids[video]} and {identity}")
            continue
        ids[video] = identity
        entries.append((video, identity, fields[-1] == "test", number))  # the reference: split(' ')[-1] != 'test'
    return entries


def _open_hdtf(root: Path, *, tolerance: float, train_ids: int = HDTF_TRAIN_IDS,
               vertex_count: int | None = None) -> Dataset:
    """Splits (the released loader implements only train; val and test are this reader's reading of
    the config and the list's train/test column):
    - train: lines not tagged 'test' with 1 <= id <= train_ids (exactly the reference's filter);
    - val: the lines of video_list_id_framenum-val.txt when present (config val_video_list), else
      the untagged lines with id > train_ids (the identities held out of training, config val_ids);
    - test: the lines tagged 'test'.
    The list's frame counts are not used (the reference ignores them too): lengths come from the files."""
    if isinstance(train_ids, bool) or not isinstance(train_ids, int) or train_ids < 1:
        raise MimicError(f"train_ids must be a positive integer, not {train_ids!r}")
    templates, count = _templates(root, "hdtf", vertex_count, rename=_hdtf_subject)
    list_path = root / HDTF_LIST
    if not list_path.is_file():
        raise MimicError(f"video list not found: {list_path} (a 3D-HDTF dataset lists its videos there)")
    entries = _read_video_list(list_path)
    val_path = root / HDTF_VAL_LIST
    chosen = {
        "train": [(e, list_path) for e in entries if not e[2] and 1 <= e[1] <= train_ids],
        "val": ([(e, val_path) for e in _read_video_list(val_path)] if val_path.is_file()
                else [(e, list_path) for e in entries if not e[2] and e[1] > train_ids]),
        "test": [(e, list_path) for e in entries if e[2]],
    }
    if not chosen["train"]:
        raise MimicError(f"{list_path} lists no training video (a line not tagged 'test' with an id 1-{train_ids})")

    splits: dict[str, list[Sequence]] = {}
    for split, selected in chosen.items():
        splits[split] = []
        for (video, identity, _, number), source in selected:
            subject = _hdtf_subject(identity)
            if subject not in templates:
                raise MimicError(f"{root / TEMPLATES} has no template for id {identity} "
                                 f"(video {video}, {source.name} line {number})")
            audio = root / HDTF_AUDIO / f"{video}.wav"
            if not audio.is_file():  # the reference itself reads the pickled copy next to the motion
                audio = root / HDTF_MOTION / video / HDTF_AUDIO_NPY
            if not audio.is_file():
                raise MimicError(f"no audio for video {video} ({source.name} line {number}): neither "
                                 f"{root / HDTF_AUDIO / (video + '.wav')} nor {audio} exists")
            sequence = Sequence(subject, video, audio, root / HDTF_MOTION / video / HDTF_VERTS, fps=25.0,
                                vertex_count=count, tolerance=tolerance)
            _check_plain_vertices(sequence)
            if audio.suffix == ".wav":
                audio_duration(audio)  # readable now rather than in the middle of training
            splits[split].append(sequence)
    train_subjects = [_hdtf_subject(i) for i in range(1, train_ids + 1)]
    return Dataset("hdtf", root, 25.0, count, templates, splits, train_subjects)

