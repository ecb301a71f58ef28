//! Helpers for the configuration tests: a `conf.toml` text and environment variables in, a
//! [`Config`] or the error's text out.

use std::path::Path;

use super::{Config, ConfigError};

pub fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_sources(
        Some((Path::new("conf.toml"), file)),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

pub fn err(file: &str, env: &[(&str, &str)]) -> String {
    load(file, env)
        .expect_err("config should be rejected")
        .to_string()
}
