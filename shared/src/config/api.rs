//! `[api]`: the HTTP daemon that takes orders.

use std::time::Duration;

use serde::Deserialize;

use super::{at_least_one, InvalidValue};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: String,
    /// Longest wait for the broker to acknowledge an order before answering 503.
    pub publish_timeout_ms: u64,
    pub max_body_bytes: usize,
    /// Orders kept in memory for `GET /pedidos` (oldest forgotten first).
    pub max_tracked_orders: usize,
    /// How long a client has to send a complete request head (request line and headers),
    /// counted from the moment its connection opens or the end of the previous response: also
    /// the keep-alive idle timeout. A client that misses it is disconnected without an answer.
    pub head_timeout_ms: u64,
    /// How long a client has to send a request body once its head is in; a late body is
    /// answered 408.
    pub body_timeout_ms: u64,
    /// How long a response write may make no progress (the client stopped reading) before the
    /// connection is closed.
    pub write_timeout_ms: u64,
    /// On shutdown, how long in-flight requests may take to finish before their connections are
    /// cut.
    pub shutdown_timeout_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".into(),
            publish_timeout_ms: 5_000,
            max_body_bytes: 16 * 1024,
            max_tracked_orders: 200_000,
            head_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            shutdown_timeout_ms: 10_000,
        }
    }
}

impl ApiConfig {
    /// The largest accepted HTTP timeout (one hour): anything longer is a typo, not a choice.
    pub const MAX_HTTP_TIMEOUT_MS: u64 = 3_600_000;

    pub fn head_timeout(&self) -> Duration {
        Duration::from_millis(self.head_timeout_ms)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(InvalidValue::new(
                "listen",
                format!(
                    "must be an address like 127.0.0.1:8000, got {:?}",
                    self.listen
                ),
            ));
        }
        at_least_one("publish_timeout_ms", self.publish_timeout_ms)?;
        for (key, ms) in [
            ("head_timeout_ms", self.head_timeout_ms),
            ("body_timeout_ms", self.body_timeout_ms),
            ("write_timeout_ms", self.write_timeout_ms),
            ("shutdown_timeout_ms", self.shutdown_timeout_ms),
        ] {
            if !(1..=Self::MAX_HTTP_TIMEOUT_MS).contains(&ms) {
                return Err(InvalidValue::new(
                    key,
                    format!(
                        "must be between 1 and {} (one hour), got {ms}",
                        Self::MAX_HTTP_TIMEOUT_MS
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{err, load};
    use crate::config::Config;

    #[test]
    fn http_timeouts_default_to_ten_seconds() {
        let c = Config::from_sources(None, Vec::new()).unwrap();
        assert_eq!(c.api.head_timeout(), Duration::from_secs(10));
        assert_eq!(c.api.body_timeout(), Duration::from_secs(10));
        assert_eq!(c.api.write_timeout(), Duration::from_secs(10));
        assert_eq!(c.api.shutdown_timeout(), Duration::from_secs(10));
    }

    #[test]
    fn http_timeouts_come_from_file_and_environment() {
        let file = "[api]\nhead_timeout_ms = 1500\nbody_timeout_ms = 2500\n\
                    write_timeout_ms = 3500\nshutdown_timeout_ms = 4500\n";
        let c = load(file, &[]).unwrap();
        assert_eq!(c.api.head_timeout(), Duration::from_millis(1_500));
        assert_eq!(c.api.body_timeout(), Duration::from_millis(2_500));
        assert_eq!(c.api.write_timeout(), Duration::from_millis(3_500));
        assert_eq!(c.api.shutdown_timeout(), Duration::from_millis(4_500));

        let c = load(
            file,
            &[
                ("PEDIDOS_API__HEAD_TIMEOUT_MS", "100"),
                ("PEDIDOS_API__BODY_TIMEOUT_MS", "200"),
                ("PEDIDOS_API__WRITE_TIMEOUT_MS", "300"),
                ("PEDIDOS_API__SHUTDOWN_TIMEOUT_MS", "400"),
            ],
        )
        .unwrap();
        assert_eq!(c.api.head_timeout_ms, 100);
        assert_eq!(c.api.body_timeout_ms, 200);
        assert_eq!(c.api.write_timeout_ms, 300);
        assert_eq!(c.api.shutdown_timeout_ms, 400);
    }

    #[test]
    fn the_example_file_is_valid_and_documents_the_api_defaults() {
        let example = include_str!("../../../conf.example.toml");
        let c = load(example, &[]).unwrap();
        let defaults = ApiConfig::default();
        assert_eq!(c.api.head_timeout_ms, defaults.head_timeout_ms);
        assert_eq!(c.api.body_timeout_ms, defaults.body_timeout_ms);
        assert_eq!(c.api.write_timeout_ms, defaults.write_timeout_ms);
        assert_eq!(c.api.shutdown_timeout_ms, defaults.shutdown_timeout_ms);
        assert_eq!(c.api.publish_timeout_ms, defaults.publish_timeout_ms);
    }

    #[test]
    fn zero_or_absurd_http_timeouts_are_rejected_by_name() {
        for key in [
            "head_timeout_ms",
            "body_timeout_ms",
            "write_timeout_ms",
            "shutdown_timeout_ms",
        ] {
            for bad in ["0", "3600001", "9223372036854775807"] {
                let e = err(&format!("[api]\n{key} = {bad}\n"), &[]);
                assert!(e.contains("conf.toml"), "{key} = {bad}: {e}");
                assert!(e.contains(&format!("api.{key}")), "{key} = {bad}: {e}");
                assert!(e.contains("between 1 and 3600000"), "{key} = {bad}: {e}");
            }
            let var = format!("PEDIDOS_API__{}", key.to_ascii_uppercase());
            let e = err("", &[(var.as_str(), "0")]);
            assert!(e.contains(&var), "{e}");
            assert!(e.contains(&format!("api.{key}")), "{e}");

            let e = err(&format!("[api]\n{key} = -5\n"), &[]);
            assert!(e.contains(&format!("api.{key}")), "{key} = -5: {e}");
            let e = err(&format!("[api]\n{key} = \"10s\"\n"), &[]);
            assert!(e.contains(&format!("api.{key}")), "{key} = \"10s\": {e}");
        }
        let c = load("[api]\nbody_timeout_ms = 3600000\n", &[]).unwrap();
        assert_eq!(c.api.body_timeout(), Duration::from_secs(3_600));
    }
}
