// Process plumbing shared by the three binaries' main.cc: strict flag parsing and SIGTERM.
#ifndef VIGIE_COMMON_PROCESS_H_
#define VIGIE_COMMON_PROCESS_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace vigie {

// Exit code for a bad flag or configuration value.
inline constexpr int kExitUsage = 2;

// Parses absl flags. An unknown flag or a bad value prints one line naming it and exits with
// kExitUsage (absl's own parser would exit with 1). --help works as usual.
void ParseFlagsOrExit(int argc, char** argv, absl::string_view usage);

// Blocks SIGTERM and SIGINT in the calling thread. Call first thing in main(), before any
// thread starts, so every thread inherits the mask and WaitForTerminationSignal() gets them.
void BlockTerminationSignals();

// Raises the soft limit on open files to the hard limit (a server holding one socket per
// agent needs thousands); returns the limit now in force.
uint64_t RaiseOpenFileLimit();
// Waits for SIGTERM or SIGINT; returns the signal number.
int WaitForTerminationSignal();
// Like WaitForTerminationSignal, and also returns on SIGHUP (reload the config).
int WaitForTerminationOrReload();

// Applies a --log_level value, or exits with kExitUsage naming it.
void SetLogLevelOrExit(const std::string& level);

// Loads the YAML config at `path` into `config`, or exits with kExitUsage naming the file, the
// field and the value. An empty path gives an empty config unless `required`.
void LoadConfigOrExit(const std::string& path, bool required, google::protobuf::Message* config);

// Prints "<program>: <message>" to stderr and exits with kExitUsage.
[[noreturn]] void ExitUsage(absl::string_view message);

}  // namespace vigie

#endif  // VIGIE_COMMON_PROCESS_H_
