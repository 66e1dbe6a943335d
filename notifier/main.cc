// vigie-notifier: accepts alert transitions over gRPC and delivers them to receivers.
#include <curl/curl.h>
#include <sys/stat.h>

#include <cerrno>
#include <csignal>
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
  const size_t receiver_count = options->channels.size();
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
  // The routes and receivers a Delivery was built from live as long as it does.
  std::shared_ptr<nt::Router> router = options->router;
  auto build = [&](const nt::NotifierOptions& o) {
    std::vector<nt::Receiver> receivers;
    for (const auto& c : o.channels) receivers.push_back({c.receiver, c.kind, nt::MakeChannel(c)});
    std::shared_ptr<nt::Router> r = o.router;
    auto* d = new nt::Delivery(o.delivery, std::move(receivers), registry.get(), delivery_log.get(),
                               r.get());
    // Deleting the Delivery releases its router after it.
    return std::shared_ptr<nt::Delivery>(d, [r](nt::Delivery* p) { delete p; });
  };
  std::shared_ptr<nt::Delivery> first = build(*options);
  nt::Delivery& delivery = *first;
  delivery.RememberKeys(known_keys);
  nt::DeliveryHolder holder;
  nt::DeadMan deadman(options->deadman, &holder, registry.get());
  nt::NotifierService service(&holder, delivery_log.get(), &deadman);
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
  holder.Set(std::move(first));
  deadman.Start();
  vigie::log::Info("notifier started", {{"grpc", options->grpc.listen},
                                        {"tls", options->grpc.tls.enabled() ? "on" : "off"},
                                        {"health", options->grpc.health_listen},
                                        {"http", options->http_listen},
                                        {"receivers", receiver_count},
                                        {"recovered_from_spool", *recovered},
                                        {"keys_from_log", known_keys.size()}});

  int sig = 0;
  while ((sig = vigie::WaitForTerminationOrReload()) == SIGHUP) {
    // Reload: receivers, channels, routes, time intervals, rate limits and delivery settings.
    // Listeners, tokens, the database and the dead-man's switch need a restart.
    vigie::v1::NotifierConfig fresh_config;
    absl::Status loaded = vigie::LoadYamlConfigFile(path, &fresh_config);
    absl::StatusOr<nt::NotifierOptions> fresh = loaded.ok()
                                                    ? nt::NotifierOptionsFromConfig(fresh_config)
                                                    : absl::StatusOr<nt::NotifierOptions>(loaded);
    if (!fresh.ok()) {
      vigie::log::Error("reload refused; the running configuration stays",
                        {{"config", path}, {"error", fresh.status()}});
      continue;
    }
    if (fresh->grpc.listen != options->grpc.listen || fresh->http_listen != options->http_listen ||
        fresh->client_token != options->client_token ||
        fresh->database_url != options->database_url ||
        fresh->delivery.spool_directory != options->delivery.spool_directory) {
      vigie::log::Warn(
          "reload: listeners, client_token, database_url and spool_directory change only at "
          "restart; the rest is applied");
      fresh->delivery.spool_directory = options->delivery.spool_directory;
    }
    if (options->delivery.spool_directory.empty()) {
      vigie::log::Error(
          "reload needs spool_directory (queued deliveries would be lost); restart "
          "to apply the new configuration");
      continue;
    }
    // Swap: new calls wait (UNAVAILABLE, retried by the control plane), the old Delivery
    // finishes what it is sending and leaves the rest in the spool, the new one takes it up.
    std::shared_ptr<nt::Delivery> old = holder.Get();
    holder.Set(nullptr);
    old->Stop();
    std::vector<std::string> keys = old->Keys();
    old.reset();
    std::shared_ptr<nt::Delivery> next = build(*fresh);
    next->RememberKeys(keys);
    absl::StatusOr<int> requeued = next->Recover();
    next->Start();
    holder.Set(next);
    vigie::log::Info("configuration reloaded", {{"config", path},
                                                {"channels", fresh->channels.size()},
                                                {"requeued", requeued.ok() ? *requeued : -1}});
  }
  vigie::log::Info("shutting down", {{"signal", sig}});
  (*grpc_servers)->Shutdown(absl::Seconds(5));
  deadman.Stop();
  if (auto current = holder.Get()) current->Stop();
  if (delivery_log) delivery_log->Stop();  // and writes what it still holds
  http_server->reset();
  curl_global_cleanup();
  vigie::log::Info("notifier stopped");
  return 0;
}
