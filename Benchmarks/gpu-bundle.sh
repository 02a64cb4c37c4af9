#!/usr/bin/env bash
# Builds what a GPU machine without the .NET SDK needs to check AttnCore on CUDA: the test suite as a self-running,
# self-contained executable (Microsoft.Testing.Platform's NUnit runner) and the `attncore` CLI, published together
# for linux-x64 (one copy of the runtime), and packs them into one .tar.xz (about 44 MB).
#
# Usage (repository root, on any linux-x64 machine with the SDK):
#   Benchmarks/gpu-bundle.sh [out.tar.xz]      # default: gpu-bundle.tar.xz in the repository root
# Then, on the GPU machine, from a checkout of the same commit: Benchmarks/gpu-check.sh out.tar.xz
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(realpath -m "${1:-$ROOT/gpu-bundle.tar.xz}")"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
PUB="$STAGE/attncore-gpu"

dotnet publish "$ROOT/Tests" -c Release -r linux-x64 --self-contained -p:StandaloneTests=true -o "$PUB" -v quiet -nologo
dotnet publish "$ROOT/Cli" -c Release -r linux-x64 --self-contained -o "$PUB" -v quiet -nologo
# Not needed there: symbols, docs, satellite languages, coverage collectors, other platforms' ONNX Runtime.
(cd "$PUB" && rm -rf ./*.pdb ./*.xml onnxruntime.dll Microsoft.CodeCoverage runtimes TestResults \
  cs de es fr it ja ko pl pt-BR ru tr zh-Hans zh-Hant)
git -C "$ROOT" rev-parse HEAD > "$PUB/COMMIT"
tar -C "$STAGE" -cf - attncore-gpu | xz -T0 -6 > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "gpu-bundle.sh: wrote $OUT ($(du -h "$OUT" | cut -f1)), commit $(cat "$PUB/COMMIT")"
