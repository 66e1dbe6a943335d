// vigie-controlplane: agent gateway, storage, rules, outbox dispatch and the Admin API.
#include <iostream>
#include <memory>

#include "absl/flags/flag.h"
#include "common/grpc_security.h"
#include "common/grpc_util.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/process.h"
#include "common/worker_pool.h"
#include "common/yaml_config.h"
#include "controlplane/admin_service.h"
#include "controlplane/dispatcher.h"
#include "controlplane/gateway.h"
#include "controlplane/maintainer.h"
#include "controlplane/options.h"
#include "controlplane/pg_store.h"
#include "controlplane/remote_write.h"
#include "controlplane/rule_timer.h"
#include "controlplane/tokens.h"
#include "grpcpp/grpcpp.h"
#include "prometheus/registry.h"

ABSL_FLAG(std::string, config, "", "Path to the control plane's YAML config (required).");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warn or error.");

namespace cp = vigie::controlplane;

// `vigie-controlplane check-rules FILE...`: validates rule files without starting anything.
// Exit 0 when every file is valid, 1 otherwise (each error on stderr).
int CheckRules(int argc, char** argv) {
  if (argc < 3) vigie::ExitUsage("usage: vigie-controlplane check-rules FILE...");
  int failed = 0;
  for (int i = 2; i < argc; ++i) {
    absl::StatusOr<std::vector<cp::Rule>> rules = cp::LoadRulesFile(argv[i]);
    if (!rules.ok()) {
      std::cerr << rules.status().message() << "\n";
      ++failed;
      continue;
    }
    std::cout << argv[i] << ": " << rules->size() << " rule" << (rules->size() == 1 ? "" : "s")
              << " valid\n";
  }
  return failed == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "check-rules") return CheckRules(argc, argv);
  vigie::BlockTerminationSignals();
  vigie::ParseFlagsOrExit(argc, argv, "vigie-controlplane --config=controlplane.yaml");
  vigie::SetLogLevelOrExit(absl::GetFlag(FLAGS_log_level));
  const uint64_t open_files = vigie::RaiseOpenFileLimit();  // a socket per agent
  const std::string path = absl::GetFlag(FLAGS_config);
  vigie::v1::ControlPlaneConfig config;
  vigie::LoadConfigOrExit(path, /*required=*/true, &config);
  absl::StatusOr<cp::ControlPlaneOptions> options = cp::ControlPlaneOptionsFromConfig(config);
  if (!options.ok()) vigie::ExitUsage(absl::StrCat(path, ": ", options.status().message()));

  // Storage first: nothing is served until the schema is current.
  cp::PgStoreOptions store_options;
  store_options.database_url = options->database_url;
  store_options.max_connections = options->storage_workers + 3;  // + admin, dispatcher, upkeep
  store_options.retention_raw = options->retention_raw;
  store_options.retention_rollups = options->retention_rollups;
  store_options.series_cache_bytes = options->series_cache_bytes;
  store_options.max_series_per_agent = options->max_series_per_agent;
  store_options.generator_url = options->gateway.generator_url;
  absl::StatusOr<std::unique_ptr<cp::PgStore>> store = cp::PgStore::Open(store_options);
  if (!store.ok()) {
    vigie::log::Error("cannot open the database", {{"error", store.status()}});
    return 1;
  }
  // Credentials before anything listens: the bootstrap admin token and every stored token.
  auto registry = std::make_shared<prometheus::Registry>();
  vigie::AuthFailures auth_failures(registry.get());
  cp::TokenRegistry tokens(store->get(), absl::Seconds(5));
  absl::Status tokens_ok = options->bootstrap_admin_token.empty()
                               ? tokens.Load()
                               : tokens.Bootstrap(options->bootstrap_admin_token);
  if (!tokens_ok.ok()) {
    vigie::log::Error("cannot load tokens", {{"error", tokens_ok}});
    return 1;
  }
  if (tokens.List(false).empty()) {
    vigie::log::Warn(
        "no tokens: nothing can call the Admin API or connect; set bootstrap_admin_token");
  }
  cp::RuleEngine rules(options->rules);
  absl::StatusOr<std::vector<cp::ActiveAlert>> firing = (*store)->LoadFiringAlerts();
  if (!firing.ok()) {
    vigie::log::Error("cannot load alert state", {{"error", firing.status()}});
    return 1;
  }
  rules.Restore(*firing);
  absl::StatusOr<std::vector<cp::PendingChange>> pending = (*store)->LoadPendingAlerts();
  if (!pending.ok()) {
    vigie::log::Error("cannot load pending alerts", {{"error", pending.status()}});
    return 1;
  }
  rules.RestorePending(*pending);

  vigie::WorkerPool pool("storage", options->storage_workers, /*max_queue=*/1024);
  cp::DispatcherOptions dispatch;
  dispatch.backoff = options->notify_backoff;
  dispatch.heartbeat_interval = options->notifier_heartbeat_interval;
  dispatch.source = options->gateway.generator_url;
  if (!options->notifier.empty()) {
    dispatch.channel =
        vigie::MakeChannel(options->notifier, options->notifier_security, grpc::ChannelArguments());
    dispatch.token = options->notifier_token;
  }
  cp::Dispatcher dispatcher(dispatch, store->get(), registry.get());
  cp::Gateway gateway(
      options->gateway, store->get(), &rules, &pool, [&dispatcher] { dispatcher.Wake(); },
      registry.get(), &tokens, &auth_failures);
  tokens.SetOnRevoked([&gateway](const std::string& id) { gateway.DisconnectToken(id); });
  cp::AdminService admin(store->get(), &rules, &pool, &tokens);
  cp::CommandRouterOptions routing;
  routing.database_url = options->database_url;
  cp::CommandRouter command_router(routing, store->get(), &gateway);
  admin.set_command_router(&command_router);
  cp::MaintainerOptions maintain;
  maintain.instance = gateway.instance();
  cp::Maintainer maintainer(maintain, store->get(), registry.get());
  cp::RuleTimerOptions timer;
  timer.generator_url = options->gateway.generator_url;
  timer.on_transitions = [&dispatcher] { dispatcher.Wake(); };
  cp::RuleTimer rule_timer(timer, options->rules, store->get(), &rules, registry.get());
  std::vector<std::unique_ptr<cp::RemoteWriter>> remote_writers;
  for (const cp::RemoteWriteOptions& w : options->remote_write) {
    remote_writers.push_back(std::make_unique<cp::RemoteWriter>(w, store->get(), registry.get()));
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
      options->grpc, &tokens, &auth_failures, registry.get(),
      // Headroom above the gateway's limit: a message a little too large is read and refused by its
      // sequence instead of breaking the stream.
      static_cast<int>(options->max_message_bytes + (1 << 20)), {&gateway, &admin});
  if (absl::IsInvalidArgument(grpc_servers.status())) {
    vigie::ExitUsage(absl::StrCat(path, ": ", grpc_servers.status().message()));
  }
  if (!grpc_servers.ok()) {
    vigie::log::Error("cannot start the gRPC server", {{"error", grpc_servers.status()}});
    return 1;
  }
  tokens.Start();

  dispatcher.Start();
  maintainer.Start();
  rule_timer.Start();
  command_router.Start();
  for (auto& w : remote_writers) w->Start();
  vigie::log::Info("control plane started",
                   {{"grpc", options->grpc.listen},
                    {"tls", !options->grpc.tls.enabled()               ? "off"
                            : options->grpc.tls.client_ca_file.empty() ? "on"
                                                                       : "mutual"},
                    {"health", options->grpc.health_listen},
                    {"http", options->http_listen},
                    {"database", vigie::log::RedactUrl(options->database_url)},
                    {"schema_version", (*store)->schema_version()},
                    {"open_file_limit", open_files},
                    {"rules", options->rules.size()},
                    {"firing_alerts", firing->size()}});

  int sig = vigie::WaitForTerminationSignal();
  vigie::log::Info("shutting down", {{"signal", sig}});
  // Reverse order: stop taking streams (in-flight commits finish, agents resend the rest),
  // then the workers, the dispatcher and the HTTP listener.
  command_router.Stop();  // waiting RunCheck calls end (UNAVAILABLE) before the server stops
  (*grpc_servers)->Shutdown(absl::Seconds(5));
  tokens.Stop();
  pool.Stop();
  dispatcher.Stop();
  rule_timer.Stop();
  maintainer.Stop();
  for (auto& w : remote_writers) w->Stop();
  http_server->reset();
  vigie::log::Info("control plane stopped");
  return 0;
}
