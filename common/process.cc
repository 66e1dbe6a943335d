#include "common/process.h"

#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/yaml_config.h"

namespace vigie {
namespace {
std::string g_program = "vigie";
}

[[noreturn]] void ExitUsage(absl::string_view message) {
  std::fprintf(stderr, "%s: %.*s\n", g_program.c_str(), static_cast<int>(message.size()),
               message.data());
  std::exit(kExitUsage);
}

void ParseFlagsOrExit(int argc, char** argv, absl::string_view usage) {
  g_program = argv[0];
  if (size_t slash = g_program.rfind('/'); slash != std::string::npos) {
    g_program = g_program.substr(slash + 1);
  }
  absl::SetProgramUsageMessage(usage);
  // Check every flag ourselves first so mistakes exit with kExitUsage and a clear message.
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::StartsWith(arg, "-")) {
      ExitUsage(absl::StrCat("unexpected argument \"", arg, "\" (flags look like --name=value)"));
    }
    absl::string_view body = arg.substr(absl::StartsWith(arg, "--") ? 2 : 1);
    absl::string_view name = body, value;
    bool has_value = false;
    if (size_t eq = body.find('='); eq != absl::string_view::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    if (name == "help" || name == "helpfull" || name == "helpshort" || name == "version" ||
        name == "helppackage" || name == "helpon" || name == "helpmatch" || name == "flagfile" ||
        name == "fromenv" || name == "tryfromenv" || name == "undefok") {
      if (!has_value && (name == "flagfile" || name == "helpon" || name == "helpmatch")) ++i;
      continue;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    bool negated = false;
    if (flag == nullptr && absl::StartsWith(name, "no")) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      negated = flag != nullptr && flag->IsOfType<bool>() && !has_value;
      if (!negated) flag = nullptr;
    }
    if (flag == nullptr) ExitUsage(absl::StrCat("unknown flag --", name, " (see --help)"));
    if (negated) continue;
    if (!has_value) {
      if (flag->IsOfType<bool>()) continue;
      if (i + 1 >= argc) ExitUsage(absl::StrCat("flag --", name, " needs a value"));
      value = argv[++i];
    }
    std::string error;
    std::string copy(value);
    if (!flag->ParseFrom(copy, &error)) {
      ExitUsage(absl::StrCat("invalid value \"", value, "\" for flag --", name, ": ", error));
    }
  }
  absl::ParseCommandLine(argc, argv);
}

void SetLogLevelOrExit(const std::string& level) {
  if (absl::Status s = log::SetLevel(level); !s.ok()) {
    ExitUsage(absl::StrCat("--log_level: ", s.message()));
  }
}

void LoadConfigOrExit(const std::string& path, bool required, google::protobuf::Message* config) {
  if (path.empty()) {
    if (required) ExitUsage("--config: required");
    return;
  }
  if (absl::Status s = LoadYamlConfigFile(path, config); !s.ok()) ExitUsage(s.message());
}

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  // SIGHUP is taken by binaries that reload (WaitForTerminationOrReload); elsewhere it is
  // ignored instead of ending the process.
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A write to a closed socket must return EPIPE, not kill the process.
  signal(SIGPIPE, SIG_IGN);
  // Inherited as ignored, SIGCHLD would make the kernel reap children itself: the spawner's
  // waitid on a pidfd would never see an exit status (common/spawn.h).
  signal(SIGCHLD, SIG_DFL);
}

int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

int WaitForTerminationOrReload() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

uint64_t RaiseOpenFileLimit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

}  // namespace vigie
