#!/usr/bin/env bash
# Installs everything armvcpu needs, and only what is missing, so it is safe
# to run any number of times: the Debian packages (QEMU, gdb-multiarch, the
# aarch64 cross compilers, GoogleTest, dtc), a virtualenv in .venv, and armvcpu
# itself built into it with its test and lint tools.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  qemu-system-arm gdb-multiarch gcc-aarch64-linux-gnu g++-aarch64-linux-gnu
  binutils-aarch64-linux-gnu g++ make libgtest-dev clang lld libclang-rt-14-dev
  device-tree-compiler ipxe-qemu
)
VENV=${ARMVCPU_VENV:-.venv}
PYTHON=${PYTHON:-python3}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "bootstrap: need root to run: $*" >&2; exit 1
  fi
}

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "bootstrap: missing ${missing[*]} and no apt-get here; install them by hand" >&2
    exit 1
  fi
  say "Installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Linux guest tests boot Debian's own arm64 kernel, fetched as a Debian
# package (apt-get download, no root needed) once apt knows arm64 packages.
if command -v apt-get >/dev/null && ! apt-cache show linux-image-arm64:arm64 >/dev/null 2>&1; then
  say "Adding the arm64 architecture to apt (for Debian's arm64 kernel and busybox)"
  as_root dpkg --add-architecture arm64
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "Creating the virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
say "Installing build tools into $VENV"
pip install --upgrade pip
pip install "scikit-build-core>=0.10" "pybind11>=2.12" ninja "cmake>=3.20"
say "Building and installing armvcpu (C++ module + EL2 firmware) into $VENV"
pip install --no-build-isolation ".[test,lint]"
say "Ready: $("$VENV/bin/armvcpu" --version), firmware at $("$VENV/bin/armvcpu" firmware)"
