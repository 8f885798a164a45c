"""Build the Mimic extension zip with Blender's own extension tool, then validate it.

    .venv/bin/python install/build_extension.py [--out dist/mimic-<version>.zip]

The zip is built from a staged copy: the add-on (`mimic_blender/`), the backend's source as its
`backend/` folder (what Set up Backend installs and `mimic serve` runs from), the manifest, and
`backend_defaults.json`, which points an extension built from a checkout at this checkout's
`.venv` interpreter.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this script runs from install/; the add-on's core says where a venv keeps its python
from mimic_blender.core.setup_backend import venv_python  # noqa: E402

MANIFEST = ROOT / "blender_manifest.toml"
ADDON = ROOT / "mimic_blender"
BACKEND = ROOT / "backend"
VENV_PYTHON = venv_python(ROOT / ".venv")  # not resolved: a venv's python is a link to the base interpreter
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")


class BuildError(Exception):
    pass


def blender_scripts() -> Path:
    """`bpy/<version>/scripts` inside the installed bpy wheel (found without starting Blender)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise BuildError(f"bpy is not installed for {sys.executable}; run `make setup` and use .venv/bin/python")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if len(found) != 1:
        raise BuildError(f"expected one bpy/<version>/scripts/.../blender_ext.py beside {spec.origin}, found {found}")
    return found[0].parents[3]


def stage(stage_dir: Path) -> None:
    """Lay out the extension's files in `stage_dir` (which must not exist yet)."""
    shutil.copytree(ADDON, stage_dir, ignore=IGNORE)
    shutil.copytree(BACKEND, stage_dir / "backend", ignore=IGNORE)
    shutil.copy2(MANIFEST, stage_dir)
    python = str(VENV_PYTHON) if VENV_PYTHON.is_file() else ""
    (stage_dir / "backend_defaults.json").write_text(json.dumps({"python": python}, indent=2) + "\n", encoding="utf-8")


def blender_ext(*args: str) -> str:
    """Run Blender's extension tool with Blender's valid tags; its output, or BuildError."""
    scripts = blender_scripts()
    tool = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    tags = scripts / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    result = subprocess.run([sys.executable, str(tool), *args, "--valid-tags", str(tags)],
                            capture_output=True, encoding="utf-8", errors="replace")
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise BuildError(f"blender_ext.py {args[0]} failed (exit code {result.returncode}):\n{output}")
    return output


def build_extension(out: Path) -> Path:
    """Stage, build and validate the extension zip at `out`; returns its absolute path."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mimic-extension-") as tmp:
        source = Path(tmp) / "mimic"
        stage(source)
        print(blender_ext("build", "--source-dir", str(source), "--output-filepath", str(out)))
    print(blender_ext("validate", str(out)))
    return out


def main() -> None:
    version = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))["version"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / f"mimic-{version}.zip",
                        help="the zip to write (default: %(default)s)")
    args = parser.parse_args()
    try:
        out = build_extension(args.out)
    except BuildError as error:
        sys.exit(f"error: {error}")
    print(f"extension: {out}")


if __name__ == "__main__":
    main()
