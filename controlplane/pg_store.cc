#include "controlplane/pg_store.h"

#include <pqxx/pqxx>
#include <tuple>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/agent_message.h"
#include "common/log.h"
#include "common/mutex.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace vigie::controlplane {

class PgConnection : public pqxx::connection {
 public:
  using pqxx::connection::connection;
};

namespace {

using Labels = std::map<std::string, std::string>;

template <typename Map>
std::string LabelsJson(const Map& labels) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : labels) j[k] = v;
  return j.dump();
}

Labels ParseLabels(const std::string& json) {
  Labels out;
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    out[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
  }
  return out;
}

std::string PgTime(int64_t ms) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%E3S+00", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

const char* CheckStatusName(v1::CheckStatus s) {
  switch (s) {
    case v1::CHECK_STATUS_OK:
      return "ok";
    case v1::CHECK_STATUS_WARNING:
      return "warning";
    case v1::CHECK_STATUS_CRITICAL:
      return "critical";
    default:
      return "unknown";
  }
}

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

// Per-connection staging table for COPY; rows vanish at commit.
constexpr char kStagingTable[] =
    "CREATE TEMP TABLE IF NOT EXISTS staging_samples ("
    " name text NOT NULL, labels jsonb NOT NULL, ts timestamptz NOT NULL,"
    " value double precision NOT NULL, batch_seq bigint NOT NULL) ON COMMIT DELETE ROWS";

}  // namespace

PgStore::PgStore(PgStoreOptions options) : options_(std::move(options)) {}

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
    n.exec0(kStagingTable);
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
    // 42P01 (undefined table) on our per-connection staging table means libpqxx reconnected
    // silently and the session state set up in Connect() is gone: replace the connection.
    if (state == "42P01") {
      broken = true;
      code = absl::StatusCode::kUnavailable;
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

absl::StatusOr<IngestResult> PgStore::Ingest(const std::string& agent_id,
                                             const std::vector<v1::AgentMessage>& messages,
                                             const std::vector<Transition>& transitions,
                                             const std::string& generator_url) {
  IngestResult result;
  absl::Status s = Run("ingest", [&](pqxx::connection& c) {
    result = IngestResult{};
    pqxx::work w(c);
    // The row lock serializes ingest per agent, so the check below is race-free even when two
    // streams of the same agent overlap.
    pqxx::result r = w.exec_params(
        "SELECT committed_sequence FROM agents WHERE agent_id = $1 FOR UPDATE", agent_id);
    if (r.empty()) throw std::runtime_error("agent " + agent_id + " is not registered");
    const uint64_t committed = r[0][0].as<uint64_t>();
    uint64_t highest = committed;
    bool have_samples = false;
    {
      pqxx::stream_to copy(w, "staging_samples",
                           std::vector<std::string>{"name", "labels", "ts", "value", "batch_seq"});
      for (const v1::AgentMessage& m : messages) {
        const uint64_t seq = DurableSequence(m);
        if (seq <= committed) {
          ++result.duplicates;
          continue;
        }
        highest = std::max(highest, seq);
        if (!m.has_metrics()) continue;
        for (const v1::Sample& smp : m.metrics().samples()) {
          copy << std::make_tuple(smp.name(), LabelsJson(smp.labels()), PgTime(smp.timestamp_ms()),
                                  smp.value(), static_cast<int64_t>(seq));
          ++result.samples_written;
          have_samples = true;
        }
      }
      copy.complete();
    }
    if (have_samples) {
      w.exec_params0(
          "INSERT INTO series (agent_id, name, labels) "
          "SELECT DISTINCT $1, name, labels FROM staging_samples ON CONFLICT DO NOTHING",
          agent_id);
      w.exec_params0(
          "INSERT INTO samples (series_id, ts, value, batch_seq) "
          "SELECT s.id, st.ts, st.value, st.batch_seq FROM staging_samples st "
          "JOIN series s ON s.agent_id = $1 AND s.name = st.name AND s.labels = st.labels",
          agent_id);
    }
    for (const v1::AgentMessage& m : messages) {
      const uint64_t seq = DurableSequence(m);
      if (seq <= committed) continue;
      if (m.has_checks()) {
        for (const v1::CheckResult& cr : m.checks().results()) {
          w.exec_params0(
              "INSERT INTO check_results (agent_id, name, target, status, latency_seconds, "
              "message, labels, ts, batch_seq) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, "
              "$8::timestamptz, $9)",
              agent_id, cr.name(), cr.target(), CheckStatusName(cr.status()), cr.latency_seconds(),
              cr.message(), LabelsJson(cr.labels()), PgTime(cr.timestamp_ms()),
              static_cast<int64_t>(seq));
        }
      } else if (m.has_service_event()) {
        const v1::ServiceEvent& e = m.service_event();
        w.exec_params0(
            "INSERT INTO service_events (agent_id, service, kind, exit_code, message, ts, "
            "batch_seq) VALUES ($1, $2, $3, $4, $5, $6::timestamptz, $7)",
            agent_id, e.service(), v1::ServiceEvent::Kind_Name(e.kind()), e.exit_code(),
            e.message(), PgTime(e.timestamp_ms()), static_cast<int64_t>(seq));
      }
    }
    for (const Transition& t : transitions) {
      const bool firing = t.kind == Transition::kFiring;
      const std::string key = t.IdempotencyKey();
      if (firing) {
        w.exec_params0(
            "INSERT INTO alerts (rule, fingerprint, labels, annotations, severity, state, value, "
            "active_since) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, 'firing', $6, "
            "$7::timestamptz) ON CONFLICT (rule, fingerprint) DO UPDATE SET "
            "labels = excluded.labels, annotations = excluded.annotations, "
            "severity = excluded.severity, state = 'firing', value = excluded.value, "
            "active_since = excluded.active_since, resolved_at = NULL, acknowledged_by = ''",
            t.rule, t.fingerprint, LabelsJson(t.labels), LabelsJson(t.annotations), t.severity,
            t.value, PgTime(t.starts_at_ms));
      } else {
        w.exec_params0(
            "UPDATE alerts SET state = 'resolved', value = $3, resolved_at = $4::timestamptz "
            "WHERE rule = $1 AND fingerprint = $2",
            t.rule, t.fingerprint, t.value, PgTime(t.ends_at_ms));
      }
      w.exec_params0(
          "INSERT INTO alert_events (rule, fingerprint, status, value, at, idempotency_key) "
          "VALUES ($1, $2, $3, $4, $5::timestamptz, $6) ON CONFLICT (idempotency_key) DO NOTHING",
          t.rule, t.fingerprint, firing ? "firing" : "resolved", t.value,
          PgTime(firing ? t.starts_at_ms : t.ends_at_ms), key);
      v1::NotifyRequest req;
      req.set_idempotency_key(key);
      v1::Notification* n = req.mutable_notification();
      n->set_status(firing ? v1::Notification::STATUS_FIRING : v1::Notification::STATUS_RESOLVED);
      n->set_rule(t.rule);
      n->set_fingerprint(t.fingerprint);
      n->set_severity(t.severity);
      for (const auto& [k, v] : t.labels) (*n->mutable_labels())[k] = v;
      for (const auto& [k, v] : t.annotations) (*n->mutable_annotations())[k] = v;
      n->set_value(t.value);
      n->set_starts_at_ms(t.starts_at_ms);
      n->set_ends_at_ms(t.ends_at_ms);
      n->set_generator_url(generator_url);
      std::string json;
      (void)google::protobuf::util::MessageToJsonString(req, &json);
      w.exec_params0(
          "INSERT INTO notification_outbox (idempotency_key, request) VALUES ($1, $2::jsonb) "
          "ON CONFLICT (idempotency_key) DO NOTHING",
          key, json);
    }
    if (highest > committed) {
      w.exec_params0(
          "UPDATE agents SET committed_sequence = $2, last_seen = now() WHERE agent_id = $1",
          agent_id, static_cast<int64_t>(highest));
    }
    w.commit();
    result.committed_sequence = highest;
  });
  if (!s.ok()) return s;
  return result;
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

absl::StatusOr<std::vector<v1::Alert>> PgStore::ListAlerts(v1::AlertState state) {
  std::vector<v1::Alert> out;
  const char* filter = state == v1::ALERT_STATE_RESOLVED ? "resolved" : "firing";
  absl::Status s = Run("list alerts", [&](pqxx::connection& c) {
    out.clear();
    pqxx::read_transaction t(c);
    for (const pqxx::row& r : t.exec_params(
             "SELECT rule, fingerprint, labels::text, annotations::text, state, severity, value, "
             "extract(epoch from active_since)::bigint, "
             "coalesce(extract(epoch from resolved_at)::bigint, 0), acknowledged_by "
             "FROM alerts WHERE state = $1 ORDER BY active_since DESC LIMIT 1000",
             filter)) {
      v1::Alert a;
      a.set_rule(r[0].as<std::string>());
      a.set_fingerprint(r[1].as<std::string>());
      for (const auto& [k, v] : ParseLabels(r[2].as<std::string>())) (*a.mutable_labels())[k] = v;
      for (const auto& [k, v] : ParseLabels(r[3].as<std::string>())) {
        (*a.mutable_annotations())[k] = v;
      }
      a.set_state(r[4].as<std::string>() == "firing" ? v1::ALERT_STATE_FIRING
                                                     : v1::ALERT_STATE_RESOLVED);
      a.set_severity(r[5].as<std::string>());
      a.set_value(r[6].as<double>());
      a.set_active_since_unix(r[7].as<int64_t>());
      a.set_resolved_at_unix(r[8].as<int64_t>());
      a.set_acknowledged_by(r[9].as<std::string>());
      out.push_back(std::move(a));
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<v1::QuerySamplesResponse> PgStore::QuerySamples(const v1::QuerySamplesRequest& req,
                                                               absl::Duration range,
                                                               uint32_t limit) {
  v1::QuerySamplesResponse out;
  absl::Status s = Run("query samples", [&](pqxx::connection& c) {
    out.Clear();
    pqxx::read_transaction t(c);
    std::map<int64_t, v1::SeriesSamples*> by_series;
    for (const pqxx::row& r : t.exec_params(
             "SELECT s.id, s.name, s.labels::text, (extract(epoch from x.ts) * 1000)::bigint, "
             "x.value FROM series s JOIN samples x ON x.series_id = s.id "
             "WHERE s.agent_id = $1 AND s.name = $2 AND s.labels @> $3::jsonb "
             "AND x.ts > now() - make_interval(secs => $4) ORDER BY s.id, x.ts LIMIT $5",
             req.agent_id(), req.metric(), LabelsJson(req.matchers()), absl::ToDoubleSeconds(range),
             static_cast<int64_t>(limit))) {
      v1::SeriesSamples*& series = by_series[r[0].as<int64_t>()];
      if (series == nullptr) {
        series = out.add_series();
        series->set_metric(r[1].as<std::string>());
        for (const auto& [k, v] : ParseLabels(r[2].as<std::string>())) {
          (*series->mutable_labels())[k] = v;
        }
      }
      v1::Sample* smp = series->add_samples();
      smp->set_timestamp_ms(r[3].as<int64_t>());
      smp->set_value(r[4].as<double>());
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<int> PgStore::DispatchOutbox(
    int limit, const std::function<DeliveryOutcome(const OutboxEntry&)>& deliver) {
  int delivered = 0;
  absl::Status s = Run("dispatch outbox", [&](pqxx::connection& c) {
    delivered = 0;
    pqxx::work w(c);
    pqxx::result due = w.exec_params(
        "SELECT id, request::text, attempts FROM notification_outbox "
        "WHERE delivered_at IS NULL AND next_attempt_at <= now() "
        "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit);
    for (const pqxx::row& r : due) {
      OutboxEntry e;
      e.id = r[0].as<int64_t>();
      e.attempts = r[2].as<int>();
      auto parsed = google::protobuf::util::JsonStringToMessage(r[1].as<std::string>(), &e.request);
      if (!parsed.ok()) {
        w.exec_params0(
            "UPDATE notification_outbox SET last_error = $2, "
            "next_attempt_at = now() + interval '1 hour' WHERE id = $1",
            e.id, "unreadable request: " + parsed.message().ToString());
        continue;
      }
      DeliveryOutcome o = deliver(e);
      if (o.delivered) {
        w.exec_params0(
            "UPDATE notification_outbox SET delivered_at = now(), attempts = attempts + 1, "
            "last_error = '' WHERE id = $1",
            e.id);
        ++delivered;
      } else {
        w.exec_params0(
            "UPDATE notification_outbox SET attempts = attempts + 1, last_error = $2, "
            "next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
            e.id, o.error, absl::ToDoubleSeconds(o.retry_in));
        // Keep transitions in order: later ones wait for this one's retry.
        w.exec_params0(
            "UPDATE notification_outbox SET next_attempt_at = now() + make_interval(secs => $2) "
            "WHERE delivered_at IS NULL AND id > $1",
            e.id, absl::ToDoubleSeconds(o.retry_in));
        break;
      }
    }
    w.commit();
  });
  if (!s.ok()) return s;
  return delivered;
}

absl::StatusOr<int64_t> PgStore::PendingOutbox() {
  int64_t n = 0;
  absl::Status s = Run("count outbox", [&](pqxx::connection& c) {
    pqxx::read_transaction t(c);
    n = t.exec("SELECT count(*) FROM notification_outbox WHERE delivered_at IS NULL")[0][0]
            .as<int64_t>();
  });
  if (!s.ok()) return s;
  return n;
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

}  // namespace vigie::controlplane
