// A control group per supervised service, where the agent may make one: the service's shim
// joins it before it starts the service, so every process the service starts is in it, even
// one that leaves its process group (setsid, a double-forking daemon). A stop then reaches
// all of them, and the usage figures count all of them. One hierarchy is used: cgroup v2's
// unified one, or v1's "pids" (membership is all that is needed).
#ifndef VIGIE_AGENT_SERVICES_CGROUP_H_
#define VIGIE_AGENT_SERVICES_CGROUP_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace vigie::agent::services {

// Where the services' groups go: "<v2 mount>/vigie.services" or "<v1 pids mount>/vigie", made
// if missing; an error when neither can be written (no cgroups then: process groups only).
absl::StatusOr<std::string> PrepareCgroupRoot(const std::string& mount = "/sys/fs/cgroup");

// Makes group `dir` if it is missing.
absl::Status MakeCgroup(const std::string& dir);

// The processes in group `dir` (empty when it does not exist).
std::vector<pid_t> CgroupPids(const std::string& dir);

// Moves the calling process into group `dir`.
absl::Status JoinCgroup(const std::string& dir);

// Sends `signal` to every process of group `dir` but `except`; returns how many it sent to.
int SignalCgroup(const std::string& dir, int signal, pid_t except);

}  // namespace vigie::agent::services

#endif  // VIGIE_AGENT_SERVICES_CGROUP_H_
