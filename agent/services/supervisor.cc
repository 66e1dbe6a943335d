#include "agent/services/supervisor.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/services/cgroup.h"
#include "agent/services/rotating_log.h"
#include "common/agent_message.h"
#include "common/log.h"
#include "common/secrets.h"
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
    if (s.health_interval < absl::Milliseconds(100)) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".health.interval: at least 100ms, got \"", h.interval(), "\""));
    }
    if (s.health_timeout < absl::Milliseconds(10) || s.health_timeout >= s.health_interval) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".health.timeout: at least 10ms and below interval (",
                       absl::FormatDuration(s.health_interval), "), got \"", h.timeout(), "\""));
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
    if (geteuid() != 0) {
      if (s.credentials->uid != geteuid()) {
        return absl::InvalidArgumentError(absl::StrCat(field_user, ": running as \"", c.user(),
                                                       "\" needs the agent to run as root"));
      }
      s.credentials.reset();  // already that user: nothing to change (nor the right to)
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
  if (s.stable_after < absl::Milliseconds(100)) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".stable_after: at least 100ms, got \"", c.stable_after(), "\""));
  }
  if (s.stop_timeout < absl::Milliseconds(10) || s.stop_timeout > absl::Hours(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".stop_timeout: 10ms to 1h, got \"", c.stop_timeout(), "\""));
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
  if (s.log_directory[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".log.directory: \"", s.log_directory, "\" must be an absolute path"));
  }
  if (s.log_max_bytes < 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".log.max_bytes: at least 4096, got ", s.log_max_bytes));
  }
  if (c.log().keep() > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".log.keep: at most 100, got ", c.log().keep()));
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

Supervisor::Supervisor(SupervisorOptions options)
    : Runnable("supervisor"), options_(std::move(options)) {
  for (ServiceSpec& s : options_.services) {
    services_.push_back(std::make_unique<Service>(std::move(s)));
  }
  options_.services.clear();
  // One prefix per agent (its state directory), so two agents' services of one name never
  // share a group.
  cgroup_prefix_ =
      absl::StrCat(options_.cgroup_root, "/",
                   absl::BytesToHexString(Sha256(options_.state_directory)).substr(0, 8), ".");
  Publish();
}

Supervisor::~Supervisor() { Stop(); }

std::string Supervisor::CgroupDir(const std::string& name) const {
  return absl::StrCat(cgroup_prefix_, name);
}

std::string Supervisor::RecordPath(const std::string& name) const {
  return absl::StrCat(options_.state_directory, "/", name, ".service");
}

std::string Supervisor::ExitPath(const std::string& name) const {
  return absl::StrCat(options_.state_directory, "/", name, ".exit");
}

std::vector<std::string> Supervisor::ShimArgv(const ServiceSpec& s) const {
  std::vector<std::string> argv = {options_.shim_path,
                                   absl::StrCat("--log=", s.log_directory, "/", s.name, ".log"),
                                   absl::StrCat("--max_bytes=", s.log_max_bytes),
                                   absl::StrCat("--keep=", s.log_keep),
                                   absl::StrCat("--exit_file=", ExitPath(s.name)),
                                   absl::StrCat("--cwd=", s.working_directory)};
  if (s.credentials) {
    argv.push_back(absl::StrCat("--uid=", s.credentials->uid));
    argv.push_back(absl::StrCat("--gid=", s.credentials->gid));
    argv.push_back(absl::StrCat("--groups=", absl::StrJoin(s.credentials->groups, ",")));
  }
  if (!options_.cgroup_root.empty()) {
    argv.push_back(absl::StrCat("--cgroup=", CgroupDir(s.name)));
  }
  argv.push_back("--");
  argv.insert(argv.end(), s.argv.begin(), s.argv.end());
  return argv;
}

absl::Status Supervisor::PrepareLog(const ServiceSpec& spec) {
  std::error_code ec;
  std::filesystem::create_directories(spec.log_directory, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat("service ", spec.name, ": log.directory ",
                                                      spec.log_directory, ": ", ec.message()));
  }
  // The shim writes it; opened here once so a directory we cannot write is reported now.
  RotatingLog log(absl::StrCat(spec.log_directory, "/", spec.name, ".log"), spec.log_max_bytes,
                  spec.log_keep);
  if (absl::Status st = log.Open(); !st.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("service ", spec.name, ": log.directory: ", st.message()));
  }
  return absl::OkStatus();
}

absl::Status Supervisor::MakeStateDirectory() {
  std::error_code ec;
  std::filesystem::create_directories(options_.state_directory, ec);
  if (ec || chmod(options_.state_directory.c_str(), 0700) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("service_state_directory ",
                                                      options_.state_directory, ": ",
                                                      ec ? ec.message() : std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status Supervisor::Init() {
  VIGIE_RETURN_IF_ERROR(loop_.Init());
  if (!services_.empty() &&
      (options_.shim_path.empty() || access(options_.shim_path.c_str(), X_OK) != 0)) {
    return absl::FailedPreconditionError(absl::StrCat("the service shim \"", options_.shim_path,
                                                      "\" cannot be run: ", std::strerror(errno),
                                                      " (it is installed beside vigie-agent)"));
  }
  std::error_code ec;
  if (!services_.empty()) VIGIE_RETURN_IF_ERROR(MakeStateDirectory());
  for (auto& s : services_) {
    // Not fatal for the others: its shim reports the same error at each start (retried).
    if (absl::Status st = PrepareLog(s->spec); !st.ok()) {
      log::Error("service log", {{"service", s->spec.name}, {"error", st}});
    }
  }
  for (auto& s : services_) Adopt(*s);
  // Records of services no longer configured: stopped once Run starts.
  AdoptLeftovers(/*configured_too=*/false);
  return absl::OkStatus();
}

void Supervisor::AdoptLeftovers(bool configured_too) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(options_.state_directory, ec)) {
    const std::string file = entry.path().filename().string();
    if (!absl::EndsWith(file, ".service")) continue;
    const std::string name = file.substr(0, file.size() - 8);
    if (!ValidateConfigName("name", name).ok()) continue;
    ServiceSpec spec;  // TERM and 10s unless configured
    spec.name = name;
    auto configured = std::find_if(services_.begin(), services_.end(),
                                   [&name](const auto& s) { return s->spec.name == name; });
    if (configured != services_.end()) {
      if (!configured_too) continue;
      spec = (*configured)->spec;
    }
    auto gone = std::make_unique<Service>(std::move(spec));
    gone->removed = true;  // stopped, never restarted
    Adopt(*gone);
    if (gone->running()) removed_.push_back(std::move(gone));
  }
}

namespace {

// What the supervisor keeps about a running service for the next agent.
struct Record {
  pid_t shim_pid = 0;
  uint64_t shim_start = 0;
  pid_t pid = 0;
  uint64_t pid_start = 0;
  int64_t started_ms = 0;
  std::string fingerprint;
};

std::optional<Record> ReadRecord(const std::string& path) {
  std::ifstream in(path);
  Record r;
  if (!(in >> r.shim_pid >> r.shim_start >> r.pid >> r.pid_start >> r.started_ms >>
        r.fingerprint)) {
    return std::nullopt;
  }
  return r;
}

void WriteRecord(const std::string& path, const Record& r) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << r.shim_pid << " " << r.shim_start << " " << r.pid << " " << r.pid_start << " "
        << r.started_ms << " " << r.fingerprint << "\n";
    if (!out) {
      log::Warn("cannot write a service record", {{"path", tmp}});
      return;
    }
  }
  std::rename(tmp.c_str(), path.c_str());
}

// "<exit code> <signal>" as the shim wrote it.
std::optional<ExitStatus> ReadExitFile(const std::string& path) {
  std::ifstream in(path);
  ExitStatus st;
  if (!(in >> st.code >> st.signal)) return std::nullopt;
  return st;
}

// What decides whether a running service is the one configured: its shim's command line (the
// program, arguments, user, directory, log settings) and environment.
std::string Fingerprint(const std::vector<std::string>& shim_argv, const ServiceSpec& s) {
  std::string all;
  for (size_t i = 1; i < shim_argv.size(); ++i) absl::StrAppend(&all, shim_argv[i], "\n");
  for (const std::string& e : s.env) absl::StrAppend(&all, e, "\n");
  return absl::BytesToHexString(Sha256(all));
}

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// An open pidfd of `pid` if it still is the process that started at `start`, else -1.
int OpenIfSame(pid_t pid, uint64_t start) {
  if (pid <= 0 || start == 0) return -1;
  const int fd = PidfdOpen(pid);
  // Checked after opening: a pid reused between the two would show another start time.
  if (fd >= 0 && ProcessStartTime(pid) != start) {
    close(fd);
    return -1;
  }
  return fd;
}

// The first child of `pid` (a shim has one: its service), or 0.
pid_t ChildOf(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/task/", pid, "/children"));
  int64_t child = 0;
  return (in >> child) ? static_cast<pid_t>(child) : 0;
}

}  // namespace

void Supervisor::Adopt(Service& s) {
  std::optional<Record> r = ReadRecord(RecordPath(s.spec.name));
  if (!r) return;
  const int fd = OpenIfSame(r->shim_pid, r->shim_start);
  if (fd >= 0) {
    s.shim_pidfd = fd;
    s.shim_pid = r->shim_pid;
    s.pid = r->pid != 0 ? r->pid : ChildOf(r->shim_pid);  // recorded before the shim said
    s.adopted = true;
    s.fingerprint = r->fingerprint;
    if (!options_.cgroup_root.empty()) s.cgroup = CgroupDir(s.spec.name);
    s.state = State::kRunning;
    s.started = absl::FromUnixMillis(r->started_ms);
    s.stable = false;  // the loop sends KIND_STABLE at once if it has run long enough
    s.health_failures = 0;
    s.health_unknown = true;  // the first success says so (an alert may wait for it)
    s.replace = !s.removed && r->fingerprint != Fingerprint(ShimArgv(s.spec), s.spec);
    return;
  }
  // Gone while no agent watched: how it ended, if its shim could say, is reported at Run.
  std::optional<ExitStatus> st = ReadExitFile(ExitPath(s.spec.name));
  if (!st) {
    // Its shim was killed, but the service may run on (under init): stop it, never run two.
    if (!options_.cgroup_root.empty() && SignalCgroup(CgroupDir(s.spec.name), SIGKILL, 0) > 0) {
      s.last_exit_code = -1;
      s.shim_line = "its shim was killed while no agent was running: the service was killed";
    }
    if (const int orphan = OpenIfSame(r->pid, r->pid_start); orphan >= 0) {
      kill(-r->pid, SIGKILL);
      pollfd p{orphan, POLLIN, 0};
      poll(&p, 1, 2000);
      close(orphan);
      s.last_exit_code = -1;
      s.shim_line = "its shim was killed while no agent was running: the service was killed";
    }
  }
  if (s.shim_line.empty()) {
    s.last_exit_code = st ? st->code : -1;
    s.shim_line = st ? absl::StrCat(st->ToString(), " while no agent was running")
                     : "ended while no agent was running (its exit status is unknown)";
  }
  s.state = State::kExited;
  s.adopted = true;  // reported, then started at once
  unlink(RecordPath(s.spec.name).c_str());
  unlink(ExitPath(s.spec.name).c_str());
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
                      int exit_code, int signal, int pid, std::vector<std::string> command_ids,
                      uint32_t count) {
  v1::ServiceEvent e;
  e.set_service(s.spec.name);
  e.set_kind(kind);
  e.set_exit_code(exit_code);
  e.set_signal(signal);
  e.set_pid(pid);
  e.set_message(SafeText(message, 1024));
  e.set_timestamp_ms(absl::ToUnixMillis(absl::Now()));
  for (std::string& id : command_ids) e.add_command_ids(std::move(id));
  e.set_count(count);
  log::Info("service", {{"service", s.spec.name},
                        {"event", v1::ServiceEvent::Kind_Name(kind)},
                        {"message", e.message()}});
  if (options_.on_event) options_.on_event(std::move(e));
}

void Supervisor::SignalService(Service& s, int signal) {
  // The service's pid names its group while its shim (its parent) has not reaped it; until
  // the shim reports the pid, the signal is sent when it does (ReadShimLine). With a control
  // group, what left the process group gets it too (never the shim).
  if (s.pid <= 0 && s.adopted && s.shim_pid > 0) s.pid = ChildOf(s.shim_pid);  // not forked yet
  if (s.pid <= 0) {
    if (!s.cgroup.empty() && s.adopted) SignalCgroup(s.cgroup, signal, s.shim_pid);
    return;
  }
  kill(-s.pid, signal);
  if (!s.cgroup.empty()) SignalCgroup(s.cgroup, signal, s.shim_pid);
}

void Supervisor::StartFailed(Service& s, const std::string& why) {
  // Never a dead end: a missing program is retried like an exit.
  Emit(s, v1::ServiceEvent::KIND_EXITED, why, -1, 0, 0, std::move(s.command_ids));
  s.command_ids.clear();
  s.last_exit_code = -1;
  if (stopping_all_ || s.removed) {
    s.state = State::kStopped;
    return;
  }
  ScheduleRestart(s);
}

void Supervisor::ScheduleRestart(Service& s) {
  const absl::Duration delay = s.backoff.Next();
  s.state = State::kBackoff;
  s.next_start = absl::Now() + delay;
  ++s.restarts;
  ++s.restarts_in_a_row;
  Emit(s, v1::ServiceEvent::KIND_RESTARTING,
       absl::StrCat("starting again in ",
                    absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(1))), " (restart ",
                    s.restarts, ", ", s.restarts_in_a_row, " in a row)"),
       0, 0, 0, {}, static_cast<uint32_t>(s.restarts_in_a_row));
}

void Supervisor::StartService(Service& s) {
  unlink(ExitPath(s.spec.name).c_str());
  s.cgroup.clear();
  if (!options_.cgroup_root.empty()) {
    const std::string dir = CgroupDir(s.spec.name);
    if (absl::Status st = MakeCgroup(dir); st.ok()) {
      s.cgroup = dir;
    } else {
      log::Warn("service without its cgroup", {{"service", s.spec.name}, {"error", st}});
    }
  }
  s.fingerprint = Fingerprint(ShimArgv(s.spec), s.spec);
  s.restart_asked = false;
  s.replace = false;
  SpawnOptions o;
  o.argv = ShimArgv(s.spec);
  o.env = s.spec.env;  // the shim passes it on
  o.working_directory = "/";
  absl::StatusOr<std::unique_ptr<Child>> shim = Child::Spawn(o);
  s.started = absl::Now();
  s.stable = false;
  s.adopted = false;
  if (!shim.ok()) {
    StartFailed(s, std::string(shim.status().message()));
    return;
  }
  s.shim = std::move(*shim);
  s.shim_pidfd = s.shim->pidfd();
  s.shim_pid = s.shim->pid();
  // Recorded at once (the service's pid follows): an agent gone before the shim reports it
  // leaves a record the next one adopts, never an untracked service.
  WriteRecord(RecordPath(s.spec.name), {s.shim_pid, ProcessStartTime(s.shim_pid), 0, 0,
                                        absl::ToUnixMillis(s.started), s.fingerprint});
  s.shim_out = s.shim->stdout_fd();
  s.shim_line.clear();
  s.pid = 0;
  s.state = State::kStarting;
  s.stop_sent = absl::InfiniteFuture();
  s.kill_sent = false;
  Service* sp = &s;
  loop_.Watch(s.shim_out, true, false, [this, sp](bool, bool) { ReadShimLine(*sp); });
  loop_.Watch(s.shim_pidfd, true, false, [this, sp](bool, bool) { ShimExited(*sp); });
}

void Supervisor::ReadShimLine(Service& s) {
  if (s.shim_out < 0) return;
  char buf[512];
  bool eof = false;
  for (;;) {
    const ssize_t n = read(s.shim_out, buf, sizeof(buf));
    if (n > 0 && s.shim_line.size() < 4096) s.shim_line.append(buf, static_cast<size_t>(n));
    if (n > 0) continue;
    eof = n == 0 || (errno != EAGAIN && errno != EINTR);
    break;
  }
  const size_t nl = s.shim_line.find('\n');
  if (nl == std::string::npos && !eof) return;
  loop_.Unwatch(s.shim_out);
  s.shim_out = -1;  // the Child closes it
  const std::string line = s.shim_line.substr(0, nl);
  std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
  int64_t pid = 0;
  uint64_t start = 0;
  if (f.size() != 3 || f[0] != "pid" || !absl::SimpleAtoi(f[1], &pid) ||
      !absl::SimpleAtoi(f[2], &start) || pid <= 0) {
    return;  // an error line: the shim exits, and ShimExited reports it
  }
  s.pid = static_cast<pid_t>(pid);
  s.state = State::kRunning;
  s.health_failures = 0;
  s.health_ok = true;
  s.next_health = absl::Now() + s.spec.health_interval;
  WriteRecord(RecordPath(s.spec.name), {s.shim_pid, ProcessStartTime(s.shim_pid), s.pid, start,
                                        absl::ToUnixMillis(s.started), s.fingerprint});
  Emit(s, v1::ServiceEvent::KIND_STARTED, absl::StrCat("pid ", s.pid), 0, 0, s.pid,
       std::move(s.command_ids));
  s.command_ids.clear();
  // A stop asked while the shim was starting it (SIGKILL if its stop_timeout has passed).
  if (stopping_all_ || s.stop_sent != absl::InfiniteFuture()) {
    const bool late =
        s.stop_sent != absl::InfiniteFuture() && absl::Now() >= s.stop_sent + s.spec.stop_timeout;
    SignalService(s, late ? SIGKILL : s.spec.stop_signal);
    s.kill_sent = late;
  }
}

void Supervisor::ShimExited(Service& s) {
  if (s.pid == 0) ReadShimLine(s);                      // its error line
  if (s.shim != nullptr && !s.shim->TryReap()) return;  // not yet
  loop_.Unwatch(s.shim_pidfd);
  if (s.shim_out >= 0) loop_.Unwatch(s.shim_out);
  if (s.shim != nullptr) {
    s.shim.reset();
  } else {
    close(s.shim_pidfd);  // adopted: its parent (init) reaps it
  }
  s.shim_pidfd = -1;
  s.shim_out = -1;
  s.shim_pid = 0;
  if (!s.cgroup.empty()) rmdir(s.cgroup.c_str());  // empty now; the next start makes it again
  EndHealth(s);
  unlink(RecordPath(s.spec.name).c_str());
  if (s.pid == 0) {
    absl::string_view why = s.shim_line;
    why = why.substr(0, why.find('\n'));
    if (!absl::ConsumePrefix(&why, "error ")) why = "the service shim ended before the service";
    StartFailed(s, std::string(why));
    return;
  }
  std::optional<ExitStatus> st = ReadExitFile(ExitPath(s.spec.name));
  unlink(ExitPath(s.spec.name).c_str());
  std::string note;
  if (!st) {
    // The shim was killed: whatever is left of the service goes too.
    kill(-s.pid, SIGKILL);
    if (!s.cgroup.empty()) SignalCgroup(s.cgroup, SIGKILL, 0);
    st = ExitStatus{-1, SIGKILL};
    note = " (its shim was killed)";
  }
  s.pid = 0;
  Exited(s, *st, note);
}

void Supervisor::Exited(Service& s, const ExitStatus& status, const std::string& note) {
  const bool health_restart = s.stop_sent != absl::InfiniteFuture();
  s.stop_sent = absl::InfiniteFuture();
  const absl::Duration ran = absl::Now() - s.started;
  s.last_exit_code = status.code;
  if (stopping_all_ || s.removed) {  // the exit StopAll asked for, or a service removed
    s.state = State::kStopped;
    Emit(s, v1::ServiceEvent::KIND_STOPPED,
         s.kill_sent && status.signal == SIGKILL
             ? absl::StrCat("killed: still running ", absl::FormatDuration(s.spec.stop_timeout),
                            " after the stop signal")
             : absl::StrCat(s.removed ? "stopped: removed from the agent's config: "
                                      : "stopped by the agent: ",
                            status.ToString(), note),
         status.code, status.signal);
    return;
  }
  if (s.restart_asked || s.replace) {  // Restart() or a new definition: a stop, then a start
    Emit(s, v1::ServiceEvent::KIND_STOPPED,
         absl::StrCat(s.replace ? "stopped: its definition changed: "
                                : "stopped for a restart asked through the Admin API: ",
                      status.ToString(), note),
         status.code, status.signal);
    s.restart_asked = false;
    s.replace = false;
    s.state = State::kStopped;
    ++s.restarts;
    StartService(s);
    return;
  }
  Emit(s, v1::ServiceEvent::KIND_EXITED,
       absl::StrCat(status.ToString(), " after ",
                    absl::FormatDuration(absl::Trunc(ran, absl::Milliseconds(1))), note),
       status.code, status.signal);
  const bool failed = status.code != 0;
  if (!health_restart && (s.spec.restart == ServiceSpec::Restart::kNever ||
                          (s.spec.restart == ServiceSpec::Restart::kOnFailure && !failed))) {
    s.state = State::kExited;
    return;
  }
  if (ran >= s.spec.stable_after) s.backoff.Reset();
  ScheduleRestart(s);
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
    if (s.health_failures > 0 || s.health_unknown) {
      s.health_unknown = false;
      Emit(s, v1::ServiceEvent::KIND_HEALTH_OK,
           absl::StrCat("health command succeeds again after ", s.health_failures, " failures"));
    }
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
       status ? status->code : -1, status ? status->signal : 0, 0, {},
       static_cast<uint32_t>(s.health_failures));
  if (s.health_failures >= s.spec.health_failures && s.running() &&
      s.stop_sent == absl::InfiniteFuture()) {
    s.stop_sent = absl::Now();
    SignalService(s, s.spec.stop_signal);  // restarted once it exits
  }
}

void Supervisor::StopAll() {
  stopping_all_ = true;
  const absl::Time start = absl::Now();
  std::vector<Service*> all;
  for (auto& s : services_) all.push_back(s.get());
  for (auto& s : removed_) all.push_back(s.get());
  for (Service* s : all) {
    EndHealth(*s);
    if (s->state == State::kBackoff) {
      s->state = State::kStopped;
      Emit(*s, v1::ServiceEvent::KIND_STOPPED, "stopped by the agent while waiting to restart");
    }
    s->kill_sent = false;
    if (s->running()) SignalService(*s, s->spec.stop_signal);
  }
  // Exits come through ShimExited() (from the pidfds, during Poll): with stopping_all_ they
  // are stops. Past its stop_timeout a service's group gets SIGKILL; a shim that has still not
  // ended 2 seconds later is killed and forgotten.
  for (;;) {
    bool running = false;
    const absl::Duration waited = absl::Now() - start;
    for (Service* s : all) {
      if (!s->running()) continue;
      if (waited >= s->spec.stop_timeout + absl::Seconds(2)) {
        // Its record stays, so the next agent (or stop-services) finds what may be left.
        if (s->pid > 0) kill(-s->pid, SIGKILL);
        loop_.Unwatch(s->shim_pidfd);
        if (s->shim_out >= 0) loop_.Unwatch(s->shim_out);
        if (s->shim == nullptr) {
          syscall(SYS_pidfd_send_signal, s->shim_pidfd, SIGKILL, nullptr, 0);
          close(s->shim_pidfd);
        }
        s->shim.reset();  // SIGKILL to the shim
        s->shim_pidfd = -1;
        s->state = State::kStopped;
        Emit(*s, v1::ServiceEvent::KIND_STOPPED,
             "its shim did not report the end within 2s of SIGKILL", -1, SIGKILL);
        continue;
      }
      if (waited >= s->spec.stop_timeout && !s->kill_sent && s->pid > 0) {
        SignalService(*s, SIGKILL);
        s->kill_sent = true;
      }
      running = true;
    }
    if (!running) break;
    loop_.Poll(absl::Now() + absl::Milliseconds(20));
  }
  Publish();
}

void Supervisor::ReleaseAll() {
  size_t left = 0;
  for (auto* list : {&services_, &removed_}) {
    for (auto& s : *list) {
      EndHealth(*s);
      if (!s->running()) continue;
      loop_.Unwatch(s->shim_pidfd);
      if (s->shim_out >= 0) loop_.Unwatch(s->shim_out);
      if (s->shim != nullptr) {
        s->shim->Release();  // no signal: it keeps the service running
        s->shim.reset();
      } else {
        close(s->shim_pidfd);
      }
      s->shim_pidfd = -1;
      ++left;
    }
  }
  if (left > 0) {
    log::Info("services left running for the next agent (vigie-agent stop-services stops them)",
              {{"services", left}, {"state_directory", options_.state_directory}});
  }
}

absl::Status Supervisor::StopServicesLeftRunning(const SupervisorOptions& options) {
  // The supervisor's own adoption finds them; its StopAll stops them without restarting.
  SupervisorOptions o = options;
  o.stop_on_exit = true;
  o.on_event = nullptr;
  Supervisor sup(std::move(o));
  VIGIE_RETURN_IF_ERROR(sup.loop_.Init());
  sup.AdoptLeftovers(/*configured_too=*/true);
  sup.services_.clear();
  for (auto& s : sup.removed_) {
    Service* sp = s.get();
    sup.loop_.Watch(s->shim_pidfd, true, false, [&sup, sp](bool, bool) { sup.ShimExited(*sp); });
    std::printf("stopping %s (pid %d)\n", s->spec.name.c_str(), static_cast<int>(s->pid));
  }
  sup.StopAll();
  int left = 0;
  for (auto& s : sup.removed_) {
    std::printf("%s: %s\n", s->spec.name.c_str(), s->running() ? "still running" : "stopped");
    left += s->running() ? 1 : 0;
  }
  if (left > 0) return absl::DeadlineExceededError(absl::StrCat(left, " services still run"));
  return absl::OkStatus();
}

absl::Status Supervisor::Restart(const std::string& name, const std::string& command_id) {
  MutexLock lock(&mu_);
  // A command sent again (its answer was late, and the control plane re-sent it) is done once.
  if (!command_id.empty() &&
      std::find(handled_.begin(), handled_.end(), command_id) != handled_.end()) {
    return absl::OkStatus();
  }
  for (const Snapshot& snap : snapshot_) {
    if (snap.name != name) continue;
    if (requests_.size() >= 1024) {
      return absl::ResourceExhaustedError("too many restart requests waiting");
    }
    requests_.emplace_back(name, command_id);
    if (!command_id.empty()) {
      handled_.push_back(command_id);
      if (handled_.size() > 256) handled_.pop_front();
    }
    loop_.Wake();
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("no service \"", name, "\" in this agent's config"));
}

void Supervisor::Reload(std::vector<ServiceSpec> services) {
  {
    MutexLock lock(&mu_);
    reload_ = std::move(services);
  }
  loop_.Wake();
}

void Supervisor::ApplyReload(std::vector<ServiceSpec> specs) {
  if (!specs.empty()) {
    if (absl::Status st = MakeStateDirectory(); !st.ok()) {
      log::Error("reload: services not changed", {{"error", st}});
      return;
    }
  }
  std::set<std::string> kept;
  std::vector<std::unique_ptr<Service>> next;
  for (ServiceSpec& spec : specs) {
    kept.insert(spec.name);
    if (absl::Status st = PrepareLog(spec); !st.ok()) {
      log::Error("reload: service not changed", {{"service", spec.name}, {"error", st}});
      for (auto& s : services_) {
        if (s && s->spec.name == spec.name) next.push_back(std::move(s));
      }
      continue;
    }
    std::unique_ptr<Service> old;
    for (auto& s : services_) {
      if (s && s->spec.name == spec.name) old = std::move(s);
    }
    // Removed earlier and still stopping: it is this service again (one log, one record).
    for (auto& s : removed_) {
      if (old == nullptr && s && s->spec.name == spec.name) {
        old = std::move(s);
        old->removed = false;
        old->replace = old->running();  // its stop is under way: then a start, not a crash
      }
    }
    removed_.erase(std::remove(removed_.begin(), removed_.end(), nullptr), removed_.end());
    if (old == nullptr) {  // new
      auto s = std::make_unique<Service>(std::move(spec));
      log::Info("reload: service added", {{"service", s->spec.name}});
      StartService(*s);
      next.push_back(std::move(s));
      continue;
    }
    const bool same =
        Fingerprint(ShimArgv(old->spec), old->spec) == Fingerprint(ShimArgv(spec), spec);
    const bool new_health = old->spec.health_argv != spec.health_argv ||
                            old->spec.health_interval != spec.health_interval;
    if (new_health) EndHealth(*old);
    old->backoff = Backoff(spec.backoff);
    old->spec = std::move(spec);
    if (new_health) old->next_health = absl::Now() + old->spec.health_interval;
    if (!same) {
      log::Info("reload: service changed", {{"service", old->spec.name}});
      if (old->running()) {
        old->replace = true;
        if (old->stop_sent == absl::InfiniteFuture()) {
          old->stop_sent = absl::Now();
          SignalService(*old, old->spec.stop_signal);
        }
      } else if (old->state != State::kBackoff) {
        StartService(*old);  // exited or stopped: the new definition runs
      }
    }
    next.push_back(std::move(old));
  }
  for (auto& s : services_) {
    if (s == nullptr) continue;
    log::Info("reload: service removed", {{"service", s->spec.name}});
    EndHealth(*s);
    if (s->running()) {  // stopped, then forgotten
      s->removed = true;
      s->stop_sent = absl::Now();
      s->kill_sent = false;
      SignalService(*s, s->spec.stop_signal);
      removed_.push_back(std::move(s));
    } else {
      s->state = State::kStopped;
      Emit(*s, v1::ServiceEvent::KIND_STOPPED, "removed from the agent's config");
    }
  }
  services_ = std::move(next);
  Publish();
}

void Supervisor::TakeRequests() {
  std::vector<std::pair<std::string, std::string>> requests;
  std::optional<std::vector<ServiceSpec>> reload;
  {
    MutexLock lock(&mu_);
    requests.swap(requests_);
    reload.swap(reload_);
  }
  if (reload) ApplyReload(std::move(*reload));
  for (auto& [name, id] : requests) {
    auto it = std::find_if(services_.begin(), services_.end(),
                           [&name = name](const auto& s) { return s->spec.name == name; });
    if (it == services_.end()) continue;  // removed meanwhile
    Service& s = **it;
    if (s.command_ids.size() < 64) s.command_ids.push_back(std::move(id));
    if (!s.running()) {  // waiting, exited or stopped: start now, from the first delay
      s.backoff.Reset();
      ++s.restarts;
      StartService(s);
      continue;
    }
    s.restart_asked = true;
    if (s.stop_sent == absl::InfiniteFuture()) {  // else a health restart is under way already
      s.stop_sent = absl::Now();
      SignalService(s, s.spec.stop_signal);
    }
  }
}

void Supervisor::MeasureUsage(absl::Time now) {
  // From each service's cgroup (the shim excepted) where it has members; the others from one
  // pass over /proc by process group, made only when some service needs it.
  absl::flat_hash_set<pid_t> groups;
  for (auto& s : services_) {
    s->usage = GroupUsage{};
    if (s->pid <= 0) continue;
    if (!s->cgroup.empty()) {
      std::vector<pid_t> members = CgroupPids(s->cgroup);
      members.erase(std::remove(members.begin(), members.end(), s->shim_pid), members.end());
      if (!members.empty()) s->usage = UsageOfPids(members);
    }
    if (s->usage.processes == 0) groups.insert(s->pid);  // no cgroup, or the shim not in it
  }
  absl::flat_hash_map<pid_t, GroupUsage> by_group = UsageByProcessGroup(groups);
  for (auto& s : services_) {
    if (s->pid <= 0) {
      s->over_limit_since = absl::InfiniteFuture();
      continue;
    }
    if (auto it = by_group.find(s->pid); it != by_group.end()) s->usage = it->second;
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
    SignalService(*s, s->spec.stop_signal);
  }
}

void Supervisor::Publish() {
  MutexLock lock(&mu_);
  snapshot_.resize(services_.size());
  for (size_t i = 0; i < services_.size(); ++i) {
    const Service& s = *services_[i];
    snapshot_[i] = {s.spec.name, s.spec.memory_limit, s.state,
                    s.restarts,  s.last_exit_code,    !s.spec.health_argv.empty(),
                    s.health_ok, s.health_seconds,    s.usage};
  }
}

void Supervisor::Run() {
  for (auto& s : services_) {
    Service* sp = s.get();
    if (s->running()) {  // adopted from an earlier agent
      loop_.Watch(s->shim_pidfd, true, false, [this, sp](bool, bool) { ShimExited(*sp); });
      Emit(*s, v1::ServiceEvent::KIND_ADOPTED,
           absl::StrCat("adopted pid ", s->pid, ", running since ",
                        absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", s->started, absl::UTCTimeZone()),
                        s->replace ? "; its definition changed: restarting it" : ""),
           0, 0, s->pid);
      if (s->replace) {
        s->stop_sent = absl::Now();
        SignalService(*s, s->spec.stop_signal);
      }
    } else if (s->adopted) {  // it ended while no agent ran
      Emit(*s, v1::ServiceEvent::KIND_EXITED, s->shim_line, s->last_exit_code);
      const bool again =
          s->spec.restart == ServiceSpec::Restart::kAlways ||
          (s->spec.restart == ServiceSpec::Restart::kOnFailure && s->last_exit_code != 0);
      if (again) StartService(*s);
    } else {
      StartService(*s);
    }
  }
  for (auto& s : removed_) {
    Service* sp = s.get();
    loop_.Watch(s->shim_pidfd, true, false, [this, sp](bool, bool) { ShimExited(*sp); });
    log::Info("stopping a service removed from the config",
              {{"service", s->spec.name}, {"pid", s->pid}});
    s->stop_sent = absl::Now();
    SignalService(*s, s->spec.stop_signal);
  }
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
          s->restarts_in_a_row = 0;
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
      if (s->running() && s->stop_sent != absl::InfiniteFuture() && !s->kill_sent) {
        if (now >= s->stop_sent + s->spec.stop_timeout && s->pid > 0) {
          SignalService(*s, SIGKILL);  // once; its exit restarts it
          s->kill_sent = true;
        } else {
          wake = std::min(wake, s->stop_sent + s->spec.stop_timeout);
        }
      }
    }

    removed_.erase(std::remove_if(removed_.begin(), removed_.end(),
                                  [](const auto& s) { return !s->running(); }),
                   removed_.end());
    for (auto& s : removed_) {
      if (s->running() && !s->kill_sent && s->pid > 0 &&
          now >= s->stop_sent + s->spec.stop_timeout) {
        SignalService(*s, SIGKILL);
        s->kill_sent = true;
      }
    }
    Publish();
    bool readable = false;
    if (!WaitForFd(std::max(wake - absl::Now(), absl::ZeroDuration()), loop_.fd(), &readable)) {
      break;
    }
    if (readable) loop_.Poll(absl::Now());
  }
  if (options_.stop_on_exit) {
    StopAll();
  } else {
    ReleaseAll();
  }
}

void Supervisor::AppendMetrics(int64_t now_ms, Collection* out) const {
  MutexLock lock(&mu_);
  for (const Snapshot& s : snapshot_) {
    const std::string& name = s.name;
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
    if (s.memory_limit > 0) {
      out->Add("vigie_service_memory_limit_bytes", {{"service", name}},
               static_cast<double>(s.memory_limit), now_ms, MetricType::kGauge,
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
