"""`mimic serve`'s cancel (between windows, before the run, inside the first window of the full-size
network), its precisions and audio at any rate, through the add-on's client: a real backend process,
real files, nothing mocked (one backend for the module, as in test_service.py)."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import soundfile
import soxr
from paths import LINE
from service_backend import (
    CHECKPOINT,
    RAW_ID,
    code_of,
    frames_of,
    raw,
    reply_to,
    still_answers,
    style_of,
)

from mimic import protocol as p
from mimic_blender.core.client import Backend
from mimic_blender.core.errors import BackendError

# ------------------------------------------------------------------------------------------ cancel


@pytest.fixture(scope="module")
def long_speech(s, ref):
    """60 s of speech (the fixture tiled): 1500 frames, 11 windows."""
    path = s.backend.workdir / "long-speech.npy"
    np.save(path, np.tile(ref["speech_16k"], 8)[:60 * 16000])
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



def test_cancel_of_a_request_not_running_hits_nothing_and_is_forgotten(s, ref):
    style = style_of(s)
    future = s.backend._next_id + 2  # the id the generate below will get (the cancel takes the one before)
    assert s.backend.request(p.CANCEL, timeout=30, target=future)["cancelled"] is False
    path = s.backend.workdir / "short.npy"
    np.save(path, ref["speech_16k"][:16000])
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


@pytest.mark.slow  # a `mimic generate` process for each rate
@pytest.mark.parametrize("rate", [22050, 48000])
def test_audio_at_its_own_rate_equals_mimic_generate_on_the_file(s, tmp_path, rate):
    """The add-on sends a strip's samples at their rate; the backend resamples them as `mimic generate`
    resamples a file."""
    import subprocess

    speech, _ = soundfile.read(LINE, dtype="float64")
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
    speech, _ = soundfile.read(LINE, dtype="float32")
    audio = backend.workdir / "speech-12s.npy"
    np.save(audio, np.concatenate([speech, speech])[:12 * 16000])
    yield backend, str(audio)
    backend.stop()


@pytest.mark.slow  # the full-size network
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
