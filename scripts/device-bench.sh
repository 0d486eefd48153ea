#!/usr/bin/env bash
# A second, shorter device run: phase timings and the benchmark's main problems on the lent GPU.
# Same set-up as device-check.sh (prebuilt binaries in .devbin/, loader packages in .gl/).
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json 2>/dev/null | head -1)
if [ -n "$icd" ]; then
    sed 's/libGLX_nvidia\.so\.0/libEGL_nvidia.so.0/' "$icd" > /tmp/nvidia_egl_icd.json
    export VK_DRIVER_FILES=/tmp/nvidia_egl_icd.json VK_ICD_FILENAMES=/tmp/nvidia_egl_icd.json
fi
fm=.devbin/train-images-idx3-ubyte.gz
{
    echo "== mid-size: n=20000 m=512 k=16"; timeout 40 .devbin/gpu_phases 20000 512 16
    echo "== large: n=100000 m=4096 k=32"; timeout 70 .devbin/gpu_phases 100000 4096 32
    echo "== benchmark"
    timeout 170 .devbin/compare --out /tmp/bench --fashion "$fm" --runs 1 --budget 8 \
        --only paper,fashion,m=1024,m=4096 --markdown "$OUT/bench-report.md"
} 2>&1 | grep -v XDG_RUNTIME_DIR > "$OUT/device-bench-log.txt"
tar czf "$OUT/bench.tar.gz" -C /tmp bench 2>/dev/null
tail -c 6000 "$OUT/device-bench-log.txt"
