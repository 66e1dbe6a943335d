// GrpcServers: the server half of grpc_security.h, in its own file so that a process without a
// gRPC server (the agent) links neither reflection nor the health service.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/grpc_security.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/status.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "prometheus/gauge.h"

namespace vigie {

void EnableHealthAndReflection() {
  grpc::EnableDefaultHealthCheckService(true);
  // Debian's gRPC 1.51 serves grpc.health.v1.Health without its descriptor; referencing our
  // compiled copy puts it in the generated pool that reflection reads.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
}

namespace {

// Sets whether one server has reflection. gRPC's reflection library registers its plugin for
// every server from a static initializer; the plaintext health server, where nothing can be
// authenticated, must not serve it.
class ReflectionOption : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionOption(bool enabled) : enabled_(enabled) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    const std::string name = grpc::reflection::ProtoServerReflectionPlugin().name();
    plugins->erase(std::remove_if(plugins->begin(), plugins->end(),
                                  [&](const auto& p) { return p->name() == name; }),
                   plugins->end());
    if (enabled_) plugins->emplace_back(new grpc::reflection::ProtoServerReflectionPlugin());
  }

 private:
  const bool enabled_;
};

// grpc.health.v1 for the plaintext health port: Check answers SERVING for the whole server ("")
// and NOT_FOUND for any other service name. (gRPC's default health service needs another
// synchronous service beside it; this port has none.) Watch is not offered: probes use Check.
class HealthCheckOnly final : public grpc::health::v1::Health::Service {
 public:
  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::health::v1::HealthCheckResponse* resp) override {
    if (!req->service().empty()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("service: unknown \"", req->service(), "\""));
    }
    resp->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    return grpc::Status::OK;
  }
};

void AddServerDefaults(grpc::ServerBuilder* builder) {
  // Find dead peers on long-lived streams, and accept the agents' own keepalive pings (every
  // 30 s) even when a stream is quiet, instead of answering them with GOAWAY.
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartSecureGrpcServer(
    const std::string& listen, std::shared_ptr<grpc::ServerCredentials> credentials,
    int max_receive_message_bytes, const std::vector<grpc::Service*>& services) {
  EnableHealthAndReflection();
  grpc::ServerBuilder builder;
  builder.SetOption(std::make_unique<ReflectionOption>(true));
  int port = 0;
  builder.AddListeningPort(listen, std::move(credentials), &port);
  builder.SetMaxReceiveMessageSize(max_receive_message_bytes);
  AddServerDefaults(&builder);
  for (grpc::Service* s : services) builder.RegisterService(s);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    return absl::UnavailableError(absl::StrCat("grpc_listen: cannot listen on ", listen));
  }
  return server;
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartHealthServer(const std::string& listen) {
  EnableHealthAndReflection();
  grpc::ServerBuilder builder;
  builder.SetOption(std::make_unique<ReflectionOption>(false));
  static HealthCheckOnly* const health = new HealthCheckOnly();  // lives as long as the process
  builder.RegisterService(health);
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(4096);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    return absl::UnavailableError(absl::StrCat("health_listen: cannot listen on ", listen));
  }
  return server;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcServers>> GrpcServers::Start(
    const GrpcListenerOptions& options, const Authorizer* authorizer, AuthFailures* failures,
    prometheus::Registry* registry, int max_receive_message_bytes,
    const std::vector<grpc::Service*>& services) {
  std::unique_ptr<GrpcServers> s(new GrpcServers());
  VIGIE_ASSIGN_OR_RETURN(
      s->security_, ServerSecurity::Create("tls", options.tls, authorizer, failures, registry));
  prometheus::BuildGauge()
      .Name("vigie_insecure_listener")
      .Help("1 if gRPC is served in plaintext beyond loopback (insecure: true).")
      .Register(*registry)
      .Add({})
      .Set(options.insecure ? 1 : 0);
  if (options.insecure) {
    log::Warn(
        "insecure: true: serving gRPC in plaintext beyond loopback; tokens cross the "
        "network in clear",
        {{"grpc_listen", options.listen}});
  }
  if (!options.health_listen.empty()) {
    VIGIE_ASSIGN_OR_RETURN(s->health_, StartHealthServer(options.health_listen));
  }
  VIGIE_ASSIGN_OR_RETURN(s->server_,
                         StartSecureGrpcServer(options.listen, s->security_->credentials(),
                                               max_receive_message_bytes, services));
  s->security_->Start();
  return s;
}

void GrpcServers::Shutdown(absl::Duration grace) {
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  if (health_) health_->Shutdown();
  security_->Stop();
}

}  // namespace vigie
