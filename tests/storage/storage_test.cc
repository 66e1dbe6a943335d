// PgStore's storage layout against a real PostgreSQL 15 (a private cluster started by
// scripts/pg-cluster.sh for this test binary; each test gets a fresh database): compact blocks,
// layouts, exactly-once, retention by partition, rollups checked against the raw data, and the
// migration of a database made by schema version 3.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/mutex.h"
#include "controlplane/pg_store.h"
#include "controlplane/rule_engine.h"
#include "controlplane/sample_blocks.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::controlplane {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::string Run(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (pclose(p) != 0) ADD_FAILURE() << command << " failed: " << out;
  return out;
}

// One cluster for the whole binary.
class Cluster : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* src = std::getenv("VIGIE_SOURCE_DIR");
    script_ = absl::StrCat(src != nullptr ? src : VIGIE_SOURCE_DIR, "/scripts/pg-cluster.sh");
    char tmpl[] = "/tmp/vigie-storage-test.XXXXXX";
    dir_ = mkdtemp(tmpl);
    for (absl::string_view line : absl::StrSplit(Run(script_ + " start " + dir_), '\n')) {
      if (absl::ConsumePrefix(&line, "DATABASE_URL=")) app_url_ = std::string(line);
      if (absl::ConsumePrefix(&line, "ADMIN_DATABASE_URL=")) admin_url_ = std::string(line);
    }
    ASSERT_FALSE(app_url_.empty());
  }
  void TearDown() override {
    Run(script_ + " stop " + dir_);
    Run("rm -rf " + dir_);
  }
  // A fresh database owned by the application role; its URL.
  std::string NewDatabase(const std::string& name) {
    pqxx::connection c(admin_url_);
    pqxx::nontransaction n(c);
    n.exec0("DROP DATABASE IF EXISTS " + name);
    n.exec0("CREATE DATABASE " + name + " OWNER vigie");
    return app_url_.substr(0, app_url_.rfind('/') + 1) + name;
  }

 private:
  std::string script_, dir_, app_url_, admin_url_;
};
Cluster* cluster = nullptr;

v1::Sample MakeSample(const std::string& name, const std::string& label, double value,
                      int64_t ts_ms) {
  v1::Sample s;
  s.set_name(name);
  if (!label.empty()) (*s.mutable_labels())["x"] = label;
  s.set_value(value);
  s.set_timestamp_ms(ts_ms);
  return s;
}

v1::AgentMessage Batch(uint64_t seq, const std::vector<v1::Sample>& samples) {
  v1::AgentMessage m;
  m.mutable_metrics()->set_sequence(seq);
  for (const auto& s : samples) *m.mutable_metrics()->add_samples() = s;
  return m;
}

class StorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    url_ = cluster->NewDatabase(absl::AsciiStrToLower(absl::StrCat("t_", info->name())));
    Open();
  }
  void Open(absl::Duration raw = absl::Hours(24 * 15), size_t max_series = 50000) {
    store_.reset();
    PgStoreOptions o;
    o.database_url = url_;
    o.retention_raw = raw;
    o.max_series_per_agent = max_series;
    auto s = PgStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  void Register(const std::string& agent) {
    v1::Hello h;
    h.set_agent_id(agent);
    ASSERT_TRUE(store_->RegisterAgent(h, "c1").ok());
  }
  IngestResult Ingest(const std::string& agent, const std::vector<v1::AgentMessage>& m) {
    auto r = store_->Ingest(agent, m, {}, {}, "");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : IngestResult{};
  }
  // (timestamp, value) of one series over the last `range`.
  std::vector<std::pair<int64_t, double>> Query(const std::string& agent, const std::string& metric,
                                                const std::string& label,
                                                absl::Duration range = absl::Hours(24),
                                                v1::Rollup rollup = v1::ROLLUP_NONE) {
    v1::QuerySamplesRequest req;
    req.set_agent_id(agent);
    req.set_metric(metric);
    if (!label.empty()) (*req.mutable_matchers())["x"] = label;
    req.set_rollup(rollup);
    auto r = store_->QuerySamples(req, range, 10000);
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<std::pair<int64_t, double>> out;
    if (!r.ok()) return out;
    for (const auto& s : r->series()) {
      for (const auto& x : s.samples()) out.emplace_back(x.timestamp_ms(), x.value());
    }
    return out;
  }
  int64_t Count(const std::string& sql) {
    pqxx::connection c(url_);
    pqxx::read_transaction t(c);
    return t.exec1(sql)[0].as<int64_t>();
  }

  std::string url_;
  std::unique_ptr<PgStore> store_;
};

const int64_t kNow = absl::ToUnixMillis(absl::Now());

TEST_F(StorageTest, RoundTripsValuesExactlyOnceAndCompactly) {
  Register("a");
  const int64_t t0 = RollupBucket(kNow) - 10 * 60000;
  std::vector<v1::Sample> samples;
  for (int i = 0; i < 600; ++i) samples.push_back(MakeSample("m", std::to_string(i), i * 0.1, t0));
  samples[1].set_value(std::numeric_limits<double>::infinity());
  samples[2].set_value(std::nan(""));
  samples[3].set_value(-0.0);
  samples[4].set_value(1e-308);
  IngestResult r = Ingest("a", {Batch(1, samples)});
  EXPECT_EQ(r.samples_written, 600u);
  EXPECT_EQ(r.series_created, 600u);
  EXPECT_EQ(r.committed_sequence, 1u);
  // A resend of the same sequence stores nothing.
  r = Ingest("a", {Batch(1, samples)});
  EXPECT_EQ(r.duplicates, 1u);
  EXPECT_EQ(r.samples_written, 0u);
  // The next round: the same series in the same order, matched from memory.
  for (auto& s : samples) s.set_timestamp_ms(t0 + 15000);
  r = Ingest("a", {Batch(2, samples)});
  EXPECT_EQ(r.layout_hits, 1u);
  EXPECT_EQ(r.series_created, 0u);
  // 600 values in three blocks per batch; one layout.
  EXPECT_EQ(Count("SELECT count(*) FROM sample_blocks"), 6);
  EXPECT_EQ(Count("SELECT count(*) FROM series_layouts"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM samples"), 1200);
  EXPECT_THAT(Query("a", "m", "0"),
              ElementsAre(std::make_pair(t0, 0.0), std::make_pair(t0 + 15000, 0.0)));
  EXPECT_EQ(Query("a", "m", "1")[0].second, std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(Query("a", "m", "2")[0].second));
  EXPECT_TRUE(std::signbit(Query("a", "m", "3")[0].second));
  EXPECT_EQ(Query("a", "m", "4")[0].second, 1e-308);
  EXPECT_EQ(Query("a", "m", "599")[1].second, 599 * 0.1);
  // (Bytes per sample are measured at scale by the benchmark: scripts/bench.sh.)
  EXPECT_EQ(Count("SELECT sum(cardinality(vals)) FROM sample_blocks"), 1200);
}

v1::AgentMessage Checks(uint64_t seq,
                        const std::vector<std::pair<v1::CheckStatus, int64_t>>& results) {
  v1::AgentMessage m;
  m.mutable_checks()->set_sequence(seq);
  for (const auto& [status, ts] : results) {
    v1::CheckResult* r = m.mutable_checks()->add_results();
    r->set_name("web");
    r->set_target("http://web/");
    r->set_status(status);
    r->set_timestamp_ms(ts);
    r->set_message(absl::StrCat("at ", ts));
  }
  return m;
}

TEST_F(StorageTest, CheckStateSinceIsWhenTheLatestStatusBegan) {
  Register("a");
  auto state = [&] {
    v1::GetCheckRequest req;
    req.set_agent_id("a");
    req.set_name("web");
    req.set_results(100);
    auto r = store_->GetCheck(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->check() : v1::Check();
  };
  const int64_t t = (kNow / 1000 - 600) * 1000;  // whole seconds: since_unix is in seconds
  // A replayed spool: critical, then ok twice. Since is the first ok, not the last result.
  Ingest("a", {Checks(1, {{v1::CHECK_STATUS_CRITICAL, t},
                          {v1::CHECK_STATUS_OK, t + 10000},
                          {v1::CHECK_STATUS_OK, t + 20000}})});
  EXPECT_EQ(state().status(), v1::CHECK_STATUS_OK);
  EXPECT_EQ(state().since_unix(), (t + 10000) / 1000);
  EXPECT_EQ(state().last_run_unix(), (t + 20000) / 1000);
  EXPECT_EQ(state().message(), absl::StrCat("at ", t + 20000));
  // Still ok: since stays.
  Ingest("a", {Checks(2, {{v1::CHECK_STATUS_OK, t + 30000}})});
  EXPECT_EQ(state().since_unix(), (t + 10000) / 1000);
  // ok -> critical -> ok within one batch: the ok run began in this batch.
  Ingest("a",
         {Checks(3, {{v1::CHECK_STATUS_CRITICAL, t + 40000}, {v1::CHECK_STATUS_OK, t + 50000}})});
  EXPECT_EQ(state().status(), v1::CHECK_STATUS_OK);
  EXPECT_EQ(state().since_unix(), (t + 50000) / 1000);
  // A late resend older than the stored result changes nothing but the history.
  Ingest("a", {Checks(4, {{v1::CHECK_STATUS_CRITICAL, t + 45000}})});
  EXPECT_EQ(state().status(), v1::CHECK_STATUS_OK);
  EXPECT_EQ(Count("SELECT count(*) FROM check_results"), 7);
  EXPECT_EQ(Count("SELECT sum(total) FROM check_daily"), 7);
}

TEST_F(StorageTest, ServiceStateFollowsEventsInOrderAndIgnoresOlderOnes) {
  Register("a");
  const int64_t t = (kNow / 1000 - 600) * 1000;
  uint64_t seq = 0;
  auto event = [&](v1::ServiceEvent::Kind kind, int64_t ts, int code = 0, int signal = 0) {
    v1::AgentMessage m;
    v1::ServiceEvent* e = m.mutable_service_event();
    e->set_sequence(++seq);
    e->set_service("web");
    e->set_kind(kind);
    e->set_exit_code(code);
    e->set_signal(signal);
    e->set_message(absl::StrCat("at ", ts));
    e->set_timestamp_ms(ts);
    return m;
  };
  auto state = [&] {
    v1::ListServicesRequest req;
    req.set_agent_id("a");
    auto r = store_->ListServices(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->services_size() == 1 ? r->services(0) : v1::Service();
  };
  Ingest("a", {event(v1::ServiceEvent::KIND_STARTED, t)});
  EXPECT_EQ(state().state(), "running");
  Ingest("a", {event(v1::ServiceEvent::KIND_STABLE, t + 60000)});
  EXPECT_EQ(state().since_unix(), t / 1000) << "still running: since stays";
  Ingest("a", {event(v1::ServiceEvent::KIND_EXITED, t + 70000, -1, 9),
               event(v1::ServiceEvent::KIND_RESTARTING, t + 70001)});
  v1::Service s = state();
  EXPECT_EQ(s.state(), "backoff");
  EXPECT_EQ(s.restarts(), 1u);
  EXPECT_EQ(s.last_exit_code(), -1);
  EXPECT_EQ(s.last_signal(), 9);
  Ingest("a", {event(v1::ServiceEvent::KIND_STARTED, t + 71000),
               event(v1::ServiceEvent::KIND_HEALTH_FAILED, t + 72000, 1)});
  s = state();
  EXPECT_EQ(s.state(), "running") << "a failed health command keeps the state";
  EXPECT_EQ(s.last_event(), v1::ServiceEvent::KIND_HEALTH_FAILED);
  EXPECT_EQ(s.last_signal(), 9) << "the last exit's, not the health command's";
  // A late resend older than the stored state changes nothing.
  Ingest("a", {event(v1::ServiceEvent::KIND_STOPPED, t + 65000)});
  EXPECT_EQ(state().state(), "running");
  v1::ListServicesRequest bad;
  bad.set_state("asleep");
  EXPECT_FALSE(store_->ListServices(bad).ok());
}

TEST_F(StorageTest, LayoutChangesMidStreamKeepEverySeriesRight) {
  Register("a");
  const int64_t t = kNow - 60000;
  auto abc = Batch(
      1, {MakeSample("m", "a", 1, t), MakeSample("m", "b", 2, t), MakeSample("m", "c", 3, t)});
  Ingest("a", {abc});
  // Reordered, one series gone, one new, one with explicit later timestamps.
  Ingest("a", {Batch(2, {MakeSample("m", "c", 30, t + 1000), MakeSample("m", "d", 40, t + 1000),
                         MakeSample("m", "b", 20, t + 1500)})});
  // Back to the first layout: found again by hash, not duplicated.
  auto abc3 = Batch(3, {MakeSample("m", "a", 100, t + 2000), MakeSample("m", "b", 200, t + 2000),
                        MakeSample("m", "c", 300, t + 2000)});
  IngestResult r = Ingest("a", {abc3});
  EXPECT_EQ(r.layouts_changed, 1u);
  EXPECT_EQ(Count("SELECT count(*) FROM series_layouts"), 2);
  EXPECT_THAT(Query("a", "m", "a"),
              ElementsAre(std::make_pair(t, 1.0), std::make_pair(t + 2000, 100.0)));
  EXPECT_THAT(Query("a", "m", "b"),
              ElementsAre(std::make_pair(t, 2.0), std::make_pair(t + 1500, 20.0),
                          std::make_pair(t + 2000, 200.0)));
  EXPECT_THAT(Query("a", "m", "d"), ElementsAre(std::make_pair(t + 1000, 40.0)));
  // A new store (a restart: empty cache) resolves from the tables.
  Open();
  r = Ingest("a", {Batch(4, {MakeSample("m", "a", 7, t + 3000), MakeSample("m", "b", 8, t + 3000),
                             MakeSample("m", "c", 9, t + 3000)})});
  EXPECT_EQ(r.series_created, 0u);
  EXPECT_EQ(Count("SELECT count(*) FROM series_layouts"), 2);
  EXPECT_EQ(Query("a", "m", "c").back(), std::make_pair(t + 3000, 9.0));
}

TEST_F(StorageTest, SamplesPastRetentionAreAcknowledgedNotStored) {
  Register("a");
  IngestResult r = Ingest("a", {Batch(1, {MakeSample("old", "", 1, kNow - 20LL * 86400000),
                                          MakeSample("new", "", 2, kNow - 1000)})});
  EXPECT_EQ(r.samples_expired, 1u);
  EXPECT_EQ(r.samples_written, 1u);
  EXPECT_EQ(r.committed_sequence, 1u);
  EXPECT_EQ(Count("SELECT count(*) FROM samples"), 1);
}

TEST_F(StorageTest, RetentionDropsWholeDaysAndKeepsTheRest) {
  Register("a");
  const int64_t day = 86400000;
  Ingest("a", {Batch(1, {MakeSample("m", "", 1, kNow - 5 * day)}),
               Batch(2, {MakeSample("m", "", 2, kNow - 1000)})});
  v1::AgentMessage checks;
  checks.mutable_checks()->set_sequence(3);
  auto* cr = checks.mutable_checks()->add_results();
  cr->set_name("web");
  cr->set_status(v1::CHECK_STATUS_OK);
  cr->set_timestamp_ms(kNow - 5 * day);
  Ingest("a", {checks});
  EXPECT_EQ(Count("SELECT count(*) FROM samples"), 2);
  EXPECT_EQ(Count("SELECT count(*) FROM check_results"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM check_daily"), 1);
  // The same data under a 3-day retention: the day 5 days ago goes, partition and all.
  Open(absl::Hours(72));
  auto m = store_->Maintain(absl::Now());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->partitions_dropped, 2u);  // sample_blocks and check_results of that day
  EXPECT_EQ(Count("SELECT count(*) FROM samples"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM check_results"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM check_daily"), 1);  // kept as long as rollups
  // Partitions for today and the next two days exist for every raw table.
  EXPECT_GE(Count("SELECT count(*) FROM pg_inherits WHERE inhparent = 'sample_blocks'::regclass"),
            3);
  // Maintenance again: nothing more to drop; ingest still works.
  EXPECT_EQ(store_->Maintain(absl::Now())->partitions_dropped, 0u);
  EXPECT_EQ(Ingest("a", {Batch(4, {MakeSample("m", "", 3, kNow)})}).samples_written, 1u);
}

TEST_F(StorageTest, RollupsMatchTheRawDataIncludingLateSamples) {
  Register("a");
  const int64_t b0 = RollupBucket(kNow) - 4 * kRollupBucketMs;  // complete buckets
  uint64_t seq = 0;
  for (int i = 0; i < 40; ++i) {  // 10 minutes at 15 s: two buckets
    const int64_t t = b0 + i * 15000;
    Ingest("a", {Batch(++seq, {MakeSample("m", "a", i, t), MakeSample("m", "b", 100 - i, t),
                               MakeSample("m", "c", i % 3 == 0 ? std::nan("") : i, t)})});
  }
  for (int round = 0; round < 20; ++round) {
    auto r = store_->RollUp(absl::Now(), 10);
    ASSERT_TRUE(r.ok()) << r.status();
    if (!r->more) break;
  }
  // Every rollup value against SQL aggregates over the raw rows (the `samples` view).
  auto compare = [&] {
    pqxx::connection c(url_);
    pqxx::read_transaction t(c);
    pqxx::result raw = t.exec(
        "SELECT s.labels->>'x', (extract(epoch from date_bin('5 minutes', x.ts, "
        "timestamptz 'epoch')) * 1000)::bigint, min(x.value) FILTER (WHERE x.value <> 'NaN'), "
        "max(x.value) FILTER (WHERE x.value <> 'NaN'), count(*), "
        "(array_agg(x.value ORDER BY x.ts DESC))[1] "
        "FROM samples x JOIN series s ON s.id = x.series_id GROUP BY 1, 2 ORDER BY 1, 2");
    int compared = 0;
    for (const auto& row : raw) {
      const std::string label = row[0].as<std::string>();
      const int64_t bucket = row[1].as<int64_t>();
      auto at = [&](v1::Rollup kind) {
        for (auto [ts, v] : Query("a", "m", label, absl::Hours(2), kind)) {
          if (ts == bucket) return v;
        }
        ADD_FAILURE() << "no rollup for " << label << " at " << bucket;
        return 0.0;
      };
      EXPECT_EQ(at(v1::ROLLUP_COUNT), row[4].as<double>()) << label;
      EXPECT_EQ(at(v1::ROLLUP_MIN), row[2].as<double>()) << label;
      EXPECT_EQ(at(v1::ROLLUP_MAX), row[3].as<double>()) << label;
      const double last = at(v1::ROLLUP_LAST);
      if (label == "c") {
        EXPECT_TRUE(std::isnan(at(v1::ROLLUP_SUM)));
      } else {
        EXPECT_EQ(last, row[5].as<double>()) << label;
      }
      ++compared;
    }
    return compared;
  };
  EXPECT_EQ(compare(), 6);  // 3 series x 2 buckets
  EXPECT_EQ(Query("a", "m", "a", absl::Hours(2), v1::ROLLUP_AVG).front().second, (0 + 19) / 2.0);
  // A late sample in the first (already rolled up) bucket: the bucket is redone.
  Ingest("a", {Batch(++seq, {MakeSample("m", "a", -5, b0 + 7000)})});
  EXPECT_EQ(Count("SELECT count(*) FROM rollup_dirty"), 1);
  ASSERT_TRUE(store_->RollUp(absl::Now(), 10).ok());
  EXPECT_EQ(Count("SELECT count(*) FROM rollup_dirty"), 0);
  EXPECT_EQ(compare(), 6);
  EXPECT_EQ(Query("a", "m", "a", absl::Hours(2), v1::ROLLUP_MIN).front().second, -5);
}

TEST_F(StorageTest, SeriesBeyondTheAgentsLimitAreDroppedAndTheRestStored) {
  Open(absl::Hours(24 * 15), /*max_series=*/3);
  Register("a");
  Register("b");
  const int64_t t = kNow - 60000;
  IngestResult r = Ingest("a", {Batch(1, {MakeSample("m", "1", 1, t), MakeSample("m", "2", 2, t),
                                          MakeSample("m", "3", 3, t), MakeSample("m", "4", 4, t),
                                          MakeSample("m", "5", 5, t)})});
  EXPECT_EQ(r.samples_over_series_limit, 2u);
  EXPECT_EQ(r.samples_written, 3u);
  EXPECT_EQ(r.committed_sequence, 1u);
  // Known series go on being stored, in any order, after a restart too; new ones do not.
  Open(absl::Hours(24 * 15), 3);
  r = Ingest("a", {Batch(2, {MakeSample("m", "6", 6, t + 1), MakeSample("m", "3", 30, t + 1),
                             MakeSample("m", "1", 10, t + 1)})});
  EXPECT_EQ(r.samples_over_series_limit, 1u);
  EXPECT_EQ(r.samples_written, 2u);
  EXPECT_THAT(Query("a", "m", "3"),
              ElementsAre(std::make_pair(t, 3.0), std::make_pair(t + 1, 30.0)));
  EXPECT_THAT(Query("a", "m", "1"),
              ElementsAre(std::make_pair(t, 1.0), std::make_pair(t + 1, 10.0)));
  EXPECT_THAT(Query("a", "m", "5"), IsEmpty());
  EXPECT_EQ(Count("SELECT count(*) FROM series WHERE agent_id = 'a'"), 3);
  // The limit is per agent: another agent is unaffected.
  r = Ingest("b", {Batch(1, {MakeSample("m", "1", 1, t), MakeSample("m", "2", 2, t)})});
  EXPECT_EQ(r.samples_over_series_limit, 0u);
}

// Puts a transition in the outbox as the ingest transaction does.
void AddToOutbox(const std::string& url, const std::string& key, const std::string& alert) {
  pqxx::connection c(url);
  pqxx::work w(c);
  w.exec_params0(
      "INSERT INTO notification_outbox (idempotency_key, request, alert) VALUES ($1, $2::jsonb, "
      "$3)",
      key,
      absl::StrCat(R"({"idempotencyKey": ")", key,
                   R"(", "notification": {"status": "STATUS_FIRING", "rule": "r"}})"),
      alert);
  w.commit();
}

TEST_F(StorageTest, OutboxKeepsOrderPerAlertOnlyAndHoldsNoTransactionDuringTheCall) {
  AddToOutbox(url_, "a1", "r/A");
  AddToOutbox(url_, "b1", "r/B");
  AddToOutbox(url_, "a2", "r/A");
  std::vector<std::string> offered;
  int64_t open_transactions = -1;
  auto pass = [&](const std::set<std::string>& refuse) {
    return store_->DispatchOutbox(10, absl::Minutes(1), [&](const OutboxEntry& e) {
      const std::string& key = e.request.idempotency_key();
      offered.push_back(key);
      open_transactions = Count(
          "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
          "AND state LIKE 'idle in transaction%'");
      if (refuse.count(key)) {
        return Store::DeliveryOutcome{false, "refused", absl::Milliseconds(300)};
      }
      return Store::DeliveryOutcome{true, "", absl::ZeroDuration()};
    });
  };
  // A's first transition is refused: B's goes out anyway; A's second waits behind A's first.
  auto r = pass({"a1"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 1);
  EXPECT_THAT(offered, ElementsAre("a1", "b1"));
  EXPECT_EQ(open_transactions, 0) << "no transaction is held open while the notifier is called";
  offered.clear();
  ASSERT_TRUE(pass({}).ok());
  EXPECT_THAT(offered, IsEmpty()) << "a1 waits for its retry, a2 behind it";
  absl::SleepFor(absl::Milliseconds(400));
  ASSERT_TRUE(pass({}).ok());
  ASSERT_TRUE(pass({}).ok());
  EXPECT_THAT(offered, ElementsAre("a1", "a2"));
  auto status = store_->PendingOutbox();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->pending, 0);
}

TEST_F(StorageTest, OutboxLeasesShareWorkBetweenDispatchersEachEntryOnce) {
  for (int i = 0; i < 40; ++i) AddToOutbox(url_, absl::StrCat("k", i), absl::StrCat("r/", i));
  Mutex mu;
  std::map<std::string, int> delivered;
  auto dispatch = [&] {
    for (int pass = 0; pass < 20; ++pass) {
      auto r = store_->DispatchOutbox(5, absl::Minutes(1), [&](const OutboxEntry& e) {
        absl::SleepFor(absl::Milliseconds(5));
        MutexLock lock(&mu);
        ++delivered[e.request.idempotency_key()];
        return Store::DeliveryOutcome{true, "", absl::ZeroDuration()};
      });
      EXPECT_TRUE(r.ok()) << r.status();
    }
  };
  std::thread a(dispatch), b(dispatch);
  a.join();
  b.join();
  EXPECT_EQ(delivered.size(), 40u);
  for (const auto& [key, n] : delivered) EXPECT_EQ(n, 1) << key;
  // The notifier away: the pass stops at the first failure and gives the rest back.
  for (int i = 0; i < 5; ++i) AddToOutbox(url_, absl::StrCat("down", i), absl::StrCat("d/", i));
  int tried = 0;
  auto r = store_->DispatchOutbox(5, absl::Minutes(1), [&](const OutboxEntry&) {
    ++tried;
    return Store::DeliveryOutcome{false, "unavailable", absl::Milliseconds(200), true};
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(tried, 1);
  EXPECT_EQ(Count("SELECT count(*) FROM notification_outbox WHERE leased_until IS NOT NULL"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM notification_outbox WHERE delivered_at IS NULL AND "
                  "next_attempt_at > now()"),
            5);
}

TEST_F(StorageTest, AgentsOfAReplicaThatStoppedAreMarkedDisconnected) {
  v1::Hello h;
  h.set_agent_id("web1");
  ASSERT_TRUE(store_->RegisterAgent(h, "deadbeef-1").ok());  // held by a replica that died
  h.set_agent_id("web2");
  ASSERT_TRUE(store_->RegisterAgent(h, "alive-1").ok());
  auto marked = store_->ReplicaHeartbeat("alive", absl::Seconds(30));
  ASSERT_TRUE(marked.ok()) << marked.status();
  EXPECT_EQ(*marked, 1);
  EXPECT_EQ(Count("SELECT count(*) FROM agents WHERE connected"), 1);
  EXPECT_EQ(Count("SELECT count(*) FROM agents WHERE connected AND agent_id = 'web2'"), 1);
  // A replica that stops heartbeating loses its agents too.
  {
    pqxx::connection c(url_);
    pqxx::work w(c);
    w.exec0(
        "UPDATE controlplane_replicas SET last_seen = now() - interval '1 minute' "
        "WHERE instance = 'alive'");
    w.commit();
  }
  marked = store_->ReplicaHeartbeat("other", absl::Seconds(30));
  ASSERT_TRUE(marked.ok());
  EXPECT_EQ(*marked, 1);
  EXPECT_EQ(Count("SELECT count(*) FROM agents WHERE connected"), 0);
}

TEST_F(StorageTest, CrashLoopsWithinAWindowFireOnceAndResolveWhenTheWindowEmpties) {
  Register("web1");
  auto exec = [&](const std::string& sql) {
    pqxx::connection c(url_);
    pqxx::work w(c);
    w.exec0(sql);
    w.commit();
  };
  exec(
      "DO $$ BEGIN PERFORM vigie_ensure_partition('service_events', 'day', d) FROM "
      "(VALUES ((now() AT TIME ZONE 'UTC')::date), ((now() AT TIME ZONE 'UTC')::date - 1)) "
      "AS v(d); END $$");
  // worker: 3 restarts in the last minute; worker-2: 3, but one 20 minutes ago; db: not selected.
  for (const char* ago : {"10 seconds", "20 seconds", "30 seconds"}) {
    exec(
        absl::StrCat("INSERT INTO service_events VALUES ('web1', 'worker-1', 'KIND_RESTARTING', "
                     "0, '', now() - interval '",
                     ago, "', 1)"));
  }
  for (const char* ago : {"10 seconds", "20 seconds", "20 minutes"}) {
    exec(
        absl::StrCat("INSERT INTO service_events VALUES ('web1', 'worker-2', 'KIND_RESTARTING', "
                     "0, '', now() - interval '",
                     ago, "', 1)"));
  }
  for (int i = 0; i < 5; ++i) {
    exec("INSERT INTO service_events VALUES ('web1', 'db', 'KIND_RESTARTING', 0, '', now(), 1)");
  }
  v1::Rule p;
  p.set_name("Flapping");
  p.mutable_service()->add_names("worker-*");
  p.mutable_service()->set_on("crash_loop");
  p.mutable_service()->set_restarts(2);
  p.mutable_service()->set_within("10m");
  auto rule = RuleFromProto(p, "rules[0]");
  ASSERT_TRUE(rule.ok()) << rule.status();
  auto t = store_->EvaluateAbsence({*rule}, "");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 1u) << "worker-1 only: worker-2 has 2 within 10m, db is not selected";
  EXPECT_EQ((*t)[0].kind, Transition::kFiring);
  EXPECT_EQ((*t)[0].labels.at("service"), "worker-1");
  EXPECT_FALSE((*t)[0].agent_absent);
  EXPECT_EQ((*t)[0].annotations.at("summary"), "worker-1 on web1 restarted 3 times within 10m");
  t = store_->EvaluateAbsence({*rule}, "");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->empty()) << "already firing: not again";
  exec("UPDATE service_events SET ts = ts - interval '1 hour' WHERE service = 'worker-1'");
  t = store_->EvaluateAbsence({*rule}, "");
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 1u);
  EXPECT_EQ((*t)[0].kind, Transition::kResolved);
}

TEST_F(StorageTest, AbsentAgentsFireOnceAndResolveWhenHeardFromAgain) {
  Register("web1");
  Register("web2");
  Register("db1");
  auto exec = [&](const std::string& sql) {
    pqxx::connection c(url_);
    pqxx::work w(c);
    w.exec0(sql);
    w.commit();
  };
  exec("UPDATE agents SET labels = '{\"role\": \"web\"}' WHERE agent_id LIKE 'web%'");
  exec("UPDATE agents SET last_seen = now() - interval '5 minutes' WHERE agent_id <> 'web1'");
  v1::Rule p;
  p.set_name("WebAgentDown");
  p.set_absent_for("1m");
  p.set_severity("critical");
  (*p.mutable_matchers())["role"] = "web";
  auto rule = RuleFromProto(p, "rules[0]");
  ASSERT_TRUE(rule.ok()) << rule.status();
  auto t = store_->EvaluateAbsence({*rule}, "http://vigie/");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 1u) << "web2 only: web1 is alive, db1 does not match";
  EXPECT_EQ((*t)[0].kind, Transition::kFiring);
  EXPECT_EQ((*t)[0].labels.at("agent"), "web2");
  EXPECT_EQ((*t)[0].annotations.at("summary"), "Agent web2 has sent nothing for 1m");
  EXPECT_GE((*t)[0].value, 299);
  EXPECT_EQ(Count("SELECT count(*) FROM notification_outbox WHERE alert LIKE 'WebAgentDown/%'"), 1);
  t = store_->EvaluateAbsence({*rule}, "");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->empty()) << "already firing: not again";
  // Another replica holding the lock: this one evaluates nothing.
  {
    pqxx::connection other(url_);
    pqxx::work w(other);
    w.exec("SELECT pg_advisory_xact_lock(7400003)");
    exec("UPDATE agents SET last_seen = now() WHERE agent_id = 'web2'");
    auto locked = store_->EvaluateAbsence({*rule}, "");
    ASSERT_TRUE(locked.ok());
    EXPECT_TRUE(locked->empty());
  }
  t = store_->EvaluateAbsence({*rule}, "");
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->size(), 1u);
  EXPECT_EQ((*t)[0].kind, Transition::kResolved);
  EXPECT_EQ(Count("SELECT count(*) FROM alerts WHERE rule = 'WebAgentDown' AND state = 'resolved'"),
            1);
  EXPECT_EQ(Count("SELECT count(*) FROM notification_outbox WHERE alert LIKE 'WebAgentDown/%'"), 2);
}

TEST_F(StorageTest, MigratesADatabaseMadeBySchemaVersion3) {
  // Replace the fresh schema with version 3's, holding rows in the old layout.
  store_.reset();
  url_ = cluster->NewDatabase("t_migrate_v3");
  {
    pqxx::connection c(url_);
    pqxx::work w(c);
    w.exec0(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, description text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now())");
    for (const Migration& m : Migrations()) {
      if (m.version > 3) break;
      w.exec0(m.sql);
      w.exec_params0("INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                     m.version, m.description);
    }
    w.exec0("INSERT INTO agents (agent_id, committed_sequence) VALUES ('old', 7)");
    w.exec0(
        "INSERT INTO series (agent_id, name, labels) VALUES ('old', 'm', '{\"x\": \"a\"}'), "
        "('old', 'm', '{\"x\": \"b\"}')");
    w.exec_params0(
        "INSERT INTO samples SELECT s.id, timestamptz 'epoch' + $1::bigint * interval '1 ms' - "
        "g * interval '15 seconds', g + s.id * 1000, 7 FROM series s, generate_series(1, 3) g",
        kNow);
    w.exec_params0(
        "INSERT INTO check_results VALUES ('old', 'web', 'http://x', 'ok', 0.5, '', '{}', "
        "timestamptz 'epoch' + $1::bigint * interval '1 ms', 6)",
        kNow);
    w.exec_params0(
        "INSERT INTO service_events VALUES ('old', 'nginx', 'STARTED', 0, '', "
        "timestamptz 'epoch' + $1::bigint * interval '1 ms', 5)",
        kNow);
    w.commit();
  }
  Open();
  EXPECT_EQ(store_->schema_version(), Migrations().back().version);
  auto a = Query("old", "m", "a");
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].second, 3 + 1000.0);  // oldest first: g = 3
  EXPECT_EQ(Count("SELECT count(*) FROM samples"), 6);
  EXPECT_EQ(Count("SELECT count(*) FROM check_results"), 1);
  EXPECT_EQ(Count("SELECT ok FROM check_daily"), 1);
  EXPECT_EQ(Count("SELECT events FROM service_daily WHERE kind = 'STARTED'"), 1);
  // The agent goes on from its committed sequence, into the new layout.
  v1::Hello h;
  h.set_agent_id("old");
  EXPECT_EQ(*store_->RegisterAgent(h, "c"), 7u);
  IngestResult r = Ingest("old", {Batch(8, {MakeSample("m", "a", 42, kNow)})});
  EXPECT_EQ(r.series_created, 0u);
  EXPECT_EQ(Query("old", "m", "a").back().second, 42);
}

// ---- Alert lifecycle: what is notified, and when (silences, agent down, acknowledgements).

Transition Fire(const std::string& agent, const std::string& rule = "HighCpu") {
  Transition t;
  t.kind = Transition::kFiring;
  t.rule = rule;
  t.labels = {{"alertname", rule}, {"agent", agent}};
  t.fingerprint = Fingerprint(t.labels);
  t.severity = "warning";
  t.value = 95;
  t.starts_at_ms = kNow;
  return t;
}
Transition Resolve(Transition t) {
  t.kind = Transition::kResolved;
  t.ends_at_ms = kNow + 1000;
  return t;
}

class LifecycleTest : public StorageTest {
 protected:
  void Store(const Transition& t) {
    auto r = store_->Ingest(t.labels.at("agent"), {}, {t}, {}, "");
    ASSERT_TRUE(r.ok()) << r.status();
  }
  // The outbox's notifications of `t`'s alert, in order: "<status>[ ack=<by>][ silenced=<id>]".
  std::vector<std::string> Sent(const Transition& t) {
    std::vector<std::string> out;
    pqxx::connection c(url_);
    pqxx::read_transaction r(c);
    for (const pqxx::row& row : r.exec_params(
             "SELECT request->'notification'->>'status', "
             "coalesce(request->'notification'->>'acknowledgedBy', ''), "
             "coalesce(request->'notification'->>'silencedBy', '') FROM notification_outbox "
             "WHERE alert = $1 ORDER BY id",
             t.rule + "/" + t.fingerprint)) {
      std::string s = row[0].as<std::string>() == "STATUS_FIRING" ? "firing" : "resolved";
      if (!row[1].as<std::string>().empty()) s += " ack=" + row[1].as<std::string>();
      if (!row[2].as<std::string>().empty()) s += " silenced";
      out.push_back(s);
    }
    return out;
  }
  std::string Silence(const std::string& agent) {
    v1::Silence p;
    (*p.mutable_matchers())["agent"] = agent;
    p.set_ends_at_unix(kNow / 1000 + 3600);
    p.set_comment("maintenance");
    auto silence = SilenceFromProto(p, absl::Now(), "tok1");
    EXPECT_TRUE(silence.ok()) << silence.status();
    auto made = store_->CreateSilence(*silence, "tok1");
    EXPECT_TRUE(made.ok()) << made.status();
    return made.ok() ? made->id() : "";
  }
  int Reconcile() {
    auto r = store_->ReconcileNotifications();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : -1;
  }
  v1::Alert Get(const Transition& t) {
    auto a = store_->GetAlert(t.rule, t.fingerprint);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? a->alert() : v1::Alert();
  }
};

TEST_F(LifecycleTest, ASilencedFiringIsHeldAndSentWhenTheSilenceEnds) {
  Register("web1");
  const std::string id = Silence("web1");
  const Transition t = Fire("web1");
  Store(t);
  EXPECT_THAT(Sent(t), IsEmpty());
  EXPECT_EQ(Get(t).suppressed_by(), "silence " + id);
  EXPECT_EQ(Reconcile(), 0) << "still silenced";
  ASSERT_TRUE(store_->ExpireSilence(id, "tok1").ok());
  EXPECT_EQ(store_->ExpireSilence(id, "tok1").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->ExpireSilence("nope", "tok1").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Reconcile(), 1);
  EXPECT_EQ(Reconcile(), 0) << "once";
  EXPECT_THAT(Sent(t), ElementsAre("firing"));
  EXPECT_EQ(Get(t).suppressed_by(), "");
  EXPECT_EQ(Count("SELECT count(*) FROM notification_outbox WHERE idempotency_key = '" +
                  t.IdempotencyKey() + "'"),
            1)
      << "sent under the firing's own key";
  Store(Resolve(t));
  EXPECT_THAT(Sent(t), ElementsAre("firing", "resolved"));
}

TEST_F(LifecycleTest, AFiringHeldAllAlongAndResolvedIsNeverSent) {
  Register("web1");
  Silence("web1");
  const Transition t = Fire("web1");
  Store(t);
  Store(Resolve(t));
  EXPECT_EQ(Reconcile(), 0);
  EXPECT_THAT(Sent(t), IsEmpty());
  auto got = store_->GetAlert(t.rule, t.fingerprint);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->alert().state(), v1::ALERT_STATE_RESOLVED);
  ASSERT_EQ(got->history_size(), 2) << "the history keeps both";
  EXPECT_EQ(got->history(0).status(), "resolved");
}

TEST_F(LifecycleTest, ASilenceOverANotifiedAlertIsSaidOnceAndItsEndToo) {
  Register("web1");
  const Transition t = Fire("web1");
  Store(t);
  const std::string id = Silence("web1");
  EXPECT_EQ(Reconcile(), 1);
  EXPECT_EQ(Reconcile(), 0);
  EXPECT_THAT(Sent(t), ElementsAre("firing", "firing silenced"));
  ASSERT_TRUE(store_->ExpireSilence(id, "tok1").ok());
  EXPECT_EQ(Reconcile(), 1);
  EXPECT_THAT(Sent(t), ElementsAre("firing", "firing silenced", "firing"));
  // A resolve during a silence is sent: the receiver heard of the firing.
  Silence("web1");
  Reconcile();
  Store(Resolve(t));
  EXPECT_EQ(Sent(t).back(), "resolved");
}

TEST_F(LifecycleTest, AnAgentDownHoldsItsOtherAlertsUntilItIsBack) {
  Register("web2");
  auto exec = [&](const std::string& sql) {
    pqxx::connection c(url_);
    pqxx::work w(c);
    w.exec0(sql);
    w.commit();
  };
  exec("UPDATE agents SET last_seen = now() - interval '5 minutes' WHERE agent_id = 'web2'");
  v1::Rule p;
  p.set_name("AgentDown");
  p.set_absent_for("1m");
  auto rule = RuleFromProto(p, "rules[0]");
  ASSERT_TRUE(rule.ok()) << rule.status();
  auto down = store_->EvaluateAbsence({*rule}, "");
  ASSERT_TRUE(down.ok() && down->size() == 1);
  const Transition cpu = Fire("web2"), disk = Fire("web2", "DiskFull");
  Store(cpu);
  Store(disk);
  EXPECT_THAT(Sent(cpu), IsEmpty());
  EXPECT_THAT(Sent(disk), IsEmpty());
  EXPECT_EQ(Get(cpu).suppressed_by(), "host down: web2");
  EXPECT_THAT(Sent((*down)[0]), ElementsAre("firing")) << "one notification: the host is down";
  EXPECT_EQ(Reconcile(), 0);
  // Back: the disk alert resolved meanwhile (never sent), the CPU alert still fires.
  Store(Resolve(disk));
  exec("UPDATE agents SET last_seen = now() WHERE agent_id = 'web2'");
  auto back = store_->EvaluateAbsence({*rule}, "");
  ASSERT_TRUE(back.ok() && back->size() == 1);
  EXPECT_EQ(Reconcile(), 1);
  EXPECT_THAT(Sent(cpu), ElementsAre("firing"));
  EXPECT_THAT(Sent(disk), IsEmpty());
  EXPECT_THAT(Sent((*down)[0]), ElementsAre("firing", "resolved"));
}

TEST_F(LifecycleTest, AcknowledgementsAreNotifiedExpireAndAreAudited) {
  Register("web1");
  const Transition t = Fire("web1");
  Store::Acknowledgement ack{t.rule, t.fingerprint, "alice", "looking", absl::Seconds(1)};
  EXPECT_EQ(store_->Acknowledge(Store::Acknowledgement{"HighCpu", "0000", "a", "", {}}, "tok1")
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  Store(t);
  EXPECT_EQ(store_->Unacknowledge(t.rule, t.fingerprint, "tok1").status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto acked = store_->Acknowledge(ack, "tok1");
  ASSERT_TRUE(acked.ok()) << acked.status();
  EXPECT_EQ(acked->acknowledged_by(), "alice");
  EXPECT_EQ(acked->acknowledgement_comment(), "looking");
  EXPECT_GT(acked->acknowledgement_expires_at_unix(), 0);
  EXPECT_THAT(Sent(t), ElementsAre("firing", "firing ack=alice"));
  EXPECT_EQ(Reconcile(), 0) << "not expired yet";
  absl::SleepFor(absl::Milliseconds(1100));
  EXPECT_EQ(Reconcile(), 1);
  EXPECT_THAT(Sent(t), ElementsAre("firing", "firing ack=alice", "firing"))
      << "expired: notified again, unacknowledged";
  EXPECT_EQ(Get(t).acknowledged_by(), "");
  // Acknowledged until resolved, then unacknowledged by hand.
  ack.expires = absl::ZeroDuration();
  ASSERT_TRUE(store_->Acknowledge(ack, "tok1").ok());
  ASSERT_TRUE(store_->Unacknowledge(t.rule, t.fingerprint, "tok2").ok());
  EXPECT_THAT(Sent(t),
              ElementsAre("firing", "firing ack=alice", "firing", "firing ack=alice", "firing"));
  Store(Resolve(t));
  EXPECT_EQ(store_->Acknowledge(ack, "tok1").status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto history = store_->GetAlert(t.rule, t.fingerprint);
  ASSERT_TRUE(history.ok());
  std::vector<std::string> statuses;
  for (const auto& e : history->history()) statuses.push_back(e.status());
  EXPECT_THAT(statuses, ElementsAre("resolved", "unacknowledged", "acknowledged",
                                    "acknowledgement expired", "acknowledged", "firing"));
  // The audit log: who did what, newest first, in pages.
  v1::ListAuditLogRequest req;
  req.set_page_size(2);
  auto page = store_->ListAuditLog(req);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->entries_size(), 2);
  EXPECT_EQ(page->entries(0).action(), "UnacknowledgeAlert");
  EXPECT_EQ(page->entries(0).actor(), "tok2");
  EXPECT_EQ(page->entries(1).action(), "AcknowledgeAlert");
  req.set_page_token(page->next_page_token());
  page = store_->ListAuditLog(req);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->entries_size(), 2);
  EXPECT_EQ(page->entries(0).action(), "AcknowledgementExpired");
  EXPECT_EQ(page->entries(0).actor(), "system");
  EXPECT_EQ(page->entries(1).action(), "AcknowledgeAlert");
  EXPECT_THAT(page->entries(1).detail(), ::testing::HasSubstr("\"by\": \"alice\""));
  EXPECT_TRUE(page->next_page_token().empty());
  req.set_page_token("x");
  EXPECT_EQ(store_->ListAuditLog(req).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(LifecycleTest, ListAlertsFiltersAndPages) {
  Register("web1");
  Register("web2");
  Transition a = Fire("web1"), b = Fire("web2"), c = Fire("web2", "DiskFull");
  c.severity = "critical";
  Store(a);
  Store(b);
  Store(c);
  Store(Resolve(a));
  v1::ListAlertsRequest req;
  auto r = store_->QueryAlerts(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->alerts_size(), 2) << "firing by default";
  req.set_severity("critical");
  r = store_->QueryAlerts(req);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->alerts_size(), 1);
  EXPECT_EQ(r->alerts(0).rule(), "DiskFull");
  req.clear_severity();
  (*req.mutable_label_selector())["agent"] = "web2";
  req.set_page_size(1);
  r = store_->QueryAlerts(req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->alerts_size(), 1);
  ASSERT_FALSE(r->next_page_token().empty());
  req.set_page_token(r->next_page_token());
  r = store_->QueryAlerts(req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->alerts_size(), 1);
  EXPECT_TRUE(r->next_page_token().empty());
  req.Clear();
  req.set_state(v1::ALERT_STATE_RESOLVED);
  r = store_->QueryAlerts(req);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->alerts_size(), 1);
  EXPECT_EQ(r->alerts(0).labels().at("agent"), "web1");
}

TEST_F(LifecycleTest, SilencesAreListedAndBounded) {
  const std::string id = Silence("web1");
  auto live = store_->ListSilences(false);
  ASSERT_TRUE(live.ok()) << live.status();
  ASSERT_EQ(live->size(), 1u);
  EXPECT_EQ((*live)[0].id(), id);
  EXPECT_TRUE((*live)[0].active());
  EXPECT_EQ((*live)[0].comment(), "maintenance");
  ASSERT_TRUE(store_->ExpireSilence(id, "tok1").ok());
  live = store_->ListSilences(false);
  ASSERT_TRUE(live.ok());
  EXPECT_TRUE(live->empty());
  auto all = store_->ListSilences(true);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_FALSE((*all)[0].active());
  EXPECT_EQ(Count("SELECT count(*) FROM audit_log WHERE action IN ('CreateSilence', "
                  "'ExpireSilence')"),
            2);
  // At most kMaxSilences live: one more is refused, naming the bound.
  {
    pqxx::connection c(url_);
    pqxx::work w(c);
    w.exec_params0(
        "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by) "
        "SELECT 'bulk' || i, '{\"agent\": \"x\"}', now(), now() + interval '1 hour', 't' "
        "FROM generate_series(1, $1) i",
        static_cast<int64_t>(kMaxSilences));
    w.commit();
  }
  v1::Silence p;
  (*p.mutable_matchers())["agent"] = "y";
  p.set_ends_at_unix(kNow / 1000 + 60);
  auto one_more = store_->CreateSilence(*SilenceFromProto(p, absl::Now(), "tok1"), "tok1");
  EXPECT_EQ(one_more.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(one_more.status().message()), ::testing::HasSubstr("at most 10000"));
}

TEST_F(LifecycleTest, DeletingAnAgentResolvesItsAlertsAndForgetsItsData) {
  Register("web1");
  Ingest("web1", {Batch(1, {MakeSample("m", "a", 1.0, kNow)})});
  const Transition t = Fire("web1");
  Store(t);
  EXPECT_EQ(store_->DeleteAgent("web1", "tok1").status().code(),
            absl::StatusCode::kFailedPrecondition)
      << "connected";
  ASSERT_TRUE(store_->MarkDisconnected("web1", "c1").ok());
  auto resolved = store_->DeleteAgent("web1", "tok1");
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(*resolved, 1);
  EXPECT_THAT(Sent(t), ElementsAre("firing", "resolved"));
  EXPECT_EQ(store_->DeleteAgent("web1", "tok1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Count("SELECT count(*) FROM sample_blocks WHERE agent_id = 'web1'"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM series WHERE agent_id = 'web1'"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_log WHERE action = 'DeleteAgent' "
                  "AND target = 'web1' AND actor = 'tok1'"),
            1);
}

TEST_F(LifecycleTest, AFlappingAlertIsSaidOnceThenHeldUntilItSettles) {
  Register("web1");
  Transition t = Fire("web1");
  t.flap_threshold = 3;
  t.flap_window_ms = 3600 * 1000;
  auto at = [&](int64_t offset_ms) {
    Transition x = t;
    x.starts_at_ms = kNow + offset_ms;
    return x;
  };
  auto resolve = [&](int64_t start_ms, int64_t end_ms) {
    Transition x = at(start_ms);
    x.kind = Transition::kResolved;
    x.ends_at_ms = kNow + end_ms;
    return x;
  };
  Store(at(0));                // change 1: sent
  Store(resolve(0, 1000));     // change 2: sent
  Store(at(2000));             // change 3: flapping, said once
  Store(resolve(2000, 3000));  // held
  Store(at(4000));             // held
  EXPECT_THAT(Sent(t), ElementsAre("firing", "resolved", "firing silenced"))
      << "the third change is said once, as flapping";
  EXPECT_EQ(Get(t).suppressed_by(), "flapping");
  EXPECT_EQ(Reconcile(), 0) << "still within its window";
  // An hour without change: settled, and its state then (firing) is sent.
  {
    pqxx::connection c(url_);
    pqxx::work w(c);
    w.exec0("UPDATE alert_events SET at = at - interval '2 hours'");
    w.commit();
  }
  EXPECT_EQ(Reconcile(), 1);
  EXPECT_EQ(Reconcile(), 0);
  EXPECT_THAT(Sent(t), ElementsAre("firing", "resolved", "firing silenced", "firing"));
  EXPECT_EQ(Get(t).suppressed_by(), "");
  Store(resolve(4000, 5000));  // the changes in the window are old: not flapping, sent
  EXPECT_EQ(Sent(t).back(), "resolved");
}

}  // namespace
}  // namespace vigie::controlplane

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  vigie::controlplane::cluster = new vigie::controlplane::Cluster();
  ::testing::AddGlobalTestEnvironment(vigie::controlplane::cluster);
  return RUN_ALL_TESTS();
}
