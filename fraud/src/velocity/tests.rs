use rust_decimal::Decimal;

use super::*;

const WINDOW: Duration = Duration::from_secs(60);
const T0: i64 = 1_800_000_000_000;

/// An order of `usuario` at `T0 + ms`, worth `total` (one unit), with id `n`.
fn order(n: u128, usuario: &str, ms: i64, total: i64) -> Order {
    Order {
        id: Uuid::from_u128(n),
        data_solicitacao: DateTime::from_timestamp_millis(T0 + ms).unwrap(),
        ..Order::new(usuario, "livro", 1, Decimal::new(total, 0))
    }
}

fn recent(orders: u32, total: i64) -> Recent {
    Recent {
        orders,
        total: Decimal::new(total, 0),
    }
}

/// The figure of each order, observed in sequence on a fresh window.
fn figures(orders: &[Order]) -> Vec<Recent> {
    let mut window = Window::default();
    orders.iter().map(|o| window.observe(o, WINDOW)).collect()
}

#[test]
fn earlier_orders_of_the_same_customer_within_the_window_count() {
    let orders = [
        order(1, "ana", 0, 10),
        order(2, "ana", 1_000, 20),
        order(3, "bia", 2_000, 500),
        order(4, "ana", 59_000, 30),
        // 60 s after the first: the first is out of (t - 60 s, t].
        order(5, "ana", 60_000, 40),
        order(6, "ana", 200_000, 50),
    ];
    assert_eq!(
        figures(&orders),
        [
            recent(0, 0),
            recent(1, 10),
            recent(0, 0),
            recent(2, 30),
            recent(2, 50),
            recent(0, 0),
        ]
    );
}

#[test]
fn orders_in_the_same_millisecond_count_in_log_order() {
    let orders = [
        order(1, "ana", 5, 10),
        order(2, "ana", 5, 20),
        order(3, "ana", 5, 30),
    ];
    assert_eq!(
        figures(&orders),
        [recent(0, 0), recent(1, 10), recent(2, 30)]
    );
}

#[test]
fn an_order_stamped_earlier_than_its_predecessor_counts_only_what_was_before_it_in_time() {
    // The log order is 1, 2, 3, but 2 carries a time before 1's.
    let orders = [
        order(1, "ana", 10_000, 10),
        order(2, "ana", 9_000, 20),
        order(3, "ana", 10_000, 30),
    ];
    // 2 does not count 1 (later in time); 3 counts both.
    assert_eq!(
        figures(&orders),
        [recent(0, 0), recent(0, 0), recent(2, 30)]
    );
}

#[test]
fn a_duplicate_keeps_its_first_figure_and_is_not_counted_twice() {
    let mut window = Window::default();
    let first = order(1, "ana", 0, 10);
    assert_eq!(window.observe(&first, WINDOW), recent(0, 0));
    assert_eq!(
        window.observe(&order(2, "ana", 100, 20), WINDOW),
        recent(1, 10)
    );
    assert_eq!(
        window.observe(&first, WINDOW),
        recent(0, 0),
        "as the first time"
    );
    assert_eq!(
        window.observe(&order(3, "ana", 200, 30), WINDOW),
        recent(2, 30)
    );
    assert_eq!(window.len(), 3);
}

#[test]
fn old_orders_are_forgotten_and_idle_customers_swept() {
    let mut window = Window::default();
    for n in 0..SWEEP_EVERY as u128 {
        let usuario = format!("cliente{n}");
        window.observe(&order(n, &usuario, n as i64 * 100, 1), WINDOW);
    }
    // Only the customers within window + lateness of the latest order remain.
    let span_ms = (WINDOW + LATENESS).as_millis() as i64;
    let latest = (SWEEP_EVERY as i64 - 1) * 100;
    let kept = (0..SWEEP_EVERY as i64)
        .filter(|n| n * 100 > latest - span_ms)
        .count();
    assert_eq!(window.len(), kept);
    assert!(kept < 1_300, "{kept}");
}

/// A log of 3,000 orders from 40 customers over ~10 minutes, a few out of order by up to 5 s.
fn log() -> Vec<Order> {
    let mut orders = Vec::new();
    let mut seed = 7u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    for n in 0..3_000u128 {
        let jitter = if next() % 10 == 0 {
            -((next() % 5_000) as i64)
        } else {
            0
        };
        let usuario = format!("cliente{}", next() % 40);
        orders.push(order(
            n,
            &usuario,
            n as i64 * 200 + jitter,
            (next() % 90 + 10) as i64,
        ));
    }
    orders
}

/// The definition, by brute force: the earlier orders of the same customer in `(t − W, t]`.
fn by_definition(orders: &[Order]) -> Vec<Recent> {
    orders
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let t = millis(o.data_solicitacao);
            let window = WINDOW.as_millis() as i64;
            let mut recent = Recent::default();
            for earlier in &orders[..i] {
                let at = millis(earlier.data_solicitacao);
                if earlier.usuario == o.usuario && at <= t && at > t - window {
                    recent.orders += 1;
                    recent.total += earlier.total();
                }
            }
            recent
        })
        .collect()
}

#[test]
fn figures_are_the_definition_on_a_long_log_out_of_order_in_places() {
    let orders = log();
    assert_eq!(figures(&orders), by_definition(&orders));
}

#[test]
fn a_window_rebuilt_from_the_span_before_any_record_gives_the_same_figures() {
    // What `pipeline::history` does at an assignment: start fresh at record k, having replayed
    // the records from `history_span` before k's timestamp (here the record timestamp is the
    // dataSolicitacao, as the API stamps it).
    let orders = log();
    let whole = figures(&orders);
    let limits = Limits {
        max_orders: Some(5),
        max_total: None,
        window: WINDOW,
    };
    let span_ms = limits.history_span().as_millis() as i64;
    for k in [1, 17, 500, 1_234, 2_999] {
        let start_ms = millis(orders[k].data_solicitacao) - span_ms;
        // The first offset whose timestamp is at or after start (what offsets_for_times gives).
        let start = orders
            .iter()
            .position(|o| millis(o.data_solicitacao) >= start_ms)
            .unwrap();
        let mut window = Window::default();
        for o in &orders[start..k] {
            window.observe(o, limits.window);
        }
        let rebuilt: Vec<Recent> = orders[k..]
            .iter()
            .map(|o| window.observe(o, limits.window))
            .collect();
        assert_eq!(rebuilt, whole[k..], "rebuilt at record {k}");
    }
}

#[test]
fn limits_come_from_the_configuration_and_are_off_without_one() {
    let mut config = FraudConfig::default();
    assert_eq!(Limits::new(&config), None);
    config.velocity_max_total = Some(Decimal::new(100, 0));
    config.velocity_window_secs = 120;
    let limits = Limits::new(&config).unwrap();
    assert_eq!(limits.max_orders, None);
    assert_eq!(limits.window, Duration::from_secs(120));
    assert_eq!(limits.history_span(), Duration::from_secs(240));
    let o = order(1, "ana", 0, 60);
    assert_eq!(
        limits.refusal(&o, recent(9, 40)),
        None,
        "60 + 40 is not above 100"
    );
    assert!(limits.refusal(&o, recent(0, 41)).is_some());
}
