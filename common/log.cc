#include "common/log.h"

#include <atomic>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "re2/re2.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace vigie::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

spdlog::logger& Logger() {
  // Built once; spdlog loggers are thread-safe (_mt sink).
  static spdlog::logger* const logger = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto* l = new spdlog::logger("vigie", sink);
    l->set_pattern("ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l %v", spdlog::pattern_time_type::utc);
    l->set_level(spdlog::level::trace);
    l->flush_on(spdlog::level::trace);
    return l;
  }();
  return *logger;
}

bool IsSecretKey(absl::string_view key) {
  const std::string k = absl::AsciiStrToLower(key);
  for (absl::string_view s : {"password", "passwd", "token", "secret", "authorization"}) {
    if (absl::StrContains(k, s)) return true;
  }
  return false;
}

void AppendValue(std::string* out, absl::string_view v, bool force_quote = false) {
  bool quote = force_quote || v.empty();
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      quote = true;
      break;
    }
  }
  if (!quote) {
    out->append(v.data(), v.size());
    return;
  }
  out->push_back('"');
  for (char c : v) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(out, "\\x", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

}  // namespace

absl::Status SetLevel(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "debug") return SetLevel(Level::kDebug), absl::OkStatus();
  if (n == "info") return SetLevel(Level::kInfo), absl::OkStatus();
  if (n == "warn" || n == "warning") return SetLevel(Level::kWarn), absl::OkStatus();
  if (n == "error") return SetLevel(Level::kError), absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("log level must be debug, info, warn or error, not \"", name, "\""));
}

void SetLevel(Level level) { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }

bool Enabled(Level level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

std::string FormatLine(absl::string_view msg, Fields fields) {
  std::string line = "msg=";
  AppendValue(&line, msg, /*force_quote=*/true);
  for (const Field& f : fields) {
    absl::StrAppend(&line, " ", f.key, "=");
    AppendValue(&line, IsSecretKey(f.key) ? absl::string_view("[redacted]") : f.value);
  }
  return line;
}

void Write(Level level, absl::string_view msg, Fields fields) {
  if (!Enabled(level)) return;
  static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::debug, spdlog::level::info,
                                                          spdlog::level::warn, spdlog::level::err};
  Logger().log(kLevels[static_cast<int>(level)], "{}", FormatLine(msg, fields));
}

std::string RedactUrl(absl::string_view url) {
  std::string out(url);
  // scheme://user:password@host
  static const RE2 kUserinfo(R"(^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*):[^@/]*@)");
  RE2::Replace(&out, kUserinfo, R"(\1:[redacted]@)");
  // password=... in key/value strings and query parameters
  static const RE2 kKeyValue(R"((password\s*=\s*)('[^']*'|[^\s&]*))");
  RE2::GlobalReplace(&out, kKeyValue, R"(\1[redacted])");
  return out;
}

}  // namespace vigie::log
