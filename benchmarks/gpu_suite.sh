#!/usr/bin/env bash
# One prepared run for a lent GPU machine: everything sglab does on CUDA, in one go.
#
#   bash benchmarks/gpu_suite.sh                     # on the GPU machine: writes docs/results/gpu/
#   SMOKE=1 DEVICE=cpu bash benchmarks/gpu_suite.sh  # a minute-long rehearsal of every step, on CPU
#
# On this project's lent GPU machines, prepare first with benchmarks/gpu_prepare.sh (it prints the
# one command to run there).
#
# GPU time is scarce (a session gets 15 minutes, start included), so the suite aims to end
# within 8 minutes on one GPU and leave time to run it once more (not yet timed on a GPU: its
# budgets are estimates; the CPU rehearsal took 445 s on the 2-core VM). Each step writes under
# $OUT (default docs/results/gpu, or $OUT_DIR) and a failing step does not stop the others;
# steps.tsv says which step took how long and how it ended. Commit what it writes, with the
# device named (device.txt holds nvidia-smi's and torch's words for it).
#
# MNIST for the training rows: $DATA_DIR (mnist.npz or the IDX files); without it, the suite
# uses the embedded digits and says so in steps.tsv.
set -uo pipefail

DEVICE=${DEVICE:-cuda}
SMOKE=${SMOKE:-0}
PY=${PYTHON:-python}
OUT=${OUT_DIR:-docs/results/gpu}
DATA_DIR=${DATA_DIR:-}
mkdir -p "$OUT"
: > "$OUT/steps.tsv"

if [ "$SMOKE" = 1 ]; then
  STEPS=20; ROUNDS=2; TABLE_STEPS=5; PROFILE_REPEATS=3
else
  STEPS=400; ROUNDS=15; TABLE_STEPS=3000; PROFILE_REPEATS=30
fi
if [ -n "$DATA_DIR" ]; then DATA=(--dataset "${DATASET:-mnist}" --data-dir "$DATA_DIR"); DATA_NOTE="${DATASET:-mnist} from $DATA_DIR"
else DATA=(--dataset embedded); DATA_NOTE="embedded digits (no DATA_DIR)"; fi

step() {  # step NAME COMMAND...: run it, log its wall time and exit status
  local name=$1; shift
  local start=$SECONDS
  echo "== $name: $*"
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  printf '%s\t%ss\trc=%s\t%s\n' "$name" $((SECONDS - start)) "$rc" "$*" >> "$OUT/steps.tsv"
  tail -3 "$OUT/$name.log"
}

{ nvidia-smi 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda);
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"
} > "$OUT/device.txt" 2>&1
printf 'data\t-\t-\t%s\n' "$DATA_NOTE" >> "$OUT/steps.tsv"

# 1. the CUDA tests (skipped without a device), from the files that have them: the GPU machine's
#    image lacks the notebook packages other test files import
mapfile -t CUDA_TESTS < <(grep -rl 'pytest.mark.cuda' tests)
step tests "$PY" -m pytest -q -m cuda "${CUDA_TESTS[@]}"
# 2. CUDA-event profiles of FCN and CNN DNI runs, with peak memory (micro-benchmark and in-run)
step profile-fcn3 "$PY" -m sglab profile --model fcn --layers 3 --method dni --device "$DEVICE" \
  --repeats "$PROFILE_REPEATS" --out "$OUT/profile-fcn3-dni.json" --no-progress
step profile-cnn3 "$PY" -m sglab profile --model cnn --layers 3 --method dni --device "$DEVICE" \
  --repeats "$PROFILE_REPEATS" --out "$OUT/profile-cnn3-dni.json" --no-progress
step profile-inrun "$PY" -m sglab profile --mode inrun --model fcn --layers 3 --method dni --device "$DEVICE" \
  --steps "$STEPS" --out "$OUT/profile-fcn3-dni-inrun.json" --trace "$OUT/fcn3-dni.trace.json" --no-progress
step profiler "$PY" benchmarks/profiler.py --device "$DEVICE" --steps "$STEPS" --profiles 3 \
  --repeats "$PROFILE_REPEATS" --out "$OUT/profiler"
# 3. sglab's step against hand-written loops and the arithmetic, on the device
step step-time "$PY" benchmarks/step_time.py --device "$DEVICE" --rounds "$ROUNDS" --out "$OUT/step_time"
# 4. the CNN-3 and CNN-4 rows of Table 1 (No Bprop, Bprop, DNI, cDNI) at the budget that fits
step table1-cnn "$PY" benchmarks/paper_table.py "${DATA[@]}" --layers --cnn --cnn-layers 3 4 \
  --cnn-steps "$TABLE_STEPS" --device "$DEVICE" --workers 1 --out "$OUT/table1"
# 5. the measured GPU profile on hypothetical machines: copies of this GPU on InfiniBand, and an
#    8-GPU A100 node, scaled by REFERENCE_FLOPS (the profiled GPU's FP32 FLOP/s; default: the
#    H200 SXM's 67 TFLOP/s FP32 from NVIDIA's H200 datasheet)
step simulate-ib "$PY" -m sglab simulate --profile "$OUT/profile-cnn3-dni.json" --hardware cluster-ib-hdr \
  --method bprop,dni,1f1b,zb-h1 --out "$OUT/simulate-cnn3-ib-hdr"
step simulate-dgx "$PY" -m sglab simulate --profile "$OUT/profile-cnn3-dni.json" --hardware dgx-a100 \
  --reference-flops "${REFERENCE_FLOPS:-67e12}" --method bprop,dni,1f1b,zb-h1 --out "$OUT/simulate-cnn3-dgx-a100"

# 6. last, since compiling takes a while: the step time with torch.compile, and with CUDA graphs
#    (reduce-overhead), sglab's modules and the plain loop's alike
step step-time-compiled "$PY" benchmarks/step_time.py --device "$DEVICE" --rounds "$ROUNDS" \
  --compile default reduce-overhead --out "$OUT/step_time_compiled"

echo "== done: $OUT/steps.tsv"
cat "$OUT/steps.tsv"
