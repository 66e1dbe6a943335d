#include "controlplane/pg_store.h"

#include <fnmatch.h>

#include <algorithm>
#include <pqxx/pqxx>
#include <set>
#include <tuple>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "common/agent_message.h"
#include "common/log.h"
#include "common/mutex.h"
#include "common/status.h"
#include "controlplane/pg_internal.h"
#include "controlplane/sample_blocks.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace vigie::controlplane {

namespace {

using pg::Labels;
using pg::LabelsJson;
using pg::ParseLabels;
using pg::PgTime;
using pg::StoreTransitions;

v1::Agent AgentFromRow(const pqxx::row& r) {
  v1::Agent a;
  a.set_agent_id(r[0].as<std::string>());
  a.set_hostname(r[1].as<std::string>());
  for (const auto& [k, v] : ParseLabels(r[2].as<std::string>())) (*a.mutable_labels())[k] = v;
  a.set_version(r[3].as<std::string>());
  a.set_connected(r[4].as<bool>());
  a.set_first_seen_unix(r[5].as<int64_t>());
  a.set_last_seen_unix(r[6].as<int64_t>());
  a.set_committed_sequence(r[7].as<uint64_t>());
  return a;
}

constexpr char kAgentColumns[] =
    "agent_id, hostname, labels::text, version, connected, "
    "extract(epoch from first_seen)::bigint, extract(epoch from last_seen)::bigint, "
    "committed_sequence";

}  // namespace

PgStore::PgStore(PgStoreOptions options)
    : options_(std::move(options)), series_cache_(options_.series_cache_bytes) {}

absl::StatusOr<std::unique_ptr<PgConnection>> PgStore::Connect() {
  try {
    auto c = std::make_unique<PgConnection>(options_.database_url);
    pqxx::nontransaction n(*c);
    n.exec0("SET application_name = 'vigie-controlplane'");
    // No statement may hold a worker (and the agents behind it) for long; a slow database is
    // then an error the agents retry, not a hang. (A silently dropped network still waits for
    // TCP's own timeout.)
    n.exec0("SET statement_timeout = '60s'");
    n.exec0("SET idle_in_transaction_session_timeout = '120s'");
    // Rollups are large arrays that go to TOAST: lz4 is several times faster than pglz.
    n.exec0("SET default_toast_compression = 'lz4'");
    return c;
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "database_url ", log::RedactUrl(options_.database_url), ": cannot connect: ", e.what()));
  }
}

absl::Status PgStore::Run(const char* what, const std::function<void(PgConnection&)>& fn) {
  std::unique_ptr<PgConnection> conn;
  {
    MutexLock lock(&mu_);
    auto available = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !idle_.empty() || open_ < options_.max_connections;
    };
    mu_.Await(available);
    if (!idle_.empty()) {
      conn = std::move(idle_.back());
      idle_.pop_back();
    } else {
      ++open_;  // reserve a slot; connect outside the lock
    }
  }
  if (!conn) {
    auto c = Connect();
    if (!c.ok()) {
      MutexLock lock(&mu_);
      --open_;
      return c.status();
    }
    conn = std::move(*c);
  }
  absl::Status status;
  bool broken = false;
  try {
    fn(*conn);
  } catch (const pqxx::broken_connection& e) {
    broken = true;
    status = absl::UnavailableError(absl::StrCat(what, ": database connection lost: ", e.what()));
  } catch (const pqxx::sql_error& e) {
    // Class 22 (data exception) means the input cannot be stored as it is: retrying the same
    // data cannot help.
    const std::string state = e.sqlstate();
    auto code = state.rfind("22", 0) == 0 ? absl::StatusCode::kInvalidArgument
                                          : absl::StatusCode::kInternal;
    // 23514 "no partition of relation found": a partition this process believed in was
    // dropped (retention, another replica); forget them all and let the caller retry.
    if (state == "23514" &&
        std::string_view(e.what()).find("no partition") != std::string_view::npos) {
      code = absl::StatusCode::kUnavailable;
      MutexLock lock(&mu_);
      known_partitions_.clear();
    }
    status = absl::Status(code, absl::StrCat(what, ": SQL error ", state, ": ", e.what()));
  } catch (const pqxx::in_doubt_error& e) {
    broken = true;
    status = absl::UnavailableError(absl::StrCat(what, ": commit in doubt: ", e.what()));
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
  MutexLock lock(&mu_);
  if (broken || !conn->is_open()) {
    --open_;
  } else {
    idle_.push_back(std::move(conn));
  }
  return status;
}

absl::StatusOr<std::unique_ptr<PgStore>> PgStore::Open(PgStoreOptions options) {
  std::unique_ptr<PgStore> store(new PgStore(std::move(options)));
  int version = 0;
  absl::Status s = store->Run("migrate", [&](pqxx::connection& c) {
    pqxx::work w(c);
    // One migrator at a time across replicas; the lock is released at commit.
    w.exec("SELECT pg_advisory_xact_lock(7400001)");
    w.exec0(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
        " description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
    pqxx::result r = w.exec("SELECT coalesce(max(version), 0) FROM schema_migrations");
    version = r[0][0].as<int>();
    for (const Migration& m : Migrations()) {
      if (m.version <= version) continue;
      w.exec0(m.sql);
      w.exec_params0("INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                     m.version, m.description);
      log::Info("applied migration", {{"version", m.version}, {"description", m.description}});
      version = m.version;
    }
    w.commit();
  });
  if (!s.ok()) return s;
  store->schema_version_ = version;
  return store;
}

PgStore::~PgStore() = default;

absl::StatusOr<uint64_t> PgStore::RegisterAgent(const v1::Hello& hello,
                                                const std::string& connection_id) {
  uint64_t committed = 0;
  absl::Status s = Run("register agent", [&](PgConnection& c) {
    pqxx::work w(c);
    pqxx::result r = w.exec_params(
        "INSERT INTO agents (agent_id, hostname, labels, version, connected, connection_id) "
        "VALUES ($1, $2, $3::jsonb, $4, true, $5) "
        "ON CONFLICT (agent_id) DO UPDATE SET hostname = excluded.hostname, "
        "labels = excluded.labels, version = excluded.version, connected = true, "
        "connection_id = excluded.connection_id, last_seen = now() "
        "RETURNING committed_sequence",
        hello.agent_id(), hello.hostname(), LabelsJson(hello.labels()), hello.version(),
        connection_id);
    committed = r[0][0].as<uint64_t>();
    w.commit();
  });
  if (!s.ok()) return s;
  return committed;
}

namespace {

// Resolves the alerts of timer rule `r` that fire and are not in `keep` (fingerprints).
void ResolveFiringExcept(pqxx::work& w, const Rule& r, const std::set<std::string>& keep,
                         int64_t now_ms, bool agent_absent, std::vector<Transition>* out) {
  for (const pqxx::row& a :
       w.exec_params("SELECT fingerprint, labels::text, annotations::text, severity, "
                     "(extract(epoch from active_since) * 1000)::bigint FROM alerts "
                     "WHERE rule = $1 AND state = 'firing'",
                     r.name)) {
    if (keep.count(a[0].as<std::string>())) continue;
    Transition t;
    t.kind = Transition::kResolved;
    t.agent_absent = agent_absent;
    t.rule = r.name;
    t.fingerprint = a[0].as<std::string>();
    t.labels = ParseLabels(a[1].as<std::string>());
    t.annotations = ParseLabels(a[2].as<std::string>());
    t.severity = a[3].as<std::string>();
    t.starts_at_ms = a[4].as<int64_t>();
    t.ends_at_ms = now_ms;
    out->push_back(std::move(t));
  }
}

// A crash-loop rule over a window (Rule::restarts_within): fires for each service with more
// than r.threshold KIND_RESTARTING events within the window, resolves those firing that have
// no longer. In `w`, under the timer's advisory lock.
void CrashLoopsWithin(pqxx::work& w, const Rule& r, int64_t now_ms, std::vector<Transition>* out) {
  std::set<std::string> firing;
  for (const pqxx::row& a : w.exec_params(
           "SELECT fingerprint FROM alerts WHERE rule = $1 AND state = 'firing'", r.name)) {
    firing.insert(a[0].as<std::string>());
  }
  std::set<std::string> looping;
  for (const pqxx::row& a :
       w.exec_params("SELECT agent_id, service, count(*) FROM service_events "
                     "WHERE kind = 'KIND_RESTARTING' AND ts > now() - make_interval(secs => $1) "
                     "GROUP BY agent_id, service HAVING count(*) > $2",
                     absl::ToDoubleSeconds(r.restarts_within), static_cast<int64_t>(r.threshold))) {
    std::map<std::string, std::string> labels = {{"agent", a[0].as<std::string>()},
                                                 {"service", a[1].as<std::string>()}};
    bool match = r.name_globs.empty();
    for (const std::string& glob : r.name_globs) {
      match = match || fnmatch(glob.c_str(), labels["service"].c_str(), 0) == 0;
    }
    for (const auto& [k, v] : r.matchers) {
      auto it = labels.find(k);
      match = match && (it == labels.end() ? "" : it->second) == v;
    }
    if (!match) continue;
    Transition t;
    t.kind = Transition::kFiring;
    t.rule = r.name;
    t.labels = r.labels;
    t.labels.insert(labels.begin(), labels.end());
    t.labels["alertname"] = r.name;
    t.fingerprint = Fingerprint(t.labels);
    looping.insert(t.fingerprint);
    if (firing.count(t.fingerprint)) continue;
    t.value = static_cast<double>(a[2].as<int64_t>());
    t.annotations = RenderAnnotations(r, t.labels, t.value);
    t.severity = r.severity;
    t.starts_at_ms = now_ms;
    t.flap_threshold = r.flap_threshold;
    t.flap_window_ms = absl::ToInt64Milliseconds(r.flap_window);
    out->push_back(std::move(t));
  }
  ResolveFiringExcept(w, r, looping, now_ms, /*agent_absent=*/false, out);
}

}  // namespace

absl::StatusOr<std::vector<Transition>> PgStore::EvaluateAbsence(const std::vector<Rule>& rules,
                                                                 const std::string& generator_url) {
  std::vector<Transition> out;
  absl::Status s = Run("evaluate absence", [&](PgConnection& c) {
    out.clear();
    pqxx::work w(c);
    // One replica at a time; the others find the lock taken and leave it to that one.
    if (!w.exec1("SELECT pg_try_advisory_xact_lock(7400003)")[0].as<bool>()) return;
    const int64_t now_ms =
        w.exec1("SELECT (extract(epoch from now()) * 1000)::bigint")[0].as<int64_t>();
    for (const Rule& r : rules) {
      if (r.restarts_within != absl::ZeroDuration()) {
        CrashLoopsWithin(w, r, now_ms, &out);
        continue;
      }
      if (r.absent_for == absl::ZeroDuration()) continue;
      const double window = absl::ToDoubleSeconds(r.absent_for);
      std::set<std::string> firing;
      for (const pqxx::row& a : w.exec_params(
               "SELECT fingerprint FROM alerts WHERE rule = $1 AND state = 'firing'", r.name)) {
        firing.insert(a[0].as<std::string>());
      }
      // Agents silent for absent_for, and the ones heard from since (or deleted) of those firing.
      std::set<std::string> absent_now;
      for (const pqxx::row& a : w.exec_params(
               "SELECT agent_id, labels::text, (extract(epoch from last_seen) * 1000)::bigint "
               "FROM agents WHERE last_seen < now() - make_interval(secs => $1)",
               window)) {
        std::map<std::string, std::string> agent_labels = ParseLabels(a[1].as<std::string>());
        agent_labels["agent"] = a[0].as<std::string>();
        bool match = true;
        for (const auto& [k, v] : r.matchers) {
          auto it = agent_labels.find(k);
          match &= (it == agent_labels.end() ? "" : it->second) == v;
        }
        if (!match) continue;
        Transition t;
        t.kind = Transition::kFiring;
        t.agent_absent = true;
        t.rule = r.name;
        t.labels = r.labels;
        t.labels["alertname"] = r.name;
        t.labels["agent"] = a[0].as<std::string>();
        t.fingerprint = Fingerprint(t.labels);
        absent_now.insert(t.fingerprint);
        if (firing.count(t.fingerprint)) continue;
        t.value = static_cast<double>(now_ms - a[2].as<int64_t>()) / 1000;  // seconds silent
        t.annotations = RenderAnnotations(r, t.labels, t.value);
        if (!t.annotations.count("summary")) {
          t.annotations["summary"] =
              absl::StrCat("Agent ", t.labels["agent"], " has sent nothing for ",
                           absl::FormatDuration(r.absent_for));
        }
        t.severity = r.severity;
        t.starts_at_ms = now_ms;
        out.push_back(std::move(t));
      }
      ResolveFiringExcept(w, r, absent_now, now_ms, /*agent_absent=*/true, &out);
    }
    StoreTransitions(w, out, generator_url);
    w.commit();
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<int64_t> PgStore::ReplicaHeartbeat(const std::string& instance,
                                                  absl::Duration stale_after) {
  int64_t marked = 0;
  absl::Status s = Run("replica heartbeat", [&](PgConnection& c) {
    pqxx::work w(c);
    w.exec_params0(
        "INSERT INTO controlplane_replicas (instance, last_seen) VALUES ($1, now()) "
        "ON CONFLICT (instance) DO UPDATE SET last_seen = now()",
        instance);
    // A connection id is "<instance>-<n>".
    marked = w.exec_params0(
                  "UPDATE agents SET connected = false WHERE connected AND NOT EXISTS ("
                  "  SELECT 1 FROM controlplane_replicas r "
                  "  WHERE r.instance = split_part(agents.connection_id, '-', 1) "
                  "    AND r.last_seen > now() - make_interval(secs => $1))",
                  absl::ToDoubleSeconds(stale_after))
                 .affected_rows();
    w.exec0("DELETE FROM controlplane_replicas WHERE last_seen < now() - interval '1 day'");
    w.commit();
  });
  if (!s.ok()) return s;
  return marked;
}

absl::Status PgStore::MarkDisconnected(const std::string& agent_id,
                                       const std::string& connection_id) {
  return Run("mark agent disconnected", [&](PgConnection& c) {
    pqxx::work w(c);
    w.exec_params0(
        "UPDATE agents SET connected = false, last_seen = now() "
        "WHERE agent_id = $1 AND connection_id = $2",
        agent_id, connection_id);
    w.commit();
  });
}

absl::Status PgStore::TouchAgent(const std::string& agent_id) {
  return Run("touch agent", [&](pqxx::connection& c) {
    pqxx::work w(c);
    w.exec_params0("UPDATE agents SET last_seen = now() WHERE agent_id = $1", agent_id);
    w.commit();
  });
}

namespace {

// Milliseconds since the epoch as a PostgreSQL timestamptz expression on parameter $n.
std::string MsToTs(int n) {
  return absl::StrCat("(timestamptz 'epoch' + $", n, "::bigint * interval '1 millisecond')");
}
constexpr char kTsToMs[] = "(extract(epoch from %s) * 1000)::bigint";

pqxx::binarystring Binary(const std::string& bytes) { return pqxx::binarystring(bytes); }

int64_t DayOf(int64_t ms) {
  constexpr int64_t kDay = 86400000;
  return ms >= 0 ? ms / kDay : (ms - kDay + 1) / kDay;
}

// A durable batch ready to store: its blocks and the layout of its series.
struct PreparedBatch {
  uint64_t seq = 0;
  const v1::MetricBatch* batch = nullptr;
  std::vector<SampleBlock> blocks;
  std::vector<int64_t> ids;  // series id per sample, in order
  int64_t layout_id = 0;
};

}  // namespace

absl::Status PgStore::EnsurePartitions(const char* parent, const char* period,
                                       const std::set<int64_t>& days) {
  std::vector<int64_t> missing;
  {
    MutexLock lock(&mu_);
    for (int64_t d : days) {
      if (known_partitions_.count(PartitionKey(parent, period, d)) == 0) missing.push_back(d);
    }
  }
  if (missing.empty()) return absl::OkStatus();
  std::vector<std::string> made;
  absl::Status s = Run("create partitions", [&](PgConnection& c) {
    made.clear();
    pqxx::work w(c);
    w.exec0("SET LOCAL lock_timeout = '5s'");
    w.exec("SELECT pg_advisory_xact_lock(7400002)");  // one partition maker at a time
    for (int64_t d : missing) {
      w.exec_params("SELECT vigie_ensure_partition($1, $2, (date '1970-01-01' + $3::integer))",
                    parent, period, d);
      made.push_back(PartitionKey(parent, period, d));
    }
    w.commit();
  });
  if (!s.ok()) return s;
  MutexLock lock(&mu_);
  for (auto& k : made) known_partitions_.insert(std::move(k));
  return absl::OkStatus();
}

std::string PgStore::PartitionKey(const char* parent, const char* period, int64_t day) {
  // The names vigie_ensure_partition gives.
  const absl::CivilDay d = absl::CivilDay(1970, 1, 1) + day;
  if (std::string_view(period) == "month") {
    return absl::StrFormat("%s_p%04d%02d", parent, d.year(), d.month());
  }
  return absl::StrFormat("%s_p%04d%02d%02d", parent, d.year(), d.month(), d.day());
}

int64_t PgStore::RawCutoffMs(absl::Time now) const {
  return absl::ToUnixMillis(now - options_.retention_raw);
}

absl::StatusOr<IngestResult> PgStore::Ingest(const std::string& agent_id,
                                             const std::vector<v1::AgentMessage>& messages,
                                             const std::vector<Transition>& transitions,
                                             const std::vector<PendingChange>& pending,
                                             const std::string& generator_url) {
  // Outside the transaction (kept across its retries): blocks, and the partitions they need.
  // Blocks older than the raw retention are not stored (their partition is gone or going).
  IngestResult expired;
  std::vector<PreparedBatch> batches;
  std::set<int64_t> sample_days, check_days, event_days;
  const int64_t cutoff_ms = RawCutoffMs(absl::Now());
  for (const v1::AgentMessage& m : messages) {
    if (m.has_metrics() && m.metrics().samples_size() > 0) {
      PreparedBatch& b = batches.emplace_back();
      b.seq = DurableSequence(m);
      b.batch = &m.metrics();
      b.blocks = SplitIntoBlocks(m.metrics().samples());
      // Every sample's day (a re-split, over the series limit, may start a block on a later
      // day than any block here).
      for (const v1::Sample& smp : m.metrics().samples()) {
        if (smp.timestamp_ms() >= cutoff_ms) sample_days.insert(DayOf(smp.timestamp_ms()));
      }
      for (auto it = b.blocks.begin(); it != b.blocks.end();) {
        if (it->ts_ms < cutoff_ms) {
          expired.samples_expired += it->values.size();
          it = b.blocks.erase(it);
        } else {
          sample_days.insert(DayOf(it->ts_ms));
          ++it;
        }
      }
    } else if (m.has_checks()) {
      for (const v1::CheckResult& cr : m.checks().results()) {
        check_days.insert(DayOf(cr.timestamp_ms()));
      }
    } else if (m.has_service_event()) {
      event_days.insert(DayOf(m.service_event().timestamp_ms()));
    }
  }
  // Checks and events before the cutoff are stored too; only their day's partition is made.
  VIGIE_RETURN_IF_ERROR(EnsurePartitions("sample_blocks", "day", sample_days));
  VIGIE_RETURN_IF_ERROR(EnsurePartitions("check_results", "day", check_days));
  VIGIE_RETURN_IF_ERROR(EnsurePartitions("service_events", "day", event_days));

  IngestResult result;
  std::unique_ptr<AgentSeries> series = series_cache_.Take(agent_id);
  absl::Status s = Run("ingest", [&](PgConnection& c) {
    result = expired;
    pqxx::work w(c);
    // The row lock serializes ingest per agent, so the check below is race-free even when two
    // streams of the same agent overlap (and the rollup worker, which takes it too, never rolls
    // a bucket up while a sample for it is being stored).
    pqxx::result r =
        w.exec_params(absl::StrFormat("SELECT committed_sequence, coalesce(%s, 0) FROM agents "
                                      "WHERE agent_id = $1 FOR UPDATE",
                                      absl::StrFormat(kTsToMs, "rolled_up_to")),
                      agent_id);
    if (r.empty()) throw std::runtime_error("agent " + agent_id + " is not registered");
    const uint64_t committed = r[0][0].as<uint64_t>();
    const int64_t rolled_up_to = r[0][1].as<int64_t>();
    uint64_t highest = committed;
    for (const v1::AgentMessage& m : messages) {
      const uint64_t seq = DurableSequence(m);
      if (seq <= committed) {
        ++result.duplicates;
      } else {
        highest = std::max(highest, seq);
      }
    }
    // Samples: series ids, layouts, then every block of every batch in one statement.
    std::vector<int64_t> b_ts, b_seq, b_layout;
    std::vector<int32_t> b_pos, b_start, b_n, b_off_start;
    std::vector<double> vals;
    std::vector<int32_t> offsets;
    std::set<int64_t> dirty_buckets;
    for (PreparedBatch& b : batches) {
      if (b.seq <= committed) continue;
      ResolveSeries(w, agent_id, *b.batch, series.get(), &b.ids, &b.layout_id, &result);
      if (std::find(b.ids.begin(), b.ids.end(), 0) != b.ids.end()) {
        // Some series were over the agent's limit: store the others, with positions of the
        // layout of what is kept.
        google::protobuf::RepeatedPtrField<v1::Sample> kept;
        for (int i = 0; i < b.batch->samples_size(); ++i) {
          if (b.ids[i] != 0) *kept.Add() = b.batch->samples(i);
        }
        b.blocks = SplitIntoBlocks(kept);
        b.blocks.erase(std::remove_if(b.blocks.begin(), b.blocks.end(),
                                      [&](const SampleBlock& x) { return x.ts_ms < cutoff_ms; }),
                       b.blocks.end());
      }
      for (const SampleBlock& blk : b.blocks) {
        b_ts.push_back(blk.ts_ms);
        b_seq.push_back(static_cast<int64_t>(b.seq));
        b_layout.push_back(b.layout_id);
        b_pos.push_back(blk.first_pos);
        b_start.push_back(static_cast<int32_t>(vals.size()));
        b_n.push_back(static_cast<int32_t>(blk.values.size()));
        b_off_start.push_back(blk.offsets_ms.empty() ? -1 : static_cast<int32_t>(offsets.size()));
        vals.insert(vals.end(), blk.values.begin(), blk.values.end());
        offsets.insert(offsets.end(), blk.offsets_ms.begin(), blk.offsets_ms.end());
        result.samples_written += blk.values.size();
        if (rolled_up_to > 0 && blk.ts_ms < rolled_up_to) {
          // Late samples in buckets already rolled up: the rollup worker redoes those buckets.
          for (size_t i = 0; i < blk.values.size(); ++i) {
            const int64_t ts = blk.TimestampAt(i);
            if (ts < rolled_up_to) dirty_buckets.insert(RollupBucket(ts));
          }
        }
      }
    }
    if (!b_ts.empty()) {
      w.exec_params0(
          "INSERT INTO sample_blocks (agent_id, ts, batch_seq, layout_id, first_pos, vals, "
          "offsets_ms) "
          "SELECT $1, timestamptz 'epoch' + u.ts * interval '1 millisecond', u.seq, u.layout, "
          "u.pos, ($9::float8[])[u.start + 1 : u.start + u.n], "
          "CASE WHEN u.off >= 0 THEN ($10::int4[])[u.off + 1 : u.off + u.n] END "
          "FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::int4[], $6::int4[], $7::int4[], "
          "$8::int4[]) AS u(ts, seq, layout, pos, start, n, off)",
          agent_id, Binary(PgBinaryInt8Array(b_ts)), Binary(PgBinaryInt8Array(b_seq)),
          Binary(PgBinaryInt8Array(b_layout)), Binary(PgBinaryInt4Array(b_pos)),
          Binary(PgBinaryInt4Array(b_start)), Binary(PgBinaryInt4Array(b_n)),
          Binary(PgBinaryInt4Array(b_off_start)), Binary(PgBinaryFloat8Array(vals)),
          Binary(PgBinaryInt4Array(offsets)));
    }
    if (!dirty_buckets.empty()) {
      w.exec_params0(
          "INSERT INTO rollup_dirty (agent_id, bucket) "
          "SELECT $1, timestamptz 'epoch' + b * interval '1 millisecond' FROM unnest($2::int8[]) b "
          "ON CONFLICT DO NOTHING",
          agent_id,
          Binary(
              PgBinaryInt8Array(std::vector<int64_t>(dirty_buckets.begin(), dirty_buckets.end()))));
    }
    nlohmann::json checks = nlohmann::json::array();
    for (const v1::AgentMessage& m : messages) {
      const uint64_t seq = DurableSequence(m);
      if (seq <= committed) continue;
      if (m.has_checks()) {
        for (const v1::CheckResult& cr : m.checks().results()) {
          nlohmann::json labels = nlohmann::json::object();
          for (const auto& [k, v] : cr.labels()) labels[k] = v;
          checks.push_back({{"name", cr.name()},
                            {"target", cr.target()},
                            {"status", CheckStatusName(cr.status())},
                            {"latency", cr.latency_seconds()},
                            {"message", cr.message()},
                            {"labels", std::move(labels)},
                            {"ts", cr.timestamp_ms()},
                            {"seq", static_cast<int64_t>(seq)},
                            {"failures", cr.consecutive_failures()}});
        }
      } else if (m.has_service_event()) {
        const v1::ServiceEvent& e = m.service_event();
        const std::string kind = v1::ServiceEvent::Kind_Name(e.kind());
        w.exec_params0(
            absl::StrCat("INSERT INTO service_events (agent_id, service, kind, exit_code, "
                         "message, ts, batch_seq, signal) VALUES ($1, $2, $3, $4, $5, ",
                         MsToTs(6), ", $7, $8)"),
            agent_id, e.service(), kind, e.exit_code(), e.message(), e.timestamp_ms(),
            static_cast<int64_t>(seq), e.signal());
        w.exec_params0(absl::StrCat("INSERT INTO service_daily AS d VALUES ($1, $2, (", MsToTs(3),
                                    " AT TIME ZONE 'UTC')::date, $4, 1) "
                                    "ON CONFLICT (agent_id, service, day, kind) DO UPDATE SET "
                                    "events = d.events + 1"),
                       agent_id, e.service(), e.timestamp_ms(), kind);
        UpsertServiceState(w, agent_id, e);
      }
    }
    if (!checks.empty()) StoreCheckResults(w, agent_id, checks);
    StoreTransitions(w, transitions, generator_url);
    pg::StorePending(w, pending);
    if (highest > committed) {
      w.exec_params0(
          "UPDATE agents SET committed_sequence = $2, last_seen = now() WHERE agent_id = $1",
          agent_id, static_cast<int64_t>(highest));
    }
    w.commit();
    result.committed_sequence = highest;
  });
  if (!s.ok()) return s;  // the entry may hold ids of the rolled-back transaction: forget it
  series_cache_.Put(agent_id, std::move(series));
  return result;
}

void PgStore::StoreCheckResults(pqxx::transaction_base& w, const std::string& agent_id,
                                const nlohmann::json& results) {
  const std::string results_json = results.dump();
  // One statement each for the results, the daily counts and the current states, whatever the
  // number of results.
  static const std::string kRecords =
      "jsonb_to_recordset($2::jsonb) AS r(name text, target text, status text, latency float8, "
      "message text, labels jsonb, ts bigint, seq bigint, failures int)";
  static const std::string kTs = "(timestamptz 'epoch' + r.ts * interval '1 millisecond')";
  w.exec_params0(absl::StrCat("INSERT INTO check_results (agent_id, name, target, status, "
                              "latency_seconds, message, labels, ts, batch_seq) "
                              "SELECT $1, r.name, r.target, r.status, r.latency, r.message, "
                              "r.labels, ",
                              kTs, ", r.seq FROM ", kRecords),
                 agent_id, results_json);
  w.exec_params0(
      absl::StrCat("INSERT INTO check_daily AS d SELECT $1, r.name, (", kTs,
                   " AT TIME ZONE 'UTC')::date, count(*), count(*) FILTER (WHERE r.status = "
                   "'ok'), count(*) FILTER (WHERE r.status = 'warning'), count(*) FILTER "
                   "(WHERE r.status = 'critical'), sum(r.latency) FROM ",
                   kRecords,
                   " GROUP BY 2, 3 ON CONFLICT (agent_id, name, day) DO UPDATE SET "
                   "total = d.total + excluded.total, ok = d.ok + excluded.ok, "
                   "warning = d.warning + excluded.warning, "
                   "critical = d.critical + excluded.critical, "
                   "latency_seconds = d.latency_seconds + excluded.latency_seconds"),
      agent_id, results_json);
  // The latest state of each check. `since` is when its latest status began: within this
  // batch if the status changed here (a replayed spool holds several results), else the
  // stored `since` when the status is the stored one. A result older than the stored one (a
  // late resend) never overwrites it.
  struct State {
    std::string status;
    int64_t since = 0, last = 0;
    bool changed_here = false;
    const nlohmann::json* latest = nullptr;
  };
  std::map<std::string, State> states;
  for (const nlohmann::json& r : results) {  // in sequence order: each check's in time order
    State& st = states[r["name"].get<std::string>()];
    const std::string status = r["status"].get<std::string>();
    const int64_t ts = r["ts"].get<int64_t>();
    if (st.latest == nullptr || status != st.status) {
      st.changed_here = st.latest != nullptr;
      st.status = status;
      st.since = ts;
    }
    st.last = ts;
    st.latest = &r;
  }
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& [name, st] : states) {
    nlohmann::json row = *st.latest;
    row["since"] = st.since;
    row["keep_since"] = !st.changed_here;
    rows.push_back(std::move(row));
  }
  static const std::string kStates =
      "jsonb_to_recordset($2::jsonb) AS r(name text, target text, status text, latency float8, "
      "message text, labels jsonb, ts bigint, failures int, since bigint, keep_since bool)";
  static const std::string kSince = "(timestamptz 'epoch' + r.since * interval '1 millisecond')";
  w.exec_params0(
      absl::StrCat("WITH updated AS (UPDATE check_state s SET target = r.target, "
                   "status = r.status, since = CASE WHEN s.status = r.status AND r.keep_since "
                   "THEN s.since ELSE ",
                   kSince,
                   " END, message = r.message, "
                   "latency_seconds = r.latency, last_run = ",
                   kTs,
                   ", "
                   "consecutive_failures = r.failures, labels = r.labels FROM ",
                   kStates, " WHERE s.agent_id = $1 AND s.name = r.name AND ", kTs,
                   " >= s.last_run) "
                   "INSERT INTO check_state SELECT $1, r.name, r.target, r.status, ",
                   kSince, ", r.message, r.latency, ", kTs, ", r.failures, r.labels FROM ", kStates,
                   " WHERE NOT EXISTS (SELECT 1 FROM check_state x WHERE x.agent_id = $1 AND "
                   "x.name = r.name)"),
      agent_id, rows.dump());
}

void PgStore::ResolveSeries(pqxx::transaction_base& w, const std::string& agent_id,
                            const v1::MetricBatch& batch, AgentSeries* series,
                            std::vector<int64_t>* ids, int64_t* layout_id, IngestResult* result) {
  const int n = batch.samples_size();
  ids->assign(n, 0);
  // Most batches repeat the last layout: match by position, one key compare per sample.
  bool same_layout = series->layout_id != 0 && series->layout.size() == static_cast<size_t>(n);
  std::vector<int> missing;
  std::string key;
  for (int i = 0; i < n; ++i) {
    SeriesKey(batch.samples(i), &key);
    if (static_cast<size_t>(i) < series->layout.size() && series->layout[i]->first == key) {
      (*ids)[i] = series->layout[i]->second;
      continue;
    }
    same_layout = false;
    auto it = series->ids.find(key);
    if (it != series->ids.end()) {
      (*ids)[i] = it->second;
    } else {
      missing.push_back(i);
    }
  }
  if (same_layout) {
    *layout_id = series->layout_id;
    ++result->layout_hits;
    return;
  }
  if (!missing.empty()) {
    // New to this cache. Within the agent's series limit, insert what the table lacks, then
    // read every id back, in one go; samples of series beyond the limit are not stored.
    if (series->series_count < 0) {
      series->series_count =
          w.exec_params1("SELECT count(*) FROM series WHERE agent_id = $1", agent_id)[0]
              .as<int64_t>();
    }
    std::vector<std::string> names, labels;
    std::vector<std::string> keys;
    absl::flat_hash_map<std::string, size_t> distinct;  // key -> index in names
    std::vector<size_t> slot(missing.size());
    for (size_t m = 0; m < missing.size(); ++m) {
      const v1::Sample& smp = batch.samples(missing[m]);
      SeriesKey(smp, &key);
      auto [it, inserted] = distinct.try_emplace(key, names.size());
      if (inserted) {
        names.push_back(smp.name());
        labels.push_back(LabelsJson(smp.labels()));
        keys.push_back(key);
      }
      slot[m] = it->second;
    }
    const pqxx::binarystring names_param = Binary(PgBinaryTextArray(names));
    const pqxx::binarystring labels_param = Binary(PgBinaryTextArray(labels));
    // Existing rows first (a cache miss is often a restart, not a new series), then new ones
    // up to the limit.
    std::vector<int64_t> found_ids(names.size(), 0);
    auto read_back = [&] {
      for (const pqxx::row& row :
           w.exec_params("SELECT u.ord, s.id FROM unnest($2::text[], $3::text[]) WITH ORDINALITY "
                         "AS u(n, l, ord) JOIN series s ON s.agent_id = $1 AND s.name = u.n "
                         "AND s.labels = u.l::jsonb",
                         agent_id, names_param, labels_param)) {
        found_ids[row[0].as<size_t>() - 1] = row[1].as<int64_t>();
      }
    };
    read_back();
    std::vector<std::string> new_names, new_labels;
    for (size_t i = 0; i < names.size(); ++i) {
      if (found_ids[i] != 0) continue;
      if (series->series_count + static_cast<int64_t>(new_names.size()) >=
          static_cast<int64_t>(options_.max_series_per_agent)) {
        continue;
      }
      new_names.push_back(names[i]);
      new_labels.push_back(labels[i]);
    }
    if (!new_names.empty()) {
      pqxx::result inserted = w.exec_params(
          "INSERT INTO series (agent_id, name, labels) "
          "SELECT $1, u.n, u.l::jsonb FROM unnest($2::text[], $3::text[]) AS u(n, l) "
          "ON CONFLICT DO NOTHING RETURNING id",
          agent_id, Binary(PgBinaryTextArray(new_names)), Binary(PgBinaryTextArray(new_labels)));
      result->series_created += inserted.size();
      series->series_count += static_cast<int64_t>(inserted.size());
      read_back();
    }
    for (size_t i = 0; i < names.size(); ++i) {
      if (found_ids[i] != 0) series->Add(keys[i], found_ids[i]);
    }
    for (size_t m = 0; m < missing.size(); ++m) {
      (*ids)[missing[m]] = found_ids[slot[m]];
      if (found_ids[slot[m]] == 0) ++result->samples_over_series_limit;
    }
  }
  // The layout of what is stored: samples over the series limit (id 0) are left out.
  std::vector<int64_t> kept_ids;
  std::vector<std::string> kept_keys;
  kept_ids.reserve(n);
  kept_keys.reserve(n);
  for (int i = 0; i < n; ++i) {
    if ((*ids)[i] == 0) continue;
    kept_ids.push_back((*ids)[i]);
    SeriesKey(batch.samples(i), &kept_keys.emplace_back());
  }
  *layout_id = FindOrCreateLayout(w, agent_id, kept_ids);
  ++result->layouts_changed;
  series->SetLayout(kept_keys, kept_ids, *layout_id);
}

int64_t PgStore::FindOrCreateLayout(pqxx::transaction_base& w, const std::string& agent_id,
                                    const std::vector<int64_t>& ids) {
  const int64_t hash = LayoutHash(ids);
  const pqxx::binarystring ids_param = Binary(PgBinaryInt8Array(ids));
  pqxx::result r = w.exec_params(
      "SELECT id FROM series_layouts WHERE agent_id = $1 AND hash = $2 AND series_ids = $3::int8[] "
      "LIMIT 1",
      agent_id, hash, ids_param);
  if (!r.empty()) return r[0][0].as<int64_t>();
  // Two replicas racing here may both insert the same list: harmless, both ids are valid.
  return w
      .exec_params(
          "INSERT INTO series_layouts (agent_id, hash, series_ids) VALUES ($1, $2, $3::int8[]) "
          "RETURNING id",
          agent_id, hash, ids_param)[0][0]
      .as<int64_t>();
}

absl::StatusOr<std::vector<v1::Agent>> PgStore::ListAgents() {
  std::vector<v1::Agent> out;
  absl::Status s = Run("list agents", [&](pqxx::connection& c) {
    out.clear();
    pqxx::read_transaction t(c);
    for (const pqxx::row& r :
         t.exec(absl::StrCat("SELECT ", kAgentColumns, " FROM agents ORDER BY agent_id"))) {
      out.push_back(AgentFromRow(r));
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<v1::Agent> PgStore::GetAgent(const std::string& agent_id) {
  std::optional<v1::Agent> out;
  absl::Status s = Run("get agent", [&](pqxx::connection& c) {
    pqxx::read_transaction t(c);
    pqxx::result r = t.exec_params(
        absl::StrCat("SELECT ", kAgentColumns, " FROM agents WHERE agent_id = $1"), agent_id);
    if (!r.empty()) out = AgentFromRow(r[0]);
  });
  if (!s.ok()) return s;
  if (!out) return absl::NotFoundError(absl::StrCat("agent_id: no agent \"", agent_id, "\""));
  return *out;
}

absl::StatusOr<std::vector<ActiveAlert>> PgStore::LoadFiringAlerts() {
  std::vector<ActiveAlert> out;
  absl::Status s = Run("load alerts", [&](pqxx::connection& c) {
    out.clear();
    pqxx::read_transaction t(c);
    for (const pqxx::row& r :
         t.exec("SELECT rule, fingerprint, labels::text, value, "
                "(extract(epoch from active_since) * 1000)::bigint FROM alerts "
                "WHERE state = 'firing'")) {
      out.push_back({r[0].as<std::string>(), r[1].as<std::string>(),
                     ParseLabels(r[2].as<std::string>()), r[3].as<double>(), r[4].as<int64_t>()});
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<v1::QuerySamplesResponse> PgStore::QuerySamples(const v1::QuerySamplesRequest& req,
                                                               absl::Duration range,
                                                               uint32_t limit) {
  v1::QuerySamplesResponse out;
  const int64_t end_ms = absl::ToUnixMillis(absl::Now());
  const int64_t start_ms = end_ms - absl::ToInt64Milliseconds(range);
  absl::Status s = Run("query samples", [&](pqxx::connection& c) {
    out.Clear();
    pqxx::read_transaction t(c);
    // 1. The matching series. 2. Where each sits in the agent's layouts. 3. The values at those
    // positions, from blocks (raw) or rollups, read by index on (agent_id, ts).
    std::vector<int64_t> series_ids;
    std::map<int64_t, v1::SeriesSamples*> by_series;
    for (const pqxx::row& r : t.exec_params(
             "SELECT id, name, labels::text FROM series "
             "WHERE agent_id = $1 AND name = $2 AND labels @> $3::jsonb ORDER BY id LIMIT 10000",
             req.agent_id(), req.metric(), LabelsJson(req.matchers()))) {
      series_ids.push_back(r[0].as<int64_t>());
      v1::SeriesSamples* series = out.add_series();
      series->set_metric(r[1].as<std::string>());
      for (const auto& [k, v] : ParseLabels(r[2].as<std::string>())) {
        (*series->mutable_labels())[k] = v;
      }
      by_series[series_ids.back()] = series;
    }
    if (series_ids.empty()) return;
    std::vector<int64_t> q_layout, q_series;
    std::vector<int32_t> q_pos;
    for (const pqxx::row& r :
         t.exec_params("SELECT l.id, p.sid, p.pos FROM series_layouts l CROSS JOIN LATERAL ("
                       "  SELECT sid, pos FROM unnest($2::int8[]) AS sid, "
                       "  unnest(array_positions(l.series_ids, sid)) AS pos) p "
                       "WHERE l.agent_id = $1 AND l.series_ids && $2::int8[]",
                       req.agent_id(), Binary(PgBinaryInt8Array(series_ids)))) {
      q_layout.push_back(r[0].as<int64_t>());
      q_series.push_back(r[1].as<int64_t>());
      q_pos.push_back(r[2].as<int32_t>());
    }
    if (q_layout.empty()) return;
    const pqxx::binarystring layouts = Binary(PgBinaryInt8Array(q_layout));
    const pqxx::binarystring sids = Binary(PgBinaryInt8Array(q_series));
    const pqxx::binarystring poss = Binary(PgBinaryInt4Array(q_pos));
    pqxx::result rows;
    if (req.rollup() == v1::ROLLUP_NONE) {
      rows = t.exec_params(
          absl::StrCat("SELECT sid, t, v FROM ("
                       "  SELECT q.sid, ",
                       absl::StrFormat(kTsToMs, "b.ts"),
                       " + coalesce(b.offsets_ms[q.pos - b.first_pos], 0) AS t, "
                       "  b.vals[q.pos - b.first_pos] AS v "
                       "  FROM sample_blocks b JOIN unnest($2::int8[], $3::int8[], $4::int4[]) "
                       "    AS q(lid, sid, pos) ON b.layout_id = q.lid AND q.pos > b.first_pos "
                       "    AND q.pos <= b.first_pos + cardinality(b.vals) "
                       "  WHERE b.agent_id = $1 AND b.ts > ",
                       MsToTs(5), " - interval '1 hour' AND b.ts <= ", MsToTs(6),
                       ") x WHERE t > $5 AND t <= $6 ORDER BY sid, t LIMIT $7"),
          req.agent_id(), layouts, sids, poss, start_ms, end_ms, static_cast<int64_t>(limit));
    } else {
      const char* column = "lasts";
      switch (req.rollup()) {
        case v1::ROLLUP_MIN:
          column = "mins";
          break;
        case v1::ROLLUP_MAX:
          column = "maxs";
          break;
        case v1::ROLLUP_SUM:
          column = "sums";
          break;
        case v1::ROLLUP_COUNT:
          column = "counts";
          break;
        default:
          break;
      }
      const std::string value = req.rollup() == v1::ROLLUP_AVG
                                    ? "r.sums[q.pos] / r.counts[q.pos]"
                                    : absl::StrCat("r.", column, "[q.pos]::float8");
      rows = t.exec_params(
          absl::StrCat("SELECT q.sid, ", absl::StrFormat(kTsToMs, "r.bucket"), ", ", value,
                       " FROM sample_rollups r JOIN unnest($2::int8[], $3::int8[], $4::int4[]) "
                       "  AS q(lid, sid, pos) ON r.layout_id = q.lid "
                       "WHERE r.agent_id = $1 AND r.bucket > ",
                       MsToTs(5), " AND r.bucket <= ", MsToTs(6),
                       " ORDER BY q.sid, r.bucket LIMIT $7"),
          req.agent_id(), layouts, sids, poss, start_ms, end_ms, static_cast<int64_t>(limit));
    }
    for (const pqxx::row& r : rows) {
      v1::Sample* smp = by_series[r[0].as<int64_t>()]->add_samples();
      smp->set_timestamp_ms(r[1].as<int64_t>());
      smp->set_value(r[2].as<double>());
    }
    // Series without samples in the range are left out, as before.
    auto* list = out.mutable_series();
    list->erase(std::remove_if(list->begin(), list->end(),
                               [](const v1::SeriesSamples& x) { return x.samples_size() == 0; }),
                list->end());
  });
  if (!s.ok()) return s;
  return out;
}

namespace {

// A one-dimensional array column in text form (float8[] or int8[]); empty for NULL.
template <typename T>
std::vector<T> ParseArray(const pqxx::field& f) {
  std::vector<T> out;
  if (f.is_null()) return out;
  pqxx::array_parser parser = f.as_array();
  for (auto [juncture, text] = parser.get_next(); juncture != pqxx::array_parser::done;
       std::tie(juncture, text) = parser.get_next()) {
    if (juncture != pqxx::array_parser::string_value) continue;
    T v{};
    bool ok;
    if constexpr (std::is_floating_point_v<T>) {
      ok = absl::SimpleAtod(text, &v);
    } else {
      ok = absl::SimpleAtoi(text, &v);
    }
    if (!ok) throw std::runtime_error("unreadable array element: " + text);
    out.push_back(v);
  }
  return out;
}

// Loads the layouts that `blocks` (column `layout_column`) refer to and `layouts` lacks.
void LoadLayouts(pqxx::transaction_base& w, const pqxx::result& blocks, int layout_column,
                 std::map<int64_t, std::vector<int64_t>>* layouts) {
  std::vector<int64_t> wanted;
  for (const pqxx::row& b : blocks) {
    if (layouts->emplace(b[layout_column].as<int64_t>(), std::vector<int64_t>{}).second) {
      wanted.push_back(b[layout_column].as<int64_t>());
    }
  }
  if (wanted.empty()) return;
  for (const pqxx::row& l :
       w.exec_params("SELECT id, series_ids FROM series_layouts WHERE id = ANY($1::int8[])",
                     Binary(PgBinaryInt8Array(wanted)))) {
    (*layouts)[l[0].as<int64_t>()] = ParseArray<int64_t>(l[1]);
  }
}

// The day tables (raw data, dropped past retention.raw) and month tables (rollups).
constexpr const char* kDayTables[] = {"sample_blocks", "check_results", "service_events"};
constexpr const char* kMonthTables[] = {"sample_rollups"};

}  // namespace

absl::StatusOr<MaintenanceResult> PgStore::Maintain(absl::Time now) {
  MaintenanceResult result;
  const absl::CivilDay today = absl::ToCivilDay(now, absl::UTCTimeZone());
  const int64_t today_n = today - absl::CivilDay(1970, 1, 1);
  // A partition is dropped once its whole period is older than the retention.
  const absl::CivilDay raw_keep =
      absl::ToCivilDay(now - options_.retention_raw, absl::UTCTimeZone());
  const absl::CivilDay rollup_keep =
      absl::ToCivilDay(now - options_.retention_rollups, absl::UTCTimeZone());
  std::vector<std::string> dropped;
  absl::Status s = Run("maintain partitions", [&](PgConnection& c) {
    result = MaintenanceResult{};
    dropped.clear();
    pqxx::work w(c);
    // DDL waits for in-flight ingests; never long, and never behind a stuck one.
    w.exec0("SET LOCAL lock_timeout = '5s'");
    w.exec("SELECT pg_advisory_xact_lock(7400002)");
    // Ahead of time: today and the next two days, this month and the next.
    for (const char* parent : kDayTables) {
      for (int64_t d = today_n; d <= today_n + 2; ++d) {
        w.exec_params("SELECT vigie_ensure_partition($1, 'day', date '1970-01-01' + $2::integer)",
                      parent, d);
      }
    }
    for (const char* parent : kMonthTables) {
      for (int64_t d : {today_n, today_n + 31}) {
        w.exec_params("SELECT vigie_ensure_partition($1, 'month', date '1970-01-01' + $2::integer)",
                      parent, d);
      }
    }
    // Past retention: whole partitions, by the date in their name.
    for (const pqxx::row& r :
         w.exec("SELECT p.relname, c.relname FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
                "WHERE p.relname IN ('sample_blocks', 'check_results', 'service_events', "
                "'sample_rollups') ORDER BY 2")) {
      const std::string parent = r[0].as<std::string>();
      const std::string name = r[1].as<std::string>();
      const std::string suffix = name.substr(std::min(name.size(), parent.size() + 2));
      const bool monthly = parent == "sample_rollups";
      absl::CivilDay last_day;  // the last day the partition covers
      if (monthly) {
        absl::CivilMonth m;
        if (!absl::ParseCivilTime(absl::StrCat(suffix.substr(0, 4), "-", suffix.substr(4)), &m)) {
          continue;
        }
        last_day = absl::CivilDay(m + 1) - 1;
      } else {
        absl::CivilDay d;
        if (!absl::ParseCivilTime(
                absl::StrCat(suffix.substr(0, 4), "-", suffix.substr(4, 2), "-", suffix.substr(6)),
                &d)) {
          continue;
        }
        last_day = d;
      }
      if (last_day < (monthly ? rollup_keep : raw_keep)) {
        w.exec0(absl::StrCat("DROP TABLE ", w.quote_name(name)));
        dropped.push_back(name);
      }
    }
    const int64_t rollup_days = rollup_keep - absl::CivilDay(1970, 1, 1);
    const int64_t raw_days = raw_keep - absl::CivilDay(1970, 1, 1);
    result.daily_rows_deleted =
        w.exec_params0("DELETE FROM check_daily WHERE day < date '1970-01-01' + $1::integer",
                       rollup_days)
            .affected_rows() +
        w.exec_params0("DELETE FROM service_daily WHERE day < date '1970-01-01' + $1::integer",
                       rollup_days)
            .affected_rows();
    w.exec_params0(
        "DELETE FROM rollup_dirty WHERE bucket < timestamptz '1970-01-01 00:00:00+00' + "
        "$1::integer * interval '1 day'",
        raw_days);
    // Transitions the notifier accepted are kept a week (to look into); alert history as long
    // as rollups. Bounded per run so a first purge of a large backlog stays short.
    result.outbox_rows_deleted =
        w.exec0(
             "DELETE FROM notification_outbox WHERE id IN (SELECT id FROM notification_outbox "
             "WHERE delivered_at < now() - interval '7 days' LIMIT 100000)")
            .affected_rows();
    result.events_deleted =
        w.exec_params0(
             "DELETE FROM alert_events WHERE id IN (SELECT id FROM alert_events "
             "WHERE at < timestamptz '1970-01-01 00:00:00+00' + "
             "$1::integer * interval '1 day' LIMIT 100000)",
             rollup_days)
            .affected_rows();
    // Pending alerts of series that stopped reporting are forgotten after the raw retention.
    w.exec_params0(
        "DELETE FROM rule_pending WHERE since < timestamptz '1970-01-01 00:00:00+00' + "
        "$1::integer * interval '1 day'",
        raw_days);
    // Silences that ended and the audit log: as long as alert history.
    result.events_deleted +=
        w.exec_params0(
             "DELETE FROM silences WHERE ended_at < timestamptz '1970-01-01 00:00:00+00' "
             "+ $1::integer * interval '1 day'",
             rollup_days)
            .affected_rows() +
        w.exec_params0(
             "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log "
             "WHERE at < timestamptz '1970-01-01 00:00:00+00' + "
             "$1::integer * interval '1 day' LIMIT 100000)",
             rollup_days)
            .affected_rows();
    w.commit();
  });
  if (!s.ok()) return s;
  result.partitions_dropped = dropped.size();
  {
    MutexLock lock(&mu_);
    for (const std::string& name : dropped) known_partitions_.erase(name);
  }
  for (const std::string& name : dropped)
    log::Info("dropped partition past retention", {{"partition", name}});
  return result;
}

absl::StatusOr<RollupResult> PgStore::RollUp(absl::Time now, int max_agents) {
  RollupResult result;
  // A bucket is rolled up once it ended more than a grace period ago (samples still in flight).
  const int64_t upto = RollupBucket(absl::ToUnixMillis(now - absl::Minutes(2)));
  std::vector<std::string> agents;
  absl::Status s = Run("roll up: pick agents", [&](PgConnection& c) {
    agents.clear();
    pqxx::read_transaction t(c);
    for (const pqxx::row& r :
         t.exec_params(absl::StrCat("SELECT agent_id FROM agents WHERE rolled_up_to IS NULL OR "
                                    "rolled_up_to < ",
                                    MsToTs(1),
                                    " UNION SELECT agent_id FROM rollup_dirty "
                                    "ORDER BY 1 LIMIT $2"),
                       upto, max_agents)) {
      agents.push_back(r[0].as<std::string>());
    }
  });
  if (!s.ok()) return s;
  for (const std::string& agent : agents) {
    // Rollup partitions for the buckets this round may write: the months from the agent's
    // oldest block to now (made once; later calls find them known).
    absl::StatusOr<RollupResult> one = RollUpAgent(agent, upto);
    if (!one.ok()) {
      // One agent's failure must not hold the others back: count it, go on.
      ++result.failed;
      result.first_error = one.status();
      continue;
    }
    result.buckets_written += one->buckets_written;
    result.agents += 1;
    result.more |= one->more;
  }
  result.more |= agents.size() == static_cast<size_t>(max_agents);
  return result;
}

absl::StatusOr<RollupResult> PgStore::RollUpAgent(const std::string& agent, int64_t upto) {
  RollupResult result;
  std::set<int64_t> months;
  // First pass without the lock: which months the buckets fall in, so partitions exist before
  // the transaction that writes them.
  absl::Status s = Run("roll up: range", [&](PgConnection& c) {
    months.clear();
    pqxx::read_transaction t(c);
    pqxx::result r = t.exec_params(
        absl::StrFormat("SELECT coalesce(%s, (SELECT %s FROM sample_blocks WHERE agent_id = $1)), "
                        "(SELECT min(%s) FROM rollup_dirty WHERE agent_id = $1) "
                        "FROM agents WHERE agent_id = $1",
                        absl::StrFormat(kTsToMs, "rolled_up_to"),
                        absl::StrFormat(kTsToMs, "min(ts)"), absl::StrFormat(kTsToMs, "bucket")),
        agent);
    if (r.empty()) return;
    for (int col : {0, 1}) {
      if (r[0][col].is_null()) continue;
      for (int64_t d = DayOf(r[0][col].as<int64_t>()); d <= DayOf(upto) + 31; d += 28) {
        months.insert(d);
      }
    }
    months.insert(DayOf(upto));
  });
  if (!s.ok()) return s;
  VIGIE_RETURN_IF_ERROR(EnsurePartitions("sample_rollups", "month", months));

  s = Run("roll up", [&](PgConnection& c) {
    result = RollupResult{};
    pqxx::work w(c);
    // The agent's row lock: no ingest of this agent is in flight while its buckets are read, so
    // a late sample either is read here or finds rolled_up_to advanced and marks its bucket.
    pqxx::result r = w.exec_params(
        absl::StrFormat("SELECT %s, (SELECT %s FROM sample_blocks WHERE agent_id = $1) "
                        "FROM agents WHERE agent_id = $1 FOR UPDATE",
                        absl::StrFormat(kTsToMs, "rolled_up_to"),
                        absl::StrFormat(kTsToMs, "min(ts)")),
        agent);
    if (r.empty()) return;
    std::set<int64_t> buckets;
    int64_t from = upto;
    if (!r[0][0].is_null()) {
      from = r[0][0].as<int64_t>();
    } else if (!r[0][1].is_null()) {
      from = RollupBucket(r[0][1].as<int64_t>());
    }
    // At most an hour of buckets per transaction: short locks, bounded memory.
    const int64_t to = std::min(upto, from + 12 * kRollupBucketMs);
    for (int64_t b = from; b < to; b += kRollupBucketMs) buckets.insert(b);
    // At most a day of late buckets per transaction, oldest first; the rest next round.
    for (const pqxx::row& d : w.exec_params(
             absl::StrFormat("DELETE FROM rollup_dirty WHERE (agent_id, bucket) IN ("
                             "SELECT agent_id, bucket FROM rollup_dirty WHERE agent_id = $1 "
                             "ORDER BY bucket LIMIT 288) RETURNING %s",
                             absl::StrFormat(kTsToMs, "bucket")),
             agent)) {
      buckets.insert(d[0].as<int64_t>());
    }
    std::map<int64_t, RollupBuilder> built;
    std::map<int64_t, std::vector<int64_t>> layouts;
    // Read contiguous runs of buckets with one range scan each.
    for (auto it = buckets.begin(); it != buckets.end();) {
      const int64_t run_start = *it;
      int64_t run_end = run_start + kRollupBucketMs;
      for (++it; it != buckets.end() && *it == run_end; ++it) run_end += kRollupBucketMs;
      pqxx::result blocks =
          w.exec_params(absl::StrCat("SELECT ", absl::StrFormat(kTsToMs, "ts"),
                                     ", layout_id, first_pos, vals, offsets_ms FROM sample_blocks "
                                     "WHERE agent_id = $1 AND ts > ",
                                     MsToTs(2), " - interval '1 hour' AND ts < ", MsToTs(3)),
                        agent, run_start, run_end);
      LoadLayouts(w, blocks, 1, &layouts);
      for (const pqxx::row& b : blocks) {
        const int64_t ts = b[0].as<int64_t>();
        const std::vector<int64_t>& layout = layouts[b[1].as<int64_t>()];
        const auto first = b[2].as<size_t>();
        const std::vector<double> vals = ParseArray<double>(b[3]);
        const std::vector<int64_t> offsets = ParseArray<int64_t>(b[4]);
        for (size_t i = 0; i < vals.size(); ++i) {
          const int64_t sample_ts = ts + (offsets.empty() ? 0 : offsets[i]);
          const int64_t bucket = RollupBucket(sample_ts);
          if (sample_ts < run_start || sample_ts >= run_end || buckets.count(bucket) == 0) continue;
          if (first + i >= layout.size()) throw std::runtime_error("block beyond its layout");
          built[bucket].Add(layout[first + i], sample_ts, vals[i]);
        }
      }
    }
    for (const auto& [bucket, builder] : built) {
      const RollupStats& st = builder.stats();
      const int64_t layout_id = FindOrCreateLayout(w, agent, st.series_ids);
      w.exec_params0(
          absl::StrCat(
              "INSERT INTO sample_rollups (agent_id, bucket, layout_id, mins, maxs, sums, lasts, "
              "counts) VALUES ($1, ",
              MsToTs(2),
              ", $3, $4::float8[], $5::float8[], $6::float8[], $7::float8[], $8::int4[]) "
              "ON CONFLICT (agent_id, bucket) DO UPDATE SET layout_id = excluded.layout_id, "
              "mins = excluded.mins, maxs = excluded.maxs, sums = excluded.sums, "
              "lasts = excluded.lasts, counts = excluded.counts"),
          agent, bucket, layout_id, Binary(PgBinaryFloat8Array(st.mins)),
          Binary(PgBinaryFloat8Array(st.maxs)), Binary(PgBinaryFloat8Array(st.sums)),
          Binary(PgBinaryFloat8Array(st.lasts)), Binary(PgBinaryInt4Array(st.counts)));
      ++result.buckets_written;
    }
    w.exec_params0(absl::StrCat("UPDATE agents SET rolled_up_to = ", MsToTs(2),
                                " WHERE agent_id = $1 AND (rolled_up_to IS NULL OR "
                                "rolled_up_to < ",
                                MsToTs(2), ")"),
                   agent, to);
    w.commit();
    result.more = to < upto;
  });
  if (!s.ok()) return s;
  return result;
}

absl::StatusOr<int> PgStore::DispatchOutbox(
    int limit, absl::Duration lease,
    const std::function<DeliveryOutcome(const OutboxEntry&)>& deliver) {
  // 1. Claim, in a transaction of its own: the oldest undelivered transition of each alert,
  // when due and not claimed by a live lease.
  std::vector<OutboxEntry> claimed;
  std::vector<std::string> unreadable;
  absl::Status s = Run("claim outbox", [&](pqxx::connection& c) {
    claimed.clear();
    unreadable.clear();
    pqxx::work w(c);
    pqxx::result rows = w.exec_params(
        "UPDATE notification_outbox o SET leased_until = now() + make_interval(secs => $2) "
        "WHERE o.id IN ("
        "  SELECT d.id FROM notification_outbox d "
        "  WHERE d.delivered_at IS NULL AND d.next_attempt_at <= now() "
        "    AND (d.leased_until IS NULL OR d.leased_until < now()) "
        "    AND NOT EXISTS (SELECT 1 FROM notification_outbox e WHERE e.alert = d.alert "
        "                    AND e.delivered_at IS NULL AND e.id < d.id) "
        "  ORDER BY d.id LIMIT $1 FOR UPDATE SKIP LOCKED) "
        "RETURNING o.id, o.request::text, o.attempts",
        limit, absl::ToDoubleSeconds(lease));
    for (const pqxx::row& r : rows) {
      OutboxEntry e;
      e.id = r[0].as<int64_t>();
      e.attempts = r[2].as<int>();
      auto parsed = google::protobuf::util::JsonStringToMessage(r[1].as<std::string>(), &e.request);
      if (!parsed.ok()) {
        w.exec_params0(
            "UPDATE notification_outbox SET last_error = $2, leased_until = NULL, "
            "next_attempt_at = now() + interval '1 hour' WHERE id = $1",
            e.id, "unreadable request: " + parsed.message().ToString());
        continue;
      }
      claimed.push_back(std::move(e));
    }
    w.commit();
  });
  if (!s.ok()) return s;
  std::sort(claimed.begin(), claimed.end(),
            [](const OutboxEntry& a, const OutboxEntry& b) { return a.id < b.id; });
  // 2. Deliver with no transaction open; 3. record each outcome at once. A record that fails
  // (the database went away) leaves the lease to expire: the entry is sent again later and the
  // notifier drops it as a duplicate of its key.
  int delivered = 0;
  for (size_t i = 0; i < claimed.size(); ++i) {
    const OutboxEntry& e = claimed[i];
    DeliveryOutcome o = deliver(e);
    absl::Status recorded = Run("record outbox", [&](pqxx::connection& c) {
      pqxx::work w(c);
      if (o.delivered) {
        w.exec_params0(
            "UPDATE notification_outbox SET delivered_at = now(), attempts = attempts + 1, "
            "last_error = '', leased_until = NULL WHERE id = $1",
            e.id);
      } else {
        w.exec_params0(
            "UPDATE notification_outbox SET attempts = attempts + 1, last_error = $2, "
            "leased_until = NULL, next_attempt_at = now() + make_interval(secs => $3) "
            "WHERE id = $1",
            e.id, o.error.substr(0, 1000), absl::ToDoubleSeconds(o.retry_in));
      }
      if (o.stop && i + 1 < claimed.size()) {
        // The notifier is away: give back what this pass did not try, to retry with it.
        std::string ids = "{";
        for (size_t j = i + 1; j < claimed.size(); ++j) {
          absl::StrAppend(&ids, j == i + 1 ? "" : ",", claimed[j].id);
        }
        ids += "}";
        w.exec_params0(
            "UPDATE notification_outbox SET leased_until = NULL, "
            "next_attempt_at = now() + make_interval(secs => $2) WHERE id = ANY($1::bigint[])",
            ids, absl::ToDoubleSeconds(o.retry_in));
      }
      w.commit();
    });
    if (!recorded.ok()) return recorded;
    if (o.delivered) ++delivered;
    if (o.stop) break;
  }
  return delivered;
}

absl::StatusOr<Store::OutboxStatus> PgStore::PendingOutbox() {
  OutboxStatus out;
  absl::Status s = Run("count outbox", [&](pqxx::connection& c) {
    pqxx::read_transaction t(c);
    pqxx::row r = t.exec1(
        "SELECT count(*), coalesce(extract(epoch from now() - min(created_at)), 0) "
        "FROM notification_outbox WHERE delivered_at IS NULL");
    out.pending = r[0].as<int64_t>();
    out.oldest = absl::Seconds(r[1].as<double>());
  });
  if (!s.ok()) return s;
  return out;
}

namespace {
constexpr char kTokenColumns[] =
    "id, kind, agent_id, encode(sha256, 'hex'), description, created_by, "
    "extract(epoch from created_at)::bigint, coalesce(extract(epoch from revoked_at)::bigint, 0)";

TokenRecord TokenFromRow(const pqxx::row& r) {
  TokenRecord t;
  t.id = r[0].as<std::string>();
  t.kind = TokenKindFromName(r[1].as<std::string>());
  t.agent_id = r[2].as<std::string>();
  t.sha256 = absl::HexStringToBytes(r[3].as<std::string>());
  t.description = r[4].as<std::string>();
  t.created_by = r[5].as<std::string>();
  t.created_at_unix = r[6].as<int64_t>();
  t.revoked_at_unix = r[7].as<int64_t>();
  return t;
}
}  // namespace

absl::StatusOr<TokenRecord> PgStore::CreateToken(const TokenRecord& token) {
  std::optional<TokenRecord> out;
  absl::Status s = Run("create token", [&](pqxx::connection& c) {
    pqxx::work t(c);
    pqxx::result r = t.exec_params(
        absl::StrCat("INSERT INTO tokens (id, kind, agent_id, sha256, description, created_by) "
                     "VALUES ($1, $2, $3, decode($4, 'hex'), $5, $6) "
                     "ON CONFLICT DO NOTHING RETURNING ",
                     kTokenColumns),
        token.id, TokenKindName(token.kind), token.agent_id, absl::BytesToHexString(token.sha256),
        token.description, token.created_by);
    t.commit();
    if (!r.empty()) out = TokenFromRow(r[0]);
  });
  if (!s.ok()) return s;
  if (!out) return absl::AlreadyExistsError("id: a token with this id or secret exists; retry");
  return *out;
}

absl::StatusOr<std::vector<TokenRecord>> PgStore::ListTokens() {
  std::vector<TokenRecord> out;
  absl::Status s = Run("list tokens", [&](pqxx::connection& c) {
    out.clear();
    pqxx::read_transaction t(c);
    for (const pqxx::row& r : t.exec(absl::StrCat("SELECT ", kTokenColumns, " FROM tokens"))) {
      out.push_back(TokenFromRow(r));
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<TokenRecord> PgStore::RevokeToken(const std::string& id) {
  std::optional<TokenRecord> out;
  absl::Status s = Run("revoke token", [&](pqxx::connection& c) {
    pqxx::work t(c);
    t.exec_params("UPDATE tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", id);
    pqxx::result r =
        t.exec_params(absl::StrCat("SELECT ", kTokenColumns, " FROM tokens WHERE id = $1"), id);
    t.commit();
    if (!r.empty()) out = TokenFromRow(r[0]);
  });
  if (!s.ok()) return s;
  if (!out) return absl::NotFoundError(absl::StrCat("id: no token \"", id, "\""));
  return *out;
}

absl::Status PgStore::UpsertBootstrapToken(const TokenRecord& token) {
  return Run("bootstrap token", [&](pqxx::connection& c) {
    pqxx::work t(c);
    t.exec_params(
        "INSERT INTO tokens (id, kind, sha256, description) VALUES ($1, $2, decode($3, 'hex'), $4) "
        "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, sha256 = excluded.sha256, "
        "description = excluded.description, revoked_at = NULL",
        token.id, TokenKindName(token.kind), absl::BytesToHexString(token.sha256),
        token.description);
    t.commit();
  });
}

absl::StatusOr<std::vector<std::string>> PgStore::AgentsBehind(const std::string& target,
                                                               int limit) {
  std::vector<std::string> out;
  absl::Status s = Run("remote write: agents behind", [&](PgConnection& c) {
    out.clear();
    pqxx::read_transaction t(c);
    for (const pqxx::row& r :
         t.exec_params("SELECT a.agent_id FROM agents a LEFT JOIN remote_write_progress p "
                       "ON p.target = $1 AND p.agent_id = a.agent_id "
                       "WHERE a.committed_sequence > coalesce(p.forwarded_seq, 0) "
                       "ORDER BY coalesce(p.updated_at, '-infinity') LIMIT $2",
                       target, limit)) {
      out.push_back(r[0].as<std::string>());
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<size_t> PgStore::Forward(
    const std::string& target, const std::string& agent, size_t max_samples,
    const std::function<absl::Status(const ForwardChunk&)>& send) {
  size_t forwarded = 0;
  absl::Status send_status;
  absl::Status s = Run("remote write: forward", [&](PgConnection& c) {
    forwarded = 0;
    send_status = absl::OkStatus();
    {
      pqxx::work w(c);
      w.exec_params0(
          "INSERT INTO remote_write_progress (target, agent_id) VALUES ($1, $2) "
          "ON CONFLICT DO NOTHING",
          target, agent);
      w.commit();
    }
    pqxx::work w(c);
    pqxx::result cur = w.exec_params(
        "SELECT p.forwarded_seq, a.committed_sequence FROM remote_write_progress p "
        "JOIN agents a USING (agent_id) WHERE p.target = $1 AND p.agent_id = $2 "
        "FOR UPDATE OF p SKIP LOCKED",
        target, agent);
    if (cur.empty()) return;  // another replica has it
    ForwardChunk chunk;
    chunk.agent_id = agent;
    chunk.from_seq = cur[0][0].as<uint64_t>();
    const uint64_t committed = cur[0][1].as<uint64_t>();
    // The batch sizes after the cursor, to cut at whole batches.
    uint64_t through = committed;
    size_t total = 0;
    for (const pqxx::row& r : w.exec_params(
             "SELECT batch_seq, sum(cardinality(vals)) FROM sample_blocks "
             "WHERE agent_id = $1 AND batch_seq > $2 AND batch_seq <= $3 "
             "GROUP BY batch_seq ORDER BY batch_seq LIMIT 10000",
             agent, static_cast<int64_t>(chunk.from_seq), static_cast<int64_t>(committed))) {
      const size_t n = r[1].as<size_t>();
      if (total > 0 && total + n > max_samples) {
        through = r[0].as<uint64_t>() - 1;
        break;
      }
      total += n;
      through = r[0].as<uint64_t>();
    }
    chunk.through_seq = through;
    if (total > 0) {
      std::map<int64_t, std::vector<int64_t>> layouts;
      pqxx::result blocks =
          w.exec_params(absl::StrCat("SELECT ", absl::StrFormat(kTsToMs, "ts"),
                                     ", layout_id, first_pos, vals, offsets_ms FROM sample_blocks "
                                     "WHERE agent_id = $1 AND batch_seq > $2 AND batch_seq <= $3 "
                                     "ORDER BY batch_seq, first_pos"),
                        agent, static_cast<int64_t>(chunk.from_seq), static_cast<int64_t>(through));
      LoadLayouts(w, blocks, 1, &layouts);
      absl::flat_hash_map<int64_t, size_t> index;
      for (const pqxx::row& b : blocks) {
        const int64_t ts = b[0].as<int64_t>();
        const std::vector<int64_t>& layout = layouts[b[1].as<int64_t>()];
        const auto first = b[2].as<size_t>();
        const std::vector<double> vals = ParseArray<double>(b[3]);
        const std::vector<int64_t> offsets = ParseArray<int64_t>(b[4]);
        for (size_t i = 0; i < vals.size() && first + i < layout.size(); ++i) {
          auto [it, inserted] = index.try_emplace(layout[first + i], chunk.series.size());
          if (inserted) chunk.series.push_back({layout[first + i], {}});
          chunk.series[it->second].samples.emplace_back(ts + (offsets.empty() ? 0 : offsets[i]),
                                                        vals[i]);
          ++chunk.samples;
        }
      }
      send_status = send(chunk);
      if (!send_status.ok()) return;  // rolled back: the cursor stays
      forwarded = chunk.samples;
    }
    w.exec_params0(
        "UPDATE remote_write_progress SET forwarded_seq = $3, updated_at = now() "
        "WHERE target = $1 AND agent_id = $2",
        target, agent, static_cast<int64_t>(through));
    w.commit();
  });
  if (!s.ok()) return s;
  if (!send_status.ok()) return send_status;
  return forwarded;
}

absl::StatusOr<std::vector<std::pair<int64_t, std::map<std::string, std::string>>>>
PgStore::SeriesLabels(const std::vector<int64_t>& ids) {
  std::vector<std::pair<int64_t, std::map<std::string, std::string>>> out;
  absl::Status s = Run("series labels", [&](PgConnection& c) {
    out.clear();
    pqxx::read_transaction t(c);
    for (const pqxx::row& r :
         t.exec_params("SELECT id, name, labels::text FROM series WHERE id = ANY($1::int8[])",
                       Binary(PgBinaryInt8Array(ids)))) {
      auto labels = ParseLabels(r[2].as<std::string>());
      labels["__name__"] = r[1].as<std::string>();
      out.emplace_back(r[0].as<int64_t>(), std::move(labels));
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<int64_t> PgStore::ForwardBacklog(const std::string& target) {
  int64_t n = 0;
  absl::Status s = Run("remote write: backlog", [&](PgConnection& c) {
    pqxx::read_transaction t(c);
    n = t.exec_params1(
             "SELECT coalesce(sum(a.committed_sequence - coalesce(p.forwarded_seq, 0)), 0) "
             "FROM agents a LEFT JOIN remote_write_progress p ON p.target = $1 AND "
             "p.agent_id = a.agent_id",
             target)[0]
            .as<int64_t>();
  });
  if (!s.ok()) return s;
  return n;
}

}  // namespace vigie::controlplane
