// The floor for memory per idle agent: a bare gRPC callback server that accepts
// AgentGateway.Connect streams (TLS like the control plane's) and holds them, reading and
// discarding messages. scripts/bench-fleet.sh compares the control plane's bytes per idle
// agent with this server's, in the same run.
//   vigie-bare-server --listen 127.0.0.1:7500 --cert_file server.crt --key_file server.key
#include <csignal>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "common/files.h"
#include "common/process.h"
#include "grpcpp/grpcpp.h"
#include "vigie/v1/agent.grpc.pb.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7500", "address");
ABSL_FLAG(std::string, cert_file, "", "PEM certificate (TLS when set)");
ABSL_FLAG(std::string, key_file, "", "PEM key");

namespace {

namespace v1 = vigie::v1;

class Hold : public grpc::ServerBidiReactor<v1::AgentMessage, v1::ControlMessage> {
 public:
  Hold() { StartRead(&in_); }
  void OnReadDone(bool ok) override {
    if (ok) {
      StartRead(&in_);
    } else {
      Finish(grpc::Status::OK);
    }
  }
  void OnDone() override { delete this; }

 private:
  v1::AgentMessage in_;
};

class Service : public v1::AgentGateway::CallbackService {
  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControlMessage>* Connect(
      grpc::CallbackServerContext*) override {
    return new Hold();
  }
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  vigie::RaiseOpenFileLimit();
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!absl::GetFlag(FLAGS_cert_file).empty()) {
    auto cert = vigie::ReadRegularFile(absl::GetFlag(FLAGS_cert_file), 1 << 20);
    auto key = vigie::ReadRegularFile(absl::GetFlag(FLAGS_key_file), 1 << 20);
    if (!cert.ok() || !key.ok()) {
      std::fprintf(stderr, "cannot read the certificate or key\n");
      return 2;
    }
    grpc::SslServerCredentialsOptions o;
    o.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(o);
  }
  Service service;
  grpc::ServerBuilder b;
  b.AddListeningPort(absl::GetFlag(FLAGS_listen), creds);
  b.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (!server) return 1;
  std::printf("listening on %s\n", absl::GetFlag(FLAGS_listen).c_str());
  std::fflush(stdout);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  sigwait(&set, &sig);
  server->Shutdown(std::chrono::system_clock::now());
  return 0;
}
