"""The add-on's one backend process. `prewarm` starts it (and loads the checkpoint) on a thread
ahead of the first click; `use` lends it to one job at a time, starting it or loading another
checkpoint as needed; it stays warm between jobs, stops after `Settings.idle_stop` seconds
without one, and when the add-on is disabled or Blender quits (`stop`). A job that waits for
another (the prewarm, or a cancelled job finishing) reports the stage that one is in."""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

from . import stages
from .backend_source import protocol as p
from .client import Backend
from .errors import BackendError

_lock = threading.Lock()  # held by whoever talks to the backend: one job, the prewarm, the idle stop
_backend: Backend | None = None
_stage = stages.WAIT  # what the holder of _lock is doing, for those waiting
_epoch = 0  # counts stop()s: a start that a stop() overtook must not leave its process behind
_prewarmed: tuple | None = None  # the settings the last prewarm was for
_problem = ""  # why the backend could not be started or the checkpoint loaded, last time
_idle: threading.Timer | None = None


@contextlib.contextmanager
def use(settings, on_progress: Callable | None = None, cancelled: Callable[[], bool] | None = None,
        need_model: bool = True):
    """`with use(settings) as backend:` a live backend with settings.checkpoint loaded on
    settings.device (none loaded unless `need_model`: geometry alone needs none), for this job alone.
    Raises BackendError (code cancelled) when `cancelled()` turns True while waiting for another job."""
    report = on_progress or _quiet
    with _holding(settings, report, cancelled):
        yield _ready(settings, report, need_model=need_model)


def prewarm(settings, again: bool = False) -> None:
    """Start the backend and load settings.checkpoint (if one is set) on a thread; returns at once.
    Once per settings (a failure is not retried on every redraw, an idle stop not undone) unless
    `again`."""
    global _prewarmed
    key = (settings.python, settings.checkpoint, settings.device, settings.precision)
    if key == _prewarmed and not again:
        return
    _prewarmed = key
    threading.Thread(target=_prewarm, args=(settings,), daemon=True, name="mimic-prewarm").start()


def status() -> str:
    """One line on the backend for the panel: working, starting, ready, failed, or not running."""
    if _lock.locked():
        return "Backend working" if _stage == stages.WAIT else f"Backend: {stages.LABELS[_stage]}"
    if _problem:
        return f"Backend failed: {_problem}"
    if _backend is not None and _backend.alive:
        model = _backend.facts.get("model")
        where = f" on {model['device']}, audio encoder in {model['precision']}" if model else ", no model loaded"
        return f"Backend ready: torch {_backend.facts['torch']}{where}"
    return "Backend not running"


def stop() -> None:
    """Stop the backend now; a job using it fails (backend_died), a start under way is undone.
    The next prewarm starts it again."""
    global _backend, _epoch, _prewarmed, _problem
    _epoch, _prewarmed, _problem = _epoch + 1, None, ""
    _disarm()
    busy = not _lock.acquire(blocking=False)
    try:
        if _backend is not None:
            _backend.stop(grace=0.0 if busy else 5.0)  # a busy one would finish its request first
            _backend = None
    finally:
        if not busy:
            _lock.release()


# -------------------------------------------------------------------------------- internals


def _quiet(done, total, stage) -> None:
    pass


@contextlib.contextmanager
def _holding(settings, report, cancelled):
    """Hold _lock (reporting the holder's stage while waiting); then arm the idle stop."""
    global _idle, _stage
    _disarm()
    shown = None
    while not _lock.acquire(timeout=0.05):
        if cancelled is not None and cancelled():
            raise BackendError(p.CANCELLED, "cancelled")
        if _stage != shown:
            shown = _stage
            report(0, 0, shown)
    try:
        yield
    finally:
        _stage = stages.WAIT
        if settings.idle_stop > 0 and _backend is not None:
            _idle = threading.Timer(settings.idle_stop, _stop_if_idle)
            _idle.daemon = True
            _idle.start()
        _lock.release()


def _disarm() -> None:
    if _idle is not None:
        _idle.cancel()


def _stop_if_idle() -> None:
    global _backend
    if _lock.acquire(blocking=False):  # a job has it: its end arms the timer again
        try:
            if _backend is not None:
                _backend.stop()
                _backend = None
        finally:
            _lock.release()


def file_version(checkpoint: str) -> tuple:
    """What changes when a checkpoint is written again (a .pth, or a project folder's files): a warm
    backend holding the old model then loads the new one."""
    if not checkpoint:
        return ()
    path = Path(checkpoint)
    try:
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except OSError:  # missing: the load says so
        return ()


def _ready(settings, report, need_model: bool) -> Backend:
    """The live backend for `settings` (the caller holds _lock); a failure to start it or load
    the checkpoint is kept for status()."""
    global _problem, _stage
    try:
        backend = _started(settings, report)
        model = backend.facts.get("model") or {}
        wanted = (settings.device, settings.precision, file_version(settings.checkpoint))
        if need_model and (model.get("checkpoint") != settings.checkpoint or model.get("requested") != wanted):
            if not settings.checkpoint:
                raise BackendError(p.NO_MODEL, "no checkpoint set: choose one in the add-on's Preferences "
                                   "(or --checkpoint)")
            _stage = p.LOAD
            report(0, 0, p.LOAD)
            facts = backend.request(p.LOAD, checkpoint=settings.checkpoint, device=settings.device,
                                    precision=settings.precision)
            backend.facts["model"] = {**facts, "requested": wanted}
    except BackendError as e:
        if e.code != p.CANCELLED:  # cancelled: a stop() overtook the start
            _problem = str(e)
        raise
    _stage, _problem = stages.WAIT, ""
    return backend


def _started(settings, report) -> Backend:
    global _backend, _stage
    if _backend is not None and (not _backend.alive or _backend.python != settings.python):
        _backend.stop()
        _backend = None
    if _backend is None:
        epoch, _stage = _epoch, p.HELLO
        report(0, 0, p.HELLO)
        candidate = Backend(settings.python)
        candidate.start()
        if epoch != _epoch:
            candidate.stop()
            raise BackendError(p.CANCELLED, "cancelled")
        _backend = candidate
    return _backend


def _prewarm(settings) -> None:
    with _holding(settings, _quiet, None), contextlib.suppress(BackendError):  # status() tells
        _ready(settings, _quiet, need_model=bool(settings.checkpoint))  # the checkpoint too, if one is set


atexit.register(stop)
