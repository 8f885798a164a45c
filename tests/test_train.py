"""`mimic train` on the tiny VOCASET-layout dataset of tiny_vocaset.py: every loss term, the
switches of the ablation, gradient reversal, the windows and the epoch plan, overfitting a batch,
resume, two gloo processes under torchrun, and the command end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tiny_vocaset import TINY_AUDIO, TINY_MODEL, V, config_dict, write_config
from transformers import Wav2Vec2Config

from mimic.checkpoint import load_model
from mimic.cli import main
from mimic.errors import MimicError
from mimic.losses import OFFICIAL_WEIGHTS, TERMS, Objective, TrainingStep, clip_loss, contrastive_loss
from mimic.model import Mimic, MimicConfig
from mimic.run_state import STATE_FILE, distributed_from_env, parameter_checksum, read_state
from mimic.train import Trainer, run
from mimic.train_config import parse_config
from mimic.windows import WindowBatches, plan_epoch


def tiny_network(preset: str = "vocaset", **overrides) -> Mimic:
    audio = Wav2Vec2Config(vocab_size=32, **TINY_AUDIO).to_dict()
    return Mimic(MimicConfig.preset(preset, vertex_count=V, num_ids=2, audio_model=audio, **TINY_MODEL, **overrides))


def batch_of(model: Mimic, frames: int = 12, batch: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    audio = torch.randn(batch, round(frames * c.sample_rate / c.fps), generator=g)
    motion = 0.05 * torch.randn(batch, frames, c.motion_dim, generator=g)
    return audio, motion, 0.05 * torch.randn(batch, c.motion_dim, generator=g), torch.tensor([0, 1, 0][:batch])


def count_calls(model: Mimic) -> dict[str, int]:
    calls = {name: 0 for name in ("style_encoder", "content_encoder", "audio_encoder", "decoder")}
    for name in calls:
        getattr(model, name).register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
    return calls


# ------------------------------------------------------------------------------------ terms


@pytest.mark.parametrize("preset", ["vocaset", "hdtf", "biwi"])
def test_every_term_computes_and_is_finite(preset):
    """All seven terms, for the three alignments (interpolate, conv at 25 fps, pair: 2 features per frame)."""
    model = tiny_network(preset)
    step = TrainingStep(model, Objective())
    calls = count_calls(model)
    weights = step.objective.weights_at(0)
    out = step(*batch_of(model), weights)
    assert set(out) == {"loss", *TERMS, "style_accuracy", "inverse_accuracy"}
    for name in TERMS:
        assert out[name].ndim == 0 and torch.isfinite(out[name]), name
        assert out[name] > 0, name  # none is trivially zero on random data
    total = sum(OFFICIAL_WEIGHTS[k] * out[k] for k in TERMS)
    assert torch.allclose(out["loss"], total, rtol=1e-6)
    # one pass per code, three decodes (audio, content, cycle), two re-encodings in the cycle
    assert calls == {"style_encoder": 2, "content_encoder": 2, "audio_encoder": 1, "decoder": 3}
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_clip_and_contrastive_formulas():
    """clip_loss is symmetric cross-entropy over all frames of the batch; contrastive_loss is the
    reference's margin formula on flattened, L2-normalised samples."""
    g = torch.Generator().manual_seed(1)
    c, a = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    scale = torch.tensor(1 / 0.07)
    cn, an = F.normalize(c.reshape(6, 4), dim=-1), F.normalize(a.reshape(6, 4), dim=-1)
    logits = scale * cn @ an.T
    expect = (F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.T, torch.arange(6))) / 2
    assert torch.allclose(clip_loss(c, a, scale), expect)

    x, y = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    xn, yn = F.normalize(x.reshape(3, -1), dim=1), F.normalize(y.reshape(3, -1), dim=1)
    d = torch.stack([torch.stack([(xn[i] - yn[j]).norm() for j in range(3)]) for i in range(3)])
    expect = (sum((1.0 - d[i, j]).clamp(min=0) ** 2 for i in range(3) for j in range(3) if i != j)
              + sum(d[i, i] ** 2 for i in range(3))) / 6
    assert torch.allclose(contrastive_loss(x, y, 1.0), expect)
    assert contrastive_loss(x, x, 1.0) < contrastive_loss(x, y, 1.0)  # matching pairs cost less


@pytest.mark.parametrize("off", TERMS)
def test_a_term_switched_off_is_not_computed(off):
    model = tiny_network()
    weights = {k: w for k, w in OFFICIAL_WEIGHTS.items() if k != off}
    step = TrainingStep(model, Objective(weights))
    calls = count_calls(model)
    out = step(*batch_of(model), step.objective.weights_at(0))
    assert off not in out
    assert torch.allclose(out["loss"], sum(weights[k] * out[k] for k in weights), rtol=1e-6)
    out["loss"].backward()
    if off == "style_classifier":
        assert model.style_classifier.weight.grad is None and "style_accuracy" not in out
    if off == "inverse_classifier":
        assert model.inverse_classifier.weight.grad is None and "inverse_accuracy" not in out
    if off == "content_clip":
        assert model.logit_scale.grad is None
    if off in ("audio_reconstruction", "content_reconstruction"):
        assert calls["decoder"] == 2
    if off in ("style_cycle", "content_cycle"):  # the other cycle term still needs the cycle's decode
        assert calls["decoder"] == 3
        assert calls["style_encoder" if off == "style_cycle" else "content_encoder"] == 1


def test_ablation_switches_in_the_config(tmp_path, data_root):
    """enabled: false and weight: 0 both switch a term off; both cycles off skip the third decode."""
    data = config_dict(data_root, tmp_path / "run")
    data["losses"] = {"style_cycle": {"enabled": False}, "content_cycle": {"weight": 0},
                      "content_clip": {"weight": "1e-6"}}  # YAML reads 1e-6 (no dot) as text: taken as a number
    objective = parse_config(data).losses.objective()
    assert set(objective.weights) == set(TERMS) - {"style_cycle", "content_cycle"}
    assert objective.weights["content_clip"] == 1e-6
    assert objective.weights["style_classifier"] == OFFICIAL_WEIGHTS["style_classifier"]
    model = tiny_network()
    calls = count_calls(model)
    TrainingStep(model, objective)(*batch_of(model), objective.weights_at(0))
    assert calls["decoder"] == 2 and calls["style_encoder"] == 1 and calls["content_encoder"] == 1

    data["losses"] = {k: {"enabled": False} for k in TERMS}
    with pytest.raises(MimicError, match="losses has every term switched off"):
        parse_config(data)


def test_inverse_weight_schedule():
    """5e-7, x0.1 from epoch 20 (after the 20th epoch ends, as the reference), x0.5 more from 40."""
    objective = Objective()
    assert [objective.weights_at(e)["inverse_classifier"] for e in (0, 19, 20, 39, 40, 149)] == pytest.approx(
        [5e-7, 5e-7, 5e-8, 5e-8, 2.5e-8, 2.5e-8])
    assert objective.weights_at(40)["style_cycle"] == 2e-5  # the others stay


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_gradient_reversal_into_the_content_encoder(alpha):
    """The inverse classifier's term trains its head to find the subject, and the content encoder
    (through the reversal) to hide it: the encoder's gradient is -alpha x the plain one."""
    model = tiny_network().eval()  # no dropout: both passes see the same network
    step = TrainingStep(model, Objective({"inverse_classifier": 1.0}, grl_alpha=alpha))
    audio, motion, init, labels = batch_of(model)
    step(audio, motion, init, labels, {"inverse_classifier": 1.0})["loss"].backward()
    reversed_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    F.cross_entropy(model.inverse_classifier(model.content_encoder(motion).mean(1)), labels).backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert set(reversed_grads) == set(plain)
    encoder = [n for n in plain if n.startswith("content_encoder.")]
    assert encoder and all(n.startswith(("content_encoder.", "inverse_classifier.")) for n in plain)
    for n in encoder:
        assert torch.allclose(reversed_grads[n], -alpha * plain[n], atol=1e-8), n
    assert any(plain[n].abs().max() > 0 for n in encoder)
    for n in ("inverse_classifier.weight", "inverse_classifier.bias"):
        assert torch.allclose(reversed_grads[n], plain[n]), n


# ------------------------------------------------------------------------------------- data


def test_windows(dataset):
    """Random windows cut to the batch's shortest, motion relative to the template, init_state the
    previous frame's motion (zeros at the start), audio of the same time span normalised per window."""
    sequences = dataset.splits["train"]
    labels = {s: i for i, s in enumerate(dataset.train_subjects)}
    plan = np.array([[0, 3], [1, 2], [2, 2]])
    items = WindowBatches(sequences, dataset.templates, labels, plan, [0, 1, 2], 24, 16000, 30.0, 0, 0)
    starts = set()
    for i in range(3):
        batch = items[i]
        assert batch.motion.shape == (2, 24, 3 * V) and batch.init_state.shape == (2, 3 * V)
        assert batch.audio.shape == (2, 24 * 16000 // 30)
        for b, j in enumerate(plan[i]):
            seq = sequences[j]
            motion = seq.vertices() - dataset.template(seq.subject)  # (T, V, 3)
            window = batch.motion[b].reshape(24, V, 3).numpy()
            start = next(s for s in range(len(motion) - 23) if np.allclose(motion[s:s + 24], window))
            starts.add(start)
            previous = motion[start - 1] if start else np.zeros((V, 3))
            assert np.allclose(batch.init_state[b].reshape(V, 3).numpy(), previous)
            assert batch.labels[b] == labels[seq.subject]
            first = round(start * 16000 / 30)
            audio = seq.audio()[first:first + 12800]  # 24 frames
            assert np.allclose(batch.audio[b].numpy(), (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7), atol=1e-4)
    assert len(starts) > 1
    # a window as long as the shortest sequence takes it whole, and cuts the other to its length
    whole = WindowBatches(sequences, dataset.templates, labels, np.array([[0, 3]]), [0], 150, 16000, 30.0, 0, 0)[0]
    assert whole.motion.shape[1] == len(sequences[0].vertices()) == 40
    assert torch.equal(whole.init_state[0], torch.zeros(3 * V))


def test_epoch_plan_shards():
    """Every sequence windows_per_sequence times per epoch, in a seeded order; processes take
    disjoint rows; the last step is filled by wrapping round."""
    plan = plan_epoch(5, 3, 2, 1, seed=0, epoch=0)
    assert plan.shape == (8, 2) and np.bincount(plan.ravel()[:15], minlength=5).tolist() == [3] * 5
    assert np.array_equal(plan, plan_epoch(5, 3, 2, 1, seed=0, epoch=0))
    assert not np.array_equal(plan, plan_epoch(5, 3, 2, 1, seed=0, epoch=1))
    two = plan_epoch(5, 3, 2, 2, seed=0, epoch=0)
    assert two.shape == (8, 2)  # 4 steps x 2 processes
    assert sorted(two[0::2].ravel().tolist() + two[1::2].ravel().tolist()) == sorted(two.ravel().tolist())


# ----------------------------------------------------------------------------------- training


@pytest.mark.slow  # trains
def test_overfits_a_fixed_batch(dataset):
    """20 Adam steps (lr 1e-3) on one batch bring the total loss down steadily."""
    torch.manual_seed(0)
    model = tiny_network()
    model.audio_encoder.freeze_feature_encoder()
    step = TrainingStep(model, Objective())
    labels = {s: i for i, s in enumerate(dataset.train_subjects)}
    batch = WindowBatches(dataset.splits["train"], dataset.templates, labels, np.array([[0, 1, 2, 3]]), [0], 24,
                          16000, 30.0, 0, 0)[0]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    weights = step.objective.weights_at(0)
    losses = []
    for _ in range(20):
        out = step(*batch.tensors(), weights)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.75 * losses[0], losses
    assert np.mean(losses[-5:]) < np.mean(losses[5:10]) < np.mean(losses[:5]), losses


@pytest.mark.slow  # trains
def test_command_end_to_end_and_resume(tmp_path, data_root, dataset):
    """`mimic train --config` writes a model folder load_model reads; 2 steps + 2 resumed steps
    (mid-epoch: an epoch is 4 steps here) give exactly the network of 4 straight steps."""
    straight = write_config(tmp_path / "straight.yaml", config_dict(data_root, tmp_path / "straight", max_steps=4))
    assert main(["train", "--config", str(straight)]) == 0
    last = tmp_path / "straight" / "last"
    model = load_model(last)
    assert model.config.vertex_count == V and model.config.num_ids == 2 and model.config.feature_dim == 16
    state = read_state(last)  # torch.load(weights_only=True)
    assert torch.load(last / STATE_FILE, weights_only=True)["step"] == state["step"] == 4
    assert state["epoch"] == 1 and state["batch"] == 0 and state["optimizer"]["state"]
    assert list((tmp_path / "straight" / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "straight" / "train.yaml").is_file()

    first = write_config(tmp_path / "first.yaml", config_dict(data_root, tmp_path / "resumed", max_steps=2))
    assert main(["train", "--config", str(first)]) == 0
    assert read_state(tmp_path / "resumed" / "last")["batch"] == 2  # stopped in the middle of epoch 1
    more = write_config(tmp_path / "more.yaml", config_dict(data_root, tmp_path / "elsewhere", max_steps=4))
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--config", str(more)]) == 0
    a, b = load_file(last / "model.safetensors"), load_file(tmp_path / "resumed" / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "elsewhere").exists()  # --resume keeps the run folder
    # new learning-rate settings apply to a resumed run (it stands after epoch 1 of 4 steps)
    changed = parse_config(config_dict(data_root, tmp_path / "resumed", lr=5e-4, lr_decay_every=1, lr_decay_gamma=0.5))
    changed.training.max_steps = 5
    trainer = Trainer(changed, dataset, distributed_from_env(), torch.device("cpu"), tmp_path / "resumed")
    assert (trainer.epoch, trainer.step) == (1, 4)
    trainer.run()  # one step, in epoch 1
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    assert [changed.training.learning_rate(e) for e in (0, 1, 2)] == pytest.approx([5e-4, 2.5e-4, 1.25e-4])

    # the network trained away from its initialisation (seed 3), and a run is not started over
    torch.manual_seed(3)
    initial = Mimic(model.config).state_dict()
    assert torch.equal(initial["audio_encoder.backbone.feature_extractor.conv_layers.0.conv.weight"],
                       a["audio_encoder.backbone.feature_extractor.conv_layers.0.conv.weight"])  # frozen
    assert not torch.equal(initial["decoder.motion_out.bias"], a["decoder.motion_out.bias"])
    with pytest.raises(MimicError, match="already holds a run"):
        run(str(straight), None)


EXIT_ABORT = "terminate called without an active exception"


@pytest.mark.slow  # trains, in two processes
def test_two_processes_agree(tmp_path, data_root):
    """torchrun, 2 CPU processes, gloo: each logs the checksum of its parameters at the end; they
    agree with each other and with the saved model, which has moved from its start.

    Known open bug: in some full-suite runs (never alone) a rank aborted at interpreter exit with
    EXIT_ABORT after training and saving correctly. Everything else is checked whatever the exit;
    that abort alone makes the test xfail (with every thread's stack in its message) instead of fail."""
    config = write_config(tmp_path / "ddp.yaml", config_dict(data_root, tmp_path / "run", max_steps=3))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}  # an abort shows every thread's stack
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "mimic.cli", "train", "--config", str(config)],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    sums = dict(re.findall(r"rank (\d)/2: parameters sha256 ([0-9a-f]{64})", result.stderr))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], result.stderr[-3000:]
    saved = load_file(tmp_path / "run" / "last" / "model.safetensors")
    assert parameter_checksum(saved) == sums["0"]
    state = read_state(tmp_path / "run" / "last")
    assert state["world_size"] == 2 and state["step"] == 3 and len(state["rng"]) == 2
    assert "2 processes (gloo)" in result.stderr
    assert result.stderr.count("mimic train: run folder") == 1  # only rank 0 logs
    if result.returncode != 0 and EXIT_ABORT in result.stderr and "done at step 3" in result.stderr:
        pytest.xfail(f"the known exit abort, after a correct run: {result.stderr[-3000:]}")
    assert result.returncode == 0, result.stderr[-3000:]
