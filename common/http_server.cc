#include "common/http_server.h"

#include <dlfcn.h>

#include <exception>

#include "CivetServer.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_security.h"
#include "common/secrets.h"
#include "common/status.h"
#include "common/yaml_config.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace vigie {
namespace {

// True if the request carries the configured credential (or none is configured).
bool Authorized(const HttpAuth& auth, mg_connection* conn) {
  if (!auth.has_credential()) return true;
  const char* h = mg_get_header(conn, "Authorization");
  absl::string_view header = h ? h : "";
  if (!auth.bearer_token.empty()) {
    absl::StatusOr<std::string> token = BearerToken(header);
    if (token.ok() && !token->empty() && ConstantTimeEquals(*token, auth.bearer_token)) return true;
  }
  if (!auth.basic_username.empty() && header.size() > 6 &&
      absl::EqualsIgnoreCase(header.substr(0, 6), "basic ")) {
    std::string decoded;
    if (absl::Base64Unescape(header.substr(6), &decoded) &&
        ConstantTimeEquals(decoded, absl::StrCat(auth.basic_username, ":", auth.basic_password))) {
      return true;
    }
  }
  return false;
}

class GetHandler : public CivetHandler {
 public:
  GetHandler(HttpGetHandler fn, const HttpAuth* auth, AuthFailures* failures)
      : fn_(std::move(fn)), auth_(auth), failures_(failures) {}
  bool handleGet(CivetServer*, mg_connection* conn) override {
    HttpResponse r;
    std::string extra_headers;
    if (auth_ != nullptr && !Authorized(*auth_, conn)) {
      r = {401, "text/plain; charset=utf-8", "credentials required\n"};
      extra_headers = auth_->basic_username.empty() ? "WWW-Authenticate: Bearer\r\n"
                                                    : "WWW-Authenticate: Basic realm=\"vigie\"\r\n";
      if (failures_ != nullptr) {
        const mg_request_info* info = mg_get_request_info(conn);
        failures_->Count("http_unauthorized", info && info->local_uri ? info->local_uri : "",
                         "missing or wrong credentials");
      }
    } else {
      try {
        r = fn_();
      } catch (const std::exception& e) {
        r = {500, "text/plain; charset=utf-8", absl::StrCat("internal error: ", e.what(), "\n")};
      }
    }
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
              r.status, mg_get_response_code_text(conn, r.status), r.content_type.c_str(),
              r.body.size(), extra_headers.c_str());
    mg_write(conn, r.body.data(), r.body.size());
    return true;
  }

 private:
  HttpGetHandler fn_;
  const HttpAuth* auth_;  // null: open (/healthz)
  AuthFailures* failures_;
};

}  // namespace

std::string SerializeMetrics(const std::vector<const prometheus::Collectable*>& collectables) {
  std::vector<prometheus::MetricFamily> families;
  for (const prometheus::Collectable* c : collectables) {
    auto f = c->Collect();
    families.insert(families.end(), std::make_move_iterator(f.begin()),
                    std::make_move_iterator(f.end()));
  }
  return prometheus::TextSerializer().Serialize(families);
}

absl::StatusOr<HttpAuth> HttpAuthFromConfig(absl::string_view field, const std::string& listen,
                                            const v1::HttpSecurity& c) {
  HttpAuth a;
  a.cert_file = c.cert_file();
  a.key_file = c.key_file();
  if (a.cert_file.empty() != a.key_file.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": cert_file and key_file go together; set both"));
  }
  if (IsSet(c.bearer_token())) {
    VIGIE_ASSIGN_OR_RETURN(a.bearer_token,
                           ReadSecret(absl::StrCat(field, ".bearer_token"), c.bearer_token()));
  }
  if (!c.basic_auth_username().empty() || IsSet(c.basic_auth_password())) {
    if (c.basic_auth_username().empty() || c.basic_auth_username().find(':') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".basic_auth_username: required with basic_auth_password, without ':'"));
    }
    a.basic_username = c.basic_auth_username();
    VIGIE_ASSIGN_OR_RETURN(a.basic_password, ReadSecret(absl::StrCat(field, ".basic_auth_password"),
                                                        c.basic_auth_password()));
  }
  if (!a.has_credential() && !c.insecure() && !IsLoopback(listen)) {
    VIGIE_RETURN_IF_ERROR(
        RequireLoopback("http_listen", listen,
                        absl::StrCat("set ", field, ".bearer_token or ", field,
                                     ".basic_auth_* to serve /metrics there, or ", field,
                                     ".insecure: true to serve it to anyone")));
  }
  if (!a.cert_file.empty()) {
    // Debian's civetweb loads OpenSSL at run time by the unversioned names, which only the -dev
    // package installs: say so at start rather than fail on the first connection.
    for (const char* lib : {"libssl.so", "libcrypto.so"}) {
      void* h = dlopen(lib, RTLD_LAZY);
      if (h == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".cert_file: HTTPS needs ", lib,
            ", which civetweb loads at run time by that name (Debian package libssl-dev)"));
      }
      dlclose(h);
    }
  }
  return a;
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options) {
  if (absl::Status s = ValidateHostPort("http_listen", options.listen); !s.ok()) return s;
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->auth_ = options.auth;
  std::string ports = options.listen;
  // civetweb wants IPv6 addresses as [::1]:port with a "+" or plain form; keep host:port.
  std::vector<std::string> civet_options = {"num_threads",        absl::StrCat(options.threads),
                                            "enable_keep_alive",  "no",
                                            "request_timeout_ms", "10000"};
  if (!options.auth.cert_file.empty()) {
    VIGIE_ASSIGN_OR_RETURN(std::string pem,
                           CombinedPemFile("http", options.auth.cert_file, options.auth.key_file));
    ports += "s";
    civet_options.insert(civet_options.end(), {"ssl_certificate", pem, "ssl_protocol_version",
                                               "4"});  // TLS 1.2 and later
  }
  civet_options.insert(civet_options.end(), {"listening_ports", ports});
  try {
    server->server_ = std::make_unique<CivetServer>(civet_options);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("http_listen: cannot listen on ", options.listen, ": ", e.what()));
  }
  auto metrics = options.metrics;
  options.handlers.emplace("/metrics", [metrics] {
    return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", SerializeMetrics(metrics)};
  });
  options.handlers.emplace("/healthz", [] { return HttpResponse{200, "text/plain", "ok\n"}; });
  for (auto& [path, fn] : options.handlers) {
    const HttpAuth* auth = path == "/healthz" ? nullptr : &server->auth_;
    server->handlers_.push_back(
        std::make_unique<GetHandler>(std::move(fn), auth, options.failures));
    server->server_->addHandler(path, server->handlers_.back().get());
  }
  std::vector<int> bound = server->server_->getListeningPorts();
  server->port_ = bound.empty() ? 0 : bound[0];
  return server;
}

HttpServer::~HttpServer() {
  if (server_) server_->close();
}

}  // namespace vigie
