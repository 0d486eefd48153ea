#!/usr/bin/env bash
# One run on a lent GPU machine (the device tool; see its README): prebuilt binaries in .devbin/
# (bin.tar.xz: laepca, gpu_tests, gpu_phases, gram_time, compare, sparse_fit; lib/libvulkan.so.1, Fashion-MNIST; made by
# scripts/device-prepare.sh), the Vulkan loader's Debian packages in .gl/. Writes device-log.txt and
# bench.tar.gz under $OUT. Issue 9's figures: the Gram phase (gram_time, gpu_phases), loop µs per
# iteration with dispatches and submissions per iteration (gpu_phases, per solver), the per-fit fixed
# cost with an open device (the benchmark opens one device for all GPU rows), Fashion-MNIST GPU vs CPU.
set -u
start=$SECONDS
budget=${1:-540}
left() { echo $(( budget - (SECONDS - start) )); }
tar xJf .devbin/bin.tar.xz -C .devbin
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
ldconfig -p | grep -q 'libvulkan\.so\.1' || export LD_LIBRARY_PATH=$PWD/.devbin/lib
# NVIDIA's Vulkan manifest names libGLX_nvidia.so.0, which fails vkCreateInstance without a display:
# point the loader at the same driver through libEGL_nvidia.so.0.
icd=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json 2>/dev/null | head -1)
if [ -n "$icd" ]; then
    sed 's/libGLX_nvidia\.so\.0/libEGL_nvidia.so.0/' "$icd" > /tmp/nvidia_egl_icd.json
    export VK_DRIVER_FILES=/tmp/nvidia_egl_icd.json VK_ICD_FILENAMES=/tmp/nvidia_egl_icd.json
fi
export LAEPCA_REQUIRE_GPU=1
fm=.devbin/train-images-idx3-ubyte.gz
log=$OUT/device-log.txt
step() { # NAME SECONDS COMMAND...
    local name=$1 secs=$2; shift 2
    local l; l=$(left)
    if [ "$l" -lt 20 ]; then echo "== $name: skipped (time)"; return; fi
    [ "$secs" -gt "$l" ] && secs=$l
    echo "== $name (limit ${secs}s, at $((SECONDS - start))s)"
    timeout "$secs" "$@" 2>&1 | grep -v XDG_RUNTIME_DIR
}
{
    echo "== $(date -u) on $(hostname)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
    echo "icd: $icd; LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"; ldconfig -p | grep -E "libvulkan|EGL_nvidia"
    step "laepca devices" 30 .devbin/laepca devices
    step "laepca demo" 60 .devbin/laepca demo
    step "GPU tests" 150 .devbin/gpu_tests --test-threads 1
    step "Gram phase alone: n=100000 m=4096 (two runs)" 60 .devbin/gram_time 100000 4096
    step "Gram phase, host side only (kernels skipped): n=100000 m=4096" 40 .devbin/gram_time 100000 4096 8192 host
    step "Gram phase at Fashion-MNIST's shape: n=60000 m=784 (split-K)" 30 .devbin/gram_time 60000 784
    step "mid-size problem (issue 3): n=20000 m=512 k=16" 60 .devbin/gpu_phases 20000 512 16
    step "loop at m=4096 k=16, auto" 60 .devbin/gpu_phases 20000 4096 16 auto
    step "loop at m=4096 k=16, exact-tied" 60 .devbin/gpu_phases 20000 4096 16 exact-tied
    step "loop kernels by GPU time at m=4096 k=16, auto" 60 .devbin/gpu_phases 20000 4096 16 auto profile
    step "laepca fit Fashion-MNIST on the GPU" 60 .devbin/laepca fit "$fm" -k 16 --backend gpu --json -o /tmp/fm
    step "laepca fit Fashion-MNIST on the CPU" 60 .devbin/laepca fit "$fm" -k 16 --backend cpu --json -o /tmp/fm-cpu
    step "large problem: n=100000 m=4096 k=32" 150 .devbin/gpu_phases 100000 4096 32
    step "operator route (issue 14): sparse 200000 x 20000, 0.5%, k=50, GPU" 90 .devbin/sparse_fit 200000 20000 0.005 50 --gpu
    step "benchmark" 260 .devbin/compare --out /tmp/bench --fashion "$fm" --runs 2 --budget 15 \
        --markdown "$OUT/bench-report.md"
    echo "== done at $((SECONDS - start))s"
} > "$log" 2>&1
tar czf "$OUT/bench.tar.gz" -C /tmp bench 2>/dev/null
cat "$log"
