#!/usr/bin/env bash
# Download the wheels the GPU machine's image lacks (bench/gpu_wheels.txt) into .whl/ (git-ignored),
# for CPython 3.12 on x86-64 Linux: the GPU image's Python. The image has torch, numpy, scipy, pandas,
# scikit-learn, numba, matplotlib, tqdm, ...; these are the rest of requirements.txt and their needs.
# Run it in the checkout the session was started in (the device tool sends that one), then carry ".whl".
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -v '^\s*\(#\|$\)' bench/gpu_wheels.txt | xargs python3 -m pip download --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl
du -sh .whl
