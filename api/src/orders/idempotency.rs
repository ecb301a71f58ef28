//! `Idempotency-Key` (IETF httpapi draft "The Idempotency-Key HTTP Header Field", as Stripe's API
//! has it): a client that did not hear back can send the same request again without placing a
//! second order.
//!
//! The order id is derived from the customer and the key (UUIDv5), so a retried order is the
//! same order everywhere — on another API instance, after a restart, after a 503 whose record
//! the broker had in fact taken. The mesh already treats an order published twice as one:
//! verdicts are deterministic and every event id derives from the order id. Pure but for
//! [`KeysInFlight`]: `Orders::place` looks the derived id up and asks [`replay`] what to answer.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::events::Order;
use uuid::Uuid;

use super::OrderRequest;

/// The header's name.
pub const HEADER: &str = "Idempotency-Key";

/// The longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// The namespace of derived order ids (a random UUID, fixed forever: changing it would make a
/// retry across versions a new order).
const NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_2f4e_93b1_4c0e_9a57_2d1c_8e40_b7d3);

/// The rule a malformed key breaks, for a 400; the key itself when it is well formed.
pub fn check_key(raw: &str) -> Result<&str, &'static str> {
    if raw.is_empty() {
        return Err("must not be empty");
    }
    if raw.chars().count() > MAX_KEY_CHARS {
        return Err("must be at most 255 characters");
    }
    if raw.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(raw)
}

/// The id of the order `usuario` places with `key`: the same for every retry, distinct between
/// customers using the same key.
pub fn order_id(usuario: &str, key: &str) -> Uuid {
    // The length prefix keeps ("a\nb", "c") and ("a", "b\nc") apart.
    let name = format!("{}:{usuario}\n{key}", usuario.len());
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// What a request with a key gets, given the order its key already stands for.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// A retry: answer the original order, publish nothing.
    Same,
    /// The key was used for another order: 422.
    Conflict,
    /// The key was used longer ago than `api.idempotency_ttl_secs`: 422.
    Expired,
}

/// Compares a keyed request with the order its key already created.
pub fn replay(
    original: &Order,
    request: &OrderRequest,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Replay {
    let age = now.signed_duration_since(original.data_solicitacao);
    if age.to_std().is_ok_and(|age| age > ttl) {
        return Replay::Expired;
    }
    let same = original.usuario == request.usuario
        && original.produto == request.produto
        && original.quantidade == request.quantidade
        && original.valor == request.valor;
    if same {
        Replay::Same
    } else {
        Replay::Conflict
    }
}

/// The order ids of keyed requests being answered right now, on this instance.
#[derive(Default)]
pub(super) struct KeysInFlight(Mutex<HashSet<Uuid>>);

impl KeysInFlight {
    /// The claim to place `id` here, unless a request holding it is still being answered.
    pub(super) fn claim(&self, id: Uuid) -> Option<KeyClaim<'_>> {
        let claimed = self.0.lock().unwrap().insert(id);
        claimed.then_some(KeyClaim { keys: self, id })
    }
}

/// An order id this instance is placing; released when the request ends, however it ends.
pub(super) struct KeyClaim<'a> {
    keys: &'a KeysInFlight,
    pub(super) id: Uuid,
}

impl Drop for KeyClaim<'_> {
    fn drop(&mut self) {
        self.keys.0.lock().unwrap().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    fn request(usuario: &str, valor: &str) -> OrderRequest {
        OrderRequest {
            usuario: usuario.into(),
            produto: "livro".into(),
            quantidade: 2,
            valor: valor.parse().unwrap(),
        }
    }

    fn original_of(request: &OrderRequest, key: &str) -> Order {
        Order {
            id: order_id(&request.usuario, key),
            ..Order::new(
                request.usuario.clone(),
                request.produto.clone(),
                request.quantidade,
                request.valor,
            )
        }
    }

    #[test]
    fn a_key_is_claimed_by_one_request_at_a_time() {
        let keys = KeysInFlight::default();
        let id = order_id("ana", "k");
        let first = keys.claim(id).expect("free");
        assert!(keys.claim(id).is_none(), "held by the first request");
        assert!(keys.claim(order_id("ana", "other")).is_some());
        drop(first);
        assert!(keys.claim(id).is_some(), "released when the request ends");
    }

    #[test]
    fn keys_are_one_to_255_characters_without_controls() {
        assert_eq!(
            check_key("pedido-2026-12-02-0001"),
            Ok("pedido-2026-12-02-0001")
        );
        assert_eq!(check_key(&"é".repeat(255)).map(str::len), Ok(510));
        assert_eq!(check_key(""), Err("must not be empty"));
        assert_eq!(
            check_key(&"k".repeat(256)),
            Err("must be at most 255 characters")
        );
        for bad in ["a\tb", "a\u{7f}", "\u{1}", "a\u{85}b"] {
            assert_eq!(
                check_key(bad),
                Err("must not contain control characters"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_order_id_is_the_same_for_a_retry_and_differs_by_customer_and_key() {
        let id = order_id("ana", "k1");
        assert_eq!(id, order_id("ana", "k1"));
        assert_eq!(id.get_version_num(), 5);
        assert_ne!(id, order_id("bia", "k1"));
        assert_ne!(id, order_id("ana", "k2"));
        assert_ne!(order_id("a\nb", "c"), order_id("a", "b\nc"));
        // Fixed forever: a retry after an upgrade must find the order its first attempt made.
        assert_eq!(
            order_id("ana", "k1").to_string(),
            Uuid::new_v5(&NAMESPACE, b"3:ana\nk1").to_string()
        );
    }

    #[test]
    fn a_retry_with_the_same_body_is_the_same_order() {
        let first = request("ana", "19.90");
        let original = original_of(&first, "k");
        let now = original.data_solicitacao + chrono::Duration::seconds(5);
        let day = Duration::from_secs(86_400);
        assert_eq!(replay(&original, &first, now, day), Replay::Same);
        // The same amount written differently is the same body.
        assert_eq!(
            replay(&original, &request("ana", "19.9"), now, day),
            Replay::Same
        );
        assert_eq!(
            replay(&original, &request("ana", "19.91"), now, day),
            Replay::Conflict
        );
        let mut other_product = first.clone();
        other_product.produto = "caneta".into();
        assert_eq!(
            replay(&original, &other_product, now, day),
            Replay::Conflict
        );
        let mut more = first.clone();
        more.quantidade = 3;
        assert_eq!(replay(&original, &more, now, day), Replay::Conflict);
        assert_eq!(Decimal::new(1990, 2), "19.9".parse::<Decimal>().unwrap());
    }

    #[test]
    fn a_key_older_than_its_ttl_is_expired() {
        let first = request("ana", "1.00");
        let original = original_of(&first, "k");
        let ttl = Duration::from_secs(60);
        let at = |secs| original.data_solicitacao + chrono::Duration::seconds(secs);
        assert_eq!(replay(&original, &first, at(60), ttl), Replay::Same);
        assert_eq!(replay(&original, &first, at(61), ttl), Replay::Expired);
        // A clock behind the one that stamped the order is not an expiry.
        assert_eq!(replay(&original, &first, at(-30), ttl), Replay::Same);
    }
}
