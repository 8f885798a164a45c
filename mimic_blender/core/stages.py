"""The stages of a job as the progress bar names them. A stage is what `on_progress(done, total,
stage)` reports: the client's own steps (named after the request they wait for) with total 0,
and the backend's progress messages with their counts, whose stage is text for users already
(protocol.STAGES: encoding the audio, generating, compressing), shown as sent."""

from __future__ import annotations

from .backend_source import protocol as p

WAIT = "wait"  # another job still holds the backend (a cancelled one finishing its window)
WRITE = "write"  # the Blender layer writes the shape keys and their action

LABELS = {
    p.HELLO: "Loading PyTorch",  # the backend answers hello once it has imported torch
    p.LOAD: "Loading the model",
    p.ENCODE_STYLE: "Encoding the style",
    p.READ_AUDIO: "Reading the sound",
    p.FIT_CHARACTER: "Fitting the character",
    p.GENERATE: p.ENCODING,  # sent, waiting for the backend's first progress (its stages, p.STAGES, are shown as sent)
    WAIT: "Waiting for the backend",
    WRITE: "Writing keys",
}


def describe(done: int, total: int, stage: str) -> tuple[float | None, str]:
    """(the bar's fraction, or None where the stage has no count, and its text)."""
    label = LABELS.get(stage, stage)
    if total > 0:
        return done / total, f"{label} {done}/{total}"
    return None, label
