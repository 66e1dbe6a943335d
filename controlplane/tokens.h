// Tokens: who may connect as which agent, and who may use the Admin API. Secrets are random
// (256 bits), shown once by Create(), and stored only as their SHA-256 (a slow password hash
// would gain nothing for random secrets and would cost minutes of CPU in a reconnect storm).
// Every check is served from memory; the table is re-read every refresh interval, so a token
// revoked through another replica stops working here within that interval.
#ifndef VIGIE_CONTROLPLANE_TOKENS_H_
#define VIGIE_CONTROLPLANE_TOKENS_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "common/grpc_security.h"
#include "common/mutex.h"
#include "common/runnable.h"
#include "controlplane/store.h"
#include "vigie/v1/admin.pb.h"

namespace vigie::controlplane {

// The access a method needs: open (health), an agent credential, viewer or admin.
enum class Access { kOpen, kAgent, kViewer, kAdmin };
Access RequiredAccess(absl::string_view method);

// Thread-safe. Authorize() and AuthorizeHello() never block on the database.
class TokenRegistry : public Authorizer, public Runnable {
 public:
  static constexpr size_t kMaxTokens = 100000;

  // `store` must outlive it.
  TokenRegistry(Store* store, absl::Duration refresh);
  ~TokenRegistry() override;

  // Reads every token from the store (kUnavailable if it cannot).
  absl::Status Load();
  // Accepts `secret` as the admin token with id "bootstrap" (replacing an earlier one).
  absl::Status Bootstrap(const std::string& secret);
  // Makes a token; returns it with its secret. InvalidArgument naming the field for a bad
  // request; ResourceExhausted beyond kMaxTokens.
  absl::StatusOr<std::pair<TokenRecord, std::string>> Create(v1::TokenKind kind,
                                                             const std::string& agent_id,
                                                             const std::string& description,
                                                             const std::string& created_by);
  absl::StatusOr<TokenRecord> Revoke(const std::string& id);
  std::vector<TokenRecord> List(bool include_revoked) const;
  // Called with the id of each token seen revoked (here or, after a refresh, elsewhere).
  void SetOnRevoked(std::function<void(const std::string& token_id)> fn);

  absl::StatusOr<Principal> Authorize(absl::string_view method, absl::string_view token,
                                      std::string* reason) const override;
  // The identity rule at Hello: an agent token connects only its own agent_id; an enrolment
  // token connects an agent whose agent_id equals its hostname and that has no token of its
  // own. kPermissionDenied with `*reason` otherwise.
  absl::Status AuthorizeHello(const std::optional<Principal>& principal, const v1::Hello& hello,
                              std::string* reason) const;

 protected:
  void Run() override;

 private:
  // Puts one record into the in-memory view; true if it revokes a token valid until now.
  bool ApplyLocked(const TokenRecord& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replaces the in-memory view; returns ids that became revoked.
  std::vector<std::string> Replace(std::vector<TokenRecord> tokens) ABSL_LOCKS_EXCLUDED(mu_);

  Store* const store_;
  const absl::Duration refresh_;
  mutable Mutex mu_;
  absl::flat_hash_map<std::string, TokenRecord> by_hash_ ABSL_GUARDED_BY(mu_);
  // agent_id -> number of valid agent tokens bound to it.
  absl::flat_hash_map<std::string, int> agents_with_tokens_ ABSL_GUARDED_BY(mu_);
  std::function<void(const std::string&)> on_revoked_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_TOKENS_H_
