//! What verifying one bearer token costs the API, without the mesh around it: the API's own
//! `api::auth::Auth::caller` on a development HS256 operator token (as loadgen sends), timed over
//! many calls on one core, next to `api.auth = "none"`. The end-to-end runs (`BENCH_AUTH=jwt
//! scripts/bench.sh`) cannot resolve a few microseconds per order on a shared 2-core VM; this can.
//!
//! ```text
//! cargo run --release -p api --example jwt_verify_cost [CALLS]
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use api::auth::Auth;
use shared::config::{ApiConfig, AuthMode, Secret};
use shared::dev_token;

fn main() {
    let calls: u32 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("CALLS is a number"))
        .unwrap_or(200_000);
    let jwt = ApiConfig {
        auth: AuthMode::Jwt,
        jwt_secret: Some(Secret::new("x".repeat(64))),
        ..ApiConfig::default()
    };
    let token = dev_token::mint(&jwt, "loadgen", true, Duration::from_secs(3600)).expect("mint");
    let header = format!("Bearer {token}");
    println!(
        "HS256 operator token of {} bytes, {calls} calls per round",
        token.len()
    );
    for (mode, config) in [("jwt", &jwt), ("none", &ApiConfig::default())] {
        let auth = Auth::from_config(config).expect("auth");
        for round in 1..=3 {
            let started = Instant::now();
            for _ in 0..calls {
                black_box(
                    auth.caller(Some(black_box(header.as_bytes())))
                        .expect("accepted"),
                );
            }
            let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(calls);
            println!("api.auth = {mode:<4}  round {round}: {micros:.2} µs per request");
        }
    }
}
