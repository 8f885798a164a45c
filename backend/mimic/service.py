"""`mimic serve`: the backend process the Blender add-on keeps warm.

One reader thread takes request lines from stdin; `cancel` is acted on at once (it sets the
running job's flag, checked wherever a generate reports progress: after each layer of the audio
encoder, every few decoded frames, while compressing), every other request waits its turn on the
main thread, which runs one job at a time. Replies go to stdout, one JSON line each, under a lock;
logs go to stderr. End of stdin (Blender quit or was killed) ends the process.
"""

from __future__ import annotations

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
from .files import check_vertices, load_audio, resample_audio
from .generate import Generator, pick_device
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
                    p.READ_AUDIO: self.read_audio, p.GENERATE: self.generate, p.SHUTDOWN: lambda m: {}}
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
        model = load_model(checkpoint, device)
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

    def _array(self, m: dict, name: str) -> np.ndarray:
        path = Path(p.field(m, name, str))
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise MimicError(f"cannot read {name} array {path}: {e}") from None

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
        start, stop = p.field(m, "start", int), p.field(m, "stop", int)
        if not 0 <= start < stop:
            raise p.ProtocolError(p.BAD_REQUEST, f"read_audio: need 0 <= start < stop; got {start}, {stop}")
        samples = load_audio(path, rate)[start:stop]
        if samples.size == 0:
            raise MimicError(f"{Path(path).name} has no sound from {start / rate:.2f} s on (it is shorter than that, "
                             "or empty)")
        out = self._result_file(m["id"], "audio")
        np.save(out, samples)
        return {"audio": out, "samples": int(samples.size)}

    def _result_file(self, id_: int, name: str) -> str:
        if self.workdir is None:
            raise p.ProtocolError(p.BAD_REQUEST, "send 'hello' with a workdir first")
        return str(self.workdir / f"result-{id_}-{name}.npy")

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
        audio = resample_audio(audio, rate, generator.config.sample_rate)
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


def serve() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="mimic serve: %(message)s")
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the protocol stream
    Service(out).run()
    # After `shutdown` the reader thread is still blocked reading stdin; a normal interpreter exit
    # then aborts (SIGABRT, "could not acquire lock for <stdin>"). Everything is sent: leave now.
    sys.stderr.flush()
    os._exit(0)
