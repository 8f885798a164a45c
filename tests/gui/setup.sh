#!/usr/bin/env bash
# The windowed Blender of tests/gui: ../shared/tools/gui-blender's chroot (Debian 13's Blender 4.3),
# plus numpy, which Blender's own builds ship and the add-on needs but Debian's blender does not
# pull in. Idempotent and quick once done; needs root and the tool, else says why and does nothing
# (the gui tests then skip, saying the same).
#
#   tests/gui/setup.sh          (GUI_BLENDER: the tool, default ../shared/tools/gui-blender)
set -euo pipefail
cd "$(dirname "$0")/../.."
tool=${GUI_BLENDER:-../shared/tools/gui-blender}
[ "$(id -u)" = 0 ] || { echo "gui setup: skipped (needs root)" >&2; exit 0; }
[ -x "$tool" ] || { echo "gui setup: skipped (no $tool)" >&2; exit 0; }
"$tool" --setup >&2
root=${GUI_BLENDER_ROOT:-/var/cache/mimic-gui-blender}/trixie
chroot "$root" python3 -c "import numpy" 2>/dev/null && exit 0
echo "gui setup: numpy for the window Blender" >&2
unshare --mount --propagation private sh -c "mount --bind /proc '$root/proc' && mount --bind /dev '$root/dev' &&
  chroot '$root' sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-numpy \
  > /var/log/mimic-numpy-apt.log 2>&1'" || { tail -5 "$root/var/log/mimic-numpy-apt.log"; exit 1; }
