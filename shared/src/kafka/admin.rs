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

/// Why the topics' ids could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the ids of topics {topics} from {servers}: {reason}")]
pub struct TopicIdError {
    pub topics: String,
    pub servers: String,
    pub reason: String,
}

/// Kafka's id of each of `topics` (KIP-516), by name, as base64 (what `kafka-topics.sh
/// --describe` prints): a topic deleted and created again under the same name has a new one.
/// rdkafka does not expose DescribeTopics, so this calls librdkafka's C API through
/// rdkafka-sys (`rd_kafka_DescribeTopics`, librdkafka 2.3+).
/// Waits up to `within` for the answer.
pub async fn topic_ids(
    k: &KafkaConfig,
    topics: &[String],
    within: Duration,
) -> Result<HashMap<String, String>, TopicIdError> {
    let failed = |reason: String| TopicIdError {
        topics: topics.join(","),
        servers: k.bootstrap_servers.clone(),
        reason,
    };
    let admin: AdminClient<Context> =
        build(k, ClientKind::Other, &[]).map_err(|e| failed(e.to_string()))?;
    let names = topics.to_vec();
    tokio::task::spawn_blocking(move || describe::topic_ids(&admin, &names, within))
        .await
        .expect("DescribeTopics does not panic")
        .map_err(failed)
}

/// The unsafe part, kept small: one DescribeTopics request on its own queue, every librdkafka
/// object freed by a guard whatever happens, every string copied out before its owner goes.
mod describe {
    use std::collections::HashMap;
    use std::ffi::{c_char, c_int, CStr, CString};
    use std::time::Duration;

    use rdkafka::admin::AdminClient;
    use rdkafka::bindings as rd;

    use crate::kafka::Context;

    /// Frees a librdkafka object when dropped.
    struct Owned<T>(*mut T, unsafe extern "C" fn(*mut T));

    impl<T> Drop for Owned<T> {
        fn drop(&mut self) {
            if !self.0.is_null() {
                // SAFETY: the pointer came from the matching librdkafka constructor and is
                // freed once, here.
                unsafe { (self.1)(self.0) }
            }
        }
    }

    /// A C string librdkafka owns, copied; `None` for a null pointer.
    ///
    /// SAFETY: `ptr` is null or a NUL-terminated string alive for this call.
    unsafe fn text(ptr: *const c_char) -> Option<String> {
        (!ptr.is_null()).then(|| CStr::from_ptr(ptr).to_string_lossy().into_owned())
    }

    pub(super) fn topic_ids(
        admin: &AdminClient<Context>,
        topics: &[String],
        timeout: Duration,
    ) -> Result<HashMap<String, String>, String> {
        let names: Vec<CString> = topics
            .iter()
            .map(|t| CString::new(t.as_str()).map_err(|_| format!("topic name {t:?} holds a NUL")))
            .collect::<Result<_, _>>()?;
        let mut pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX / 2);
        let rk = admin.inner().native_ptr();
        // SAFETY: `rk` is the live client `admin` owns for the whole call; every object made
        // here is freed by its guard after its last use (the event before the queue, the
        // collection and options after the request that copied them); `names` outlives
        // `pointers`.
        unsafe {
            let collection = Owned(
                rd::rd_kafka_TopicCollection_of_topic_names(pointers.as_mut_ptr(), pointers.len()),
                rd::rd_kafka_TopicCollection_destroy,
            );
            let options = Owned(
                rd::rd_kafka_AdminOptions_new(
                    rk,
                    rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
                ),
                rd::rd_kafka_AdminOptions_destroy,
            );
            let mut errstr = [0 as c_char; 512];
            rd::rd_kafka_AdminOptions_set_request_timeout(
                options.0,
                timeout_ms,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            let queue = Owned(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy);
            rd::rd_kafka_DescribeTopics(rk, collection.0, options.0, queue.0);
            let event = Owned(
                rd::rd_kafka_queue_poll(queue.0, timeout_ms.saturating_add(1_000)),
                rd::rd_kafka_event_destroy,
            );
            if event.0.is_null() {
                return Err(format!("no answer to DescribeTopics within {timeout:?}"));
            }
            if rd::rd_kafka_event_error(event.0)
                != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            {
                return Err(text(rd::rd_kafka_event_error_string(event.0))
                    .unwrap_or_else(|| "DescribeTopics failed".into()));
            }
            let result = rd::rd_kafka_event_DescribeTopics_result(event.0);
            if result.is_null() {
                return Err("DescribeTopics answered with another event".into());
            }
            let mut count = 0usize;
            let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
            let mut ids = HashMap::new();
            for i in 0..count {
                let description = *descriptions.add(i);
                let name =
                    text(rd::rd_kafka_TopicDescription_name(description)).unwrap_or_default();
                let error = rd::rd_kafka_TopicDescription_error(description);
                if !error.is_null()
                    && rd::rd_kafka_error_code(error)
                        != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    let reason = text(rd::rd_kafka_error_string(error)).unwrap_or_default();
                    return Err(format!("topic {name}: {reason}"));
                }
                let id = rd::rd_kafka_TopicDescription_topic_id(description);
                // The zero id is librdkafka's "unknown" (no broker answered, say): never an id.
                let known = !id.is_null()
                    && (rd::rd_kafka_Uuid_most_significant_bits(id) != 0
                        || rd::rd_kafka_Uuid_least_significant_bits(id) != 0);
                let id = known
                    .then(|| text(rd::rd_kafka_Uuid_base64str(id)))
                    .flatten()
                    .ok_or_else(|| format!("topic {name}: the broker gave no topic id"))?;
                ids.insert(name, id);
            }
            Ok(ids)
        }
    }
}
