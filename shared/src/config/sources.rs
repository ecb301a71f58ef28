//! The layering engine: built-in defaults, then the configuration file, then `PEDIDOS_*`
//! environment variables.

use std::path::Path;

use super::{Config, ConfigError, InvalidValue};

const ENV_PREFIX: &str = "PEDIDOS_";

/// Where the layered values came from, for naming the origin of a value that fails validation.
pub(super) struct Sources {
    file_name: String,
    overrides: Vec<EnvOverride>,
}

impl Sources {
    /// The error for a value that a section refused, naming where that value came from.
    pub(super) fn blame(&self, invalid: InvalidValue) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin_of(&invalid.key),
            key: invalid.key,
            message: invalid.message,
        }
    }

    fn origin_of(&self, key: &str) -> String {
        self.overrides
            .iter()
            .find(|o| o.path.join(".") == key)
            .map(|o| format!("environment variable {}", o.var))
            .unwrap_or_else(|| self.file_name.clone())
    }
}

/// Layers a file's text (if any) and environment variables into a [`Config`].
pub(super) fn layer(
    file: Option<(&Path, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Config, Sources), ConfigError> {
    let file_name = file
        .map(|(p, _)| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".into());
    let mut table = match file {
        Some((path, text)) => {
            toml::from_str::<toml::Table>(text).map_err(|e| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.message().to_string() + &line_hint(text, e.span()),
            })?
        }
        None => toml::Table::new(),
    };

    let overrides = env_overrides(env);
    for o in &overrides {
        insert_path(&mut table, &o.path, parse_env_value(&o.raw)).map_err(|message| {
            ConfigError::Invalid {
                origin: format!("environment variable {}", o.var),
                key: o.path.join("."),
                message,
            }
        })?;
    }

    // An environment value that parsed as a number or bool but belongs in a string field
    // (a numeric password, say) is retried as the string it was written as.
    let mut retried = Vec::new();
    let config: Config = loop {
        let value = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, Config>(value) {
            Ok(c) => break c,
            Err(err) => {
                let key = err.path().to_string();
                let from_env = overrides.iter().find(|o| o.path.join(".") == key);
                if let Some(o) = from_env {
                    if !retried.contains(&key)
                        && !matches!(parse_env_value(&o.raw), toml::Value::String(_))
                    {
                        retried.push(key);
                        let _ =
                            insert_path(&mut table, &o.path, toml::Value::String(o.raw.clone()));
                        continue;
                    }
                }
                let key = if key == "." { String::new() } else { key };
                let message = err.into_inner().to_string();
                // An unknown-field error points at the parent table; match the variable by
                // the field it names.
                let origin = overrides
                    .iter()
                    .find(|o| {
                        let joined = o.path.join(".");
                        joined == key
                            || (o.path[..o.path.len() - 1].join(".") == key
                                && message.contains(&format!("`{}`", o.path[o.path.len() - 1])))
                    })
                    .map(|o| format!("environment variable {}", o.var))
                    .unwrap_or_else(|| file_name.clone());
                return Err(ConfigError::Invalid {
                    origin,
                    key: if key.is_empty() {
                        "(top level)".into()
                    } else {
                        key
                    },
                    message,
                });
            }
        }
    };
    Ok((
        config,
        Sources {
            file_name,
            overrides,
        },
    ))
}

struct EnvOverride {
    var: String,
    path: Vec<String>,
    raw: String,
}

fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> Vec<EnvOverride> {
    let mut out: Vec<EnvOverride> = env
        .into_iter()
        .filter_map(|(var, raw)| {
            let rest = var.strip_prefix(ENV_PREFIX)?;
            if !rest.contains("__") {
                return None; // PEDIDOS_CONFIG and friends are not config keys.
            }
            let path = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            Some(EnvOverride { var, path, raw })
        })
        .collect();
    out.sort_by(|a, b| a.var.cmp(&b.var));
    out
}

fn parse_env_value(raw: &str) -> toml::Value {
    // Parse as the value of a TOML key; anything that is not TOML is taken as a plain string.
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a section"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

fn line_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{err, load};

    #[test]
    fn environment_overrides_file() {
        let c = load(
            "[api]\nlisten = \"127.0.0.1:8000\"\n",
            &[
                ("PEDIDOS_API__LISTEN", "0.0.0.0:9000"),
                ("PEDIDOS_FRAUD__REFUSAL_PROBABILITY", "0.5"),
                ("PEDIDOS_FRAUD__BLOCKED_USERS", r#"["mallory", "eve"]"#),
                ("PEDIDOS_CONFIG", "ignored.toml"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.api.listen, "0.0.0.0:9000");
        assert_eq!(c.fraud.refusal_probability, 0.5);
        assert_eq!(c.fraud.blocked_users, vec!["mallory", "eve"]);
    }

    #[test]
    fn numeric_password_from_environment_stays_a_string() {
        let c = load(
            "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_username = \"k\"\n",
            &[("PEDIDOS_KAFKA__SASL_PASSWORD", "123456")],
        )
        .unwrap();
        assert_eq!(c.kafka.sasl_password.expose(), "123456");
    }

    #[test]
    fn unknown_key_is_named_with_its_file() {
        let e = err("[kafka]\nsasl_pasword = \"x\"\n", &[]);
        assert!(e.contains("conf.toml"), "{e}");
        assert!(e.contains("sasl_pasword"), "{e}");
    }

    #[test]
    fn unknown_section_is_named() {
        let e = err("[kafak]\nbootstrap_servers = \"x:1\"\n", &[]);
        assert!(e.contains("kafak"), "{e}");
    }

    #[test]
    fn unknown_key_from_environment_names_the_variable() {
        let e = err("", &[("PEDIDOS_API__LISTN", "0.0.0.0:1")]);
        assert!(e.contains("listn"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_and_file() {
        let e = err("[topics]\npartitions = \"three\"\n", &[]);
        assert!(e.contains("conf.toml"), "{e}");
        assert!(e.contains("topics.partitions"), "{e}");
    }

    #[test]
    fn wrong_type_from_environment_names_the_variable() {
        let e = err("", &[("PEDIDOS_TOPICS__PARTITIONS", "many")]);
        assert!(e.contains("PEDIDOS_TOPICS__PARTITIONS"), "{e}");
        assert!(e.contains("topics.partitions"), "{e}");
    }

    #[test]
    fn toml_syntax_error_names_file_and_line() {
        let e = err("[kafka]\nbootstrap_servers = \n", &[]);
        assert!(e.contains("conf.toml"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }
}
