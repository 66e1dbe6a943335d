// Storage interface of the control plane: inventory, samples, alert state and the
// notification outbox. PgStore (pg_store.h) implements it on PostgreSQL.
#ifndef VIGIE_CONTROLPLANE_STORE_H_
#define VIGIE_CONTROLPLANE_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "controlplane/rule_engine.h"
#include "controlplane/silences.h"
#include "vigie/v1/admin.pb.h"
#include "vigie/v1/agent.pb.h"
#include "vigie/v1/notifier.pb.h"

namespace vigie::controlplane {

struct IngestResult {
  // The agent's committed sequence after the transaction.
  uint64_t committed_sequence = 0;
  // Messages skipped because their sequence was already committed (resends).
  uint64_t duplicates = 0;
  uint64_t samples_written = 0;
  // Samples older than the raw retention, not stored (the message still commits).
  uint64_t samples_expired = 0;
  // Series new to the database; batches whose series layout differed from the agent's last one
  // (or was not cached); batches matched to the cached layout.
  uint64_t series_created = 0;
  uint64_t layouts_changed = 0;
  uint64_t layout_hits = 0;
  // Samples of new series beyond the agent's series limit, not stored.
  uint64_t samples_over_series_limit = 0;
};

// One credential. `sha256` is the hash of the secret (32 raw bytes); the secret is never stored.
struct TokenRecord {
  std::string id;
  v1::TokenKind kind = v1::TOKEN_KIND_UNSPECIFIED;
  std::string agent_id;
  std::string sha256;
  std::string description;
  std::string created_by;
  int64_t created_at_unix = 0;
  int64_t revoked_at_unix = 0;
};

// A kind's name: the role a token grants and the tokens.kind column ("agent", "enrolment",
// "viewer", "admin"); "" for anything else.
inline const char* TokenKindName(v1::TokenKind kind) {
  switch (kind) {
    case v1::TOKEN_KIND_AGENT:
      return "agent";
    case v1::TOKEN_KIND_ENROLMENT:
      return "enrolment";
    case v1::TOKEN_KIND_VIEWER:
      return "viewer";
    case v1::TOKEN_KIND_ADMIN:
      return "admin";
    default:
      return "";
  }
}
// The inverse; TOKEN_KIND_UNSPECIFIED (which grants nothing) for an unknown name.
inline v1::TokenKind TokenKindFromName(absl::string_view name) {
  for (v1::TokenKind k : {v1::TOKEN_KIND_AGENT, v1::TOKEN_KIND_ENROLMENT, v1::TOKEN_KIND_VIEWER,
                          v1::TOKEN_KIND_ADMIN}) {
    if (name == TokenKindName(k)) return k;
  }
  return v1::TOKEN_KIND_UNSPECIFIED;
}

// Silences not yet ended, at most.
inline constexpr size_t kMaxSilences = 10000;

struct OutboxEntry {
  int64_t id = 0;
  v1::NotifyRequest request;
  int attempts = 0;
};

// Thread-safe. Errors: kUnavailable when the database cannot be reached (retry), kInternal for
// anything unexpected. Nothing here blocks for long except on the database.
class Store {
 public:
  virtual ~Store() = default;

  // Records (or updates) an agent on Hello and marks it connected through `connection_id` (unique
  // per stream); returns its committed sequence.
  virtual absl::StatusOr<uint64_t> RegisterAgent(const v1::Hello& hello,
                                                 const std::string& connection_id) = 0;
  // Marks the agent disconnected, unless a newer stream (another connection_id, on any replica)
  // has registered it since.
  virtual absl::Status MarkDisconnected(const std::string& agent_id,
                                        const std::string& connection_id) = 0;
  virtual absl::Status TouchAgent(const std::string& agent_id) = 0;

  // In one transaction: writes the durable messages whose sequence is above the agent's
  // committed one (others are counted as duplicates and skipped), the alert transitions with
  // their outbox rows, the pending alerts that started or ended, and the new committed
  // sequence (the highest sequence in `messages`). `messages` are in increasing sequence order.
  virtual absl::StatusOr<IngestResult> Ingest(const std::string& agent_id,
                                              const std::vector<v1::AgentMessage>& messages,
                                              const std::vector<Transition>& transitions,
                                              const std::vector<PendingChange>& pending,
                                              const std::string& generator_url) = 0;

  virtual absl::StatusOr<std::vector<v1::Agent>> ListAgents() = 0;
  // kNotFound if there is no such agent.
  virtual absl::StatusOr<v1::Agent> GetAgent(const std::string& agent_id) = 0;
  virtual absl::StatusOr<std::vector<ActiveAlert>> LoadFiringAlerts() = 0;
  // Pending alerts as stored by Ingest (for RuleEngine::RestorePending at start-up).
  virtual absl::StatusOr<std::vector<PendingChange>> LoadPendingAlerts() {
    return std::vector<PendingChange>{};
  }
  virtual absl::StatusOr<v1::QuerySamplesResponse> QuerySamples(
      const v1::QuerySamplesRequest& request, absl::Duration range, uint32_t limit) = 0;

  // Outbox, leased: claims up to `limit` due entries for `lease` (SKIP LOCKED, so several
  // replicas share the work, each entry claimed by one), commits, then runs `deliver` on each
  // with no transaction open, and records each outcome in a short transaction of its own. An
  // entry is due only when every earlier transition of the same alert is delivered: order is
  // kept per alert, so one alert that cannot be delivered holds back no other. A claim whose
  // holder died expires after `lease`. Returns how many were delivered.
  struct DeliveryOutcome {
    bool delivered;
    std::string error;
    absl::Duration retry_in;
    // The notifier itself failed (unreachable, refused our token): the entries of this pass not
    // yet tried are not tried now, and are retried after retry_in too.
    bool stop = false;
  };
  virtual absl::StatusOr<int> DispatchOutbox(
      int limit, absl::Duration lease,
      const std::function<DeliveryOutcome(const OutboxEntry&)>& deliver) = 0;
  struct OutboxStatus {
    int64_t pending = 0;
    absl::Duration oldest = absl::ZeroDuration();  // age of the oldest undelivered entry
  };
  virtual absl::StatusOr<OutboxStatus> PendingOutbox() = 0;

  // Tokens. CreateToken returns the stored record (created_at filled in); RevokeToken is
  // kNotFound for an unknown id and leaves an already revoked token as it was.
  virtual absl::StatusOr<TokenRecord> CreateToken(const TokenRecord& token) = 0;
  virtual absl::StatusOr<std::vector<TokenRecord>> ListTokens() = 0;
  virtual absl::StatusOr<TokenRecord> RevokeToken(const std::string& id) = 0;
  // Inserts or replaces the token with `token.id`, valid again if it had been revoked.
  virtual absl::Status UpsertBootstrapToken(const TokenRecord& token) = 0;

  // Alert lifecycle (PgStore; the defaults answer kUnimplemented). Every change is written to
  // the audit log in its own transaction, with `actor` (the caller's token id).
  //
  // Firing and resolved alerts: `request` filters by state (unspecified: firing), severity
  // and labels; pages of page_size (default 100, at most 1000), newest first.
  virtual absl::StatusOr<v1::ListAlertsResponse> QueryAlerts(const v1::ListAlertsRequest& request) {
    (void)request;
    return absl::UnimplementedError("QueryAlerts");
  }
  // kNotFound for an unknown alert.
  virtual absl::StatusOr<v1::GetAlertResponse> GetAlert(const std::string& rule,
                                                        const std::string& fingerprint) {
    (void)rule, (void)fingerprint;
    return absl::UnimplementedError("GetAlert");
  }
  // Acknowledges a firing alert (kFailedPrecondition if it is resolved), replacing an earlier
  // acknowledgement; `expires` zero = until it resolves. Unacknowledge: kFailedPrecondition if
  // it is not acknowledged. Either change is notified (a firing notification with the new
  // acknowledgement) if the alert's firing was.
  struct Acknowledgement {
    std::string rule, fingerprint, by, comment;
    absl::Duration expires = absl::ZeroDuration();
  };
  virtual absl::StatusOr<v1::Alert> Acknowledge(const Acknowledgement& ack,
                                                const std::string& actor) {
    (void)ack, (void)actor;
    return absl::UnimplementedError("Acknowledge");
  }
  virtual absl::StatusOr<v1::Alert> Unacknowledge(const std::string& rule,
                                                  const std::string& fingerprint,
                                                  const std::string& actor) {
    (void)rule, (void)fingerprint, (void)actor;
    return absl::UnimplementedError("Unacknowledge");
  }
  // Silences (validated by SilenceFromProto). Create assigns the id; kResourceExhausted beyond
  // kMaxSilences not yet ended. Expire ends it now: kNotFound, or kFailedPrecondition if it
  // has ended already.
  virtual absl::StatusOr<v1::Silence> CreateSilence(const Silence& silence,
                                                    const std::string& actor) {
    (void)silence, (void)actor;
    return absl::UnimplementedError("CreateSilence");
  }
  virtual absl::StatusOr<std::vector<v1::Silence>> ListSilences(bool include_expired) {
    (void)include_expired;
    return absl::UnimplementedError("ListSilences");
  }
  virtual absl::Status ExpireSilence(const std::string& id, const std::string& actor) {
    (void)id, (void)actor;
    return absl::UnimplementedError("ExpireSilence");
  }
  // Deletes a disconnected agent and its data, resolving its firing alerts; returns how many.
  // kNotFound, or kFailedPrecondition while it is connected.
  virtual absl::StatusOr<int> DeleteAgent(const std::string& agent_id, const std::string& actor) {
    (void)agent_id, (void)actor;
    return absl::UnimplementedError("DeleteAgent");
  }
  // Appends to the audit log; `detail` is a JSON object.
  virtual absl::Status Audit(const std::string& actor, const std::string& action,
                             const std::string& target, const std::string& detail) {
    (void)actor, (void)action, (void)target, (void)detail;
    return absl::UnimplementedError("Audit");
  }
  virtual absl::StatusOr<v1::ListAuditLogResponse> ListAuditLog(
      const v1::ListAuditLogRequest& request) {
    (void)request;
    return absl::UnimplementedError("ListAuditLog");
  }
  // Checks' current states, by agent then name; InvalidArgument for a bad page size or token.
  virtual absl::StatusOr<v1::ListChecksResponse> ListChecks(const v1::ListChecksRequest& request) {
    (void)request;
    return absl::UnimplementedError("ListChecks");
  }
  // Supervised services' current states, by agent then name.
  virtual absl::StatusOr<v1::ListServicesResponse> ListServices(
      const v1::ListServicesRequest& request) {
    (void)request;
    return absl::UnimplementedError("ListServices");
  }
  // Commands for agents (Admin RunCheck and RestartService), through the commands table:
  // created pending (and announced to every replica), claimed by the replica holding the
  // agent's stream, done when the answer arrives. Ids are random; rows older than an hour are
  // deleted.
  enum class CommandKind { kRunCheck, kRestartService };
  // NOT_FOUND when the agent never reported that check (or service).
  virtual absl::StatusOr<std::string> CreateCommand(const std::string& agent_id, CommandKind kind,
                                                    const std::string& name) {
    (void)agent_id;
    (void)kind;
    (void)name;
    return absl::UnimplementedError("CreateCommand");
  }
  struct PendingCommand {
    std::string id;
    std::string agent_id;
    CommandKind kind = CommandKind::kRunCheck;
    std::string name;  // the check or service
  };
  // Marks the pending commands of `agent_ids` sent and returns them (each to one caller);
  // also those sent over 30 s ago without a result (their stream may have ended first).
  virtual absl::StatusOr<std::vector<PendingCommand>> ClaimCommands(
      const std::vector<std::string>& agent_ids) {
    (void)agent_ids;
    return std::vector<PendingCommand>();
  }
  // An answer from `agent_id`: a CheckResult or ServiceEvent naming command `id`, as JSON.
  struct CommandAnswer {
    std::string id;
    CommandKind kind = CommandKind::kRunCheck;
    std::string name;
    std::string json;
  };
  // Stores each answer that matches one of the agent's commands (same kind and name) and
  // announces it; an id from elsewhere changes nothing.
  virtual absl::Status CompleteCommands(const std::string& agent_id,
                                        const std::vector<CommandAnswer>& answers) {
    (void)agent_id;
    (void)answers;
    return absl::OkStatus();
  }
  // Makes a claimed command pending again (its stream ended before it was written).
  virtual absl::Status ReleaseCommand(const std::string& id) {
    (void)id;
    return absl::OkStatus();
  }
  // The answers (JSON) of those of `ids` that have one.
  virtual absl::StatusOr<std::map<std::string, std::string>> CommandResults(
      const std::vector<std::string>& ids) {
    (void)ids;
    return std::map<std::string, std::string>();
  }
  // The current message of each of `names` among `agent_id`'s checks (those it has).
  virtual absl::StatusOr<std::map<std::string, std::string>> CheckMessages(
      const std::string& agent_id, const std::vector<std::string>& names) {
    (void)agent_id;
    (void)names;
    return std::map<std::string, std::string>();
  }
  // One check with its latest results; NotFound if that agent has no such check.
  virtual absl::StatusOr<v1::GetCheckResponse> GetCheck(const v1::GetCheckRequest& request) {
    (void)request;
    return absl::UnimplementedError("GetCheck");
  }
};

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_STORE_H_
