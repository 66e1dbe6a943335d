#include "agent/services/process_tree.h"

#include <signal.h>
#include <unistd.h>

#include <string>

#include "absl/time/clock.h"
#include "common/spawn.h"
#include "gtest/gtest.h"

namespace vigie::agent::services {
namespace {

TEST(ProcessTreeTest, ParsesStatLinesWhoseCommandHoldsSpacesAndParentheses) {
  ProcStat st;
  ASSERT_TRUE(
      ParseProcStat("4242 (a) b (c)) S 1 4240 4240 0 -1 4194560 500 0 0 0 120 30 7 3 20 0 5 0 9999 "
                    "123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
                    &st));
  EXPECT_EQ(st.pgrp, 4240);
  EXPECT_EQ(st.utime, 120u);
  EXPECT_EQ(st.stime, 30u);
  EXPECT_EQ(st.cutime, 7u);
  EXPECT_EQ(st.cstime, 3u);
  EXPECT_EQ(st.threads, 5u);
  EXPECT_EQ(st.rss_pages, 2048u);
  EXPECT_EQ(st.starttime, 9999u);
  EXPECT_EQ(st.state, 'S');
  EXPECT_FALSE(ParseProcStat("4242 (short) S 1 2", &st));
  EXPECT_FALSE(ParseProcStat("no parenthesis", &st));
  EXPECT_FALSE(ParseProcStat("", &st));
}

TEST(ProcessTreeTest, SumsEveryProcessOfTheGroupAndNoOther) {
  // A shell with two background children, all in the child's new process group; one holds
  // 8 extra descriptors open and ~32 MiB of touched memory.
  SpawnOptions o;
  o.argv = {"/bin/sh", "-c",
            "sleep 60 & /usr/bin/python3 -c 'import time; b = bytearray(32 << 20); "
            "fs = [open(\"/dev/null\") for _ in range(8)]; time.sleep(60)' & wait"};
  o.env = {"PATH=/usr/bin:/bin"};
  o.capture_output = false;
  absl::StatusOr<std::unique_ptr<Child>> child = Child::Spawn(o);
  ASSERT_TRUE(child.ok()) << child.status();
  const pid_t group = (*child)->pid();
  GroupUsage u;
  for (int i = 0; i < 100; ++i) {  // python needs a moment to allocate
    u = UsageByProcessGroup({group})[group];
    if (u.processes == 3 && u.rss_bytes > (32u << 20)) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(u.processes, 3);
  EXPECT_GE(u.threads, 3u);
  EXPECT_GT(u.rss_bytes, 32u << 20);
  EXPECT_LT(u.rss_bytes, 256u << 20);
  EXPECT_GE(u.open_fds, 8u + 3u * 3u);  // stdin, stdout, stderr each, and python's 8
  EXPECT_GE(u.cpu_seconds, 0.0);
  // Another group (this test's own) is not counted, and an absent one is not reported.
  EXPECT_EQ(UsageByProcessGroup({group})[getpgrp()].processes, 0);
  EXPECT_TRUE(UsageByProcessGroup({999999999}).empty());
  EXPECT_TRUE(UsageByProcessGroup({}).empty());
  EXPECT_GT(ProcessStartTime(group), 0u);
  EXPECT_GE(ProcessStartTime(group), ProcessStartTime(getpid()));
  EXPECT_EQ(ProcessStartTime(999999999), 0u);
}

}  // namespace
}  // namespace vigie::agent::services
