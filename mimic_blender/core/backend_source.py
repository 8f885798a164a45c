"""The backend's source and the two torch-free modules the add-on shares with it.

An installed extension carries the backend as `backend/` beside its own files (install/build_extension.py
copies it there); a checkout has it as the repository's `backend/`, beside `mimic_blender/`. The
protocol and the frame arithmetic are defined once, in the backend, and loaded from there.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_ADDON = Path(__file__).resolve().parents[1]
_CANDIDATES = (_ADDON / "backend", _ADDON.parent / "backend")
SOURCE = next((folder for folder in _CANDIDATES if (folder / "mimic" / "protocol.py").is_file()), None)
if SOURCE is None:
    raise ImportError(f"the Mimic backend's source is missing (looked in {', '.join(map(str, _CANDIDATES))}): "
                      "reinstall the extension")


def load(name: str):
    """backend/mimic/<name>.py (a module that imports nothing of the backend's) as the module
    `<this package>.mimic_<name>`, so it never shadows an installed `mimic`; loaded once."""
    qualified = f"{__package__}.mimic_{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, SOURCE / "mimic" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
    return sys.modules[qualified]


protocol = load("protocol")
