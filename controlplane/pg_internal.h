// Helpers shared by the files that implement PgStore (pg_store.cc, pg_alerts.cc). Not for
// other code: it exposes libpqxx.
#ifndef VIGIE_CONTROLPLANE_PG_INTERNAL_H_
#define VIGIE_CONTROLPLANE_PG_INTERNAL_H_

#include <cstdint>
#include <map>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/rule_engine.h"
#include "nlohmann/json.hpp"

namespace vigie::controlplane {

class PgConnection : public pqxx::connection {
 public:
  using pqxx::connection::connection;
};

namespace pg {

using Labels = std::map<std::string, std::string>;

template <typename Map>
std::string LabelsJson(const Map& labels) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : labels) j[k] = v;
  return j.dump();
}

// A JSON object of strings as a map (other values as their JSON text); {} for anything else.
Labels ParseLabels(const std::string& json);

// A check status from its stored name (CheckStatusName in common/agent_message.h).
v1::CheckStatus CheckStatusFromName(const std::string& name);

// A page token of the List* calls keyed by (agent, name): "agent\x1fname"; "" gives ("", "").
// InvalidArgument naming page_token and the value for one this API did not give.
absl::Status ParsePageToken(const std::string& token, std::string* agent, std::string* name);

// Milliseconds since the epoch as a timestamptz literal.
std::string PgTime(int64_t ms);

// The database's clock, in milliseconds since the epoch.
int64_t NowMs(pqxx::transaction_base& w);

// Stores alert transitions in the caller's transaction: the alert row, its history event and,
// unless the control plane holds the notification back (a silence, the agent down, a resolve
// of a firing never sent), the outbox row the dispatcher hands to the notifier.
void StoreTransitions(pqxx::transaction_base& w, const std::vector<Transition>& transitions,
                      const std::string& generator_url);

// Records pending alerts that started (upsert) or ended (delete) in the caller's transaction.
void StorePending(pqxx::transaction_base& w, const std::vector<PendingChange>& pending);

// Appends to the audit log in the caller's transaction.
void WriteAudit(pqxx::transaction_base& w, const std::string& actor, const std::string& action,
                const std::string& target, const std::string& detail_json);

}  // namespace pg
}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_PG_INTERNAL_H_
