#!/usr/bin/env bash
# The check of one CUDA machine, from a bundle made by Benchmarks/gpu-bundle.sh (no .NET SDK needed there):
# lists the devices, runs every Gpu-category test on CUDA only, then the GPU benchmarks (Benchmarks/gpu.sh).
#
# Usage (repository root of the bundle's commit):  Benchmarks/gpu-check.sh gpu-bundle.tar.xz [results-dir]
# Environment: TEST_S / BENCH_S bound the tests and the benchmarks (seconds, default 300 / 400).
# Writes devices.txt, tests.log, gpu.jsonl and gpu.log to the results directory (default ./gpu-check-<UTC time>).
# Exit status: 2 without a usable CUDA device; else 0 when the tests and the benchmarks passed, else the first failure's.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="$(realpath "$1")"
RES="$(realpath -m "${2:-$ROOT/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}")"
mkdir -p "$RES"
WORK="$(mktemp -d)"
tar -C "$WORK" -xJf "$BUNDLE"
P="$WORK/attncore-gpu"
echo "gpu-check.sh: bundle of commit $(cat "$P/COMMIT")"
nvidia-smi -L 2>/dev/null

# ILGPU.Algorithms 1.5.3 opens cuBLAS as libcublas.so.10, .11 or .12; on a CUDA 13 machine the newer library
# (the same cublas*_v2 entry points) is offered under the name it looks for.
CUBLAS="$(ldconfig -p 2>/dev/null | awk '/libcublas\.so\.1[0-9]/ {print $NF; exit}')"
[ -z "$CUBLAS" ] && CUBLAS="$(find /usr/local/cuda*/ /usr/lib -name 'libcublas.so.1[0-9]*' 2>/dev/null | head -n 1)"
if [ -n "$CUBLAS" ]; then
  mkdir -p "$WORK/cublas"
  ln -sf "$CUBLAS" "$WORK/cublas/libcublas.so.12"
  export LD_LIBRARY_PATH="$WORK/cublas:$(dirname "$CUBLAS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "gpu-check.sh: cuBLAS $CUBLAS"
fi

"$P/attncore" devices | tee "$RES/devices.txt"
if ! grep -q '^cuda:0 .*status: available' "$RES/devices.txt"; then
  echo "gpu-check.sh: no usable CUDA device here (devices.txt says why); nothing was checked" >&2
  rm -rf "$WORK"
  exit 2
fi

echo "gpu-check.sh: Gpu tests on cuda"
ATTNCORE_TEST_DEVICES=cuda timeout "${TEST_S:-300}" "$P/AttnCore.Tests" --filter "TestCategory=Gpu" --progress off --no-ansi > "$RES/tests.log" 2>&1
tests=$?
grep -E "^(failed|skipped) " "$RES/tests.log"
tail -n 6 "$RES/tests.log"

echo "gpu-check.sh: benchmarks"
ATTNCORE="$P/attncore" OUT="$RES/gpu.jsonl" timeout "${BENCH_S:-400}" bash "$ROOT/Benchmarks/gpu.sh" > "$RES/gpu.log" 2>&1
bench=$?
tail -n 16 "$RES/gpu.log"
rm -rf "$WORK"
echo "gpu-check.sh: tests rc $tests, benchmarks rc $bench; results in $RES"
[ "$tests" -ne 0 ] && exit "$tests"
exit "$bench"
