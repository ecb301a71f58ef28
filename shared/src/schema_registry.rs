//! The optional Schema Registry (`[schema_registry]`): at start-up every daemon registers (or
//! looks up) each flow topic's schema (`crate::contracts`) under `<topic>-value`, after setting
//! the subject's compatibility rule, and from then on [`crate::events::OutRecord::event`] frames
//! records with those ids (`crate::wire`). Consumers check each framed record before their
//! handler sees it ([`SchemaRegistry::check`]): its schema fetched by id (and cached), its JSON
//! validated against it; an unknown id or a payload breaking its schema is a poison record.
//!
//! Reading schemas by id, caching them and validating against them is
//! `schema_registry_converter`'s `JsonDecoder`. The three start-up calls (compatibility,
//! register, look up) are plain requests here: the crate has no call for a subject's
//! compatibility, and answering its errors ourselves lets a start-up failure say exactly what
//! the registry refused (credentials, an incompatible schema, a missing subject).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use schema_registry_converter::async_impl::json::JsonDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SchemaRegistryConfig};
use crate::contracts::{topic_contracts, TopicContract};
use crate::events;
use crate::wire::{self, Body};

/// Content type of the registry's API.
const REGISTRY_JSON: &str = "application/vnd.schemaregistry.v1+json";
/// How long a consumer waits before asking an unreachable registry again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why the registry could not be used at start-up. Always names the registry's URL, never the
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Schema Registry at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("Schema Registry at {url} rejected the credentials of user {user:?} (HTTP {status}); check schema_registry.username and schema_registry.password (on Confluent Cloud, a Schema Registry API key, not the Kafka one)")]
    Credentials {
        url: String,
        user: String,
        status: u16,
    },
    #[error("Schema Registry at {url} refused to {action} for subject {subject}: HTTP {status}: {message}")]
    Refused {
        url: String,
        subject: String,
        action: String,
        status: u16,
        message: String,
    },
    #[error("Schema Registry at {url} has no version of subject {subject} matching {record}'s schema, and schema_registry.auto_register is off: register contracts/schemas/{record}.json under {subject}, or turn auto_register on")]
    NotRegistered {
        url: String,
        subject: String,
        record: String,
    },
    #[error("Schema Registry at {url}: {message}")]
    Client { url: String, message: String },
}

/// A registry in use: what consumers check framed records against.
pub struct SchemaRegistry {
    url: String,
    decoder: JsonDecoder,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// With `[schema_registry]` set: sets compatibility and registers (or looks up) every flow
/// topic's schema, then has this process frame its records with those ids. `None` when no
/// registry is configured (records stay plain JSON).
pub async fn start(config: &Config) -> Result<Option<Arc<SchemaRegistry>>, RegistryError> {
    let sr = &config.schema_registry;
    if !sr.enabled() {
        return Ok(None);
    }
    let admin = Subjects::new(sr)?;
    let mut ids = HashMap::new();
    for contract in topic_contracts(&config.topics) {
        let id = if sr.auto_register {
            admin
                .set_compatibility(&contract.subject, sr.compatibility.as_str())
                .await?;
            admin.register(&contract.subject, &contract.schema).await?
        } else {
            admin.look_up(&contract).await?
        };
        tracing::info!(
            topic = %contract.topic,
            subject = %contract.subject,
            record = contract.record,
            schema_id = id,
            "records framed under schema id"
        );
        ids.insert(contract.topic, id);
    }
    events::frame_topics_with(ids);
    Ok(Some(Arc::new(SchemaRegistry::new(sr)?)))
}

impl SchemaRegistry {
    fn new(config: &SchemaRegistryConfig) -> Result<Self, RegistryError> {
        let url = base_url(config);
        let mut settings = SrSettings::new_builder(url.clone());
        settings.set_timeout(Duration::from_millis(config.timeout_ms));
        if !config.username.is_empty() {
            settings.set_basic_authorization(&config.username, Some(config.password.expose()));
        }
        let settings = settings.build().map_err(|e| RegistryError::Client {
            url: url.clone(),
            message: describe(&e),
        })?;
        Ok(Self {
            url,
            decoder: JsonDecoder::new(settings),
        })
    }

    /// Checks a record value before its handler sees it. Plain JSON passes (the handler judges
    /// it); a frame passes when its schema id is known to the registry and its JSON validates
    /// against that schema. `Err` is the reason for the dead-letter topic. While the registry
    /// cannot be reached this waits and asks again (like a broker outage, it stalls the loop
    /// rather than dead-lettering good records), until `shutdown`.
    pub async fn check(
        &self,
        value: Option<&[u8]>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let Some(value) = value else { return Ok(()) };
        let (schema_id, json) = match wire::unframe(value).map_err(|e| e.to_string())? {
            Body::Plain(_) => return Ok(()),
            Body::Framed { schema_id, json } => (schema_id, json),
        };
        let schema = loop {
            match self.decoder.get_schema(schema_id).await {
                Ok(schema) => break schema,
                Err(e) if e.retriable => {
                    tracing::warn!(url = %self.url, schema_id, error = %describe(&e), "Schema Registry unreachable; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(RETRY_AFTER) => {}
                    }
                }
                Err(e) => {
                    return Err(format!(
                        "schema id {schema_id} unknown to the Schema Registry at {}: {}",
                        self.url,
                        describe(&e)
                    ))
                }
            }
        };
        let parsed: Value = serde_json::from_slice(json)
            .map_err(|e| format!("framed payload (schema id {schema_id}) is not JSON: {e}"))?;
        self.decoder.validate(&schema, &parsed).map_err(|e| {
            format!(
                "payload breaks its schema (id {schema_id}): {}",
                describe(&e)
            )
        })
    }
}

/// The registry's URL without a trailing slash.
fn base_url(config: &SchemaRegistryConfig) -> String {
    config.url.trim_end_matches('/').to_string()
}

/// An error of the converter crate, without its retry/cache bookkeeping.
fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    }
}

/// The start-up calls on subjects.
pub struct Subjects {
    url: String,
    user: String,
    password: String,
    http: reqwest::Client,
}

impl Subjects {
    /// A client for `config`'s registry.
    pub fn new(config: &SchemaRegistryConfig) -> Result<Self, RegistryError> {
        let url = base_url(config);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|e| RegistryError::Client {
                url: url.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            url,
            user: config.username.clone(),
            password: config.password.expose().to_string(),
            http,
        })
    }

    /// Sets `subject`'s compatibility rule (`BACKWARD`…).
    pub async fn set_compatibility(
        &self,
        subject: &str,
        compatibility: &str,
    ) -> Result<(), RegistryError> {
        let body = json!({ "compatibility": compatibility });
        let path = format!("/config/{subject}");
        let mut answer = self.call(reqwest::Method::PUT, &path, &body).await;
        if let Err(Failure::Status { status: 409, .. }) = answer {
            // Daemons starting together race to create the subject's rule (Apicurio answers
            // "already exists" to the losers); once it exists, setting it again updates it.
            tokio::time::sleep(Duration::from_millis(200)).await;
            answer = self.call(reqwest::Method::PUT, &path, &body).await;
        }
        answer.map_err(|e| e.refusal(subject, &format!("set compatibility {compatibility}")))?;
        Ok(())
    }

    /// Registers `schema` under `subject` (the registry's id; the same schema gets the same id
    /// again). A schema breaking the subject's compatibility rule is refused with the
    /// registry's reason.
    pub async fn register(&self, subject: &str, schema: &Value) -> Result<u32, RegistryError> {
        let path = format!("/subjects/{subject}/versions");
        let answer = self
            .call(reqwest::Method::POST, &path, &schema_body(schema))
            .await
            .map_err(|e| e.refusal(subject, "register the schema"))?;
        self.id_in(subject, &answer)
    }

    /// The id of `contract`'s schema under its subject, without registering it.
    pub async fn look_up(&self, contract: &TopicContract) -> Result<u32, RegistryError> {
        let path = format!("/subjects/{}", contract.subject);
        match self
            .call(reqwest::Method::POST, &path, &schema_body(&contract.schema))
            .await
        {
            Ok(answer) => self.id_in(&contract.subject, &answer),
            Err(Failure::Status { status: 404, .. }) => Err(RegistryError::NotRegistered {
                url: self.url.clone(),
                subject: contract.subject.clone(),
                record: contract.record.to_string(),
            }),
            Err(e) => Err(e.refusal(&contract.subject, "look up the schema")),
        }
    }

    fn id_in(&self, subject: &str, answer: &Value) -> Result<u32, RegistryError> {
        answer["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| RegistryError::Client {
                url: self.url.clone(),
                message: format!("no schema id in its answer for subject {subject}: {answer}"),
            })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, Failure> {
        let request = || {
            let request = self
                .http
                .request(method.clone(), format!("{}{path}", self.url))
                .header(reqwest::header::CONTENT_TYPE, REGISTRY_JSON)
                .header(reqwest::header::ACCEPT, REGISTRY_JSON)
                .body(body.to_string());
            if self.user.is_empty() {
                request
            } else {
                request.basic_auth(&self.user, Some(&self.password))
            }
        };
        // A request left unanswered is asked once more (every call here is idempotent: the
        // same schema gets the same id, a rule set again is the same rule); a registry that
        // refuses the connection is reported at once.
        let response = match request().send().await {
            Err(e) if e.is_timeout() => {
                tracing::warn!(url = %self.url, path, "the registry did not answer in time; asking again");
                request().send().await
            }
            sent => sent,
        };
        let response = response.map_err(|e| Failure::Transport {
            url: self.url.clone(),
            // Without the URL reqwest adds (ours, named once already).
            message: std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| e.to_string()),
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| Failure::Transport {
                url: self.url.clone(),
                message: format!("answer is not JSON ({e}): {text}"),
            });
        }
        if status == 401 || status == 403 {
            return Err(Failure::Credentials {
                url: self.url.clone(),
                user: self.user.clone(),
                status,
            });
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        Err(Failure::Status {
            url: self.url.clone(),
            status,
            message,
        })
    }
}

/// What one request met, before it is named as a [`RegistryError`].
enum Failure {
    Transport {
        url: String,
        message: String,
    },
    Credentials {
        url: String,
        user: String,
        status: u16,
    },
    Status {
        url: String,
        status: u16,
        message: String,
    },
}

impl Failure {
    fn refusal(self, subject: &str, action: &str) -> RegistryError {
        match self {
            Failure::Transport { url, message } => RegistryError::Unreachable { url, message },
            Failure::Credentials { url, user, status } => {
                RegistryError::Credentials { url, user, status }
            }
            Failure::Status {
                url,
                status,
                message,
            } => RegistryError::Refused {
                url,
                subject: subject.to_string(),
                action: action.to_string(),
                status,
                message,
            },
        }
    }
}

/// A registration or look-up body: the schema as a string, of type JSON.
fn schema_body(schema: &Value) -> Value {
    json!({ "schemaType": "JSON", "schema": schema.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A registry that takes connections and never answers: each start-up call is asked twice,
    /// then reported unreachable with the timeout.
    #[tokio::test]
    async fn a_call_left_unanswered_is_asked_again_once_then_reported() {
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = SchemaRegistryConfig {
            url: format!("http://{}", silent.local_addr().unwrap()),
            timeout_ms: 200,
            ..SchemaRegistryConfig::default()
        };
        let error = Subjects::new(&config)
            .unwrap()
            .register("Pedidos-value", &json!({ "type": "object" }))
            .await
            .unwrap_err();
        assert!(
            matches!(error, RegistryError::Unreachable { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("timed out"), "{error}");
        silent.set_nonblocking(true).unwrap();
        let asked = std::iter::from_fn(|| silent.accept().ok()).count();
        assert_eq!(asked, 2, "connections the client opened");
    }
}
