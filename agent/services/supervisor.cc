#include "agent/services/supervisor.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/agent_message.h"
#include "common/log.h"
#include "common/status.h"
#include "common/yaml_config.h"
#include "re2/re2.h"

namespace vigie::agent::services {
namespace {

constexpr char kDefaultPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// An absolute path as it is, or a bare name found in the default PATH.
absl::StatusOr<std::string> ResolveProgram(const std::string& program, const std::string& field) {
  if (!program.empty() && program[0] == '/') return program;
  if (program.empty() || program.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", program, "\" must be an absolute path or a program name in PATH"));
  }
  for (const char* dir :
       {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
    const std::string path = absl::StrCat(dir, "/", program);
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ": \"", program,
                                                 "\" is not in /usr/local/sbin:/usr/local/bin:"
                                                 "/usr/sbin:/usr/bin:/sbin:/bin"));
}

// The uid, primary group and supplementary groups of `user` (a name, or a number that need
// not be in /etc/passwd), and its home directory and name ("" for a bare number).
absl::StatusOr<SpawnOptions::Credentials> ResolveUser(const std::string& user,
                                                      const std::string& field, std::string* home,
                                                      std::string* name) {
  passwd pw{}, *found = nullptr;
  std::vector<char> buf(16384);
  uint32_t number = 0;
  const bool numeric = absl::SimpleAtoi(user, &number);
  const int rc = numeric ? getpwuid_r(number, &pw, buf.data(), buf.size(), &found)
                         : getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
  SpawnOptions::Credentials c;
  if (found == nullptr) {
    if (!numeric) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": no user \"", user, "\"",
                       rc != 0 ? absl::StrCat(" (", std::strerror(rc), ")") : ""));
    }
    c.uid = number;
    c.gid = number;
    return c;
  }
  c.uid = pw.pw_uid;
  c.gid = pw.pw_gid;
  *home = pw.pw_dir;
  *name = pw.pw_name;
  int n = 64;
  c.groups.resize(static_cast<size_t>(n));
  if (getgrouplist(pw.pw_name, pw.pw_gid, c.groups.data(), &n) < 0) {
    c.groups.resize(static_cast<size_t>(n));
    getgrouplist(pw.pw_name, pw.pw_gid, c.groups.data(), &n);
  }
  c.groups.resize(static_cast<size_t>(std::max(n, 0)));
  return c;
}

absl::StatusOr<ServiceSpec> SpecFromConfig(const v1::ServiceConfig& c, const std::string& field) {
  ServiceSpec s;
  s.name = c.name();
  VIGIE_RETURN_IF_ERROR(ValidateConfigName(absl::StrCat(field, ".name"), s.name));
  const std::string at = absl::StrCat(field, " (", s.name, ")");
  if (c.command().empty() || c.command(0).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(at,
                     ".command: required: the program and its arguments, e.g. "
                     "[\"/usr/bin/python3\", \"-m\", \"http.server\"]"));
  }
  for (const std::string& a : c.command()) {
    if (a.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".command: an argument holds a NUL"));
    }
    s.argv.push_back(a);
  }
  if (s.argv[0][0] != '/') {
    VIGIE_ASSIGN_OR_RETURN(s.argv[0], ResolveProgram(s.argv[0], absl::StrCat(at, ".command[0]")));
  }
  if (c.has_health()) {
    const v1::ServiceHealth& h = c.health();
    if (h.command().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(at, ".health.command: required"));
    }
    for (const std::string& a : h.command()) {
      if (a.find('\0') != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(at, ".health.command: an argument holds a NUL"));
      }
      s.health_argv.push_back(a);
    }
    VIGIE_ASSIGN_OR_RETURN(
        s.health_argv[0], ResolveProgram(s.health_argv[0], absl::StrCat(at, ".health.command[0]")));
    VIGIE_ASSIGN_OR_RETURN(
        s.health_interval,
        ParseConfigDuration(absl::StrCat(at, ".health.interval"), h.interval(), s.health_interval));
    VIGIE_ASSIGN_OR_RETURN(
        s.health_timeout,
        ParseConfigDuration(absl::StrCat(at, ".health.timeout"), h.timeout(), s.health_timeout));
    if (h.failures() > 100) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".health.failures: at most 100, got ", h.failures()));
    }
    if (h.failures() != 0) s.health_failures = static_cast<int>(h.failures());
    if (s.health_interval < absl::Milliseconds(100) || s.health_timeout < absl::Milliseconds(10) ||
        s.health_timeout >= s.health_interval) {
      return absl::InvalidArgumentError(absl::StrCat(
          at, ".health: interval at least 100ms, timeout at least 10ms and below interval"));
    }
  }
  if (access(s.argv[0].c_str(), X_OK) != 0) {
    // Not fatal: it may be installed later; each start says why it fails, and is retried.
    log::Warn("service program cannot be run (yet)",
              {{"service", s.name}, {"program", s.argv[0]}, {"error", std::strerror(errno)}});
  }
  if (!c.working_directory().empty()) {
    if (c.working_directory()[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          at, ".working_directory: \"", c.working_directory(), "\" must be an absolute path"));
    }
    s.working_directory = c.working_directory();
  }
  bool has_path = false;
  for (const auto& [k, v] : c.environment()) {
    if (k.empty() || k.find_first_of("=\0", 0, 2) != std::string::npos ||
        v.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".environment: \"", k, "\" is not a variable name"));
    }
    has_path = has_path || k == "PATH";
    s.env.push_back(absl::StrCat(k, "=", v));
  }
  if (!has_path) s.env.push_back(kDefaultPath);
  if (!c.user().empty()) {
    const std::string field_user = absl::StrCat(at, ".user");
    std::string home, name;
    VIGIE_ASSIGN_OR_RETURN(s.credentials, ResolveUser(c.user(), field_user, &home, &name));
    if (geteuid() != 0 && s.credentials->uid != geteuid()) {
      return absl::InvalidArgumentError(absl::StrCat(field_user, ": running as \"", c.user(),
                                                     "\" needs the agent to run as root"));
    }
    s.user = c.user();
    // As login and systemd's User= do, unless the environment names them.
    for (const auto& [k, v] :
         {std::pair<const char*, std::string>{"HOME", home}, {"USER", name}, {"LOGNAME", name}}) {
      if (!v.empty() && c.environment().count(k) == 0) s.env.push_back(absl::StrCat(k, "=", v));
    }
  }
  VIGIE_ASSIGN_OR_RETURN(s.memory_limit,
                         ParseConfigBytes(absl::StrCat(at, ".memory_limit"), c.memory_limit(), 0));
  if (!c.memory_limit().empty() && s.memory_limit < (1u << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".memory_limit: at least 1MiB, got \"", c.memory_limit(), "\""));
  }
  if (c.restart().empty() || c.restart() == "always") {
    s.restart = ServiceSpec::Restart::kAlways;
  } else if (c.restart() == "on-failure") {
    s.restart = ServiceSpec::Restart::kOnFailure;
  } else if (c.restart() == "never") {
    s.restart = ServiceSpec::Restart::kNever;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        at, ".restart: must be always, on-failure or never; got \"", c.restart(), "\""));
  }
  VIGIE_ASSIGN_OR_RETURN(s.backoff,
                         BackoffFromConfig(absl::StrCat(at, ".backoff"), c.backoff(), s.backoff));
  if (s.backoff.initial < absl::Milliseconds(100)) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".backoff.initial: at least 100ms (each restart is an event), got \"",
                     c.backoff().initial(), "\""));
  }
  VIGIE_ASSIGN_OR_RETURN(s.stable_after, ParseConfigDuration(absl::StrCat(at, ".stable_after"),
                                                             c.stable_after(), s.stable_after));
  VIGIE_ASSIGN_OR_RETURN(s.stop_timeout, ParseConfigDuration(absl::StrCat(at, ".stop_timeout"),
                                                             c.stop_timeout(), s.stop_timeout));
  if (s.stable_after < absl::Milliseconds(100) || s.stop_timeout < absl::Milliseconds(10) ||
      s.stop_timeout > absl::Hours(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ": stable_after must be at least 100ms, stop_timeout 10ms to 1h"));
  }
  static const std::pair<const char*, int> kSignals[] = {
      {"TERM", SIGTERM}, {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"HUP", SIGHUP},
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"KILL", SIGKILL}};
  if (!c.stop_signal().empty()) {
    s.stop_signal = 0;
    for (const auto& [name, number] : kSignals) {
      if (c.stop_signal() == name || c.stop_signal() == absl::StrCat("SIG", name)) {
        s.stop_signal = number;
      }
    }
    if (s.stop_signal == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".stop_signal: \"", c.stop_signal(),
                       "\" is not TERM, INT, QUIT, HUP, USR1, USR2 or KILL"));
    }
  }
  if (!c.log().directory().empty()) s.log_directory = c.log().directory();
  if (c.log().max_bytes() != 0) s.log_max_bytes = c.log().max_bytes();
  if (c.log().keep() != 0) s.log_keep = static_cast<int>(c.log().keep());
  if (s.log_max_bytes < 4096 || c.log().keep() > 100 || s.log_directory[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        at, ".log: directory must be absolute, max_bytes at least 4096, keep at most 100"));
  }
  return s;
}

}  // namespace

absl::StatusOr<std::vector<ServiceSpec>> ServiceSpecsFromConfig(
    const google::protobuf::RepeatedPtrField<v1::ServiceConfig>& configs) {
  std::vector<ServiceSpec> out;
  std::set<std::string> names;
  for (int i = 0; i < configs.size(); ++i) {
    const std::string field = absl::StrCat("services[", i, "]");
    VIGIE_ASSIGN_OR_RETURN(ServiceSpec s, SpecFromConfig(configs[i], field));
    if (!names.insert(s.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".name: \"", s.name, "\" is used twice"));
    }
    out.push_back(std::move(s));
  }
  return out;
}

RotatingLog::~RotatingLog() {
  if (fd_ >= 0) close(fd_);
}

absl::Status RotatingLog::Open() {
  fd_ = open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", path_, ": ", std::strerror(errno)));
  }
  struct stat st {};
  size_ = fstat(fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  return absl::OkStatus();
}

void RotatingLog::Rotate() {
  close(fd_);
  fd_ = -1;
  unlink(absl::StrCat(path_, ".", keep_).c_str());
  for (int i = keep_ - 1; i >= 1; --i) {
    rename(absl::StrCat(path_, ".", i).c_str(), absl::StrCat(path_, ".", i + 1).c_str());
  }
  if (keep_ > 0) {
    rename(path_.c_str(), absl::StrCat(path_, ".1").c_str());
  } else {
    unlink(path_.c_str());
  }
  if (!Open().ok()) fd_ = -1;  // retried at the next write
}

void RotatingLog::Write(const char* data, size_t n) {
  while (n > 0) {
    if (fd_ < 0 && !Open().ok()) return;
    if (size_ >= max_bytes_) Rotate();
    if (fd_ < 0) return;
    // What fits in this file; the rest goes to the next one.
    const size_t chunk = std::min<uint64_t>(n, max_bytes_ - size_);
    const ssize_t w = write(fd_, data, chunk);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // a full disk: the output is lost, the service goes on
    data += w;
    n -= static_cast<size_t>(w);
    size_ += static_cast<uint64_t>(w);
  }
}

Supervisor::Supervisor(SupervisorOptions options)
    : Runnable("supervisor"), options_(std::move(options)) {
  for (ServiceSpec& s : options_.services) {
    services_.push_back(std::make_unique<Service>(std::move(s)));
  }
  options_.services.clear();
  snapshot_.resize(services_.size());
}

Supervisor::~Supervisor() { Stop(); }

absl::Status Supervisor::Init() {
  VIGIE_RETURN_IF_ERROR(loop_.Init());
  for (auto& s : services_) {
    std::error_code ec;
    std::filesystem::create_directories(s->spec.log_directory, ec);
    if (ec) {
      return absl::FailedPreconditionError(absl::StrCat(
          "service ", s->spec.name, ": log.directory ", s->spec.log_directory, ": ", ec.message()));
    }
    s->log = std::make_unique<RotatingLog>(
        absl::StrCat(s->spec.log_directory, "/", s->spec.name, ".log"), s->spec.log_max_bytes,
        s->spec.log_keep);
    if (absl::Status st = s->log->Open(); !st.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("service ", s->spec.name, ": log.directory: ", st.message()));
    }
  }
  return absl::OkStatus();
}

const char* Supervisor::StateName(State s) {
  switch (s) {
    case State::kStarting:
      return "starting";
    case State::kRunning:
      return "running";
    case State::kBackoff:
      return "backoff";
    case State::kExited:
      return "exited";
    case State::kStopped:
      return "stopped";
  }
  return "unknown";
}

void Supervisor::Emit(const Service& s, v1::ServiceEvent::Kind kind, std::string message,
                      int exit_code, int signal, int pid, std::vector<std::string> command_ids) {
  v1::ServiceEvent e;
  e.set_service(s.spec.name);
  e.set_kind(kind);
  e.set_exit_code(exit_code);
  e.set_signal(signal);
  e.set_pid(pid);
  e.set_message(SafeText(message, 1024));
  e.set_timestamp_ms(absl::ToUnixMillis(absl::Now()));
  for (std::string& id : command_ids) e.add_command_ids(std::move(id));
  log::Info("service", {{"service", s.spec.name},
                        {"event", v1::ServiceEvent::Kind_Name(kind)},
                        {"message", e.message()}});
  if (options_.on_event) options_.on_event(std::move(e));
}

void Supervisor::StartService(Service& s) {
  SpawnOptions o;
  o.argv = s.spec.argv;
  o.env = s.spec.env;
  o.working_directory = s.spec.working_directory;
  o.credentials = s.spec.credentials;
  absl::StatusOr<std::unique_ptr<Child>> child = Child::Spawn(o);
  s.started = absl::Now();
  s.stable = false;
  if (!child.ok()) {
    // Never a dead end: a missing program is retried like an exit.
    Emit(s, v1::ServiceEvent::KIND_EXITED, std::string(child.status().message()), -1, 0, 0,
         std::move(s.command_ids));
    s.command_ids.clear();
    s.last_exit_code = -1;
    const absl::Duration delay = s.backoff.Next();
    s.state = State::kBackoff;
    s.next_start = absl::Now() + delay;
    ++s.restarts;
    Emit(s, v1::ServiceEvent::KIND_RESTARTING,
         absl::StrCat("starting again in ",
                      absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(1)))));
    return;
  }
  s.child = std::move(*child);
  s.state = State::kRunning;
  s.stop_sent = absl::InfiniteFuture();
  s.kill_sent = false;
  s.health_failures = 0;
  s.health_ok = true;
  s.next_health = absl::Now() + s.spec.health_interval;
  Service* sp = &s;
  loop_.Watch(s.child->stdout_fd(), true, false,
              [this, sp](bool, bool) { Drain(*sp, sp->child->stdout_fd()); });
  loop_.Watch(s.child->stderr_fd(), true, false,
              [this, sp](bool, bool) { Drain(*sp, sp->child->stderr_fd()); });
  loop_.Watch(s.child->pidfd(), true, false, [this, sp](bool, bool) { Exited(*sp); });
  Emit(s, v1::ServiceEvent::KIND_STARTED, absl::StrCat("pid ", s.child->pid()), 0, 0,
       s.child->pid(), std::move(s.command_ids));
  s.command_ids.clear();
}

void Supervisor::Drain(Service& s, int fd) {
  char buf[16384];
  // At most 1 MiB per call: a process writing without pause must not hold the loop (epoll is
  // level-triggered, so the rest comes at the next pass).
  for (int reads = 0; reads < 64; ++reads) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      s.log->Write(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) loop_.Unwatch(fd);
    return;
  }
}

void Supervisor::Exited(Service& s) {
  // What the service left running in its group goes with it (a restart starts clean), before
  // it is reaped: its pid still holds the group's id. Then what is left in the pipes.
  s.child->SignalGroup(SIGKILL).IgnoreError();
  Drain(s, s.child->stdout_fd());
  Drain(s, s.child->stderr_fd());
  std::optional<ExitStatus> status = s.child->TryReap();
  if (!status) return;
  for (int fd : {s.child->stdout_fd(), s.child->stderr_fd(), s.child->pidfd()}) loop_.Unwatch(fd);
  s.child.reset();
  EndHealth(s);
  const bool health_restart = s.stop_sent != absl::InfiniteFuture();
  s.stop_sent = absl::InfiniteFuture();
  const absl::Duration ran = absl::Now() - s.started;
  s.last_exit_code = status->code;
  if (stopping_all_) {  // the exit StopAll asked for
    s.state = State::kStopped;
    Emit(s, v1::ServiceEvent::KIND_STOPPED,
         absl::StrCat("stopped by the agent: ", status->ToString()), status->code, status->signal);
    return;
  }
  if (s.restart_asked) {  // Restart(): a stop, then a start at once
    s.restart_asked = false;
    s.state = State::kStopped;
    Emit(s, v1::ServiceEvent::KIND_STOPPED,
         absl::StrCat("stopped for a restart asked through the Admin API: ", status->ToString()),
         status->code, status->signal);
    ++s.restarts;
    StartService(s);
    return;
  }
  Emit(s, v1::ServiceEvent::KIND_EXITED,
       absl::StrCat(status->ToString(), " after ",
                    absl::FormatDuration(absl::Trunc(ran, absl::Milliseconds(1)))),
       status->code, status->signal);
  const bool failed = status->code != 0;
  if (!health_restart && (s.spec.restart == ServiceSpec::Restart::kNever ||
                          (s.spec.restart == ServiceSpec::Restart::kOnFailure && !failed))) {
    s.state = State::kExited;
    return;
  }
  if (ran >= s.spec.stable_after) s.backoff.Reset();
  const absl::Duration delay = s.backoff.Next();
  s.state = State::kBackoff;
  s.next_start = absl::Now() + delay;
  ++s.restarts;
  Emit(s, v1::ServiceEvent::KIND_RESTARTING,
       absl::StrCat("starting again in ",
                    absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(1))), " (restart ",
                    s.restarts, ")"));
}

void Supervisor::StartHealth(Service& s) {
  SpawnOptions o;
  o.argv = s.spec.health_argv;
  o.env = s.spec.env;
  o.working_directory = s.spec.working_directory;
  o.credentials = s.spec.credentials;
  s.health_started = absl::Now();
  s.next_health = s.health_started + s.spec.health_interval;
  s.health_output.clear();
  absl::StatusOr<std::unique_ptr<Child>> child = Child::Spawn(o);
  if (!child.ok()) {
    s.health_output = std::string(child.status().message());
    HealthDone(s, ExitStatus{127, 0});
    return;
  }
  s.health = std::move(*child);
  Service* sp = &s;
  auto drain = [this, sp](int fd) {
    char buf[4096];
    for (int reads = 0; reads < 64; ++reads) {  // bounded, as Drain()
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n > 0) {
        if (sp->health_output.size() < 4096) sp->health_output.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) loop_.Unwatch(fd);
      return;
    }
  };
  const int out = s.health->stdout_fd(), err = s.health->stderr_fd();
  loop_.Watch(out, true, false, [drain, out](bool, bool) { drain(out); });
  loop_.Watch(err, true, false, [drain, err](bool, bool) { drain(err); });
  loop_.Watch(s.health->pidfd(), true, false, [this, sp, drain, out, err](bool, bool) {
    drain(out);
    drain(err);
    sp->health->SignalGroup(SIGKILL).IgnoreError();  // what it left behind
    std::optional<ExitStatus> status = sp->health->TryReap();
    if (status) HealthDone(*sp, status);
  });
}

void Supervisor::EndHealth(Service& s) {
  if (s.health == nullptr) return;
  for (int fd : {s.health->stdout_fd(), s.health->stderr_fd(), s.health->pidfd()}) {
    loop_.Unwatch(fd);
  }
  s.health.reset();  // a health command still running is killed with its group
}

void Supervisor::HealthDone(Service& s, std::optional<ExitStatus> status) {
  s.health_seconds = absl::ToDoubleSeconds(absl::Now() - s.health_started);
  EndHealth(s);
  s.health_ok = status.has_value() && status->code == 0;
  if (s.health_ok) {
    s.health_failures = 0;
    return;
  }
  ++s.health_failures;
  std::string why =
      status ? status->ToString()
             : absl::StrCat("no exit within ", absl::FormatDuration(s.spec.health_timeout));
  absl::string_view out = s.health_output;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.remove_suffix(1);
  if (!out.empty()) absl::StrAppend(&why, ": ", out.substr(0, out.find('\n')));
  Emit(s, v1::ServiceEvent::KIND_HEALTH_FAILED,
       absl::StrCat("health command failed (", s.health_failures, " of ", s.spec.health_failures,
                    "): ", why),
       status ? status->code : -1, status ? status->signal : 0);
  if (s.health_failures >= s.spec.health_failures && s.child != nullptr &&
      s.stop_sent == absl::InfiniteFuture()) {
    s.stop_sent = absl::Now();
    s.child->SignalGroup(s.spec.stop_signal).IgnoreError();  // restarted once it exits
  }
}

void Supervisor::StopAll() {
  stopping_all_ = true;
  const absl::Time start = absl::Now();
  for (auto& s : services_) EndHealth(*s);
  for (auto& s : services_) {
    if (s->state == State::kBackoff) {
      s->state = State::kStopped;
      Emit(*s, v1::ServiceEvent::KIND_STOPPED, "stopped by the agent while waiting to restart");
    }
    if (s->child == nullptr) continue;
    s->child->SignalGroup(s->spec.stop_signal).IgnoreError();
  }
  // Exits are handled by Exited() (from the pidfd, during Poll): with stopping_all_ they are
  // stops, and the rest of each group is killed before the leader is reaped. Past its
  // stop_timeout a service is killed with its group (by ~Child).
  for (;;) {
    bool running = false;
    for (auto& s : services_) {
      if (s->child == nullptr) continue;
      if (absl::Now() - start >= s->spec.stop_timeout) {
        for (int fd : {s->child->stdout_fd(), s->child->stderr_fd(), s->child->pidfd()}) {
          loop_.Unwatch(fd);
        }
        s->child.reset();
        s->state = State::kStopped;
        Emit(*s, v1::ServiceEvent::KIND_STOPPED,
             absl::StrCat("killed: still running ", absl::FormatDuration(s->spec.stop_timeout),
                          " after the stop signal"),
             -1, SIGKILL);
      } else {
        running = true;
      }
    }
    if (!running) break;
    loop_.Poll(absl::Now() + absl::Milliseconds(20));
  }
  Publish();
}

absl::Status Supervisor::Restart(const std::string& name, const std::string& command_id) {
  for (size_t i = 0; i < services_.size(); ++i) {
    if (services_[i]->spec.name != name) continue;  // names are fixed after construction
    {
      MutexLock lock(&mu_);
      if (requests_.size() >= 1024) {
        return absl::ResourceExhaustedError("too many restart requests waiting");
      }
      requests_.emplace_back(i, command_id);
    }
    loop_.Wake();
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("no service \"", name, "\" in this agent's config"));
}

void Supervisor::TakeRequests() {
  std::vector<std::pair<size_t, std::string>> requests;
  {
    MutexLock lock(&mu_);
    requests.swap(requests_);
  }
  for (auto& [index, id] : requests) {
    Service& s = *services_[index];
    if (s.command_ids.size() < 64) s.command_ids.push_back(std::move(id));
    if (s.child == nullptr) {  // waiting, exited or stopped: start now, from the first delay
      s.backoff.Reset();
      ++s.restarts;
      StartService(s);
      continue;
    }
    s.restart_asked = true;
    if (s.stop_sent == absl::InfiniteFuture()) {  // else a health restart is under way already
      s.stop_sent = absl::Now();
      s.child->SignalGroup(s.spec.stop_signal).IgnoreError();
    }
  }
}

void Supervisor::MeasureUsage(absl::Time now) {
  absl::flat_hash_set<pid_t> groups;
  for (auto& s : services_) {
    if (s->child != nullptr) groups.insert(s->child->pid());
  }
  absl::flat_hash_map<pid_t, GroupUsage> usage = UsageByProcessGroup(groups);
  for (auto& s : services_) {
    s->usage = GroupUsage{};
    if (s->child == nullptr) {
      s->over_limit_since = absl::InfiniteFuture();
      continue;
    }
    if (auto it = usage.find(s->child->pid()); it != usage.end()) s->usage = it->second;
    if (s->spec.memory_limit == 0 || s->usage.rss_bytes <= s->spec.memory_limit) {
      s->over_limit_since = absl::InfiniteFuture();
      continue;
    }
    if (s->over_limit_since == absl::InfiniteFuture()) s->over_limit_since = now;
    if (now - s->over_limit_since < s->spec.memory_limit_for ||
        s->stop_sent != absl::InfiniteFuture()) {
      continue;
    }
    // Restarted whatever its restart policy, as for failed health commands.
    Emit(*s, v1::ServiceEvent::KIND_MEMORY_LIMIT,
         absl::StrCat("resident memory ", s->usage.rss_bytes >> 20, " MiB above memory_limit ",
                      s->spec.memory_limit >> 20, " MiB for ",
                      absl::FormatDuration(s->spec.memory_limit_for), " (", s->usage.processes,
                      " processes): restarting"));
    s->over_limit_since = absl::InfiniteFuture();
    s->stop_sent = now;
    s->child->SignalGroup(s->spec.stop_signal).IgnoreError();
  }
}

void Supervisor::Publish() {
  MutexLock lock(&mu_);
  for (size_t i = 0; i < services_.size(); ++i) {
    const Service& s = *services_[i];
    snapshot_[i] = {s.state,     s.restarts,       s.last_exit_code, !s.spec.health_argv.empty(),
                    s.health_ok, s.health_seconds, s.usage};
  }
}

void Supervisor::Run() {
  for (auto& s : services_) StartService(*s);
  Publish();
  absl::Time next_usage = absl::Now() + absl::Milliseconds(100);  // a first figure soon
  while (!stopping()) {
    TakeRequests();
    absl::Time now = absl::Now();
    if (now >= next_usage) {
      MeasureUsage(now);
      next_usage = now + options_.usage_interval;
    }
    absl::Time wake = std::min(now + absl::Seconds(1), next_usage);
    for (auto& s : services_) {
      if (s->state == State::kBackoff && s->next_start <= now) StartService(*s);
      if (s->state == State::kRunning && !s->stable) {
        if (now - s->started >= s->spec.stable_after) {
          s->stable = true;
          Emit(*s, v1::ServiceEvent::KIND_STABLE,
               absl::StrCat("up for ", absl::FormatDuration(s->spec.stable_after)));
        } else {
          wake = std::min(wake, s->started + s->spec.stable_after);
        }
      }
      if (s->state == State::kBackoff) wake = std::min(wake, s->next_start);
      if (s->state == State::kRunning && !s->spec.health_argv.empty()) {
        if (s->health != nullptr && now >= s->health_started + s->spec.health_timeout) {
          HealthDone(*s, std::nullopt);  // timed out: killed with its group
        } else if (s->health == nullptr && s->stop_sent == absl::InfiniteFuture() &&
                   now >= s->next_health) {
          StartHealth(*s);
        }
        if (s->health != nullptr) {
          wake = std::min(wake, s->health_started + s->spec.health_timeout);
        } else if (s->stop_sent == absl::InfiniteFuture()) {
          wake = std::min(wake, s->next_health);
        }
      }
      if (s->child != nullptr && s->stop_sent != absl::InfiniteFuture() && !s->kill_sent) {
        if (now >= s->stop_sent + s->spec.stop_timeout) {
          s->child->SignalGroup(SIGKILL).IgnoreError();  // once; its exit restarts it
          s->kill_sent = true;
        } else {
          wake = std::min(wake, s->stop_sent + s->spec.stop_timeout);
        }
      }
    }

    Publish();
    bool readable = false;
    if (!WaitForFd(std::max(wake - absl::Now(), absl::ZeroDuration()), loop_.fd(), &readable)) {
      break;
    }
    if (readable) loop_.Poll(absl::Now());
  }
  StopAll();
}

void Supervisor::AppendMetrics(int64_t now_ms, Collection* out) const {
  MutexLock lock(&mu_);
  for (size_t i = 0; i < services_.size(); ++i) {
    const Snapshot& s = snapshot_[i];
    const std::string& name = services_[i]->spec.name;  // fixed after construction
    out->Add("vigie_service_up", {{"service", name}}, s.state == State::kRunning ? 1 : 0, now_ms,
             MetricType::kGauge, "Whether the supervised service is running.");
    for (State st :
         {State::kStarting, State::kRunning, State::kBackoff, State::kExited, State::kStopped}) {
      out->Add("vigie_service_state", {{"service", name}, {"state", StateName(st)}},
               s.state == st ? 1 : 0, now_ms, MetricType::kGauge,
               "The supervised service's state (1 for the current one).");
    }
    out->Add("vigie_service_restarts_total", {{"service", name}}, s.restarts, now_ms,
             MetricType::kCounter, "Restarts of the supervised service since the agent started.");
    out->Add("vigie_service_last_exit_code", {{"service", name}}, s.last_exit_code, now_ms,
             MetricType::kGauge, "The service's last exit code (-1: killed by a signal).");
    if (s.state == State::kRunning) {
      const GroupUsage& u = s.usage;
      out->Add("vigie_service_memory_rss_bytes", {{"service", name}},
               static_cast<double>(u.rss_bytes), now_ms, MetricType::kGauge,
               "Resident memory of the service's process group.");
      out->Add("vigie_service_cpu_seconds_total", {{"service", name}}, u.cpu_seconds, now_ms,
               MetricType::kCounter,
               "CPU time of the service's process group (user and system, with the children "
               "they reaped) since its start.");
      out->Add("vigie_service_open_fds", {{"service", name}}, static_cast<double>(u.open_fds),
               now_ms, MetricType::kGauge, "Open file descriptors of the service's process group.");
      out->Add("vigie_service_threads", {{"service", name}}, static_cast<double>(u.threads), now_ms,
               MetricType::kGauge, "Threads of the service's process group.");
      out->Add("vigie_service_processes", {{"service", name}}, u.processes, now_ms,
               MetricType::kGauge, "Processes in the service's process group.");
    }
    if (services_[i]->spec.memory_limit > 0) {
      out->Add("vigie_service_memory_limit_bytes", {{"service", name}},
               static_cast<double>(services_[i]->spec.memory_limit), now_ms, MetricType::kGauge,
               "The service's memory_limit.");
    }
    if (s.has_health) {
      out->Add("vigie_service_health_success", {{"service", name}}, s.health_ok ? 1 : 0, now_ms,
               MetricType::kGauge, "Whether the service's last health command succeeded.");
      out->Add("vigie_service_health_duration_seconds", {{"service", name}}, s.health_seconds,
               now_ms, MetricType::kGauge, "How long the service's last health command took.");
    }
  }
}

}  // namespace vigie::agent::services
