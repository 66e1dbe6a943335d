// vigie-agent: collects host metrics and streams them to the control plane.
#include <malloc.h>

#include <csignal>
#include <memory>

#include "absl/flags/flag.h"
#include "absl/synchronization/mutex.h"
#include "agent/agent.h"
#include "agent/services/cgroup.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/process.h"
#include "common/yaml_config.h"
#include "google/protobuf/util/message_differencer.h"
#include "prometheus/registry.h"

ABSL_FLAG(std::string, config, "", "Path to the agent's YAML config (see docs/configuration.md).");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warn or error.");

int main(int argc, char** argv) {
  // One malloc arena with fixed thresholds: the agent's threads mostly hand work to each other,
  // and per-thread arenas (or a threshold that drifts up with the first large free) would keep
  // each one's high-water mark resident. Freed memory above 256 KiB goes back to the kernel.
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  mallopt(M_TRIM_THRESHOLD, 256 << 10);
  // Debian's abseil keeps absl::Mutex's deadlock detection on, and gRPC locks absl::Mutexes on
  // every timer tick and completion: its lock-order graph costs a noticeable share of an idle
  // agent's CPU. Vigie's own locks are checked by clang's -Wthread-safety and TSan instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // `vigie-agent stop-services --config=...`: stops the services agents left running.
  bool stop_services = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) != "stop-services") continue;
    stop_services = true;
    for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
    --argc;
    break;
  }
  vigie::BlockTerminationSignals();
  vigie::ParseFlagsOrExit(argc, argv,
                          "vigie-agent --config=agent.yaml\n"
                          "vigie-agent stop-services --config=agent.yaml  (with no agent running)");
  vigie::SetLogLevelOrExit(absl::GetFlag(FLAGS_log_level));
  vigie::v1::AgentConfig config;
  vigie::LoadConfigOrExit(absl::GetFlag(FLAGS_config), /*required=*/false, &config);
  if (stop_services) {
    // Only the services part of the config matters here (no token, no control plane).
    absl::StatusOr<std::vector<vigie::agent::services::ServiceSpec>> specs =
        vigie::agent::services::ServiceSpecsFromConfig(config.services());
    if (!specs.ok()) vigie::ExitUsage(absl::StrCat("config: ", specs.status().message()));
    vigie::agent::services::SupervisorOptions so;
    so.services = std::move(*specs);
    if (!config.service_state_directory().empty()) {
      so.state_directory = config.service_state_directory();
    }
    if (config.service_cgroups() != "off") {
      absl::StatusOr<std::string> root = vigie::agent::services::PrepareCgroupRoot();
      if (root.ok()) so.cgroup_root = *root;
    }
    absl::Status s = vigie::agent::services::Supervisor::StopServicesLeftRunning(so);
    if (!s.ok()) {
      vigie::log::Error("stop-services", {{"error", s}});
      return 1;
    }
    return 0;
  }
  absl::StatusOr<vigie::agent::AgentOptions> options = vigie::agent::AgentOptionsFromConfig(config);
  if (!options.ok()) vigie::ExitUsage(absl::StrCat("config: ", options.status().message()));

  std::unique_ptr<vigie::agent::Spool> spool;
  vigie::agent::Spool::Recovered recovered;
  if (!options->spool.directory.empty()) {
    absl::StatusOr<std::unique_ptr<vigie::agent::Spool>> opened =
        vigie::agent::Spool::Open(options->spool, &recovered);
    if (!opened.ok()) {
      vigie::log::Error("cannot use the spool", {{"error", opened.status()}});
      return 1;
    }
    spool = std::move(*opened);
    vigie::log::Info("spool opened", {{"directory", options->spool.directory},
                                      {"messages", recovered.messages.size()},
                                      {"next_sequence", recovered.next_sequence},
                                      {"corrupt_regions_skipped", recovered.corrupt}});
  }
  auto registry = std::make_shared<prometheus::Registry>();
  vigie::agent::Agent agent(*options, registry.get(), vigie::Clock::Real(), std::move(spool),
                            std::move(recovered));

  vigie::HttpServerOptions http;
  http.listen = options->http_listen;
  http.metrics = {registry.get(), &agent.host_metrics()};
  http.auth = options->http_auth;
  http.threads = 1;  // one scraper (Prometheus) at a time is the agent's load; keeps it lean
  absl::StatusOr<std::unique_ptr<vigie::HttpServer>> server = vigie::HttpServer::Start(http);
  if (!server.ok()) {
    vigie::log::Error("cannot start HTTP listener", {{"error", server.status()}});
    return 1;
  }
  agent.StartStreaming();
  agent.Start();
  vigie::log::Info("agent started", {{"agent_id", options->agent_id},
                                     {"controlplane", options->controlplane},
                                     {"tls", options->security.tls ? "on" : "off"},
                                     {"http", options->http_listen}});

  int sig = 0;
  const std::string path = absl::GetFlag(FLAGS_config);
  while ((sig = vigie::WaitForTerminationOrReload()) == SIGHUP) {
    // Reload: the supervised services only (docs/services.md); the rest needs a restart.
    vigie::v1::AgentConfig fresh_config;
    absl::Status loaded = path.empty() ? absl::FailedPreconditionError("no --config file")
                                       : vigie::LoadYamlConfigFile(path, &fresh_config);
    absl::StatusOr<vigie::agent::AgentOptions> fresh =
        loaded.ok() ? vigie::agent::AgentOptionsFromConfig(fresh_config)
                    : absl::StatusOr<vigie::agent::AgentOptions>(loaded);
    if (!fresh.ok()) {
      vigie::log::Error("reload refused; the running configuration stays",
                        {{"config", path}, {"error", fresh.status()}});
      continue;
    }
    vigie::v1::AgentConfig before = config, after = fresh_config;
    before.clear_services();
    after.clear_services();
    if (!google::protobuf::util::MessageDifferencer::Equals(before, after)) {
      vigie::log::Warn("reload: only services are reloaded; restart the agent for the rest",
                       {{"config", path}});
    }
    if (absl::Status s = agent.ReloadServices(std::move(fresh->services)); !s.ok()) {
      vigie::log::Error("reload: services", {{"error", s}});
      continue;
    }
    vigie::log::Info("reloaded", {{"config", path}, {"services", fresh_config.services_size()}});
  }
  vigie::log::Info("shutting down", {{"signal", sig}});
  agent.Stop();  // no more collections
  // Give the control plane a moment to acknowledge what is buffered. Without a spool, whatever
  // is still unacknowledged at exit is lost (and logged below); with one it is sent after the
  // restart.
  if (!agent.Drain(absl::Seconds(5))) {
    vigie::log::Warn("exiting with unacknowledged messages",
                     {{"pending_messages", agent.outbox().pending()}});
  }
  agent.StopStreaming();
  server->reset();
  vigie::log::Info("agent stopped", {{"last_sequence", agent.outbox().last_sequence()},
                                     {"acked_sequence", agent.outbox().acked_sequence()},
                                     {"pending_messages", agent.outbox().pending()},
                                     {"dropped_messages", agent.outbox().dropped()}});
  return 0;
}
