"""`mimic eval` and its metrics: hand-computed values, the protocol on a tiny random-weight model
and a tiny dataset written in VOCASET's layout, and the command as a user runs it."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from mimic import metrics
from mimic.checkpoint import save_model
from mimic.cli import main
from mimic.errors import MimicError
from mimic.evaluate import evaluate, transfer_lve
from mimic.model import Mimic
from mimic.regions import Regions, load_regions
from mimic.report import save_style_map, write_report

V = 64  # vertices of the tiny meshes


# ------------------------------------------------------------------------------------ metrics


def test_lve_of_known_offsets():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(5, 20, 3)).astype(np.float32)
    pred = gt.copy()
    lips = np.array([2, 5, 7])
    pred[0, 5] += (3, 4, 0)  # squared error 25: the frame's max
    pred[0, 7] += (1, 0, 0)  # 1
    pred[1, 2] += (0, 0, 2)  # 4
    pred[:, 10] += 100  # not a lip vertex
    np.testing.assert_allclose(metrics.lip_errors(pred, gt, lips), [25, 4, 0, 0, 0], atol=1e-5)
    assert metrics.lve(pred, gt, lips) == pytest.approx((25 + 4) / 5, abs=1e-5)
    with pytest.raises(ValueError):
        metrics.lve(pred[:4], gt, lips)


def test_fdd_by_hand():
    upper = np.array([1, 2])
    gt = np.zeros((4, 5, 3))
    gt[:, 1, 0] = [0, 1, 0, 1]  # squared norm 0 1 0 1: std 0.5
    gt[:, 2] = 7  # constant motion: std 0
    gt[:, 4, 0] = [0, 9, 0, 9]  # not upper face
    assert metrics.upper_face_dynamics(gt, upper) == pytest.approx(0.25)
    still = np.zeros_like(gt)
    assert metrics.fdd(still, gt, upper) == pytest.approx(0.25)  # the prediction moves less: positive
    assert metrics.fdd(gt, gt, upper) == 0.0
    assert metrics.fdd(gt, still, upper) == pytest.approx(-0.25)  # exaggerated: negative


def test_fdd_zero_for_same_dynamics_and_positive_for_damped():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(60, 30, 3))
    upper = np.arange(10, 30)
    assert metrics.fdd(gt.copy(), gt, upper) == 0.0
    assert metrics.fdd(gt[::-1].copy(), gt, upper) == pytest.approx(0.0, abs=1e-12)  # reversed time: same std
    assert metrics.fdd(0.5 * gt, gt, upper) > 0
    assert metrics.fdd(2 * gt, gt, upper) < 0


def clusters(n_classes=4, per_class=10, dim=16, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    labels = np.repeat([f"S{i}" for i in range(n_classes)], per_class)
    codes = centres[np.repeat(np.arange(n_classes), per_class)] + spread * rng.normal(size=(len(labels), dim))
    return codes, labels


def test_style_id_accuracy():
    codes, labels = clusters()
    assert metrics.nearest_mean_accuracy(codes, labels) == (1.0, 40)
    # a subject with one sequence has no gallery: not scored, but still a candidate for the others
    codes1, labels1 = np.vstack([codes, codes[:1] + 5]), np.append(labels, "lonely")
    assert metrics.nearest_mean_accuracy(codes1, labels1) == (1.0, 40)
    accuracy, scored = metrics.nearest_mean_accuracy(np.random.default_rng(0).normal(size=(40, 16)), labels)
    assert scored == 40 and accuracy < 0.6
    assert math.isnan(metrics.nearest_mean_accuracy(codes[:3], ["a", "b", "c"])[0])


def test_probe_reads_identity_but_not_noise():
    codes, labels = clusters(per_class=40, spread=0.5)
    found = metrics.probe_accuracy(codes, labels)
    assert found["accuracy"] > 0.95
    assert (found["chance"], found["classes"], found["train"], found["test"]) == (0.25, 4, 80, 80)
    noise = np.random.default_rng(3).normal(size=codes.shape)
    assert abs(metrics.probe_accuracy(noise, labels)["accuracy"] - 0.25) < 0.15
    assert math.isnan(metrics.probe_accuracy(codes[:2], labels[:2])["accuracy"])  # one class, one sample


def test_pca_2d():
    line = np.outer(np.arange(6.0), [1, 2, 3])
    points, explained = metrics.pca_2d(line)
    np.testing.assert_allclose(explained, [1, 0], atol=1e-12)
    np.testing.assert_allclose(np.abs(points[:, 0]), np.abs(np.arange(6) - 2.5) * math.sqrt(14), atol=1e-9)


def test_style_map_is_a_png(tmp_path):
    codes, labels = clusters(n_classes=12)
    path = save_style_map(codes, labels, tmp_path / "sub" / "map.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 200 and height > 200
    # every chunk's CRC holds and the file ends with IEND
    i, chunks = 8, []
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        assert zlib.crc32(kind + body) == int.from_bytes(data[i + 8 + n:i + 12 + n], "big")
        chunks.append(kind)
        i += 12 + n
    assert chunks[-1] == b"IEND" and b"IDAT" in chunks


# ------------------------------------------------------------------------------------ regions


def test_regions_formats(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"lips": [1, 2, 3], "upper_face": [4, 5]}))
    r = load_regions(tmp_path / "r.json")
    assert r.lips.tolist() == [1, 2, 3] and r.upper_face.tolist() == [4, 5]
    (tmp_path / "lips_only.json").write_text(json.dumps({"lips": [7]}))
    assert load_regions(tmp_path / "lips_only.json").upper_face is None
    folder = tmp_path / "regions"  # CodeTalker's BIWI/regions: "i, j, k" in lve.txt and fdd.txt
    folder.mkdir()
    (folder / "lve.txt").write_text("10, 11, 12")
    (folder / "fdd.txt").write_text("20, 21,\n22\n")
    for given in (folder, folder / "lve.txt"):
        r = load_regions(given)
        assert r.lips.tolist() == [10, 11, 12] and r.upper_face.tolist() == [20, 21, 22]


@pytest.mark.parametrize("content, message", [
    (None, r"region file not found"),
    ("{not json", r"not valid JSON"),
    (json.dumps({"upper_face": [1]}), r"no \"lips\" list"),
    (json.dumps({"lips": []}), r"non-empty list of vertex indices"),
    (json.dumps({"lips": [1.5]}), r"whole numbers"),
    (json.dumps({"lips": [-1]}), r"negative vertex index"),
])
def test_bad_regions(tmp_path, content, message):
    path = tmp_path / "regions.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(MimicError, match=message):
        load_regions(path)


def test_regions_outside_the_mesh():
    with pytest.raises(MimicError, match=r"index 64 is outside the mesh's 64 vertices"):
        Regions(np.array([1, 64]), None, "r.json").check(64)


# ----------------------------------------------------------------------- protocol, tiny model

# VOCASET as FaceFormer and CodeTalker lay it out: wav/ and vertices_npy/ (60 fps, flat 3V),
# templates.pkl (a pickle of {subject: (V, 3)}), subject_sentenceNN file names; splits.json
# names the subjects of each split (mimic.data's override of the standard lists).
TEST_SUBJECTS = ["FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA"]
TRAIN_SUBJECT = "FaceTalk_170728_03272_TA"


def write_vocaset(root: Path, sentences=(21, 22, 23), seed=0) -> Path:
    """Two test subjects and one training subject; each subject moves with its own amplitude
    and frequency, so styles differ."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True)
    (root / "vertices_npy").mkdir()
    templates = {}
    for k, subject in enumerate([*TEST_SUBJECTS, TRAIN_SUBJECT]):
        templates[subject] = rng.normal(scale=0.1, size=(V, 3)).astype(np.float32)
        for j, n in enumerate(sentences if subject != TRAIN_SUBJECT else (1, 2)):
            seconds = 1.4 + 0.3 * j
            frames = int(seconds * 60)
            t = np.arange(frames) / 60
            wave = np.sin(2 * np.pi * (1 + k) * t)[:, None, None] * rng.normal(scale=0.002 * (k + 1), size=(1, V, 3))
            vertices = templates[subject] + wave + rng.normal(scale=1e-4, size=(frames, V, 3))
            name = f"{subject}_sentence{n:02d}"
            np.save(root / "vertices_npy" / f"{name}.npy", vertices.reshape(frames, -1).astype(np.float32))
            soundfile.write(root / "wav" / f"{name}.wav", rng.normal(scale=0.1, size=int(seconds * 16000)), 16000)
    with open(root / "templates.pkl", "wb") as f:
        pickle.dump(templates, f, protocol=2)
    # the subject lists of this small copy (the standard ones name 12 subjects)
    (root / "splits.json").write_text(json.dumps({"train": [TRAIN_SUBJECT], "val": [], "test": TEST_SUBJECTS}))
    return root


@pytest.fixture(scope="module")
def tiny_eval_model(tiny_config) -> Mimic:
    """A random-weight VOCASET-preset model with windows of 40 frames, so the demo loop runs
    several windows; its output map is randomised (it is zero at initialisation)."""
    torch.manual_seed(0)
    model = Mimic(tiny_config("vocaset", vertex_count=V, window=40, overlap=5))
    torch.nn.init.normal_(model.decoder.motion_out.weight, std=0.02)
    return model.eval()


@pytest.fixture(scope="module")
def vocaset(tmp_path_factory):
    from mimic.data import open_dataset
    return open_dataset("vocaset", write_vocaset(tmp_path_factory.mktemp("vocaset")))


@pytest.fixture(scope="module")
def regions_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("regions") / "regions.json"
    path.write_text(json.dumps({"lips": list(range(12)), "upper_face": list(range(40, 64))}))
    return path


@pytest.fixture(scope="module")
def result(tiny_eval_model, vocaset, regions_file, tmp_path_factory):
    return evaluate(tiny_eval_model, vocaset, load_regions(regions_file), "test",
                    style_splits=["test", "train"], map_path=tmp_path_factory.mktemp("map") / "map.png")


def test_evaluate_protocol(result, vocaset, tiny_eval_model):
    test = vocaset.splits["test"]
    assert result["dataset"]["sequences"] == len(test) == 6 and result["dataset"]["subjects"] == 2
    rows = result["sequences"]
    # style from the first other sequence of the same subject in the split
    first = {s: next(q.name for q in test if q.subject == s) for s in TEST_SUBJECTS}
    second = {s: [q.name for q in test if q.subject == s][1] for s in TEST_SUBJECTS}
    for row in rows:
        expected = second[row["subject"]] if row["name"] == first[row["subject"]] else first[row["subject"]]
        assert row["style_reference"] == f"{row['subject']}/{expected}" and row["reference_from"] == "split"
        assert row["frames"] > 0 and math.isfinite(row["lve"]) and math.isfinite(row["fdd"])
    # LVE pools frames: the frame-weighted mean of the per-sequence values
    frames = np.array([r["frames"] for r in rows])
    assert result["lve"] == pytest.approx(np.sum(frames * [r["lve"] for r in rows]) / frames.sum())
    assert result["fdd"] == pytest.approx(np.mean([r["fdd"] for r in rows]))
    assert result["lve"] > 0 and result["fdd_abs"] >= abs(result["fdd"])
    st = result["style"]
    assert st["sequences"] == 8 and st["subjects"] == 3 and st["id_chance"] == pytest.approx(1 / 3)
    assert 0 <= st["id_accuracy"] <= 1 and st["content_probe"]["classes"] == 3
    assert result["codes"]["style"].shape == (8, tiny_eval_model.config.feature_dim)
    assert Path(st["map"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["self_referenced"] == 0


def test_transfer_lve_matches_evaluate(result, tiny_eval_model, vocaset, regions_file):
    """The per-sequence LVE of `evaluate` is transfer_lve with the subject's reference sequence."""
    row = result["sequences"][0]
    by_name = {q.name: q for q in vocaset.splits["test"]}
    q, ref = by_name[row["name"]], by_name[row["style_reference"].split("/")[1]]
    template = vocaset.template(q.subject)
    value = transfer_lve(tiny_eval_model, q.audio(), ref.vertices() - template, q.vertices(), template,
                         load_regions(regions_file).lips, fps=vocaset.fps)
    assert value == pytest.approx(row["lve"], rel=1e-6)


def test_reference_from_train_or_self(tiny_eval_model, vocaset, regions_file):
    """A test subject with one sequence takes its style from the train split, or from itself."""
    import dataclasses
    lone = [vocaset.splits["test"][0]]
    subject = lone[0].subject
    train = [dataclasses.replace(vocaset.splits["train"][0], subject=subject)]
    for splits, how in (({"train": train, "val": [], "test": lone}, "train"),
                        ({"train": [], "val": [], "test": lone}, "self")):
        data = dataclasses.replace(vocaset, splits=splits)
        got = evaluate(tiny_eval_model, data, load_regions(regions_file), "test")
        assert got["sequences"][0]["reference_from"] == how
        assert got["self_referenced"] == (how == "self")
        assert got["style"]["id_accuracy"] is None and got["style"]["content_probe"]["accuracy"] is None
        assert json.dumps({k: v for k, v in got.items() if k != "codes"}, allow_nan=False)


def test_evaluate_rejects_mismatches(tiny_eval_model, vocaset):
    with pytest.raises(MimicError, match=r"index 64 is outside"):
        evaluate(tiny_eval_model, vocaset, Regions(np.array([64]), None, "r"), "test")
    with pytest.raises(MimicError, match=r"no sequences in split 'nope'"):
        evaluate(tiny_eval_model, vocaset, Regions(np.array([0]), None, "r"), "nope")


def test_report_files(result, tmp_path):
    md, js = write_report(result, tmp_path / "out")
    data = json.loads(js.read_text())
    assert "codes" not in data and data["lve"] == result["lve"]
    assert "| LVE |" in md.read_text() and TEST_SUBJECTS[0] in md.read_text()


# ------------------------------------------------------------------------------ the command


def test_mimic_eval_end_to_end(tmp_path, tiny_eval_model, regions_file):
    data = write_vocaset(tmp_path / "vocaset")
    save_model(tiny_eval_model, tmp_path / "model")
    out = tmp_path / "results"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "mimic.cli", "eval", "--checkpoint", tmp_path / "model",
                           "--data", data, "--kind", "vocaset", "--regions", regions_file, "--out", out,
                           "--device", "cpu"], check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "| LVE |" in done.stdout and "| style ID accuracy |" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md", "style_map.png"]
    results = json.loads((out / "results.json").read_text())
    numbers = [results["lve"], results["fdd"], results["fdd_abs"], results["style"]["id_accuracy"],
               *(r["lve"] for r in results["sequences"]), *(r["fdd"] for r in results["sequences"])]
    assert all(isinstance(x, float) and math.isfinite(x) for x in numbers), numbers
    assert results["dataset"]["sequences"] == 6 and results["lve"] > 0
    md = (out / "results.md").read_text()
    assert f"{results['lve']:.4e}" in md and "nan" not in md.lower()
    assert (out / "style_map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_region_file(tmp_path, capsys):
    code = main(["eval", "--checkpoint", str(tmp_path / "model"), "--data", str(tmp_path), "--kind", "vocaset",
                 "--regions", str(tmp_path / "nowhere.json"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("mimic eval: error: region file not found: ")
    assert not (tmp_path / "out").exists()
