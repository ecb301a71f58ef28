//! What the view is built from: the Kafka cluster and each topic's id (KIP-516). Its orders and
//! offsets mean nothing on another cluster, nor on a topic deleted and created again under the
//! same name: answering from it there would take a retried `Idempotency-Key` for an order the
//! topic never held (a 202, and nothing published), and the reader would resume from offsets of
//! other records. So the view records the cluster's id and the topics' ids, and the API refuses
//! to start on a view of another cluster or topic unless told to rebuild it
//! (`api.rebuild_view_for_cluster`, `api.rebuild_view_for_topic_ids`). While the API runs,
//! [`watch`] asks for the topics' ids every few seconds, and a topic that changed identity
//! stops the API with the same message (the restart then refuses until told to rebuild).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::config::Config;
use shared::kafka;
use tokio_util::sync::CancellationToken;

use super::store::{Store, StoreError};

/// How often a running API checks that its topics are the ones its view was read from.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// The cluster and topics the API is connected to, or a view was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) cluster: String,
    /// Topic name → its id, base64.
    pub(super) topics: HashMap<String, String>,
}

/// What to do with the view at start-up.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// It is these topics': carry on.
    Keep,
    /// A new view, or one from before the cluster or the topics' ids were recorded: it
    /// becomes this cluster's and these topics'.
    Record { had_read: bool },
    /// Another cluster's or topic's, and the configuration asks for a rebuild: empty it.
    Rebuild { built_from: String },
    /// Another cluster's: refuse.
    RefuseCluster { built_from: String },
    /// A topic that has since been deleted and created again: refuse.
    RefuseTopic {
        topic: String,
        built_from: String,
        current: String,
    },
}

/// Decides from what the view was built from (`recorded_cluster`, `recorded_topics`), what the
/// API is connected to (`current`) and the rebuild options.
pub(super) fn decide(
    recorded_cluster: Option<String>,
    recorded_topics: &HashMap<String, String>,
    had_read: bool,
    current: &Identity,
    rebuild_for_cluster: Option<&str>,
    rebuild_for_topics: &[String],
) -> Decision {
    match recorded_cluster {
        None => Decision::Record { had_read },
        Some(id) if id != current.cluster => {
            if rebuild_for_cluster == Some(current.cluster.as_str()) {
                Decision::Rebuild {
                    built_from: format!("cluster {id}"),
                }
            } else {
                Decision::RefuseCluster { built_from: id }
            }
        }
        Some(_) => {
            let mut changed = changed_topics(recorded_topics, &current.topics);
            changed.retain(|(_, _, new)| !rebuild_for_topics.contains(new));
            if let Some((topic, old, new)) = changed.into_iter().next() {
                return Decision::RefuseTopic {
                    topic,
                    built_from: old,
                    current: new,
                };
            }
            let changed = changed_topics(recorded_topics, &current.topics);
            if !changed.is_empty() {
                let what: Vec<String> = changed
                    .iter()
                    .map(|(t, old, _)| format!("topic {t} {old}"))
                    .collect();
                return Decision::Rebuild {
                    built_from: what.join(", "),
                };
            }
            let all_recorded = current
                .topics
                .keys()
                .all(|t| recorded_topics.contains_key(t));
            if all_recorded {
                Decision::Keep
            } else {
                Decision::Record { had_read }
            }
        }
    }
}

/// The topics whose id is not the one recorded: (name, recorded id, current id), by name.
fn changed_topics(
    recorded: &HashMap<String, String>,
    current: &HashMap<String, String>,
) -> Vec<(String, String, String)> {
    let mut changed: Vec<(String, String, String)> = recorded
        .iter()
        .filter_map(|(topic, old)| {
            let new = current.get(topic).filter(|new| *new != old)?;
            Some((topic.clone(), old.clone(), new.clone()))
        })
        .collect();
    changed.sort();
    changed
}

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error(
        "the order view in {store} (api.store_url) was built from Kafka cluster {built_from}, but \
         {servers} is cluster {current}: its orders and offsets belong to the other cluster. Point \
         api.store_url at a view of cluster {current} (or a new one), or set \
         api.rebuild_view_for_cluster = \"{current}\" (PEDIDOS_API__REBUILD_VIEW_FOR_CLUSTER) to \
         empty this view and rebuild it from cluster {current}"
    )]
    OtherCluster {
        store: String,
        servers: String,
        built_from: String,
        current: String,
    },
    #[error(
        "the order view in {store} (api.store_url) was read from topic {topic} with id \
         {built_from}, but topic {topic} on {servers} now has id {current}{when}: it was deleted \
         and created again, so the view's orders and offsets belong to the old topic. Set \
         api.rebuild_view_for_topic_ids = [\"{current}\"] \
         (PEDIDOS_API__REBUILD_VIEW_FOR_TOPIC_IDS='[\"{current}\"]') to empty this view and \
         rebuild it from the topics as they are now"
    )]
    TopicRecreated {
        store: String,
        servers: String,
        topic: String,
        built_from: String,
        current: String,
        /// Empty at start-up; said when it happened while the API ran.
        when: String,
    },
    #[error("cannot read the Kafka cluster's id from {servers} within {waited:?}")]
    NoClusterId {
        servers: String,
        waited: std::time::Duration,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Makes sure the view in `store` is `current`'s, or refuses.
pub(super) async fn check(
    store: &Store,
    current: &Identity,
    config: &Config,
) -> Result<(), OriginError> {
    let (api, store_label) = (&config.api, config.api.store_label());
    let recorded_cluster = store.built_from().await?;
    let recorded_topics = store.built_from_topics().await?;
    let had_read = store.has_read().await?;
    let decision = decide(
        recorded_cluster,
        &recorded_topics,
        had_read,
        current,
        api.rebuild_view_for_cluster.as_deref(),
        &api.rebuild_view_for_topic_ids,
    );
    match decision {
        Decision::Keep => {}
        Decision::Record { had_read } => {
            if had_read {
                tracing::warn!(
                    cluster = %current.cluster,
                    store = %store_label,
                    "the order view did not record its Kafka cluster or topic ids (it predates \
                     the check): taking it as this cluster's and these topics'"
                );
            }
            store
                .build_from(&current.cluster, &current.topics, false)
                .await?;
        }
        Decision::Rebuild { built_from } => {
            tracing::warn!(
                cluster = %current.cluster,
                previous = %built_from,
                store = %store_label,
                "api.rebuild_view_for_cluster or api.rebuild_view_for_topic_ids: emptying the \
                 order view of the previous cluster or topics and rebuilding it from these"
            );
            store
                .build_from(&current.cluster, &current.topics, true)
                .await?;
        }
        Decision::RefuseCluster { built_from } => {
            return Err(OriginError::OtherCluster {
                store: store_label,
                servers: config.kafka.bootstrap_servers.clone(),
                built_from,
                current: current.cluster.clone(),
            })
        }
        Decision::RefuseTopic {
            topic,
            built_from,
            current,
        } => {
            return Err(OriginError::TopicRecreated {
                store: store_label,
                servers: config.kafka.bootstrap_servers.clone(),
                topic,
                built_from,
                current,
                when: String::new(),
            })
        }
    }
    Ok(())
}

/// A running API's check of its topics' identity: set once a topic changed, with the error the
/// API stops with.
#[derive(Clone, Default)]
pub struct Changed {
    pub(super) token: CancellationToken,
    error: Arc<Mutex<Option<OriginError>>>,
}

impl Changed {
    /// Cancelled once a topic changed identity.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Why, once it did.
    pub fn take(&self) -> Option<OriginError> {
        self.error.lock().unwrap().take()
    }
}

/// Asks for the ids of `built_from`'s topics every few seconds until `shutdown`; the first
/// that differs fails `changed`. A request that fails (the broker away) is tried again.
pub(super) fn watch(
    config: &Config,
    built_from: Identity,
    changed: Changed,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (kafka, store, servers) = (
        config.kafka.clone(),
        config.api.store_label(),
        config.kafka.bootstrap_servers.clone(),
    );
    let topics: Vec<String> = built_from.topics.keys().cloned().collect();
    tokio::spawn(async move {
        if topics.is_empty() {
            return; // The broker gave no ids at start-up.
        }
        let mut seen: Option<String> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(WATCH_EVERY) => {}
            }
            let asked = tokio::select! {
                _ = shutdown.cancelled() => return,
                asked = kafka::topic_ids(&kafka, &topics, WATCH_EVERY) => asked,
            };
            let now = match asked {
                Ok(now) => now,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot check the topics' ids; trying again");
                    continue;
                }
            };
            let Some((topic, old, new)) =
                changed_topics(&built_from.topics, &now).into_iter().next()
            else {
                seen = None;
                continue;
            };
            // The same new id twice in a row: never one odd answer.
            if seen.as_ref() != Some(&new) {
                tracing::info!(topic = %topic, built_from = %old, now = %new, "a topic of the order view shows another id; asking again");
                seen = Some(new);
                continue;
            }
            let error = OriginError::TopicRecreated {
                store: store.clone(),
                servers: servers.clone(),
                topic,
                built_from: old,
                current: new,
                when: " (it changed while the API ran: the API stops)".into(),
            };
            tracing::error!(error = %error, "a topic of the order view changed identity");
            *changed.error.lock().unwrap() = Some(error);
            changed.token.cancel();
            return;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(cluster: &str, topics: &[(&str, &str)]) -> Identity {
        Identity {
            cluster: cluster.into(),
            topics: topics
                .iter()
                .map(|(t, id)| (t.to_string(), id.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_view_of_another_cluster_is_refused_unless_rebuilt_for_this_one() {
        let this = identity("this", &[("Pedidos", "p1")]);
        let recorded = this.topics.clone();
        let other = || Some("other".to_string());
        let decide = |cluster, had_read, rebuild: Option<&str>| {
            decide(cluster, &recorded, had_read, &this, rebuild, &[])
        };
        assert_eq!(decide(Some("this".into()), true, None), Decision::Keep);
        assert_eq!(
            decide(Some("this".into()), true, Some("this")),
            Decision::Keep,
            "left set, the option changes nothing once the view is this cluster's"
        );
        assert_eq!(
            decide(other(), true, None),
            Decision::RefuseCluster {
                built_from: "other".into()
            }
        );
        assert_eq!(
            decide(other(), true, Some("yet-another")),
            Decision::RefuseCluster {
                built_from: "other".into()
            },
            "only this cluster's id rebuilds"
        );
        assert_eq!(
            decide(other(), true, Some("this")),
            Decision::Rebuild {
                built_from: "cluster other".into()
            }
        );
        assert_eq!(
            decide(None, false, None),
            Decision::Record { had_read: false }
        );
        assert_eq!(
            decide(None, true, Some("this")),
            Decision::Record { had_read: true }
        );
    }

    #[test]
    fn a_recreated_topic_is_refused_unless_its_new_id_is_listed() {
        let now = identity("c", &[("Pedidos", "p2"), ("Notificacoes", "n1")]);
        let recorded = identity("c", &[("Pedidos", "p1"), ("Notificacoes", "n1")]).topics;
        let decide =
            |rebuild: &[String]| decide(Some("c".into()), &recorded, true, &now, None, rebuild);
        assert_eq!(
            decide(&[]),
            Decision::RefuseTopic {
                topic: "Pedidos".into(),
                built_from: "p1".into(),
                current: "p2".into()
            }
        );
        assert_eq!(
            decide(&["p1".into(), "n1".into()]),
            Decision::RefuseTopic {
                topic: "Pedidos".into(),
                built_from: "p1".into(),
                current: "p2".into()
            },
            "only the new id rebuilds"
        );
        assert_eq!(
            decide(&["p2".into()]),
            Decision::Rebuild {
                built_from: "topic Pedidos p1".into()
            }
        );
        // Left set once rebuilt: the view records p2, so nothing changes.
        let rebuilt = now.topics.clone();
        assert_eq!(
            super::decide(Some("c".into()), &rebuilt, true, &now, None, &["p2".into()]),
            Decision::Keep
        );
        // A view from before the topic ids were recorded takes the current ones.
        assert_eq!(
            super::decide(Some("c".into()), &HashMap::new(), true, &now, None, &[]),
            Decision::Record { had_read: true }
        );
    }
}
