// Supervised services: commands the agent keeps running. Each service runs under its own
// vigie-service-shim (its parent, which writes its output to rotated files and records its
// exit status), so it outlives the agent: a new agent re-adopts it by pid and start time. One
// thread watches every shim's pidfd on an epoll loop, so an exit is noticed when it happens; a
// service that exits is restarted after a jittered, growing delay that never ends in a dead
// state; every start, exit, restart, stable period and stop is an event sent at once.
#ifndef VIGIE_AGENT_SERVICES_SUPERVISOR_H_
#define VIGIE_AGENT_SERVICES_SUPERVISOR_H_

#include <deque>
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

struct SupervisorOptions {
  std::vector<ServiceSpec> services;
  // Each event, from the supervisor's thread, without its sequence (the outbox sets it).
  std::function<void(v1::ServiceEvent)> on_event;
  // How often the services' process groups are measured (/proc) for metrics and memory_limit.
  absl::Duration usage_interval = absl::Seconds(5);
  // Where each running service's record (<name>.service) and its shim's exit status
  // (<name>.exit) are kept, so a new agent re-adopts what an earlier one started.
  std::string state_directory = "/var/lib/vigie/services";
  // The vigie-service-shim program (the parent of each service).
  std::string shim_path;
  // Stop the services when the supervisor stops; else they keep running for the next agent.
  bool stop_on_exit = false;
  // Where each service gets a control group (PrepareCgroupRoot); empty: process groups only.
  std::string cgroup_root;
};

class Supervisor : public Runnable {
 public:
  explicit Supervisor(SupervisorOptions options);
  // Stops the services when stop_on_exit, else leaves them running (as Run() does).
  ~Supervisor() override;

  // Creates the log and state directories (an error names the service and the directory) and
  // re-adopts the services an earlier agent left running (checked by pid and start time).
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
  // Applies a new set of services (thread-safe; SIGHUP): a service whose definition is the same
  // keeps running and takes the new health, backoff, restart and stop settings; a changed one
  // is stopped and started anew; a new one is started; a removed one is stopped.
  void Reload(std::vector<ServiceSpec> services);

  // `vigie-agent stop-services`: stops every service an agent left running (recorded in
  // options.state_directory), with its configured stop signal and timeout (TERM and 10s for
  // one no longer configured), and forgets it. Run it while no agent runs.
  static absl::Status StopServicesLeftRunning(const SupervisorOptions& options);

 protected:
  // Starts (or re-adopts) every service and keeps them running; when stopped, stops them if
  // stop_on_exit (stop_signal to each process group, SIGKILL after stop_timeout), else
  // leaves them running.
  void Run() override;

 private:
  enum class State { kStarting, kRunning, kBackoff, kExited, kStopped };
  struct Service {
    ServiceSpec spec;
    State state = State::kStopped;
    // The running service: its shim (our child, or adopted: null), the shim's pidfd, and the
    // service's pid, which names its process group (0 until the shim reports it).
    std::unique_ptr<Child> shim;
    int shim_pidfd = -1;
    pid_t shim_pid = 0;
    int shim_out = -1;      // the shim's stdout, until its first line
    std::string shim_line;  // that line
    pid_t pid = 0;
    bool adopted = false;     // started by an earlier agent
    bool replace = false;     // adopted, but its definition changed: stop, then start anew
    bool removed = false;     // adopted, but no longer configured: stop, never start
    std::string fingerprint;  // of the definition it was started with
    std::string cgroup;       // its control group ("": none)
    Backoff backoff;
    absl::Time started, next_start;
    bool stable = false;  // KIND_STABLE sent for this run
    int restarts = 0;
    int restarts_in_a_row = 0;  // without a stable run
    int last_exit_code = 0;
    // Health: the next run, the one running, its output, failures in a row.
    absl::Time next_health;
    std::unique_ptr<Child> health;
    absl::Time health_started;
    std::string health_output;
    int health_failures = 0;
    bool health_ok = true;
    bool health_unknown = false;  // adopted: the earlier agent's health count is not known
    double health_seconds = 0;
    // A restart asked (health, memory, Restart(), a new definition): the stop signal was
    // sent at this time (SIGKILL after stop_timeout); InfiniteFuture when none.
    absl::Time stop_sent = absl::InfiniteFuture();
    bool kill_sent = false;  // SIGKILL after stop_timeout, once
    // Restart() asked: the exit is a stop, and the start that follows waits for no backoff.
    bool restart_asked = false;
    std::vector<std::string> command_ids;  // answered by the next start
    // Its process group's usage at the last measure; since when it is above memory_limit.
    GroupUsage usage;
    absl::Time over_limit_since = absl::InfiniteFuture();
    bool running() const { return shim_pidfd >= 0; }
    explicit Service(ServiceSpec s) : spec(std::move(s)), backoff(spec.backoff) {}
  };
  struct Snapshot {
    std::string name;
    uint64_t memory_limit = 0;
    State state = State::kStarting;
    int restarts = 0;
    int last_exit_code = 0;
    bool has_health = false;
    bool health_ok = true;
    double health_seconds = 0;
    GroupUsage usage;
  };

  // The shim's command line for `s` (its program first).
  std::vector<std::string> ShimArgv(const ServiceSpec& s) const;
  std::string RecordPath(const std::string& name) const;
  std::string CgroupDir(const std::string& name) const;
  std::string ExitPath(const std::string& name) const;
  // Takes over what an earlier agent left running for `s` (at Init), or reports how it ended.
  void Adopt(Service& s);
  // Adopts into removed_ (to be stopped) the recorded services not configured, and with
  // `configured_too` the configured ones as well (stop-services).
  void AdoptLeftovers(bool configured_too);
  void StartService(Service& s);
  // A start that failed before the service ran: reported and retried like an exit.
  void StartFailed(Service& s, const std::string& why);
  // The next start after the backoff delay (KIND_RESTARTING).
  void ScheduleRestart(Service& s);
  void ReadShimLine(Service& s);
  void ShimExited(Service& s);
  void Exited(Service& s, const ExitStatus& status, const std::string& note);
  // The stop (or kill) signal to the service's process group.
  void SignalService(Service& s, int signal);
  // Health commands: start one when due, judge it when it exits or its timeout passes.
  void StartHealth(Service& s);
  void HealthDone(Service& s, std::optional<ExitStatus> status);
  void EndHealth(Service& s);
  void StopAll();
  // Leaves every running service to the next agent: forgets its shim without a signal.
  void ReleaseAll();
  // Handles the Restart() and Reload() requests.
  void TakeRequests();
  void ApplyReload(std::vector<ServiceSpec> specs);
  absl::Status MakeStateDirectory();
  // Creates the log directory and checks the log file can be written.
  static absl::Status PrepareLog(const ServiceSpec& spec);
  // Reads the running services' process groups from /proc; restarts those above their
  // memory_limit for memory_limit_for.
  void MeasureUsage(absl::Time now);
  void Emit(const Service& s, v1::ServiceEvent::Kind kind, std::string message, int exit_code = 0,
            int signal = 0, int pid = 0, std::vector<std::string> command_ids = {},
            uint32_t count = 0);
  void Publish();
  static const char* StateName(State s);

  SupervisorOptions options_;
  checks::EventLoop loop_;
  std::vector<std::unique_ptr<Service>> services_;  // the thread's
  // Adopted services no longer in the config: stopped at start, then forgotten.
  std::vector<std::unique_ptr<Service>> removed_;
  std::string cgroup_prefix_;  // CgroupDir(name) = prefix + name
  bool stopping_all_ = false;  // StopAll under way: exits are stops

  mutable Mutex mu_;
  std::vector<Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  // Restart() requests: service name, command id.
  std::vector<std::pair<std::string, std::string>> requests_ ABSL_GUARDED_BY(mu_);
  std::optional<std::vector<ServiceSpec>> reload_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> handled_ ABSL_GUARDED_BY(mu_);  // the last 256 command ids
};

}  // namespace vigie::agent::services

#endif  // VIGIE_AGENT_SERVICES_SUPERVISOR_H_
