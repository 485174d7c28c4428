#!/usr/bin/env bash
# Build, here, what scripts/gpu-check.sh runs on a lent GPU machine (which
# has no Rust toolchain, no network and no ../shared) into
# target/gpu-bundle/, stripped (the device tool carries at most 64 MiB):
#   rcaffe            the release binary
#   cuda_*            the CUDA test executables (tests/cuda_*.rs)
#   rcaffe-unit       the library's unit tests (gpu-check runs backend::cuda)
#   shared/           ../shared's golden layer cases and bench nets
#   fmnist/           a Fashion-MNIST subset (the first 20 000 training
#                     images, the 10 000 test images) and `cpu_accuracy`, the
#                     test accuracy of the 2000-iteration LeNet run on the
#                     CPU with that data (the GPU run is compared with it)
# Then: the device tool's run with carry ["target/gpu-bundle"] and the
# command `bash scripts/gpu-check.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR=target/gpu-bundle
SHARED=../shared
FMNIST=/usr/share/datasets/fashion-mnist
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR/shared/golden" "$OUTDIR/fmnist"

cargo build --release --bin rcaffe
cp target/release/rcaffe "$OUTDIR/rcaffe"

TESTS=(cuda_device cuda_kernels cuda_conv cuda_vision cuda_norm_solver cuda_shape cuda_layers cuda_nccl)
args=()
for t in "${TESTS[@]}"; do args+=(--test "$t"); done
# The test executables' paths come from cargo's JSON messages.
cargo test --release --no-run --message-format=json --lib "${args[@]}" \
  2>/dev/null | python3 -c '
import json, shutil, sys
out = sys.argv[1]
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable")
    # Test harnesses only (the bin artifact is the one built above).
    if m.get("reason") != "compiler-artifact" or not exe or not m["profile"]["test"]:
        continue
    t = m["target"]
    name = "rcaffe-unit" if "lib" in t["kind"] else t["name"]
    shutil.copy(exe, f"{out}/{name}")
    print(f"bundled {name} <- {exe}")
' "$OUTDIR"
for t in "${TESTS[@]}"; do
  [ -x "$OUTDIR/$t" ] || { echo "gpu-bundle: $t was not built" >&2; exit 1; }
done
for f in "$OUTDIR"/rcaffe "$OUTDIR"/rcaffe-unit "$OUTDIR"/cuda_*; do
  strip "$f"
done

cp -r "$SHARED/bench" "$OUTDIR/shared/bench"
cp -r "$SHARED/golden/layers" "$SHARED/golden/README.md" "$OUTDIR/shared/golden/"

# Fashion-MNIST subset: IDX headers rewritten for the first N records.
python3 - "$FMNIST" "$OUTDIR/fmnist" <<'PY'
import gzip, struct, sys
src, out = sys.argv[1:]
def subset(name, n, dst):
    raw = gzip.open(f"{src}/{name}").read()
    magic, count = struct.unpack(">II", raw[:8])
    dims = (magic & 0xFF) - 1
    header = 8 + 4 * dims
    per = 1
    for d in range(dims):
        per *= struct.unpack(">I", raw[8 + 4 * d: 12 + 4 * d])[0]
    n = min(n, count)
    body = raw[8:header] + raw[header: header + n * per]
    with gzip.open(f"{out}/{dst}", "wb", compresslevel=9) as f:
        f.write(struct.pack(">II", magic, n) + body)
subset("train-images-idx3-ubyte.gz", 20000, "train-images.gz")
subset("train-labels-idx1-ubyte.gz", 20000, "train-labels.gz")
subset("t10k-images-idx3-ubyte.gz", 10000, "t10k-images.gz")
subset("t10k-labels-idx1-ubyte.gz", 10000, "t10k-labels.gz")
PY

# The CPU reference for the GPU LeNet run: the same solver edits as
# gpu-check.sh, on this machine's CPU.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
B="$OUTDIR/rcaffe"
"$B" convert_mnist_data "$OUTDIR/fmnist/train-images.gz" "$OUTDIR/fmnist/train-labels.gz" "$WORK/train_lmdb" --backend=lmdb
"$B" convert_mnist_data "$OUTDIR/fmnist/t10k-images.gz" "$OUTDIR/fmnist/t10k-labels.gz" "$WORK/test_lmdb" --backend=lmdb
sed -e "s#data/fashion-mnist/train_lmdb#$WORK/train_lmdb#; s#data/fashion-mnist/test_lmdb#$WORK/test_lmdb#" \
  models/lenet/lenet_train_test.prototxt >"$WORK/net.prototxt"
sed -e "s#models/lenet/lenet_train_test.prototxt#$WORK/net.prototxt#; s#^max_iter:.*#max_iter: 2000#; \
s#^test_interval:.*#test_interval: 500#; s#^snapshot:.*#snapshot: 0#; s#^snapshot_prefix:.*#snapshot_prefix: \"$WORK/lenet\"#" \
  models/lenet/lenet_solver.prototxt >"$WORK/solver.prototxt"
"$B" train --solver "$WORK/solver.prototxt" 2>&1 | tee "$WORK/cpu.log" | grep -E 'Test net output #0' || true
grep -E 'Test net output #0: accuracy = ' "$WORK/cpu.log" | tail -1 | sed -E 's/.*= //' >"$OUTDIR/fmnist/cpu_accuracy"
echo "CPU accuracy after 2000 iterations: $(cat "$OUTDIR/fmnist/cpu_accuracy")"

ls -la "$OUTDIR"
du -sh "$OUTDIR"
