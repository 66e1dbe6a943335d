#include "controlplane/admin_service.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_security.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/status.h"
#include "common/yaml_config.h"

namespace vigie::controlplane {

grpc::ServerUnaryReactor* AdminService::Defer(grpc::CallbackServerContext* ctx,
                                              std::function<absl::Status()> fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  bool queued =
      pool_->TrySubmit([reactor, fn = std::move(fn)] { reactor->Finish(ToGrpcStatus(fn())); });
  if (!queued) {
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "control plane busy; retry with backoff"));
  }
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::ListAgents(grpc::CallbackServerContext* ctx,
                                                   const v1::ListAgentsRequest* req,
                                                   v1::ListAgentsResponse* resp) {
  return Defer(ctx, [this, req, resp]() -> absl::Status {
    absl::StatusOr<std::vector<v1::Agent>> agents = store_->ListAgents();
    if (!agents.ok()) return agents.status();
    for (v1::Agent& a : *agents) {
      bool match = true;
      for (const auto& [k, v] : req->label_selector()) {
        auto it = a.labels().find(k);
        if (it == a.labels().end() || it->second != v) match = false;
      }
      if (match) *resp->add_agents() = std::move(a);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::GetAgent(grpc::CallbackServerContext* ctx,
                                                 const v1::GetAgentRequest* req, v1::Agent* resp) {
  if (req->agent_id().empty()) {
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "agent_id: required"));
    return r;
  }
  return Defer(ctx, [this, req, resp]() -> absl::Status {
    absl::StatusOr<v1::Agent> a = store_->GetAgent(req->agent_id());
    if (!a.ok()) return a.status();
    *resp = std::move(*a);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::ListRules(grpc::CallbackServerContext* ctx,
                                                  const v1::ListRulesRequest*,
                                                  v1::ListRulesResponse* resp) {
  for (const Rule& r : rules_->rules()) *resp->add_rules() = r.proto;
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::GetRule(grpc::CallbackServerContext* ctx,
                                                const v1::GetRuleRequest* req, v1::Rule* resp) {
  auto* reactor = ctx->DefaultReactor();
  for (const Rule& r : rules_->rules()) {
    if (r.name == req->name()) {
      *resp = r.proto;
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
  }
  reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                               absl::StrCat("name: no rule \"", req->name(), "\"")));
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::ListAlerts(grpc::CallbackServerContext* ctx,
                                                   const v1::ListAlertsRequest* req,
                                                   v1::ListAlertsResponse* resp) {
  if (req->state() == v1::ALERT_STATE_RESOLVED) {
    return Defer(ctx, [this, resp]() -> absl::Status {
      auto alerts = store_->ListAlerts(v1::ALERT_STATE_RESOLVED);
      if (!alerts.ok()) return alerts.status();
      for (auto& a : *alerts) *resp->add_alerts() = std::move(a);
      return absl::OkStatus();
    });
  }
  // Pending and firing alerts live in the rule engine (pending ones are never stored).
  for (v1::Alert& a : rules_->Snapshot()) {
    if (req->state() == v1::ALERT_STATE_UNSPECIFIED || a.state() == req->state()) {
      *resp->add_alerts() = std::move(a);
    }
  }
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::GetStatus(grpc::CallbackServerContext* ctx,
                                                  const v1::GetStatusRequest*,
                                                  v1::StatusSummary* resp) {
  return Defer(ctx, [this, resp]() -> absl::Status {
    auto agents = store_->ListAgents();
    if (!agents.ok()) return agents.status();
    resp->set_agents_total(static_cast<uint32_t>(agents->size()));
    uint32_t connected = 0;
    for (const auto& a : *agents) connected += a.connected() ? 1 : 0;
    resp->set_agents_connected(connected);
    uint32_t firing = 0;
    for (const auto& a : rules_->Snapshot()) firing += a.state() == v1::ALERT_STATE_FIRING;
    resp->set_alerts_firing(firing);
    resp->set_rules_total(static_cast<uint32_t>(rules_->rules().size()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::QuerySamples(grpc::CallbackServerContext* ctx,
                                                     const v1::QuerySamplesRequest* req,
                                                     v1::QuerySamplesResponse* resp) {
  auto fail = [ctx](const std::string& msg) {
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg));
    return r;
  };
  if (req->agent_id().empty()) return fail("agent_id: required");
  if (req->metric().empty()) return fail("metric: required");
  absl::StatusOr<absl::Duration> range =
      ParseConfigDuration("range", req->range(), absl::Minutes(5));
  if (!range.ok()) return fail(std::string(range.status().message()));
  if (!v1::Rollup_IsValid(req->rollup())) {
    return fail(absl::StrCat("rollup: unknown value ", req->rollup()));
  }
  if (req->rollup() == v1::ROLLUP_NONE && *range > absl::Hours(24)) {
    return fail(absl::StrCat("range: at most 24h for raw samples (set rollup for more), got ",
                             req->range()));
  }
  if (*range > absl::Hours(24 * 400)) {
    return fail(absl::StrCat("range: at most 400d, got ", req->range()));
  }
  uint32_t limit = req->limit() == 0 ? 1000 : req->limit();
  if (limit > 10000) return fail(absl::StrCat("limit: at most 10000, got ", limit));
  return Defer(ctx, [this, req, resp, range = *range, limit]() -> absl::Status {
    auto r = store_->QuerySamples(*req, range, limit);
    if (!r.ok()) return r.status();
    *resp = std::move(*r);
    return absl::OkStatus();
  });
}

namespace {
void ToProto(const TokenRecord& t, v1::Token* out) {
  out->set_id(t.id);
  out->set_kind(t.kind);
  out->set_agent_id(t.agent_id);
  out->set_description(t.description);
  out->set_created_at_unix(t.created_at_unix);
  out->set_created_by(t.created_by);
  out->set_revoked_at_unix(t.revoked_at_unix);
}
}  // namespace

grpc::ServerUnaryReactor* AdminService::CreateToken(grpc::CallbackServerContext* ctx,
                                                    const v1::CreateTokenRequest* req,
                                                    v1::CreateTokenResponse* resp) {
  std::optional<Principal> who = PrincipalOf(*ctx);
  std::string by = who ? who->token_id : "";
  return Defer(ctx, [this, req, resp, by]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(auto made,
                           tokens_->Create(req->kind(), req->agent_id(), req->description(), by));
    ToProto(made.first, resp->mutable_token());
    resp->set_secret(made.second);
    log::Info("token created", {{"id", made.first.id},
                                {"kind", v1::TokenKind_Name(made.first.kind)},
                                {"agent_id", made.first.agent_id},
                                {"created_by", by}});
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::ListTokens(grpc::CallbackServerContext* ctx,
                                                   const v1::ListTokensRequest* req,
                                                   v1::ListTokensResponse* resp) {
  for (const TokenRecord& t : tokens_->List(req->include_revoked())) {
    ToProto(t, resp->add_tokens());
  }
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::RevokeToken(grpc::CallbackServerContext* ctx,
                                                    const v1::RevokeTokenRequest* req,
                                                    v1::Token* resp) {
  std::optional<Principal> who = PrincipalOf(*ctx);
  std::string by = who ? who->token_id : "";
  return Defer(ctx, [this, req, resp, by]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(TokenRecord t, tokens_->Revoke(req->id()));
    ToProto(t, resp);
    log::Info("token revoked", {{"id", t.id}, {"revoked_by", by}});
    return absl::OkStatus();
  });
}

}  // namespace vigie::controlplane
