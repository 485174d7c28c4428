#!/usr/bin/env bash
# Train LeNet on real Fashion-MNIST with rcaffe, from a fresh machine:
# installs Debian's dataset package if needed, converts the IDX files into
# LMDBs with `rcaffe convert_mnist_data`, then runs `rcaffe train`.
# Run from anywhere; paths are resolved from the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."

SRC=/usr/share/datasets/fashion-mnist
if [ ! -f "$SRC/train-images-idx3-ubyte.gz" ]; then
  echo "Installing Debian's dataset-fashion-mnist package ..."
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q && $SUDO apt-get install -y -q dataset-fashion-mnist
fi

cargo build --release --quiet
RCAFFE=target/release/rcaffe

mkdir -p data/fashion-mnist data/lenet
for split in train:train t10k:test; do
  in=${split%%:*}; out=${split##*:}
  if [ ! -d "data/fashion-mnist/${out}_lmdb" ]; then
    "$RCAFFE" convert_mnist_data "$SRC/${in}-images-idx3-ubyte.gz" \
      "$SRC/${in}-labels-idx1-ubyte.gz" "data/fashion-mnist/${out}_lmdb" --backend=lmdb
  fi
done

exec "$RCAFFE" train --solver=models/lenet/lenet_solver.prototxt "$@"
