//! What placing orders counts: orders accepted, and how long the broker takes to acknowledge
//! each record. (Requests, statuses and refusals by reason are the HTTP layer's.)

use std::sync::LazyLock;

use shared::metrics::prometheus::{Histogram, IntCounter};

/// Orders published and acknowledged (a retried `Idempotency-Key` answered from the view is not
/// counted again).
pub(super) static ORDERS_ACCEPTED: LazyLock<IntCounter> = LazyLock::new(|| {
    shared::metrics::counter(
        "pedidos_orders_accepted_total",
        "Orders accepted: published to Pedidos and acknowledged by the broker (202).",
    )
});

/// The broker's acknowledgement of each record the API publishes.
pub(super) static BROKER_ACK: LazyLock<Histogram> = LazyLock::new(|| {
    shared::metrics::histogram(
        "pedidos_broker_ack_duration_seconds",
        "From handing a record to the producer to the broker's acknowledgement (or failure).",
    )
});

/// Registers the families up front, so they are scraped (at zero) before the first order: a
/// rate needs the counter's value before its first increase.
pub(super) fn register() {
    LazyLock::force(&ORDERS_ACCEPTED);
    LazyLock::force(&BROKER_ACK);
}
