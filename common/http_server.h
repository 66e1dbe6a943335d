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
#include "prometheus/collectable.h"

class CivetServer;
class CivetHandler;

namespace vigie {

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
};

// Starts listening in Start(); stops in the destructor. Thread-safe after Start().
class HttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options);
  ~HttpServer();

  int port() const { return port_; }

 private:
  HttpServer() = default;
  std::vector<std::unique_ptr<CivetHandler>> handlers_;
  std::unique_ptr<CivetServer> server_;
  int port_ = 0;
};

// The text exposition of `collectables`, as served at /metrics.
std::string SerializeMetrics(const std::vector<const prometheus::Collectable*>& collectables);

}  // namespace vigie

#endif  // VIGIE_COMMON_HTTP_SERVER_H_
