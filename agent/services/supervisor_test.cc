#include "agent/services/supervisor.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/services/cgroup.h"
#include "common/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::agent::services {
namespace {

using ::testing::HasSubstr;

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/supervisor_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override {
    if (sup_) sup_->Stop();
    sup_.reset();
    // What a test left running for a next agent.
    EXPECT_TRUE(Supervisor::StopServicesLeftRunning(Options({})).ok());
    std::filesystem::remove_all(dir_);
  }
  SupervisorOptions Options(std::vector<ServiceSpec> specs, bool stop_on_exit = true) {
    SupervisorOptions o;
    o.services = std::move(specs);
    o.usage_interval = absl::Milliseconds(100);
    o.state_directory = dir_ + "/state";
    o.shim_path = VIGIE_SHIM_PATH;
    o.stop_on_exit = stop_on_exit;
    o.cgroup_root = cgroup_root_;
    o.on_event = [this](v1::ServiceEvent e) {
      MutexLock lock(&mu_);
      events_.push_back(std::move(e));
    };
    return o;
  }
  ServiceSpec Spec(const std::string& name, const std::string& script) {
    v1::ServiceConfig c;
    c.set_name(name);
    for (const char* a : {"/bin/sh", "-c"}) c.add_command(a);
    c.add_command(script);
    c.mutable_backoff()->set_initial("100ms");
    c.mutable_backoff()->set_max("400ms");
    c.set_stable_after("300ms");
    c.set_stop_timeout("300ms");
    c.mutable_log()->set_directory(dir_);
    google::protobuf::RepeatedPtrField<v1::ServiceConfig> list;
    *list.Add() = c;
    absl::StatusOr<std::vector<ServiceSpec>> specs = ServiceSpecsFromConfig(list);
    EXPECT_TRUE(specs.ok()) << specs.status();
    return specs.ok() ? (*specs)[0] : ServiceSpec{};
  }
  // A supervisor for `specs` (stopping the one before); `stop_on_exit` false leaves its
  // services running for the next.
  void Run(std::vector<ServiceSpec> specs, bool stop_on_exit = true) {
    if (sup_) sup_->Stop();
    sup_ = std::make_unique<Supervisor>(Options(std::move(specs), stop_on_exit));
    absl::Status init = sup_->Init();
    ASSERT_TRUE(init.ok()) << init;
    sup_->Start();
  }
  void ClearEvents() {
    MutexLock lock(&mu_);
    events_.clear();
  }
  std::vector<v1::ServiceEvent> Events(v1::ServiceEvent::Kind kind) {
    MutexLock lock(&mu_);
    std::vector<v1::ServiceEvent> out;
    for (const v1::ServiceEvent& e : events_) {
      if (e.kind() == kind) out.push_back(e);
    }
    return out;
  }
  // Waits until `n` events of `kind` have come.
  std::vector<v1::ServiceEvent> WaitFor(v1::ServiceEvent::Kind kind, size_t n,
                                        absl::Duration timeout = absl::Seconds(15)) {
    const absl::Time end = absl::Now() + timeout;
    while (Events(kind).size() < n && absl::Now() < end) absl::SleepFor(absl::Milliseconds(10));
    std::vector<v1::ServiceEvent> got = Events(kind);
    EXPECT_GE(got.size(), n) << v1::ServiceEvent::Kind_Name(kind);
    return got;
  }

  std::string dir_;
  std::string cgroup_root_;  // none unless a test sets it
  std::unique_ptr<Supervisor> sup_;
  Mutex mu_;
  std::vector<v1::ServiceEvent> events_ ABSL_GUARDED_BY(mu_);
};

TEST_F(SupervisorTest, ACrashLoopBacksOffGrowingToTheMaximumAndNeverGivesUp) {
  Run({Spec("crash", "exit 3")});
  std::vector<v1::ServiceEvent> starts = WaitFor(v1::ServiceEvent::KIND_STARTED, 6);
  std::vector<v1::ServiceEvent> exits = Events(v1::ServiceEvent::KIND_EXITED);
  ASSERT_GE(exits.size(), 5u);
  EXPECT_EQ(exits[0].exit_code(), 3);
  EXPECT_THAT(exits[0].message(), HasSubstr("exit code 3 after"));
  // Gaps between starts: ~100ms, ~200ms, then capped at ~400ms (+-20% jitter).
  auto gap = [&](size_t i) { return starts[i].timestamp_ms() - starts[i - 1].timestamp_ms(); };
  EXPECT_GE(gap(1), 75);
  EXPECT_LE(gap(1), 250);
  EXPECT_GE(gap(4), 300);
  EXPECT_LE(gap(4), 650);
  EXPECT_GE(gap(5), 300);
  EXPECT_THAT(Events(v1::ServiceEvent::KIND_RESTARTING)[0].message(),
              HasSubstr("starting again in"));
}

TEST_F(SupervisorTest, AStableRunResetsTheBackoffAndIsReported) {
  Run({Spec("steady", "sleep 0.5; exit 1")});
  std::vector<v1::ServiceEvent> starts = WaitFor(v1::ServiceEvent::KIND_STARTED, 4);
  EXPECT_GE(Events(v1::ServiceEvent::KIND_STABLE).size(), 3u);
  for (size_t i = 1; i < starts.size(); ++i) {
    // 500ms of running plus the initial 100ms (+-20%): never the grown delays.
    EXPECT_LE(starts[i].timestamp_ms() - starts[i - 1].timestamp_ms(), 800) << i;
  }
}

TEST_F(SupervisorTest, StopEscalatesToSigkillAndLeavesNoDescendant) {
  const std::string marker = absl::StrCat("sleep 62.", getpid());
  Run({Spec("stubborn",
            absl::StrCat("trap '' TERM; ", marker, " & while :; do sleep 0.05; done"))});
  WaitFor(v1::ServiceEvent::KIND_STARTED, 1);
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_EQ(system(absl::StrCat("pgrep -f '[s]", marker.substr(1), "' >/dev/null").c_str()), 0);
  const absl::Time before = absl::Now();
  sup_->Stop();
  EXPECT_GE(absl::Now() - before, absl::Milliseconds(250)) << "SIGTERM was ignored";
  std::vector<v1::ServiceEvent> stopped = Events(v1::ServiceEvent::KIND_STOPPED);
  ASSERT_EQ(stopped.size(), 1u);
  EXPECT_THAT(stopped[0].message(), HasSubstr("killed: still running 300ms after the stop signal"));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_NE(system(absl::StrCat("pgrep -f '[s]", marker.substr(1), "' >/dev/null").c_str()), 0)
      << "the service's background child survived";
}

TEST_F(SupervisorTest, StopKillsWhatTheServiceLeftInItsGroupWhenItExits) {
  // The leader dies at SIGTERM; its background child ignores SIGTERM (inherited across exec).
  const std::string marker = absl::StrCat("sleep 63.", getpid());
  Run({Spec("leaver", absl::StrCat("(trap '' TERM; exec ", marker, ") & exec sleep 60"))});
  WaitFor(v1::ServiceEvent::KIND_STARTED, 1);
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_EQ(system(absl::StrCat("pgrep -f '[s]", marker.substr(1), "' >/dev/null").c_str()), 0);
  sup_->Stop();
  std::vector<v1::ServiceEvent> stopped = Events(v1::ServiceEvent::KIND_STOPPED);
  ASSERT_EQ(stopped.size(), 1u);
  EXPECT_EQ(stopped[0].signal(), SIGTERM);
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_NE(system(absl::StrCat("pgrep -f '[s]", marker.substr(1), "' >/dev/null").c_str()), 0)
      << "a process of the service's group outlived the stop";
}

TEST_F(SupervisorTest, AServiceWritingWithoutPauseDoesNotHoldTheStop) {
  ServiceSpec s = Spec("spammer", "exec yes");
  s.log_max_bytes = 1 << 20;
  s.log_keep = 1;
  Run({s});
  WaitFor(v1::ServiceEvent::KIND_STARTED, 1);
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Time before = absl::Now();
  sup_->Stop();
  EXPECT_LT(absl::Now() - before, absl::Seconds(3));
  EXPECT_EQ(Events(v1::ServiceEvent::KIND_STOPPED).size(), 1u);
}

TEST_F(SupervisorTest, RestartStopsTheServiceAndStartsItAtOnceAnsweringTheCommand) {
  ServiceSpec s = Spec("web", "exec sleep 60");
  s.backoff.initial = absl::Seconds(5);  // an asked restart waits for no backoff
  Run({s, Spec("other", "exec sleep 60")});
  std::vector<v1::ServiceEvent> first = WaitFor(v1::ServiceEvent::KIND_STARTED, 2);
  int old_pid = 0;
  for (const auto& e : first) {
    if (e.service() == "web") old_pid = e.pid();
  }
  ASSERT_GT(old_pid, 0);
  EXPECT_TRUE(absl::IsNotFound(sup_->Restart("nope", "cmd-x")));
  const absl::Time asked = absl::Now();
  ASSERT_TRUE(sup_->Restart("web", "cmd-1").ok());
  std::vector<v1::ServiceEvent> starts = WaitFor(v1::ServiceEvent::KIND_STARTED, 3);
  EXPECT_LT(absl::Now() - asked, absl::Seconds(2));
  const v1::ServiceEvent& restarted = starts.back();
  EXPECT_EQ(restarted.service(), "web");
  EXPECT_NE(restarted.pid(), old_pid);
  EXPECT_THAT(restarted.command_ids(), ::testing::ElementsAre("cmd-1"));
  std::vector<v1::ServiceEvent> stopped = Events(v1::ServiceEvent::KIND_STOPPED);
  ASSERT_EQ(stopped.size(), 1u);
  EXPECT_EQ(stopped[0].signal(), SIGTERM);
  EXPECT_THAT(stopped[0].message(), HasSubstr("restart asked"));
  EXPECT_TRUE(Events(v1::ServiceEvent::KIND_EXITED).empty()) << "an asked restart is no failure";
  EXPECT_EQ(kill(old_pid, 0), -1);
  EXPECT_EQ(kill(restarted.pid(), 0), 0);
}

TEST_F(SupervisorTest, RestartOfAServiceWaitingForItsBackoffStartsItNow) {
  ServiceSpec s = Spec("crashy", "sleep 0.05; exit 1");
  s.backoff.initial = absl::Seconds(30);
  s.backoff.max = absl::Seconds(30);
  Run({s});
  WaitFor(v1::ServiceEvent::KIND_RESTARTING, 1);
  ASSERT_TRUE(sup_->Restart("crashy", "cmd-2").ok());
  std::vector<v1::ServiceEvent> starts =
      WaitFor(v1::ServiceEvent::KIND_STARTED, 2, absl::Seconds(3));
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_THAT(starts[1].command_ids(), ::testing::ElementsAre("cmd-2"));
  EXPECT_TRUE(starts[0].command_ids().empty());
}

TEST_F(SupervisorTest, ProcessGroupUsageIsReportedAsMetrics) {
  ServiceSpec s = Spec("pair",
                       "sleep 60 & exec /usr/bin/python3 -c 'import time; "
                       "b = bytearray(24 << 20); time.sleep(60)'");
  s.memory_limit = 1ull << 30;
  Run({s});
  WaitFor(v1::ServiceEvent::KIND_STARTED, 1);
  auto value = [](const Collection& c, const std::string& name) {
    for (const v1::Sample& x : c.samples) {
      if (x.name() == name) return x.value();
    }
    return -1.0;
  };
  Collection c;
  for (int i = 0; i < 100; ++i) {
    c = Collection{};
    sup_->AppendMetrics(1, &c);
    if (value(c, "vigie_service_memory_rss_bytes") > (24 << 20) &&
        value(c, "vigie_service_processes") == 2) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(value(c, "vigie_service_processes"), 2);
  EXPECT_GT(value(c, "vigie_service_memory_rss_bytes"), 24 << 20);
  EXPECT_GE(value(c, "vigie_service_threads"), 2);
  EXPECT_GE(value(c, "vigie_service_open_fds"), 6);  // stdin, stdout, stderr of each
  EXPECT_GE(value(c, "vigie_service_cpu_seconds_total"), 0);
  EXPECT_EQ(value(c, "vigie_service_memory_limit_bytes"), 1 << 30);
}

TEST_F(SupervisorTest, AServiceAboveItsMemoryLimitIsRestartedEvenWithRestartNever) {
  ServiceSpec s = Spec("hog",
                       "exec /usr/bin/python3 -c 'import time; "
                       "b = bytearray(64 << 20); time.sleep(60)'");
  s.restart = ServiceSpec::Restart::kNever;
  s.memory_limit = 32 << 20;
  s.memory_limit_for = absl::Milliseconds(300);
  Run({s});
  std::vector<v1::ServiceEvent> over = WaitFor(v1::ServiceEvent::KIND_MEMORY_LIMIT, 1);
  ASSERT_EQ(over.size(), 1u);
  EXPECT_THAT(over[0].message(), HasSubstr("above memory_limit 32 MiB for 300ms"));
  std::vector<v1::ServiceEvent> exits = WaitFor(v1::ServiceEvent::KIND_EXITED, 1);
  EXPECT_EQ(exits[0].signal(), SIGTERM);
  WaitFor(v1::ServiceEvent::KIND_STARTED, 2);  // started again, then again over the limit
  WaitFor(v1::ServiceEvent::KIND_MEMORY_LIMIT, 2);
}

TEST_F(SupervisorTest, MemoryLimitAndUserAreCheckedAtLoad) {
  v1::ServiceConfig c;
  c.set_name("x");
  c.add_command("/bin/true");
  google::protobuf::RepeatedPtrField<v1::ServiceConfig> list;
  c.set_memory_limit("lots");
  *list.Add() = c;
  EXPECT_THAT(std::string(ServiceSpecsFromConfig(list).status().message()),
              HasSubstr("services[0] (x).memory_limit: \"lots\" is not a size"));
  list[0].set_memory_limit("100KiB");
  EXPECT_THAT(std::string(ServiceSpecsFromConfig(list).status().message()),
              HasSubstr("memory_limit: at least 1MiB"));
  list[0].set_memory_limit("512MiB");
  list[0].set_user("no-such-user-here");
  EXPECT_THAT(std::string(ServiceSpecsFromConfig(list).status().message()),
              HasSubstr("services[0] (x).user: no user \"no-such-user-here\""));
  list[0].set_user("nobody");
  absl::StatusOr<std::vector<ServiceSpec>> specs = ServiceSpecsFromConfig(list);
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_EQ((*specs)[0].memory_limit, 512u << 20);
  ASSERT_TRUE((*specs)[0].credentials.has_value());
  EXPECT_EQ((*specs)[0].credentials->uid, 65534u);
  EXPECT_THAT((*specs)[0].env, ::testing::Contains("USER=nobody"));
  list[0].set_user("4242");  // a uid without a passwd entry
  specs = ServiceSpecsFromConfig(list);
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_EQ((*specs)[0].credentials->gid, 4242u);
}

TEST_F(SupervisorTest, AServiceRunsAsItsUserAndSoDoesItsHealthCommand) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  v1::ServiceConfig c;
  c.set_name("asnobody");
  c.add_command("/bin/sh");
  c.add_command("-c");
  c.add_command("id -un; echo \"$HOME\"; exec sleep 60");
  c.set_user("nobody");
  c.mutable_log()->set_directory(dir_);
  c.mutable_health()->add_command("/bin/sh");
  c.mutable_health()->add_command("-c");
  c.mutable_health()->add_command(
      "test \"$(id -u)\" = 65534 || { echo \"uid $(id -u)\"; exit 1; }");
  c.mutable_health()->set_interval("200ms");
  c.mutable_health()->set_timeout("150ms");
  google::protobuf::RepeatedPtrField<v1::ServiceConfig> list;
  *list.Add() = c;
  absl::StatusOr<std::vector<ServiceSpec>> specs = ServiceSpecsFromConfig(list);
  ASSERT_TRUE(specs.ok()) << specs.status();
  Run(*specs);
  WaitFor(v1::ServiceEvent::KIND_STARTED, 1);
  absl::SleepFor(absl::Milliseconds(700));  // three health runs
  EXPECT_TRUE(Events(v1::ServiceEvent::KIND_HEALTH_FAILED).empty())
      << Events(v1::ServiceEvent::KIND_HEALTH_FAILED)[0].message();
  sup_->Stop();
  std::FILE* f = std::fopen(absl::StrCat(dir_, "/asnobody.log").c_str(), "r");
  ASSERT_NE(f, nullptr);
  char buf[256] = {0};
  std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  EXPECT_EQ(std::string(buf), "nobody\n/nonexistent\n");
}

TEST_F(SupervisorTest, ServicesOutliveTheSupervisorAndTheNextOneAdoptsThem) {
  Run({Spec("keeper", "echo before; exec sleep 60")}, /*stop_on_exit=*/false);
  const int pid = WaitFor(v1::ServiceEvent::KIND_STARTED, 1)[0].pid();
  sup_->Stop();
  EXPECT_TRUE(Events(v1::ServiceEvent::KIND_STOPPED).empty());
  EXPECT_EQ(kill(pid, 0), 0) << "the service stopped with the supervisor";
  ClearEvents();
  Run({Spec("keeper", "echo before; exec sleep 60")}, false);
  std::vector<v1::ServiceEvent> adopted = WaitFor(v1::ServiceEvent::KIND_ADOPTED, 1);
  ASSERT_EQ(adopted.size(), 1u);
  EXPECT_EQ(adopted[0].pid(), pid);
  EXPECT_THAT(adopted[0].message(), HasSubstr(absl::StrCat("adopted pid ", pid)));
  EXPECT_TRUE(Events(v1::ServiceEvent::KIND_STARTED).empty()) << "adopted, not started again";
  // Up for its stable_after (300ms) by now or soon: said, so an exit alert can resolve.
  WaitFor(v1::ServiceEvent::KIND_STABLE, 1);
  // The adopted service is watched as its own: an exit is seen at once, and it is restarted.
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  std::vector<v1::ServiceEvent> exits = WaitFor(v1::ServiceEvent::KIND_EXITED, 1);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].signal(), SIGKILL);
  const int second = WaitFor(v1::ServiceEvent::KIND_STARTED, 1)[0].pid();
  EXPECT_NE(second, pid);
  // Its output went on into the same file across the agents.
  sup_->Stop();
  std::ifstream in(absl::StrCat(dir_, "/keeper.log"));
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all, "before\nbefore\n");
}

TEST_F(SupervisorTest, AnExitWhileNoSupervisorRanIsReportedAndTheServiceRestarted) {
  Run({Spec("brief", "sleep 0.3; exit 7")}, false);
  WaitFor(v1::ServiceEvent::KIND_STARTED, 1);
  sup_->Stop();
  absl::SleepFor(absl::Milliseconds(600));  // it exits meanwhile; its shim records how
  ClearEvents();
  Run({Spec("brief", "sleep 0.3; exit 7")}, true);
  std::vector<v1::ServiceEvent> exits = WaitFor(v1::ServiceEvent::KIND_EXITED, 1);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].exit_code(), 7);
  EXPECT_THAT(exits[0].message(), HasSubstr("exit code 7 while no agent was running"));
  WaitFor(v1::ServiceEvent::KIND_STARTED, 1);
}

TEST_F(SupervisorTest, AChangedDefinitionRestartsAnAdoptedServiceAndARemovedOneIsStopped) {
  Run({Spec("changing", "exec sleep 60"), Spec("dropped", "exec sleep 60")}, false);
  std::vector<v1::ServiceEvent> first = WaitFor(v1::ServiceEvent::KIND_STARTED, 2);
  int dropped_pid = 0;
  for (const auto& e : first) {
    if (e.service() == "dropped") dropped_pid = e.pid();
  }
  sup_->Stop();
  ClearEvents();
  Run({Spec("changing", "exec sleep 61")}, true);
  std::vector<v1::ServiceEvent> stopped = WaitFor(v1::ServiceEvent::KIND_STOPPED, 2);
  std::map<std::string, std::string> why;
  for (const auto& e : stopped) why[e.service()] = e.message();
  EXPECT_THAT(why["changing"], HasSubstr("stopped: its definition changed"));
  EXPECT_THAT(why["dropped"], HasSubstr("stopped: removed from the agent's config"));
  EXPECT_THAT(WaitFor(v1::ServiceEvent::KIND_ADOPTED, 1)[0].message(),
              HasSubstr("its definition changed"));
  WaitFor(v1::ServiceEvent::KIND_STARTED, 1);
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_NE(kill(dropped_pid, 0), 0) << "the removed service still runs";
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/state/dropped.service"));
}

TEST_F(SupervisorTest, StopServicesLeftRunningStopsThemWithTheirStopSignal) {
  ServiceSpec s = Spec("stubborn", "trap 'exit 0' INT; sleep 60 & wait");
  s.stop_signal = SIGINT;
  Run({s}, false);
  const int pid = WaitFor(v1::ServiceEvent::KIND_STARTED, 1)[0].pid();
  sup_->Stop();
  sup_.reset();
  ASSERT_EQ(kill(pid, 0), 0);
  EXPECT_TRUE(Supervisor::StopServicesLeftRunning(Options({s})).ok());
  EXPECT_NE(kill(pid, 0), 0);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/state/stubborn.service"));
}

TEST_F(SupervisorTest, ReloadTouchesOnlyTheServicesWhoseDefinitionChanged) {
  Run({Spec("same", "exec sleep 60"), Spec("changed", "exec sleep 60"),
       Spec("removed", "exec sleep 60")});
  std::map<std::string, int> pids;
  for (const auto& e : WaitFor(v1::ServiceEvent::KIND_STARTED, 3)) pids[e.service()] = e.pid();
  ClearEvents();
  ServiceSpec same = Spec("same", "exec sleep 60");
  same.health_argv = {"/bin/true"};  // a new health command is no reason to restart
  same.stop_timeout = absl::Seconds(2);
  sup_->Reload({same, Spec("changed", "exec sleep 61"), Spec("added", "exec sleep 60")});
  std::vector<v1::ServiceEvent> stopped = WaitFor(v1::ServiceEvent::KIND_STOPPED, 2);
  std::map<std::string, std::string> why;
  for (const auto& e : stopped) why[e.service()] = e.message();
  EXPECT_THAT(why["changed"], HasSubstr("its definition changed"));
  EXPECT_THAT(why["removed"], HasSubstr("removed from the agent's config"));
  EXPECT_EQ(why.count("same"), 0u);
  std::map<std::string, int> started;
  for (const auto& e : WaitFor(v1::ServiceEvent::KIND_STARTED, 2)) started[e.service()] = e.pid();
  EXPECT_EQ(started.count("changed"), 1u);
  EXPECT_EQ(started.count("added"), 1u);
  EXPECT_EQ(started.count("same"), 0u);
  EXPECT_EQ(kill(pids["same"], 0), 0);
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_NE(kill(pids["removed"], 0), 0);
  EXPECT_NE(kill(pids["changed"], 0), 0);
  // Commands and metrics follow the new set.
  EXPECT_TRUE(absl::IsNotFound(sup_->Restart("removed", "cmd-1")));
  EXPECT_TRUE(sup_->Restart("added", "cmd-2").ok());
  Collection c;
  sup_->AppendMetrics(1, &c);
  std::set<std::string> names;
  for (const v1::Sample& x : c.samples) names.insert(x.labels().at("service"));
  EXPECT_EQ(names, (std::set<std::string>{"same", "changed", "added"}));
}

TEST_F(SupervisorTest, AServiceWhoseShimWasKilledIsStoppedNotRunTwice) {
  Run({Spec("orphan", "exec sleep 60")}, false);
  const int pid = WaitFor(v1::ServiceEvent::KIND_STARTED, 1)[0].pid();
  sup_->Stop();
  std::ifstream record(dir_ + "/state/orphan.service");
  int shim = 0;
  ASSERT_TRUE(record >> shim);
  ASSERT_EQ(kill(shim, SIGKILL), 0);  // the shim dies; the service runs on
  absl::SleepFor(absl::Milliseconds(100));
  ASSERT_EQ(kill(pid, 0), 0);
  ClearEvents();
  Run({Spec("orphan", "exec sleep 60")}, true);
  std::vector<v1::ServiceEvent> exits = WaitFor(v1::ServiceEvent::KIND_EXITED, 1);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_THAT(exits[0].message(), HasSubstr("its shim was killed while no agent was running"));
  const int second = WaitFor(v1::ServiceEvent::KIND_STARTED, 1)[0].pid();
  EXPECT_NE(second, pid);
  // Gone (a zombie at most, until init reaps it).
  EXPECT_EQ(ProcessStartTime(pid), 0u) << "two copies of the service run";
}

TEST_F(SupervisorTest, WithACgroupAStopReachesAProcessThatLeftTheProcessGroup) {
  absl::StatusOr<std::string> root = PrepareCgroupRoot();
  if (!root.ok()) GTEST_SKIP() << root.status();
  cgroup_root_ = *root;
  const std::string marker = absl::StrCat("sleep 64.", getpid());
  // setsid: a new session and process group, as a daemon makes; only the cgroup holds it.
  Run({Spec("escaper", absl::StrCat("setsid ", marker, " & exec sleep 60"))});
  WaitFor(v1::ServiceEvent::KIND_STARTED, 1);
  auto value = [&](const std::string& name) {
    Collection c;
    sup_->AppendMetrics(1, &c);
    for (const v1::Sample& x : c.samples) {
      if (x.name() == name) return x.value();
    }
    return -1.0;
  };
  for (int i = 0; i < 100 && value("vigie_service_processes") != 2; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(value("vigie_service_processes"), 2) << "the daemon is counted, the shim is not";
  ASSERT_EQ(system(absl::StrCat("pgrep -f '[s]", marker.substr(1), "' >/dev/null").c_str()), 0);
  sup_->Stop();
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_NE(system(absl::StrCat("pgrep -f '[s]", marker.substr(1), "' >/dev/null").c_str()), 0)
      << "the process that left the group outlived the stop";
  for (const auto& e : std::filesystem::directory_iterator(*root)) {
    EXPECT_FALSE(absl::EndsWith(e.path().string(), ".escaper")) << "its cgroup is removed";
  }
}

TEST_F(SupervisorTest, OutputGoesToRotatedFilesCappedInBytes) {
  ServiceSpec s = Spec("chatty",
                       "i=0; while [ $i -lt 300 ]; do echo line $i "
                       "0123456789012345678901234567890123456789; i=$((i+1)); done; "
                       "sleep 60");
  s.log_max_bytes = 4096;
  s.log_keep = 2;
  Run({s});
  const std::string log = absl::StrCat(dir_, "/chatty.log");
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (!std::filesystem::exists(log + ".2") && absl::Now() < end) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  absl::SleepFor(absl::Milliseconds(300));
  for (const std::string& f : {log, log + ".1", log + ".2"}) {
    ASSERT_TRUE(std::filesystem::exists(f)) << f;
    EXPECT_LE(std::filesystem::file_size(f), 4096u) << f;
  }
  EXPECT_FALSE(std::filesystem::exists(log + ".3")) << "keep: 2";
}

TEST_F(SupervisorTest, AMissingProgramIsReportedAndRetried) {
  ServiceSpec s = Spec("ghost", "true");
  s.argv = {"/nonexistent/daemon"};
  Run({s});
  std::vector<v1::ServiceEvent> exits = WaitFor(v1::ServiceEvent::KIND_EXITED, 2);
  EXPECT_THAT(exits[0].message(), HasSubstr("cannot run /nonexistent/daemon"));
  EXPECT_TRUE(Events(v1::ServiceEvent::KIND_STARTED).empty());
}

TEST_F(SupervisorTest, FailedHealthCommandsRestartTheServiceEvenWithRestartNever) {
  const std::string marker = absl::StrCat(dir_, "-healthy");
  ASSERT_EQ(system(absl::StrCat("touch ", marker).c_str()), 0);
  v1::ServiceConfig c;
  c.set_name("sick");
  for (const char* a : {"/bin/sh", "-c", "exec sleep 60"}) c.add_command(a);
  c.set_restart("never");
  c.mutable_backoff()->set_initial("100ms");
  c.set_stop_timeout("300ms");
  c.mutable_log()->set_directory(dir_);
  v1::ServiceHealth* h = c.mutable_health();
  for (const std::string& a : {std::string("test"), std::string("-f"), marker}) h->add_command(a);
  h->set_interval("200ms");
  h->set_timeout("100ms");
  h->set_failures(2);
  google::protobuf::RepeatedPtrField<v1::ServiceConfig> list;
  *list.Add() = c;
  absl::StatusOr<std::vector<ServiceSpec>> specs = ServiceSpecsFromConfig(list);
  ASSERT_TRUE(specs.ok()) << specs.status();
  EXPECT_EQ((*specs)[0].health_argv[0], "/usr/bin/test") << "found in PATH";
  Run(*specs);
  WaitFor(v1::ServiceEvent::KIND_STARTED, 1);
  absl::SleepFor(absl::Milliseconds(700));
  EXPECT_TRUE(Events(v1::ServiceEvent::KIND_HEALTH_FAILED).empty()) << "healthy so far";
  unlink(marker.c_str());
  std::vector<v1::ServiceEvent> failed = WaitFor(v1::ServiceEvent::KIND_HEALTH_FAILED, 2);
  EXPECT_THAT(failed[0].message(), HasSubstr("health command failed (1 of 2): exit code 1"));
  std::vector<v1::ServiceEvent> starts = WaitFor(v1::ServiceEvent::KIND_STARTED, 2);
  std::vector<v1::ServiceEvent> exits = Events(v1::ServiceEvent::KIND_EXITED);
  ASSERT_GE(exits.size(), 1u);
  EXPECT_EQ(exits[0].signal(), SIGTERM) << "stopped with its stop signal, then started again";
}

TEST_F(SupervisorTest, AHealthCommandThatHangsIsAFailure) {
  ServiceSpec s = Spec("slowcheck", "exec sleep 60");
  s.health_argv = {"/bin/sleep", "10"};
  s.health_interval = absl::Milliseconds(300);
  s.health_timeout = absl::Milliseconds(100);
  s.health_failures = 100;
  Run({s});
  std::vector<v1::ServiceEvent> failed = WaitFor(v1::ServiceEvent::KIND_HEALTH_FAILED, 2);
  EXPECT_THAT(failed[0].message(), HasSubstr("no exit within 100ms"));
  EXPECT_EQ(Events(v1::ServiceEvent::KIND_STARTED).size(), 1u) << "not restarted: 100 needed";
}

TEST(ServiceSpecTest, RefusesBadSettingsNamingTheField) {
  struct Case {
    std::string yaml_field;
    std::function<void(v1::ServiceConfig*)> edit;
    std::string error;
  };
  std::vector<Case> cases = {
      {"", [](v1::ServiceConfig* c) { c->clear_command(); }, "services[0] (s).command"},
      {"", [](v1::ServiceConfig* c) { c->set_command(0, "no-such-program-xyz"); },
       "\"no-such-program-xyz\" is not in /usr/local/sbin"},
      {"", [](v1::ServiceConfig* c) { c->set_command(0, "bin/true"); },
       "must be an absolute path or a program name in PATH"},
      {"",
       [](v1::ServiceConfig* c) {
         c->mutable_health()->add_command("true");
         c->mutable_health()->set_timeout("20s");
       },
       "services[0] (s).health.timeout: at least 10ms and below interval (10s), got \"20s\""},
      {"", [](v1::ServiceConfig* c) { c->set_stable_after("10ms"); },
       "services[0] (s).stable_after: at least 100ms, got \"10ms\""},
      {"", [](v1::ServiceConfig* c) { c->set_stop_timeout("2h"); },
       "services[0] (s).stop_timeout: 10ms to 1h, got \"2h\""},
      {"", [](v1::ServiceConfig* c) { c->mutable_log()->set_keep(101); },
       "services[0] (s).log.keep: at most 100, got 101"},
      {"", [](v1::ServiceConfig* c) { c->mutable_log()->set_directory("logs"); },
       "services[0] (s).log.directory: \"logs\" must be an absolute path"},
      {"", [](v1::ServiceConfig* c) { c->mutable_health()->set_interval("5s"); },
       ".health.command: required"},
      {"", [](v1::ServiceConfig* c) { c->set_restart("sometimes"); }, ".restart: must be"},
      {"", [](v1::ServiceConfig* c) { c->set_stop_signal("STOP"); }, "\"STOP\" is not TERM"},
      {"", [](v1::ServiceConfig* c) { c->set_working_directory("srv"); }, "absolute path"},
      {"", [](v1::ServiceConfig* c) { (*c->mutable_environment())["A=B"] = "x"; },
       "not a variable name"},
      {"", [](v1::ServiceConfig* c) { c->mutable_log()->set_max_bytes(10); },
       "services[0] (s).log.max_bytes: at least 4096, got 10"},
      {"", [](v1::ServiceConfig* c) { c->set_name("bad name"); }, "services[0].name"},
  };
  for (const Case& k : cases) {
    v1::ServiceConfig c;
    c.set_name("s");
    c.add_command("/bin/true");
    k.edit(&c);
    google::protobuf::RepeatedPtrField<v1::ServiceConfig> list;
    *list.Add() = c;
    absl::StatusOr<std::vector<ServiceSpec>> s = ServiceSpecsFromConfig(list);
    ASSERT_FALSE(s.ok()) << k.error;
    EXPECT_THAT(s.status().message(), HasSubstr(k.error));
  }
}

}  // namespace
}  // namespace vigie::agent::services
