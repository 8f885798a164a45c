"""Frame-rate resampling (numpy only, shared with the Blender side)."""

import numpy as np
import pytest

from mimic.frames import resample, resample_count, sample_weights


@pytest.mark.parametrize("n_in, fps_in, fps_out, expected", [
    (200, 25, 24, 192), (200, 25, 25, 200), (200, 25, 30, 240), (250, 25, 60, 600), (1, 25, 24, 1), (3, 25, 1, 1)])
def test_resample_count(n_in, fps_in, fps_out, expected):
    assert resample_count(n_in, fps_in, fps_out) == expected


def test_identity():
    frames = np.random.default_rng(0).standard_normal((1000, 7, 3)).astype(np.float32)
    out = resample(frames, 25, 25)
    assert out.dtype == np.float32 and np.array_equal(out, frames)
    frames30 = np.random.default_rng(1).standard_normal((997, 4)).astype(np.float32)
    assert np.array_equal(resample(frames30, 30, 30.0), frames30)


@pytest.mark.parametrize("fps_out", [24, 30, 23.976, 60, 12.5])
def test_linear_ramp_stays_on_the_ramp(fps_out):
    """A ramp value = time in seconds at 25 fps, resampled, is (up to the end) the output's time."""
    n = 200
    ramp = np.repeat((np.arange(n) / 25.0)[:, None], 2, axis=1)  # (200, 2)
    out = resample(ramp, 25, fps_out)
    n_out = resample_count(n, 25, fps_out)
    assert out.shape == (n_out, 2)
    times = np.arange(n_out) / fps_out
    expected = np.minimum(times, (n - 1) / 25.0)  # after the last input frame: hold it
    np.testing.assert_allclose(out[:, 0], expected, atol=1e-9)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    assert out[0, 0] == 0.0


def test_downsample_picks_frames():
    """50 -> 25 fps keeps every other frame exactly."""
    frames = np.random.default_rng(2).standard_normal((100, 5)).astype(np.float32)
    np.testing.assert_allclose(resample(frames, 50, 25), frames[0::2], atol=1e-6)


def test_single_frame():
    frame = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
    out = resample(frame, 25, 60)  # 40 ms at 60 fps: 2.4 -> 2 frames, both the one frame
    assert out.shape == (2, 3, 3) and np.array_equal(out, np.concatenate([frame, frame]))


def test_memmap_in_and_out(tmp_path):
    """Chunked resampling from one memory map into another equals the in-memory result."""
    frames = np.random.default_rng(3).standard_normal((301, 64, 3)).astype(np.float32)
    source = np.lib.format.open_memmap(tmp_path / "in.npy", "w+", np.float32, frames.shape)
    source[:] = frames
    source.flush()
    source = np.load(tmp_path / "in.npy", mmap_mode="r")
    n_out = resample_count(len(frames), 25, 24)
    out = np.lib.format.open_memmap(tmp_path / "out.npy", "w+", np.float32, (n_out, 64, 3))
    returned = resample(source, 25, 24, out, chunk=7)  # chunks do not divide the length
    assert returned is out
    out.flush()
    del out, returned
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), resample(frames, 25, 24))
    np.testing.assert_allclose(np.load(tmp_path / "out.npy")[::24], frames[::25][:len(range(0, n_out, 24))],
                               atol=1e-6)


def test_sample_weights():
    i0, i1, w = sample_weights(5, 10, np.array([0.0, 0.05, 0.4, 1.0, -1.0]))
    assert i0.tolist() == [0, 0, 4, 4, 0] and i1.tolist() == [1, 1, 4, 4, 1]
    np.testing.assert_allclose(w, [0, 0.5, 0, 0, 0], atol=1e-7)
