// Routes commands for agents (Admin RunCheck, RestartService) to whichever control-plane replica
// holds the agent's stream, through PostgreSQL: the Admin call inserts a pending row in `commands`
// and NOTIFYs vigie_commands with the agent id; every replica LISTENs, claims the pending commands
// of the agents it holds and writes them on their streams. The agent's result comes back on
// its stream (CheckResult.command_ids, ServiceEvent.command_ids), is stored, and NOTIFYs
// vigie_command_done, which wakes the replica where the Admin call waits. Every poll interval it
// also sweeps (claims for all its agents, looks up every awaited result), so a notification lost
// while the listening connection was down only delays a command.
#ifndef VIGIE_CONTROLPLANE_COMMAND_ROUTER_H_
#define VIGIE_CONTROLPLANE_COMMAND_ROUTER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "common/runnable.h"
#include "controlplane/gateway.h"
#include "controlplane/store.h"
#include "vigie/v1/agent.pb.h"

namespace vigie::controlplane {

struct CommandRouterOptions {
  std::string database_url;  // for the LISTEN connection
  absl::Duration poll_interval = absl::Seconds(1);
  // Admin calls waiting at once; more are refused (RESOURCE_EXHAUSTED).
  size_t max_waiting = 1000;
};

class CommandRouter : public Runnable {
 public:
  // The answer as JSON: a CheckResult (RunCheck) or a ServiceEvent (RestartService).
  using Done = std::function<void(absl::StatusOr<std::string>)>;

  CommandRouter(CommandRouterOptions options, Store* store, Gateway* gateway);
  ~CommandRouter() override;

  // Calls `done` exactly once, from the router's thread: with the result of command `id`, or
  // DEADLINE_EXCEEDED at `deadline` (`what` names the command in that message). An error
  // (and no call) when too many wait already.
  absl::Status Await(const std::string& id, absl::Time deadline, std::string what, Done done);

 protected:
  void Run() override;

 private:
  struct Listener;  // the LISTEN connection (libpqxx), in the .cc
  struct Waiter {
    absl::Time deadline;
    std::string what;
    Done done;
  };

  // Claims the pending commands of `agents` this replica holds and sends them.
  void Dispatch(const std::vector<std::string>& agents);
  // Finishes the waiters of `ids` whose result is stored, and those past their deadline.
  void Collect(const std::vector<std::string>& ids);
  void Expire(absl::Time now);
  // Ends every waiting call (UNAVAILABLE): the router is stopping.
  void EndAll();

  const CommandRouterOptions options_;
  Store* const store_;
  Gateway* const gateway_;
  std::unique_ptr<Listener> listener_;  // the router thread's

  Mutex mu_;
  std::map<std::string, Waiter> waiting_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vigie::controlplane

#endif  // VIGIE_CONTROLPLANE_COMMAND_ROUTER_H_
