#include <integration/services/failure_service.hpp>

namespace integration::failures {

failure_service::failure_service(storage::store& store, clock const& clock) : store_(store), clock_(clock) {}

result<integration_failure> failure_service::find(request_context const& ctx, std::string const& failure_id) {
    return storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) { return uow.failures().find(failure_id); });
}

result<storage::page<integration_failure>> failure_service::list(request_context const& ctx,
                                                                 storage::failure_query const& q,
                                                                 storage::page_request const& page) {
    return storage::read_for(store_, ctx, [&](storage::unit_of_work& uow) { return uow.failures().list(q, page); });
}

result<integration_failure> failure_service::escalate(request_context const& ctx, std::string const& failure_id,
                                                      std::string const& reason, std::optional<std::string> ticket_ref) {
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_failure> {
        auto f = uow.failures().find(failure_id);
        if (!f) return f.error();
        // A retry worker resuming its run now may be calling the vendor: escalated meanwhile, the
        // run would be sent after a person was told it never is, and its outcome lost.
        auto held = uow.failures().leased(failure_id, clock_.now());
        if (!held) return held.error();
        if (*held)
            return error{errc::invalid_state, "failure " + failure_id + " is being retried right now; escalate it once "
                                              "that attempt is recorded (in a few seconds)"};
        if (auto e = f->escalate({ctx.actor, reason, clock_.now(), ticket_ref}); !e) return e.error();
        if (auto sv = uow.failures().save(*f); !sv) return sv.error();
        // The retry worker resumes only failures to retry: a run this one kept Running (waiting for
        // its next attempt) ends now, with this failure's classification, or it never would.
        if (auto const& run_id = f->data().run_id) {
            auto run = uow.runs().find(*run_id);
            if (!run && run.error() != errc::not_found) return run.error();
            if (run && run->status() == runs::run_status::running) {
                classification c{f->data().category, f->data().error_code, f->data().message, next_action::escalate, std::nullopt};
                if (auto s = run->fail(clock_.now(), c, run->data().response_ref); !s) return s.error();
                if (auto sv = uow.runs().save(*run); !sv) return sv.error();
            }
        }
        return std::move(*f);
    });
}

result<integration_failure> failure_service::resolve(request_context const& ctx, std::string const& failure_id,
                                                     source_outcome outcome) {
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_failure> {
        auto f = uow.failures().find(failure_id);
        if (!f) return f.error();
        // "Resolved only when its source reaches a terminal success or dead-letter state": a run
        // or delivery still under way (one the retry worker or the delivery worker will try
        // again), or a connection whose probes still fail, keeps its failure open, whatever the
        // caller says. A source archived since is
        // taken at the caller's word.
        if (auto const& run_id = f->data().run_id) {
            auto run = uow.runs().find(*run_id);
            if (!run && run.error() != errc::not_found) return run.error();
            if (run && (run->status() == runs::run_status::pending || run->status() == runs::run_status::running))
                return error{errc::invalid_state, "run " + *run_id + " is still " + std::string(to_string(run->status())) +
                                                      "; its failure is resolved when the run ends"};
        } else if (auto const& connection_id = f->data().connection_id) {
            auto c = uow.connections().find(*connection_id);
            if (!c && c.error() != errc::not_found) return c.error();
            if (c && c->status() != connections::connection_status::retired &&
                c->data().health != health_status::healthy)
                return error{errc::invalid_state, "connection " + *connection_id + " is still " +
                                                      std::string(to_string(c->data().health)) +
                                                      "; its failure is resolved when a health probe passes"};
        } else if (auto const& delivery_id = f->data().delivery_id) {
            auto d = uow.deliveries().find(*delivery_id);
            if (!d && d.error() != errc::not_found) return d.error();
            if (d && (d->status() == webhooks::delivery_status::pending || d->status() == webhooks::delivery_status::failed))
                return error{errc::invalid_state, "delivery " + *delivery_id + " is still " +
                                                      std::string(to_string(d->status())) +
                                                      " and will be sent again; its failure is resolved when it ends"};
        }
        if (auto r = f->resolve(outcome, clock_.now()); !r) return r.error();
        if (auto sv = uow.failures().save(*f); !sv) return sv.error();
        // A dead event's aggregate waits behind it: the person who resolves its failure lets the
        // later events go without it. One replayed or removed since has nothing to release.
        if (auto const& event_id = f->data().event_id)
            if (auto r = uow.release_dead_event(*event_id, false); !r && r.error() != errc::not_found) return r.error();
        return std::move(*f);
    });
}

result<integration_failure> failure_service::replay(request_context const& ctx, std::string const& failure_id) {
    return storage::transact_for(store_, ctx, [&](storage::unit_of_work& uow) -> result<integration_failure> {
        auto f = uow.failures().find(failure_id);
        if (!f) return f.error();
        auto const& event_id = f->data().event_id;
        if (!event_id)
            return error{errc::invalid_state,
                         "failure " + failure_id + " is of a " + std::string(to_string(f->data().source)) +
                             "; only a dead outbox event's failure is replayed (a run is run again, a delivery replayed)"};
        if (f->resolved()) return error{errc::invalid_state, "failure " + failure_id + " is already resolved"};
        // Its episode ends here: published, the event needs nothing more; parked again, it is
        // told by a failure of its own.
        if (auto r = uow.release_dead_event(*event_id, true); !r) {
            if (r.error() != errc::not_found) return r.error();
            return error{errc::invalid_state, "event " + *event_id + " of failure " + failure_id +
                                                  " is no longer dead (published, released or removed)"};
        }
        if (auto r = f->resolve(source_outcome::dead_lettered, clock_.now()); !r) return r.error();
        if (auto sv = uow.failures().save(*f); !sv) return sv.error();
        return std::move(*f);
    });
}

}  // namespace integration::failures
