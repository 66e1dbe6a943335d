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
# fsync on, as users run it.
DATABASE_URL=$(VIGIE_PG_FSYNC=on "$here/scripts/pg-cluster.sh" start "$tmp/pg" |
  sed -n 's/^DATABASE_URL=//p')
export DATABASE_URL VIGIE_BENCH_SCRATCH_DATABASE=1
"$here/build/bench/ingest_benchmark" --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_format=json \
  --benchmark_out="$tmp/ingest.json" --benchmark_out_format=json >/dev/null 2>"$tmp/bench.log" ||
  { cat "$tmp/bench.log" >&2; exit 1; }
/usr/bin/python3 - "$tmp/ingest.json" <<'PY'
import json, sys
runs = {b["run_name"]: b for b in json.load(open(sys.argv[1]))["benchmarks"]
        if b.get("aggregate_name") == "median"}
def get(name):
    return runs[name]
print("ingest, 600-sample batches (median of 3)   samples/s   ratio   disk B/sample   WAL B/sample")
for threads in (1, 2):
    base = get(f"BM_RowCopy/600/min_time:3.000/real_time/threads:{threads}")
    ours = get(f"BM_Ingest/600/min_time:3.000/real_time/threads:{threads}")
    for label, b in ((f"row-per-sample COPY, {threads} conn. (baseline)", base),
                     (f"PgStore::Ingest, {threads} worker(s)", ours)):
        print(f"{label:<42} {b['items_per_second']:>10,.0f}   "
              f"{b['items_per_second'] / base['items_per_second']:>5.2f}   "
              f"{b['disk_bytes_per_sample']:>13.1f}   {b['wal_bytes_per_sample']:>12.1f}")
q = get("BM_QueryDay/min_time:2.000")
print(f"QuerySamples, one series over a day of 57.6 M samples: {q['real_time']:.1f} ms "
      f"({q['samples_returned']:.0f} samples; target < 100 ms)")
base, ours = get("BM_IterateBatch/600")["items_per_second"], get("BM_RuleEvaluate/600")["items_per_second"]
print(f"iterate a 600-sample batch (baseline)      {base:>12,.0f}    1.00")
print(f"RuleEngine::Evaluate, 20 rules             {ours:>12,.0f}    {ours / base:.2f}")
PY
