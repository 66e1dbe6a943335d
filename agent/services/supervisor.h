// Supervised services: commands the agent keeps running. One thread watches every service's
// pidfd and output pipes on an epoll loop, so an exit is noticed when it happens; a service
// that exits is restarted after a jittered, growing delay that never ends in a dead state;
// every start, exit, restart, stable period and stop is an event sent at once.
#ifndef VIGIE_AGENT_SERVICES_SUPERVISOR_H_
#define VIGIE_AGENT_SERVICES_SUPERVISOR_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/checks/event_loop.h"
#include "agent/collection.h"
#include "agent/services/process_tree.h"
#include "common/backoff.h"
#include "common/mutex.h"
#include "common/runnable.h"
#include "common/spawn.h"
#include "vigie/v1/agent.pb.h"
#include "vigie/v1/config.pb.h"

namespace vigie::agent::services {

// One configured service, validated, defaults filled in.
struct ServiceSpec {
  enum class Restart { kAlways, kOnFailure, kNever };
  std::string name;
  std::vector<std::string> argv;
  std::string working_directory = "/";
  std::vector<std::string> env;  // NAME=value
  Restart restart = Restart::kAlways;
  BackoffPolicy backoff{absl::Seconds(1), absl::Seconds(60), 2.0, 0.2};
  absl::Duration stable_after = absl::Seconds(60);
  int stop_signal = 15;
  absl::Duration stop_timeout = absl::Seconds(10);
  // Health command (empty argv: none).
  std::vector<std::string> health_argv;
  absl::Duration health_interval = absl::Seconds(10);
  absl::Duration health_timeout = absl::Seconds(5);
  int health_failures = 3;
  // Restart when the group's resident memory stays above memory_limit (0: none) this long.
  uint64_t memory_limit = 0;
  absl::Duration memory_limit_for = absl::Seconds(30);
  // Run as this user (unset: the agent's); `user` is its name as configured.
  std::string user;
  std::optional<SpawnOptions::Credentials> credentials;
  std::string log_directory = "/var/log/vigie/services";
  uint64_t log_max_bytes = 10 << 20;
  int log_keep = 3;
};

// Validates the services (unique names, absolute programs, durations); errors name the field.
absl::StatusOr<std::vector<ServiceSpec>> ServiceSpecsFromConfig(
    const google::protobuf::RepeatedPtrField<v1::ServiceConfig>& configs);

// A log file capped at max_bytes: when a write would pass it, <name>.log becomes <name>.log.1
// (and .1 becomes .2, ..., the one past `keep` is deleted).
class RotatingLog {
 public:
  RotatingLog(std::string path, uint64_t max_bytes, int keep)
      : path_(std::move(path)), max_bytes_(max_bytes), keep_(keep) {}
  ~RotatingLog();
  absl::Status Open();
  void Write(const char* data, size_t n);

 private:
  void Rotate();
  const std::string path_;
  const uint64_t max_bytes_;
  const int keep_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

struct SupervisorOptions {
  std::vector<ServiceSpec> services;
  // Each event, from the supervisor's thread, without its sequence (the outbox sets it).
  std::function<void(v1::ServiceEvent)> on_event;
  // How often the services' process groups are measured (/proc) for metrics and memory_limit.
  absl::Duration usage_interval = absl::Seconds(5);
};

class Supervisor : public Runnable {
 public:
  explicit Supervisor(SupervisorOptions options);
  // Stops the services (as Run() does when stopped).
  ~Supervisor() override;

  // Creates the log directories; an error names the service and the directory.
  absl::Status Init();
  // vigie_service_up, vigie_service_state{state}, vigie_service_restarts_total,
  // vigie_service_last_exit_code, the process group's usage (memory, CPU, descriptors,
  // threads, processes) and health, stamped `now_ms`.
  void AppendMetrics(int64_t now_ms, Collection* out) const;
  // Restarts service `name` now (thread-safe): its stop signal to the group (SIGKILL after
  // stop_timeout), a STOPPED event, then a start without backoff; a service waiting to restart,
  // exited or stopped starts at once. The STARTED event (or the EXITED event when the program
  // cannot be started) carries `command_id`. NOT_FOUND for a service not configured.
  absl::Status Restart(const std::string& name, const std::string& command_id);

 protected:
  // Starts every service, keeps them running; when stopped, stops them (stop_signal to each
  // process group, SIGKILL after stop_timeout).
  void Run() override;

 private:
  enum class State { kStarting, kRunning, kBackoff, kExited, kStopped };
  struct Service {
    ServiceSpec spec;
    State state = State::kStarting;
    std::unique_ptr<Child> child;
    std::unique_ptr<RotatingLog> log;
    Backoff backoff;
    absl::Time started, next_start;
    bool stable = false;  // KIND_STABLE sent for this run
    int restarts = 0;
    int last_exit_code = 0;
    // Health: the next run, the one running, its output, failures in a row.
    absl::Time next_health;
    std::unique_ptr<Child> health;
    absl::Time health_started;
    std::string health_output;
    int health_failures = 0;
    bool health_ok = true;
    double health_seconds = 0;
    // A restart asked by the health command: the stop signal was sent at this time (SIGKILL
    // after stop_timeout); InfiniteFuture when none.
    absl::Time stop_sent = absl::InfiniteFuture();
    bool kill_sent = false;  // SIGKILL after stop_timeout, once
    // Restart() asked: the exit is a stop, and the start that follows waits for no backoff.
    bool restart_asked = false;
    std::vector<std::string> command_ids;  // answered by the next start
    // Its process group's usage at the last measure; since when it is above memory_limit.
    GroupUsage usage;
    absl::Time over_limit_since = absl::InfiniteFuture();
    explicit Service(ServiceSpec s) : spec(std::move(s)), backoff(spec.backoff) {}
  };
  struct Snapshot {
    State state = State::kStarting;
    int restarts = 0;
    int last_exit_code = 0;
    bool has_health = false;
    bool health_ok = true;
    double health_seconds = 0;
    GroupUsage usage;
  };

  void StartService(Service& s);
  void Exited(Service& s);
  void Drain(Service& s, int fd);
  // Health commands: start one when due, judge it when it exits or its timeout passes.
  void StartHealth(Service& s);
  void HealthDone(Service& s, std::optional<ExitStatus> status);
  void EndHealth(Service& s);
  void StopAll();
  // Handles the Restart() requests.
  void TakeRequests();
  // Reads the running services' process groups from /proc; restarts those above their
  // memory_limit for memory_limit_for.
  void MeasureUsage(absl::Time now);
  void Emit(const Service& s, v1::ServiceEvent::Kind kind, std::string message, int exit_code = 0,
            int signal = 0, int pid = 0, std::vector<std::string> command_ids = {});
  void Publish();
  static const char* StateName(State s);

  SupervisorOptions options_;
  checks::EventLoop loop_;
  std::vector<std::unique_ptr<Service>> services_;  // the thread's
  bool stopping_all_ = false;                       // StopAll under way: exits are stops

  mutable Mutex mu_;
  std::vector<Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  // Restart() requests: service index, command id.
  std::vector<std::pair<size_t, std::string>> requests_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigie::agent::services

#endif  // VIGIE_AGENT_SERVICES_SUPERVISOR_H_
