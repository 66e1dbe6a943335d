// Ingest and query cost, each against a baseline measured in the same run (scripts/bench.sh
// prints the ratios; PostgreSQL runs with fsync on):
//   BM_RowCopy      COPY of the same samples as one row each into (series_id, ts, value) with
//                   its primary key: the plain way to store samples in PostgreSQL
//   BM_Ingest       PgStore::Ingest: series from the cache, layout, blocks, committed sequence
//   Both also report bytes on disk per sample (table and indexes) and WAL bytes per sample.
//   BM_QueryDay     QuerySamples for one series over a day, with a day of 15 s data from 20
//                   agents of 500 series stored (57.6 M samples); absolute (target < 100 ms)
//   BM_IterateBatch touching every sample of a batch: the floor for a pass over the samples
//   BM_RuleEvaluate RuleEngine::Evaluate with 20 rules, one of which matches every series
// Needs DATABASE_URL and VIGIE_BENCH_SCRATCH_DATABASE=1: it drops and recreates the schema
// (scripts/bench.sh starts a private PostgreSQL for it).
#include <cstdio>
#include <cstdlib>
#include <pqxx/pqxx>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "controlplane/pg_store.h"
#include "controlplane/rule_engine.h"

namespace vigie::controlplane {
namespace {

const char* DatabaseUrl() {
  const char* url = std::getenv("DATABASE_URL");
  const char* scratch = std::getenv("VIGIE_BENCH_SCRATCH_DATABASE");
  if (scratch == nullptr || std::string(scratch) != "1") {
    std::fprintf(stderr, "set VIGIE_BENCH_SCRATCH_DATABASE=1: the benchmark drops every table\n");
    std::exit(2);
  }
  return url != nullptr ? url : "";
}

// A batch like one collection round of a host: `n` series of node_exporter-shaped names, all
// stamped with the round's time, values moving from round to round.
v1::AgentMessage Batch(int n, uint64_t sequence, int64_t ts_ms) {
  v1::AgentMessage m;
  v1::MetricBatch* b = m.mutable_metrics();
  b->set_sequence(sequence);
  for (int i = 0; i < n; ++i) {
    v1::Sample* s = b->add_samples();
    s->set_name(i % 2 == 0 ? "node_cpu_seconds_total" : "node_filesystem_avail_bytes");
    (*s->mutable_labels())["cpu"] = absl::StrCat(i / 8);
    (*s->mutable_labels())["mode"] = absl::StrCat("mode", i % 8);
    s->set_value(i % 3 == 0 ? 0.0 : static_cast<double>(sequence * (i + 1)) * 0.01);
    s->set_timestamp_ms(ts_ms);
  }
  return m;
}

// A recent 15 s grid, inside the default retention.
int64_t StartMs() { return (absl::ToUnixMillis(absl::Now()) / 15000 - 4 * 5760) * 15000; }

int64_t Scalar(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction n(c);
  return n.exec1(sql)[0].as<int64_t>();
}

// Disk and WAL bytes per sample, as benchmark counters (thread 0 measures for all threads).
struct StorageMeter {
  int64_t wal_before = 0;
  void Start(pqxx::connection& c) {
    wal_before = Scalar(c, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint");
  }
  void Stop(pqxx::connection& c, benchmark::State& state, const std::string& size_sql,
            int64_t samples) {
    const int64_t wal =
        Scalar(c, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint") - wal_before;
    const int64_t bytes = Scalar(c, size_sql);
    const int64_t stored = std::max<int64_t>(1, samples);
    state.counters["wal_bytes_per_sample"] = static_cast<double>(wal) / stored;
    state.counters["disk_bytes_per_sample"] = static_cast<double>(bytes) / stored;
  }
};

void BM_RowCopy(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  pqxx::connection c(DatabaseUrl());
  StorageMeter meter;
  if (state.thread_index() == 0) {
    {
      pqxx::nontransaction w(c);
      w.exec0(
          "CREATE TABLE IF NOT EXISTS bench_rows (series_id bigint, ts timestamptz, "
          "value double precision, PRIMARY KEY (series_id, ts))");
      w.exec0("TRUNCATE bench_rows");
    }
    meter.Start(c);
  }
  v1::AgentMessage batch = Batch(n, 1, 0);
  const int64_t base = static_cast<int64_t>(state.thread_index()) * 1000000;
  int64_t ts = StartMs();
  for (auto _ : state) {
    ts += 15000;
    const std::string ts_text =
        absl::FormatTime("%Y-%m-%d %H:%M:%E3S+00", absl::FromUnixMillis(ts), absl::UTCTimeZone());
    pqxx::work w(c);
    pqxx::stream_to copy(w, "bench_rows", std::vector<std::string>{"series_id", "ts", "value"});
    int64_t id = base;
    for (const v1::Sample& s : batch.metrics().samples()) {
      copy << std::make_tuple(++id, ts_text, s.value());
    }
    copy.complete();
    w.commit();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n);
  if (state.thread_index() == 0) {
    // Wait for the other threads' counts: they finish their loops together with this one.
    meter.Stop(c, state, "SELECT pg_total_relation_size('bench_rows')",
               Scalar(c, "SELECT count(*) FROM bench_rows"));
  }
}

void BM_Ingest(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  static std::unique_ptr<PgStore> store;
  pqxx::connection c(DatabaseUrl());
  StorageMeter meter;
  if (state.thread_index() == 0) {
    {
      pqxx::nontransaction w(c);
      // A clean slate: only this run's blocks are measured.
      w.exec0("DROP TABLE IF EXISTS sample_blocks, sample_rollups, series_layouts CASCADE");
      w.exec0(
          "DROP TABLE IF EXISTS schema_migrations, agents, series, check_results, "
          "service_events, check_daily, service_daily, rollup_dirty, alerts, alert_events, "
          "notification_outbox, tokens CASCADE");
      w.exec0("DROP FUNCTION IF EXISTS vigie_ensure_partition");
    }
    PgStoreOptions o;
    o.database_url = DatabaseUrl();
    o.max_connections = state.threads() + 1;
    auto s = PgStore::Open(o);
    if (!s.ok()) {
      state.SkipWithError(std::string(s.status().message()).c_str());
      return;
    }
    store = std::move(*s);
    meter.Start(c);
  }
  // Threads start their loops together (benchmark's barrier), after thread 0's set-up.
  v1::Hello hello;
  hello.set_agent_id(absl::StrCat("bench-", state.thread_index()));
  uint64_t seq = 0;
  int64_t ts = StartMs();
  bool registered = false;
  for (auto _ : state) {
    if (!registered) {
      auto committed = store->RegisterAgent(hello, "bench");
      if (!committed.ok()) {
        state.SkipWithError(std::string(committed.status().message()).c_str());
        break;
      }
      seq = *committed;
      registered = true;
    }
    std::vector<v1::AgentMessage> messages{Batch(n, ++seq, ts += 15000)};
    auto r = store->Ingest(hello.agent_id(), messages, {}, {}, "");
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n);
  if (state.thread_index() == 0) {
    meter.Stop(c, state,
               "SELECT sum(pg_total_relation_size(inhrelid)) + "
               "pg_total_relation_size('series_layouts') FROM pg_inherits "
               "WHERE inhparent = 'sample_blocks'::regclass",
               Scalar(c, "SELECT coalesce(sum(cardinality(vals)), 0) FROM sample_blocks"));
  }
}

// 20 agents x 500 series x 5760 rounds, written straight into the block layout by SQL (the
// fastest way to get 57.6 M samples in), then one series' day read back through QuerySamples.
void BM_QueryDay(benchmark::State& state) {
  PgStoreOptions o;
  o.database_url = DatabaseUrl();
  auto store = PgStore::Open(o);
  if (!store.ok()) {
    state.SkipWithError(std::string(store.status().message()).c_str());
    return;
  }
  const int64_t day_start = (absl::ToUnixMillis(absl::Now()) / 15000 - 5760) * 15000;
  {
    pqxx::connection c(DatabaseUrl());
    pqxx::work w(c);
    if (w.exec1("SELECT count(*) FROM agents WHERE agent_id LIKE 'q%'")[0].as<int>() < 20) {
      for (int64_t d = day_start / 86400000 - 1; d <= day_start / 86400000 + 2; ++d) {
        w.exec_params(
            "SELECT vigie_ensure_partition('sample_blocks', 'day', "
            "date '1970-01-01' + $1::integer)",
            d);
      }
      w.exec0("INSERT INTO agents (agent_id) SELECT 'q' || a FROM generate_series(1, 20) a");
      w.exec0(
          "INSERT INTO series (agent_id, name, labels) SELECT 'q' || a, 'm', "
          "jsonb_build_object('i', i::text) FROM generate_series(1, 20) a, "
          "generate_series(1, 500) i");
      w.exec0(
          "INSERT INTO series_layouts (agent_id, hash, series_ids) SELECT agent_id, 1, "
          "array_agg(id ORDER BY id) FROM series WHERE agent_id LIKE 'q%' GROUP BY agent_id");
      w.exec_params0(
          "INSERT INTO sample_blocks (agent_id, ts, batch_seq, layout_id, first_pos, vals) "
          "SELECT l.agent_id, timestamptz 'epoch' + ($1::bigint + r * 15000) * "
          "interval '1 millisecond', r + 1, l.id, p, "
          "(SELECT array_agg(r * 0.5 + p + k) FROM generate_series(1, least(240, 500 - p)) k) "
          "FROM series_layouts l, generate_series(0, 5759) r, unnest(ARRAY[0, 240, 480]) p "
          "WHERE l.agent_id LIKE 'q%'",
          day_start);
      w.exec0("ANALYZE sample_blocks");
    }
    w.commit();
  }
  v1::QuerySamplesRequest req;
  req.set_agent_id("q7");
  req.set_metric("m");
  (*req.mutable_matchers())["i"] = "250";
  size_t samples = 0;
  for (auto _ : state) {
    auto r = (*store)->QuerySamples(req, absl::Hours(24), 10000);
    if (!r.ok() || r->series_size() != 1) {
      state.SkipWithError(r.ok() ? "no series" : std::string(r.status().message()).c_str());
      break;
    }
    samples = r->series(0).samples_size();
  }
  state.counters["samples_returned"] = static_cast<double>(samples);
}

void BM_IterateBatch(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  v1::AgentMessage batch = Batch(n, 1, 0);
  for (auto _ : state) {
    double sum = 0;
    for (const v1::Sample& s : batch.metrics().samples()) {
      sum += s.value() + static_cast<double>(s.labels().size()) + s.name().size();
    }
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_RuleEvaluate(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::vector<Rule> rules;
  for (int i = 0; i < 20; ++i) {
    v1::Rule p;
    p.set_name(absl::StrCat("r", i));
    p.set_metric(i == 0 ? "node_filesystem_avail_bytes" : absl::StrCat("other_metric_", i));
    p.set_op("<");
    p.set_threshold(1);
    rules.push_back(*RuleFromProto(p, "rules"));
  }
  RuleEngine engine(std::move(rules));
  v1::AgentMessage batch = Batch(n, 1, 0);
  for (auto _ : state) {
    auto ev = engine.Evaluate("bench", batch.metrics());
    benchmark::DoNotOptimize(ev);
  }
  state.SetItemsProcessed(state.iterations() * n);
}

BENCHMARK(BM_RowCopy)->Arg(600)->Threads(1)->Threads(2)->UseRealTime()->MinTime(3);
BENCHMARK(BM_Ingest)->Arg(600)->Threads(1)->Threads(2)->UseRealTime()->MinTime(3);
BENCHMARK(BM_QueryDay)->Unit(benchmark::kMillisecond)->MinTime(2);
BENCHMARK(BM_IterateBatch)->Arg(600)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RuleEvaluate)->Arg(600)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace vigie::controlplane

BENCHMARK_MAIN();
