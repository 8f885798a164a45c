"""`mimic serve`: the backend process the Blender add-on keeps warm.

One reader thread takes request lines from stdin; `cancel` is acted on at once (it sets the
running job's flag, checked wherever a generate reports progress: after each step of the audio
encoder, every few decoded frames, while compressing), every other request waits its turn on the
main thread, which runs one job at a time. Replies go to stdout, one JSON line each, under a lock;
logs go to stderr. End of stdin (Blender quit or was killed) ends the process.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import sys
import threading
import traceback
from pathlib import Path

import numpy as np
import torch

from . import protocol as p
from .checkpoint import load_model
from .compress import Subspace
from .errors import MimicError
from .files import atomic_npy, check_vertices, load_audio, resample
from .generate import Generator, pick_device
from .memory import keep_freed_memory
from .precision import pick_precision, supported_precisions

log = logging.getLogger("mimic.serve")
MIN_RATE, MAX_RATE = 1000, 768_000  # samples a second that `generate` takes (resampled to the model's)


class Cancelled(Exception):
    pass


class Service:
    def __init__(self, out=sys.stdout.buffer):
        self.out = out
        self.write_lock = threading.Lock()
        self.jobs: queue.Queue = queue.Queue()
        self.running: int | None = None  # id of the request being worked on
        self.running_type: str | None = None  # and its type
        self.cancelled: set[int] = set()
        self.workdir: Path | None = None
        self.generator: Generator | None = None
        self.subspace: Subspace | None = None
        self.facts: dict | None = None

    def send(self, message: dict) -> None:
        with self.write_lock:
            self.out.write(p.encode(message))
            self.out.flush()

    # ------------------------------------------------------------------------------- threads

    def read(self, stream) -> None:
        """Reader thread: parse lines, act on cancel now, queue the rest; None marks the end."""
        for line in stream:
            if not line.strip():
                continue
            try:
                message = p.decode(line)
            except p.ProtocolError as e:
                self.send(p.error(None, e.code, str(e)))
                continue
            if message["type"] == p.CANCEL:
                target = message.get("target")
                if not isinstance(target, int) or isinstance(target, bool):
                    self.send(p.error(message.get("id"), p.BAD_REQUEST, "cancel: field 'target' must be the "
                                      "integer id of a request"))
                    continue
                hit = target == self.running and self.running_type == p.GENERATE
                if hit:  # only a running generate checks the flag; anything else is not remembered
                    self.cancelled.add(target)
                self.send(p.result(message.get("id"), cancelled=hit))
            else:
                self.jobs.put(message)
        self.jobs.put(None)

    def run(self, stream=sys.stdin.buffer) -> None:
        threading.Thread(target=self.read, args=(stream,), daemon=True).start()
        while (message := self.jobs.get()) is not None:
            id_ = message.get("id")
            self.running_type = message.get("type")
            self.running = id_
            try:
                reply = self.handle(message)
            except p.ProtocolError as e:
                reply = p.error(id_, e.code, str(e))
            except MimicError as e:
                reply = p.error(id_, e.code, str(e))
            except Cancelled:
                reply = p.error(id_, p.CANCELLED, "cancelled")
            except Exception as e:  # a bug: report it, stay up
                log.error("request %s failed:\n%s", id_, traceback.format_exc())
                reply = p.error(id_, p.INTERNAL, f"{type(e).__name__}: {e}")
            finally:
                self.running = self.running_type = None
                if isinstance(id_, int):  # an unhashable id (a list) must not crash the loop
                    self.cancelled.discard(id_)
            self.send(reply)
            if message.get("type") == p.SHUTDOWN and reply["type"] == p.RESULT:
                return

    # ------------------------------------------------------------------------------ requests

    def handle(self, message: dict) -> dict:
        kind, id_ = message["type"], message.get("id")
        if not isinstance(id_, int):
            raise p.ProtocolError(p.BAD_REQUEST, "every request needs an integer 'id'")
        handlers = {p.HELLO: self.hello, p.LOAD: self.load, p.ENCODE_STYLE: self.encode_style,
                    p.READ_AUDIO: self.read_audio, p.GENERATE: self.generate, p.SHUTDOWN: lambda m: {},
                    p.FIT_CHARACTER: self.fit_character, p.TRANSFER: self.transfer,
                    p.SOLVE_SHAPE_KEYS: self.solve_shape_keys}
        if kind not in handlers:
            raise p.ProtocolError(p.BAD_REQUEST, f"unknown request type {kind!r}")
        return p.result(id_, **handlers[kind](message))

    def hello(self, m: dict) -> dict:
        version = p.field(m, "protocol", int)
        if version != p.VERSION:
            raise p.ProtocolError(p.VERSION_MISMATCH, f"the add-on speaks protocol {version}, this backend "
                                  f"{p.VERSION}: install the backend that came with the add-on")
        workdir = Path(p.field(m, "workdir", str))
        if not workdir.is_dir():
            raise p.ProtocolError(p.BAD_REQUEST, f"workdir {workdir} is not a folder")
        self.workdir = workdir
        from . import __version__
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + \
            (["mps"] if torch.backends.mps.is_available() else [])
        return {"protocol": p.VERSION, "backend": __version__, "torch": torch.__version__,
                "device": str(pick_device("auto")), "devices": devices,
                "precisions": {d: supported_precisions(torch.device(d)) for d in devices}, "model": self.facts}

    def load(self, m: dict) -> dict:
        checkpoint = p.field(m, "checkpoint", str)
        device = pick_device(m.get("device", "auto"))
        precision = m.get("precision", p.FP32)
        if not isinstance(precision, str):
            raise p.ProtocolError(p.BAD_REQUEST, f"load: field 'precision' must be one of {', '.join(p.PRECISIONS)}")
        pick_precision(precision, device)  # an unsupported choice fails before the slow load
        model = load_model(checkpoint, device, keep=True)
        self.generator = Generator(model, device, precision=precision)
        out = model.decoder.motion_out
        self.subspace = Subspace(out.weight.detach().cpu().numpy(), out.bias.detach().cpu().numpy())
        c = model.config
        self.facts = {"checkpoint": checkpoint, "device": str(device), "precision": self.generator.precision,
                      "vertex_count": c.vertex_count, "fps": c.fps, "sample_rate": c.sample_rate,
                      "style_dim": c.feature_dim, "window": c.window}
        log.info("loaded %s on %s (%s)", checkpoint, device, self.generator.precision)
        return self.facts

    def _model(self) -> Generator:
        if self.generator is None:
            raise p.ProtocolError(p.NO_MODEL, "no model loaded: send 'load' with a checkpoint first")
        return self.generator

    def _array(self, m: dict, name: str, mmap: bool = False) -> np.ndarray:
        path = Path(p.field(m, name, str))
        try:
            return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (OSError, ValueError, EOFError) as e:
            raise MimicError(f"cannot read {name} array {path}: {e or 'it is empty'}") from None

    def encode_style(self, m: dict) -> dict:
        generator = self._model()
        v = generator.config.vertex_count
        vertices = check_vertices(self._array(m, "vertices"), "the style reference", v, frames=True)
        neutral = check_vertices(self._array(m, "neutral"), "the style reference's neutral", v, frames=False)
        code = generator.style_code(vertices - neutral)
        return {"style": code.cpu().tolist(), "frames": min(len(vertices), generator.config.window)}

    def read_audio(self, m: dict) -> dict:
        """Samples [start, stop) of a sound file at the model's rate, mono: for an add-on whose Blender
        cannot decode audio itself."""
        rate = self._model().config.sample_rate
        path = p.field(m, "path", str)
        start = p.field(m, "start", int)
        stop = None if m.get("stop") is None else p.field(m, "stop", int)  # None: to the end
        if start < 0 or stop is not None and stop <= start:
            raise p.ProtocolError(p.BAD_REQUEST, f"read_audio: need 0 <= start < stop; got {start}, {stop}")
        samples = load_audio(path, rate)[start:stop]
        if samples.size == 0:
            raise MimicError(f"{Path(path).name} has no sound from {start / rate:.2f} s on (it is shorter than that, "
                             "or empty)")
        out = self._result_file(m["id"], "audio")
        np.save(out, samples)
        return {"audio": out, "samples": int(samples.size)}

    def _result_file(self, id_: int, name: str, suffix: str = ".npy") -> str:
        if self.workdir is None:
            raise p.ProtocolError(p.BAD_REQUEST, "send 'hello' with a workdir first")
        return str(self.workdir / f"result-{id_}-{name}{suffix}")

    def generate(self, m: dict) -> dict:
        generator = self._model()
        id_ = m["id"]
        files = {name: self._result_file(id_, name) for name in ("mean", "basis", "weights")}
        style = p.field(m, "style", list)
        if len(style) != generator.config.feature_dim:
            raise MimicError(f"a style code has {generator.config.feature_dim} numbers; got {len(style)}")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in style):
            raise MimicError("a style code holds finite numbers only (as encode_style returns it)")
        bound = m.get("error_bound", p.DEFAULT_ERROR_BOUND)
        if not isinstance(bound, (int, float)) or isinstance(bound, bool):
            raise p.ProtocolError(p.BAD_REQUEST, f"generate: field 'error_bound' must be a number; got {bound!r}")
        bound = float(bound)
        if not bound > 0:
            raise MimicError("error_bound must be positive")
        rate = m.get("sample_rate", generator.config.sample_rate)
        if not isinstance(rate, int) or isinstance(rate, bool):
            raise p.ProtocolError(p.BAD_REQUEST, f"generate: field 'sample_rate' must be an integer; got {rate!r}")
        if not MIN_RATE <= rate <= MAX_RATE:
            raise MimicError(f"sample_rate {rate} is not an audio rate: send the samples' own rate, "
                             f"{MIN_RATE} to {MAX_RATE} samples a second")
        audio = self._array(m, "audio")
        if not isinstance(audio, np.ndarray) or not np.issubdtype(audio.dtype, np.number) or np.iscomplexobj(audio):
            raise MimicError("the audio must be a .npy array of real samples (mono, at sample_rate)")
        audio = audio.astype(np.float32).reshape(-1)
        if not np.isfinite(audio).all():
            raise MimicError("the audio contains NaN or infinite samples")
        audio = resample(audio, rate, generator.config.sample_rate)
        total = generator.frame_count(len(audio))
        if total == 0:
            raise MimicError(f"the audio is shorter than one frame ({1000 / generator.config.fps:.0f} ms)")

        def check() -> None:
            if id_ in self.cancelled:
                raise Cancelled()

        def report(stage: str, done: int, total: int) -> None:
            check()
            self.send(p.progress(id_, done, total, stage))

        coords = [self.subspace.coordinates(chunk)
                  for chunk in generator.stream(audio, torch.tensor(style, dtype=torch.float32), report)]
        report(p.COMPRESSING, total, total)
        compact = self.subspace.compress(np.concatenate(coords), bound, check=check)
        check()
        for name, file in files.items():
            np.save(file, getattr(compact, name))
        return {**files, "frames": total, "fps": generator.config.fps, "k": len(compact.basis),
                "max_error": compact.max_error, "error_bound": bound}


    # ------------------------------------------------------------------------- characters
    # mimic.character needs scipy and trimesh; imported on first use, so a backend environment
    # made before they were required still generates.

    def _optional(self, m: dict, name: str, kind, default=None):
        if m.get(name) is None:
            return default
        return p.field(m, name, kind)

    def fit_character(self, m: dict) -> dict:
        with character_packages():
            from .character.fit import fit_character
            from .character.landmarks import FALLOFF
        out = self._result_file(m["id"], "fit", ".npz")
        arrays = {n: self._array(m, n) for n in ("model_vertices", "model_faces", "character_vertices",
                                                 "character_faces")}
        matrix = self._optional(m, "character_matrix", list)
        try:
            matrix = None if matrix is None else np.array(matrix, dtype=np.float64)
        except (TypeError, ValueError):
            raise MimicError("character_matrix must be 4 rows of 4 numbers (the object's world matrix)") from None
        fit = fit_character(**arrays, landmarks=self._optional(m, "landmarks", dict),
                            model_landmarks=self._optional(m, "model_landmarks", dict), character_matrix=matrix,
                            falloff=float(self._optional(m, "falloff", (int, float), FALLOFF)))
        fit.save(out)
        return {"fit": out, "quality": fit.quality(), "landmarks": fit.character_landmarks(),
                "bound_vertices": int(len(fit.vertices))}

    def _fit(self, m: dict):
        with character_packages():
            from .character.fit import Fit
        return Fit.load(p.field(m, "fit", str))

    def transfer(self, m: dict) -> dict:
        fit = self._fit(m)
        from .character.transfer import transfer, transfer_compact

        space = self._optional(m, "space", str, "local")
        if space not in p.SPACES:
            raise p.ProtocolError(p.BAD_REQUEST, f"transfer: space must be one of {', '.join(p.SPACES)}")
        if m.get("motion") is not None:
            motion = self._array(m, "motion", mmap=True)
            if motion.ndim != 3:
                raise MimicError(f"the motion must be (frames, {fit.model_vertex_count}, 3); got shape {motion.shape}")
            path = self._result_file(m["id"], "motion")
            with atomic_npy(path, (len(motion), fit.character_vertex_count, 3)) as out:
                transfer(fit, motion, space, out=out)
            return {"motion": path, "frames": int(len(motion))}
        mean, basis = transfer_compact(fit, self._array(m, "mean"), self._array(m, "basis"), space)
        files = {name: self._result_file(m["id"], name) for name in ("mean", "basis")}
        np.save(files["mean"], mean)
        np.save(files["basis"], basis)
        return {**files, "k": int(len(basis))}

    def solve_shape_keys(self, m: dict) -> dict:
        fit = self._fit(m)
        from .character.solve import SMOOTHNESS, solve_shape_keys

        keys = self._array(m, "keys")
        names = self._optional(m, "key_names", list)
        if names is not None and (len(names) != len(keys) or not all(isinstance(n, str) for n in names)):
            raise MimicError(f"key_names must be {len(keys)} strings, one per key")
        if m.get("motion") is not None:
            source = {"motion": self._array(m, "motion", mmap=True)}
        else:
            source = {"compact": tuple(self._array(m, n) for n in ("mean", "basis", "weights"))}
        bounds = self._optional(m, "bounds", list, [0.0, 1.0])
        smoothness = float(self._optional(m, "smoothness", (int, float), SMOOTHNESS))
        weights, report = solve_shape_keys(fit, keys, **source, bounds=bounds, smoothness=smoothness)
        path = self._result_file(m["id"], "weights")
        np.save(path, weights)
        return {"weights": path, "frames": int(len(weights)), "report": report.to_dict(names)}


@contextlib.contextmanager
def character_packages():
    """Imports of mimic.character: one clear line when its packages are missing."""
    try:
        yield
    except ImportError as e:
        raise MimicError(f"the backend environment lacks {e.name or e}: character fitting needs scipy, trimesh "
                         "and rtree (click Set up backend again, or pip install the backend package)") from None


def serve() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="mimic serve: %(message)s")
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the protocol stream
    keep_freed_memory()
    Service(out).run()
    # After `shutdown` the reader thread is still blocked reading stdin; a normal interpreter exit
    # then aborts (SIGABRT, "could not acquire lock for <stdin>"). Everything is sent: leave now.
    sys.stderr.flush()
    os._exit(0)
