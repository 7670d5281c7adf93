#!/usr/bin/env bash
# Prepares wheels for a bare GPU image: one that already has torch, numpy, scipy, pandas, scikit-learn,
# numba, matplotlib, tqdm, ... but cannot reach a package index (the GPU check's machine, see
# bench/gpu_check.py). Downloads the rest of requirements.txt and their needs (bench/gpu_wheels.txt)
# as x86-64 Linux wheels for the image's CPython into .whl/ (git-ignored), to carry there; gpu_check.sh
# installs them. Not a way to set up your own machine: `make venv` (README) installs everything.
#
#   bash bench/fetch_gpu_wheels.sh [PYTHON_VERSION]    # X.Y of the GPU image's python3; default 3.12
#
# Run it where pip reaches PyPI, in the checkout that is sent to the GPU machine.
set -euo pipefail
case "${1:-}" in
    -h|--help) sed -n '2,10s/^# \{0,1\}//p' "$0"; exit 0 ;;
esac
version="${1:-3.12}"
if [[ ! "$version" =~ ^3\.[0-9]+$ ]]; then
    echo "fetch_gpu_wheels.sh: error: the target Python version must be X.Y (e.g. 3.11), not '$version'" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -v '^\s*\(#\|$\)' bench/gpu_wheels.txt | xargs python3 -m pip download --no-deps --only-binary=:all: \
    --python-version "$version" --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl
du -sh .whl
