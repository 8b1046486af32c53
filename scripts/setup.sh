#!/usr/bin/env bash
# Create .venv and install sglab with its test and notebook extras: what `make demo` and
# `make test` run first. Idempotent; safe to rerun.
#
# torch is installed before sglab so that its version is chosen here, not by the resolver:
# SGLAB_TORCH (default "torch==2.13.0") is passed to pip as is. On a CUDA machine set it to
# the build you want, e.g. SGLAB_TORCH="torch --index-url https://download.pytorch.org/whl/cu124".
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  .venv/bin/pip install --quiet ${SGLAB_TORCH:-torch==2.13.0}
fi
.venv/bin/pip install --quiet -e ".[dev]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
touch .venv/.installed
