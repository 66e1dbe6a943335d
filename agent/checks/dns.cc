// dns://[resolver[:port]]/name?type=A|AAAA|MX|TXT|NS checks, with c-ares: the answer, and the
// records it must contain. "dns://example.org" asks the system's resolvers for example.org.
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/checks/check.h"
#include "agent/checks/resolver.h"

namespace vigie::agent::checks {
namespace {

struct DnsQuery {
  std::string servers;  // "" = the system's
  std::string name;
  std::string type = "A";
  int type_code = ns_t_a;
};

absl::StatusOr<DnsQuery> ParseQuery(const CheckSpec& s, const std::string& field) {
  DnsQuery q;
  const Target& t = s.parsed;
  std::string path = t.path_and_query, query;
  if (size_t i = path.find('?'); i != std::string::npos) {
    query = path.substr(i + 1);
    path = path.substr(0, i);
  }
  if (path.empty() || path == "/") {
    q.name = t.host;
  } else {
    q.name = path.substr(1);
    if (!t.host.empty()) {
      unsigned char addr[sizeof(in6_addr)];
      if (inet_pton(AF_INET, t.host.c_str(), addr) != 1 &&
          inet_pton(AF_INET6, t.host.c_str(), addr) != 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".target: \"", s.target, "\": the DNS server must be an IP address, got \"",
            t.host, "\" (or write dns://", path.substr(1), " for the system's resolvers)"));
      }
      q.servers = JoinHostPort(t.host, t.port);
    }
  }
  if (q.name.empty() || q.name.size() > 253) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".target: \"", s.target,
                     "\" names nothing to look up; write dns://[resolver:port/]name?type=A"));
  }
  bool typed = false;
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.first == "type" && std::exchange(typed, true)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".target: \"", s.target, "\": type is given twice"));
    }
    if (p.first != "type") {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".target: \"", s.target, "\": unknown parameter \"", p.first, "\" (only type)"));
    }
    q.type = absl::AsciiStrToUpper(p.second);
  }
  static const std::pair<const char*, int> kTypes[] = {
      {"A", ns_t_a}, {"AAAA", ns_t_aaaa}, {"MX", ns_t_mx}, {"TXT", ns_t_txt}, {"NS", ns_t_ns}};
  for (const auto& [name, code] : kTypes) {
    if (q.type == name) {
      q.type_code = code;
      return q;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ".target: \"", s.target, "\": type \"",
                                                 q.type, "\" is not A, AAAA, MX, TXT or NS"));
}

absl::Status Validate(CheckSpec* s, const std::string& field) {
  return ParseQuery(*s, field).status();
}

// The records of an answer as text: "10.0.0.5", "10 mx.example.org", "v=spf1 -all".
absl::StatusOr<std::vector<std::string>> Records(int type, const unsigned char* buf, int len) {
  std::vector<std::string> out;
  int r = ARES_SUCCESS;
  if (type == ns_t_a || type == ns_t_aaaa) {
    hostent* host = nullptr;
    r = type == ns_t_a ? ares_parse_a_reply(buf, len, &host, nullptr, nullptr)
                       : ares_parse_aaaa_reply(buf, len, &host, nullptr, nullptr);
    if (r == ARES_SUCCESS) {
      for (char** a = host->h_addr_list; *a != nullptr; ++a) {
        char text[INET6_ADDRSTRLEN] = {0};
        inet_ntop(host->h_addrtype, *a, text, sizeof(text));
        out.emplace_back(text);
      }
      ares_free_hostent(host);
    }
  } else if (type == ns_t_mx) {
    ares_mx_reply* mx = nullptr;
    r = ares_parse_mx_reply(buf, len, &mx);
    for (ares_mx_reply* m = mx; r == ARES_SUCCESS && m != nullptr; m = m->next) {
      out.push_back(absl::StrCat(m->priority, " ", m->host));
    }
    if (mx != nullptr) ares_free_data(mx);
  } else if (type == ns_t_txt) {
    ares_txt_ext* txt = nullptr;
    r = ares_parse_txt_reply_ext(buf, len, &txt);
    for (ares_txt_ext* t = txt; r == ARES_SUCCESS && t != nullptr; t = t->next) {
      std::string s(reinterpret_cast<const char*>(t->txt), t->length);
      if (t->record_start || out.empty()) {
        out.push_back(std::move(s));
      } else {
        out.back() += s;  // one record in several strings
      }
    }
    if (txt != nullptr) ares_free_data(txt);
  } else if (type == ns_t_ns) {
    hostent* host = nullptr;
    r = ares_parse_ns_reply(buf, len, &host);
    if (r == ARES_SUCCESS) {
      for (char** a = host->h_aliases; *a != nullptr; ++a) out.emplace_back(*a);
      ares_free_hostent(host);
    }
  }
  if (r != ARES_SUCCESS) return absl::UnavailableError(AresError(r));
  std::sort(out.begin(), out.end());
  return out;
}

class DnsProbe : public Probe {
 public:
  DnsProbe(const CheckSpec& spec, ProbeEnv* env, absl::Time deadline)
      : spec_(spec), query_(*ParseQuery(spec, "")), resolver_(env->loop), deadline_(deadline) {}

  void Start(Done done) override {
    start_ = absl::Now();
    if (absl::Status s = resolver_.Init(query_.servers, deadline_ - start_); !s.ok()) {
      Outcome o;
      o.message = std::string(s.message());
      done(std::move(o));
      return;
    }
    resolver_.Query(query_.name, query_.type_code,
                    [this, done = std::move(done)](int status, const unsigned char* buf, int len) {
                      done(Judge(status, buf, len));
                    });
  }
  std::string Phase() const override {
    return absl::StrCat("waiting for the ", query_.type, " answer for ", query_.name,
                        query_.servers.empty() ? "" : absl::StrCat(" from ", query_.servers));
  }
  absl::Time NextTimer() const override { return resolver_.NextTimer(); }
  void OnTimer() override { resolver_.OnTimer(); }

 private:
  Outcome Judge(int status, const unsigned char* buf, int len) {
    Outcome o;
    o.status = v1::CHECK_STATUS_CRITICAL;
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start_);
    o.metrics.emplace_back("probe_dns_lookup_time_seconds", seconds);
    const std::string what = absl::StrCat(query_.name, " ", query_.type);
    if (status != ARES_SUCCESS) {
      o.metrics.emplace_back("probe_dns_answer_rrs", 0);
      o.message = absl::StrCat(what, ": ", AresError(status));
      return o;
    }
    absl::StatusOr<std::vector<std::string>> records = Records(query_.type_code, buf, len);
    if (!records.ok()) {
      o.metrics.emplace_back("probe_dns_answer_rrs", 0);
      o.message = absl::StrCat(what, ": ", records.status().message());
      return o;
    }
    o.metrics.emplace_back("probe_dns_answer_rrs", static_cast<double>(records->size()));
    std::vector<std::string> shown(records->begin(),
                                   records->begin() + std::min<size_t>(records->size(), 5));
    const std::string got =
        absl::StrCat(absl::StrJoin(shown, ", "), records->size() > 5 ? ", ..." : "");
    for (const std::string& want : spec_.config.dns().expect()) {
      if (std::find(records->begin(), records->end(), want) == records->end()) {
        o.message = absl::StrCat(what, ": the answer lacks \"", want, "\" (got ", got, ")");
        return o;
      }
    }
    o.status = v1::CHECK_STATUS_OK;
    o.message = absl::StrCat(what, ": ", got, " in ", static_cast<int64_t>(seconds * 1000), " ms");
    return o;
  }

  const CheckSpec& spec_;
  const DnsQuery query_;
  Resolver resolver_;
  const absl::Time deadline_;
  absl::Time start_;
};

}  // namespace

Protocol DnsProtocol() {
  return {Validate, [](const CheckSpec& spec, ProbeEnv* env, absl::Time deadline) {
            return std::unique_ptr<Probe>(new DnsProbe(spec, env, deadline));
          }};
}

}  // namespace vigie::agent::checks
