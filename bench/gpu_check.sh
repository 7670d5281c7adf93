#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py; its docstring says what it runs and how to prepare a session):
#   bash bench/gpu_check.sh --out "$OUT"    # a CUDA machine
#   bash bench/gpu_check.sh --dry-run       # anywhere, tiny sizes on the CPU
# Python: $PYTHON if set, else the repo's .venv when there is one, else python3 (the GPU image's).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" bench/gpu_check.py "$@"
