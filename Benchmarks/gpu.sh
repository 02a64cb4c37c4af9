#!/usr/bin/env bash
# GPU benchmark suite: SGEMM against cuBLAS, fused against naive attention, and GPT training throughput,
# each an `attncore bench ... --json` call on one device. Writes one JSON line per case and prints a table.
#
# Usage (repository root, on a machine with an NVIDIA GPU and its driver; runs in under 10 minutes):
#   Benchmarks/gpu.sh                      # CUDA device 0, full sizes
#   GPU_SH_DEVICE=cuda:1 Benchmarks/gpu.sh # another GPU
#   GPU_SH_DEVICE=ilgpu-cpu SMALL=1 Benchmarks/gpu.sh   # dry run of the script's logic without a GPU
# Environment: GPU_SH_DEVICE (default cuda), SMALL=1 (tiny sizes, 0.1 s per case), SECONDS_PER_CASE
# (default 2), OUT (the JSON-lines file, default Benchmarks/results/gpu-<UTC time>.jsonl), ATTNCORE (a
# command that runs the CLI, e.g. a self-contained `attncore` published elsewhere for a GPU machine without the
# .NET SDK; when set, nothing is built).
# cuBLAS is only compared on CUDA devices (`--vs cublas`); other devices run AttnCore's side alone.
# Exit status: 2 when the device is missing, 1 when any case failed (the table marks it), 0 otherwise.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEVICE="${GPU_SH_DEVICE:-cuda}"
SMALL="${SMALL:-0}"
SECS="${SECONDS_PER_CASE:-2}"
[ "$SMALL" = "1" ] && SECS="${SECONDS_PER_CASE:-0.1}"
OUT="${OUT:-$ROOT/Benchmarks/results/gpu-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
if [ -n "${ATTNCORE:-}" ]; then
  read -r -a CLI <<< "$ATTNCORE"
else
  CLI=(dotnet "$ROOT/Cli/bin/Release/net10.0/attncore.dll")
  echo "gpu.sh: building AttnCore (Release)" >&2
  if ! dotnet build "$ROOT/Cli" -c Release -v quiet -nologo > /dev/null; then
    echo "gpu.sh: the build failed; run 'dotnet build -c Release' to see why" >&2
    exit 1
  fi
fi

# The device must exist before anything is timed: a tiny product on it either runs or says what was found.
if ! probe=$("${CLI[@]}" bench gemm --device "$DEVICE" --n 16 --seconds 0.05 2>&1); then
  echo "gpu.sh: no usable '$DEVICE' device: $(echo "$probe" | tail -n 1)" >&2
  case "$DEVICE" in cuda*) echo "gpu.sh: this suite needs an NVIDIA GPU with its driver (and libcublas for the SGEMM comparison); 'attncore devices' lists what ILGPU finds" >&2 ;; esac
  exit 2
fi

VS=()
case "$DEVICE" in cuda*) VS=(--vs cublas) ;; esac

if [ "$SMALL" = "1" ]; then
  GEMM_SIZES=(32 48)
  ATTN=("--b 1 --h 2 --l 32 --d 16" "--b 1 --h 2 --l 64 --d 16")
  GPT_CONFIG=tiny
else
  GEMM_SIZES=(4096 8192)
  # B*H chosen so the naive path's L x L score matrices (and their gradients) fit: 32 x 1024^2 and 8 x 4096^2 floats.
  ATTN=("--b 4 --h 8 --l 1024 --d 64" "--b 1 --h 8 --l 4096 --d 64")
  GPT_CONFIG=small
fi

mkdir -p "$(dirname "$OUT")"
: > "$OUT"
failed=0

# run LABEL ARGS...: one bench call; its JSON line (with the label) goes to $OUT, a failure is recorded as such.
run() {
  local label="$1"; shift
  echo "gpu.sh: $label: attncore $*" >&2
  local log
  if log=$("${CLI[@]}" "$@" --device "$DEVICE" --seconds "$SECS" --json 2>&1); then
    local json
    json=$(echo "$log" | tail -n 1)
    echo "{\"label\": \"$label\", \"ok\": true, \"result\": $json}" >> "$OUT"
  else
    local reason
    reason=$(echo "$log" | tail -n 1 | sed 's/\\/\\\\/g; s/"/\\"/g')
    echo "gpu.sh: $label failed: $reason" >&2
    echo "{\"label\": \"$label\", \"ok\": false, \"error\": \"$reason\"}" >> "$OUT"
    failed=1
  fi
}

for n in "${GEMM_SIZES[@]}"; do
  run "SGEMM ${n}^3" bench gemm --n "$n" "${VS[@]}"
done
for shape in "${ATTN[@]}"; do
  for impl in fused naive; do
    # shellcheck disable=SC2086 # the shape is a list of options
    run "attention fwd $impl $shape" bench attention $shape --impl "$impl"
    # shellcheck disable=SC2086
    run "attention fwd+bwd $impl $shape" bench attention $shape --impl "$impl" --backward
  done
done
run "GPT step $GPT_CONFIG" bench gpt-step --config "$GPT_CONFIG"

echo
echo "Results: $OUT (device $DEVICE)"
# The table: one row per case; ratio = reference ms / AttnCore ms (cuBLAS for SGEMM); fused/naive ratios for attention.
if command -v python3 > /dev/null; then
  python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ms = {r["label"]: r["result"]["ms"] for r in rows if r["ok"]}
print(f"| {'case':<48} | {'ms':>10} | {'GFLOP/s':>10} | {'tokens/s':>10} | {'vs ref':>14} |")
print(f"|{'-'*50}|{'-'*12}|{'-'*12}|{'-'*12}|{'-'*16}|")
for r in rows:
    if not r["ok"]:
        print(f"| {r['label']:<48} | {'FAILED':>10} | {r['error'][:60]}")
        continue
    j = r["result"]
    ratio = ""
    if "speedup" in j:
        ratio = f"{j['speedup']:.2f} of cuBLAS"
    elif " naive " in r["label"]:
        fused = ms.get(r["label"].replace(" naive ", " fused "))
        if fused: ratio = f"fused {j['ms'] / fused:.2f}x"
    tps = f"{j['tokens_per_s']:.0f}" if "tokens_per_s" in j else ""
    print(f"| {r['label']:<48} | {j['ms']:>10.3f} | {j.get('gflops', 0):>10.1f} | {tps:>10} | {ratio:>14} |")
PY
else
  cat "$OUT"
fi
exit "$failed"
