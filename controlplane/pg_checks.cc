// PgStore: the Admin API's view of service checks (check_state, check_results).
#include <pqxx/pqxx>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/agent_message.h"
#include "common/status.h"
#include "controlplane/pg_internal.h"
#include "controlplane/pg_store.h"

namespace vigie::controlplane {
namespace pg {

v1::CheckStatus CheckStatusFromName(const std::string& name) {
  if (name == "ok") return v1::CHECK_STATUS_OK;
  if (name == "warning") return v1::CHECK_STATUS_WARNING;
  if (name == "critical") return v1::CHECK_STATUS_CRITICAL;
  return v1::CHECK_STATUS_UNKNOWN;
}

absl::Status ParsePageToken(const std::string& token, std::string* agent, std::string* name) {
  agent->clear();
  name->clear();
  if (token.empty()) return absl::OkStatus();
  std::vector<std::string> parts = absl::StrSplit(token, absl::MaxSplits('\x1f', 1));
  if (parts.size() != 2 || !IsValidUtf8(token)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: not one this API gave, got ", QuoteForMessage(token)));
  }
  *agent = parts[0];
  *name = parts[1];
  return absl::OkStatus();
}

}  // namespace pg

namespace {

constexpr char kCheckColumns[] =
    "agent_id, name, target, status, extract(epoch from since)::bigint, message, "
    "latency_seconds, extract(epoch from last_run)::bigint, consecutive_failures, labels::text";

void CheckFromRow(const pqxx::row& r, v1::Check* c) {
  c->set_agent_id(r[0].as<std::string>());
  c->set_name(r[1].as<std::string>());
  c->set_target(r[2].as<std::string>());
  c->set_status(pg::CheckStatusFromName(r[3].as<std::string>()));
  c->set_since_unix(r[4].as<int64_t>());
  c->set_message(r[5].as<std::string>());
  c->set_latency_seconds(r[6].as<double>());
  c->set_last_run_unix(r[7].as<int64_t>());
  c->set_consecutive_failures(r[8].as<uint32_t>());
  for (const auto& [k, v] : pg::ParseLabels(r[9].as<std::string>())) {
    (*c->mutable_labels())[k] = v;
  }
}

absl::Status CheckName(const char* field, const std::string& v, bool required) {
  if ((required && v.empty()) || v.size() > 200 || !IsValidUtf8(v)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", required ? "required, " : "",
                                                   "at most 200 bytes of UTF-8, got ",
                                                   QuoteForMessage(v)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::ListChecksResponse> PgStore::ListChecks(const v1::ListChecksRequest& req) {
  const uint32_t page_size = req.page_size() == 0 ? 100 : req.page_size();
  if (page_size > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("page_size: at most 1000, got ", page_size));
  }
  VIGIE_RETURN_IF_ERROR(CheckName("agent_id", req.agent_id(), false));
  if (!v1::CheckStatus_IsValid(req.status())) {
    return absl::InvalidArgumentError(absl::StrCat("status: unknown value ", req.status()));
  }
  std::string after_agent, after_name;
  VIGIE_RETURN_IF_ERROR(pg::ParsePageToken(req.page_token(), &after_agent, &after_name));
  const std::string status =
      req.status() == v1::CHECK_STATUS_UNSPECIFIED ? "" : CheckStatusName(req.status());
  v1::ListChecksResponse out;
  absl::Status s = Run("list checks", [&](PgConnection& c) {
    out.Clear();
    pqxx::read_transaction t(c);
    pqxx::result rows = t.exec_params(
        absl::StrCat("SELECT ", kCheckColumns,
                     " FROM check_state WHERE ($1 = '' OR agent_id = $1) AND "
                     "($2 = '' OR status = $2) AND (agent_id, name) > ($3, $4) "
                     "ORDER BY agent_id, name LIMIT $5"),
        req.agent_id(), status, after_agent, after_name, static_cast<int64_t>(page_size) + 1);
    for (pqxx::result::size_type i = 0; i < rows.size() && i < page_size; ++i) {
      CheckFromRow(rows[i], out.add_checks());
    }
    if (rows.size() > page_size) {
      const v1::Check& last = out.checks(out.checks_size() - 1);
      out.set_next_page_token(absl::StrCat(last.agent_id(), "\x1f", last.name()));
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<v1::GetCheckResponse> PgStore::GetCheck(const v1::GetCheckRequest& req) {
  VIGIE_RETURN_IF_ERROR(CheckName("agent_id", req.agent_id(), true));
  VIGIE_RETURN_IF_ERROR(CheckName("name", req.name(), true));
  const uint32_t limit = req.results() == 0 ? 20 : req.results();
  if (limit > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("results: at most 1000, got ", limit));
  }
  v1::GetCheckResponse out;
  bool found = false;
  absl::Status s = Run("get check", [&](PgConnection& c) {
    out.Clear();
    pqxx::read_transaction t(c);
    pqxx::result r =
        t.exec_params(absl::StrCat("SELECT ", kCheckColumns,
                                   " FROM check_state WHERE agent_id = $1 AND name = $2"),
                      req.agent_id(), req.name());
    found = !r.empty();
    if (!found) return;
    CheckFromRow(r[0], out.mutable_check());
    for (const pqxx::row& row :
         t.exec_params("SELECT target, status, latency_seconds, message, "
                       "(extract(epoch from ts) * 1000)::bigint, labels::text FROM check_results "
                       "WHERE agent_id = $1 AND name = $2 ORDER BY ts DESC LIMIT $3",
                       req.agent_id(), req.name(), static_cast<int64_t>(limit))) {
      v1::CheckResult* cr = out.add_results();
      cr->set_name(req.name());
      cr->set_target(row[0].as<std::string>());
      cr->set_status(pg::CheckStatusFromName(row[1].as<std::string>()));
      cr->set_latency_seconds(row[2].as<double>());
      cr->set_message(row[3].as<std::string>());
      cr->set_timestamp_ms(row[4].as<int64_t>());
      for (const auto& [k, v] : pg::ParseLabels(row[5].as<std::string>())) {
        (*cr->mutable_labels())[k] = v;
      }
    }
  });
  if (!s.ok()) return s;
  if (!found) {
    return absl::NotFoundError(absl::StrCat("agent ", QuoteForMessage(req.agent_id()),
                                            " has no check ", QuoteForMessage(req.name())));
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> PgStore::CheckMessages(
    const std::string& agent_id, const std::vector<std::string>& names) {
  std::map<std::string, std::string> out;
  absl::Status s = Run("check messages", [&](PgConnection& c) {
    out.clear();
    pqxx::read_transaction t(c);
    for (const std::string& name : names) {  // a few, only for alerts fired without a result
      pqxx::result r = t.exec_params(
          "SELECT message FROM check_state WHERE agent_id = $1 AND name = $2", agent_id, name);
      if (!r.empty()) out[name] = r[0][0].as<std::string>();
    }
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace vigie::controlplane
