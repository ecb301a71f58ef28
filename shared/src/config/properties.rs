//! [`Properties`]: librdkafka properties passed through verbatim, secrets hidden from `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// librdkafka properties passed through verbatim. `Debug` hides the values of keys that hold
/// secrets (`sasl.password`, `ssl.key.password`, `sasl.oauthbearer.client.secret`, …).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Properties(pub BTreeMap<String, String>);

impl Properties {
    /// Whether a librdkafka property's value is a secret or private key material.
    pub fn is_secret(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        [
            "password",
            "secret",
            "key.pem",
            "oauthbearer.config",
            "keystore",
        ]
        .iter()
        .any(|s| key.contains(s))
    }
}

impl std::ops::Deref for Properties {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Properties {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if Self::is_secret(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::load;

    #[test]
    fn secret_passthrough_properties_never_show_in_debug_output() {
        let c = load(
            r#"
            [kafka.properties]
            "ssl.key.password" = "pw-one-very-secret"
            "sasl.oauthbearer.client.secret" = "pw-two-very-secret"
            "client.dns.lookup" = "use_all_dns_ips"
            [kafka.consumer_properties]
            "sasl.password" = "pw-three-very-secret"
            "#,
            &[(
                "PEDIDOS_KAFKA__PRODUCER_PROPERTIES__SSL.KEYSTORE.PASSWORD",
                "pw-four-very-secret",
            )],
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(debug.contains("use_all_dns_ips"), "{debug}");
        assert_eq!(
            c.kafka.producer_properties["ssl.keystore.password"],
            "pw-four-very-secret"
        );
    }

    #[test]
    fn role_properties_come_from_file_and_environment() {
        let c = load(
            "[kafka.producer_properties]\n\"linger.ms\" = \"20\"\n",
            &[(
                "PEDIDOS_KAFKA__CONSUMER_PROPERTIES__FETCH.MIN.BYTES",
                "1000",
            )],
        )
        .unwrap();
        assert_eq!(c.kafka.producer_properties["linger.ms"], "20");
        assert_eq!(c.kafka.consumer_properties["fetch.min.bytes"], "1000");
        assert!(c.kafka.properties.is_empty());
    }
}
