#!/usr/bin/env bash
# Time real BVLC Caffe and rcaffe on the bench nets in the same run, the two
# alternating net by net so both see the same load: "Average
# Forward-Backward" of `time` (Caffe's and rcaffe's, same iterations) and
# peak RSS from /usr/bin/time -v. One line per net and round.
#
# Usage: bash scripts/bench-vs-caffe.sh [ROUNDS] [net:iterations ...]
# Env: CAFFE (default: what scripts/build-bvlc-caffe.sh builds),
#      RCAFFE (default target/release/rcaffe), BENCH (default ../shared/bench).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
caffe=${CAFFE:-/tmp/bvlc-caffe/brocolli-caffe-9.0.2/.temp_release/tools/caffe.bin}
rcaffe=${RCAFFE:-$here/target/release/rcaffe}
bench=${BENCH:-$here/../shared/bench}
for b in "$caffe" "$rcaffe"; do
    if [ ! -x "$b" ]; then
        echo "bench-vs-caffe: $b not found: run scripts/build-bvlc-caffe.sh and cargo build --release first" >&2
        exit 1
    fi
done
rounds=${1:-3}
shift || true
nets=("$@")
if [ ${#nets[@]} -eq 0 ]; then
    nets=(lenet:50 cifar10_quick:20 caffenet:4 squeezenet10:4 resnet50:3 googlenet:4 mobilenet_v1:4)
fi
export GLOG_logtostderr=1
# "ms rss_kb" of one run of `$@ time ...`.
measure() {
    { /usr/bin/time -v "$@" 2>&1; } |
        sed -nE 's/.*Average Forward-Backward: ([0-9.]+) ms.*/\1/p; s/.*Maximum resident set size \(kbytes\): ([0-9]+)/\1/p' |
        tr '\n' ' '
    echo
}
printf '%-6s %-14s %-10s %-10s %-10s %-10s %s\n' round net caffe_ms caffe_kb rcaffe_ms rcaffe_kb load
for r in $(seq "$rounds"); do
    for spec in "${nets[@]}"; do
        net=${spec%%:*} it=${spec##*:}
        model=$bench/$net.prototxt
        read -r cm ck < <(measure "$caffe" time -model "$model" -iterations "$it")
        read -r rm rk < <(measure "$rcaffe" time --model "$model" --iterations "$it")
        printf '%-6s %-14s %-10s %-10s %-10s %-10s %s\n' "$r" "$net" "$cm" "$ck" "$rm" "$rk" "$(cut -d' ' -f1 /proc/loadavg)"
    done
done
