#include "controlplane/admin_service.h"

#include "absl/strings/str_cat.h"
#include "common/agent_message.h"
#include "common/grpc_security.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/status.h"
#include "common/yaml_config.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace vigie::controlplane {

namespace {

// The caller's token id, for the audit log ("" if no authorizer ran).
std::string Actor(grpc::CallbackServerContext* ctx) {
  std::optional<Principal> who = PrincipalOf(*ctx);
  return who ? who->token_id : "";
}

bool Matches(const google::protobuf::Map<std::string, std::string>& selector,
             const google::protobuf::Map<std::string, std::string>& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace

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
  if (req->page_size() > 1000) {
    return Reply(ctx, absl::InvalidArgumentError(
                          absl::StrCat("page_size: at most 1000, got ", req->page_size())));
  }
  return Defer(ctx, [this, req, resp]() -> absl::Status {
    absl::StatusOr<std::vector<v1::Agent>> agents = store_->ListAgents();  // by agent_id
    if (!agents.ok()) return agents.status();
    const uint32_t page_size = req->page_size() == 0 ? 1000 : req->page_size();
    for (v1::Agent& a : *agents) {
      if (!req->page_token().empty() && a.agent_id() <= req->page_token()) continue;
      if (req->has_connected() && a.connected() != req->connected()) continue;
      if (!Matches(req->label_selector(), a.labels())) continue;
      if (static_cast<uint32_t>(resp->agents_size()) == page_size) {
        resp->set_next_page_token(resp->agents(resp->agents_size() - 1).agent_id());
        break;
      }
      *resp->add_agents() = std::move(a);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::DeleteAgent(grpc::CallbackServerContext* ctx,
                                                    const v1::DeleteAgentRequest* req,
                                                    v1::DeleteAgentResponse* resp) {
  if (req->agent_id().empty() || req->agent_id().size() > 128 || !IsValidUtf8(req->agent_id())) {
    return Reply(
        ctx, absl::InvalidArgumentError(absl::StrCat("agent_id: required, at most 128 bytes, got ",
                                                     QuoteForMessage(req->agent_id()))));
  }
  return Defer(ctx, [this, req, resp, actor = Actor(ctx)]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(int resolved, store_->DeleteAgent(req->agent_id(), actor));
    resp->set_alerts_resolved(static_cast<uint32_t>(resolved));
    log::Info("agent deleted", {{"agent", req->agent_id()}, {"by", actor}});
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

namespace {

// Rule and fingerprint naming an alert: required, valid UTF-8, at most 256 bytes.
absl::Status CheckAlertId(const std::string& rule, const std::string& fingerprint) {
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"rule", &rule}, {"fingerprint", &fingerprint}}) {
    if (value->empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
    if (value->size() > 256 || !IsValidUtf8(*value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": at most 256 bytes of UTF-8, got ", QuoteForMessage(*value)));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckText(const char* field, const std::string& value) {
  if (value.size() > 1024 || !IsValidUtf8(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": at most 1024 bytes of UTF-8, got ", value.size(), " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

void AdminService::AuditOrLog(const std::string& actor, const std::string& action,
                              const std::string& target, const std::string& detail) {
  // The change is made; an audit entry that cannot be written is logged instead.
  absl::Status s = store_->Audit(actor, action, target, detail);
  if (!s.ok()) {
    log::Warn("audit entry not written",
              {{"action", action}, {"target", target}, {"actor", actor}, {"error", s}});
  }
}

grpc::ServerUnaryReactor* AdminService::Reply(grpc::CallbackServerContext* ctx,
                                              const absl::Status& status) {
  auto* r = ctx->DefaultReactor();
  r->Finish(ToGrpcStatus(status));
  return r;
}

grpc::ServerUnaryReactor* AdminService::ListAlerts(grpc::CallbackServerContext* ctx,
                                                   const v1::ListAlertsRequest* req,
                                                   v1::ListAlertsResponse* resp) {
  if (!v1::AlertState_IsValid(req->state())) {
    return Reply(ctx, absl::InvalidArgumentError(
                          absl::StrCat("state: unknown value ", static_cast<int>(req->state()))));
  }
  if (req->page_size() > 1000) {
    return Reply(ctx, absl::InvalidArgumentError(
                          absl::StrCat("page_size: at most 1000, got ", req->page_size())));
  }
  // Pending alerts live in the rule engine until they fire, matching the request's filters.
  auto add_pending = [this, req, resp](size_t limit) {
    for (v1::Alert& a : rules_->Snapshot()) {
      if (static_cast<size_t>(resp->alerts_size()) >= limit) break;
      if (a.state() != v1::ALERT_STATE_PENDING) continue;
      if (!req->severity().empty() && a.severity() != req->severity()) continue;
      if (!Matches(req->label_selector(), a.labels())) continue;
      *resp->add_alerts() = std::move(a);
    }
  };
  if (req->state() == v1::ALERT_STATE_PENDING) {  // one page, at most page_size
    add_pending(req->page_size() == 0 ? 100 : req->page_size());
    return Reply(ctx, absl::OkStatus());
  }
  return Defer(ctx, [req, resp, this, add_pending]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(v1::ListAlertsResponse page, store_->QueryAlerts(*req));
    if (req->state() == v1::ALERT_STATE_UNSPECIFIED && req->page_token().empty()) {
      add_pending(SIZE_MAX);  // pending first, then firing (from the database)
    }
    for (v1::Alert& a : *page.mutable_alerts()) *resp->add_alerts() = std::move(a);
    resp->set_next_page_token(page.next_page_token());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::GetAlert(grpc::CallbackServerContext* ctx,
                                                 const v1::GetAlertRequest* req,
                                                 v1::GetAlertResponse* resp) {
  if (absl::Status s = CheckAlertId(req->rule(), req->fingerprint()); !s.ok()) {
    return Reply(ctx, s);
  }
  return Defer(ctx, [this, req, resp]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(*resp, store_->GetAlert(req->rule(), req->fingerprint()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::AcknowledgeAlert(grpc::CallbackServerContext* ctx,
                                                         const v1::AcknowledgeAlertRequest* req,
                                                         v1::Alert* resp) {
  Store::Acknowledgement ack;
  ack.rule = req->rule();
  ack.fingerprint = req->fingerprint();
  ack.by = req->by().empty() ? Actor(ctx) : req->by();
  ack.comment = req->comment();
  absl::Status s = CheckAlertId(req->rule(), req->fingerprint());
  if (s.ok()) s = CheckText("by", req->by());
  if (s.ok()) s = CheckText("comment", req->comment());
  if (s.ok()) {
    absl::StatusOr<absl::Duration> expires =
        ParseConfigDuration("expires_in", req->expires_in(), absl::ZeroDuration());
    if (!expires.ok()) {
      s = expires.status();
    } else if (*expires > absl::Hours(24 * 366)) {
      s = absl::InvalidArgumentError(
          absl::StrCat("expires_in: at most 366d, got \"", req->expires_in(), "\""));
    } else if (!req->expires_in().empty() && *expires < absl::Seconds(1)) {
      s = absl::InvalidArgumentError(
          absl::StrCat("expires_in: at least 1s, got \"", req->expires_in(), "\""));
    } else {
      ack.expires = *expires;
    }
  }
  if (!s.ok()) return Reply(ctx, s);
  return Defer(ctx, [this, ack, resp, actor = Actor(ctx)]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(*resp, store_->Acknowledge(ack, actor));
    log::Info("alert acknowledged",
              {{"rule", ack.rule}, {"fingerprint", ack.fingerprint}, {"by", ack.by}});
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::UnacknowledgeAlert(grpc::CallbackServerContext* ctx,
                                                           const v1::UnacknowledgeAlertRequest* req,
                                                           v1::Alert* resp) {
  if (absl::Status s = CheckAlertId(req->rule(), req->fingerprint()); !s.ok()) {
    return Reply(ctx, s);
  }
  return Defer(ctx, [this, req, resp, actor = Actor(ctx)]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(*resp, store_->Unacknowledge(req->rule(), req->fingerprint(), actor));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::CreateSilence(grpc::CallbackServerContext* ctx,
                                                      const v1::CreateSilenceRequest* req,
                                                      v1::Silence* resp) {
  if (!req->silence().id().empty()) {
    return Reply(ctx, absl::InvalidArgumentError(
                          absl::StrCat("silence.id: assigned by the server; leave it empty (got ",
                                       QuoteForMessage(req->silence().id()), ")")));
  }
  const std::string actor = Actor(ctx);
  absl::StatusOr<Silence> silence = SilenceFromProto(req->silence(), absl::Now(), actor);
  if (!silence.ok()) return Reply(ctx, silence.status());
  return Defer(ctx, [this, silence = *silence, resp, actor]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(*resp, store_->CreateSilence(silence, actor));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::ListSilences(grpc::CallbackServerContext* ctx,
                                                     const v1::ListSilencesRequest* req,
                                                     v1::ListSilencesResponse* resp) {
  return Defer(ctx, [this, req, resp]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(std::vector<v1::Silence> all,
                           store_->ListSilences(req->include_expired()));
    for (v1::Silence& s : all) *resp->add_silences() = std::move(s);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::DeleteSilence(grpc::CallbackServerContext* ctx,
                                                      const v1::DeleteSilenceRequest* req,
                                                      v1::DeleteSilenceResponse*) {
  if (req->id().empty() || req->id().size() > 64 || !IsValidUtf8(req->id())) {
    return Reply(ctx, absl::InvalidArgumentError(absl::StrCat("id: a silence id is required, got ",
                                                              QuoteForMessage(req->id()))));
  }
  return Defer(ctx, [this, req, actor = Actor(ctx)]() -> absl::Status {
    VIGIE_RETURN_IF_ERROR(store_->ExpireSilence(req->id(), actor));
    log::Info("silence expired", {{"id", req->id()}, {"by", actor}});
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::ListAuditLog(grpc::CallbackServerContext* ctx,
                                                     const v1::ListAuditLogRequest* req,
                                                     v1::ListAuditLogResponse* resp) {
  return Defer(ctx, [this, req, resp]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(*resp, store_->ListAuditLog(*req));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::ListChecks(grpc::CallbackServerContext* ctx,
                                                   const v1::ListChecksRequest* req,
                                                   v1::ListChecksResponse* resp) {
  return Defer(ctx, [this, req, resp]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(*resp, store_->ListChecks(*req));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::GetCheck(grpc::CallbackServerContext* ctx,
                                                 const v1::GetCheckRequest* req,
                                                 v1::GetCheckResponse* resp) {
  return Defer(ctx, [this, req, resp]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(*resp, store_->GetCheck(*req));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::ListServices(grpc::CallbackServerContext* ctx,
                                                     const v1::ListServicesRequest* req,
                                                     v1::ListServicesResponse* resp) {
  return Defer(ctx, [this, req, resp]() -> absl::Status {
    VIGIE_ASSIGN_OR_RETURN(*resp, store_->ListServices(*req));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminService::SendCommand(
    grpc::CallbackServerContext* ctx, Store::CommandKind kind, const std::string& agent_id,
    const std::string& name, const std::string& timeout_text, absl::Duration default_timeout,
    std::function<absl::Status(std::string)> done) {
  const bool check = kind == Store::CommandKind::kRunCheck;
  if (router_ == nullptr) {
    return Reply(ctx, absl::UnimplementedError(check ? "RunCheck" : "RestartService"));
  }
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"agent_id", &agent_id}, {"name", &name}}) {
    if (value->empty() || value->size() > 128) {
      return Reply(
          ctx, absl::InvalidArgumentError(absl::StrCat(field, ": required, at most 128 bytes, got ",
                                                       QuoteForMessage(*value))));
    }
  }
  absl::StatusOr<absl::Duration> timeout =
      ParseConfigDuration("timeout", timeout_text, default_timeout);
  if (timeout.ok() && (*timeout < absl::Seconds(1) || *timeout > absl::Minutes(5))) {
    timeout = absl::InvalidArgumentError(
        absl::StrCat("timeout: must be between 1s and 5m, got ", QuoteForMessage(timeout_text)));
  }
  if (!timeout.ok()) return Reply(ctx, timeout.status());
  // The client's own deadline when sooner: a caller gone does not keep a waiting slot.
  const absl::Time deadline = std::min(absl::Now() + *timeout, absl::FromChrono(ctx->deadline()));
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const bool queued = pool_->TrySubmit([this, reactor, kind, check, agent_id, name, deadline,
                                        actor = Actor(ctx), done = std::move(done)] {
    absl::StatusOr<std::string> id = store_->CreateCommand(agent_id, kind, name);
    if (!id.ok()) {
      reactor->Finish(ToGrpcStatus(id.status()));
      return;
    }
    if (!check) {
      AuditOrLog(actor, "RestartService", absl::StrCat(agent_id, "/", name),
                 nlohmann::json{{"command_id", *id}}.dump());
      log::Info("service restart asked", {{"agent", agent_id}, {"service", name}, {"by", actor}});
    }
    // The worker is free again at once: the router finishes the call.
    absl::Status waiting = router_->Await(
        *id, deadline,
        absl::StrCat(check ? "check " : "the restart of service ", QuoteForMessage(name),
                     " of agent ", QuoteForMessage(agent_id)),
        [reactor, done](absl::StatusOr<std::string> json) {
          reactor->Finish(ToGrpcStatus(json.ok() ? done(std::move(*json)) : json.status()));
        });
    if (!waiting.ok()) reactor->Finish(ToGrpcStatus(waiting));
  });
  if (!queued) {
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "control plane busy; retry with backoff"));
  }
  return reactor;
}

namespace {

// The stored answer (JSON written by the gateway) into `out`.
absl::Status ParseAnswer(const std::string& json, google::protobuf::Message* out) {
  if (!google::protobuf::util::JsonStringToMessage(json, out).ok()) {
    return absl::InternalError("the stored answer cannot be read");
  }
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::RunCheck(grpc::CallbackServerContext* ctx,
                                                 const v1::RunCheckRequest* req,
                                                 v1::RunCheckResponse* resp) {
  return SendCommand(ctx, Store::CommandKind::kRunCheck, req->agent_id(), req->name(),
                     req->timeout(), absl::Seconds(30), [resp](std::string json) {
                       return ParseAnswer(json, resp->mutable_result());
                     });
}

grpc::ServerUnaryReactor* AdminService::RestartService(grpc::CallbackServerContext* ctx,
                                                       const v1::RestartServiceRequest* req,
                                                       v1::RestartServiceResponse* resp) {
  return SendCommand(ctx, Store::CommandKind::kRestartService, req->agent_id(), req->name(),
                     req->timeout(), absl::Seconds(60),
                     [resp](std::string json) { return ParseAnswer(json, resp->mutable_event()); });
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
    AuditOrLog(by, "CreateToken", made.first.id,
               nlohmann::json{{"kind", TokenKindName(made.first.kind)},
                              {"agent_id", made.first.agent_id},
                              {"description", made.first.description}}
                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
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
    AuditOrLog(by, "RevokeToken", t.id, "{}");
    return absl::OkStatus();
  });
}

}  // namespace vigie::controlplane
