"""The add-on's bpy-free core without Blender: every module imports with bpy unavailable, and
`compute` (inputs -> real `mimic serve` -> outputs) reproduces the official implementation."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from paths import CHECKPOINT, IO, ROOT

from mimic_blender.core import compute, session
from mimic_blender.core.settings import Audio, Inputs, Settings


def test_the_whole_core_imports_without_blender():
    code = ("import importlib, pkgutil, sys; sys.modules['bpy'] = sys.modules['aud'] = None; "
            "import mimic_blender.core as core; "
            "names = [m.name for m in pkgutil.iter_modules(core.__path__, core.__name__ + '.')]; "
            "[importlib.import_module(name) for name in names]; "
            "print(len(names), sorted(m for m in ('torch', 'mimic', 'bpy') if sys.modules.get(m)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    count, heavy = done.stdout.split(maxsplit=1)
    assert int(count) >= 10 and heavy.strip() == "[]"


@pytest.fixture(scope="module")
def settings():
    yield Settings(python=sys.executable, checkpoint=str(CHECKPOINT), device="cpu")
    session.stop()


def test_compute_equals_the_official_demo_loop(settings):
    """The fixture's official demo output for its speech and reference, through the core and a real
    backend: the compact result (mean + basis x tracks) at the model's own 25 fps."""
    with np.load(IO) as io:
        template = io["template"].reshape(-1, 3)
        reference = (io["style_motion"] + io["template"]).reshape(150, -1, 3)
        speech, want = io["speech_16k"], io["demo_vertices"]
    frames = len(want)
    inputs = Inputs("Head", "Line", 1, frames, 25.0, template, 1.0, Audio(speech, 16000),
                    style_vertices=reference, style_neutral=template)
    progress = []
    outputs = compute.compute(inputs, settings, on_progress=lambda *a: progress.append(a))
    got = template + outputs.mean + np.einsum("fk,kvc->fvc", outputs.tracks, outputs.basis)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= settings.error_bound + 1e-6
    assert np.abs(outputs.tracks).max() <= 1.0
    assert progress and progress[-1][0] == progress[-1][1]  # the last report: all frames done
    assert len(outputs.style_code) > 0


def test_compute_refuses_a_target_of_another_topology(settings):
    inputs = Inputs("Cube", "Line", 1, 10, 24.0, np.zeros((8, 3), np.float32), 1.0,
                    Audio(np.zeros(16000, np.float32), 16000), style_code=[0.0] * 32)
    with pytest.raises(compute.JobError, match="'Cube' has 8 vertices but the model animates 64"):
        compute.compute(inputs, settings)


def test_a_result_and_the_status_name_the_precision_it_was_computed_in(settings):
    """Fast is resolved by the backend (bf16 on a CPU with bf16 instructions, else fp32): the user
    sees which one ran, in the job's summary and the panel's status line."""
    import torch

    from mimic.precision import pick_precision

    with np.load(IO) as io:
        template, speech, code = io["template"].reshape(-1, 3), io["speech_16k"][:32000], io["style_code"]
    inputs = Inputs("Head", "Line", 1, 50, 25.0, template, 1.0, Audio(speech, 16000), style_code=code.tolist())
    fast = pick_precision("fast", torch.device("cpu"))
    for precision, expected in (("fast", fast), ("fp32", "fp32")):
        outputs = compute.compute(inputs, replace(settings, precision=precision))
        assert outputs.precision == expected
        assert compute.summary(inputs, outputs).endswith(f"audio encoder in {expected}")
        assert session.status().endswith(f"on cpu, audio encoder in {expected}")
