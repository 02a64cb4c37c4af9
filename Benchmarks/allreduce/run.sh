#!/usr/bin/env bash
# attncore bench allreduce against a plain C loop over MPI_Allreduce (allreduce_loop.c, compiled here into a temporary
# folder with mpicc), on the same ranks and message sizes, interleaved. Prints one JSON line per run.
# Usage: Benchmarks/allreduce/run.sh [RANKS] [SIZES...]   e.g. Benchmarks/allreduce/run.sh 2 4096 1048576 67108864
set -euo pipefail
cd "$(dirname "$0")/../.."
ranks="${1:-2}"; shift || true
sizes=("$@"); [ "${#sizes[@]}" -gt 0 ] || sizes=(4 4096 65536 1048576 16777216 67108864)
export OMPI_MCA_btl_vader_single_copy_mechanism=none
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
mpicc -O2 -o "$tmp/allreduce_loop" Benchmarks/allreduce/allreduce_loop.c
dotnet build -c Release Cli -v q >/dev/null
cli=Cli/bin/Release/net10.0/attncore.dll
mpi=(mpirun --oversubscribe -np "$ranks"); [ "$(id -u)" -ne 0 ] || mpi+=(--allow-run-as-root)
for bytes in "${sizes[@]}"; do
  iterations=$(( bytes >= 16777216 ? 20 : 200 ))
  "${mpi[@]}" "$tmp/allreduce_loop" "$bytes" "$iterations" 10 | tail -n 1
  "${mpi[@]}" dotnet "$cli" bench allreduce --bytes "$bytes" --iterations "$iterations" --warmup 10 --json | tail -n 1
done
