// command:///path/to/plugin?arg1&arg2 checks: a Nagios plugin, started through the shared
// pidfd spawner (common/spawn.h) and watched on the check loop: its pidfd and its output
// pipes. Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; the first line of output is the
// message; performance data after "|" become vigie_check_perfdata metrics. At the deadline
// the plugin's whole process group is killed.
#include <curl/curl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/checks/check.h"
#include "agent/checks/event_loop.h"
#include "common/agent_message.h"
#include "common/spawn.h"

namespace vigie::agent::checks {
namespace {

constexpr size_t kMaxStdout = 64 * 1024;  // Nagios reads 8 KiB; kept, the rest drained
constexpr size_t kMaxStderr = 4 * 1024;
constexpr size_t kMaxPerfData = 32;

struct CurlFree {
  void operator()(char* p) const { curl_free(p); }
};

std::string PercentDecode(absl::string_view s) {
  int n = 0;
  std::unique_ptr<char, CurlFree> out(
      curl_easy_unescape(nullptr, s.data(), static_cast<int>(s.size()), &n));
  return out ? std::string(out.get(), static_cast<size_t>(n)) : std::string(s);
}

// The program and its arguments: from the target, or the target's path and command.args.
absl::StatusOr<std::vector<std::string>> Argv(const CheckSpec& s, const std::string& field) {
  std::string path = s.parsed.path_and_query, query;
  if (size_t q = path.find('?'); q != std::string::npos) {
    query = path.substr(q + 1);
    path.resize(q);
  }
  std::vector<std::string> argv = {PercentDecode(path)};
  if (!s.parsed.host.empty() || argv[0].empty() || argv[0][0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".target: \"", s.target,
                     "\" must name a program by its absolute path, e.g. "
                     "command:///usr/lib/nagios/plugins/check_dummy?0&fine"));
  }
  if (!query.empty() && s.config.command().args_size() > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": arguments both in the target and in command.args; keep one"));
  }
  for (absl::string_view a : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    argv.push_back(PercentDecode(a));
  }
  for (const std::string& a : s.config.command().args()) argv.push_back(a);
  if (argv.size() > 256) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": more than 255 arguments"));
  }
  for (const std::string& a : argv) {
    if (a.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": an argument holds a NUL byte"));
    }
  }
  return argv;
}

absl::Status Validate(CheckSpec* s, const std::string& field) {
  absl::StatusOr<std::vector<std::string>> argv = Argv(*s, field);
  if (!argv.ok()) return argv.status();
  if (access((*argv)[0].c_str(), X_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".target: ", (*argv)[0], " cannot be run: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// A value in the base unit Prometheus names use, and the metric named with it:
// vigie_check_perfdata_seconds, _bytes, _percent, _total (a counter), or no suffix.
bool Normalize(absl::string_view uom, double* value, std::string* metric) {
  const std::string u = absl::AsciiStrToLower(uom);
  static const std::pair<const char*, std::pair<double, const char*>> kUnits[] = {
      {"", {1, ""}},
      {"s", {1, "_seconds"}},
      {"ms", {1e-3, "_seconds"}},
      {"us", {1e-6, "_seconds"}},
      {"%", {1, "_percent"}},
      {"b", {1, "_bytes"}},
      {"kb", {1024, "_bytes"}},
      {"mb", {1048576, "_bytes"}},
      {"gb", {1073741824, "_bytes"}},
      {"tb", {1099511627776, "_bytes"}},
      {"c", {1, "_total"}},
  };
  for (const auto& [name, factor] : kUnits) {
    if (u == name) {
      *value *= factor.first;
      *metric = absl::StrCat("vigie_check_perfdata", factor.second);
      return true;
    }
  }
  return false;
}

}  // namespace

// Parses Nagios performance data ("'label'=value[UOM];warn;crit;min;max ...") into `o`;
// malformed or unknown ("U") values are skipped.
void ParsePerfData(absl::string_view text, Outcome* o) {
  size_t i = 0;
  while (i < text.size() && o->labeled.size() < kMaxPerfData) {
    while (i < text.size() && absl::ascii_isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i >= text.size()) break;
    std::string label;
    if (text[i] == '\'') {  // quoted: '' is a quote
      for (++i; i < text.size(); ++i) {
        if (text[i] == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
          label += '\'';
          ++i;
        } else if (text[i] == '\'') {
          ++i;
          break;
        } else {
          label += text[i];
        }
      }
    } else {
      while (i < text.size() && text[i] != '=' &&
             !absl::ascii_isspace(static_cast<unsigned char>(text[i]))) {
        label += text[i++];
      }
    }
    size_t end = i;
    while (end < text.size() && !absl::ascii_isspace(static_cast<unsigned char>(text[end]))) {
      ++end;
    }
    absl::string_view rest = text.substr(i, end - i);
    i = end;
    if (label.empty() || !absl::ConsumePrefix(&rest, "=")) continue;
    absl::string_view number = rest.substr(0, rest.find(';'));
    size_t digits = 0;
    while (digits < number.size() &&
           (absl::ascii_isdigit(static_cast<unsigned char>(number[digits])) ||
            number[digits] == '.' || number[digits] == '-' || number[digits] == '+' ||
            number[digits] == 'e' || number[digits] == 'E')) {
      ++digits;
    }
    double value = 0;
    std::string metric;
    if (!absl::SimpleAtod(number.substr(0, digits), &value) || !std::isfinite(value) ||
        !Normalize(number.substr(digits), &value, &metric)) {
      continue;
    }
    o->labeled.push_back({metric, {"perf", SafeText(label, 128)}, value});
  }
}

namespace {

class CommandProbe : public Probe {
 public:
  CommandProbe(const CheckSpec& spec, ProbeEnv* env, absl::Time deadline)
      : spec_(spec), env_(env), deadline_(deadline) {}
  ~CommandProbe() override {
    if (child_ != nullptr) {
      for (int fd : {child_->stdout_fd(), child_->stderr_fd(), child_->pidfd()}) {
        env_->loop->Unwatch(fd);
      }
    }
    // ~Child kills the process group of a plugin still running (the deadline passed).
  }

  void Start(Done done) override {
    done_ = std::move(done);
    start_ = absl::Now();
    SpawnOptions options;
    options.argv = *Argv(spec_, "");
    options.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"};
    absl::StatusOr<std::unique_ptr<Child>> child = Child::Spawn(options);
    if (!child.ok()) {
      Outcome o;
      o.message = std::string(child.status().message());
      std::exchange(done_, nullptr)(std::move(o));
      return;
    }
    child_ = std::move(*child);
    env_->loop->Watch(child_->stdout_fd(), true, false,
                      [this](bool, bool) { Drain(child_->stdout_fd(), kMaxStdout, &out_); });
    env_->loop->Watch(child_->stderr_fd(), true, false,
                      [this](bool, bool) { Drain(child_->stderr_fd(), kMaxStderr, &err_); });
    env_->loop->Watch(child_->pidfd(), true, false, [this](bool, bool) { Exited(); });
  }

  std::string Phase() const override {
    return absl::StrCat(
        "running ", spec_.parsed.path_and_query.substr(0, spec_.parsed.path_and_query.find('?')));
  }

 private:
  // Reads what `fd` holds now, keeping up to `cap` bytes; the rest is read and dropped so the
  // plugin never blocks on a full pipe.
  void Drain(int fd, size_t cap, std::string* into) {
    char buf[8192];
    for (;;) {
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n > 0) {
        into->append(buf, std::min(static_cast<size_t>(n), cap - std::min(cap, into->size())));
        continue;
      }
      if (n == 0) env_->loop->Unwatch(fd);  // EOF
      return;
    }
  }

  void Exited() {
    // The plugin's own output is all in the pipes now. Anything it left running in its
    // process group is killed before the plugin is reaped (its pid still holds the group).
    Drain(child_->stdout_fd(), kMaxStdout, &out_);
    Drain(child_->stderr_fd(), kMaxStderr, &err_);
    child_->SignalGroup(SIGKILL).IgnoreError();
    std::optional<ExitStatus> status = child_->TryReap();
    if (!status.has_value()) return;  // spurious wake-up
    env_->loop->Unwatch(child_->pidfd());
    std::exchange(done_, nullptr)(Judge(*status));
  }

  Outcome Judge(const ExitStatus& status) {
    Outcome o;
    const absl::string_view out = out_;
    const absl::string_view first = out.substr(0, out.find('\n'));
    const size_t bar = first.find('|');
    std::string message(absl::StripAsciiWhitespace(first.substr(0, bar)));
    if (bar != absl::string_view::npos) ParsePerfData(first.substr(bar + 1), &o);
    // Nagios 3 long output: after the first line, perfdata follow the first "|".
    if (size_t nl = out.find('\n'); nl != absl::string_view::npos) {
      absl::string_view rest = out.substr(nl + 1);
      if (size_t more = rest.find('|'); more != absl::string_view::npos) {
        ParsePerfData(rest.substr(more + 1), &o);
      }
    }
    if (message.empty()) {
      absl::string_view e = absl::StripAsciiWhitespace(err_);
      message = e.empty() ? "no output" : std::string(e.substr(0, e.find('\n')));
    }
    o.metrics.emplace_back("vigie_check_exit_code", status.code);
    if (status.signal != 0) {
      o.status = v1::CHECK_STATUS_UNKNOWN;
      o.message = absl::StrCat(status.ToString(), ": ", message);
      return o;
    }
    switch (status.code) {
      case 0:
        o.status = v1::CHECK_STATUS_OK;
        break;
      case 1:
        o.status = v1::CHECK_STATUS_WARNING;
        break;
      case 2:
        o.status = v1::CHECK_STATUS_CRITICAL;
        break;
      case 3:
        o.status = v1::CHECK_STATUS_UNKNOWN;
        break;
      default:
        o.status = v1::CHECK_STATUS_UNKNOWN;
        message = absl::StrCat(status.ToString(), " (not a plugin status): ", message);
    }
    o.message = std::move(message);
    return o;
  }

  const CheckSpec& spec_;
  ProbeEnv* const env_;
  const absl::Time deadline_;
  absl::Time start_;
  Done done_;
  std::unique_ptr<Child> child_;
  std::string out_, err_;
};

}  // namespace

Protocol CommandProtocol() {
  return {Validate, [](const CheckSpec& spec, ProbeEnv* env, absl::Time deadline) {
            return std::unique_ptr<Probe>(new CommandProbe(spec, env, deadline));
          }};
}

}  // namespace vigie::agent::checks
