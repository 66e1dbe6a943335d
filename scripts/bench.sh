#!/usr/bin/env bash
# Builds and runs the benchmarks against a private PostgreSQL, and prints each figure as a
# ratio to a baseline measured in the same run (this machine is shared and noisy).
#   scripts/bench.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/build.sh" >/dev/null
tmp=$(mktemp -d /tmp/vigie-bench.XXXXXX)
chmod 0755 "$tmp"
trap '"$here/scripts/pg-cluster.sh" stop "$tmp/pg" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
DATABASE_URL=$("$here/scripts/pg-cluster.sh" start "$tmp/pg" | sed -n 's/^DATABASE_URL=//p')
export DATABASE_URL
"$here/build/bench/ingest_benchmark" --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_format=json \
  --benchmark_out="$tmp/ingest.json" --benchmark_out_format=json >/dev/null 2>"$tmp/bench.log" ||
  { cat "$tmp/bench.log" >&2; exit 1; }
/usr/bin/python3 - "$tmp/ingest.json" <<'PY'
import json, sys
runs = {b["run_name"]: b for b in json.load(open(sys.argv[1]))["benchmarks"]
        if b.get("aggregate_name") == "median"}
def rate(name):
    return runs[name]["items_per_second"]
print("benchmark (median of 3)                      samples/s    ratio to baseline")
for n in (500, 5000):
    base, ours = rate(f"BM_RawCopy/{n}"), rate(f"BM_Ingest/{n}")
    print(f"raw COPY, {n:>4} samples/batch (baseline)   {base:>12,.0f}    1.00")
    print(f"PgStore::Ingest, {n:>4} samples/batch      {ours:>12,.0f}    {ours / base:.2f}")
base, ours = rate("BM_IterateBatch/500"), rate("BM_RuleEvaluate/500")
print(f"iterate a 500-sample batch (baseline)      {base:>12,.0f}    1.00")
print(f"RuleEngine::Evaluate, 20 rules             {ours:>12,.0f}    {ours / base:.2f}")
PY
