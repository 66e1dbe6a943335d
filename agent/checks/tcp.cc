// tcp://host:port checks: connect time, and with `tcp: {tls: true}` a TLS handshake.
#include <memory>

#include "absl/strings/str_cat.h"
#include "agent/checks/curl_probe.h"

namespace vigie::agent::checks {
namespace {

absl::Status Validate(CheckSpec* s, const std::string& field) {
  const Target& t = s->parsed;
  if (t.host.empty() || t.port == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".target: \"", s->target, "\" needs a host and a port, e.g. tcp://db:5432"));
  }
  if (!t.path_and_query.empty() && t.path_and_query != "/") {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".target: \"", s->target, "\": a tcp target has no path"));
  }
  return TlsSettingsFromConfig(s->config.tcp().tls_config(), absl::StrCat(field, ".tcp.tls_config"),
                               "", &s->tls);
}

class TcpProbe : public CurlProbe {
 public:
  TcpProbe(const CheckSpec& spec, ProbeEnv* env, absl::Time deadline)
      : CurlProbe(spec, env, deadline, spec.config.tcp().tls()) {}

 protected:
  // curl connects (and with https does the TLS handshake) and stops: CONNECT_ONLY.
  std::string Url() const override {
    const Target& t = spec_.parsed;
    const std::string& host = spec_.tls.server_name.empty() ? t.host : spec_.tls.server_name;
    return absl::StrCat(tls_ ? "https://" : "http://", JoinHostPort(host, t.port), "/");
  }
  absl::Status Configure(CURL* easy) override {
    curl_easy_setopt(easy, CURLOPT_CONNECT_ONLY, 1L);
    return absl::OkStatus();
  }
  Outcome Judge(CURL*) override {
    Outcome o;
    o.status = v1::CHECK_STATUS_OK;
    o.message = absl::StrCat(tls_ ? "connected with TLS in " : "connected in ", Elapsed());
    return o;
  }
};

}  // namespace

Protocol TcpProtocol() {
  return {Validate, [](const CheckSpec& spec, ProbeEnv* env, absl::Time deadline) {
            return std::unique_ptr<Probe>(new TcpProbe(spec, env, deadline));
          }};
}

}  // namespace vigie::agent::checks
