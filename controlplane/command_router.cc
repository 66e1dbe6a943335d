#include "controlplane/command_router.h"

#include <pqxx/pqxx>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "controlplane/pg_store.h"

namespace vigie::controlplane {

struct CommandRouter::Listener {
  // Each notification as (channel, payload), until taken.
  class Receiver : public pqxx::notification_receiver {
   public:
    Receiver(pqxx::connection_base& c, const std::string& channel,
             std::vector<std::pair<std::string, std::string>>* out)
        : pqxx::notification_receiver(c, channel), out_(out) {}
    void operator()(const std::string& payload, int) override {
      if (out_->size() < 100000) out_->emplace_back(channel(), payload);
    }

   private:
    std::vector<std::pair<std::string, std::string>>* const out_;
  };

  explicit Listener(const std::string& url)
      : conn(WithConnectTimeout(url)),
        commands(conn, PgStore::kCommandsChannel, &received),
        done(conn, PgStore::kCommandDoneChannel, &received) {
    // A lost connection is replaced by a new Listener, never reconnected in place (which
    // would block this thread, e.g. in the receivers' UNLISTEN while the database is down).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"  // libpqxx 6.4 still reactivates
    conn.inhibit_reactivation(true);
#pragma GCC diagnostic pop
  }

  // A database that does not answer must not hold the router: 5 s to connect.
  static std::string WithConnectTimeout(const std::string& url) {
    if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
      return absl::StrCat(url, url.find('?') == std::string::npos ? "?" : "&", "connect_timeout=5");
    }
    return absl::StrCat(url, " connect_timeout=5");
  }

  pqxx::connection conn;
  std::vector<std::pair<std::string, std::string>> received;
  Receiver commands;
  Receiver done;
};

CommandRouter::CommandRouter(CommandRouterOptions options, Store* store, Gateway* gateway)
    : Runnable("command-router"), options_(std::move(options)), store_(store), gateway_(gateway) {}

CommandRouter::~CommandRouter() {
  Stop();
  EndAll();
}

void CommandRouter::EndAll() {
  std::map<std::string, Waiter> left;
  {
    MutexLock lock(&mu_);
    stopped_ = true;  // and nobody starts waiting any more
    left.swap(waiting_);
  }
  for (auto& [id, w] : left) w.done(absl::UnavailableError("the control plane is stopping"));
}

absl::Status CommandRouter::Await(const std::string& id, absl::Time deadline, std::string what,
                                  Done done) {
  {
    MutexLock lock(&mu_);
    if (stopped_) return absl::UnavailableError("the control plane is stopping");
    if (waiting_.size() >= options_.max_waiting) {
      return absl::ResourceExhaustedError(absl::StrCat(
          options_.max_waiting, " commands are waiting for agents already; retry later"));
    }
    waiting_[id] = Waiter{deadline, std::move(what), std::move(done)};
  }
  Wake();  // its deadline may be the nearest, and its result may be there already
  return absl::OkStatus();
}

void CommandRouter::Dispatch(const std::vector<std::string>& agents) {
  std::vector<std::string> held;
  for (const std::string& a : agents) {
    if (gateway_->Holds(a)) held.push_back(a);
  }
  if (held.empty()) return;
  absl::StatusOr<std::vector<Store::PendingCommand>> claimed = store_->ClaimCommands(held);
  if (!claimed.ok()) {
    log::Warn("cannot claim commands", {{"error", claimed.status()}});
    return;
  }
  for (const Store::PendingCommand& c : *claimed) {
    v1::Command command;
    command.set_id(c.id);
    const bool check = c.kind == Store::CommandKind::kRunCheck;
    if (check) {
      command.mutable_run_check()->set_name(c.name);
    } else {
      command.mutable_restart_service()->set_name(c.name);
    }
    const bool sent = gateway_->SendCommand(c.agent_id, command);
    log::Info("command sent to agent", {{"id", c.id},
                                        {"agent", c.agent_id},
                                        {check ? "check" : "service", c.name},
                                        {"sent", sent}});
  }
}

void CommandRouter::Collect(const std::vector<std::string>& ids) {
  std::vector<std::string> awaited;
  {
    MutexLock lock(&mu_);
    for (const std::string& id : ids) {
      if (waiting_.count(id) > 0) awaited.push_back(id);  // another replica's otherwise
    }
  }
  if (awaited.empty()) return;
  absl::StatusOr<std::map<std::string, std::string>> results = store_->CommandResults(awaited);
  if (!results.ok()) return;  // the next sweep tries again
  for (auto& [id, result] : *results) {
    Done done;
    {
      MutexLock lock(&mu_);
      auto it = waiting_.find(id);
      if (it == waiting_.end()) continue;
      done = std::move(it->second.done);
      waiting_.erase(it);
    }
    done(std::move(result));
  }
}

void CommandRouter::Expire(absl::Time now) {
  std::vector<Waiter> expired;
  {
    MutexLock lock(&mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (it->second.deadline <= now) {
        expired.push_back(std::move(it->second));
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (Waiter& w : expired) {
    w.done(absl::DeadlineExceededError(
        absl::StrCat("no answer for ", w.what,
                     " in time: is the agent connected, and does it finish within the timeout?")));
  }
}

void CommandRouter::Run() {
  absl::Time next_sweep = absl::InfinitePast();
  absl::Duration retry = absl::Seconds(1);
  while (!stopping()) {
    if (listener_ == nullptr) {
      try {
        listener_ = std::make_unique<Listener>(options_.database_url);
        retry = absl::Seconds(1);
        next_sweep = absl::InfinitePast();  // catch up on what was announced meanwhile
      } catch (const std::exception& e) {
        log::Warn("command router: cannot listen", {{"error", e.what()}});
        Expire(absl::Now());
        if (!WaitFor(retry)) break;
        retry = std::min(retry * 2, absl::Seconds(30));
        continue;
      }
    }
    std::set<std::string> agents, done;
    const absl::Time now = absl::Now();
    const bool sweep = now >= next_sweep;
    if (sweep) {
      next_sweep = now + options_.poll_interval;
      for (const std::string& a : gateway_->HeldAgents()) agents.insert(a);
      MutexLock lock(&mu_);
      for (const auto& [id, w] : waiting_) done.insert(id);
    }
    for (auto& [channel, payload] : listener_->received) {
      (channel == PgStore::kCommandsChannel ? agents : done).insert(std::move(payload));
    }
    listener_->received.clear();
    if (!agents.empty()) Dispatch({agents.begin(), agents.end()});
    if (!done.empty()) Collect({done.begin(), done.end()});
    Expire(absl::Now());

    absl::Time until = next_sweep;
    {
      MutexLock lock(&mu_);
      for (const auto& [id, w] : waiting_) until = std::min(until, w.deadline);
    }
    bool readable = false;
    if (!WaitForFd(std::max(until - absl::Now(), absl::ZeroDuration()), listener_->conn.sock(),
                   &readable)) {
      break;
    }
    try {
      listener_->conn.get_notifs();
    } catch (const std::exception& e) {
      log::Warn("command router: lost the listening connection", {{"error", e.what()}});
      listener_.reset();
    }
  }
  EndAll();  // nobody waits forever on a stopped router
}

}  // namespace vigie::controlplane
