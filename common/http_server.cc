#include "common/http_server.h"

#include <exception>

#include "CivetServer.h"
#include "absl/strings/str_cat.h"
#include "common/yaml_config.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace vigie {
namespace {

class GetHandler : public CivetHandler {
 public:
  explicit GetHandler(HttpGetHandler fn) : fn_(std::move(fn)) {}
  bool handleGet(CivetServer*, mg_connection* conn) override {
    HttpResponse r;
    try {
      r = fn_();
    } catch (const std::exception& e) {
      r = {500, "text/plain; charset=utf-8", absl::StrCat("internal error: ", e.what(), "\n")};
    }
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
              r.status, mg_get_response_code_text(conn, r.status), r.content_type.c_str(),
              r.body.size());
    mg_write(conn, r.body.data(), r.body.size());
    return true;
  }

 private:
  HttpGetHandler fn_;
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

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options) {
  if (absl::Status s = ValidateHostPort("http_listen", options.listen); !s.ok()) return s;
  std::unique_ptr<HttpServer> server(new HttpServer());
  std::string ports = options.listen;
  // civetweb wants IPv6 addresses as [::1]:port with a "+" or plain form; keep host:port.
  std::vector<std::string> civet_options = {
      "listening_ports",   ports, "num_threads",        absl::StrCat(options.threads),
      "enable_keep_alive", "no",  "request_timeout_ms", "10000"};
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
    server->handlers_.push_back(std::make_unique<GetHandler>(std::move(fn)));
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
