#!/usr/bin/env bash
# Runs the full benchmark (benches/compare/) on a machine with a real GPU and writes
#   bench/results/<adapter>.md       the report: tables, notices, the expectations, the machine
#   bench/results/<adapter>/         results.json, the SVG plots and the log
#
# Usage:
#   scripts/gpu-bench.sh                         build with cargo, then run
#   scripts/gpu-bench.sh PATH/TO/compare-HASH    run a prebuilt bench binary (no Rust toolchain needed)
#   scripts/gpu-bench.sh [BINARY] -- OPTIONS     extra options for the benchmark (see `--help`)
#
# A prebuilt binary is target/release/deps/compare-<hash> after `cargo bench --bench compare --no-run`
# (the path is printed as "Executable"). It needs the Vulkan loader (libvulkan.so.1) and the GPU driver on
# the target machine, nothing else.
#
# Environment:
#   LAEPCA_BENCH_RESULTS   where the results go [bench/results in the repository]
#   LAEPCA_BENCH_MAX_M     the largest m of the size sweep [8192; `adapter`: the largest the GPU holds]
#   LAEPCA_FASHION_MNIST   Fashion-MNIST train-images-idx3-ubyte.gz [/usr/share/datasets/fashion-mnist/...]
#   WGPU_ADAPTER_NAME, WGPU_BACKEND   which adapter / backend wgpu uses
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=""
if [[ $# -gt 0 && $1 != -* ]]; then
    bin=$1
    shift
fi
if [[ ${1:-} == -- ]]; then
    shift
fi

if [[ -z $bin ]]; then
    if ! command -v cargo >/dev/null; then
        echo "error: no cargo here: pass a prebuilt bench binary (target/release/deps/compare-<hash>)" >&2
        exit 2
    fi
    echo "building the benchmark ..." >&2
    # cargo also builds the crate's own binary for benches: pick the bench target's executable.
    bin=$(cd "$root" && cargo bench --bench compare --no-run --message-format=json 2>/dev/null |
        grep '"kind":\["bench"\]' | grep '"name":"compare"' |
        grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
fi
if [[ ! -x $bin ]]; then
    echo "error: '$bin' is not an executable bench binary" >&2
    exit 2
fi

if command -v ldconfig >/dev/null && ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
    echo "warning: no libvulkan.so.1 in the linker cache: wgpu may find no Vulkan adapter" >&2
fi

if ! slug=$("$bin" --print-adapter); then
    echo "error: the benchmark finds no usable GPU adapter (see above)" >&2
    exit 1
fi
results=${LAEPCA_BENCH_RESULTS:-$root/bench/results}
work=$results/$slug
report=$results/$slug.md
mkdir -p "$work"
echo "adapter: $slug; results in $report and $work/" >&2

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
set +e
"$bin" --out "$work" --markdown "$report" --max-m "${LAEPCA_BENCH_MAX_M:-8192}" "$@" 2>&1 | tee "$work/log.txt"
status=${PIPESTATUS[0]}
set -e

{
    echo
    echo "## Machine"
    echo
    echo "- run: $started, \`$(basename "$bin") --max-m ${LAEPCA_BENCH_MAX_M:-8192} $*\`, exit status $status"
    if command -v lscpu >/dev/null; then
        echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) threads"
    fi
    if command -v nvidia-smi >/dev/null; then
        echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | head -1)"
    fi
    echo "- OS: $(uname -srm)"
    if [[ -d $root/.git ]] && command -v git >/dev/null; then
        echo "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with local changes)')"
    fi
} >>"$report"
exit "$status"
