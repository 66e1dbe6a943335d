// PgStore: supervised services' current states (service_state), kept from their events.
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "common/agent_message.h"
#include "common/status.h"
#include "controlplane/pg_internal.h"
#include "controlplane/pg_store.h"

namespace vigie::controlplane {
namespace {

// The state an event puts a service in; "" keeps the state it has (a failed health command).
const char* StateAfter(v1::ServiceEvent::Kind kind) {
  switch (kind) {
    case v1::ServiceEvent::KIND_STARTED:
    case v1::ServiceEvent::KIND_STABLE:
    case v1::ServiceEvent::KIND_ADOPTED:
      return "running";
    case v1::ServiceEvent::KIND_EXITED:
      return "exited";
    case v1::ServiceEvent::KIND_RESTARTING:
      return "backoff";
    case v1::ServiceEvent::KIND_STOPPED:
    case v1::ServiceEvent::KIND_GAVE_UP:
      return "stopped";
    default:
      return "";
  }
}

constexpr char kServiceColumns[] =
    "agent_id, service, state, extract(epoch from since)::bigint, last_event, message, "
    "exit_code, signal, restarts, extract(epoch from updated)::bigint";

void ServiceFromRow(const pqxx::row& r, v1::Service* s) {
  s->set_agent_id(r[0].as<std::string>());
  s->set_name(r[1].as<std::string>());
  s->set_state(r[2].as<std::string>());
  s->set_since_unix(r[3].as<int64_t>());
  v1::ServiceEvent::Kind kind = v1::ServiceEvent::KIND_UNSPECIFIED;
  v1::ServiceEvent::Kind_Parse(r[4].as<std::string>(), &kind);
  s->set_last_event(kind);
  s->set_message(r[5].as<std::string>());
  s->set_last_exit_code(r[6].as<int32_t>());
  s->set_last_signal(r[7].as<int32_t>());
  s->set_restarts(r[8].as<uint32_t>());
  s->set_updated_unix(r[9].as<int64_t>());
}

}  // namespace

void PgStore::UpsertServiceState(pqxx::transaction_base& w, const std::string& agent_id,
                                 const v1::ServiceEvent& e) {
  const std::string state = StateAfter(e.kind());
  // Exit statuses come with EXITED and STOPPED; a STARTED always begins a new `since` (the
  // agent may have died without saying the service stopped).
  const bool exited =
      e.kind() == v1::ServiceEvent::KIND_EXITED || e.kind() == v1::ServiceEvent::KIND_STOPPED;
  const bool started = e.kind() == v1::ServiceEvent::KIND_STARTED;
  // Events of one agent arrive in order; an older one (a replayed spool) changes nothing.
  w.exec_params0(
      "INSERT INTO service_state AS s (agent_id, service, state, since, last_event, message, "
      "exit_code, signal, restarts, updated) VALUES ($1, $2, COALESCE(NULLIF($3, ''), "
      "'running'), timestamptz 'epoch' + $4::bigint * interval '1 millisecond', $5, $6, $7, $8, "
      "$9, timestamptz 'epoch' + $4::bigint * interval '1 millisecond') "
      "ON CONFLICT (agent_id, service) DO UPDATE SET "
      "state = COALESCE(NULLIF($3, ''), s.state), "
      "since = CASE WHEN $11 OR (NULLIF($3, '') IS NOT NULL AND $3 <> s.state) THEN "
      "EXCLUDED.since ELSE s.since END, "
      "last_event = EXCLUDED.last_event, message = EXCLUDED.message, "
      "exit_code = CASE WHEN $10 THEN EXCLUDED.exit_code ELSE s.exit_code END, "
      "signal = CASE WHEN $10 THEN EXCLUDED.signal ELSE s.signal END, "
      "restarts = s.restarts + EXCLUDED.restarts, updated = EXCLUDED.updated "
      "WHERE s.updated <= EXCLUDED.updated",
      agent_id, e.service(), state, e.timestamp_ms(), v1::ServiceEvent::Kind_Name(e.kind()),
      e.message(), exited ? e.exit_code() : 0, exited ? e.signal() : 0,
      e.kind() == v1::ServiceEvent::KIND_RESTARTING ? 1 : 0, exited, started);
}

absl::StatusOr<v1::ListServicesResponse> PgStore::ListServices(const v1::ListServicesRequest& req) {
  const uint32_t page_size = req.page_size() == 0 ? 100 : req.page_size();
  if (page_size > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("page_size: at most 1000, got ", page_size));
  }
  if (req.agent_id().size() > 200 || !IsValidUtf8(req.agent_id())) {
    return absl::InvalidArgumentError(absl::StrCat("agent_id: at most 200 bytes of UTF-8, got ",
                                                   QuoteForMessage(req.agent_id())));
  }
  const std::string& state = req.state();
  if (!state.empty() && state != "running" && state != "exited" && state != "backoff" &&
      state != "stopped") {
    return absl::InvalidArgumentError(
        absl::StrCat("state: running, exited, backoff or stopped, got ", QuoteForMessage(state)));
  }
  std::string after_agent, after_name;
  VIGIE_RETURN_IF_ERROR(pg::ParsePageToken(req.page_token(), &after_agent, &after_name));
  v1::ListServicesResponse out;
  absl::Status s = Run("list services", [&](PgConnection& c) {
    out.Clear();
    pqxx::read_transaction t(c);
    pqxx::result rows = t.exec_params(
        absl::StrCat("SELECT ", kServiceColumns,
                     " FROM service_state WHERE ($1 = '' OR agent_id = $1) AND "
                     "($2 = '' OR state = $2) AND (agent_id, service) > ($3, $4) "
                     "ORDER BY agent_id, service LIMIT $5"),
        req.agent_id(), state, after_agent, after_name, static_cast<int64_t>(page_size) + 1);
    for (pqxx::result::size_type i = 0; i < rows.size() && i < page_size; ++i) {
      ServiceFromRow(rows[i], out.add_services());
    }
    if (rows.size() > page_size) {
      const v1::Service& last = out.services(out.services_size() - 1);
      out.set_next_page_token(absl::StrCat(last.agent_id(), "\x1f", last.name()));
    }
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace vigie::controlplane
