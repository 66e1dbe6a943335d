// Commands for agents through the commands table (Admin RunCheck, RestartService), part of
// PgStore.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/agent_message.h"
#include "common/secrets.h"
#include "controlplane/pg_internal.h"
#include "controlplane/pg_store.h"

namespace vigie::controlplane {

namespace {

const char* KindName(Store::CommandKind kind) {
  return kind == Store::CommandKind::kRunCheck ? "run_check" : "restart_service";
}

}  // namespace

absl::StatusOr<std::string> PgStore::CreateCommand(const std::string& agent_id, CommandKind kind,
                                                   const std::string& name) {
  const std::string id = absl::StrCat("cmd-", RandomHex(12));
  bool known = false;
  absl::Status s = Run("create command", [&](PgConnection& c) {
    pqxx::work t(c);
    known = !t.exec_params(kind == CommandKind::kRunCheck
                               ? "SELECT 1 FROM check_state WHERE agent_id = $1 AND name = $2"
                               : "SELECT 1 FROM service_state WHERE agent_id = $1 AND service = $2",
                           agent_id, name)
                 .empty();
    if (!known) return;
    t.exec0("DELETE FROM commands WHERE created_at < now() - interval '1 hour'");
    t.exec_params("INSERT INTO commands (id, agent_id, kind, name) VALUES ($1, $2, $3, $4)", id,
                  agent_id, KindName(kind), name);
    t.exec_params("SELECT pg_notify($1, $2)", std::string(kCommandsChannel), agent_id);
    t.commit();
  });
  if (!s.ok()) return s;
  if (!known) {
    return absl::NotFoundError(absl::StrCat(
        "agent ", QuoteForMessage(agent_id), " has reported no ",
        kind == CommandKind::kRunCheck ? "check " : "service ", QuoteForMessage(name)));
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
             "AND created_at > now() - interval '5 minutes' RETURNING id, agent_id, kind, name",
             array)) {
      out.push_back({row[0].as<std::string>(), row[1].as<std::string>(),
                     row[2].as<std::string>() == "run_check" ? CommandKind::kRunCheck
                                                             : CommandKind::kRestartService,
                     row[3].as<std::string>()});
    }
    t.commit();
  });
  if (!s.ok()) return s;
  return out;
}

absl::Status PgStore::CompleteCommands(const std::string& agent_id,
                                       const std::vector<CommandAnswer>& answers) {
  if (answers.empty()) return absl::OkStatus();
  return Run("complete commands", [&](PgConnection& c) {
    pqxx::work t(c);
    for (const CommandAnswer& a : answers) {
      // Only the agent and the check or service asked can answer.
      if (t.exec_params("UPDATE commands SET state = 'done', done_at = now(), result = $2 "
                        "WHERE id = $1 AND agent_id = $3 AND kind = $4 AND name = $5 AND "
                        "state <> 'done' RETURNING 1",
                        a.id, a.json, agent_id, KindName(a.kind), a.name)
              .empty()) {
        continue;
      }
      t.exec_params("SELECT pg_notify($1, $2)", std::string(kCommandDoneChannel), a.id);
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

absl::StatusOr<std::map<std::string, std::string>> PgStore::CommandResults(
    const std::vector<std::string>& ids) {
  std::map<std::string, std::string> out;
  absl::Status s = Run("command results", [&](PgConnection& c) {
    out.clear();
    pqxx::read_transaction t(c);
    for (const std::string& id : ids) {
      pqxx::result r =
          t.exec_params("SELECT result::text FROM commands WHERE id = $1 AND state = 'done'", id);
      if (!r.empty()) out[id] = r[0][0].as<std::string>();
    }
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace vigie::controlplane
