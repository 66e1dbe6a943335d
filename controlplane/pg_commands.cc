// Commands for agents through the commands table (Admin RunCheck), part of PgStore.
#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/agent_message.h"
#include "common/secrets.h"
#include "controlplane/pg_internal.h"
#include "controlplane/pg_store.h"

namespace vigie::controlplane {

absl::StatusOr<std::string> PgStore::CreateCommand(const std::string& agent_id,
                                                   const std::string& check) {
  const std::string id = absl::StrCat("cmd-", RandomHex(12));
  bool known = false;
  absl::Status s = Run("create command", [&](PgConnection& c) {
    pqxx::work t(c);
    known = !t.exec_params("SELECT 1 FROM check_state WHERE agent_id = $1 AND name = $2", agent_id,
                           check)
                 .empty();
    if (!known) return;
    t.exec0("DELETE FROM commands WHERE created_at < now() - interval '1 hour'");
    t.exec_params("INSERT INTO commands (id, agent_id, check_name) VALUES ($1, $2, $3)", id,
                  agent_id, check);
    t.exec_params("SELECT pg_notify($1, $2)", std::string(kCommandsChannel), agent_id);
    t.commit();
  });
  if (!s.ok()) return s;
  if (!known) {
    return absl::NotFoundError(absl::StrCat("agent ", QuoteForMessage(agent_id),
                                            " has reported no check ", QuoteForMessage(check)));
  }
  return id;
}

absl::StatusOr<std::vector<Store::PendingCommand>> PgStore::ClaimCommands(
    const std::vector<std::string>& agent_ids) {
  std::vector<PendingCommand> out;
  if (agent_ids.empty()) return out;
  // Agent ids are [A-Za-z0-9._-] (checked at Hello): safe inside an array literal.
  const std::string array = absl::StrCat("{\"", absl::StrJoin(agent_ids, "\",\""), "\"}");
  absl::Status s = Run("claim commands", [&](PgConnection& c) {
    out.clear();
    pqxx::work t(c);
    for (const pqxx::row& row : t.exec_params(
             "UPDATE commands SET state = 'sent', sent_at = now() "
             "WHERE state = 'pending' AND agent_id = ANY($1::text[]) "
             "AND created_at > now() - interval '5 minutes' RETURNING id, agent_id, check_name",
             array)) {
      out.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>()});
    }
    t.commit();
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status PgStore::CompleteCommands(const std::vector<v1::CheckResult>& results) {
  std::vector<std::pair<std::string, std::string>> done;  // id, result as JSON
  for (const v1::CheckResult& r : results) {
    if (r.command_ids().empty()) continue;
    v1::CheckResult copy = r;
    copy.clear_command_ids();
    std::string json;
    if (!google::protobuf::util::MessageToJsonString(copy, &json).ok()) continue;
    for (const std::string& id : r.command_ids()) done.emplace_back(id, json);
  }
  if (done.empty()) return absl::OkStatus();
  return Run("complete commands", [&](PgConnection& c) {
    pqxx::work t(c);
    for (const auto& [id, json] : done) {
      if (t.exec_params("UPDATE commands SET state = 'done', done_at = now(), result = $2 "
                        "WHERE id = $1 AND state <> 'done' RETURNING 1",
                        id, json)
              .empty()) {
        continue;  // unknown or answered: an agent's id means nothing here
      }
      t.exec_params("SELECT pg_notify($1, $2)", std::string(kCommandDoneChannel), id);
    }
    t.commit();
  });
}

absl::StatusOr<std::optional<v1::CheckResult>> PgStore::CommandResult(const std::string& id) {
  std::optional<std::string> json;
  absl::Status s = Run("command result", [&](PgConnection& c) {
    json.reset();
    pqxx::read_transaction t(c);
    pqxx::result r =
        t.exec_params("SELECT result::text FROM commands WHERE id = $1 AND state = 'done'", id);
    if (!r.empty()) json = r[0][0].as<std::string>();
  });
  if (!s.ok()) return s;
  if (!json) return std::optional<v1::CheckResult>();
  v1::CheckResult result;
  if (!google::protobuf::util::JsonStringToMessage(*json, &result).ok()) {
    return absl::InternalError(absl::StrCat("command ", id, ": stored result does not parse"));
  }
  return std::optional<v1::CheckResult>(std::move(result));
}

}  // namespace vigie::controlplane
