// Store on PostgreSQL through libpqxx. Every libpqxx exception stops here and becomes a Status.
#ifndef VIGIE_CONTROLPLANE_PG_STORE_H_
#define VIGIE_CONTROLPLANE_PG_STORE_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "common/mutex.h"
#include "controlplane/series_cache.h"
#include "controlplane/store.h"
#include "nlohmann/json.hpp"

namespace pqxx {
class transaction_base;
}  // namespace pqxx

namespace vigie::controlplane {

class PgConnection;  // a pqxx::connection; defined in pg_store.cc

struct PgStoreOptions {
  std::string database_url;
  // Connections kept open at most; callers beyond it wait for one to be returned.
  int max_connections = 6;
  // Raw samples, check results and service events are kept this long (whole days); 5-minute
  // rollups and daily check/service rows this long (whole months for rollups).
  absl::Duration retention_raw = absl::Hours(24 * 15);
  absl::Duration retention_rollups = absl::Hours(24 * 400);
  // Series identities kept in memory, across all agents.
  size_t series_cache_bytes = 64 << 20;
  // Series one agent may have; samples of further new series are not stored (counted).
  size_t max_series_per_agent = 50000;
  // The link notifications carry back to the control plane.
  std::string generator_url;
};

struct MaintenanceResult {
  size_t partitions_dropped = 0;
  size_t daily_rows_deleted = 0;
  size_t outbox_rows_deleted = 0;  // delivered more than 7 days ago
  size_t events_deleted = 0;       // alert history older than retention.rollups
};

// Samples to forward to a remote-write target: whole batches of one agent, grouped by series.
struct ForwardSeries {
  int64_t series_id = 0;
  std::vector<std::pair<int64_t, double>> samples;  // (timestamp ms, value), in batch order
};
struct ForwardChunk {
  std::string agent_id;
  uint64_t from_seq = 0;  // exclusive
  uint64_t through_seq = 0;
  size_t samples = 0;
  std::vector<ForwardSeries> series;
};

struct RollupResult {
  size_t agents = 0;
  size_t buckets_written = 0;
  bool more = false;  // work remains that is already due: call again
  size_t failed = 0;  // agents whose rollup failed this round (retried next round)
  absl::Status first_error;
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
                                      const std::vector<PendingChange>& pending,
                                      const std::string& generator_url) override;
  absl::StatusOr<std::vector<v1::Agent>> ListAgents() override;
  absl::StatusOr<v1::Agent> GetAgent(const std::string& agent_id) override;
  absl::StatusOr<std::vector<ActiveAlert>> LoadFiringAlerts() override;
  absl::StatusOr<std::vector<PendingChange>> LoadPendingAlerts() override;
  absl::StatusOr<v1::QuerySamplesResponse> QuerySamples(const v1::QuerySamplesRequest& request,
                                                        absl::Duration range,
                                                        uint32_t limit) override;
  absl::StatusOr<int> DispatchOutbox(
      int limit, absl::Duration lease,
      const std::function<DeliveryOutcome(const OutboxEntry&)>& deliver) override;
  absl::StatusOr<OutboxStatus> PendingOutbox() override;
  absl::StatusOr<TokenRecord> CreateToken(const TokenRecord& token) override;
  absl::StatusOr<std::vector<TokenRecord>> ListTokens() override;
  absl::StatusOr<TokenRecord> RevokeToken(const std::string& id) override;
  absl::Status UpsertBootstrapToken(const TokenRecord& token) override;
  absl::StatusOr<v1::ListAlertsResponse> QueryAlerts(const v1::ListAlertsRequest& request) override;
  absl::StatusOr<v1::GetAlertResponse> GetAlert(const std::string& rule,
                                                const std::string& fingerprint) override;
  absl::StatusOr<v1::Alert> Acknowledge(const Acknowledgement& ack,
                                        const std::string& actor) override;
  absl::StatusOr<v1::Alert> Unacknowledge(const std::string& rule, const std::string& fingerprint,
                                          const std::string& actor) override;
  absl::StatusOr<v1::Silence> CreateSilence(const Silence& silence,
                                            const std::string& actor) override;
  absl::StatusOr<std::vector<v1::Silence>> ListSilences(bool include_expired) override;
  absl::Status ExpireSilence(const std::string& id, const std::string& actor) override;
  absl::StatusOr<int> DeleteAgent(const std::string& agent_id, const std::string& actor) override;
  absl::Status Audit(const std::string& actor, const std::string& action, const std::string& target,
                     const std::string& detail) override;
  absl::StatusOr<v1::ListAuditLogResponse> ListAuditLog(
      const v1::ListAuditLogRequest& request) override;
  absl::StatusOr<v1::ListChecksResponse> ListChecks(const v1::ListChecksRequest& request) override;
  absl::StatusOr<v1::GetCheckResponse> GetCheck(const v1::GetCheckRequest& request) override;
  absl::StatusOr<v1::ListServicesResponse> ListServices(
      const v1::ListServicesRequest& request) override;
  absl::StatusOr<std::string> CreateCommand(const std::string& agent_id, CommandKind kind,
                                            const std::string& name) override;
  absl::StatusOr<std::vector<PendingCommand>> ClaimCommands(
      const std::vector<std::string>& agent_ids) override;
  absl::Status CompleteCommands(const std::string& agent_id,
                                const std::vector<CommandAnswer>& answers) override;
  absl::Status ReleaseCommand(const std::string& id) override;
  absl::StatusOr<std::map<std::string, std::string>> CommandResults(
      const std::vector<std::string>& ids) override;
  // The channels a CommandRouter LISTENs on: payload the agent id / the command id.
  static constexpr char kCommandsChannel[] = "vigie_commands";
  static constexpr char kCommandDoneChannel[] = "vigie_command_done";
  absl::StatusOr<std::map<std::string, std::string>> CheckMessages(
      const std::string& agent_id, const std::vector<std::string>& names) override;

  // By the database's clock, on one replica at a time (an advisory lock; the others return 0):
  // notifies what the control plane held back and may send now (a firing whose silence ended
  // or whose agent is back), what a silence came to cover or stopped covering, and alerts
  // whose acknowledgement expired. Returns how many notifications it queued.
  absl::StatusOr<int> ReconcileNotifications();
  // Firing alerts by severity: all of them, those held back, those acknowledged.
  struct FiringCount {
    int64_t firing = 0, held = 0, acknowledged = 0;
  };
  absl::StatusOr<std::map<std::string, FiringCount>> CountFiringAlerts();

  // The schema version after migrations.
  int schema_version() const { return schema_version_; }

  // Creates partitions ahead of time (today and two days on; this month and the next) and
  // drops those past retention. Safe with several replicas (an advisory lock).
  absl::StatusOr<MaintenanceResult> Maintain(absl::Time now);
  // Records that replica `instance` is alive, and marks disconnected every agent whose stream
  // belongs to a replica not seen for `stale_after` (crashed, killed, or restarted under a new
  // instance): their `connected` flag would otherwise stay true. Returns how many it marked.
  absl::StatusOr<int64_t> ReplicaHeartbeat(const std::string& instance, absl::Duration stale_after);
  // The agent-absent rules among `rules`, by the database's clock: fires for each matching
  // agent not heard from (data or heartbeat: agents.last_seen) for absent_for, resolves those
  // heard from again or deleted; stores the transitions with their outbox rows. Runs on one
  // replica at a time (an advisory lock; the others return nothing). Returns the transitions.
  absl::StatusOr<std::vector<Transition>> EvaluateAbsence(const std::vector<Rule>& rules,
                                                          const std::string& generator_url);
  // Rolls complete 5-minute buckets up for up to `max_agents` agents (an hour of buckets each
  // at most), and redoes buckets that late samples landed in. Safe with several replicas.
  absl::StatusOr<RollupResult> RollUp(absl::Time now, int max_agents);

  const SeriesCache& series_cache() const { return series_cache_; }

  // Remote write. Agents with committed batches beyond `target`'s cursor (at most `limit`).
  absl::StatusOr<std::vector<std::string>> AgentsBehind(const std::string& target, int limit);
  // Reads `agent`'s batches after the cursor (whole batches, about `max_samples` samples, at
  // least one batch) and calls `send`; if it returns OK, moves the cursor past them in the same
  // transaction. The cursor's row is locked (SKIP LOCKED): another replica forwarding the same
  // agent makes this a no-op. Returns the samples forwarded (0: nothing to do, or taken).
  absl::StatusOr<size_t> Forward(const std::string& target, const std::string& agent,
                                 size_t max_samples,
                                 const std::function<absl::Status(const ForwardChunk&)>& send);
  // Name and labels of series, by id.
  absl::StatusOr<std::vector<std::pair<int64_t, std::map<std::string, std::string>>>> SeriesLabels(
      const std::vector<int64_t>& ids);
  // Batches committed but not yet forwarded to `target`, summed over agents.
  absl::StatusOr<int64_t> ForwardBacklog(const std::string& target);

 private:
  explicit PgStore(PgStoreOptions options);

  // Runs `fn(connection)` on a pooled connection, turning exceptions into a Status.
  absl::Status Run(const char* what, const std::function<void(PgConnection&)>& fn);
  absl::StatusOr<std::unique_ptr<PgConnection>> Connect();
  // Makes sure the partitions of `parent` holding `days` (days since 1970-01-01, UTC) exist.
  absl::Status EnsurePartitions(const char* parent, const char* period,
                                const std::set<int64_t>& days);
  static std::string PartitionKey(const char* parent, const char* period, int64_t day);
  int64_t RawCutoffMs(absl::Time now) const;
  // Ingest helpers, inside its transaction: check results (a JSON array), series ids (cache,
  // then the table) and the layout.
  // service_state from one event, in the ingest transaction (pg_services.cc).
  void UpsertServiceState(pqxx::transaction_base& w, const std::string& agent_id,
                          const v1::ServiceEvent& event);
  void StoreCheckResults(pqxx::transaction_base& w, const std::string& agent_id,
                         const nlohmann::json& results);
  void ResolveSeries(pqxx::transaction_base& w, const std::string& agent_id,
                     const v1::MetricBatch& batch, AgentSeries* series, std::vector<int64_t>* ids,
                     int64_t* layout_id, IngestResult* result);
  int64_t FindOrCreateLayout(pqxx::transaction_base& w, const std::string& agent_id,
                             const std::vector<int64_t>& ids);
  absl::StatusOr<RollupResult> RollUpAgent(const std::string& agent, int64_t upto);
  // Acknowledge (ack set) or Unacknowledge (null).
  absl::StatusOr<v1::Alert> ChangeAcknowledgement(const Acknowledgement* ack,
                                                  const std::string& rule,
                                                  const std::string& fingerprint,
                                                  const std::string& actor);

  const PgStoreOptions options_;
  int schema_version_ = 0;
  Mutex mu_;
  std::vector<std::unique_ptr<PgConnection>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  // Partitions known to exist (names), so ingest asks the database only for new days.
  absl::flat_hash_set<std::string> known_partitions_ ABSL_GUARDED_BY(mu_);
  SeriesCache series_cache_;
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
