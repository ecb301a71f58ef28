//! `[api]`: the HTTP daemon that takes orders.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{at_least_one, InvalidValue, Secret};

/// Who may call the API: `api.auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone who reaches the port may do anything: for the local run and the Swagger UI demo.
    #[default]
    None,
    /// `Authorization: Bearer <JWT>` on every route but `/health`, `/docs` and `/openapi.json`.
    Jwt,
}

/// The engines `api.store_url` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: String,
    /// Longest wait for the broker to acknowledge an order before answering 503.
    pub publish_timeout_ms: u64,
    pub max_body_bytes: usize,
    /// Where the order view lives: `sqlite:<file>` (embedded, the default) or
    /// `postgres://user:password@host/db` (shared by several API instances). A `Secret`: a
    /// PostgreSQL URL may carry a password.
    pub store_url: Secret,
    /// The id of the Kafka cluster the API is connected to, to empty a view built from another
    /// cluster and rebuild it from this one. Only that cluster's id does it, so it is harmless
    /// to leave set: once the view is this cluster's, it changes nothing.
    pub rebuild_view_for_cluster: Option<String>,
    /// The ids (KIP-516) of topics deleted and created again under the same name since the view
    /// read them, to empty the view and rebuild it from the topics as they are now. Only those
    /// ids do it, so it is harmless to leave set.
    pub rebuild_view_for_topic_ids: Vec<String>,
    /// Orders with their verdict are pruned from the view once older than this many days.
    /// Off (`None`, the default): the view keeps every order. Must outlast
    /// `idempotency_ttl_secs`, so a retried key is still told it expired.
    pub view_retention_days: Option<u32>,
    /// How often the pruning runs, in seconds (when `view_retention_days` is set).
    pub view_prune_interval_secs: u64,
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
    /// How long an `Idempotency-Key` stands for the order it created: a retry within it gets
    /// that order back; a reuse after it is refused (422).
    pub idempotency_ttl_secs: u64,
    /// `none` (the default) or `jwt`.
    pub auth: AuthMode,
    /// Under `auth = "none"`, serve on an address other than loopback anyway.
    pub allow_anonymous: bool,
    /// HS256: the shared secret tokens are signed with (at least 32 bytes).
    pub jwt_secret: Option<Secret>,
    /// RS256 or ES256: a PEM file with the issuer's public key (RSA or EC P-256).
    pub jwt_public_key_file: Option<PathBuf>,
    /// The `iss` every token must carry, when set.
    pub jwt_issuer: Option<String>,
    /// The `aud` every token must carry, when set.
    pub jwt_audience: Option<String>,
    /// The value of the token's `role` claim (a string or an array of strings) that makes its
    /// holder an operator, who may post for and read every customer's orders.
    pub jwt_ops_role: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".into(),
            publish_timeout_ms: 5_000,
            max_body_bytes: 16 * 1024,
            store_url: Secret::new("sqlite:pedidos-api.db"),
            rebuild_view_for_cluster: None,
            rebuild_view_for_topic_ids: Vec::new(),
            view_retention_days: None,
            view_prune_interval_secs: 600,
            head_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            shutdown_timeout_ms: 10_000,
            idempotency_ttl_secs: 24 * 3_600,
            auth: AuthMode::None,
            allow_anonymous: false,
            jwt_secret: None,
            jwt_public_key_file: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_ops_role: "ops".into(),
        }
    }
}

impl ApiConfig {
    /// The largest accepted HTTP timeout (one hour): anything longer is a typo, not a choice.
    pub const MAX_HTTP_TIMEOUT_MS: u64 = 3_600_000;
    /// The shortest HS256 secret: RFC 7518 §3.2 asks for a key as long as the hash, 256 bits.
    pub const MIN_JWT_SECRET_BYTES: usize = 32;

    /// The longest `idempotency_ttl_secs`: 30 days.
    pub const MAX_IDEMPOTENCY_TTL_SECS: u64 = 30 * 24 * 3_600;

    pub fn idempotency_ttl(&self) -> Duration {
        Duration::from_secs(self.idempotency_ttl_secs)
    }

    /// How long final orders stay in the view, when they are pruned at all.
    pub fn view_retention(&self) -> Option<Duration> {
        self.view_retention_days
            .map(|days| Duration::from_secs(u64::from(days) * 86_400))
    }

    pub fn view_prune_interval(&self) -> Duration {
        Duration::from_secs(self.view_prune_interval_secs)
    }

    /// The listen address (valid once the section has been validated).
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.listen.parse().ok()
    }

    /// How long the broker has to acknowledge a POST's records, and the view to take its order.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }
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
        if !(1..=Self::MAX_IDEMPOTENCY_TTL_SECS).contains(&self.idempotency_ttl_secs) {
            return Err(InvalidValue::new(
                "idempotency_ttl_secs",
                format!(
                    "must be between 1 and {} (30 days), got {}",
                    Self::MAX_IDEMPOTENCY_TTL_SECS,
                    self.idempotency_ttl_secs
                ),
            ));
        }
        self.validate_retention()?;
        self.validate_store()?;
        self.validate_auth()
    }

    fn validate_retention(&self) -> Result<(), InvalidValue> {
        at_least_one("view_prune_interval_secs", self.view_prune_interval_secs)?;
        let Some(days) = self.view_retention_days else {
            return Ok(());
        };
        let outlasts_keys = u64::from(days) * 86_400 > self.idempotency_ttl_secs;
        if days == 0 || !outlasts_keys {
            return Err(InvalidValue::new(
                "view_retention_days",
                format!(
                    "must be at least 1 and longer than api.idempotency_ttl_secs ({} s), so a \
                     retried Idempotency-Key is told it expired rather than placing its order \
                     again; got {days} (leave it unset to keep every order)",
                    self.idempotency_ttl_secs
                ),
            ));
        }
        Ok(())
    }

    /// Which kind of store `store_url` names.
    pub fn store_kind(&self) -> Option<StoreKind> {
        StoreKind::of(self.store_url.expose())
    }

    /// `store_url` without its credentials or query, for messages and logs.
    pub fn store_label(&self) -> String {
        let url = self.store_url.expose();
        match url.split_once("://") {
            Some((scheme, rest)) => {
                let rest = rest.split('?').next().unwrap_or_default();
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                let user = rest
                    .rsplit_once('@')
                    .and_then(|(userinfo, _)| userinfo.split(':').next())
                    .map(|user| format!("{user}@"))
                    .unwrap_or_default();
                format!("{scheme}://{user}{host}")
            }
            None => url.to_string(),
        }
    }

    fn validate_store(&self) -> Result<(), InvalidValue> {
        let Some(kind) = self.store_kind() else {
            return Err(InvalidValue::new(
                "store_url",
                "must be sqlite:<file> or postgres://user:password@host/database",
            ));
        };
        if kind == StoreKind::Sqlite && self.store_url.expose()["sqlite:".len()..].is_empty() {
            return Err(InvalidValue::new(
                "store_url",
                "names no file: use sqlite:<file>, e.g. sqlite:pedidos-api.db",
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), InvalidValue> {
        let secret = self.jwt_secret.as_ref().filter(|s| !s.is_empty());
        let key_file = self
            .jwt_public_key_file
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty());
        for (key, value) in [
            ("jwt_issuer", &self.jwt_issuer),
            ("jwt_audience", &self.jwt_audience),
        ] {
            if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
                return Err(InvalidValue::new(key, "must not be empty when set"));
            }
        }
        if self.auth == AuthMode::None {
            return Ok(());
        }
        match (secret, key_file) {
            (None, None) => Err(InvalidValue::new(
                "auth",
                "\"jwt\" needs api.jwt_secret (HS256) or api.jwt_public_key_file (RS256/ES256)",
            )),
            (Some(_), Some(_)) => Err(InvalidValue::new(
                "jwt_secret",
                "set api.jwt_secret or api.jwt_public_key_file, not both",
            )),
            (Some(secret), None) if secret.expose().len() < Self::MIN_JWT_SECRET_BYTES => {
                Err(InvalidValue::new(
                    "jwt_secret",
                    format!(
                        "must be at least {} bytes long, got {}",
                        Self::MIN_JWT_SECRET_BYTES,
                        secret.expose().len()
                    ),
                ))
            }
            _ if self.jwt_ops_role.trim().is_empty() => {
                Err(InvalidValue::new("jwt_ops_role", "must not be empty"))
            }
            _ => Ok(()),
        }
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
        assert_eq!(c.api.auth, defaults.auth);
        assert_eq!(c.api.idempotency_ttl_secs, defaults.idempotency_ttl_secs);
        assert_eq!(c.api.allow_anonymous, defaults.allow_anonymous);
        assert_eq!(c.api.jwt_ops_role, defaults.jwt_ops_role);
        assert!(c.api.jwt_secret.is_none() && c.api.jwt_public_key_file.is_none());
        assert_eq!(c.api.store_url, defaults.store_url);
    }

    #[test]
    fn the_store_is_embedded_by_default_and_postgres_on_request() {
        let c = Config::from_sources(None, Vec::new()).unwrap();
        assert_eq!(c.api.store_kind(), Some(StoreKind::Sqlite));
        let url = "postgres://pedidos:hunter2-pg@db:5432/pedidos";
        let c = load("", &[("PEDIDOS_API__STORE_URL", url)]).unwrap();
        assert_eq!(c.api.store_kind(), Some(StoreKind::Postgres));
        assert_eq!(c.api.store_url.expose(), url);
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "the password stays out of Debug"
        );
        assert_eq!(c.api.store_label(), "postgres://pedidos@db:5432/pedidos");
        let c = load(
            "",
            &[("PEDIDOS_API__STORE_URL", "postgres://db/p?password=x")],
        )
        .unwrap();
        assert_eq!(c.api.store_label(), "postgres://db/p");
        for bad in ["", "sqlite:", "mysql://db/pedidos", "pedidos.db"] {
            let e = err(&format!("[api]\nstore_url = {bad:?}\n"), &[]);
            assert!(e.contains("api.store_url"), "{bad:?}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn view_retention_is_off_by_default_and_must_outlast_the_idempotency_ttl() {
        let c = Config::from_sources(None, Vec::new()).unwrap();
        assert_eq!(c.api.view_retention(), None);
        let c = load("[api]\nview_retention_days = 30\n", &[]).unwrap();
        assert_eq!(
            c.api.view_retention(),
            Some(std::time::Duration::from_secs(30 * 86_400))
        );
        for (days, ttl) in [("0", "3600"), ("1", "86400"), ("2", "259200")] {
            let e = load(
                "",
                &[
                    ("PEDIDOS_API__VIEW_RETENTION_DAYS", days),
                    ("PEDIDOS_API__IDEMPOTENCY_TTL_SECS", ttl),
                ],
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("view_retention_days") && e.contains("idempotency_ttl_secs"),
                "{days} days, ttl {ttl}: {e}"
            );
        }
        assert!(load("[api]\nview_prune_interval_secs = 0\n", &[]).is_err());
    }

    #[test]
    fn auth_is_none_by_default_with_ops_as_the_operator_role() {
        let c = Config::from_sources(None, Vec::new()).unwrap();
        assert_eq!(c.api.auth, AuthMode::None);
        assert!(!c.api.allow_anonymous);
        assert_eq!(c.api.jwt_ops_role, "ops");
    }

    #[test]
    fn jwt_mode_takes_a_secret_or_a_key_file_from_file_or_environment() {
        let c = load(
            &format!("[api]\nauth = \"jwt\"\njwt_secret = \"{SECRET}\"\n"),
            &[],
        )
        .unwrap();
        assert_eq!(c.api.auth, AuthMode::Jwt);
        assert_eq!(c.api.jwt_secret.as_ref().unwrap().expose(), SECRET);
        let c = load(
            "",
            &[
                ("PEDIDOS_API__AUTH", "jwt"),
                (
                    "PEDIDOS_API__JWT_PUBLIC_KEY_FILE",
                    "/etc/pedidos/issuer.pem",
                ),
                ("PEDIDOS_API__JWT_ISSUER", "https://id.example"),
                ("PEDIDOS_API__JWT_AUDIENCE", "pedidos"),
                ("PEDIDOS_API__JWT_OPS_ROLE", "admin"),
                ("PEDIDOS_API__ALLOW_ANONYMOUS", "true"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.api.jwt_public_key_file.as_deref(),
            Some(std::path::Path::new("/etc/pedidos/issuer.pem"))
        );
        assert_eq!(c.api.jwt_issuer.as_deref(), Some("https://id.example"));
        assert_eq!(c.api.jwt_audience.as_deref(), Some("pedidos"));
        assert_eq!(c.api.jwt_ops_role, "admin");
        assert!(c.api.allow_anonymous);
    }

    #[test]
    fn jwt_mode_without_a_usable_key_is_refused_by_name() {
        let e = err("[api]\nauth = \"jwt\"\n", &[]);
        assert!(e.contains("api.auth"), "{e}");
        assert!(e.contains("api.jwt_secret"), "{e}");
        let e = err(
            "[api]\nauth = \"jwt\"\njwt_secret = \"short-secret\"\n",
            &[],
        );
        assert!(e.contains("api.jwt_secret"), "{e}");
        assert!(e.contains("at least 32 bytes"), "{e}");
        assert!(
            !e.contains("short-secret"),
            "the secret is never quoted: {e}"
        );
        let both = format!(
            "[api]\nauth = \"jwt\"\njwt_secret = \"{SECRET}\"\njwt_public_key_file = \"k.pem\"\n"
        );
        assert!(err(&both, &[]).contains("not both"));
        let e = err("[api]\nauth = \"basic\"\n", &[]);
        assert!(e.contains("api.auth"), "{e}");
        let e = err("", &[("PEDIDOS_API__JWT_ISSUER", " ")]);
        assert!(e.contains("api.jwt_issuer"), "{e}");
    }

    #[test]
    fn idempotency_keys_are_kept_a_day_by_default_and_at_most_30_days() {
        let c = Config::from_sources(None, Vec::new()).unwrap();
        assert_eq!(c.api.idempotency_ttl(), Duration::from_secs(86_400));
        let c = load("", &[("PEDIDOS_API__IDEMPOTENCY_TTL_SECS", "60")]).unwrap();
        assert_eq!(c.api.idempotency_ttl_secs, 60);
        for bad in ["0", "2592001"] {
            let e = err(&format!("[api]\nidempotency_ttl_secs = {bad}\n"), &[]);
            assert!(e.contains("api.idempotency_ttl_secs"), "{e}");
        }
    }

    #[test]
    fn a_jwt_secret_of_the_wrong_type_is_not_quoted() {
        let e = err("[api]\njwt_secret = 987654321\n", &[]);
        assert!(e.contains("api.jwt_secret"), "{e}");
        assert!(!e.contains("987654321"), "{e}");
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
