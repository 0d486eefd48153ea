#!/usr/bin/env bash
# Every test: the Rust tests, then the Python package built into a throw-away virtual environment
# (pip install ./python[test]: maturin builds the wheel) and its tests. Exits non-zero on any failure,
# and when pytest collects no test at all (its exit 5).
#   PYTHON=python3.12 bash scripts/test-all.sh     # another interpreter (CPython >= 3.9)
#   LAEPCA_SKIP_RUST=1 bash scripts/test-all.sh    # the Python part only
# The Rust tests include the .h5ad reader's (the `h5ad` feature) when HDF5 is installed (pkg-config
# finds hdf5; Debian: libhdf5-dev), or always with LAEPCA_REQUIRE_H5AD=1 (CI), where a missing HDF5
# fails the build instead of leaving the tests out.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ -z "${LAEPCA_SKIP_RUST:-}" ]; then
    features=()
    if [ -n "${LAEPCA_REQUIRE_H5AD:-}" ] || pkg-config --exists hdf5 2>/dev/null; then
        features=(--features h5ad)
    else
        echo "HDF5 not found (pkg-config hdf5): the .h5ad tests are left out" >&2
    fi
    cargo test --release "${features[@]}"
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
