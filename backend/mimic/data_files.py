"""Reading a dataset's files safely: `templates.pkl` through a restricted unpickler that admits
only numpy's array-rebuilding globals (VOCASET's was written by Python 2: latin1), .npy headers
and arrays without pickles, and the speech of a sequence (its duration, or the 3D-HDTF .npy)."""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path

import numpy as np
import soundfile

from .errors import MimicError
from .files import check_vertices

# --- restricted unpickling --------------------------------------------------------------------

def _latin1_bytes(text, encoding="latin1", errors="strict"):
    """Python 3 pickles bytes at protocols 0-2 as _codecs.encode(text, 'latin1'): admit that call only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError("_codecs.encode is admitted only as encode(<str>, 'latin1')")
    return text.encode("latin1")


def _empty_bytes(*args):
    """Python 3 pickles b'' at protocols 0-2 as bytes(): admit that call only."""
    if args:
        raise pickle.UnpicklingError("bytes() is admitted only without arguments")
    return b""


_ARRAY = np.zeros(1, np.float32)
_ADMITTED = {  # (module, name) as a pickle names them -> this numpy's object; numpy 2 moved numpy.core to numpy._core
    **{(m, "_reconstruct"): _ARRAY.__reduce__()[0] for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): np.float32(0).__reduce__()[0] for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    # protocol 5 rebuilds arrays from a buffer (it refuses object dtypes)
    **{(m, "_frombuffer"): _ARRAY.__reduce_ex__(5)[0] for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
}


class _NumpyUnpickler(pickle.Unpickler):
    """Builds containers (dict, list, tuple, str, numbers) and numpy arrays; refuses every other global."""

    def __init__(self, file, source: Path, encoding: str):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module, name):
        try:
            return _ADMITTED[(module, name)]
        except KeyError:
            raise MimicError(f"{self.source} was not loaded: it refers to {module}.{name}, but a dataset pickle "
                             "may only hold numpy arrays (unpickling anything else can run code)") from None

    def persistent_load(self, pid):
        raise MimicError(f"{self.source} was not loaded: it holds external references (persistent ids), "
                         "but a dataset pickle may only hold numpy arrays")


# What a malformed pickle raises (the unpickler's stack, memo and calls all see corrupt data).
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                  OverflowError, MemoryError, RuntimeError)


def _unpickle(stream: io.BytesIO, source: Path):
    """Unpickle the rest of `stream`. Python 2 pickles hold byte strings (arrays' data, and names) that
    only encoding="latin1" reads: VOCASET's templates.pkl is one."""
    start = stream.tell()
    try:
        try:
            return _NumpyUnpickler(stream, source, "ASCII").load()
        except UnicodeDecodeError:
            stream.seek(start)
            return _NumpyUnpickler(stream, source, "latin1").load()
    except MimicError:
        raise
    except _PICKLE_ERRORS as e:
        raise MimicError(f"cannot read {source}: it is not a readable pickle ({type(e).__name__}: {e})") from None


def _read_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise MimicError(f"{what} not found: {path}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise MimicError(f"cannot read {what} {path}: {e}") from None


def read_templates(path: str | Path) -> dict[str, np.ndarray]:
    """A dataset's templates.pkl -> {subject: (V, 3) float32}. Keys become strings (3D-HDTF's integer
    ids become "2", ...). Only numpy arrays are unpickled; anything else is refused unexecuted."""
    path = Path(path)
    content = _unpickle(io.BytesIO(_read_bytes(path, "templates file")), path)
    if not isinstance(content, dict) or not content:
        raise MimicError(f"{path} must hold a non-empty dict subject -> (vertices, 3) array; "
                         f"it holds {type(content).__name__}")
    templates = {}
    for key, value in content.items():
        subject = key.decode("latin1") if isinstance(key, bytes) else str(key)
        what = f"the template of {subject} in {path}"
        if not isinstance(value, np.ndarray):
            raise MimicError(f"{what} is a {type(value).__name__}, not an array")
        count = value.shape[0] if value.ndim == 2 else value.size // 3
        if count == 0:
            raise MimicError(f"{what} holds no vertices")
        templates[subject] = np.array(check_vertices(value, what, count, frames=False))  # a writable copy
    return templates


# --- .npy files ------------------------------------------------------------------------------

def _npy_header(stream, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header; leaves `stream` at the data."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:  # 3.0 only differs for structured dtypes with non-latin1 field names
            raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
    except (ValueError, EOFError, OSError, SyntaxError) as e:
        raise MimicError(f"cannot read {path}: it is not a readable .npy file ({e})") from None
    return shape, dtype


def plain_npy_shape(path: Path) -> tuple[int, ...] | None:
    """The shape of a numeric .npy without reading its data; None for a pickled (object) .npy."""
    try:
        with open(path, "rb") as f:
            shape, dtype = _npy_header(f, path)
    except OSError as e:
        raise MimicError(f"cannot read {path}: {e}") from None
    return None if dtype.hasobject else shape


def load_npy(path: Path):
    """A .npy file: a numeric array (memory-mapped, read-only) or, for a pickled .npy, what it holds
    (np.save of a dict stores a 0-d object array, unwrapped here) through the restricted unpickler."""
    if not path.is_file():
        raise MimicError(f"file not found: {path}")
    shape = plain_npy_shape(path)
    if shape is not None:
        try:  # zero-size arrays cannot be mapped
            return np.load(path, mmap_mode="r" if math.prod(shape) else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:  # e.g. truncated: "mmap length is greater than file size"
            raise MimicError(f"cannot read {path}: {e}") from None
    stream = io.BytesIO(_read_bytes(path, "file"))
    _npy_header(stream, path)
    content = _unpickle(stream, path)
    if isinstance(content, np.ndarray) and content.dtype.hasobject and content.shape == ():
        content = content.item()
    return content


def motion_array(content, path: Path) -> np.ndarray:
    """Vertices from a loaded .npy: the array itself, or a dict's 'verts' (3D-HDTF's SPECTRE codedict,
    which the reference reads as codedict['verts'])."""
    if isinstance(content, dict):
        if not isinstance(content.get("verts"), np.ndarray):
            raise MimicError(f"{path} holds a dict without a 'verts' array (keys: {sorted(map(str, content))})")
        content = content["verts"]
    if not isinstance(content, np.ndarray) or not (np.issubdtype(content.dtype, np.floating)
                                                   or np.issubdtype(content.dtype, np.integer)):
        kind = f"a {content.dtype} array" if isinstance(content, np.ndarray) else f"a {type(content).__name__}"
        raise MimicError(f"{path} must hold a numeric vertex array; it holds {kind}")
    return content


def frames_and_vertices(shape: tuple[int, ...], path: Path) -> tuple[int, int]:
    if len(shape) == 2 and shape[1] % 3 == 0:
        frames, count = shape[0], shape[1] // 3
    elif len(shape) == 3 and shape[2] == 3:
        frames, count = shape[0], shape[1]
    else:
        raise MimicError(f"{path} holds an array of shape {shape}; expected (frames, vertices*3) or "
                         "(frames, vertices, 3)")
    if frames == 0:
        raise MimicError(f"{path} holds no frames")
    return frames, count


def read_speech_npy(path: Path) -> tuple[np.ndarray, int]:
    """3D-HDTF's audio_librosa.npy: a pickled {'speech_array': samples, 'sampling_rate': rate}."""
    content = load_npy(path)
    if not isinstance(content, dict) or not isinstance(content.get("speech_array"), np.ndarray):
        raise MimicError(f"{path} must hold a dict with 'speech_array' and 'sampling_rate'")
    samples, rate = content["speech_array"], content.get("sampling_rate")
    if samples.ndim != 1 or samples.size == 0 or not np.issubdtype(samples.dtype, np.number):
        raise MimicError(f"{path}: 'speech_array' must be a non-empty mono array; it has shape {samples.shape}")
    if isinstance(rate, np.ndarray) and rate.size == 1:
        rate = rate.item()
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or not rate > 0:
        raise MimicError(f"{path}: 'sampling_rate' must be a positive number, not {rate!r}")
    return samples, int(rate)


def audio_duration(path: Path) -> float:
    if path.suffix == ".npy":
        samples, rate = read_speech_npy(path)
        return samples.size / rate
    if not path.is_file():
        raise MimicError(f"audio file not found: {path}")
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
        raise MimicError(f"cannot read audio {path}: {e}") from None
    if info.frames <= 0:
        raise MimicError(f"audio file {path} holds no samples")
    return info.frames / info.samplerate
