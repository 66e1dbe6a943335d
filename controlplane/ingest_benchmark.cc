// Ingest cost, measured against baselines taken in the same run (see scripts/bench.sh):
//   BM_RawCopy      COPY of the same rows into a bare table: the floor for moving the bytes
//   BM_Ingest       PgStore::Ingest: staging COPY, series upsert, samples insert, sequence
//   BM_IterateBatch touching every sample of a batch: the floor for a pass over the samples
//   BM_RuleEvaluate RuleEngine::Evaluate with 20 rules, one of which matches every series
// Needs DATABASE_URL (scripts/bench.sh starts a private PostgreSQL).
#include <cstdlib>
#include <pqxx/pqxx>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "controlplane/pg_store.h"
#include "controlplane/rule_engine.h"

namespace vigie::controlplane {
namespace {

const char* DatabaseUrl() {
  const char* url = std::getenv("DATABASE_URL");
  return url != nullptr ? url : "";
}

// A batch like one collection round of a host: `n` series of node_exporter-shaped names.
v1::AgentMessage Batch(int n, uint64_t sequence, int64_t ts_ms) {
  v1::AgentMessage m;
  v1::MetricBatch* b = m.mutable_metrics();
  b->set_sequence(sequence);
  for (int i = 0; i < n; ++i) {
    v1::Sample* s = b->add_samples();
    s->set_name(i % 2 == 0 ? "node_cpu_seconds_total" : "node_filesystem_avail_bytes");
    (*s->mutable_labels())["cpu"] = absl::StrCat(i / 8);
    (*s->mutable_labels())["mode"] = absl::StrCat("mode", i % 8);
    s->set_value(i * 1.5);
    s->set_timestamp_ms(ts_ms);
  }
  return m;
}

void BM_RawCopy(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  pqxx::connection c(DatabaseUrl());
  {
    pqxx::work w(c);
    w.exec0(
        "CREATE TABLE IF NOT EXISTS bench_raw (name text, labels jsonb, ts timestamptz, "
        "value double precision, batch_seq bigint)");
    w.exec0("TRUNCATE bench_raw");
    w.commit();
  }
  v1::AgentMessage batch = Batch(n, 1, 1700000000000);
  int64_t seq = 0;
  for (auto _ : state) {
    pqxx::work w(c);
    pqxx::stream_to copy(w, "bench_raw",
                         std::vector<std::string>{"name", "labels", "ts", "value", "batch_seq"});
    ++seq;
    for (const v1::Sample& s : batch.metrics().samples()) {
      copy << std::make_tuple(s.name(),
                              absl::StrCat("{\"cpu\":\"", s.labels().at("cpu"), "\",\"mode\":\"",
                                           s.labels().at("mode"), "\"}"),
                              "2023-11-14 22:13:20+00", s.value(), seq);
    }
    copy.complete();
    w.commit();
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_Ingest(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto store = PgStore::Open({DatabaseUrl(), 2});
  if (!store.ok()) {
    state.SkipWithError(std::string(store.status().message()).c_str());
    return;
  }
  v1::Hello hello;
  hello.set_agent_id(absl::StrCat("bench-", n));
  auto committed = (*store)->RegisterAgent(hello, "bench");
  if (!committed.ok()) {
    state.SkipWithError(std::string(committed.status().message()).c_str());
    return;
  }
  uint64_t seq = *committed;
  int64_t ts = 1700000000000;
  for (auto _ : state) {
    std::vector<v1::AgentMessage> messages{Batch(n, ++seq, ts += 1000)};
    auto r = (*store)->Ingest(hello.agent_id(), messages, {}, "");
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations() * n);
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

BENCHMARK(BM_RawCopy)->Arg(500)->Arg(5000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Ingest)->Arg(500)->Arg(5000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_IterateBatch)->Arg(500)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RuleEvaluate)->Arg(500)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace vigie::controlplane

BENCHMARK_MAIN();
