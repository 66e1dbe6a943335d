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
  std::vector<nt::Receiver> receivers;
  for (const auto& c : options->channels) {
    receivers.push_back({c.receiver, c.kind, nt::MakeChannel(c)});
  }
  const size_t receiver_count = receivers.size();
  // The delivery log first: it remembers the keys a restart must not deliver again.
  std::unique_ptr<nt::DeliveryLog> delivery_log;
  std::vector<std::string> known_keys;
  if (!options->database_url.empty()) {
    nt::DeliveryLogOptions log_options;
    log_options.database_url = options->database_url;
    log_options.retention = options->delivery_log_retention;
    absl::StatusOr<std::unique_ptr<nt::DeliveryLog>> opened =
        nt::DeliveryLog::Open(log_options, registry.get());
    if (!opened.ok()) {
      vigie::log::Error("cannot open the delivery log", {{"error", opened.status()}});
      return 1;
    }
    delivery_log = std::move(*opened);
    absl::StatusOr<std::vector<std::string>> keys =
        delivery_log->RecentKeys(options->delivery.max_remembered_keys);
    if (!keys.ok()) {
      vigie::log::Error("cannot load idempotency keys", {{"error", keys.status()}});
      return 1;
    }
    known_keys = std::move(*keys);
  } else {
    vigie::log::Warn("no database_url: no delivery log; idempotency keys are kept in memory only");
  }
  nt::Delivery delivery(options->delivery, std::move(receivers), registry.get(),
                        delivery_log.get(), options->router.get());
  delivery.RememberKeys(known_keys);
  nt::DeadMan deadman(options->deadman, &delivery, registry.get());
  nt::NotifierService service(&delivery, delivery_log.get(), &deadman);
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
  absl::StatusOr<std::unique_ptr<vigie::GrpcServers>> grpc_servers = vigie::GrpcServers::Start(
      options->grpc, &authorizer, &auth_failures, registry.get(), 1 << 20, {&service});
  if (absl::IsInvalidArgument(grpc_servers.status())) {
    vigie::ExitUsage(absl::StrCat(path, ": ", grpc_servers.status().message()));
  }
  if (!grpc_servers.ok()) {
    vigie::log::Error("cannot start the gRPC server", {{"error", grpc_servers.status()}});
    return 1;
  }
  if (delivery_log) delivery_log->Start();
  delivery.Start();
  deadman.Start();
  vigie::log::Info("notifier started", {{"grpc", options->grpc.listen},
                                        {"tls", options->grpc.tls.enabled() ? "on" : "off"},
                                        {"health", options->grpc.health_listen},
                                        {"http", options->http_listen},
                                        {"receivers", receiver_count},
                                        {"recovered_from_spool", *recovered},
                                        {"keys_from_log", known_keys.size()}});

  int sig = vigie::WaitForTerminationSignal();
  vigie::log::Info("shutting down", {{"signal", sig}});
  (*grpc_servers)->Shutdown(absl::Seconds(5));
  deadman.Stop();
  delivery.Stop();
  if (delivery_log) delivery_log->Stop();  // and writes what it still holds
  http_server->reset();
  curl_global_cleanup();
  vigie::log::Info("notifier stopped");
  return 0;
}
