#!/usr/bin/env bash
# Make the project environment from nothing: system packages, .venv with CPU (or CUDA) PyTorch,
# the backend package (editable) and real Blender (bpy from PyPI) for the tests.
#
#   install/setup.sh            CPU PyTorch (what CI uses)
#   MIMIC_TORCH=cuda install/setup.sh   CUDA build of the same PyTorch release (on a GPU machine)
#   MIMIC_TORCH_INDEX=URL install/setup.sh   PyTorch from that index (a mirror; empty: pip's own index)
#   MIMIC_VENV=.venv-bpy-5.0 MIMIC_BPY=5.0 install/setup.sh   another Blender release for the tests
#                                       (make test-blender-versions: 4.2 LTS to 5.0)
#
# Safe to re-run: each step is skipped when its result is already there.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MIMIC_VENV:-$root/.venv}"
python="${PYTHON:-python3.11}"
# The PyTorch release and its CUDA package index, shared with the add-on's Set up Backend.
torch_pin() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$root/backend/torch.json" "$1"; }
torch_version="$(torch_pin version)"
torch_cuda_index="$(torch_pin cuda_index)"
torch_cpu_index="$(torch_pin linux_cpu_index)"  # PyPI's Linux torch is the CUDA build
apt_packages=(pocketsphinx-testdata espeak-ng ffmpeg)

say() { printf '[setup] %s\n' "$*" >&2; }

install_apt() {
    local missing=()
    for p in "${apt_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "apt packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

make_venv() {
    command -v "$python" >/dev/null || { say "error: $python not found; install Python 3.11 (bpy 4.5 needs exactly 3.11)"; exit 1; }
    [ -x "$venv/bin/python" ] || { say "creating $venv"; "$python" -m venv "$venv"; }
    "$venv/bin/python" -m pip install -q --upgrade pip
}

install_torch() {
    if "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" 2>/dev/null; then
        return
    fi
    case "${MIMIC_TORCH:-cpu}" in
        cpu)  index="$torch_cpu_index"; [ "$(uname -s)" = Linux ] || index="" ;;
        cuda) index="$torch_cuda_index" ;;
        *)    say "error: MIMIC_TORCH must be cpu or cuda"; exit 1 ;;
    esac
    index="${MIMIC_TORCH_INDEX-$index}"  # set (empty: pip's own index), it replaces the build's
    say "torch $torch_version (${MIMIC_TORCH:-cpu}${index:+, from $index})"
    "$venv/bin/python" -m pip install -q "torch==$torch_version" ${index:+--index-url "$index"}
}

install_project() {
    say "backend package and test tools"
    "$venv/bin/python" -m pip install -q -e "$root/backend[test]"
    if [ -n "${MIMIC_BPY:-}" ]; then
        say "bpy $MIMIC_BPY (instead of the tests' default)"
        "$venv/bin/python" -m pip install -q "bpy==$MIMIC_BPY.*" 2>&1 | grep -v "dependency conflicts\|requires bpy" >&2 || true
        "$venv/bin/python" -c "import bpy, sys; sys.exit(not bpy.app.version_string.startswith('$MIMIC_BPY'))" \
            || { say "error: bpy $MIMIC_BPY did not install"; exit 1; }
    fi
}

install_apt
make_venv
install_torch
install_project
"$venv/bin/python" -c "import torch, transformers, bpy, mimic; print('[setup] ready: torch', torch.__version__, '| transformers', transformers.__version__, '| blender', bpy.app.version_string)" >&2
