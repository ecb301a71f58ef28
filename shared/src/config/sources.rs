//! The layering engine: built-in defaults, then the configuration file, then `PEDIDOS_*`
//! environment variables; later wins.
//!
//! Errors name where a value came from by construction, never by reading error messages: each
//! variable is deserialized on its own before it is merged, so an error there is that
//! variable's; after the merge, the value at a key is the variable's that set it, else the
//! file's.

use std::path::Path;

use super::{Config, ConfigError, InvalidValue};

const ENV_PREFIX: &str = "PEDIDOS_";

/// The file and the environment variables merged into one table, remembering which variable set
/// which key.
pub(super) struct Sources {
    /// The file's name, or "built-in defaults" without one.
    file_origin: String,
    variables: Vec<EnvVariable>,
    merged: toml::Table,
}

impl Sources {
    /// Parses the file's text (if any) and merges the `PEDIDOS_<SECTION>__<KEY>` variables of
    /// `env` over it.
    pub(super) fn read(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (file_origin, mut merged) = match file {
            Some((path, text)) => (path.display().to_string(), parse_file(path, text)?),
            None => ("built-in defaults".to_string(), toml::Table::new()),
        };
        let variables = env_variables(env)?;
        for variable in &variables {
            insert(&mut merged, &variable.path, variable.value.clone())
                .map_err(|message| invalid(variable.origin(), &variable.key, message))?;
        }
        Ok(Self {
            file_origin,
            variables,
            merged,
        })
    }

    pub(super) fn config(&self) -> Result<Config, ConfigError> {
        deserialize(&self.merged).map_err(|e| invalid(self.origin_of(&e.key), &e.key, e.message))
    }

    /// The error for a value that its section refused, naming where that value came from.
    pub(super) fn blame(&self, refused: InvalidValue) -> ConfigError {
        invalid(self.origin_of(&refused.key), &refused.key, refused.message)
    }

    /// Where the value at a dotted `key` came from. Variables are sorted by name and merged in
    /// that order, so the last one naming a key is the one whose value it holds.
    fn origin_of(&self, key: &str) -> String {
        self.variables
            .iter()
            .rev()
            .find(|v| v.key == key)
            .map(EnvVariable::origin)
            .unwrap_or_else(|| self.file_origin.clone())
    }
}

/// One `PEDIDOS_<SECTION>__<KEY>` variable and the value it contributes.
struct EnvVariable {
    name: String,
    /// The key it sets, lowercased, one element per level: `["kafka", "sasl_password"]`.
    path: Vec<String>,
    /// `path` joined with dots, as keys are named in messages.
    key: String,
    value: toml::Value,
}

impl EnvVariable {
    /// Reads a variable's text as TOML (`5`, `true`, `["a", "b"]`) where that fits its key, else
    /// as the plain string it is, so a numeric password stays a string. Both are tried on the
    /// variable alone.
    fn read(name: String, raw: &str) -> Result<Self, ConfigError> {
        let path = key_path(&name);
        let key = path.join(".");
        let typed = parse_env_value(raw);
        let text = toml::Value::String(raw.to_string());
        let value = match fits_alone(&path, &typed) {
            Ok(()) => typed,
            Err(_) if !typed.is_str() && fits_alone(&path, &text).is_ok() => text,
            Err(message) => return Err(invalid(origin_of_variable(&name), &key, message)),
        };
        Ok(Self {
            name,
            path,
            key,
            value,
        })
    }

    fn origin(&self) -> String {
        origin_of_variable(&self.name)
    }
}

/// The key a `PEDIDOS_*` variable sets, one element per level, lowercased:
/// `PEDIDOS_KAFKA__SASL_PASSWORD` → `["kafka", "sasl_password"]`.
fn key_path(name: &str) -> Vec<String> {
    name[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The process's environment, as text. `std::env::vars` would panic on a variable that is not
/// UTF-8; ours are refused with their name, and anyone else's are not our business.
pub(super) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        match value.into_string() {
            Ok(value) => vars.push((name.to_string(), value)),
            Err(_) if name.starts_with(ENV_PREFIX) => {
                return Err(invalid(
                    origin_of_variable(name),
                    &key_path(name).join("."),
                    "the value is not valid UTF-8".into(),
                ))
            }
            Err(_) => {}
        }
    }
    Ok(vars)
}

fn origin_of_variable(name: &str) -> String {
    format!("environment variable {name}")
}

/// The configuration variables of `env`, sorted by name. `PEDIDOS_CONFIG` and other names
/// without a `__` are not configuration keys.
fn env_variables(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<EnvVariable>, ConfigError> {
    let mut named: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| {
            name.strip_prefix(ENV_PREFIX)
                .is_some_and(|rest| rest.contains("__"))
        })
        .collect();
    named.sort();
    named
        .into_iter()
        .map(|(name, raw)| EnvVariable::read(name, &raw))
        .collect()
}

/// Whether `value` at `path` makes a valid configuration by itself (every other key default).
fn fits_alone(path: &[String], value: &toml::Value) -> Result<(), String> {
    let mut alone = toml::Table::new();
    insert(&mut alone, path, value.clone())?;
    deserialize(&alone).map(drop).map_err(|e| e.message)
}

/// Why a table does not deserialize into a [`Config`]: the dotted key at fault (empty for the
/// top level) and serde's message.
struct Mismatch {
    key: String,
    message: String,
}

fn deserialize(table: &toml::Table) -> Result<Config, Mismatch> {
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        // serde quotes the value ("invalid type: integer `123456`"): not when it is a password.
        let message = if Config::holds_secret(&key) {
            "must be a string (the value is not shown: it is a secret)".to_string()
        } else {
            // The message alone: toml's `Display` would repeat the key the error already names.
            e.into_inner().message().to_string()
        };
        Mismatch { key, message }
    })
}

fn invalid(origin: String, key: &str, message: String) -> ConfigError {
    let key = if key.is_empty() { "(top level)" } else { key };
    ConfigError::Invalid {
        origin,
        key: key.to_string(),
        message,
    }
}

fn parse_file(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.message().to_string() + &line_hint(text, e.span()),
    })
}

fn parse_env_value(raw: &str) -> toml::Value {
    // Parse as the value of a TOML key; anything that is not TOML is taken as a plain string.
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
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
        assert!(e.contains("PEDIDOS_API__LISTN"), "{e}");
        assert!(e.contains("api.listn"), "{e}");
        // Also when the file has that section: the unknown key is still the variable's.
        let e = err(
            "[api]\nlisten = \"127.0.0.1:8000\"\n",
            &[("PEDIDOS_API__LISTN", "0.0.0.0:1")],
        );
        assert!(e.contains("PEDIDOS_API__LISTN"), "{e}");
        assert!(e.contains("api.listn"), "{e}");
    }

    #[test]
    fn unknown_key_in_the_file_is_the_files_even_with_variables_in_its_section() {
        let e = err(
            "[api]\nlistn = \"0.0.0.0:1\"\n",
            &[("PEDIDOS_API__LISTEN", "0.0.0.0:9000")],
        );
        assert!(e.starts_with("conf.toml"), "{e}");
        assert!(e.contains("listn"), "{e}");
    }

    #[test]
    fn type_errors_never_quote_a_secret() {
        let e = err("[kafka]\nsasl_password = 123456\n", &[]);
        assert!(e.contains("conf.toml"), "{e}");
        assert!(e.contains("kafka.sasl_password"), "{e}");
        assert!(!e.contains("123456"), "{e}");
        let e = err("[kafka.properties]\n\"ssl.key.password\" = 987654\n", &[]);
        assert!(e.contains("kafka.properties.ssl.key.password"), "{e}");
        assert!(!e.contains("987654"), "{e}");
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
        // A value read as TOML that fits neither as typed nor as text: the typed error is told.
        let e = err("", &[("PEDIDOS_TOPICS__PARTITIONS", "1.5")]);
        assert!(e.contains("PEDIDOS_TOPICS__PARTITIONS"), "{e}");
        assert!(e.contains("floating point `1.5`"), "{e}");
    }

    #[test]
    fn toml_syntax_error_names_file_and_line() {
        let e = err("[kafka]\nbootstrap_servers = \n", &[]);
        assert!(e.contains("conf.toml"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }
}
