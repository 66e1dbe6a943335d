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
             "WHERE (state = 'pending' OR (state = 'sent' AND sent_at < now() - "
             "interval '30 seconds')) AND agent_id = ANY($1::text[]) "
             "AND created_at > now() - interval '5 minutes' RETURNING id, agent_id, check_name",
             array)) {
      out.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>()});
    }
    t.commit();
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status PgStore::CompleteCommands(const std::string& agent_id,
                                       const std::vector<v1::CheckResult>& results) {
  struct Done {
    std::string id, check, json;
  };
  std::vector<Done> done;
  for (const v1::CheckResult& r : results) {
    if (r.command_ids().empty()) continue;
    v1::CheckResult copy = r;
    copy.clear_command_ids();
    std::string json;
    if (!google::protobuf::util::MessageToJsonString(copy, &json).ok()) continue;
    for (const std::string& id : r.command_ids()) done.push_back({id, r.name(), json});
  }
  if (done.empty()) return absl::OkStatus();
  return Run("complete commands", [&](PgConnection& c) {
    pqxx::work t(c);
    for (const Done& d : done) {
      // Only the agent and check asked can answer: an id from elsewhere changes nothing.
      if (t.exec_params("UPDATE commands SET state = 'done', done_at = now(), result = $2 "
                        "WHERE id = $1 AND agent_id = $3 AND check_name = $4 AND state <> "
                        "'done' RETURNING 1",
                        d.id, d.json, agent_id, d.check)
              .empty()) {
        continue;
      }
      t.exec_params("SELECT pg_notify($1, $2)", std::string(kCommandDoneChannel), d.id);
    }
    t.commit();
  });
}

absl::Status PgStore::ReleaseCommand(const std::string& id) {
  return Run("release command", [&](PgConnection& c) {
    pqxx::work t(c);
    pqxx::result r = t.exec_params(
        "UPDATE commands SET state = 'pending', sent_at = NULL WHERE id = $1 AND state = 'sent' "
        "RETURNING agent_id",
        id);
    if (!r.empty()) {
      t.exec_params("SELECT pg_notify($1, $2)", std::string(kCommandsChannel),
                    r[0][0].as<std::string>());
    }
    t.commit();
  });
}

absl::StatusOr<std::map<std::string, v1::CheckResult>> PgStore::CommandResults(
    const std::vector<std::string>& ids) {
  std::map<std::string, v1::CheckResult> out;
  std::vector<std::pair<std::string, std::string>> rows;
  absl::Status s = Run("command results", [&](PgConnection& c) {
    rows.clear();
    pqxx::read_transaction t(c);
    for (const std::string& id : ids) {
      pqxx::result r =
          t.exec_params("SELECT result::text FROM commands WHERE id = $1 AND state = 'done'", id);
      if (!r.empty()) rows.emplace_back(id, r[0][0].as<std::string>());
    }
  });
  if (!s.ok()) return s;
  for (const auto& [id, json] : rows) {
    v1::CheckResult result;
    if (google::protobuf::util::JsonStringToMessage(json, &result).ok()) out[id] = result;
  }
  return out;
}

}  // namespace vigie::controlplane
