// vigie-notifier: accepts alert transitions over gRPC and delivers them to receivers.
#include <curl/curl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/flags/flag.h"
#include "common/grpc_security.h"
#include "common/grpc_util.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/process.h"
#include "common/yaml_config.h"
#include "grpcpp/grpcpp.h"
#include "notifier/delivery.h"
#include "notifier/options.h"
#include "notifier/service.h"
#include "notifier/webhook.h"
#include "prometheus/registry.h"

ABSL_FLAG(std::string, config, "", "Path to the notifier's YAML config (required).");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warn or error.");

namespace nt = vigie::notifier;

int main(int argc, char** argv) {
  vigie::BlockTerminationSignals();
  vigie::ParseFlagsOrExit(argc, argv, "vigie-notifier --config=notifier.yaml");
  vigie::SetLogLevelOrExit(absl::GetFlag(FLAGS_log_level));
  const std::string path = absl::GetFlag(FLAGS_config);
  vigie::v1::NotifierConfig config;
  vigie::LoadConfigOrExit(path, /*required=*/true, &config);
  absl::StatusOr<nt::NotifierOptions> options = nt::NotifierOptionsFromConfig(config);
  if (!options.ok()) vigie::ExitUsage(absl::StrCat(path, ": ", options.status().message()));

  curl_global_init(CURL_GLOBAL_DEFAULT);
  auto registry = std::make_shared<prometheus::Registry>();
  vigie::AuthFailures auth_failures(registry.get());
  vigie::SharedTokenAuthorizer authorizer(options->client_token);
  absl::StatusOr<std::unique_ptr<vigie::ServerSecurity>> security = vigie::ServerSecurity::Create(
      "tls", options->tls, &authorizer, &auth_failures, registry.get());
  if (!security.ok()) vigie::ExitUsage(absl::StrCat(path, ": ", security.status().message()));
  prometheus::BuildGauge()
      .Name("vigie_insecure_listener")
      .Help("1 if gRPC is served in plaintext beyond loopback (insecure: true).")
      .Register(*registry)
      .Add({})
      .Set(options->insecure_listener ? 1 : 0);
  if (options->insecure_listener) {
    vigie::log::Warn(
        "insecure: true: serving gRPC in plaintext beyond loopback; the client "
        "token crosses the network in clear",
        {{"grpc", options->grpc_listen}});
  }
  std::vector<nt::Receiver> receivers;
  for (const nt::WebhookOptions& w : options->webhooks) {
    receivers.push_back({w.receiver, std::make_unique<nt::WebhookChannel>(w)});
  }
  const size_t receiver_count = receivers.size();
  nt::Delivery delivery(options->delivery, std::move(receivers), registry.get());
  nt::NotifierService service(&delivery);
  if (const std::string& spool = options->delivery.spool_directory; !spool.empty()) {
    if (mkdir(spool.c_str(), 0700) != 0 && errno != EEXIST) {
      vigie::log::Error("cannot create spool_directory",
                        {{"path", spool}, {"error", strerror(errno)}});
      return 1;
    }
  }
  if (options->delivery.spool_directory.empty()) {
    vigie::log::Warn(
        "no spool_directory: notifications accepted but not yet delivered are lost if this "
        "process stops");
  }
  absl::StatusOr<int> recovered = delivery.Recover();
  if (!recovered.ok()) {
    vigie::log::Error("cannot read the spool", {{"error", recovered.status()}});
    return 1;
  }

  // HTTP first: it cannot fail after agents are already being accepted.
  vigie::HttpServerOptions http;
  http.listen = options->http_listen;
  http.metrics = {registry.get()};
  http.auth = options->http_auth;
  http.failures = &auth_failures;
  absl::StatusOr<std::unique_ptr<vigie::HttpServer>> http_server = vigie::HttpServer::Start(http);
  if (!http_server.ok()) {
    vigie::log::Error("cannot start HTTP listener", {{"error", http_server.status()}});
    return 1;
  }
  std::unique_ptr<grpc::Server> health_server;
  if (!options->health_listen.empty()) {
    absl::StatusOr<std::unique_ptr<grpc::Server>> h =
        vigie::StartHealthServer(options->health_listen);
    if (!h.ok()) {
      vigie::log::Error("cannot start the health listener", {{"error", h.status()}});
      return 1;
    }
    health_server = std::move(*h);
  }
  absl::StatusOr<std::unique_ptr<grpc::Server>> server = vigie::StartSecureGrpcServer(
      options->grpc_listen, (*security)->credentials(), 1 << 20, {&service});
  if (!server.ok()) {
    vigie::log::Error("cannot start the gRPC server",
                      {{"error", server.status()}, {"grpc_listen", options->grpc_listen}});
    return 1;
  }
  (*security)->Start();
  delivery.Start();
  vigie::log::Info("notifier started", {{"grpc", options->grpc_listen},
                                        {"tls", options->tls.enabled() ? "on" : "off"},
                                        {"health", options->health_listen},
                                        {"http", options->http_listen},
                                        {"receivers", receiver_count},
                                        {"recovered_from_spool", *recovered}});

  int sig = vigie::WaitForTerminationSignal();
  vigie::log::Info("shutting down", {{"signal", sig}});
  (*server)->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (health_server) health_server->Shutdown();
  (*security)->Stop();
  delivery.Stop();
  http_server->reset();
  curl_global_cleanup();
  vigie::log::Info("notifier stopped");
  return 0;
}
