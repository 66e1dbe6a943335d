// Check configuration: targets, common settings, and dispatch to each protocol's validation.
#include <arpa/inet.h>
#include <curl/curl.h>

#include <memory>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/checks/check.h"
#include "common/agent_message.h"
#include "common/secrets.h"
#include "common/status.h"
#include "common/yaml_config.h"
#include "re2/re2.h"

namespace vigie::agent::checks {
namespace {

// SampleLimits' default of 32 labels, less check, target, agent and one for info metrics.
constexpr size_t kMaxCheckLabels = 28;

struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct CurlFree {
  void operator()(char* p) const { curl_free(p); }
};

// One part of a parsed URL ("" when absent).
std::string Part(CURLU* u, CURLUPart what, unsigned flags = 0) {
  char* raw = nullptr;
  if (curl_url_get(u, what, &raw, flags) != CURLUE_OK || raw == nullptr) return "";
  std::unique_ptr<char, CurlFree> p(raw);
  return p.get();
}

int DefaultPort(const std::string& scheme) {
  if (scheme == "http") return 80;
  if (scheme == "https") return 443;
  if (scheme == "smtp") return 25;
  if (scheme == "smtps") return 465;
  if (scheme == "dns") return 53;
  if (scheme == "redis") return 6379;
  if (scheme == "postgresql" || scheme == "postgres") return 5432;
  return 0;
}

}  // namespace

std::string RedactTarget(const std::string& target) {
  if (target.find('@') == std::string::npos) return target;  // no userinfo
  // curl's parser finds the userinfo as it will be used (a '#', '?' or '@' in a password).
  std::unique_ptr<CURLU, UrlDeleter> u(curl_url());
  if (curl_url_set(u.get(), CURLUPART_URL, target.c_str(), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
    const size_t scheme = target.find("://");
    return scheme == std::string::npos ? "(not a URL)"
                                       : absl::StrCat(target.substr(0, scheme), "://(not a URL)");
  }
  if (Part(u.get(), CURLUPART_PASSWORD).empty()) return target;
  curl_url_set(u.get(), CURLUPART_PASSWORD, "xxxxx", 0);
  std::string out = Part(u.get(), CURLUPART_URL);
  return out.empty() ? "(not a URL)" : out;
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

absl::Status TakePassword(CheckSpec* s, const std::string& password_file,
                          const std::string& file_field) {
  const std::string& userinfo = s->parsed.userinfo;
  const size_t colon = userinfo.find(':');
  if (colon != std::string::npos && colon + 1 < userinfo.size()) {
    if (!password_file.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the password is both in the target and in ", file_field, "; keep one"));
    }
    s->password = userinfo.substr(colon + 1);
  }
  if (!password_file.empty()) {
    v1::SecretSource source;
    source.set_file(password_file);
    VIGIE_ASSIGN_OR_RETURN(s->password, ReadSecret(file_field, source));
  }
  if (s->password.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(file_field, ": the password holds a NUL byte"));
  }
  return absl::OkStatus();
}

std::string JoinHostPort(const std::string& host, int port) {
  return host.find(':') != std::string::npos ? absl::StrCat("[", host, "]:", port)
                                             : absl::StrCat(host, ":", port);
}

absl::StatusOr<Target> ParseTarget(const std::string& target, const std::string& field) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", RedactTarget(target), "\" ", why));
  };
  if (target.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": required, e.g. \"https://example.org/health\""));
  }
  if (target.size() > 2048) return bad("is longer than 2048 bytes");
  // "command:///usr/lib/x" has no host; curl's parser would skip the third slash and take
  // "usr" for the host.
  if (const size_t sep = target.find(":///"); sep != std::string::npos && sep > 0) {
    static const RE2 kScheme("[A-Za-z][A-Za-z0-9+.-]*");
    if (RE2::FullMatch(target.substr(0, sep), kScheme)) {
      Target t;
      t.scheme = absl::AsciiStrToLower(target.substr(0, sep));
      t.port = DefaultPort(t.scheme);
      t.path_and_query = target.substr(sep + 3);
      return t;
    }
  }
  std::unique_ptr<CURLU, UrlDeleter> u(curl_url());
  // Non-http schemes (dns, tcp) are ours; curl's URL parser handles them as generic URLs.
  const CURLUcode rc =
      curl_url_set(u.get(), CURLUPART_URL, target.c_str(), CURLU_NON_SUPPORT_SCHEME);
  if (rc != CURLUE_OK) {
    return bad(absl::StrCat("is not a URL (", curl_url_strerror(rc),
                            "); write it as scheme://host[:port][/path]"));
  }
  Target t;
  t.scheme = absl::AsciiStrToLower(Part(u.get(), CURLUPART_SCHEME));
  t.host = Part(u.get(), CURLUPART_HOST);
  if (t.host.size() >= 2 && t.host.front() == '[' && t.host.back() == ']') {
    t.host = t.host.substr(1, t.host.size() - 2);
  }
  const std::string user = Part(u.get(), CURLUPART_USER, CURLU_URLDECODE);
  const std::string password = Part(u.get(), CURLUPART_PASSWORD, CURLU_URLDECODE);
  if (!user.empty() || !password.empty()) t.userinfo = absl::StrCat(user, ":", password);
  const std::string port = Part(u.get(), CURLUPART_PORT);
  if (port.empty()) {
    t.port = DefaultPort(t.scheme);
  } else if (!absl::SimpleAtoi(port, &t.port) || t.port < 1 || t.port > 65535) {
    return bad("has an invalid port");
  }
  t.path_and_query = Part(u.get(), CURLUPART_PATH);
  if (std::string q = Part(u.get(), CURLUPART_QUERY); !q.empty()) {
    absl::StrAppend(&t.path_and_query, "?", q);
  }
  return t;
}

absl::StatusOr<CheckSpec> CheckSpecFromConfig(const v1::CheckConfig& c, const std::string& field) {
  CheckSpec s;
  s.config = c;
  s.name = c.name();
  VIGIE_RETURN_IF_ERROR(ValidateConfigName(absl::StrCat(field, ".name"), s.name));
  const std::string at = absl::StrCat(field, " (", s.name, ")");
  s.target = RedactTarget(c.target());
  VIGIE_ASSIGN_OR_RETURN(s.parsed, ParseTarget(c.target(), absl::StrCat(at, ".target")));
  VIGIE_ASSIGN_OR_RETURN(
      s.interval, ParseConfigDuration(absl::StrCat(at, ".interval"), c.interval(), s.interval));
  if (s.interval < absl::Seconds(1) || s.interval > absl::Hours(24)) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".interval: must be between 1s and 24h, got \"", c.interval(), "\""));
  }
  s.timeout = std::min(s.timeout, s.interval / 2);
  VIGIE_ASSIGN_OR_RETURN(s.timeout,
                         ParseConfigDuration(absl::StrCat(at, ".timeout"), c.timeout(), s.timeout));
  if (s.timeout < absl::Milliseconds(10) || s.timeout >= s.interval) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".timeout: must be at least 10ms and below interval (",
                     absl::FormatDuration(s.interval), "), got \"", c.timeout(), "\""));
  }
  if (c.failures() > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".failures: at most 100, got ", c.failures()));
  }
  s.failures = c.failures() == 0 ? 1 : static_cast<int>(c.failures());
  // The control plane's own label rules (one function), leaving room for check, target and
  // agent, so a result or a probe_* sample is never refused for its labels.
  VIGIE_RETURN_IF_ERROR(ValidateLabels(c.labels(), kMaxCheckLabels, absl::StrCat(at, ".labels")));
  for (const auto& [k, v] : c.labels()) {
    if (k == "check" || k == "target" || k == "agent") {
      return absl::InvalidArgumentError(absl::StrCat(
          at, ".labels: \"", k, "\" is set by Vigie (check, target and agent are reserved)"));
    }
    s.labels[k] = v;
  }
  auto it = Protocols().find(s.parsed.scheme);
  if (it == Protocols().end()) {
    std::string known;
    for (const auto& [scheme, p] : Protocols())
      absl::StrAppend(&known, known.empty() ? "" : ", ", scheme);
    return absl::InvalidArgumentError(absl::StrCat(at, ".target: scheme \"", s.parsed.scheme,
                                                   "\" is not supported (", known, ")"));
  }
  VIGIE_RETURN_IF_ERROR(it->second.validate(&s, at));
  return s;
}

absl::StatusOr<std::vector<CheckSpec>> CheckSpecsFromConfig(
    const google::protobuf::RepeatedPtrField<v1::CheckConfig>& configs) {
  std::vector<CheckSpec> out;
  std::set<std::string> names;
  for (int i = 0; i < configs.size(); ++i) {
    VIGIE_ASSIGN_OR_RETURN(CheckSpec s,
                           CheckSpecFromConfig(configs[i], absl::StrCat("checks[", i, "]")));
    if (!names.insert(s.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("checks[", i, "].name: \"", s.name, "\" is used by an earlier check"));
    }
    out.push_back(std::move(s));
  }
  return out;
}

// Shared by the protocols with TLS.
absl::Status TlsSettingsFromConfig(const v1::CheckTls& c, const std::string& field,
                                   const std::string& expiry_shorthand, TlsSettings* out) {
  out->ca_file = c.ca_file();
  out->insecure_skip_verify = c.insecure_skip_verify();
  out->server_name = c.server_name();
  const std::string& w = c.expiry_warning().empty() ? expiry_shorthand : c.expiry_warning();
  VIGIE_ASSIGN_OR_RETURN(
      out->expiry_warning,
      ParseConfigDuration(absl::StrCat(field, ".expiry_warning"), w, out->expiry_warning));
  if (!out->ca_file.empty() && access(out->ca_file.c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".ca_file: \"", out->ca_file, "\" cannot be read"));
  }
  return absl::OkStatus();
}

const std::map<std::string, Protocol>& Protocols() {
  static const auto* const protocols = new std::map<std::string, Protocol>{
      {"http", HttpProtocol()},
      {"https", HttpProtocol()},
      {"tcp", TcpProtocol()},
      {"smtp", SmtpProtocol()},
      {"smtps", SmtpProtocol()},
      {"dns", DnsProtocol()},
      {"redis", RedisProtocol()},
      {"rediss", RedisProtocol()},
      {"postgresql", PostgresqlProtocol()},
      {"postgres", PostgresqlProtocol()},
      {"command", CommandProtocol()},
  };
  return *protocols;
}

}  // namespace vigie::agent::checks
