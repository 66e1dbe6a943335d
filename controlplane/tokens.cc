#include "controlplane/tokens.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/log.h"
#include "common/secrets.h"
#include "common/status.h"
#include "re2/re2.h"

namespace vigie::controlplane {
namespace {
bool Grants(v1::TokenKind kind, Access need) {
  switch (need) {
    case Access::kOpen:
      return true;
    case Access::kAgent:
      return kind == v1::TOKEN_KIND_AGENT || kind == v1::TOKEN_KIND_ENROLMENT;
    case Access::kViewer:
      return kind == v1::TOKEN_KIND_VIEWER || kind == v1::TOKEN_KIND_ADMIN;
    case Access::kAdmin:
      return kind == v1::TOKEN_KIND_ADMIN;
  }
  return false;
}
}  // namespace

Access RequiredAccess(absl::string_view method) {
  if (absl::StartsWith(method, "/grpc.health.v1.Health/")) return Access::kOpen;
  if (absl::StartsWith(method, "/vigie.v1.AgentGateway/")) return Access::kAgent;
  if (absl::StartsWith(method, "/grpc.reflection.")) return Access::kViewer;
  if (absl::ConsumePrefix(&method, "/vigie.v1.Admin/") &&
      (absl::StartsWith(method, "List") || absl::StartsWith(method, "Get") ||
       absl::StartsWith(method, "Query"))) {
    return Access::kViewer;
  }
  return Access::kAdmin;  // everything else, unknown methods included
}

TokenRegistry::TokenRegistry(Store* store, absl::Duration refresh)
    : Runnable("token-refresh"), store_(store), refresh_(refresh) {}

TokenRegistry::~TokenRegistry() { Stop(); }

absl::Status TokenRegistry::Load() {
  absl::StatusOr<std::vector<TokenRecord>> all = store_->ListTokens();
  if (!all.ok()) return all.status();
  Replace(std::move(*all));
  return absl::OkStatus();
}

std::vector<std::string> TokenRegistry::Replace(std::vector<TokenRecord> tokens) {
  std::vector<std::string> newly_revoked;
  std::function<void(const std::string&)> notify;
  {
    MutexLock lock(&mu_);
    absl::flat_hash_map<std::string, TokenRecord> by_hash;
    absl::flat_hash_map<std::string, int> agents;
    for (TokenRecord& t : tokens) {
      auto old = by_hash_.find(t.sha256);
      if (t.revoked_at_unix != 0 && old != by_hash_.end() && old->second.revoked_at_unix == 0) {
        newly_revoked.push_back(t.id);
      }
      if (t.kind == v1::TOKEN_KIND_AGENT && t.revoked_at_unix == 0) ++agents[t.agent_id];
      std::string hash = t.sha256;
      by_hash.emplace(std::move(hash), std::move(t));
    }
    by_hash_ = std::move(by_hash);
    agents_with_tokens_ = std::move(agents);
    notify = on_revoked_;
  }
  if (notify) {
    for (const std::string& id : newly_revoked) notify(id);
  }
  return newly_revoked;
}

void TokenRegistry::Run() {
  while (WaitFor(refresh_)) {
    if (absl::Status s = Load(); !s.ok()) {
      log::Warn("cannot refresh tokens; the last known set stays in force", {{"error", s}});
    }
  }
}

absl::Status TokenRegistry::Bootstrap(const std::string& secret) {
  TokenRecord t;
  t.id = "bootstrap";
  t.kind = v1::TOKEN_KIND_ADMIN;
  t.sha256 = Sha256(secret);
  t.description = "bootstrap_admin_token from the config";
  VIGIE_RETURN_IF_ERROR(store_->UpsertBootstrapToken(t));
  return Load();
}

absl::StatusOr<std::pair<TokenRecord, std::string>> TokenRegistry::Create(
    v1::TokenKind kind, const std::string& agent_id, const std::string& description,
    const std::string& created_by) {
  static const RE2* const kAgentId = new RE2("[A-Za-z0-9._-]{1,128}");
  if (absl::string_view(TokenKindName(kind)).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kind: must be TOKEN_KIND_AGENT, _ENROLMENT, _VIEWER or _ADMIN, got ",
                     static_cast<int>(kind)));
  }
  if (kind == v1::TOKEN_KIND_AGENT && !RE2::FullMatch(agent_id, *kAgentId)) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent_id: \"", agent_id,
                     "\" does not match [A-Za-z0-9._-]{1,128} (required for agent tokens)"));
  }
  if (kind != v1::TOKEN_KIND_AGENT && !agent_id.empty()) {
    return absl::InvalidArgumentError("agent_id: only agent tokens are bound to an agent");
  }
  if (description.size() > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("description: at most 256 bytes, got ", description.size()));
  }
  {
    MutexLock lock(&mu_);
    if (by_hash_.size() >= kMaxTokens) {
      return absl::ResourceExhaustedError(
          absl::StrCat("at most ", kMaxTokens, " tokens; revoke unused ones"));
    }
  }
  const std::string secret = NewToken();
  TokenRecord t;
  t.id = RandomHex(8);
  t.kind = kind;
  t.agent_id = agent_id;
  t.sha256 = Sha256(secret);
  t.description = description;
  t.created_by = created_by;
  VIGIE_ASSIGN_OR_RETURN(t, store_->CreateToken(t));
  {
    MutexLock lock(&mu_);
    ApplyLocked(t);
  }
  return std::make_pair(t, secret);
}

absl::StatusOr<TokenRecord> TokenRegistry::Revoke(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("id: required");
  VIGIE_ASSIGN_OR_RETURN(TokenRecord t, store_->RevokeToken(id));
  // In force here at once; other replicas follow at their next refresh.
  bool newly_revoked;
  std::function<void(const std::string&)> notify;
  {
    MutexLock lock(&mu_);
    newly_revoked = ApplyLocked(t);
    notify = on_revoked_;
  }
  if (newly_revoked && notify) notify(t.id);
  return t;
}

std::vector<TokenRecord> TokenRegistry::List(bool include_revoked) const {
  std::vector<TokenRecord> out;
  MutexLock lock(&mu_);
  for (const auto& [hash, t] : by_hash_) {
    if (include_revoked || t.revoked_at_unix == 0) out.push_back(t);
  }
  std::sort(out.begin(), out.end(), [](const TokenRecord& a, const TokenRecord& b) {
    return std::tie(a.created_at_unix, a.id) < std::tie(b.created_at_unix, b.id);
  });
  return out;
}

bool TokenRegistry::ApplyLocked(const TokenRecord& t) {
  auto it = by_hash_.find(t.sha256);
  const bool was_valid = it != by_hash_.end() && it->second.revoked_at_unix == 0;
  const bool is_valid = t.revoked_at_unix == 0;
  if (t.kind == v1::TOKEN_KIND_AGENT && was_valid != is_valid) {
    int& n = agents_with_tokens_[t.agent_id];
    n += is_valid ? 1 : -1;
    if (n <= 0) agents_with_tokens_.erase(t.agent_id);
  }
  by_hash_[t.sha256] = t;
  return was_valid && !is_valid;
}

void TokenRegistry::SetOnRevoked(std::function<void(const std::string&)> fn) {
  MutexLock lock(&mu_);
  on_revoked_ = std::move(fn);
}

absl::StatusOr<Principal> TokenRegistry::Authorize(absl::string_view method,
                                                   absl::string_view token,
                                                   std::string* reason) const {
  const Access need = RequiredAccess(method);
  if (need == Access::kOpen) return Principal{};
  if (token.empty()) {
    *reason = "missing_token";
    return absl::UnauthenticatedError(
        "authorization: a bearer token is required (\"authorization: Bearer <token>\")");
  }
  // Looked up by the SHA-256 of the presented token: comparisons see only digests, so their
  // timing tells nothing about a stored secret.
  MutexLock lock(&mu_);
  auto it = by_hash_.find(Sha256(token));
  if (it == by_hash_.end()) {
    *reason = "unknown_token";
    return absl::UnauthenticatedError("authorization: unknown token");
  }
  const TokenRecord& t = it->second;
  if (t.revoked_at_unix != 0) {
    *reason = "revoked_token";
    return absl::UnauthenticatedError(absl::StrCat("authorization: token ", t.id, " is revoked"));
  }
  if (!Grants(t.kind, need)) {
    *reason = "wrong_role";
    return absl::PermissionDeniedError(
        absl::StrCat("token ", t.id, " (", TokenKindName(t.kind), ") may not call ", method));
  }
  return Principal{t.id, TokenKindName(t.kind), t.agent_id};
}

absl::Status TokenRegistry::AuthorizeHello(const std::optional<Principal>& principal,
                                           const v1::Hello& hello, std::string* reason) const {
  if (!principal || (principal->role != "agent" && principal->role != "enrolment")) {
    *reason = "wrong_role";
    return absl::PermissionDeniedError("an agent or enrolment token is required");
  }
  if (principal->role == "agent") {
    if (hello.agent_id() != principal->agent_id) {
      *reason = "agent_id_mismatch";
      return absl::PermissionDeniedError(absl::StrCat("hello.agent_id: \"", hello.agent_id(),
                                                      "\" is not the agent of token ",
                                                      principal->token_id));
    }
    return absl::OkStatus();
  }
  if (hello.agent_id() != hello.hostname()) {
    *reason = "agent_id_mismatch";
    return absl::PermissionDeniedError(absl::StrCat(
        "hello.agent_id: \"", hello.agent_id(), "\" must equal hello.hostname \"", hello.hostname(),
        "\" with an enrolment token (the identity is the hostname)"));
  }
  MutexLock lock(&mu_);
  if (agents_with_tokens_.contains(hello.agent_id())) {
    *reason = "agent_id_reserved";
    return absl::PermissionDeniedError(
        absl::StrCat("hello.agent_id: \"", hello.agent_id(),
                     "\" has an agent token of its own; an enrolment token cannot connect it"));
  }
  return absl::OkStatus();
}

}  // namespace vigie::controlplane
