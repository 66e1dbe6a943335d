#include "controlplane/dispatcher.h"

#include "common/grpc_security.h"
#include "common/log.h"
#include "grpcpp/grpcpp.h"

namespace vigie::controlplane {

Dispatcher::Dispatcher(DispatcherOptions options, Store* store, prometheus::Registry* registry)
    : Runnable("dispatcher"),
      options_(std::move(options)),
      store_(store),
      backoff_(options_.backoff),
      sent_(prometheus::BuildCounter()
                .Name("vigie_controlplane_notifications_total")
                .Help("Attempts to hand alert transitions to the notifier, by result.")
                .Register(*registry)),
      pending_(prometheus::BuildGauge()
                   .Name("vigie_controlplane_outbox_pending")
                   .Help("Alert transitions stored but not yet accepted by the notifier.")
                   .Register(*registry)
                   .Add({})),
      oldest_(prometheus::BuildGauge()
                  .Name("vigie_controlplane_outbox_oldest_seconds")
                  .Help("Age of the oldest alert transition not yet accepted by the notifier.")
                  .Register(*registry)
                  .Add({})) {
  for (const char* r : {"delivered", "duplicate", "failed"}) sent_.Add({{"result", r}});
  if (options_.channel) stub_ = v1::Notifier::NewStub(options_.channel);
}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Run() {
  do {
    auto pending = store_->PendingOutbox();
    if (pending.ok()) {
      pending_.Set(static_cast<double>(pending->pending));
      oldest_.Set(absl::ToDoubleSeconds(pending->oldest));
    }
    if (!stub_) continue;
    // Alive and able to reach the database: tell the notifier's dead-man's switch.
    if (pending.ok() && absl::Now() - last_heartbeat_ >= options_.heartbeat_interval) {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
      AddBearerToken(&ctx, options_.token);
      v1::HeartbeatRequest hb;
      hb.set_source(options_.source);
      hb.set_sent_at_ms(absl::ToUnixMillis(absl::Now()));
      v1::HeartbeatResponse resp;
      grpc::Status s = stub_->Heartbeat(&ctx, hb, &resp);
      if (s.ok()) {
        last_heartbeat_ = absl::Now();
      } else if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
        last_heartbeat_ = absl::InfiniteFuture();  // an older notifier: stop trying
      }
    }
    bool failed = false;
    int delivered = 0;
    // A claim outlives the longest pass (every call timing out), so no other replica takes an
    // entry this one is still working on.
    const absl::Duration lease = options_.batch * options_.rpc_timeout + absl::Seconds(30);
    absl::StatusOr<int> r =
        store_->DispatchOutbox(options_.batch, lease, [&](const OutboxEntry& e) {
          grpc::ClientContext ctx;
          ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
          AddBearerToken(&ctx, options_.token);
          v1::NotifyResponse resp;
          grpc::Status s = stub_->Notify(&ctx, e.request, &resp);
          if (s.ok()) {
            sent_.Add({{"result", resp.duplicate() ? "duplicate" : "delivered"}}).Increment();
            backoff_.Reset();
            return Store::DeliveryOutcome{true, "", absl::ZeroDuration()};
          }
          failed = true;
          sent_.Add({{"result", "failed"}}).Increment();
          // The notifier as a whole failed (down, overloaded, refusing our token): stop this pass.
          // Otherwise only this notification was refused: the others go on.
          const bool whole = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                             s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                             s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                             s.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
                             s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
                             s.error_code() == grpc::StatusCode::UNIMPLEMENTED;
          absl::Duration retry = backoff_.Next();
          log::Warn("notifier did not accept a notification; will retry",
                    {{"key", e.request.idempotency_key()},
                     {"code", static_cast<int>(s.error_code())},
                     {"error", s.error_message()},
                     {"retry_in", absl::FormatDuration(retry)}});
          return Store::DeliveryOutcome{false, s.error_message(), retry, whole};
        });
    if (!r.ok()) {
      log::Warn("outbox dispatch failed", {{"error", r.status()}});
      continue;
    }
    delivered = *r;
    // A full batch went out: there may be more due right away.
    if (!failed && delivered == options_.batch) Wake();
  } while (WaitFor(options_.poll_interval));
}

}  // namespace vigie::controlplane
