"""What a `mimic train` run is made of besides the network: its place among the processes
(torchrun's DistributedDataParallel), its random states, and its checkpoint in the run folder:

    last/           config.json + model.safetensors (a model folder that `mimic generate` and
                    `load_model` read) + training_state.pt, replaced all at once
    epoch_NNNN/     a copy of the model folder

The training state is a plain dict of tensors and numbers (`torch.load(weights_only=True)`):
optimiser, gradient scaler, epoch, batch, step, every process's random states.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .checkpoint import save_model
from .errors import MimicError
from .generate import pick_device

STATE_FILE = "training_state.pt"
STATE_FORMAT, STATE_VERSION = "mimic-training", 2  # 2: no scheduler (the learning rate is a function of the epoch)

# ------------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def distributed_from_env() -> Distributed:
    """The process's place when started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK), else alone."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return Distributed(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))) \
            if world > 1 else Distributed()
    except ValueError:
        raise MimicError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (torchrun sets them)") from None


def setup_device(name: str, place: Distributed) -> torch.device:
    if not place.active:
        return pick_device(name)
    cuda = torch.cuda.is_available() and name in ("auto", "cuda")
    if name == "cuda" and not cuda:
        raise MimicError("device 'cuda' asked for, but PyTorch sees no CUDA GPU")
    if cuda:
        torch.cuda.set_device(place.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return torch.device("cuda", place.local_rank) if cuda else torch.device("cpu")


def parameter_checksum(state: dict[str, torch.Tensor]) -> str:
    """sha256 of every tensor of a state dict, in key order: equal checksums, equal networks."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------ random states


def rng_state(device: torch.device) -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
            "python": random.getstate()}


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# -------------------------------------------------------------------------------- checkpoint


def write_checkpoint(run_dir: Path, model, state: dict, snapshot: str | None) -> None:
    """run_dir/last: the model folder and `state`, all new or all old after a crash; with
    `snapshot`, a copy of the model folder as run_dir/snapshot."""
    tmp = run_dir / "last.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model(model, tmp)
    torch.save({"format": STATE_FORMAT, "version": STATE_VERSION, **state}, tmp / STATE_FILE)
    replace_dir(tmp, run_dir / "last")
    if snapshot is not None:
        folder = run_dir / snapshot
        folder.mkdir(exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(run_dir / "last" / name, folder / name)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move tmp to final, replacing it; a crash leaves either the old or the new folder."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def read_state(folder: Path) -> dict:
    path = folder / STATE_FILE
    if not path.is_file():
        raise MimicError(f"{folder} has no {STATE_FILE}: not a resumable checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged file fails in many ways (UnpicklingError, RuntimeError, EOFError, ...)
        raise MimicError(f"{path} is not a readable training state ({str(e).strip().splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise MimicError(f"{path} is not a Mimic training state")
    if state.get("version", 0) > STATE_VERSION:
        raise MimicError(f"{path} is training-state version {state['version']}; this Mimic reads up to {STATE_VERSION}")
    return state
