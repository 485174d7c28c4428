#!/usr/bin/env bash
# All GPU verification in one run, on a lent machine (driver installed,
# CUDA 13 libraries from PyTorch's nvidia-* Python packages, no Rust, no
# network). Runs the executables that scripts/gpu-bundle.sh built here and
# the device tool carried (target/gpu-bundle), then writes a results table
# to $OUT/gpu-check.md (the device tool's output folder) or
# target/gpu-check.md, with every log in gpu-check-logs.tar.gz beside it.
#
# What it checks (issue 7 and the NCCL part of issue 8):
#   - the library probes, device opening, `rcaffe device_query --gpu 0`;
#   - NVRTC compiles every kernel family for this GPU;
#   - the CUDA test suite: every operation family against the CPU backend
#     (cuda_device, cuda_conv, cuda_vision, cuda_norm_solver, cuda_shape),
#     the golden layer cases, gradient checks and whole-net checks on the
#     GPU (cuda_layers), NCCL with one rank against the plain GPU run
#     (cuda_nccl), the library's backend::cuda unit tests;
#   - LeNet, 2000 iterations on the GPU, on the Fashion-MNIST subset the
#     bundle carries; its test accuracy against the CPU run of the same
#     solver on the same data (recorded by gpu-bundle.sh);
#   - `rcaffe time --gpu 0` on every net of ../shared/bench at a larger
#     batch (images/s), and PyTorch eager on CaffeNet and ResNet-50 at the
#     same batches (scripts/torch_bench.py), fp32 on both sides.
#
# Exit status: 0 when every check that ran passed.
set -uo pipefail
cd "$(dirname "$0")/.."
BUNDLE="${RCAFFE_BUNDLE:-target/gpu-bundle}"
RESULTS="${OUT:-target}"
# The device tool brings back at most 8 files from $OUT: the logs travel
# as one archive (gpu-check-logs.tar.gz) beside the table.
LOGS="$(mktemp -d)/gpu-check-logs"
mkdir -p "$LOGS" "$RESULTS"
TABLE="$RESULTS/gpu-check.md"
START=$(date +%s)

if [ ! -x "$BUNDLE/rcaffe" ]; then
  echo "gpu-check: $BUNDLE/rcaffe is missing: run scripts/gpu-bundle.sh where Rust is, and carry $BUNDLE" >&2
  exit 2
fi

# CUDA libraries: the driver is the system's; cuBLAS, cuDNN, NCCL and NVRTC
# come from the nvidia-* packages of the machine's PyTorch.
NV_DIRS="$(python3 scripts/nvidia-lib-dirs.py 2>/dev/null || true)"
# NCCL ships as libnccl.so.2, a name cudarc does not open: link libnccl.so.
LINKS="$(mktemp -d)"
IFS=: read -r -a dirs <<<"$NV_DIRS"
for d in "${dirs[@]}"; do
  if [ -e "$d/libnccl.so.2" ] && [ ! -e "$LINKS/libnccl.so" ]; then
    ln -s "$d/libnccl.so.2" "$LINKS/libnccl.so"
  fi
done
export LD_LIBRARY_PATH="$LINKS${NV_DIRS:+:$NV_DIRS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RCAFFE_REQUIRE_CUDA=1 RCAFFE_REQUIRE_NVRTC=1
# The golden cases and bench nets travel in the bundle (../shared does not).
export RCAFFE_SHARED="$BUNDLE/shared"
# The test executables that run the CLI find it here (no build tree there).
RCAFFE_BIN="$(cd "$BUNDLE" && pwd)/rcaffe"
export RCAFFE_BIN

ROWS=()
FAILED=0
# A lease is short (15 minutes of device time, the machine's start
# included): every step has its own limit, and a step that would start
# after the budget (seconds, RCAFFE_CHECK_BUDGET) is skipped, so the table
# and the logs always come back.
BUDGET="${RCAFFE_CHECK_BUDGET:-420}"
left() { echo $((BUDGET - ($(date +%s) - START))); }
# check NAME TIMEOUT COMMAND...: exit 0 is a pass.
check() {
  local name="$1" limit="$2"
  shift 2
  if [ "$(left)" -lt 10 ]; then
    FAILED=1
    ROWS+=("| $name | skipped (time budget) | - | - |")
    echo "[$name] skipped: time budget spent"
    return
  fi
  [ "$limit" -le "$(left)" ] || limit="$(left)"
  local log="$LOGS/$name.log" t0 rc
  t0=$(date +%s)
  timeout "$limit" "$@" >"$log" 2>&1
  rc=$?
  record "$name" "$rc" $(($(date +%s) - t0))
}
# record NAME EXIT SECONDS: one table row from NAME's log; a failure's first
# panics go to stdout too (the device tool returns the output's tail even
# when no file comes back).
record() {
  local name="$1" rc="$2" secs="$3" log="$LOGS/$1.log"
  local summary
  summary="$(grep -E '^test result:' "$log" | tail -1)"
  [ -n "$summary" ] || summary="$(grep -v '^\s*$' "$log" | tail -1 | cut -c1-160)"
  if [ "$rc" -eq 0 ]; then
    ROWS+=("| $name | pass | $secs | ${summary//|/\\|} |")
  else
    FAILED=1
    ROWS+=("| $name | **FAIL** (exit $rc) | $secs | ${summary//|/\\|} |")
    grep -E -A4 "panicked at|^failures:|^    [a-z_:0-9]+$|error" "$log" | cut -c1-300 | head -60
  fi
  echo "[$name] exit $rc in ${secs}s: $summary"
}
# suites NAME:EXE:ARGS...: run test executables at once (the GPU takes
# several processes), each under TIMEOUT, then record each.
suites() {
  local limit="$1"
  shift
  [ "$limit" -le "$(left)" ] || limit="$(left)"
  local pids=() names=() t0
  t0=$(date +%s)
  for spec in "$@"; do
    local name="${spec%%:*}" rest="${spec#*:}"
    # shellcheck disable=SC2086
    timeout "$limit" $rest >"$LOGS/$name.log" 2>&1 &
    pids+=($!)
    names+=("$name")
  done
  local i
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    record "${names[$i]}" $? $(($(date +%s) - t0))
  done
}

nvidia-smi >"$LOGS/nvidia-smi.log" 2>&1 || true
GPU="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"

ldd "$BUNDLE/rcaffe" >"$LOGS/ldd.log" 2>&1 || true
check device_query 60 "$BUNDLE/rcaffe" device_query --gpu 0
check nvrtc_kernels 90 "$BUNDLE/cuda_kernels"
specs=("unit_backend_cuda:$BUNDLE/rcaffe-unit backend::cuda --test-threads 2")
for t in cuda_device cuda_conv cuda_vision cuda_norm_solver cuda_shape cuda_layers cuda_nccl; do
  specs+=("$t:$BUNDLE/$t --test-threads 2")
done
suites 150 "${specs[@]}"

# LeNet on the GPU: the bundle's Fashion-MNIST subset into LMDBs, then the
# example solver for 2000 iterations (test every 500).
WORK="$(mktemp -d)"
LENET_ROW="| LeNet 2000 iterations on the GPU | not run | - | - |"
if "$BUNDLE/rcaffe" convert_mnist_data "$BUNDLE/fmnist/train-images.gz" "$BUNDLE/fmnist/train-labels.gz" \
  "$WORK/train_lmdb" --backend=lmdb >"$LOGS/lenet_convert.log" 2>&1 &&
  "$BUNDLE/rcaffe" convert_mnist_data "$BUNDLE/fmnist/t10k-images.gz" "$BUNDLE/fmnist/t10k-labels.gz" \
    "$WORK/test_lmdb" --backend=lmdb >>"$LOGS/lenet_convert.log" 2>&1; then
  sed -e "s#data/fashion-mnist/train_lmdb#$WORK/train_lmdb#; s#data/fashion-mnist/test_lmdb#$WORK/test_lmdb#" \
    models/lenet/lenet_train_test.prototxt >"$WORK/net.prototxt"
  sed -e "s#models/lenet/lenet_train_test.prototxt#$WORK/net.prototxt#; s#^max_iter:.*#max_iter: 2000#; \
s#^test_interval:.*#test_interval: 500#; s#^snapshot:.*#snapshot: 0#; s#^snapshot_prefix:.*#snapshot_prefix: \"$WORK/lenet\"#" \
    models/lenet/lenet_solver.prototxt >"$WORK/solver.prototxt"
  check lenet_gpu_2000 90 "$BUNDLE/rcaffe" train --solver "$WORK/solver.prototxt" --gpu 0
  ACC="$(grep -E 'Test net output #0: accuracy = ' "$LOGS/lenet_gpu_2000.log" | tail -1 | sed -E 's/.*= //')"
  IT_S="$(python3 - "$LOGS/lenet_gpu_2000.log" <<'PY'
import re, sys, datetime
# iterations/s between the first and last "Iteration N" lines (glog times).
pts = []
for line in open(sys.argv[1]):
    m = re.match(r"I\d{4} (\d\d):(\d\d):(\d\d\.\d+) .*Iteration (\d+)", line)
    if m:
        t = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
        pts.append((t, int(m[4])))
if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
    print(f"{(pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]):.0f}")
else:
    print("?")
PY
)"
  CPU_ACC="$(cat "$BUNDLE/fmnist/cpu_accuracy" 2>/dev/null || echo '?')"
  VERDICT="$(python3 -c "import sys; g,c=sys.argv[1:]; print('pass' if abs(float(g)-float(c))<=0.02 else '**FAIL**')" "${ACC:-nan}" "$CPU_ACC" 2>/dev/null || echo '**FAIL**')"
  [ "$VERDICT" = pass ] || FAILED=1
  LENET_ROW="| LeNet 2000 iterations on the GPU: accuracy vs CPU (±0.02) | $VERDICT | - | GPU ${ACC:-?} vs CPU $CPU_ACC, ${IT_S} it/s |"
else
  FAILED=1
  LENET_ROW="| LeNet 2000 iterations on the GPU | **FAIL** (convert_mnist_data) | - | see lenet_convert.log |"
fi

# rcaffe time --gpu 0 on every bench net at a larger batch.
declare -A BATCH=([lenet]=512 [cifar10_quick]=512 [caffenet]=128 [googlenet]=64 [resnet50]=64 [squeezenet10]=128 [mobilenet_v1]=64)
TIME_ROWS=()
for net in lenet cifar10_quick caffenet googlenet resnet50 squeezenet10 mobilenet_v1; do
  b=${BATCH[$net]}
  # The first dim of every Input shape is the batch.
  python3 - "$RCAFFE_SHARED/bench/$net.prototxt" "$b" >"$WORK/$net.prototxt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
print(re.sub(r"(shape\s*\{\s*dim:\s*)\d+", lambda m: m[1] + sys.argv[2], text), end="")
PY
  check "time_$net" 45 "$BUNDLE/rcaffe" time --model "$WORK/$net.prototxt" --gpu 0 --iterations 10
  # Caffe's figure (a device wait after every layer) and whole passes.
  sync_ms="$(grep -E 'Average Forward-Backward: ' "$LOGS/time_$net.log" | tail -1 | sed -E 's/.*Backward: ([0-9.e+-]+) ms.*/\1/')"
  ms="$(grep -E 'without per-layer synchronisation: ' "$LOGS/time_$net.log" | tail -1 | sed -E 's/.*synchronisation: ([0-9.e+-]+) ms.*/\1/')"
  ips='?'
  [ -n "$ms" ] && ips="$(python3 -c "import sys; print(f'{int(sys.argv[1])/float(sys.argv[2])*1e3:.0f}')" "$b" "$ms" 2>/dev/null || echo '?')"
  TIME_ROWS+=("| $net | $b | ${sync_ms:-?} | ${ms:-?} | $ips |")
  eval "RC_MS_$net=\"${ms:-}\""
done

# cuDNN's heuristics (Caffe's way) against timed search (the default).
HEUR_ROWS=()
for net in caffenet resnet50; do
  check "time_${net}_heuristic" 45 env RCAFFE_CUDNN_SEARCH=heuristic \
    "$BUNDLE/rcaffe" time --model "$WORK/$net.prototxt" --gpu 0 --iterations 10
  hms="$(grep -E 'without per-layer synchronisation: ' "$LOGS/time_${net}_heuristic.log" | tail -1 | sed -E 's/.*synchronisation: ([0-9.e+-]+) ms.*/\1/')"
  rc_ms_var="RC_MS_$net"
  HEUR_ROWS+=("| $net | ${BATCH[$net]} | ${!rc_ms_var:-?} | ${hms:-?} |")
done

# PyTorch eager, same nets and batches, same machine, same run.
check torch_eager 90 python3 scripts/torch_bench.py --net caffenet --batch "${BATCH[caffenet]}" \
  --net resnet50 --batch "${BATCH[resnet50]}" --iters 20
TORCH_ROWS=()
for net in caffenet resnet50; do
  line="$(grep -E "^torch $net " "$LOGS/torch_eager.log" | tail -1)"
  tfb="$(sed -E 's/.*fwd_bwd_ms ([0-9.]+).*/\1/' <<<"$line")"
  tst="$(sed -E 's/.*step_ms ([0-9.]+).*/\1/' <<<"$line")"
  rc_ms_var="RC_MS_$net"
  TORCH_ROWS+=("| $net | ${BATCH[$net]} | ${!rc_ms_var:-?} | ${tfb:-?} | ${tst:-?} |")
done

{
  echo "# GPU check ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "GPU: ${GPU:-unknown (nvidia-smi failed)}"
  echo
  echo "Libraries (rcaffe device_query --gpu 0):"
  echo
  grep -E 'CUDA driver:|cuBLAS:|NVRTC:|cuDNN:|NCCL:' "$LOGS/device_query.log" |
    sed -E 's/^.*\] /    /'
  echo
  echo "| check | result | s | summary |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${ROWS[@]}"
  echo "$LENET_ROW"
  echo
  echo "rcaffe time --gpu 0 (forward + backward, mean of 10 iterations): Caffe's per-layer-synchronised"
  echo "figure, and whole passes queued back to back (one device wait per pass; images/s from it):"
  echo
  echo "| net | batch | ms, per-layer sync | ms, whole passes | images/s |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${TIME_ROWS[@]}"
  echo
  echo "cuDNN algorithm choice (whole passes, ms): timed search (default) vs heuristics:"
  echo
  echo "| net | batch | cudnnFind | heuristics |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${HEUR_ROWS[@]}"
  echo
  echo "Against PyTorch eager (fp32, TF32 off, cudnn.benchmark on), same batch, median of 20:"
  echo
  echo "| net | batch | rcaffe fwd+bwd ms (whole passes) | torch fwd+bwd ms | torch SGD step ms |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${TORCH_ROWS[@]}"
  echo
  echo "Total: $(($(date +%s) - START)) s. Logs: gpu-check-logs.tar.gz."
} >"$TABLE"
cp "$TABLE" "$LOGS/"
tar -czf "$RESULTS/gpu-check-logs.tar.gz" -C "$(dirname "$LOGS")" gpu-check-logs
cat "$TABLE"
rm -rf "$LINKS" "$WORK"
exit "$FAILED"
