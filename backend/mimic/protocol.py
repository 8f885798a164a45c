"""The protocol between the Blender add-on and `mimic serve`, defined once for both sides.

Newline-delimited JSON on the backend's stdin (requests) and stdout (replies); logs go to
stderr only. Arrays travel as .npy files in a per-session folder that the client creates and
names in `hello`. Standard library only: Blender's Python imports this module (no torch).
Documented in docs/protocol.md.
"""

from __future__ import annotations

import json

VERSION = 4  # 2: read_audio; 3: generate sample_rate, fit_character, transfer, solve_shape_keys;
# 4: load precision (hello precisions), generate progress in stages and within windows

# Requests (client -> backend); every request carries a client-chosen integer "id".
HELLO = "hello"  # {protocol, workdir} -> {protocol, backend, torch, device, devices, precisions, model}
LOAD = "load"  # {checkpoint, device, precision} -> model facts: {checkpoint, device, precision, vertex_count, ...}
ENCODE_STYLE = "encode_style"  # {vertices: npy (F,V,3), neutral: npy (V,3)} -> {style: [C floats], frames}
READ_AUDIO = "read_audio"  # {path, start, stop: samples at the model's rate (stop null: to the end)}
                           # -> {audio: npy, samples}
GENERATE = "generate"  # {audio: npy mono, sample_rate, style: [C floats], error_bound} -> compact result
CANCEL = "cancel"  # {target: id of the running generate} -> {cancelled}; the target ends with error "cancelled"
SHUTDOWN = "shutdown"  # {} -> {} and the backend exits
# Characters (geometry only: no model needs to be loaded)
FIT_CHARACTER = "fit_character"  # {model_vertices, model_faces, character_vertices, character_faces: npy,
#   landmarks?: {name: [x, y, z]}, model_landmarks?: {name: vertex}, character_matrix?: 4x4, falloff?}
#   -> {fit: npz, quality, landmarks, bound_vertices}
TRANSFER = "transfer"  # {fit: npz, mean + basis: npy | motion: npy, space?} -> {mean, basis, k} | {motion, frames}
SOLVE_SHAPE_KEYS = "solve_shape_keys"  # {fit, keys: npy (S,N,3), motion | mean + basis + weights: npy,
#   bounds?, smoothness?, key_names?} -> {weights: npy (F,S), frames, report}
REQUESTS = (HELLO, LOAD, ENCODE_STYLE, READ_AUDIO, GENERATE, CANCEL, SHUTDOWN, FIT_CHARACTER, TRANSFER,
            SOLVE_SHAPE_KEYS)
SPACES = ("local", "world")  # transfer: the character object's own space (its shape keys) or world space

# Replies (backend -> client), each with the "id" of its request.
RESULT = "result"
PROGRESS = "progress"  # {done, total, stage}: frames of `stage` done; zero or more before a result
ERROR = "error"  # {code, message}: the request failed; the backend stays up

# Stages of a generate, in this order, each counting done = 0..total frames; their text is shown to users.
ENCODING = "Encoding the audio"  # wav2vec 2.0 / HuBERT on every window (most of the time)
GENERATING = "Generating"  # the autoregressive decoder, reported every few frames
COMPRESSING = "Compressing"  # the compact result (done = total)
STAGES = (ENCODING, GENERATING, COMPRESSING)

# Numeric precision of the audio encoder (`load`'s "precision"); the decoder always runs in float32.
FP32 = "fp32"  # the default: equal to the official network
BF16 = "bf16"  # CPUs with bf16 instructions (AVX512-BF16, AMX, ARM BF16) and GPUs that have it
FP16 = "fp16"  # CUDA GPUs only
FAST = "fast"  # the fastest of these that the device supports
PRECISIONS = (FP32, BF16, FP16, FAST)

# Error codes
BAD_REQUEST = "bad_request"  # malformed message, unknown type, missing field
BAD_INPUT = "bad_input"  # unreadable/invalid arrays or audio, wrong vertex count
BAD_CHECKPOINT = "bad_checkpoint"  # checkpoint missing, unreadable or not Mimic
NO_MODEL = "no_model"  # a request that needs a model before `load`
CANCELLED = "cancelled"
VERSION_MISMATCH = "version_mismatch"
INTERNAL = "internal"  # a bug: the message holds the exception text

DEFAULT_ERROR_BOUND = 1e-4  # metres: 0.1 mm per vertex per frame for the compact result


class ProtocolError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def request(type_: str, id_: int, **fields) -> dict:
    assert type_ in REQUESTS, f"unknown request type {type_!r}"
    return {"type": type_, "id": id_, **fields}


def result(id_: int, **fields) -> dict:
    return {"type": RESULT, "id": id_, **fields}


def progress(id_: int, done: int, total: int, stage: str) -> dict:
    return {"type": PROGRESS, "id": id_, "done": done, "total": total, "stage": stage}


def error(id_: int | None, code: str, message: str) -> dict:
    return {"type": ERROR, "id": id_, "code": code, "message": message}


def encode(message: dict) -> bytes:
    """One message as one line of UTF-8 JSON."""
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


def decode(line: bytes | str) -> dict:
    """One line -> message; ProtocolError(BAD_REQUEST) unless it is a JSON object with a type."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProtocolError(BAD_REQUEST, f"not a JSON line: {e}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(BAD_REQUEST, "a message must be a JSON object with a string 'type'")
    return message


def field(message: dict, name: str, kind: type | tuple):
    """A required field of the given type, else ProtocolError(BAD_REQUEST)."""
    value = message.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ProtocolError(BAD_REQUEST, f"{message.get('type')}: field {name!r} is missing or not {kind}")
    return value
