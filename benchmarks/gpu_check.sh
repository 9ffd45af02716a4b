#!/usr/bin/env bash
# One GPU check in under 8 minutes: environment, CUDA tests, short CIFAR pretraining of H-SSL
# and SimCLR at fp32 and bf16, the throughput benchmark, and a 2-GPU torchrun run when two
# GPUs are visible. Every step has its own timeout and the whole script a deadline, so one
# hang cannot eat the budget; a step that would start too late is skipped and says so.
#
#   bash benchmarks/gpu_check.sh                 # on a GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --dry-run       # the same steps, tiny, on CPU (about 2-3 min)
#
# Environment:
#   OUT                      where the results go (default ./gpu_check_out): gpu_check.log,
#                            summary.txt, throughput.json, pretrain_metrics.jsonl
#   GPU_CHECK_DEVICE=cpu     the same as --dry-run
#   GPU_CHECK_WORK           run folders and synthetic data (default ${TMPDIR:-/tmp}/hssl_gpu_check)
#   GPU_CHECK_BUDGET_S       the whole script's deadline in seconds (default 460)
#   GPU_CHECK_SKIP           steps to leave out, a comma list of pytest, pretrain, throughput,
#                            torchrun (to split the check over two runs)
#   GPU_CHECK_EPOCHS         pretraining epochs per run (default 2; 1 with --dry-run)
#   GPU_CHECK_IMAGES         training images per run (default 5000; 256 with --dry-run)
#   HSSL_CIFAR10_ROOT        a folder holding cifar-10-batches-py: real CIFAR-10 instead of
#                            synthetic CIFAR-shaped data
#   HSSL_PYTHON              the Python to use (default .venv/bin/python, made by `make install`
#                            when missing, or python3 when it already imports torch and escnn)
#   GPU_CHECK_TORCHRUN=1     try the torchrun step even with fewer than two GPUs
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
DEVICE=${GPU_CHECK_DEVICE:-cuda}
for arg in "$@"; do
  case $arg in
    --dry-run) DEVICE=cpu ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $arg (use --dry-run or --help)" >&2; exit 2 ;;
  esac
done
if [ "$DEVICE" = cpu ]; then DRY=1; else DRY=0; fi

OUT_DIR=${OUT:-./gpu_check_out}
WORK=${GPU_CHECK_WORK:-${TMPDIR:-/tmp}/hssl_gpu_check}
BUDGET=${GPU_CHECK_BUDGET_S:-460}
SKIP=",${GPU_CHECK_SKIP:-},"
if [ "$DRY" = 1 ]; then EPOCHS=${GPU_CHECK_EPOCHS:-1}; IMAGES=${GPU_CHECK_IMAGES:-256}
else EPOCHS=${GPU_CHECK_EPOCHS:-2}; IMAGES=${GPU_CHECK_IMAGES:-5000}; fi
mkdir -p "$OUT_DIR" "$WORK" || exit 2
LOG=$OUT_DIR/gpu_check.log
SUMMARY=$OUT_DIR/summary.txt
METRICS=$OUT_DIR/pretrain_metrics.jsonl
: >"$LOG"
: >"$METRICS"
STARTED=$(date +%s)
DEADLINE=$((STARTED + BUDGET))
declare -a RESULTS=()
FAILED=0

say() { echo "$*" | tee -a "$LOG"; }
section() { say ""; say "== $* ($(($(date +%s) - STARTED)) s)"; }

# run_step NAME TIMEOUT_S OK_CODES NOTE_COMMAND -- COMMAND...: runs COMMAND under `timeout`,
# capped by the deadline, appends its output to the log and records PASS/FAIL/TIMEOUT/SKIP.
# OK_CODES is a comma list of exit codes that count as a pass; NOTE_COMMAND (or "") prints
# a one-line note for the summary after the step.
run_step() {
  local name=$1 limit=$2 ok=$3 note_cmd=$4
  shift 5
  local left=$((DEADLINE - $(date +%s) - 10))
  if [[ $SKIP == *",${name%% *},"* ]]; then
    skip_step "$name" "GPU_CHECK_SKIP"
    return
  fi
  section "$name"
  if [ "$left" -lt 20 ]; then
    say "skipped: the ${BUDGET} s budget is spent"
    RESULTS+=("$(printf '%-32s %-8s %6s  %s' "$name" SKIP - "budget spent")")
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "+ $* (timeout ${limit} s)"
  local begin=$SECONDS rc status note=""
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  if [[ ",$ok," == *",$rc,"* ]]; then status=PASS
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=TIMEOUT; FAILED=1
  else status=FAIL; FAILED=1; fi
  if [ -n "$note_cmd" ] && [ "$status" = PASS ]; then note=$(eval "$note_cmd" 2>>"$LOG" | tail -1); fi
  [ "$status" != PASS ] && note="exit $rc${note:+; $note}"
  say "-> $status (exit $rc, $((SECONDS - begin)) s)"
  RESULTS+=("$(printf '%-32s %-8s %5ss  %s' "$name" "$status" "$((SECONDS - begin))" "$note")")
}

skip_step() {
  section "$1"
  say "skipped: $2"
  RESULTS+=("$(printf '%-32s %-8s %6s  %s' "$1" SKIP - "$2")")
}

# ---------------------------------------------------------------- the Python environment
section "environment"
if [ -n "${HSSL_PYTHON:-}" ]; then
  PY=$HSSL_PYTHON
elif [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
elif python3 -c 'import torch, escnn, typer, pydantic' >/dev/null 2>&1; then
  PY=python3 # e.g. a machine image with torch plus carried wheels on PYTHONPATH
else
  say "no .venv: creating it with make install (pip brings torch with CUDA on a GPU machine)"
  if ! timeout 900 make install 2>&1 | tee -a "$LOG"; then
    say "error: make install failed; set HSSL_PYTHON to a Python with hssl's dependencies"
    exit 2
  fi
  PY=.venv/bin/python
fi
say "python: $PY; device: $DEVICE; budget ${BUDGET} s; out: $OUT_DIR; work: $WORK"
if command -v nvidia-smi >/dev/null 2>&1; then
  timeout 30 nvidia-smi 2>&1 | tee -a "$LOG"
else
  say "nvidia-smi: not found"
fi
timeout 120 "$PY" - <<'PY' 2>&1 | tee -a "$LOG"
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, CUDA available {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}, "
          f"bf16 {torch.cuda.is_bf16_supported()}")
try:
    import escnn
    print(f"escnn {getattr(escnn, '__version__', '?')}")
except Exception as err:
    print(f"escnn: not importable ({err})")
PY
GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
if [ "$DRY" = 0 ] && [ "$GPUS" = 0 ]; then
  say "error: torch sees no GPU; run with --dry-run for the CPU rehearsal"
  exit 2
fi

# ---------------------------------------------------------------- tests marked cuda
# Exit 5 is pytest's "no tests collected": no test is marked cuda yet, which is no failure.
if [ "$DRY" = 1 ]; then
  run_step "pytest -m cuda (collect)" 120 0,5 "" -- \
    "$PY" -m pytest -m cuda -q --collect-only -p no:cacheprovider
else
  run_step "pytest -m cuda" 150 0,5 "" -- "$PY" -m pytest -m cuda -q -p no:cacheprovider
fi

# ---------------------------------------------------------------- short pretraining
declare -a DATA=()
if [ -n "${HSSL_CIFAR10_ROOT:-}" ] && [ -d "$HSSL_CIFAR10_ROOT/cifar-10-batches-py" ]; then
  say "data: CIFAR-10 from $HSSL_CIFAR10_ROOT, first $IMAGES training images"
  DATA=(--set "data.root=$HSSL_CIFAR10_ROOT" --set "data.limit_train=$IMAGES")
else
  NPZ=$WORK/synthetic_cifar10_$IMAGES.npz
  say "data: synthetic CIFAR-shaped noise ($IMAGES 32x32x3 images, 10 classes) in $NPZ" \
    "(set HSSL_CIFAR10_ROOT for real CIFAR-10)"
  timeout 120 "$PY" - "$NPZ" "$IMAGES" <<'PY' 2>&1 | tee -a "$LOG"
import sys
import numpy as np
path, count = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
y = rng.integers(0, 10, size=count)
y[:10] = np.arange(10)  # every class present
np.savez(path, x=x, y=y)
print(f"wrote {path}: x {x.shape} {x.dtype}, y {y.shape}")
PY
  DATA=(--set data.name=npz --set "data.path=$NPZ")
fi
declare -a SIZE=(--set "train.epochs=$EPOCHS")
if [ "$DRY" = 1 ]; then # a tiny model: the recipes' CIFAR widths take minutes on a CPU
  SIZE+=(--set "model.widths=[4,8]" --set model.convs_per_stage=1 --set train.batch_size=32
    --set method.projector_hidden_dim=64)
fi

# metrics_note RUN LABEL: each epoch's images/s of a run, also appended to pretrain_metrics.jsonl
# shellcheck disable=SC2317  # called through run_step's eval
metrics_note() {
  "$PY" - "$1" "$2" "$METRICS" <<'PY'
import json, pathlib, sys
run, label, out = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
with open(out, "a") as sink:
    for record in records:
        sink.write(json.dumps({"run": label, **record}) + "\n")
speeds = ", ".join(f"{r['images_per_second']:,.0f}" for r in records)
print(f"images/s by epoch: {speeds}; final loss {records[-1]['loss']:.4f}")
PY
}

for recipe in cifar_rot4 cifar_rot4_simclr; do
  for precision in fp32 bf16; do
    label=${recipe}_$precision
    run=$WORK/runs/$label
    rm -rf "$run"
    run_step "pretrain $label" 120 0 "metrics_note $run $label" -- \
      "$PY" -m hssl_cli pretrain --recipe "recipes/$recipe.yaml" --out "$run" --device "$DEVICE" \
      --quiet "${DATA[@]}" "${SIZE[@]}" --set "train.precision=$precision"
  done
done

# ---------------------------------------------------------------- throughput benchmark
THROUGHPUT=$OUT_DIR/throughput.json
# shellcheck disable=SC2054  # commas are inside option values
if [ "$DRY" = 1 ]; then
  declare -a BENCH=(--device cpu --quick --backbones cnn,resnet18 --methods byol,hssl,simclr)
else
  declare -a BENCH=(--device cuda --steps 5 --warmup 2 --rounds 3 --ratio-steps 3 --cold-timeout 120)
fi
# The report goes to the log; --save keeps the JSON object up to date, so a run cut off by
# its timeout still leaves what it measured (printed from the file below).
run_step "throughput" 260 0 "echo wrote $THROUGHPUT" -- \
  "$PY" benchmarks/throughput.py --save "$THROUGHPUT" "${BENCH[@]}"
if [ -s "$THROUGHPUT" ] && ! grep -q '"complete": true' "$THROUGHPUT"; then
  "$PY" benchmarks/throughput.py --report "$THROUGHPUT" 2>&1 | tee -a "$LOG"
fi

# ---------------------------------------------------------------- two GPUs with torchrun
if [ "${GPUS:-0}" -ge 2 ] || [ "${GPU_CHECK_TORCHRUN:-0}" = 1 ] || [[ $SKIP == *,torchrun,* ]]; then
  run=$WORK/runs/torchrun_cifar_rot4
  rm -rf "$run"
  run_step "torchrun 2 processes" 150 0 "metrics_note $run torchrun_cifar_rot4_bf16" -- \
    "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m hssl_cli pretrain \
    --recipe recipes/cifar_rot4.yaml --out "$run" --device "$DEVICE" --quiet "${DATA[@]}" \
    "${SIZE[@]}" --set train.precision=bf16
else
  skip_step "torchrun 2 processes" "$GPUS GPU(s) visible (GPU_CHECK_TORCHRUN=1 tries anyway)"
fi

# ---------------------------------------------------------------- summary
{
  echo ""
  echo "== summary: $DEVICE, $GPUS GPU(s), $(($(date +%s) - STARTED)) s of ${BUDGET} s"
  printf '%-32s %-8s %6s  %s\n' step status time note
  printf '%s\n' "${RESULTS[@]}"
  echo "outputs in $OUT_DIR:" "$OUT_DIR"/*
} | tee "$SUMMARY" | tee -a "$LOG"
exit "$FAILED"
