#include "common/spawn.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Child> Shell(const std::string& script, std::vector<std::string> env = {}) {
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", script};
  o.env = std::move(env);
  absl::StatusOr<std::unique_ptr<Child>> c = Child::Spawn(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

ExitStatus Wait(Child* c) {
  pollfd p{c->pidfd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 10000), 1) << "the child did not exit";
  std::optional<ExitStatus> s = c->TryReap();
  EXPECT_TRUE(s.has_value());
  return s.value_or(ExitStatus{});
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) break;
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Running (a zombie whose parent has not reaped it counts as gone).
bool Alive(pid_t pid) {
  FILE* f = fopen(absl::StrCat("/proc/", pid, "/stat").c_str(), "r");
  if (f == nullptr) return false;
  char buf[512] = {0};
  const size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  const std::string stat(buf, n);
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

TEST(SpawnTest, ReportsExitCodesSignalsAndOutput) {
  std::unique_ptr<Child> c = Shell("echo out; echo err >&2; exit 3");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(ReadAll(c->stdout_fd()), "out\n");
  EXPECT_EQ(ReadAll(c->stderr_fd()), "err\n");
  ExitStatus s = Wait(c.get());
  EXPECT_EQ(s.code, 3);
  EXPECT_EQ(s.ToString(), "exit code 3");

  c = Shell("kill -9 $$");
  s = Wait(c.get());
  EXPECT_EQ(s.signal, SIGKILL);
  EXPECT_THAT(s.ToString(), HasSubstr("killed by signal 9"));
}

TEST(SpawnTest, TheChildGetsOnlyItsOwnEnvironmentAndNoBlockedSignals) {
  setenv("VIGIE_SPAWN_TEST_SECRET", "x", 1);
  std::unique_ptr<Child> c = Shell("echo \"[$VIGIE_SPAWN_TEST_SECRET][$A]\"", {"A=1"});
  EXPECT_EQ(ReadAll(c->stdout_fd()), "[][1]\n");
  Wait(c.get());

  // The caller blocks SIGTERM (as the agent's threads do); the child must not inherit it.
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, &old);
  c = Shell("exec sleep 30");
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(c->SignalGroup(SIGTERM).ok());
  EXPECT_EQ(Wait(c.get()).signal, SIGTERM);
}

TEST(SpawnTest, DestroyingARunningChildKillsItsWholeProcessGroup) {
  std::unique_ptr<Child> c = Shell("sleep 60 & echo $!; wait");
  std::string line;
  char ch;
  while (read(c->stdout_fd(), &ch, 1) != 1) absl::SleepFor(absl::Milliseconds(5));
  do line += ch;
  while (read(c->stdout_fd(), &ch, 1) == 1 && ch != '\n');
  const pid_t grandchild = std::stoi(line);
  ASSERT_TRUE(Alive(grandchild));
  c.reset();
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (Alive(grandchild) && absl::Now() < end) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_FALSE(Alive(grandchild)) << "the background child survived";
}

TEST(SpawnTest, ANonexistentProgramIsAnErrorNamingIt) {
  SpawnOptions o;
  o.argv = {"/nonexistent/plugin"};
  absl::StatusOr<std::unique_ptr<Child>> c = Child::Spawn(o);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("cannot run /nonexistent/plugin"));
}

TEST(SpawnTest, TheChildsOutputIsBlockingSoAFullPipeIsNoError) {
  // 1 MB through a 64 KiB pipe read in bursts: each write of the child waits for room.
  std::unique_ptr<Child> c = Shell("head -c 1000000 /dev/zero; echo \"rc=$?\" >&2");
  absl::SleepFor(absl::Milliseconds(200));  // let the pipe fill
  EXPECT_EQ(ReadAll(c->stdout_fd()).size(), 1000000u);
  EXPECT_EQ(ReadAll(c->stderr_fd()), "rc=0\n");
  EXPECT_EQ(Wait(c.get()).code, 0);
}

TEST(SpawnTest, CredentialsRunTheChildAsAnotherUserInItsDirectory) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c", "id -u; id -g; id -G; pwd; echo $X"};
  o.env = {"PATH=/usr/bin:/bin", "X=1"};
  o.working_directory = "/tmp";
  o.credentials = SpawnOptions::Credentials{65534, 65534, {65534, 4}};
  sigset_t term, old;  // not inherited on this path either
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, &old);
  absl::StatusOr<std::unique_ptr<Child>> c = Child::Spawn(o);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(ReadAll((*c)->stdout_fd()), "65534\n65534\n65534 4\n/tmp\n1\n");
  EXPECT_EQ(Wait(c->get()).code, 0);
  // Its own process group, so a stop reaches what it starts.
  o.argv = {"/bin/sh", "-c", "cut -d' ' -f5 /proc/$$/stat"};
  c = Child::Spawn(o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(std::stoi(ReadAll((*c)->stdout_fd())), (*c)->pid());
  Wait(c->get());
  // A failure in the child (here, the directory) is the caller's error, as with posix_spawn.
  o.working_directory = "/nonexistent";
  c = Child::Spawn(o);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("No such file or directory"));
  o.working_directory = "/";
  o.argv = {"/nonexistent/plugin"};
  c = Child::Spawn(o);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("cannot run /nonexistent/plugin"));
}

}  // namespace
}  // namespace vigie
