"""The add-on's one backend process: started on first use, kept warm, restarted when its
interpreter changes or it died, stopped when the add-on is disabled or Blender quits."""

from __future__ import annotations

import atexit

from .backend_source import protocol as p
from .client import Backend
from .errors import BackendError

_backend: Backend | None = None


def backend(settings, model: bool = True) -> Backend:
    """A live backend with settings.checkpoint loaded on settings.device (unless `model` is False:
    geometry alone needs none)."""
    global _backend
    if _backend is not None and (not _backend.alive or _backend.python != settings.python):
        stop()
    if _backend is None:
        candidate = Backend(settings.python)
        candidate.start()
        _backend = candidate
    if not model:
        return _backend
    model = _backend.facts.get("model") or {}
    if model.get("checkpoint") != settings.checkpoint or model.get("requested_device") != settings.device:
        if not settings.checkpoint:
            raise BackendError(p.NO_MODEL, "no checkpoint set: choose one in the add-on's Preferences (or --checkpoint)")
        facts = _backend.request("load", checkpoint=settings.checkpoint, device=settings.device)
        _backend.facts["model"] = {**facts, "requested_device": settings.device}
    return _backend


def stop() -> None:
    global _backend
    if _backend is not None:
        _backend.stop()
        _backend = None


atexit.register(stop)
