#!/usr/bin/env bash
# Data-parallel scaling of the GPT-small training step on this machine (docs/distributed.md, "Scaling"):
# for each round, 1 rank x 1 thread, 2 ranks x 1 thread, 1 rank x 2 threads, one after the other, each
# `bench ddp-step --json`. Run it on an idle machine from the repository root after a Release build:
#   bash Benchmarks/ddp/scaling.sh [rounds] [log]
set -u
rounds=${1:-3}
out=${2:-ddp-scaling.log}
attncore="dotnet Cli/bin/Release/net10.0/attncore.dll"
: > "$out"
date -u >> "$out"; git log --oneline -1 >> "$out"
for round in $(seq 1 "$rounds"); do
  for cfg in "1 1" "2 1" "1 2"; do
    set -- $cfg
    echo "== round $round ranks $1 threads $2 $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)" >> "$out"
    # --bind-to none: mpirun would otherwise bind a lone 2-thread rank to one core.
    mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$1" $attncore bench ddp-step --config small \
      --threads "$2" --steps 10 --json 2>&1 | tail -1 >> "$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
ratios = [rows[i + 1]['samples_per_s'] / rows[i]['samples_per_s'] for i in range(0, len(rows) - 2, 3)]
print('2x1 over 1x1 per round:', ' '.join(f'{r:.2f}x' for r in ratios))
print(f'mean {statistics.mean(ratios):.2f}x, median {statistics.median(ratios):.2f}x')
PY
