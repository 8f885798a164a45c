"""The ablation runner and the style-transfer evaluation, on a tiny `mimic synth` benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mimic import ablation, metrics
from mimic.checkpoint import load_model
from mimic.data import open_dataset
from mimic.errors import MimicError
from mimic.evaluate import evaluate_transfer, transfer_lve
from mimic.files import load_audio
from mimic.model import Mimic, MimicConfig
from mimic.regions import load_regions
from mimic.train_config import build_config, parse_config

pytestmark = pytest.mark.slow  # trains models

SYNTH = ["--speakers", "6", "--sentences-per-speaker", "2", "--vertices", "300", "--seed", "1"]
TINY = {
    "seed": 0,
    "model": {"preset": "vocaset", "feature_dim": 16, "hidden_size": 16, "conv_layers": 1, "encoder_layers": 1,
              "encoder_heads": 2, "encoder_ff": 32, "decoder_heads": 2, "decoder_ff": 32, "window": 60, "overlap": 5,
              "audio_model": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                              "intermediate_size": 32, "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16,
                              "num_conv_pos_embedding_groups": 2}},
    "training": {"batch_size": 2, "window": 30, "windows_per_sequence": 1, "lr": 1e-3, "device": "cpu"},
}


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "synth"
    run = subprocess.run([sys.executable, "-m", "mimic.cli", "synth", "--out", str(out), *SYNTH],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def ablation_run(synth, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ablation")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    argv = ["--config", str(config), "--data", str(synth), "--out", str(folder / "runs"), "--steps", "2",
            "--seeds", "0,1", "--only", "full,no-style", "--report", str(folder / "RESULTS.md"), "--device", "cpu"]
    run = subprocess.run([sys.executable, "-m", "mimic.ablation", *argv], capture_output=True, text=True,
                         timeout=600, check=False)
    assert run.returncode == 0, run.stderr
    return folder, argv, run


def test_no_style_baseline_decodes_a_zero_style():
    config = MimicConfig.preset("vocaset", vertex_count=20, feature_dim=8, hidden_size=8, conv_layers=1,
                                encoder_layers=1, encoder_heads=2, num_ids=2, style_input=False,
                                audio_model=dict(TINY["model"]["audio_model"], model_type="wav2vec2"))
    model = Mimic(config)
    motion = torch.randn(3, 12, 60)
    assert torch.equal(model.encode_style(motion), torch.zeros(3, 8))
    assert not torch.equal(Mimic(MimicConfig(**{**config.to_dict(), "style_input": True})).encode_style(motion),
                           torch.zeros(3, 8))


def test_no_style_refuses_style_losses(synth):
    data = {"output": "unused", "data": {"kind": "vocaset", "root": str(synth)},
            "model": {**TINY["model"], "style_input": False}}
    with pytest.raises(MimicError, match="style_classifier and style_cycle"):
        build_config(parse_config(data), open_dataset("vocaset", synth))
    data["losses"] = {"style_classifier": {"enabled": False}, "style_cycle": {"weight": 0}}
    assert build_config(parse_config(data), open_dataset("vocaset", synth)).style_input is False


def test_variant_configs_switch_the_terms():
    base = {"model": {"preset": "vocaset"}, "training": {"epochs": 3}, "losses": {"content_cycle": {"margin": 2.0}}}
    by_name = {v.name: v for v in ablation.VARIANTS}
    full = ablation.variant_config(base, by_name["full"], Path("/d"), Path("/o"), 7, 3)
    assert full["losses"] == base["losses"] and full["training"] == {"epochs": 3, "max_steps": 7}
    assert full["output"] == "/o/seed-3/full" and full["data"]["root"] == "/d" and full["seed"] == 3
    cycles = ablation.variant_config(base, by_name["no cycle losses"], Path("/d"), Path("/o"), 7, 3)
    assert (cycles["losses"]["style_cycle"] == {"enabled": False}
            and cycles["losses"]["content_cycle"] == {"enabled": False})
    none = ablation.variant_config(base, by_name["no style"], Path("/d"), Path("/o"), 7, 3)
    assert none["model"]["style_input"] is False and all(none["losses"][t] == {"enabled": False}
                                                         for t in ablation.CONSTRAINTS)
    assert base == {"model": {"preset": "vocaset"}, "training": {"epochs": 3},
                    "losses": {"content_cycle": {"margin": 2.0}}}


def test_transfer_evaluation_by_hand(synth, ablation_run):
    folder, _, _ = ablation_run
    model = load_model(folder / "runs" / "seed-0" / "full" / "last")
    dataset = open_dataset("vocaset", synth)
    regions = load_regions(synth / "regions.json")
    result = evaluate_transfer(model, dataset, regions)
    manifest = json.loads((synth / "transfer" / "manifest.json").read_text())
    assert result["entries"] == len(manifest) == len(result["rows"])
    V = dataset.vertex_count
    for e, row in zip(manifest, result["rows"]):
        gt = np.load(synth / e["vertices"]).reshape(-1, V, 3)[::2]
        reference = (np.load(synth / e["style_references"][0]).reshape(-1, V, 3)[::2]
                     - dataset.template(e["style_speaker"]))
        lve = transfer_lve(model, load_audio(synth / e["wav"]), reference, gt, dataset.template(e["template"]),
                           regions.lips, fps=30)
        assert row["lve"] == pytest.approx(lve, rel=1e-5)
        gt = gt[:row["frames"]]  # cut to the prediction's length, as the LVE was
        assert row["still"] == pytest.approx(metrics.lve(np.broadcast_to(dataset.template(e["template"]), gt.shape),
                                                         gt, regions.lips), rel=1e-6)
        own = next(m for m in manifest if m["style_speaker"] == m["audio_speaker"] == e["audio_speaker"]
                   and m["text_id"] == e["text_id"])
        if e is own:
            assert row["group"] == "own" and row["copy_own"] is None
        else:
            own_gt = np.load(synth / own["vertices"]).reshape(-1, V, 3)[::2][:len(gt)]
            assert (row["copy_own"] == pytest.approx(metrics.lve(own_gt, gt, regions.lips), rel=1e-6)
                    and row["copy_own"] > 0)
            assert row["group"] == ("seen" if e["style_split"] == "train" else "heldout")
    assert {r["group"] for r in result["rows"]} == {"own", "seen", "heldout"}


def test_ablation_report_and_rerun(ablation_run):
    folder, argv, run = ablation_run
    report = (folder / "RESULTS.md").read_text()
    assert "| full |" in report and "| no style |" in report and "| reconstruction only |" not in report
    assert "The full model against no style" in report and "| variant | seed 0 | seed 1 |" in report
    records = {(s, v): json.loads((folder / "runs" / f"seed-{s}" / v / "ablation.json").read_text())
               for s in (0, 1) for v in ("full", "no-style")}
    assert all(records[(s, "no-style")]["config"]["model"]["style_input"] is False for s in (0, 1))
    assert [records[(s, "full")]["config"]["seed"] for s in (0, 1)] == [0, 1]
    assert records[(0, "full")]["result"]["lve"] != records[(1, "full")]["result"]["lve"]
    for record in records.values():
        transfer = record["result"]["transfer"]
        assert all(np.isfinite(x) and x > 0 for x in transfer["lve"].values())
        assert record["result"]["style"]["id_accuracy"] is not None
    # the no-style model's codes are all zero: every held-out sequence looks alike
    assert records[(0, "no-style")]["result"]["style"]["style_probe"]["accuracy"] <= 0.5 + 1e-9
    again = subprocess.run([sys.executable, "-m", "mimic.ablation", *argv], capture_output=True, text=True,
                           timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("done before") == 4 and "training" not in again.stderr


@pytest.mark.parametrize("args, message", [(["--only", "no-style"], "--only must name full"),
                                           (["--only", "full,nope"], "unknown: nope"),
                                           (["--seeds", "a"], "--seeds must be"), (["--steps", "0"], "--steps")])
def test_ablation_refuses_bad_arguments(tmp_path, capsys, args, message):
    assert ablation.main([*args, "--data", str(tmp_path / "x")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
