#!/usr/bin/env bash
# Every test: the Rust tests, then the Python package built into a throw-away virtual environment
# (pip install ./python[test]: maturin builds the wheel) and its tests. Exits non-zero on any failure,
# and when pytest collects no test at all (its exit 5).
#   PYTHON=python3.12 bash scripts/test-all.sh     # another interpreter (CPython >= 3.9)
#   LAEPCA_SKIP_RUST=1 bash scripts/test-all.sh    # the Python part only
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ -z "${LAEPCA_SKIP_RUST:-}" ]; then
    cargo test --release
fi

python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
# maturin builds the binding into the same target directory as cargo, so the library's dependencies
# are not compiled twice.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$root/python[test]"

# From an empty directory, so that `import laepca` is the installed package, not python/laepca/.
cd "$work"
status=0
"$work/venv/bin/python" -m pytest -p no:cacheprovider -q -rs "$root/python/tests" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no test: failing" >&2
    exit 1
fi
exit "$status"
