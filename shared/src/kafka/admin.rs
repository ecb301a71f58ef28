//! Start-up checks against the cluster: is it reachable with these credentials, and do the
//! mesh's topics exist (creating them when allowed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::types::RDKafkaErrorCode as Code;

use super::clients::{build, ClientKind};
use super::{Context, StartupError};
use crate::config::{KafkaConfig, TopicsConfig};

/// Waits until the cluster answers a metadata request, or fails with what the broker said.
/// Runs the blocking librdkafka calls off the async runtime.
pub async fn check_connectivity(k: &KafkaConfig) -> Result<(), StartupError> {
    // A quiet probe: its own reconnect attempts would otherwise spam the log.
    let client: rdkafka::consumer::BaseConsumer<Context> =
        build(k, ClientKind::Consumer, &[("log_level", "3")])?;
    let k = k.clone();
    tokio::task::spawn_blocking(move || probe(&client, &k))
        .await
        .expect("connectivity probe panicked")
}

fn probe(
    client: &rdkafka::consumer::BaseConsumer<Context>,
    k: &KafkaConfig,
) -> Result<(), StartupError> {
    use rdkafka::consumer::Consumer as _;
    let timeout = k.startup_timeout();
    let started = Instant::now();
    loop {
        let remaining = timeout.saturating_sub(started.elapsed());
        let attempt = remaining.min(Duration::from_secs(1));
        let result = client.fetch_metadata(None, attempt);
        // librdkafka's errors (and logs) wait in the client's queue (rdkafka sets log.queue)
        // and reach `Context` only when the client is polled: serve them all.
        while client.poll(Duration::from_millis(50)).is_some() {}
        if let Some((code, reason)) = client.context().last_error() {
            if is_auth_failure(code, &reason) {
                return Err(StartupError::Authentication {
                    servers: k.bootstrap_servers.clone(),
                    username: k.sasl_username.clone(),
                    mechanism: k.sasl_mechanisms.clone(),
                    reason,
                });
            }
            if is_permanent_tls_failure(code, &reason) {
                return Err(unreachable(k, started.elapsed(), reason));
            }
        }
        match result {
            Ok(_) => {
                client.context().clear();
                return Ok(());
            }
            Err(e) if started.elapsed() >= timeout => {
                let context = client.context();
                let reason = match (context.last_error(), context.last_failure()) {
                    (Some((code, r)), _) if code != Code::AllBrokersDown => r,
                    (_, Some(failure)) => failure,
                    (Some((_, r)), None) => r,
                    (None, None) => e.to_string(),
                };
                return Err(unreachable(k, started.elapsed(), reason));
            }
            Err(_) => {}
        }
    }
}

fn unreachable(k: &KafkaConfig, waited: Duration, reason: String) -> StartupError {
    StartupError::Unreachable {
        servers: k.bootstrap_servers.clone(),
        protocol: k.security_protocol.to_string(),
        waited,
        reason,
    }
}

fn is_auth_failure(code: RDKafkaErrorCode, reason: &str) -> bool {
    matches!(
        code,
        Code::Authentication | Code::SaslAuthenticationFailed | Code::TopicAuthorizationFailed
    ) || reason.contains("SASL authentication error")
}

/// A broken certificate chain will not heal by retrying: report it at once.
fn is_permanent_tls_failure(code: RDKafkaErrorCode, reason: &str) -> bool {
    code == Code::SSL
        && (reason.contains("certificate verify failed") || reason.contains("ssl.ca.location"))
}

/// Creates every topic the mesh uses that does not exist yet. Creating again is a no-op.
pub async fn ensure_topics(k: &KafkaConfig, topics: &TopicsConfig) -> Result<(), StartupError> {
    let admin: Arc<AdminClient<Context>> = Arc::new(build(k, ClientKind::Other, &[])?);
    let wanted = topics.all();
    let cluster = cluster_view(&admin, k).await?;
    let brokers = cluster.brokers;
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|t| !cluster.topics.contains_key(*t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !topics.create {
        return Err(StartupError::MissingTopic {
            topic: missing[0].clone(),
        });
    }
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                topics.partitions,
                TopicReplication::Fixed(topics.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(k.startup_timeout()));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| StartupError::CreateTopic {
            topic: missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
            reason: e.to_string(),
        })?;
    for result in results {
        match result {
            Ok(name) => {
                tracing::info!(topic = %name, partitions = topics.partitions, "created topic")
            }
            // Another daemon created it at the same moment.
            Err((_, Code::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(StartupError::CreateTopic {
                    topic,
                    reason: creation_failure(code, topics, brokers),
                })
            }
        }
    }
    wait_until_visible(&admin, k, &wanted).await
}

/// Why a topic could not be created, in the configuration's terms where the broker's code
/// allows (librdkafka hands over only the code, not the broker's message).
fn creation_failure(code: RDKafkaErrorCode, topics: &TopicsConfig, brokers: usize) -> String {
    match code {
        Code::InvalidReplicationFactor => {
            let asked = match topics.replication_factor {
                -1 => "topics.replication_factor = -1 (the cluster's default.replication.factor)"
                    .to_string(),
                n => format!("topics.replication_factor = {n}"),
            };
            let noun = if brokers == 1 { "broker" } else { "brokers" };
            format!("{code}: {asked}, but the cluster has {brokers} {noun}")
        }
        _ => code.to_string(),
    }
}

/// Waits until the cluster's metadata shows every topic with a leader for each partition. A
/// created topic reaches the brokers' metadata caches a moment after CreateTopics answers, and
/// a reader that assigns partitions from metadata (the API's read model) would otherwise miss
/// a topic altogether.
async fn wait_until_visible(
    admin: &Arc<AdminClient<Context>>,
    k: &KafkaConfig,
    topics: &[String],
) -> Result<(), StartupError> {
    let deadline = tokio::time::Instant::now() + k.startup_timeout();
    loop {
        let cluster = cluster_view(admin, k).await?;
        let pending = topics
            .iter()
            .find(|name| cluster.topics.get(*name) != Some(&true));
        let Some(pending) = pending else {
            return Ok(());
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(StartupError::CreateTopic {
                topic: pending.clone(),
                reason: format!(
                    "created, but not visible with a leader for every partition after {:?}",
                    k.startup_timeout()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the cluster's metadata says: each topic, and whether every one of its partitions has a
/// leader; and how many brokers there are.
struct ClusterView {
    topics: HashMap<String, bool>,
    brokers: usize,
}

/// Fetches metadata off the async runtime: librdkafka's metadata call blocks.
async fn cluster_view(
    admin: &Arc<AdminClient<Context>>,
    k: &KafkaConfig,
) -> Result<ClusterView, StartupError> {
    let admin = Arc::clone(admin);
    let timeout = k.startup_timeout();
    let metadata = tokio::task::spawn_blocking(move || {
        let metadata = admin.inner().fetch_metadata(None, timeout)?;
        let topics = metadata
            .topics()
            .iter()
            .map(|t| {
                let led =
                    !t.partitions().is_empty() && t.partitions().iter().all(|p| p.leader() >= 0);
                (t.name().to_string(), led)
            })
            .collect();
        Ok::<_, rdkafka::error::KafkaError>(ClusterView {
            topics,
            brokers: metadata.brokers().len(),
        })
    })
    .await
    .expect("metadata request panicked");
    metadata.map_err(|e| unreachable(k, timeout, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replication_factor_the_cluster_cannot_meet_is_explained_in_configuration_terms() {
        let mut topics = TopicsConfig {
            replication_factor: 4,
            ..TopicsConfig::default()
        };
        let reason = creation_failure(Code::InvalidReplicationFactor, &topics, 3);
        assert!(
            reason.contains("topics.replication_factor = 4, but the cluster has 3 brokers"),
            "{reason}"
        );
        assert!(
            reason.to_lowercase().contains("replication factor"),
            "{reason}"
        );
        topics.replication_factor = -1;
        let reason = creation_failure(Code::InvalidReplicationFactor, &topics, 1);
        assert!(
            reason.contains("default.replication.factor") && reason.contains("has 1 broker"),
            "{reason}"
        );
        assert_eq!(
            creation_failure(Code::PolicyViolation, &topics, 3),
            Code::PolicyViolation.to_string()
        );
    }

    #[test]
    fn authentication_failures_are_told_apart_from_outages() {
        assert!(is_auth_failure(
            Code::Authentication,
            "SASL authentication error: Authentication failed: Invalid username or password"
        ));
        assert!(is_auth_failure(Code::SaslAuthenticationFailed, "x"));
        assert!(!is_auth_failure(
            Code::AllBrokersDown,
            "1/1 brokers are down"
        ));
        assert!(is_permanent_tls_failure(
            Code::SSL,
            "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed"
        ));
        assert!(!is_permanent_tls_failure(
            Code::BrokerTransportFailure,
            "Connection refused"
        ));
    }
}
