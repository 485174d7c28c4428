#!/usr/bin/env bash
# Build real BVLC Caffe (CPU only, OpenBLAS) on this machine, so that
# `scripts/bench-vs-caffe.sh` can time it against rcaffe in the same run
# (issue 4's speed point: "no net slower than real Caffe on the same machine").
#
# Debian has no Caffe package, so the source comes from PyPI's
# `brocolli-caffe` 9.0.2 sdist: BVLC Caffe master 9b89154 with a fork's
# extra layers added (SSD's, and a few others). The layers the bench nets
# use (Convolution, Pooling, LRN, ReLU, InnerProduct, Dropout, Concat,
# BatchNorm, Scale, Eltwise, Split, Softmax[WithLoss]) and math_functions /
# im2col are BVLC's code. OpenBLAS is Debian bookworm's 0.3.21 (pthreads),
# the version of ../shared/bench/README.md's reference figures.
#
# Usage: bash scripts/build-bvlc-caffe.sh [DIR]   (default /tmp/bvlc-caffe;
# needs root for apt-get, ~10 min on 2 cores). Prints the caffe binary's path.
set -euo pipefail
dir=${1:-/tmp/bvlc-caffe}
src=$dir/brocolli-caffe-9.0.2
bin=$src/.temp_release/tools/caffe.bin
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$dir"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq libprotobuf-dev protobuf-compiler libgoogle-glog-dev \
    libgflags-dev libboost-system-dev libboost-thread-dev libboost-filesystem-dev \
    libboost-regex-dev libhdf5-dev libopenblas-dev >/dev/null
if [ ! -d "$src" ]; then
    pip download --no-deps --no-binary :all: -d "$dir" brocolli-caffe==9.0.2 >/dev/null
    tar xzf "$dir/brocolli-caffe-9.0.2.tar.gz" -C "$dir"
fi
# Caffe's own Makefile, release flags (-O2 -DNDEBUG), no OpenCV/LMDB/LevelDB:
# `caffe time` on an Input net needs none of them.
cat >"$src/Makefile.config" <<'CFG'
CPU_ONLY := 1
USE_OPENCV := 0
USE_LEVELDB := 0
USE_LMDB := 0
BLAS := open
BLAS_INCLUDE := /usr/include/x86_64-linux-gnu
BLAS_LIB := /usr/lib/x86_64-linux-gnu
INCLUDE_DIRS := /usr/local/include /usr/include/hdf5/serial
LIBRARY_DIRS := /usr/local/lib /usr/lib /usr/lib/x86_64-linux-gnu/hdf5/serial
BUILD_DIR := build
DISTRIBUTE_DIR := distribute
Q ?= @
CFG
# The sdist ships caffe.pb.h/.cc from an older protoc; generate them with
# Debian's protoc first, so that no parallel compile picks up the stale ones.
rm -f "$src/include/caffe/proto/caffe.pb.h" "$src/src/caffe/proto/caffe.pb.cc"
{ make -C "$src" proto && make -C "$src" -j"$(nproc)" tools; } >"$dir/build.log" 2>&1 || {
    tail -20 "$dir/build.log" >&2
    exit 1
}
echo "$bin"
