"""`mimic serve` through the add-on's client: a real backend process, real files, nothing mocked.

One backend serves the whole module (starting one costs seconds); every test leaves it usable.
Protocol-level misbehaviour (bad JSON, unknown types) is written raw to the process's stdin.
"""

from __future__ import annotations

import json
import queue
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import paths
import pytest
import soundfile
import soxr
from paths import TINY

from mimic import protocol as p
from mimic_blender.core.client import Backend
from mimic_blender.core.errors import BackendError

V = 64  # the tiny checkpoint's vertex count
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav")
RAW_ID = 100_000  # ids for raw requests, far from the client's counter

CHECKPOINT = str(paths.CHECKPOINT)


@pytest.fixture(scope="module")
def io() -> dict[str, np.ndarray]:
    with np.load(TINY / "io.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def s(io):
    """A started backend; what it answered before `load` is recorded, then the tiny model is loaded."""
    backend = Backend(sys.executable)
    facts = backend.start()
    files = SimpleNamespace()
    for name, array in [("reference", io["style_motion"].reshape(-1, V, 3) + io["template"].reshape(V, 3)),
                        ("neutral", io["template"].reshape(V, 3)), ("speech", io["speech_16k"])]:
        setattr(files, name, str(backend.workdir / f"{name}.npy"))
        np.save(getattr(files, name), array.astype(np.float32))
    before_load = {}
    for kind, fields in [(p.GENERATE, dict(audio=files.speech, style=[0.0] * 32)),
                         (p.ENCODE_STYLE, dict(vertices=files.reference, neutral=files.neutral)),
                         (p.READ_AUDIO, dict(path=files.speech, start=0, stop=1))]:
        try:
            backend.request(kind, timeout=60, **fields)
            before_load[kind] = "answered"
        except BackendError as e:
            before_load[kind] = e.code
    loaded = backend.request(p.LOAD, timeout=120, checkpoint=CHECKPOINT, device="cpu")
    yield SimpleNamespace(backend=backend, facts=facts, before_load=before_load, loaded=loaded, files=files)
    backend.stop()


def code_of(backend: Backend, kind: str, **fields) -> BackendError:
    with pytest.raises(BackendError) as info:
        backend.request(kind, timeout=120, **fields)
    return info.value


def raw(backend: Backend, line: bytes) -> None:
    backend.process.stdin.write(line + b"\n")
    backend.process.stdin.flush()


def reply_to(backend: Backend, id_, timeout: float = 60.0, skip_progress: bool = True) -> dict:
    """The next reply with this id, read straight from the client's reply queue."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = backend.replies.get(timeout=0.1)
        except queue.Empty:
            continue
        if message.get("id") == id_ and not (skip_progress and message["type"] == p.PROGRESS):
            return message
    raise AssertionError(f"no reply with id {id_!r} within {timeout} s")


def still_answers(backend: Backend) -> None:
    reply = backend.request(p.HELLO, timeout=30, protocol=p.VERSION, workdir=str(backend.workdir))
    assert reply["type"] == p.RESULT and reply["model"]["checkpoint"] == CHECKPOINT


def style_of(s) -> list[float]:
    return s.backend.request(p.ENCODE_STYLE, timeout=60, vertices=s.files.reference, neutral=s.files.neutral)["style"]


def frames_of(result: dict) -> np.ndarray:
    mean, basis, weights = (np.load(result[name]) for name in ("mean", "basis", "weights"))
    assert mean.shape == (V, 3) and basis.shape == (result["k"], V, 3)
    assert weights.shape == (result["frames"], result["k"])
    return mean + np.einsum("tk,kvc->tvc", weights.astype(np.float64), basis)


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


def test_encode_style_matches_the_reference_code(s, io):
    reply = s.backend.request(p.ENCODE_STYLE, timeout=60, vertices=s.files.reference, neutral=s.files.neutral)
    assert reply["frames"] == 150
    np.testing.assert_allclose(reply["style"], io["style_code"], atol=1e-4)


def test_generate_reproduces_the_demo_within_the_bound(s, io):
    progress = []
    result = s.backend.request(p.GENERATE, timeout=300, on_progress=lambda *a: progress.append(a),
                               audio=s.files.speech, style=style_of(s))
    total = len(io["demo_vertices"])
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

    frames = frames_of(result) + io["template"].reshape(V, 3)
    errors = np.linalg.norm(frames - io["demo_vertices"], axis=-1)
    assert errors.max() <= result["error_bound"] + 1e-5


def test_a_looser_bound_gives_fewer_shapes_still_within_it(s, io):
    style = style_of(s)
    tight = s.backend.request(p.GENERATE, timeout=300, audio=s.files.speech, style=style, error_bound=1e-4)
    loose = s.backend.request(p.GENERATE, timeout=300, audio=s.files.speech, style=style, error_bound=0.05)
    assert loose["k"] < tight["k"]
    assert tight["mean"] != loose["mean"]  # every result has files of its own
    frames = frames_of(loose) + io["template"].reshape(V, 3)
    assert np.linalg.norm(frames - io["demo_vertices"], axis=-1).max() <= 0.05 + 1e-5
    assert loose["max_error"] <= 0.05


def test_a_bound_above_all_motion_needs_no_shapes(s, io):
    path = s.backend.workdir / "one-second.npy"
    np.save(path, io["speech_16k"][:16000])
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


def test_style_reference_with_the_wrong_vertex_count(s, io):
    path = s.backend.workdir / "wrong-topology.npy"
    np.save(path, np.zeros((10, V + 1, 3), np.float32))
    e = code_of(s.backend, p.ENCODE_STYLE, vertices=str(path), neutral=s.files.neutral)
    assert e.code == p.BAD_INPUT and f"{V + 1} vertices" in str(e) and str(V) in str(e)


# ------------------------------------------------------------------------------------ read_audio


def test_read_audio_cuts_a_16k_wav_exactly(s, io):
    speech = io["speech_16k"].astype(np.float32)
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
    speech, rate = soundfile.read(LIBRIVOX, dtype="float64")
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


# ------------------------------------------------------------------------------------------ cancel


@pytest.fixture(scope="module")
def long_speech(s, io):
    """60 s of speech (the fixture tiled): 1500 frames, 11 windows."""
    path = s.backend.workdir / "long-speech.npy"
    np.save(path, np.tile(io["speech_16k"], 8)[:60 * 16000])
    return str(path)


def test_cancel_ends_a_generate_between_windows(s, long_speech):
    progress, started = [], time.monotonic()
    with pytest.raises(BackendError) as info:
        s.backend.request(p.GENERATE, timeout=300, on_progress=lambda *a: progress.append(a),
                          cancelled=lambda: bool(progress), audio=long_speech, style=style_of(s))
    assert info.value.code == p.CANCELLED
    assert progress and progress[-1][0] < progress[-1][1] == 1500  # stopped before the end
    assert time.monotonic() - started < 60
    still_answers(s.backend)


def test_cancel_asked_before_the_generate_runs_still_stops_it(s, long_speech):
    """The client holds the cancel until the generate is running, where the backend honours it."""
    progress = []
    with pytest.raises(BackendError) as info:
        s.backend.request(p.GENERATE, timeout=300, on_progress=lambda *a: progress.append(a),
                          cancelled=lambda: True, audio=long_speech, style=[0.0] * 32)
    assert info.value.code == p.CANCELLED and progress[-1][0] < 1500
    still_answers(s.backend)


def test_cancel_reply_says_whether_it_hit(s, long_speech):
    style = style_of(s)
    before = set(s.backend.workdir.glob("result-*"))
    gen, cancel = RAW_ID + 10, RAW_ID + 11
    raw(s.backend, p.encode(p.request(p.GENERATE, gen, audio=long_speech, style=style)).strip())
    first = reply_to(s.backend, gen, skip_progress=False)
    assert first["type"] == p.PROGRESS and first["done"] == 0 and first["total"] == 1500
    raw(s.backend, p.encode(p.request(p.CANCEL, cancel, target=gen)).strip())
    assert reply_to(s.backend, cancel) == p.result(cancel, cancelled=True)
    end = reply_to(s.backend, gen)
    assert end["type"] == p.ERROR and end["code"] == p.CANCELLED
    assert set(s.backend.workdir.glob("result-*")) == before  # a cancelled generate writes no result



def test_cancel_of_a_request_not_running_hits_nothing_and_is_forgotten(s, io):
    style = style_of(s)
    future = s.backend._next_id + 2  # the id the generate below will get (the cancel takes the one before)
    assert s.backend.request(p.CANCEL, timeout=30, target=future)["cancelled"] is False
    path = s.backend.workdir / "short.npy"
    np.save(path, io["speech_16k"][:16000])
    result = s.backend.request(p.GENERATE, timeout=120, audio=str(path), style=style)
    assert result["id"] == future and result["frames"] == 25


# ------------------------------------------------------------------------- precision and rates


def test_load_with_a_precision(s):
    import torch

    from mimic.precision import pick_precision

    fast = s.backend.request(p.LOAD, timeout=120, checkpoint=CHECKPOINT, device="cpu", precision=p.FAST)
    assert fast["precision"] == pick_precision(p.FAST, torch.device("cpu"))
    e = code_of(s.backend, p.LOAD, checkpoint=CHECKPOINT, device="cpu", precision=p.FP16)
    assert e.code == p.BAD_INPUT and "fp16 runs on CUDA GPUs only" in str(e)
    assert code_of(s.backend, p.LOAD, checkpoint=CHECKPOINT, precision=16).code == p.BAD_REQUEST
    assert s.backend.request(p.HELLO, timeout=30, protocol=p.VERSION, workdir=str(s.backend.workdir))["model"] == \
        {k: v for k, v in fast.items() if k not in ("type", "id")}  # a failed load keeps the model loaded before
    exact = s.backend.request(p.LOAD, timeout=120, checkpoint=CHECKPOINT, device="cpu")
    assert exact["precision"] == p.FP32  # the default, for the tests after this one


@pytest.mark.parametrize("rate", [22050, 48000])
def test_audio_at_its_own_rate_equals_mimic_generate_on_the_file(s, tmp_path, rate):
    """The add-on sends a strip's samples at their rate; the backend resamples them as `mimic generate`
    resamples a file."""
    import subprocess

    speech, _ = soundfile.read(LIBRIVOX, dtype="float64")
    samples = soxr.resample(speech, 16000, rate, quality="HQ").astype(np.float32)
    wav, npy = tmp_path / "speech.wav", s.backend.workdir / f"speech-{rate}.npy"
    soundfile.write(wav, samples, rate, subtype="FLOAT")
    np.save(npy, samples)
    for name, array in (("style", np.load(s.files.reference)), ("template", np.load(s.files.neutral))):
        np.save(tmp_path / f"{name}.npy", array)
    cli = subprocess.run([sys.executable, "-m", "mimic.cli", "generate", "--checkpoint", CHECKPOINT,
                          "--audio", str(wav),
                          "--style", str(tmp_path / "style.npy"), "--template", str(tmp_path / "template.npy"),
                          "--offsets", "--device", "cpu", "--out", str(tmp_path / "cli.npy")],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    expected = np.load(tmp_path / "cli.npy")
    result = s.backend.request(p.GENERATE, timeout=300, audio=str(npy), sample_rate=rate, style=style_of(s),
                               error_bound=1e-7)
    assert result["frames"] == len(expected) == len(speech) // 640
    assert np.abs(frames_of(result) - expected).max() <= 1e-6


@pytest.mark.parametrize("rate, code", [("44100", p.BAD_REQUEST), (44100.0, p.BAD_REQUEST), (0, p.BAD_INPUT),
                                        (10**9, p.BAD_INPUT)])
def test_sample_rate_must_be_an_audio_rate(s, rate, code):
    e = code_of(s.backend, p.GENERATE, audio=s.files.speech, style=[0.0] * 32, sample_rate=rate)
    assert e.code == code and "sample_rate" in str(e)


# ------------------------------------------------------------- cancel inside a window, full size


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    """A backend serving the full-size network (random weights, project format) and 12 s of speech."""
    import torch

    from mimic.checkpoint import save_model
    from mimic.model import Mimic, MimicConfig

    folder = tmp_path_factory.mktemp("full-size")
    with torch.device("meta"):
        model = Mimic(MimicConfig.preset("hdtf"))
    model = model.to_empty(device="cpu")
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.02)
    save_model(model, folder / "model")
    del model
    backend = Backend(sys.executable)
    backend.start()
    backend.request(p.LOAD, timeout=300, checkpoint=str(folder / "model"), device="cpu")
    speech, _ = soundfile.read(LIBRIVOX, dtype="float32")
    audio = backend.workdir / "speech-12s.npy"
    np.save(audio, np.concatenate([speech, speech])[:12 * 16000])
    yield backend, str(audio)
    backend.stop()


def test_cancel_is_honoured_inside_the_first_window(full_size):
    """Cancelled at the first progress inside the first batch of windows, the generate stops at its
    next check: still encoding that batch (two windows, 290 new frames), nothing generated."""
    backend, audio = full_size
    gen, cancel = RAW_ID + 20, RAW_ID + 21
    raw(backend, p.encode(p.request(p.GENERATE, gen, audio=audio, style=[0.1] * 128)).strip())
    while (reply := reply_to(backend, gen, timeout=300, skip_progress=False))["done"] == 0:
        assert reply["type"] == p.PROGRESS and reply["stage"] == p.ENCODING
    raw(backend, p.encode(p.request(p.CANCEL, cancel, target=gen)).strip())
    after = []  # the generate's replies from here on, in order, with the cancel's reply among them
    while not after or after[-1]["type"] == p.PROGRESS or after[-1]["id"] == cancel:
        message = backend.replies.get(timeout=300)
        if message["id"] in (gen, cancel):
            after.append(message)
    assert after[-1]["type"] == p.ERROR and after[-1]["code"] == p.CANCELLED
    assert p.result(cancel, cancelled=True) in after
    progress = [m for m in after if m["type"] == p.PROGRESS]
    assert all(m["stage"] == p.ENCODING and m["done"] < 290 for m in progress)
    raced = after[after.index(p.result(cancel, cancelled=True)):]
    assert len([m for m in raced if m["type"] == p.PROGRESS]) <= 1  # at most one report was under way
    backend.request(p.HELLO, timeout=30, protocol=p.VERSION, workdir=str(backend.workdir))  # still up
