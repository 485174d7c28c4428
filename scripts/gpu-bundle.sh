#!/usr/bin/env bash
# Build, here, what scripts/gpu-check.sh runs on a lent GPU machine (which
# has no Rust toolchain and no network) into target/gpu-bundle/, stripped
# (a few MiB; the device tool carries at most 64 MiB):
#   rcaffe        the binary (dev profile; RCAFFE_BUNDLE_PROFILE=release for timings)
#   cuda_device   tests/cuda_device.rs  (CUDA backend vs CPU backend)
#   cuda_kernels  tests/cuda_kernels.rs (NVRTC compiles every kernel)
#   rcaffe-unit   the library's unit tests (gpu-check runs the backend::cuda ones)
# Then: the device tool's run with carry ["target/gpu-bundle"] and the
# command `bash scripts/gpu-check.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR=target/gpu-bundle
PROFILE="${RCAFFE_BUNDLE_PROFILE:-dev}"
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"

cargo build --profile "$PROFILE" --bin rcaffe
if [ "$PROFILE" = dev ]; then dir=debug; else dir="$PROFILE"; fi
cp "target/$dir/rcaffe" "$OUTDIR/rcaffe"

# The test executables' paths come from cargo's JSON messages.
cargo test --no-run --message-format=json --lib --test cuda_device --test cuda_kernels \
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

for f in "$OUTDIR"/*; do
  strip "$f"
done
ls -la "$OUTDIR"
du -sh "$OUTDIR"
