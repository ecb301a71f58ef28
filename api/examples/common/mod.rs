//! What the store-pricing examples share: their settings from the environment, and the store
//! they price.

use api::view::Store;
use shared::config::{ApiConfig, Secret};
use tempfile::TempDir;

/// The variable `name` parsed, or `default` when it is unset or does not parse.
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The store `STORE_URL` names, or a fresh SQLite file in a temporary directory (kept while
/// the returned guard lives).
pub async fn open_store() -> (Store, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("STORE_URL")
        .unwrap_or_else(|_| format!("sqlite:{}", dir.path().join("view.db").display()));
    let api = ApiConfig {
        store_url: Secret::new(url),
        ..ApiConfig::default()
    };
    let store = Store::open(&api).await.expect("the store opens");
    (store, dir)
}
