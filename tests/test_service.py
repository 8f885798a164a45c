"""`mimic serve` through the add-on's client: a real backend process, real files, nothing mocked.

One backend serves the whole module (starting one costs seconds); every test leaves it usable.
Protocol-level misbehaviour (bad JSON, unknown types) is written raw to the process's stdin.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
from paths import LINE
from service_backend import (
    CHECKPOINT,
    RAW_ID,
    V,
    code_of,
    frames_of,
    raw,
    reply_to,
    still_answers,
    style_of,
)

from mimic import protocol as p
from mimic.checkpoint import load_model, save_model

# ------------------------------------------------------------------------------------ handshake


def test_hello_reports_protocol_versions_and_devices(s):
    import torch

    import mimic

    f = s.facts
    from mimic.precision import supported_precisions

    assert f["type"] == p.RESULT and f["protocol"] == p.VERSION == 4
    assert f["backend"] == mimic.__version__ and f["torch"] == torch.__version__
    assert "cpu" in f["devices"] and f["device"] in f["devices"]
    assert f["precisions"] == {d: supported_precisions(torch.device(d)) for d in f["devices"]}
    assert f["precisions"]["cpu"][0] == p.FP32
    assert f["model"] is None  # nothing loaded at the handshake


def test_requests_before_load_fail_with_no_model(s):
    assert s.before_load == {p.GENERATE: p.NO_MODEL, p.ENCODE_STYLE: p.NO_MODEL, p.READ_AUDIO: p.NO_MODEL}


def test_load_reports_model_facts_and_hello_repeats_them(s):
    facts = {k: v for k, v in s.loaded.items() if k not in ("type", "id")}
    assert facts == {"checkpoint": CHECKPOINT, "device": "cpu", "precision": p.FP32, "vertex_count": V, "fps": 25.0,
                     "sample_rate": 16000, "style_dim": 32, "window": 150}
    hello = s.backend.request(p.HELLO, timeout=30, protocol=p.VERSION, workdir=str(s.backend.workdir))
    assert hello["model"] == facts


def test_other_protocol_version_is_refused(s):
    e = code_of(s.backend, p.HELLO, protocol=999, workdir=str(s.backend.workdir))
    assert e.code == p.VERSION_MISMATCH and "999" in str(e)
    still_answers(s.backend)


# --------------------------------------------------------------------------------- the happy path


def test_encode_style_matches_the_reference_code(s, ref):
    reply = s.backend.request(p.ENCODE_STYLE, timeout=60, vertices=s.files.reference, neutral=s.files.neutral)
    assert reply["frames"] == 150
    np.testing.assert_allclose(reply["style"], ref["style_code"], atol=1e-4)


def test_generate_reproduces_the_demo_within_the_bound(s, ref):
    progress = []
    result = s.backend.request(p.GENERATE, timeout=300, on_progress=lambda *a: progress.append(a),
                               audio=s.files.speech, style=style_of(s))
    total = len(ref["demo_vertices"])
    assert result["frames"] == total == 200 and result["fps"] == 25.0
    assert result["error_bound"] == p.DEFAULT_ERROR_BOUND and 0 <= result["max_error"] <= result["error_bound"]

    # progress: the stages in order, each from 0 (never going back) to the total
    assert progress[0] == (0, total, p.ENCODING) and progress[-1] == (total, total, p.COMPRESSING)
    assert [s for _, _, s in progress] == sorted((s for _, _, s in progress), key=p.STAGES.index)
    for stage in (p.ENCODING, p.GENERATING):
        done = [d for d, _, s in progress if s == stage]
        assert done[0] == 0 and done[-1] == total and done == sorted(done)
        assert len([d for d in done if 0 < d < 150]) >= 3  # progress within the first window
    assert all(t == total for _, t, _ in progress)

    # the result files live in the session folder
    for name in ("mean", "basis", "weights"):
        assert Path(result[name]).parent == s.backend.workdir and Path(result[name]).is_file()

    frames = frames_of(result) + ref["template"].reshape(V, 3)
    errors = np.linalg.norm(frames - ref["demo_vertices"], axis=-1)
    assert errors.max() <= result["error_bound"] + 1e-5


def test_a_looser_bound_gives_fewer_shapes_still_within_it(s, ref):
    style = style_of(s)
    tight = s.backend.request(p.GENERATE, timeout=300, audio=s.files.speech, style=style, error_bound=1e-4)
    loose = s.backend.request(p.GENERATE, timeout=300, audio=s.files.speech, style=style, error_bound=0.05)
    assert loose["k"] < tight["k"]
    assert tight["mean"] != loose["mean"]  # every result has files of its own
    frames = frames_of(loose) + ref["template"].reshape(V, 3)
    assert np.linalg.norm(frames - ref["demo_vertices"], axis=-1).max() <= 0.05 + 1e-5
    assert loose["max_error"] <= 0.05


def test_a_bound_above_all_motion_needs_no_shapes(s, ref):
    path = s.backend.workdir / "one-second.npy"
    np.save(path, ref["speech_16k"][:16000])
    style = style_of(s)
    exact = frames_of(s.backend.request(p.GENERATE, timeout=120, audio=str(path), style=style, error_bound=1e-6))
    result = s.backend.request(p.GENERATE, timeout=120, audio=str(path), style=style, error_bound=1e3)
    assert result["frames"] == 25 and result["k"] == 0
    frames = frames_of(result)  # every frame is the mean
    true_error = np.linalg.norm(frames - exact, axis=-1).max()
    assert result["max_error"] == pytest.approx(true_error, abs=1e-4) and true_error > 0.01


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("content", [None, b"", b"not a checkpoint at all\n" * 100, "truncated"])
def test_bad_checkpoint_is_reported_and_the_backend_stays_usable(s, tmp_path, content):
    path = tmp_path / "model.pth"
    if content == "truncated":
        data = Path(CHECKPOINT).read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif content is not None:
        path.write_bytes(content)
    e = code_of(s.backend, p.LOAD, checkpoint=str(path))
    assert e.code == p.BAD_CHECKPOINT
    assert str(path) in str(e) and "\n" not in str(e) and len(str(e)) < 500  # one clear line
    assert ("not found" in str(e)) == (content is None)
    still_answers(s.backend)  # and the model loaded before is still there
    assert len(style_of(s)) == 32


@pytest.mark.parametrize("kind", ["pth", "folder"])
def test_a_loaded_checkpoint_overwritten_in_place_keeps_serving(s, tmp_path, kind):
    """Retraining into the same file while a warm backend keeps the model: the backend keeps its own
    copy (a memory-mapped file cut short under it would kill the process at its next read)."""
    if kind == "pth":
        path = weights = tmp_path / "model.pth"
        path.write_bytes(Path(CHECKPOINT).read_bytes())
        shutil.copytree(Path(CHECKPOINT).parent / "tiny-wav2vec2", tmp_path / "tiny-wav2vec2")  # its audio model
    else:
        path = save_model(load_model(CHECKPOINT), tmp_path / "model")
        weights = path / "model.safetensors"
    s.backend.request(p.LOAD, timeout=120, checkpoint=str(path), device="cpu")
    want = s.backend.request(p.GENERATE, timeout=120, audio=s.files.speech, style=style_of(s), error_bound=1e-7)
    with open(weights, "r+b") as f:  # in place: the same file, cut to nothing, then other bytes
        f.truncate(0)
        f.write(b"retraining..." * 1000)
    got = s.backend.request(p.GENERATE, timeout=120, audio=s.files.speech, style=style_of(s), error_bound=1e-7)
    assert np.abs(frames_of(got) - frames_of(want)).max() <= 1e-6
    s.backend.request(p.LOAD, timeout=120, checkpoint=CHECKPOINT, device="cpu")


def test_style_reference_with_the_wrong_vertex_count(s, ref):
    path = s.backend.workdir / "wrong-topology.npy"
    np.save(path, np.zeros((10, V + 1, 3), np.float32))
    e = code_of(s.backend, p.ENCODE_STYLE, vertices=str(path), neutral=s.files.neutral)
    assert e.code == p.BAD_INPUT and f"{V + 1} vertices" in str(e) and str(V) in str(e)


# ------------------------------------------------------------------------------------ read_audio


def test_read_audio_cuts_a_16k_wav_exactly(s, ref):
    speech = ref["speech_16k"].astype(np.float32)
    path = s.backend.workdir / "speech.wav"
    soundfile.write(path, speech, 16000, subtype="FLOAT")
    reply = s.backend.request(p.READ_AUDIO, timeout=60, path=str(path), start=1234, stop=40_000)
    assert reply["samples"] == 40_000 - 1234 and Path(reply["audio"]).parent == s.backend.workdir
    np.testing.assert_array_equal(np.load(reply["audio"]), speech[1234:40_000])
    past_the_end = s.backend.request(p.READ_AUDIO, timeout=60, path=str(path), start=len(speech) - 100,
                                     stop=len(speech) + 900)
    assert past_the_end["samples"] == 100
    for to_the_end in (dict(stop=None), {}):  # stop null or left out: the whole rest of the file
        rest = s.backend.request(p.READ_AUDIO, timeout=60, path=str(path), start=1234, **to_the_end)
        np.testing.assert_array_equal(np.load(rest["audio"]), speech[1234:])


def test_read_audio_mixes_and_resamples_other_files(s):
    """Real speech as a 44.1 kHz stereo FLAC (the channels at different levels) -> 16 kHz mono again."""
    speech, rate = soundfile.read(LINE, dtype="float64")
    assert rate == 16000
    high = soxr.resample(speech, 16000, 44100, quality="HQ")
    path = s.backend.workdir / "speech.flac"
    soundfile.write(path, np.stack([0.25 * high, 0.75 * high], axis=1), 44100, subtype="PCM_24")
    reply = s.backend.request(p.READ_AUDIO, timeout=60, path=str(path), start=8000, stop=72_000)
    back = np.load(reply["audio"])
    assert back.dtype == np.float32 and back.shape == (64_000,)
    error = back - 0.5 * speech[8000:72_000]
    assert np.sqrt(np.mean(error**2)) < 0.01 * np.sqrt(np.mean((0.5 * speech[8000:72_000]) ** 2))


def test_read_audio_refuses_what_it_cannot_cut(s, tmp_path):
    path = tmp_path / "short.wav"
    soundfile.write(path, np.zeros(1600, np.float32), 16000)
    e = code_of(s.backend, p.READ_AUDIO, path=str(path), start=1600, stop=3200)
    assert e.code == p.BAD_INPUT and "short.wav has no sound from 0.10 s on" in str(e)
    e = code_of(s.backend, p.READ_AUDIO, path=str(tmp_path / "gone.wav"), start=0, stop=10)
    assert e.code == p.BAD_INPUT and "gone.wav" in str(e)
    (tmp_path / "noise.wav").write_bytes(b"RIFF not really")
    e = code_of(s.backend, p.READ_AUDIO, path=str(tmp_path / "noise.wav"), start=0, stop=10)
    assert e.code == p.BAD_INPUT and "cannot read audio" in str(e)
    for start, stop in ((10, 10), (-1, 5)):
        assert code_of(s.backend, p.READ_AUDIO, path=str(path), start=start, stop=stop).code == p.BAD_REQUEST
    still_answers(s.backend)


def test_unreadable_arrays_are_bad_input(s):
    e = code_of(s.backend, p.ENCODE_STYLE, vertices=str(s.backend.workdir / "missing.npy"), neutral=s.files.neutral)
    assert e.code == p.BAD_INPUT and "missing.npy" in str(e)
    not_npy = s.backend.workdir / "text.npy"
    not_npy.write_text("hello")
    e = code_of(s.backend, p.GENERATE, audio=str(not_npy), style=[0.0] * 32)
    assert e.code == p.BAD_INPUT and "text.npy" in str(e)


@pytest.mark.parametrize("style", [[0.0] * 31, [0.0] * 33, []])
def test_style_code_of_the_wrong_length(s, style):
    e = code_of(s.backend, p.GENERATE, audio=s.files.speech, style=style)
    assert e.code == p.BAD_INPUT and "32" in str(e)


def test_style_code_must_be_finite_numbers(s):
    e = code_of(s.backend, p.GENERATE, audio=s.files.speech, style=["x"] + [0.0] * 31)
    assert e.code == p.BAD_INPUT


@pytest.mark.parametrize("bound, code", [(0, p.BAD_INPUT), (-1.0, p.BAD_INPUT), ("small", p.BAD_REQUEST),
                                         (None, p.BAD_REQUEST)])
def test_error_bound_must_be_a_positive_number(s, bound, code):
    e = code_of(s.backend, p.GENERATE, audio=s.files.speech, style=[0.0] * 32, error_bound=bound)
    assert e.code == code


def test_missing_field_is_bad_request(s):
    e = code_of(s.backend, p.LOAD)
    assert e.code == p.BAD_REQUEST and "checkpoint" in str(e)


@pytest.mark.parametrize("line", [b"{this is not json", b"[1, 2, 3]", b'{"id": 5}', b"[" * 100_000,
                                  b"\xff\xfe not utf-8"])
def test_malformed_line_gets_an_error_with_null_id(s, line):
    raw(s.backend, line)
    reply = reply_to(s.backend, None)
    assert reply["type"] == p.ERROR and reply["code"] == p.BAD_REQUEST
    still_answers(s.backend)


def test_unknown_request_type_is_bad_request(s):
    raw(s.backend, p.encode({"type": "dance", "id": RAW_ID}).strip())
    reply = reply_to(s.backend, RAW_ID)
    assert reply["type"] == p.ERROR and reply["code"] == p.BAD_REQUEST and "dance" in reply["message"]
    still_answers(s.backend)


@pytest.mark.parametrize("message", [{"type": "hello", "id": [1]}, {"type": "hello", "id": "one"},
                                     {"type": "hello"}])
def test_request_without_an_integer_id_is_bad_request(s, message):
    raw(s.backend, json.dumps(message).encode())
    reply = reply_to(s.backend, message.get("id"))
    assert reply["type"] == p.ERROR and reply["code"] == p.BAD_REQUEST and "id" in reply["message"]
    still_answers(s.backend)


@pytest.mark.parametrize("target", [[1], "1", None, 1.5])
def test_cancel_needs_an_integer_target(s, target):
    raw(s.backend, json.dumps({"type": "cancel", "id": RAW_ID + 1, "target": target}).encode())
    reply = reply_to(s.backend, RAW_ID + 1)
    assert reply["type"] == p.ERROR and reply["code"] == p.BAD_REQUEST
    still_answers(s.backend)
