// The one HTTP listener of each process (civetweb): /metrics in Prometheus text format from
// prometheus-cpp collectables, /healthz, and whatever else the component adds.
#ifndef VIGIE_COMMON_HTTP_SERVER_H_
#define VIGIE_COMMON_HTTP_SERVER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "prometheus/collectable.h"
#include "vigie/v1/config.pb.h"

class CivetServer;
class CivetHandler;

namespace vigie {

class AuthFailures;

// Who may read the listener's pages (all but /healthz) and whether it speaks HTTPS.
struct HttpAuth {
  std::string cert_file;  // HTTPS when set, with key_file
  std::string key_file;
  std::string bearer_token;  // secret
  std::string basic_username;
  std::string basic_password;  // secret
  bool has_credential() const { return !bearer_token.empty() || !basic_username.empty(); }
};
// Reads the secrets `c` names. Beyond loopback a credential is required unless c.insecure.
// Errors name `field` (e.g. "http.basic_auth_password.file: cannot read ...").
absl::StatusOr<HttpAuth> HttpAuthFromConfig(absl::string_view field, const std::string& listen,
                                            const v1::HttpSecurity& c);

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Called on civetweb's worker threads; must be thread-safe.
using HttpGetHandler = std::function<HttpResponse()>;

struct HttpServerOptions {
  // host:port; port 0 picks a free one (see port()).
  std::string listen = "127.0.0.1:0";
  int threads = 4;
  // Served at /metrics. Not owned; must outlive the server.
  std::vector<const prometheus::Collectable*> metrics;
  // Extra GET handlers by exact path. /healthz answers "ok" unless given here.
  std::map<std::string, HttpGetHandler> handlers;
  // Credentials every path but /healthz requires, and HTTPS.
  HttpAuth auth;
  // Counts refused requests (reason "http_unauthorized"); may be null. Not owned.
  AuthFailures* failures = nullptr;
};

// Starts listening in Start(); stops in the destructor. Thread-safe after Start().
class HttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options);
  ~HttpServer();

  int port() const { return port_; }

 private:
  HttpServer() = default;
  // Declared before server_, which is destroyed first: its handlers point at these.
  HttpAuth auth_;
  std::vector<std::unique_ptr<CivetHandler>> handlers_;
  std::unique_ptr<CivetServer> server_;
  int port_ = 0;
};

// The text exposition of `collectables`, as served at /metrics.
std::string SerializeMetrics(const std::vector<const prometheus::Collectable*>& collectables);

}  // namespace vigie

#endif  // VIGIE_COMMON_HTTP_SERVER_H_
