// PgStore's alert lifecycle: storing transitions, deciding which are notified (silences, the
// agent down, acknowledgements), the clock-driven reconciliation of held notifications, and
// the Admin API's alerts, silences and audit log.
#include <optional>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/log.h"
#include "common/secrets.h"
#include "controlplane/pg_internal.h"
#include "controlplane/pg_store.h"
#include "google/protobuf/util/json_util.h"

namespace vigie::controlplane {
namespace pg {

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

int64_t NowMs(pqxx::transaction_base& w) {
  return w.exec1("SELECT (extract(epoch from now()) * 1000)::bigint")[0].as<int64_t>();
}

void WriteAudit(pqxx::transaction_base& w, const std::string& actor, const std::string& action,
                const std::string& target, const std::string& detail_json) {
  w.exec_params0("INSERT INTO audit_log (actor, action, target, detail) VALUES ($1, $2, $3, $4)",
                 actor, action, target, detail_json);
}

}  // namespace pg

namespace {

using pg::Labels;
using pg::LabelsJson;
using pg::NowMs;
using pg::ParseLabels;
using pg::PgTime;
using pg::WriteAudit;

constexpr char kSilenceColumns[] =
    "id, matchers::text, (extract(epoch from starts_at) * 1000)::bigint, "
    "(extract(epoch from ends_at) * 1000)::bigint, "
    "coalesce((extract(epoch from repeat_every) * 1000)::bigint, 0), "
    "coalesce((extract(epoch from repeat_until) * 1000)::bigint, 0), created_by, comment, "
    "(extract(epoch from created_at) * 1000)::bigint";

Silence SilenceFromRow(const pqxx::row& r) {
  Silence s;
  s.id = r[0].as<std::string>();
  s.matchers = ParseLabels(r[1].as<std::string>());
  s.starts_ms = r[2].as<int64_t>();
  s.ends_ms = r[3].as<int64_t>();
  s.repeat_every_ms = r[4].as<int64_t>();
  s.repeat_until_ms = r[5].as<int64_t>();
  s.created_by = r[6].as<std::string>();
  s.comment = r[7].as<std::string>();
  s.created_ms = r[8].as<int64_t>();
  return s;
}

// Silences not yet ended (and, with include_ended, those kept for history), newest first.
std::vector<Silence> LoadSilences(pqxx::transaction_base& w, bool include_ended) {
  std::vector<Silence> out;
  for (const pqxx::row& r :
       w.exec_params(absl::StrCat("SELECT ", kSilenceColumns,
                                  " FROM silences WHERE $1 OR ended_at IS NULL OR ended_at > now() "
                                  "ORDER BY created_at DESC, id LIMIT $2"),
                     include_ended, static_cast<int64_t>(2 * kMaxSilences))) {
    out.push_back(SilenceFromRow(r));
  }
  return out;
}

// An alert as stored.
struct AlertRow {
  Transition t;  // the alert's identity, labels, value and times
  std::string state, acknowledged_by, ack_comment, notified, suppressed_by, kind;
  int64_t acknowledged_at_ms = 0, ack_expires_at_ms = 0;
  bool firing() const { return state == "firing"; }
  std::string Key() const { return absl::StrCat(t.rule, "/", t.fingerprint); }
};

constexpr char kAlertColumns[] =
    "rule, fingerprint, labels::text, annotations::text, severity, state, value, "
    "(extract(epoch from active_since) * 1000)::bigint, "
    "coalesce((extract(epoch from resolved_at) * 1000)::bigint, 0), acknowledged_by, "
    "ack_comment, coalesce((extract(epoch from acknowledged_at) * 1000)::bigint, 0), "
    "coalesce((extract(epoch from ack_expires_at) * 1000)::bigint, 0), notified, suppressed_by, "
    "kind";

AlertRow AlertFromRow(const pqxx::row& r) {
  AlertRow a;
  a.t.rule = r[0].as<std::string>();
  a.t.fingerprint = r[1].as<std::string>();
  a.t.labels = ParseLabels(r[2].as<std::string>());
  a.t.annotations = ParseLabels(r[3].as<std::string>());
  a.t.severity = r[4].as<std::string>();
  a.state = r[5].as<std::string>();
  a.t.kind = a.firing() ? Transition::kFiring : Transition::kResolved;
  a.t.value = r[6].as<double>();
  a.t.starts_at_ms = r[7].as<int64_t>();
  a.t.ends_at_ms = r[8].as<int64_t>();
  a.acknowledged_by = r[9].as<std::string>();
  a.ack_comment = r[10].as<std::string>();
  a.acknowledged_at_ms = r[11].as<int64_t>();
  a.ack_expires_at_ms = r[12].as<int64_t>();
  a.notified = r[13].as<std::string>();
  a.suppressed_by = r[14].as<std::string>();
  a.kind = r[15].as<std::string>();
  a.t.agent_absent = a.kind == "absent";
  return a;
}

void AlertToProto(const AlertRow& a, v1::Alert* out) {
  out->set_rule(a.t.rule);
  out->set_fingerprint(a.t.fingerprint);
  for (const auto& [k, v] : a.t.labels) (*out->mutable_labels())[k] = v;
  for (const auto& [k, v] : a.t.annotations) (*out->mutable_annotations())[k] = v;
  out->set_state(a.firing() ? v1::ALERT_STATE_FIRING : v1::ALERT_STATE_RESOLVED);
  out->set_severity(a.t.severity);
  out->set_value(a.t.value);
  out->set_active_since_unix(a.t.starts_at_ms / 1000);
  out->set_resolved_at_unix(a.t.ends_at_ms / 1000);
  out->set_acknowledged_by(a.acknowledged_by);
  out->set_acknowledgement_comment(a.ack_comment);
  out->set_acknowledged_at_unix(a.acknowledged_at_ms / 1000);
  out->set_acknowledgement_expires_at_unix(a.ack_expires_at_ms / 1000);
  out->set_suppressed_by(a.suppressed_by);
}

std::optional<AlertRow> LockAlert(pqxx::transaction_base& w, const std::string& rule,
                                  const std::string& fingerprint) {
  pqxx::result r = w.exec_params(absl::StrCat("SELECT ", kAlertColumns,
                                              " FROM alerts WHERE rule = $1 AND fingerprint = $2 "
                                              "FOR UPDATE"),
                                 rule, fingerprint);
  if (r.empty()) return std::nullopt;
  return AlertFromRow(r[0]);
}

// What holds notifications back, read once per transaction: the database's clock, the live
// silences and the agents an agent-absent alert fires for.
struct Holds {
  int64_t now_ms = 0;
  std::vector<Silence> silences;
  std::set<std::string> down_agents;

  static Holds Load(pqxx::transaction_base& w) {
    Holds h;
    h.now_ms = NowMs(w);
    h.silences = LoadSilences(w, false);
    for (const pqxx::row& r :
         w.exec("SELECT DISTINCT labels->>'agent' FROM alerts WHERE kind = 'absent' "
                "AND state = 'firing' AND labels ? 'agent'")) {
      h.down_agents.insert(r[0].as<std::string>());
    }
    return h;
  }

  // Why a firing alert's notification is held back: a matching silence or, except for
  // agent-absent alerts themselves, its agent reported absent. "" when it is not.
  std::string Of(const Transition& t) const {
    if (const Silence* s = SilencedBy(silences, t.labels, now_ms)) return "silence " + s->id;
    auto agent = t.labels.find("agent");
    if (!t.agent_absent && agent != t.labels.end() && down_agents.count(agent->second)) {
      return "host down: " + agent->second;
    }
    return "";
  }
};

// Queues the notification of `t` (firing or resolved) under `key`.
void Enqueue(pqxx::transaction_base& w, const Transition& t, const std::string& key,
             const std::string& acknowledged_by, const std::string& ack_comment,
             const std::string& silenced_by, const std::string& generator_url) {
  const bool firing = t.kind == Transition::kFiring;
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
  n->set_ends_at_ms(firing ? 0 : t.ends_at_ms);
  n->set_generator_url(generator_url);
  if (firing) {
    n->set_acknowledged_by(acknowledged_by);
    n->set_acknowledgement_comment(ack_comment);
    n->set_silenced_by(silenced_by);
  }
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(req, &json);
  w.exec_params0(
      "INSERT INTO notification_outbox (idempotency_key, request, alert) "
      "VALUES ($1, $2::jsonb, $3) ON CONFLICT (idempotency_key) DO NOTHING",
      key, json, absl::StrCat(t.rule, "/", t.fingerprint));
}

void AddEvent(pqxx::transaction_base& w, const Transition& t, const std::string& status,
              double value, int64_t at_ms, const std::string& key, const std::string& by) {
  w.exec_params0(
      "INSERT INTO alert_events (rule, fingerprint, status, value, at, idempotency_key, by) "
      "VALUES ($1, $2, $3, $4, $5::timestamptz, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING",
      t.rule, t.fingerprint, status, value, PgTime(at_ms), key, by);
}

// suppressed_by of a flapping alert (also its notification's silenced_by).
constexpr char kFlapping[] = "flapping";

std::string Json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

namespace pg {

void StoreTransitions(pqxx::transaction_base& w, const std::vector<Transition>& transitions,
                      const std::string& generator_url) {
  if (transitions.empty()) return;
  const Holds holds = Holds::Load(w);
  const int64_t now_ms = holds.now_ms;
  for (const Transition& t : transitions) {
    const std::string key = t.IdempotencyKey();
    if (t.kind == Transition::kFiring) {
      std::string held = holds.Of(t);
      std::string notified = held.empty() ? "firing" : "";
      // Flap hold: the Nth change within the window marks the alert flapping; one
      // notification says so (silenced_by "flapping") and later changes wait until it settles.
      bool flap_notice = false;
      if (t.flap_threshold > 0) {
        pqxx::result prev = w.exec_params(
            "SELECT suppressed_by, notified FROM alerts WHERE rule = $1 AND fingerprint = $2 "
            "FOR UPDATE",
            t.rule, t.fingerprint);
        if (!prev.empty() && prev[0][0].as<std::string>() == kFlapping) {
          held = kFlapping;
          notified = prev[0][1].as<std::string>();
        } else if (held.empty()) {
          const int64_t changes =
              w.exec_params1(
                   "SELECT count(*) FROM alert_events WHERE rule = $1 AND fingerprint = $2 AND "
                   "status IN ('firing', 'resolved') AND at > $3::timestamptz",
                   t.rule, t.fingerprint, PgTime(now_ms - t.flap_window_ms))[0]
                  .as<int64_t>();
          if (changes + 1 >= t.flap_threshold) {
            held = kFlapping;
            notified = "firing";
            flap_notice = true;
          }
        }
      }
      w.exec_params0(
          "INSERT INTO alerts (rule, fingerprint, labels, annotations, severity, state, value, "
          "active_since, kind, notified, suppressed_by, flap_threshold, flap_window_ms) VALUES "
          "($1, $2, $3::jsonb, $4::jsonb, $5, 'firing', $6, $7::timestamptz, $8, $9, $10, $11, "
          "$12) ON CONFLICT (rule, fingerprint) DO UPDATE "
          "SET labels = excluded.labels, annotations = excluded.annotations, "
          "severity = excluded.severity, state = 'firing', value = excluded.value, "
          "active_since = excluded.active_since, resolved_at = NULL, kind = excluded.kind, "
          "notified = excluded.notified, suppressed_by = excluded.suppressed_by, "
          "flap_threshold = excluded.flap_threshold, flap_window_ms = excluded.flap_window_ms, "
          "acknowledged_by = '', ack_comment = '', acknowledged_at = NULL, ack_expires_at = NULL",
          t.rule, t.fingerprint, LabelsJson(t.labels), LabelsJson(t.annotations), t.severity,
          t.value, PgTime(t.starts_at_ms), t.agent_absent ? "absent" : "threshold", notified, held,
          t.flap_threshold, t.flap_window_ms);
      AddEvent(w, t, "firing", t.value, t.starts_at_ms, key, "");
      if (held.empty()) Enqueue(w, t, key, "", "", "", generator_url);
      if (flap_notice) Enqueue(w, t, key, "", "", kFlapping, generator_url);
    } else {
      // A resolve is sent when its firing was: never lost, and nobody hears of a problem that
      // was held back all along.
      // A flapping alert's resolve waits until it settles.
      pqxx::result r = w.exec_params(
          "SELECT notified, suppressed_by FROM alerts WHERE rule = $1 AND fingerprint = $2 "
          "FOR UPDATE",
          t.rule, t.fingerprint);
      const bool flapping = !r.empty() && r[0][1].as<std::string>() == kFlapping;
      const bool send = r.empty() || (r[0][0].as<std::string>() == "firing" && !flapping);
      w.exec_params0(
          "UPDATE alerts SET state = 'resolved', value = $3, resolved_at = $4::timestamptz, "
          "suppressed_by = CASE WHEN $6 THEN suppressed_by ELSE '' END, "
          "notified = CASE WHEN $5 THEN 'resolved' ELSE notified END "
          "WHERE rule = $1 AND fingerprint = $2",
          t.rule, t.fingerprint, t.value, PgTime(t.ends_at_ms), send, flapping);
      AddEvent(w, t, "resolved", t.value, t.ends_at_ms, key, "");
      if (send) Enqueue(w, t, key, "", "", "", generator_url);
    }
  }
}

void StorePending(pqxx::transaction_base& w, const std::vector<PendingChange>& pending) {
  for (const PendingChange& p : pending) {
    if (p.since_ms == 0) {
      w.exec_params0("DELETE FROM rule_pending WHERE rule = $1 AND fingerprint = $2", p.rule,
                     p.fingerprint);
    } else {
      w.exec_params0(
          "INSERT INTO rule_pending (rule, fingerprint, labels, since, value) "
          "VALUES ($1, $2, $3::jsonb, $4::timestamptz, $5) ON CONFLICT (rule, fingerprint) DO "
          "UPDATE SET labels = excluded.labels, since = excluded.since, value = excluded.value",
          p.rule, p.fingerprint, LabelsJson(p.labels), PgTime(p.since_ms), p.value);
    }
  }
}

}  // namespace pg

absl::StatusOr<std::vector<PendingChange>> PgStore::LoadPendingAlerts() {
  std::vector<PendingChange> out;
  absl::Status s = Run("load pending alerts", [&](PgConnection& c) {
    out.clear();
    pqxx::read_transaction t(c);
    for (const pqxx::row& r :
         t.exec("SELECT rule, fingerprint, labels::text, "
                "(extract(epoch from since) * 1000)::bigint, value FROM rule_pending")) {
      out.push_back({r[0].as<std::string>(), r[1].as<std::string>(),
                     ParseLabels(r[2].as<std::string>()), r[3].as<int64_t>(), r[4].as<double>()});
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<int> PgStore::ReconcileNotifications() {
  int sent = 0;
  absl::Status s = Run("reconcile notifications", [&](PgConnection& c) {
    sent = 0;
    pqxx::work w(c);
    if (!w.exec1("SELECT pg_try_advisory_xact_lock(7400004)")[0].as<bool>()) return;
    const Holds holds = Holds::Load(w);
    const int64_t now_ms = holds.now_ms;
    // Acknowledgements that expired: the alert is notified again.
    for (const pqxx::row& r :
         w.exec(absl::StrCat("SELECT ", kAlertColumns,
                             " FROM alerts WHERE state = 'firing' AND ack_expires_at <= now() "
                             "FOR UPDATE"))) {
      AlertRow a = AlertFromRow(r);
      const std::string key =
          absl::StrCat(a.t.IdempotencyKey(), "/ack-expired-", a.ack_expires_at_ms);
      w.exec_params0(
          "UPDATE alerts SET acknowledged_by = '', ack_comment = '', acknowledged_at = NULL, "
          "ack_expires_at = NULL WHERE rule = $1 AND fingerprint = $2",
          a.t.rule, a.t.fingerprint);
      AddEvent(w, a.t, "acknowledgement expired", a.t.value, now_ms, key, a.acknowledged_by);
      WriteAudit(w, "system", "AcknowledgementExpired", a.Key(),
                 Json({{"acknowledged_by", a.acknowledged_by}}));
      if (a.notified == "firing") {
        Enqueue(w, a.t, key, "", "", a.suppressed_by, options_.generator_url);
        ++sent;
      }
    }
    // Firings held back whose reason ended, and notified alerts a silence now covers (or no
    // longer covers): the notifier hears of it, and stops (or resumes) repeating them.
    for (const pqxx::row& r :
         w.exec_params(absl::StrCat("SELECT ", kAlertColumns,
                                    " FROM alerts WHERE state = 'firing' AND "
                                    "suppressed_by <> 'flapping' AND "
                                    "(notified = '' OR suppressed_by <> '' OR $1) FOR UPDATE"),
                       !holds.silences.empty())) {
      AlertRow a = AlertFromRow(r);
      std::string want;
      if (a.notified.empty()) {
        want = holds.Of(a.t);
        if (want.empty()) {
          Enqueue(w, a.t, a.t.IdempotencyKey(), a.acknowledged_by, a.ack_comment, "",
                  options_.generator_url);
          w.exec_params0(
              "UPDATE alerts SET notified = 'firing', suppressed_by = '' "
              "WHERE rule = $1 AND fingerprint = $2",
              a.t.rule, a.t.fingerprint);
          ++sent;
          continue;
        }
      } else {
        const Silence* silence = SilencedBy(holds.silences, a.t.labels, now_ms);
        want = silence ? "silence " + silence->id : "";
        if (want != a.suppressed_by) {
          const std::string key = absl::StrCat(a.t.IdempotencyKey(), "/silence-", now_ms);
          Enqueue(w, a.t, key, a.acknowledged_by, a.ack_comment, want, options_.generator_url);
          AddEvent(w, a.t, want.empty() ? "unsilenced" : "silenced", a.t.value, now_ms, key, "");
          ++sent;
        }
      }
      if (want != a.suppressed_by) {
        w.exec_params0("UPDATE alerts SET suppressed_by = $3 WHERE rule = $1 AND fingerprint = $2",
                       a.t.rule, a.t.fingerprint, want);
      }
    }
    // Flapping alerts that have not changed for their flap window: their state now is sent.
    for (const pqxx::row& r : w.exec(absl::StrCat(
             "SELECT ", kAlertColumns,
             ", flap_window_ms, coalesce((SELECT (extract(epoch from max(e.at)) * 1000)::bigint "
             "FROM alert_events e WHERE e.rule = alerts.rule AND e.fingerprint = "
             "alerts.fingerprint AND e.status IN ('firing', 'resolved')), 0) "
             "FROM alerts WHERE suppressed_by = 'flapping' FOR UPDATE"))) {
      AlertRow a = AlertFromRow(r);
      if (now_ms - r[17].as<int64_t>() < r[16].as<int64_t>()) continue;  // still changing
      const std::string key = absl::StrCat(a.t.IdempotencyKey(), "/settled-", now_ms);
      std::string notified = a.notified;
      if (a.firing()) {
        Enqueue(w, a.t, key, a.acknowledged_by, a.ack_comment, "", options_.generator_url);
        notified = "firing";
        ++sent;
      } else if (a.notified == "firing") {
        Enqueue(w, a.t, key, "", "", "", options_.generator_url);
        notified = "resolved";
        ++sent;
      }
      AddEvent(w, a.t, "settled", a.t.value, now_ms, key, "");
      w.exec_params0(
          "UPDATE alerts SET suppressed_by = '', notified = $3 WHERE rule = $1 AND fingerprint = "
          "$2",
          a.t.rule, a.t.fingerprint, notified);
    }
    w.commit();
  });
  if (!s.ok()) return s;
  return sent;
}

absl::StatusOr<v1::ListAlertsResponse> PgStore::QueryAlerts(const v1::ListAlertsRequest& req) {
  v1::ListAlertsResponse out;
  const uint32_t page_size = req.page_size() == 0 ? 100 : req.page_size();
  int64_t offset = 0;
  if (!req.page_token().empty() && !absl::SimpleAtoi(req.page_token(), &offset)) offset = -1;
  if (page_size > 1000 || offset < 0) {
    return absl::InvalidArgumentError(
        page_size > 1000
            ? absl::StrCat("page_size: at most 1000, got ", page_size)
            : absl::StrCat("page_token: not one this API gave, got \"", req.page_token(), "\""));
  }
  const char* state = req.state() == v1::ALERT_STATE_RESOLVED ? "resolved" : "firing";
  absl::Status s = Run("list alerts", [&](PgConnection& c) {
    out.Clear();
    pqxx::read_transaction t(c);
    pqxx::result rows = t.exec_params(
        absl::StrCat("SELECT ", kAlertColumns,
                     " FROM alerts WHERE state = $1 AND ($2 = '' OR severity = $2) "
                     "AND labels @> $3::jsonb ORDER BY active_since DESC, rule, fingerprint "
                     "OFFSET $4 LIMIT $5"),
        state, req.severity(), LabelsJson(req.label_selector()), offset,
        static_cast<int64_t>(page_size) + 1);
    for (pqxx::result::size_type i = 0; i < rows.size() && i < page_size; ++i) {
      AlertToProto(AlertFromRow(rows[i]), out.add_alerts());
    }
    if (rows.size() > page_size) out.set_next_page_token(absl::StrCat(offset + page_size));
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<v1::GetAlertResponse> PgStore::GetAlert(const std::string& rule,
                                                       const std::string& fingerprint) {
  v1::GetAlertResponse out;
  bool found = false;
  absl::Status s = Run("get alert", [&](PgConnection& c) {
    out.Clear();
    pqxx::read_transaction t(c);
    pqxx::result r = t.exec_params(
        absl::StrCat("SELECT ", kAlertColumns, " FROM alerts WHERE rule = $1 AND fingerprint = $2"),
        rule, fingerprint);
    found = !r.empty();
    if (!found) return;
    AlertToProto(AlertFromRow(r[0]), out.mutable_alert());
    for (const pqxx::row& e :
         t.exec_params("SELECT status, value, extract(epoch from at)::bigint, by FROM alert_events "
                       "WHERE rule = $1 AND fingerprint = $2 ORDER BY id DESC LIMIT 100",
                       rule, fingerprint)) {
      v1::AlertEvent* ev = out.add_history();
      ev->set_status(e[0].as<std::string>());
      ev->set_value(e[1].as<double>());
      ev->set_at_unix(e[2].as<int64_t>());
      ev->set_by(e[3].as<std::string>());
    }
  });
  if (!s.ok()) return s;
  if (!found) {
    return absl::NotFoundError(
        absl::StrCat("rule/fingerprint: no alert \"", rule, "/", fingerprint, "\""));
  }
  return out;
}

absl::StatusOr<v1::Alert> PgStore::ChangeAcknowledgement(const Acknowledgement* ack,
                                                         const std::string& rule,
                                                         const std::string& fingerprint,
                                                         const std::string& actor) {
  v1::Alert out;
  absl::Status refused;
  absl::Status s = Run(ack ? "acknowledge" : "unacknowledge", [&](PgConnection& c) {
    out.Clear();
    refused = absl::OkStatus();
    pqxx::work w(c);
    std::optional<AlertRow> a = LockAlert(w, rule, fingerprint);
    if (!a) {
      refused = absl::NotFoundError(
          absl::StrCat("rule/fingerprint: no alert \"", rule, "/", fingerprint, "\""));
      return;
    }
    if (!a->firing()) {
      refused = absl::FailedPreconditionError(
          absl::StrCat("alert \"", a->Key(), "\" is resolved; only a firing alert can be ",
                       ack ? "acknowledged" : "unacknowledged"));
      return;
    }
    if (!ack && a->acknowledged_by.empty()) {
      refused = absl::FailedPreconditionError(
          absl::StrCat("alert \"", a->Key(), "\" is not acknowledged"));
      return;
    }
    const int64_t now_ms = NowMs(w);
    const std::string key = absl::StrCat(a->t.IdempotencyKey(), ack ? "/ack-" : "/unack-", now_ms);
    if (ack) {
      w.exec_params0(
          "UPDATE alerts SET acknowledged_by = $3, ack_comment = $4, acknowledged_at = now(), "
          "ack_expires_at = CASE WHEN $5::bigint = 0 THEN NULL "
          "ELSE now() + $5::bigint * interval '1 millisecond' END "
          "WHERE rule = $1 AND fingerprint = $2",
          rule, fingerprint, ack->by, ack->comment, absl::ToInt64Milliseconds(ack->expires));
      AddEvent(w, a->t, "acknowledged", a->t.value, now_ms, key, ack->by);
      WriteAudit(
          w, actor, "AcknowledgeAlert", a->Key(),
          Json({{"by", ack->by},
                {"comment", ack->comment},
                {"expires_in",
                 ack->expires == absl::ZeroDuration() ? "" : absl::FormatDuration(ack->expires)}}));
    } else {
      w.exec_params0(
          "UPDATE alerts SET acknowledged_by = '', ack_comment = '', acknowledged_at = NULL, "
          "ack_expires_at = NULL WHERE rule = $1 AND fingerprint = $2",
          rule, fingerprint);
      AddEvent(w, a->t, "unacknowledged", a->t.value, now_ms, key, a->acknowledged_by);
      WriteAudit(w, actor, "UnacknowledgeAlert", a->Key(),
                 Json({{"was_acknowledged_by", a->acknowledged_by}}));
    }
    if (a->notified == "firing") {
      Enqueue(w, a->t, key, ack ? ack->by : "", ack ? ack->comment : "", a->suppressed_by,
              options_.generator_url);
    }
    AlertToProto(*LockAlert(w, rule, fingerprint), &out);
    w.commit();
  });
  if (!s.ok()) return s;
  if (!refused.ok()) return refused;
  return out;
}

absl::StatusOr<v1::Alert> PgStore::Acknowledge(const Acknowledgement& ack,
                                               const std::string& actor) {
  return ChangeAcknowledgement(&ack, ack.rule, ack.fingerprint, actor);
}

absl::StatusOr<v1::Alert> PgStore::Unacknowledge(const std::string& rule,
                                                 const std::string& fingerprint,
                                                 const std::string& actor) {
  return ChangeAcknowledgement(nullptr, rule, fingerprint, actor);
}

absl::StatusOr<v1::Silence> PgStore::CreateSilence(const Silence& silence,
                                                   const std::string& actor) {
  Silence stored = silence;
  stored.id = RandomHex(8);
  v1::Silence out;
  absl::Status refused;
  absl::Status s = Run("create silence", [&](PgConnection& c) {
    refused = absl::OkStatus();
    pqxx::work w(c);
    const int64_t live =
        w.exec1("SELECT count(*) FROM silences WHERE ended_at IS NULL OR ended_at > now()")[0]
            .as<int64_t>();
    if (live >= static_cast<int64_t>(kMaxSilences)) {
      refused =
          absl::ResourceExhaustedError(absl::StrCat("at most ", kMaxSilences,
                                                    " silences may be active or scheduled; expire "
                                                    "some first"));
      return;
    }
    const std::optional<int64_t> ended_ms = stored.LastEndMs();
    pqxx::row r = w.exec_params1(
        "INSERT INTO silences (id, matchers, starts_at, ends_at, repeat_every, repeat_until, "
        "created_by, comment, ended_at) VALUES ($1, $2::jsonb, $3::timestamptz, $4::timestamptz, "
        "CASE WHEN $5::bigint = 0 THEN NULL ELSE $5::bigint * interval '1 millisecond' END, "
        "$6::timestamptz, $7, $8, $9::timestamptz) "
        "RETURNING (extract(epoch from created_at) * 1000)::bigint",
        stored.id, LabelsJson(stored.matchers), PgTime(stored.starts_ms), PgTime(stored.ends_ms),
        stored.repeat_every_ms,
        stored.repeat_until_ms == 0 ? std::optional<std::string>()
                                    : std::optional<std::string>(PgTime(stored.repeat_until_ms)),
        stored.created_by, stored.comment,
        ended_ms ? std::optional<std::string>(PgTime(*ended_ms)) : std::optional<std::string>());
    stored.created_ms = r[0].as<int64_t>();
    SilenceToProto(stored, absl::FromUnixMillis(NowMs(w)), &out);
    std::string detail;
    (void)google::protobuf::util::MessageToJsonString(out, &detail);
    WriteAudit(w, actor, "CreateSilence", stored.id, detail);
    w.commit();
  });
  if (!s.ok()) return s;
  if (!refused.ok()) return refused;
  log::Info("silence created", {{"id", stored.id}, {"created_by", stored.created_by}});
  return out;
}

absl::StatusOr<std::vector<v1::Silence>> PgStore::ListSilences(bool include_expired) {
  std::vector<v1::Silence> out;
  absl::Status s = Run("list silences", [&](PgConnection& c) {
    out.clear();
    pqxx::read_transaction t(c);
    const absl::Time now = absl::FromUnixMillis(NowMs(t));
    for (const Silence& silence : LoadSilences(t, include_expired)) {
      SilenceToProto(silence, now, &out.emplace_back());
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status PgStore::ExpireSilence(const std::string& id, const std::string& actor) {
  absl::Status refused;
  absl::Status s = Run("expire silence", [&](PgConnection& c) {
    refused = absl::OkStatus();
    pqxx::work w(c);
    pqxx::result r = w.exec_params(
        "SELECT ended_at IS NOT NULL AND ended_at <= now() FROM silences WHERE id = $1 FOR UPDATE",
        id);
    if (r.empty()) {
      refused = absl::NotFoundError(absl::StrCat("id: no silence \"", id, "\""));
      return;
    }
    if (r[0][0].as<bool>()) {
      refused = absl::FailedPreconditionError(absl::StrCat("silence \"", id, "\" has ended"));
      return;
    }
    // Ends now: a one-off silence that ended now (a recurring one has no further windows).
    w.exec_params0(
        "UPDATE silences SET starts_at = least(starts_at, now() - interval '1 millisecond'), "
        "ends_at = now(), repeat_every = NULL, repeat_until = NULL, ended_at = now() "
        "WHERE id = $1",
        id);
    WriteAudit(w, actor, "ExpireSilence", id, "{}");
    w.commit();
  });
  if (!s.ok()) return s;
  return refused;
}

absl::Status PgStore::Audit(const std::string& actor, const std::string& action,
                            const std::string& target, const std::string& detail) {
  return Run("audit", [&](PgConnection& c) {
    pqxx::work w(c);
    WriteAudit(w, actor, action, target, detail);
    w.commit();
  });
}

absl::StatusOr<v1::ListAuditLogResponse> PgStore::ListAuditLog(const v1::ListAuditLogRequest& req) {
  const uint32_t page_size = req.page_size() == 0 ? 100 : req.page_size();
  int64_t before = INT64_MAX;
  if (page_size > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("page_size: at most 1000, got ", page_size));
  }
  if (!req.page_token().empty() && (!absl::SimpleAtoi(req.page_token(), &before) || before < 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: not one this API gave, got \"", req.page_token(), "\""));
  }
  v1::ListAuditLogResponse out;
  absl::Status s = Run("list audit log", [&](PgConnection& c) {
    out.Clear();
    pqxx::read_transaction t(c);
    pqxx::result rows = t.exec_params(
        "SELECT id, extract(epoch from at)::bigint, actor, action, target, detail::text "
        "FROM audit_log WHERE id < $1 AND ($2 = '' OR action = $2) ORDER BY id DESC LIMIT $3",
        before, req.action(), static_cast<int64_t>(page_size) + 1);
    for (pqxx::result::size_type i = 0; i < rows.size() && i < page_size; ++i) {
      v1::AuditEntry* e = out.add_entries();
      e->set_id(rows[i][0].as<int64_t>());
      e->set_at_unix(rows[i][1].as<int64_t>());
      e->set_actor(rows[i][2].as<std::string>());
      e->set_action(rows[i][3].as<std::string>());
      e->set_target(rows[i][4].as<std::string>());
      e->set_detail(rows[i][5].as<std::string>());
    }
    if (rows.size() > page_size) {
      out.set_next_page_token(absl::StrCat(out.entries(out.entries_size() - 1).id()));
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<std::map<std::string, PgStore::FiringCount>> PgStore::CountFiringAlerts() {
  std::map<std::string, FiringCount> out;
  absl::Status s = Run("count alerts", [&](PgConnection& c) {
    out.clear();
    pqxx::read_transaction t(c);
    for (const pqxx::row& r :
         t.exec("SELECT severity, count(*), count(*) FILTER (WHERE notified = ''), "
                "count(*) FILTER (WHERE acknowledged_by <> '') FROM alerts "
                "WHERE state = 'firing' GROUP BY severity")) {
      out[r[0].as<std::string>()] = {r[1].as<int64_t>(), r[2].as<int64_t>(), r[3].as<int64_t>()};
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<int> PgStore::DeleteAgent(const std::string& agent_id, const std::string& actor) {
  int resolved = 0;
  absl::Status refused;
  absl::Status s = Run("delete agent", [&](PgConnection& c) {
    resolved = 0;
    refused = absl::OkStatus();
    pqxx::work w(c);
    pqxx::result a =
        w.exec_params("SELECT connected FROM agents WHERE agent_id = $1 FOR UPDATE", agent_id);
    if (a.empty()) {
      refused = absl::NotFoundError(absl::StrCat("agent_id: no agent \"", agent_id, "\""));
      return;
    }
    if (a[0][0].as<bool>()) {
      refused = absl::FailedPreconditionError(
          absl::StrCat("agent \"", agent_id,
                       "\" is connected; stop it or revoke its token (RevokeToken) first"));
      return;
    }
    // Its firing threshold alerts resolve now (absence alerts resolve on the timer's next tick,
    // as for any agent that is gone).
    const int64_t now_ms = NowMs(w);
    std::vector<Transition> out;
    for (const pqxx::row& r :
         w.exec_params(absl::StrCat("SELECT ", kAlertColumns,
                                    " FROM alerts WHERE state = 'firing' AND kind <> 'absent' "
                                    "AND labels->>'agent' = $1 FOR UPDATE"),
                       agent_id)) {
      AlertRow row = AlertFromRow(r);
      row.t.kind = Transition::kResolved;
      row.t.ends_at_ms = now_ms;
      out.push_back(std::move(row.t));
    }
    pg::StoreTransitions(w, out, options_.generator_url);
    resolved = static_cast<int>(out.size());
    w.exec_params0("DELETE FROM rule_pending WHERE labels->>'agent' = $1", agent_id);
    w.exec_params0("DELETE FROM sample_blocks WHERE agent_id = $1", agent_id);
    w.exec_params0("DELETE FROM sample_rollups WHERE agent_id = $1", agent_id);
    w.exec_params0("DELETE FROM rollup_dirty WHERE agent_id = $1", agent_id);
    w.exec_params0("DELETE FROM check_results WHERE agent_id = $1", agent_id);
    w.exec_params0("DELETE FROM check_daily WHERE agent_id = $1", agent_id);
    w.exec_params0("DELETE FROM service_events WHERE agent_id = $1", agent_id);
    w.exec_params0("DELETE FROM service_daily WHERE agent_id = $1", agent_id);
    // Series, layouts and remote-write cursors go with it (ON DELETE CASCADE).
    w.exec_params0("DELETE FROM agents WHERE agent_id = $1", agent_id);
    WriteAudit(w, actor, "DeleteAgent", agent_id, Json({{"alerts_resolved", resolved}}));
    w.commit();
  });
  if (!s.ok()) return s;
  if (!refused.ok()) return refused;
  (void)series_cache_.Take(agent_id);  // its series ids are gone
  return resolved;
}

}  // namespace vigie::controlplane
