// Store on PostgreSQL through libpqxx. Every libpqxx exception stops here and becomes a Status.
#ifndef VIGIE_CONTROLPLANE_PG_STORE_H_
#define VIGIE_CONTROLPLANE_PG_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"
#include "controlplane/store.h"

namespace vigie::controlplane {

class PgConnection;  // a pqxx::connection; defined in pg_store.cc

struct PgStoreOptions {
  std::string database_url;
  // Connections kept open at most; callers beyond it wait for one to be returned.
  int max_connections = 6;
};

// Thread-safe: each call borrows a connection from a bounded pool. A broken connection is
// dropped and replaced on the next call (the failed call returns kUnavailable).
class PgStore : public Store {
 public:
  // Connects and applies pending migrations (under an advisory lock, so concurrent replicas
  // starting together migrate once).
  static absl::StatusOr<std::unique_ptr<PgStore>> Open(PgStoreOptions options);
  ~PgStore() override;

  absl::StatusOr<uint64_t> RegisterAgent(const v1::Hello& hello,
                                         const std::string& connection_id) override;
  absl::Status MarkDisconnected(const std::string& agent_id,
                                const std::string& connection_id) override;
  absl::Status TouchAgent(const std::string& agent_id) override;
  absl::StatusOr<IngestResult> Ingest(const std::string& agent_id,
                                      const std::vector<v1::AgentMessage>& messages,
                                      const std::vector<Transition>& transitions,
                                      const std::string& generator_url) override;
  absl::StatusOr<std::vector<v1::Agent>> ListAgents() override;
  absl::StatusOr<v1::Agent> GetAgent(const std::string& agent_id) override;
  absl::StatusOr<std::vector<ActiveAlert>> LoadFiringAlerts() override;
  absl::StatusOr<std::vector<v1::Alert>> ListAlerts(v1::AlertState state) override;
  absl::StatusOr<v1::QuerySamplesResponse> QuerySamples(const v1::QuerySamplesRequest& request,
                                                        absl::Duration range,
                                                        uint32_t limit) override;
  absl::StatusOr<int> DispatchOutbox(
      int limit, const std::function<DeliveryOutcome(const OutboxEntry&)>& deliver) override;
  absl::StatusOr<int64_t> PendingOutbox() override;
  absl::StatusOr<TokenRecord> CreateToken(const TokenRecord& token) override;
  absl::StatusOr<std::vector<TokenRecord>> ListTokens() override;
  absl::StatusOr<TokenRecord> RevokeToken(const std::string& id) override;
  absl::Status UpsertBootstrapToken(const TokenRecord& token) override;

  // The schema version after migrations.
  int schema_version() const { return schema_version_; }

 private:
  explicit PgStore(PgStoreOptions options);

  // Runs `fn(connection)` on a pooled connection, turning exceptions into a Status.
  absl::Status Run(const char* what, const std::function<void(PgConnection&)>& fn);
  absl::StatusOr<std::unique_ptr<PgConnection>> Connect();

  const PgStoreOptions options_;
  int schema_version_ = 0;
  Mutex mu_;
  std::vector<std::unique_ptr<PgConnection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

// The ordered schema migrations (exposed for tests and docs).
struct Migration {
  int version;
  const char* description;
  const char* sql;
};
const std::vector<Migration>& Migrations();

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_PG_STORE_H_
