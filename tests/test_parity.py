"""The port against the public reference implementation: the tiny official checkpoint, run on the
same inputs, must reproduce the reference's numbers (fixtures/official_tiny/io.npz) to 1e-5."""

import numpy as np
import torch

from mimic.generate import Generator, normalise

TOL = 1e-5


def assert_close(actual, expected, tol=TOL):
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    error = np.abs(actual.astype(np.float64) - expected).max()
    assert error <= tol, f"max abs error {error:.3g} > {tol}"


def t(array):
    return torch.from_numpy(array)


def test_loaded_in_eval_mode(tiny_model):
    assert not tiny_model.training
    assert tiny_model.config.vertex_count == 64 and tiny_model.config.alignment == "conv"


@torch.no_grad()
def test_style_code(tiny_model, ref):
    assert_close(tiny_model.style_encoder(t(ref["style_motion"])[None])[0], ref["style_code"])


@torch.no_grad()
def test_content_codes(tiny_model, ref):
    assert_close(tiny_model.content_encoder(t(ref["style_motion"])[None])[0], ref["content_code"])


def test_audio_normalisation(ref):
    assert_close(normalise(ref["speech_16k"][:96000]), ref["audio_window0"])


@torch.no_grad()
def test_audio_features(tiny_model, ref):
    assert_close(tiny_model.audio_encoder(t(ref["audio_window0"])[None], 150)[0], ref["audio_feature_window0"])


@torch.no_grad()
def test_decoder_window(tiny_model, ref):
    motion = tiny_model.decoder(t(ref["audio_feature_window0"])[None], t(ref["style_code"])[None],
                                t(ref["decoder_init_state"])[None])
    assert_close(motion[0], ref["decoder_out_window0"])


@torch.no_grad()
def test_decoder_recompute_window(tiny_model, ref):
    """The official (recomputing) algorithm gives the reference numbers too."""
    motion = tiny_model.decoder.forward_recompute(t(ref["audio_feature_window0"])[None], t(ref["style_code"])[None],
                                                  t(ref["decoder_init_state"])[None])
    assert_close(motion[0], ref["decoder_out_window0"])


def test_demo_output(tiny_model, ref):
    """The whole demo loop: 8 s of speech = 200 frames, two windows with 10 frames of overlap."""
    generator = Generator(tiny_model, torch.device("cpu"))
    with torch.no_grad():
        code = generator.style_code(ref["style_motion"].reshape(150, 64, 3))
        assert_close(code, ref["style_code"])
        chunks = list(generator.stream(ref["speech_16k"], code))
    assert [len(c) for c in chunks] == [150, 50]
    assert_close(np.concatenate(chunks) + ref["template"].reshape(64, 3), ref["demo_vertices"])


def test_batched_windows_equal_one_by_one(tiny_model, ref):
    """Longer speech (600 frames: four full windows and a short one): encoding equal windows
    together in a batch gives what encoding them one at a time gives."""
    speech = np.tile(ref["speech_16k"], 3)
    code = t(ref["style_code"])
    with torch.no_grad():
        batched = np.concatenate(list(Generator(tiny_model, torch.device("cpu"), batch_windows=4).stream(speech, code)))
        single = np.concatenate(list(Generator(tiny_model, torch.device("cpu"), batch_windows=1).stream(speech, code)))
    assert batched.shape == (600, 64, 3)
    assert_close(batched, single)
    # the first window does not depend on what follows it
    assert_close(batched[:150] + ref["template"].reshape(64, 3), ref["demo_vertices"][:150])


def test_audio_shorter_than_the_overlap_generates(tiny_model):
    generator = Generator(tiny_model, torch.device("cpu"))
    style = torch.zeros(tiny_model.config.feature_dim)
    for frames in (1, 5, 9):
        chunks = list(generator.stream(np.zeros(frames * 640, np.float32) + 0.01, style))
        assert sum(len(c) for c in chunks) == frames and all(np.isfinite(c).all() for c in chunks)
