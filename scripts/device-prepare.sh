#!/usr/bin/env bash
# Builds what scripts/device-check.sh runs on a lent GPU machine into .devbin/ (untracked; excluded from
# git here), and fetches the Vulkan loader's Debian packages into .gl/ (see the device tool's README).
# Run from the repository root on the build machine; then `run` device-check.sh with carry [".gl", ".devbin"].
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx '/.devbin/' "$exclude" 2>/dev/null || echo /.devbin/ >> "$exclude"
target=${CARGO_TARGET_DIR:-target}
cargo build --release --bin laepca --example gpu_phases --example gram_time --example sparse_fit
cargo bench --bench compare --no-run
cargo test --release --test gpu --no-run
mkdir -p .devbin/lib
cp "$target/release/laepca" "$target/release/examples/gpu_phases" "$target/release/examples/gram_time" \
    "$target/release/examples/sparse_fit" .devbin/
newest() { ls -t "$target"/release/deps/"$1"-* | grep -v '\.d$' | head -1; }
cp "$(newest gpu)" .devbin/gpu_tests
cp "$(newest compare)" .devbin/compare
cp /usr/lib/x86_64-linux-gnu/libvulkan.so.1 .devbin/lib/ 2>/dev/null || true
# The carry limit is 64 MiB in all: the binaries travel stripped and xz-compressed (device-check.sh
# unpacks them), beside the already compressed Fashion-MNIST file.
(cd .devbin && strip laepca gpu_phases gram_time gpu_tests compare sparse_fit && tar cJf bin.tar.xz \
    laepca gpu_phases gram_time gpu_tests compare sparse_fit && rm laepca gpu_phases gram_time gpu_tests compare sparse_fit)
cp /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz .devbin/
if [ ! -d .gl ]; then
    mkdir -p .gl /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    apt-get $o update
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .devbin .gl
total=$(du -cb .devbin .gl | tail -1 | cut -f1)
[ "$total" -lt $((64 << 20)) ] || { echo "carry is $total bytes, over 64 MiB" >&2; exit 1; }
