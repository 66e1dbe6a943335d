// The Admin gRPC API (callback API). Database work goes to the worker pool; a full pool answers
// RESOURCE_EXHAUSTED. Methods not overridden here answer UNIMPLEMENTED (see docs/api.md).
#ifndef VIGIE_CONTROLPLANE_ADMIN_SERVICE_H_
#define VIGIE_CONTROLPLANE_ADMIN_SERVICE_H_

#include "common/worker_pool.h"
#include "controlplane/command_router.h"
#include "controlplane/rule_engine.h"
#include "controlplane/store.h"
#include "controlplane/tokens.h"
#include "vigie/v1/admin.grpc.pb.h"

namespace vigie::controlplane {

// Thread-safe. All pointers must outlive it.
class AdminService : public v1::Admin::CallbackService {
 public:
  AdminService(Store* store, RuleEngine* rules, WorkerPool* pool, TokenRegistry* tokens)
      : store_(store), rules_(rules), pool_(pool), tokens_(tokens) {}

  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* ctx,
                                       const v1::ListAgentsRequest* req,
                                       v1::ListAgentsResponse* resp) override;
  grpc::ServerUnaryReactor* GetAgent(grpc::CallbackServerContext* ctx,
                                     const v1::GetAgentRequest* req, v1::Agent* resp) override;
  grpc::ServerUnaryReactor* DeleteAgent(grpc::CallbackServerContext* ctx,
                                        const v1::DeleteAgentRequest* req,
                                        v1::DeleteAgentResponse* resp) override;
  grpc::ServerUnaryReactor* ListRules(grpc::CallbackServerContext* ctx,
                                      const v1::ListRulesRequest* req,
                                      v1::ListRulesResponse* resp) override;
  grpc::ServerUnaryReactor* GetRule(grpc::CallbackServerContext* ctx, const v1::GetRuleRequest* req,
                                    v1::Rule* resp) override;
  grpc::ServerUnaryReactor* ListAlerts(grpc::CallbackServerContext* ctx,
                                       const v1::ListAlertsRequest* req,
                                       v1::ListAlertsResponse* resp) override;
  grpc::ServerUnaryReactor* GetAlert(grpc::CallbackServerContext* ctx,
                                     const v1::GetAlertRequest* req,
                                     v1::GetAlertResponse* resp) override;
  grpc::ServerUnaryReactor* AcknowledgeAlert(grpc::CallbackServerContext* ctx,
                                             const v1::AcknowledgeAlertRequest* req,
                                             v1::Alert* resp) override;
  grpc::ServerUnaryReactor* UnacknowledgeAlert(grpc::CallbackServerContext* ctx,
                                               const v1::UnacknowledgeAlertRequest* req,
                                               v1::Alert* resp) override;
  grpc::ServerUnaryReactor* CreateSilence(grpc::CallbackServerContext* ctx,
                                          const v1::CreateSilenceRequest* req,
                                          v1::Silence* resp) override;
  grpc::ServerUnaryReactor* ListSilences(grpc::CallbackServerContext* ctx,
                                         const v1::ListSilencesRequest* req,
                                         v1::ListSilencesResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteSilence(grpc::CallbackServerContext* ctx,
                                          const v1::DeleteSilenceRequest* req,
                                          v1::DeleteSilenceResponse* resp) override;
  grpc::ServerUnaryReactor* ListAuditLog(grpc::CallbackServerContext* ctx,
                                         const v1::ListAuditLogRequest* req,
                                         v1::ListAuditLogResponse* resp) override;
  grpc::ServerUnaryReactor* ListChecks(grpc::CallbackServerContext* ctx,
                                       const v1::ListChecksRequest* req,
                                       v1::ListChecksResponse* resp) override;
  grpc::ServerUnaryReactor* GetCheck(grpc::CallbackServerContext* ctx,
                                     const v1::GetCheckRequest* req,
                                     v1::GetCheckResponse* resp) override;
  grpc::ServerUnaryReactor* ListServices(grpc::CallbackServerContext* ctx,
                                         const v1::ListServicesRequest* req,
                                         v1::ListServicesResponse* resp) override;
  grpc::ServerUnaryReactor* RunCheck(grpc::CallbackServerContext* ctx,
                                     const v1::RunCheckRequest* req,
                                     v1::RunCheckResponse* resp) override;
  grpc::ServerUnaryReactor* RestartService(grpc::CallbackServerContext* ctx,
                                           const v1::RestartServiceRequest* req,
                                           v1::RestartServiceResponse* resp) override;
  // Where RunCheck and RestartService wait for answers (unset: they are UNIMPLEMENTED).
  // Before serving.
  void set_command_router(CommandRouter* router) { router_ = router; }
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetStatusRequest* req,
                                      v1::StatusSummary* resp) override;
  grpc::ServerUnaryReactor* QuerySamples(grpc::CallbackServerContext* ctx,
                                         const v1::QuerySamplesRequest* req,
                                         v1::QuerySamplesResponse* resp) override;
  grpc::ServerUnaryReactor* CreateToken(grpc::CallbackServerContext* ctx,
                                        const v1::CreateTokenRequest* req,
                                        v1::CreateTokenResponse* resp) override;
  grpc::ServerUnaryReactor* ListTokens(grpc::CallbackServerContext* ctx,
                                       const v1::ListTokensRequest* req,
                                       v1::ListTokensResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeToken(grpc::CallbackServerContext* ctx,
                                        const v1::RevokeTokenRequest* req,
                                        v1::Token* resp) override;

 private:
  // Runs `fn` on the pool and finishes the call with its status.
  grpc::ServerUnaryReactor* Defer(grpc::CallbackServerContext* ctx,
                                  std::function<absl::Status()> fn);
  void AuditOrLog(const std::string& actor, const std::string& action, const std::string& target,
                  const std::string& detail);
  // Creates a command for the agent and finishes the call when its answer (JSON) arrives,
  // with done(answer), or at the deadline.
  grpc::ServerUnaryReactor* SendCommand(grpc::CallbackServerContext* ctx, Store::CommandKind kind,
                                        const std::string& agent_id, const std::string& name,
                                        const std::string& timeout_text,
                                        absl::Duration default_timeout,
                                        std::function<absl::Status(std::string)> done);
  // Finishes the call at once with `status` (validation failures).
  static grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx,
                                         const absl::Status& status);

  Store* const store_;
  CommandRouter* router_ = nullptr;
  RuleEngine* const rules_;
  WorkerPool* const pool_;
  TokenRegistry* const tokens_;
};

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_ADMIN_SERVICE_H_
