//! Placing an order: [`Orders::place`] authorizes the caller, honours an `Idempotency-Key`,
//! publishes the order and its `Analise` (answering only once the broker has both), and records
//! the order in the view. No HTTP here: the handler parses the request
//! ([`parse_order_request`]) and maps a [`PlaceError`] onto its status.
//!
//! - [`request`]: a client's order as JSON, checked field by field;
//! - [`idempotency`]: keys → order ids, what a retry gets, keys being answered right now;
//! - [`publisher`]: the two records on the broker;
//! - `metrics`: orders accepted, broker acknowledgements.

pub mod idempotency;
mod metrics;
pub mod publisher;
pub mod request;

use std::time::Duration;

use chrono::Utc;
use shared::config::ApiConfig;
use shared::events::{Order, StatusEvent};
use shared::telemetry::trace_context;
use uuid::Uuid;

pub use self::publisher::{PublishError, Publisher};
pub use self::request::{parse_order_request, OrderRequest};

use self::idempotency::{KeyClaim, KeysInFlight, Replay};
use crate::auth::Caller;
use crate::view::{CatchUpError, StoreError, ViewHandle};

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("an order may only be placed for the token's own subject")]
    Forbidden,
    #[error("a request with this Idempotency-Key is still being answered: retry shortly")]
    KeyInProgress,
    #[error("was used for another order: a retry must repeat the same body")]
    KeyReused,
    #[error("was used longer ago than api.idempotency_ttl_secs: send a new key")]
    KeyExpired,
    /// The view could not be brought up to date, so whether the key was used is unknown.
    #[error("cannot tell whether this Idempotency-Key was used, try again later: {0}")]
    KeyUnchecked(CatchUpError),
    /// The view could not be read to find the key's order.
    #[error("the order store cannot answer right now, try again later: {0}")]
    Store(StoreError),
    /// The store cannot write, so the order could not be shown after its 202, nor found by a
    /// retry: it is not placed (nothing is published).
    #[error("the order was not placed, try again later: {0}")]
    NotWritable(StoreError),
    /// The broker did not acknowledge the records in time; the order is not accepted.
    #[error("the order was not accepted, try again later: {0}")]
    Broker(PublishError),
}

/// Places orders. One per API instance, shared by every request.
pub struct Orders {
    publisher: Publisher,
    view: ViewHandle,
    idempotency_ttl: Duration,
    keys_in_flight: KeysInFlight,
}

impl Orders {
    pub fn new(publisher: Publisher, view: ViewHandle, api: &ApiConfig) -> Self {
        metrics::register();
        Self {
            publisher,
            view,
            idempotency_ttl: api.idempotency_ttl(),
            keys_in_flight: KeysInFlight::default(),
        }
    }

    /// Places `request` for `caller`, or — for a retried `key` — answers the order the key
    /// already stands for, publishing nothing. `trace` is the request's headers: the order's
    /// span continues the caller's trace (`traceparent`) or starts one, and its records carry
    /// it on. A well-formed `key` is the caller's to check first
    /// ([`idempotency::check_key`]).
    pub async fn place<'h>(
        &self,
        caller: &Caller,
        request: OrderRequest,
        key: Option<&str>,
        trace: impl Iterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) -> Result<Order, PlaceError> {
        if !caller.may_act_for(&request.usuario) {
            return Err(PlaceError::Forbidden);
        }
        // Held until the answer is out: the key is this request's meanwhile.
        let claim = match key {
            None => None,
            Some(key) => {
                let id = idempotency::order_id(&request.usuario, key);
                match self.claim_key(id, &request).await? {
                    Claimed::Replayed(original) => return Ok(original),
                    Claimed::New(claim) => Some(claim),
                }
            }
        };
        // Checked after the key: a retry of an order the store holds is answered all the same.
        self.view.writable().map_err(PlaceError::NotWritable)?;
        let mut order = Order::new(
            request.usuario,
            request.produto,
            request.quantidade,
            request.valor,
        );
        if let Some(claim) = &claim {
            order.id = claim.id;
        }
        let received = StatusEvent::received(&order);
        let span =
            tracing::info_span!("order", trace_id = tracing::field::Empty, pedido = %order.id);
        let trace = trace_context::continue_trace(&span, trace);
        let published = self.publisher.publish(&order, &received, &trace).await;
        // A GET that follows the 202 finds the order (see `ViewHandle::record_accepted`). The
        // order is on the broker whatever happens here, so a failure still answers 202; the
        // reader writes it later.
        let recorded = match &published {
            Ok(()) => self.view.record_accepted(&order, &received).await,
            Err(_) => Ok(()),
        };
        // Entered only now: no await follows while it is held.
        let _in_span = span.enter();
        match published {
            Ok(()) => {
                if let Err(e) = recorded {
                    tracing::warn!(pedido = %order.id, error = %e, "accepted order not in the store yet");
                }
                tracing::info!(pedido = %order.id, usuario = %order.usuario, "order accepted");
                metrics::ORDERS_ACCEPTED.inc();
                Ok(order)
            }
            Err(e) => {
                tracing::warn!(pedido = %order.id, error = %e, "order not accepted: broker unavailable");
                Err(PlaceError::Broker(e))
            }
        }
    }

    /// For a keyed request: the order its key already stands for, or — once no instance can
    /// have published one under it — the claim to publish it here.
    async fn claim_key(&self, id: Uuid, request: &OrderRequest) -> Result<Claimed<'_>, PlaceError> {
        if let Some(original) = self.replayed(id, request).await? {
            return Ok(Claimed::Replayed(original));
        }
        // The view does not move while the store cannot write: no use waiting for it below.
        self.view.writable().map_err(PlaceError::NotWritable)?;
        let claim = self
            .keys_in_flight
            .claim(id)
            .ok_or(PlaceError::KeyInProgress)?;
        // Another instance, or this one before a restart, may have published it: wait until the
        // view holds everything on Pedidos up to now.
        if let Err(e) = self.view.wait_caught_up().await {
            tracing::warn!(pedido = %id, error = %e, "cannot check an Idempotency-Key");
            return Err(PlaceError::KeyUnchecked(e));
        }
        if let Some(original) = self.replayed(id, request).await? {
            return Ok(Claimed::Replayed(original));
        }
        // Pruned by the view's retention, which outlasts the key's TTL: expired, never placed
        // a second time under the same id.
        let pruned = self.view.pruned_key(id).await;
        if pruned.map_err(PlaceError::Store)?.is_some() {
            return Err(PlaceError::KeyExpired);
        }
        Ok(Claimed::New(claim))
    }

    /// The order a keyed request's key already stands for, if it does and the request repeats
    /// it.
    async fn replayed(
        &self,
        id: Uuid,
        request: &OrderRequest,
    ) -> Result<Option<Order>, PlaceError> {
        let view = self.view.order(id).await.map_err(PlaceError::Store)?;
        let Some(original) = view.and_then(|v| v.order) else {
            return Ok(None);
        };
        match idempotency::replay(&original, request, Utc::now(), self.idempotency_ttl) {
            Replay::Same => Ok(Some(original)),
            Replay::Conflict => Err(PlaceError::KeyReused),
            Replay::Expired => Err(PlaceError::KeyExpired),
        }
    }
}

/// What a keyed request's key stands for.
enum Claimed<'a> {
    /// A retry: the original order.
    Replayed(Order),
    /// A new order, to be placed under the key's id.
    New(KeyClaim<'a>),
}
