//! `[schema_registry]`: an optional Confluent-compatible Schema Registry. Off while `url` is
//! empty (the default): records stay plain JSON.

use serde::Deserialize;

use super::{InvalidValue, Secret};

/// A subject's compatibility rule, as the registry names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

impl Compatibility {
    /// The registry's own word for it (`BACKWARD`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
            Self::None => "NONE",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL of the registry's Confluent-compatible API (Confluent Cloud:
    /// `https://psrc-….confluent.cloud`; Apicurio: `http://host:8080/apis/ccompat/v7`).
    /// `""`: no registry.
    pub url: String,
    /// HTTP basic auth: on Confluent Cloud, the Schema Registry API key and secret (not the
    /// Kafka cluster's).
    pub username: String,
    pub password: Secret,
    /// Register each topic's schema at start-up (`true`), or only look it up and refuse to
    /// start when it is not registered (`false`).
    pub auto_register: bool,
    /// The rule set on each subject before registering (only with `auto_register`).
    pub compatibility: Compatibility,
    /// How long one request to the registry may take; a start-up call left unanswered is
    /// asked once more.
    pub timeout_ms: u64,
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            username: String::new(),
            password: Secret::default(),
            auto_register: true,
            compatibility: Compatibility::Backward,
            timeout_ms: 10_000,
        }
    }
}

impl SchemaRegistryConfig {
    /// Whether records go through a registry.
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    pub(super) fn holds_secret(key: &str) -> bool {
        key == "password"
    }

    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        super::at_least_one("timeout_ms", self.timeout_ms)?;
        if !self.enabled() {
            return Ok(());
        }
        let rest = self
            .url
            .strip_prefix("https://")
            .or_else(|| self.url.strip_prefix("http://"))
            .unwrap_or_default();
        if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
            return Err(InvalidValue::new(
                "url",
                format!(
                    "must be an http:// or https:// URL like https://psrc-xxxxx.us-east-1.aws.confluent.cloud, got {:?}",
                    self.url
                ),
            ));
        }
        if rest
            .split('/')
            .next()
            .is_some_and(|host| host.contains('@'))
        {
            return Err(InvalidValue::new(
                "url",
                "must not hold credentials: set username and password",
            ));
        }
        if self.username.is_empty() != self.password.is_empty() {
            return Err(InvalidValue::new(
                if self.username.is_empty() {
                    "username"
                } else {
                    "password"
                },
                "username and password go together (the registry's API key and secret)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing;

    #[test]
    fn off_by_default_and_set_from_the_file_or_the_environment() {
        let c = testing::load("", &[]).unwrap();
        assert!(!c.schema_registry.enabled());
        assert!(c.schema_registry.auto_register);
        assert_eq!(c.schema_registry.compatibility, Compatibility::Backward);

        let c = testing::load(
            "[schema_registry]\nurl = \"https://psrc-1.confluent.cloud\"\nusername = \"KEY\"\npassword = \"s3cr3t-value\"\ncompatibility = \"FULL\"\nauto_register = false\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.schema_registry.url, "https://psrc-1.confluent.cloud");
        assert_eq!(c.schema_registry.compatibility, Compatibility::Full);
        assert!(!c.schema_registry.auto_register);
        assert!(!format!("{c:?}").contains("s3cr3t-value"));

        let c = testing::load(
            "",
            &[
                ("PEDIDOS_SCHEMA_REGISTRY__URL", "http://127.0.0.1:8081"),
                ("PEDIDOS_SCHEMA_REGISTRY__COMPATIBILITY", "NONE"),
            ],
        )
        .unwrap();
        assert_eq!(c.schema_registry.url, "http://127.0.0.1:8081");
        assert_eq!(c.schema_registry.compatibility, Compatibility::None);
    }

    #[test]
    fn bad_values_are_named_and_the_password_never_quoted() {
        for (vars, key) in [
            (
                vec![("PEDIDOS_SCHEMA_REGISTRY__URL", "psrc-1:443")],
                "schema_registry.url",
            ),
            (
                vec![("PEDIDOS_SCHEMA_REGISTRY__URL", "https://key:pw@psrc-1")],
                "schema_registry.url",
            ),
            (
                vec![
                    ("PEDIDOS_SCHEMA_REGISTRY__URL", "https://psrc-1"),
                    ("PEDIDOS_SCHEMA_REGISTRY__PASSWORD", "hunter2-secret"),
                ],
                "schema_registry.username",
            ),
            (
                vec![("PEDIDOS_SCHEMA_REGISTRY__COMPATIBILITY", "SIDEWAYS")],
                "schema_registry.compatibility",
            ),
        ] {
            let e = testing::err("", &vars);
            assert!(e.contains(key), "{vars:?}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn the_example_file_documents_the_section() {
        let example = include_str!("../../../conf.example.toml");
        assert!(example.contains("[schema_registry]"));
        let c = testing::load(example, &[]).unwrap();
        assert!(!c.schema_registry.enabled());
    }
}
