#!/bin/sh
# A Debian Linux boot, whole process, on bare qemu-system-aarch64 and under
# `armvcpu run`, alternately (A B A B ...): medians of wall and CPU time, their
# ratios, and every run behind them. Measured, never asserted.
#
#   bench/boot.sh [CPU [SMP [PAIRS]]]     e.g. bench/boot.sh max 2 5
#
# Defaults: -cpu cortex-a57 -smp 1, 5 pairs. The kernel is Debian's arm64 one
# and the initramfs prints ARMVCPU-MARKER and powers off (armvcpu.guests.debian
# fetches and caches both; see docs/linux.md).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
cpu=${1:-cortex-a57}
smp=${2:-1}
pairs=${3:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kernel=$("$py" - "$work/initrd.gz" <<'PY'
import sys
from armvcpu.guests.debian import build_initramfs, fetch_linux_assets
assets = fetch_linux_assets()
open(sys.argv[1], "wb").write(build_initramfs(assets.busybox))
print(assets.kernel)
PY
)
exec "$py" -m armvcpu bench boot --pairs "$pairs" --marker ARMVCPU-MARKER -- \
    -M virt,gic-version=3 -cpu "$cpu" -m 512M -smp "$smp" -nographic \
    -kernel "$kernel" -initrd "$work/initrd.gz" -append console=ttyAMA0
