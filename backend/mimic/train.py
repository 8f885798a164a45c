"""`mimic train --config FILE.yaml`: train a Mimic network on a dataset.

One process, or one per GPU (or CPU) under torchrun (DistributedDataParallel). The config
(`mimic.train_config`) is a YAML file; every key, with its default, is in configs/train_vocaset.yaml.
A run folder holds:

    train.yaml          the resolved config (every default filled in, paths absolute)
    last/               the latest checkpoint (`mimic.run_state`): a model folder that `mimic generate`
                        and `load_model` read, + training_state.pt
    epoch_NNNN/         a model folder every `save_every` epochs
    tensorboard/        scalars for TensorBoard

Training follows the reference: random windows of the training sequences (`mimic.windows`); Adam
at the learning rate `TrainingSection.learning_rate` gives each epoch; the objective of `mimic.losses`.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml

from .checkpoint import load_model
from .errors import MimicError
from .losses import TERMS, TrainingStep
from .model import Mimic, MimicConfig
from .run_state import (
    Distributed,
    distributed_from_env,
    parameter_checksum,
    read_state,
    rng_state,
    seed_everything,
    set_rng_state,
    setup_device,
    write_checkpoint,
)
from .train_config import TrainConfig, build_config, load_config
from .windows import Batch, WindowBatches, collate, plan_epoch


def load_pretrained_audio(model: Mimic, folder: Path) -> None:
    """The backbone's weights from a local Hugging Face folder (e.g. facebook/wav2vec2-base-960h),
    read by transformers (any of its weight formats and model heads); imported here only."""
    import transformers

    kind = model.config.audio_model["model_type"]
    model_class = getattr(transformers, {"wav2vec2": "Wav2Vec2Model", "hubert": "HubertModel"}[kind])
    try:
        pretrained = model_class.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise MimicError(f"cannot load pretrained audio weights from {folder} ({str(e).splitlines()[0]})") from None
    result = model.audio_encoder.backbone.load_state_dict(pretrained.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise MimicError(f"the weights in {folder} do not fit its config (missing {result.missing_keys[:3]}, "
                         f"unexpected {result.unexpected_keys[:3]})")


def describe_audio(config: MimicConfig) -> str:
    a = config.audio_model
    layers = a["num_hidden_layers"]
    return f"{a['model_type']} {a['hidden_size']} wide x {layers} layer{'s' if layers != 1 else ''}"


def log(message: str) -> None:
    print(f"mimic train: {message}", file=sys.stderr, flush=True)


class Trainer:
    def __init__(self, config: TrainConfig, dataset, place: Distributed, device: torch.device,
                 resume: Path | None):
        self.config, self.dataset, self.place, self.device = config, dataset, place, device
        self.run_dir = Path(config.output)
        t = config.training
        self.amp = t.amp and device.type == "cuda"

        self.sequences = list(dataset.splits.get("train", []))
        self.labels = {subject: i for i, subject in enumerate(dataset.train_subjects)}
        strangers = sorted({s.subject for s in self.sequences} - set(self.labels))
        if strangers:
            raise MimicError(f"training sequences of subjects {strangers[:5]} "
                             "that are not in the data's train_subjects")
        if not self.sequences:
            raise MimicError(f"the {dataset.kind} data at {dataset.root} has no training sequence")
        self.templates = {s: np.asarray(dataset.template(s), dtype=np.float32) for s in self.labels}

        seed_everything(config.seed)
        if resume is not None:
            self.model = load_model(resume / "last").train()
            self.audio_source = "from the checkpoint"
        else:
            self.model = Mimic(build_config(config, dataset))
            if config.audio_pretrained is not None:
                load_pretrained_audio(self.model, Path(config.audio_pretrained))
                self.audio_source = f"pretrained weights from {config.audio_pretrained}"
            else:
                self.audio_source = "random init (no audio_pretrained in the config)"
        mc = self.model.config
        if mc.vertex_count != dataset.vertex_count or mc.fps != float(dataset.fps):
            raise MimicError(f"the network animates {mc.vertex_count} vertices at {mc.fps:g} fps but the data has "
                             f"{dataset.vertex_count} at {float(dataset.fps):g}")
        if mc.num_ids < len(self.labels):
            raise MimicError(f"the network's classifiers know {mc.num_ids} subjects "
                             f"but the data has {len(self.labels)}")
        self.model.audio_encoder.freeze_feature_encoder()
        self.model.to(device).train()
        self.objective = config.losses.objective()
        self.step_module = TrainingStep(self.model, self.objective)
        if place.active:
            seed_everything(config.seed + place.rank)  # dropout and shuffles differ between processes
            self.step_module = torch.nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True)  # switched-off terms, layerdrop and unmasked SpecAugment leave some unused
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=t.lr, betas=(0.9, 0.999))
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.epoch, self.batch, self.step = 0, 0, 0
        if resume is not None:
            self._load_state(read_state(resume / "last"))

    def _load_state(self, state: dict) -> None:
        if list(state["train_subjects"]) != list(self.dataset.train_subjects):
            raise MimicError("the data's training subjects differ from the run's (the classifiers' classes would "
                             "change meaning); resume with the same data")
        self.optimizer.load_state_dict(state["optimizer"])  # its learning rate gives way to the config's (_epoch)
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        if state["world_size"] == self.place.world:
            set_rng_state(state["rng"][self.place.rank], self.device)
        else:  # a different number of processes: fresh random streams, the same data order
            seed_everything(self.config.seed + self.place.rank + 1000 * self.step)
            if self.place.main:
                log(f"resumed with {self.place.world} processes instead of {state['world_size']}: "
                    "dropout and style shuffles take new random streams")

    # ---------------------------------------------------------------------------- loop

    def steps_per_epoch(self) -> int:
        t = self.config.training
        return math.ceil(len(self.sequences) * t.windows_per_sequence / (t.batch_size * self.place.world))

    def run(self) -> Path:
        t, place = self.config.training, self.place
        writer = None
        if place.main:
            from torch.utils.tensorboard import SummaryWriter
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "train.yaml").write_text(
                yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False))
            writer = SummaryWriter(str(self.run_dir / "tensorboard"))
            self._announce()
        try:
            stop = t.max_steps is not None and self.step >= t.max_steps
            while self.epoch < t.epochs and not stop:
                stop = self._epoch(writer)
                if self.batch == 0 and (self.epoch % t.save_every == 0 or self.epoch == t.epochs):
                    self.save(snapshot=True)
                elif stop:
                    self.save(snapshot=False)
        finally:
            if writer is not None:
                writer.close()
        if place.active:
            self._check_agreement()
        if place.main:
            log(f"done at step {self.step}, {self.epoch} of {t.epochs} epochs complete; "
                f"model in {self.run_dir / 'last'}")
        return self.run_dir / "last"

    def _epoch(self, writer) -> bool:
        """Run (the rest of) the current epoch; True when max_steps stopped it."""
        from tqdm import tqdm

        t, place, config = self.config.training, self.place, self.config
        for group in self.optimizer.param_groups:
            group["lr"] = t.learning_rate(self.epoch)
        plan = plan_epoch(len(self.sequences), t.windows_per_sequence, t.batch_size, place.world, config.seed,
                          self.epoch)
        rows = list(range(place.rank, len(plan), place.world))  # this process's batches, in order
        items = WindowBatches(self.sequences, self.templates, self.labels, plan, rows, t.window,
                              self.model.config.sample_rate, self.model.config.fps, config.seed, self.epoch)
        loader = torch.utils.data.DataLoader(
            items, batch_size=None, sampler=range(self.batch, len(rows)), collate_fn=collate,
            num_workers=config.data.num_workers, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(config.seed + self.epoch))  # leaves the global RNG alone
        weights = self.objective.weights_at(self.epoch)
        keys = ["loss", *weights] + [f"{head}_accuracy" for head in ("style", "inverse")
                                     if f"{head}_classifier" in weights]
        totals, count, stop = np.zeros(len(keys)), 0, False
        bar = tqdm(total=len(rows), initial=self.batch, desc=f"epoch {self.epoch + 1}/{t.epochs}", unit="step",
                   file=sys.stderr, disable=not place.main, dynamic_ncols=True)
        try:
            for batch in loader:
                values = self._train_step(batch.to(self.device), weights, keys)
                self.step += 1
                self.batch += 1
                totals += values
                count += 1
                bar.update(1)
                bar.set_postfix(loss=f"{values[0]:.4g}")
                if writer is not None and (self.step % t.log_every == 0 or self.step == 1):
                    for k, v in zip(keys, values):
                        writer.add_scalar(f"{'accuracy' if k.endswith('accuracy') else 'loss'}/{k}", v, self.step)
                    writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.step)
                    writer.add_scalar("train/logit_scale", self.model.logit_scale.exp().item(), self.step)
                    if "inverse_classifier" in weights:
                        writer.add_scalar("train/inverse_classifier_weight", weights["inverse_classifier"], self.step)
                if t.max_steps is not None and self.step >= t.max_steps:
                    stop = True
                    break
        finally:
            bar.close()
        if self.batch == len(rows):
            if writer is not None and count:
                for k, v in zip(keys, totals / count):
                    writer.add_scalar(f"epoch/{k}", v, self.epoch + 1)
            self.epoch += 1
            self.batch = 0
        if writer is not None:
            writer.flush()
        return stop

    def _train_step(self, batch: Batch, weights: dict, keys: list[str]) -> np.ndarray:
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.step_module(batch.audio, batch.motion, batch.init_state, batch.labels, weights)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(out["loss"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            out["loss"].backward()
            self.optimizer.step()
        values = torch.stack([out[k].detach().float() for k in keys])
        if self.place.active:
            dist.all_reduce(values)
            values /= self.place.world
        values = values.cpu().numpy()
        if not np.isfinite(values[0]) and self.scaler is None:
            raise MimicError(f"the loss is {values[0]} at step {self.step + 1} (epoch {self.epoch + 1}): training "
                             "diverged; lower training.lr, or resume from the last checkpoint")
        return values

    # ------------------------------------------------------------------------- saving

    def save(self, snapshot: bool) -> None:
        """last/ (model + training state) and, with snapshot, a model folder epoch_NNNN/. Every
        process must call this (it gathers their random states); the main one writes."""
        rng = rng_state(self.device)
        states = [None] * self.place.world
        if self.place.active:
            dist.all_gather_object(states, rng)
        else:
            states = [rng]
        if not self.place.main:
            return
        state = {"optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                 "epoch": self.epoch, "batch": self.batch, "step": self.step, "world_size": self.place.world,
                 "rng": states, "train_subjects": list(self.dataset.train_subjects)}
        write_checkpoint(self.run_dir, self.model, state, f"epoch_{self.epoch:04d}" if snapshot else None)

    def _check_agreement(self) -> None:
        """Every process must hold the same network at the end: DDP keeps them in step."""
        checksum = parameter_checksum(self.model.state_dict())
        print(f"mimic train: rank {self.place.rank}/{self.place.world}: parameters sha256 {checksum}",
              file=sys.stderr, flush=True)
        sums = [None] * self.place.world
        dist.all_gather_object(sums, checksum)
        if len(set(sums)) != 1:
            raise MimicError(f"the processes' networks differ at the end ({sums}): distributed training went wrong")

    def _announce(self) -> None:
        d, mc, t = self.dataset, self.model.config, self.config.training
        resumed = f" (resumed at epoch {self.epoch + 1}, step {self.step})" if self.step else ""
        log(f"run folder {self.run_dir}{resumed}")
        log(f"data: {d.kind} at {d.root}: {len(self.sequences)} training sequences of "
            f"{len(self.labels)} subjects, {d.vertex_count} vertices, {float(d.fps):g} fps")
        params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log(f"network: {mc.alignment} alignment, features {mc.feature_dim}, {params / 1e6:.2f} M trainable parameters; "
            f"audio encoder {describe_audio(mc)}, {self.audio_source}")
        on = ", ".join(f"{k} {w:g}" for k, w in self.objective.weights.items())
        off = [k for k in TERMS if k not in self.objective.weights]
        log(f"losses: {on}{'; off: ' + ', '.join(off) if off else ''}")
        processes = f"{self.place.world} processes ({dist.get_backend()})" if self.place.active else "1 process"
        log(f"device {self.device}, {processes}, AMP {'on' if self.amp else 'off'}; "
            f"{self.steps_per_epoch()} step{'s' if self.steps_per_epoch() != 1 else ''} "
            f"per epoch of batch {t.batch_size}{' x ' + str(self.place.world) if self.place.active else ''}")


# -------------------------------------------------------------------------------------- entry


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the checkpoint was saved."""


def run(config_path: str | None, resume: str | None, dataset=None) -> Path:
    """`mimic train`: a new run from a config, or `resume` a run folder (with its own config, or
    with `config_path` for new training settings; the network must stay the same). `dataset`
    (a mimic.data.Dataset) replaces the config's data section, for programs and tests."""
    if config_path is None and resume is None:
        raise MimicError("give --config FILE.yaml (a new run) or --resume RUN_DIR (or both)")
    run_dir = Path(resume).expanduser().resolve() if resume is not None else None
    if run_dir is not None:
        saved_file = run_dir / "train.yaml"
        if not (run_dir / "last").is_dir() or not saved_file.is_file():
            raise MimicError(f"{run_dir} is not a run folder with a checkpoint to resume (no last/ or train.yaml)")
        saved = load_config(saved_file)
        config = load_config(config_path) if config_path is not None else saved
        if config.model.model_dump() != saved.model.model_dump():
            raise MimicError(f"the config's model section differs from the run's ({saved_file}); the network "
                             "cannot change when resuming")
        config.output = str(run_dir)
    else:
        config = load_config(config_path)
        if (Path(config.output) / "last").exists():
            raise MimicError(f"{config.output} already holds a run: continue it with --resume {config.output}, "
                             "or set another output")
    place = distributed_from_env()
    if dataset is None:
        from .data import open_dataset
        dataset = open_dataset(config.data.kind, config.data.root, **config.data.options)
    device = setup_device(config.training.device, place)
    trainer = None
    try:
        trainer = Trainer(config, dataset, place, device, run_dir)
        started = time.perf_counter()
        try:
            out = trainer.run()
        except KeyboardInterrupt:
            if place.active:
                raise
            trainer.save(snapshot=False)
            log(f"interrupted at step {trainer.step}; saved {trainer.run_dir / 'last'}: continue with "
                f"--resume {trainer.run_dir}")
            raise TrainingInterrupted() from None
        if place.main:
            log(f"{time.perf_counter() - started:.1f} s")
        return out
    finally:
        if place.active and dist.is_initialized():
            del trainer  # DistributedDataParallel goes before its process group: the other order can hang
            dist.destroy_process_group()
