//! [`Secret`]: a configuration string that is never printed.

use std::fmt;

use serde::Deserialize;

/// A string that must never be printed: `Debug` shows `"***"` (or `""` when it is empty, so an
/// unset password still reads as unset). There is deliberately no `Display`: the only way to the
/// text is [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for handing to the Kafka client. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::load;

    #[test]
    fn debug_hides_the_value_but_not_its_absence() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "\"***\"");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert_eq!(Secret::new("hunter2").expose(), "hunter2");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = load(
            "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_username = \"key\"\nsasl_password = \"hunter2-very-secret\"\n",
            &[],
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("***"));
    }
}
