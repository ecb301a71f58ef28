//! Which Kafka cluster the view is built from. Its orders and offsets mean nothing on another
//! cluster: answering from it there would take a retried `Idempotency-Key` for an order the
//! new cluster never saw (a 202, and nothing published), and the reader would resume from
//! offsets of other topics. So the view records the cluster's id, and the API refuses to start
//! on a view of another cluster unless told to rebuild it (`api.rebuild_view_for_cluster`).

use super::store::{Store, StoreError};

/// What to do with the view at start-up.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// It is this cluster's: carry on.
    Keep,
    /// A new view, or one from before the cluster was recorded: it becomes this cluster's.
    Adopt { had_read: bool },
    /// Another cluster's, and the configuration asks for this cluster's view: empty it.
    Rebuild { built_from: String },
    /// Another cluster's: refuse.
    Refuse { built_from: String },
}

/// Decides from what the view was built from, the cluster the API is connected to, and
/// `api.rebuild_view_for_cluster`.
pub(super) fn decide(
    built_from: Option<String>,
    had_read: bool,
    current: &str,
    rebuild_for: Option<&str>,
) -> Decision {
    match built_from {
        None => Decision::Adopt { had_read },
        Some(id) if id == current => Decision::Keep,
        Some(built_from) if rebuild_for == Some(current) => Decision::Rebuild { built_from },
        Some(built_from) => Decision::Refuse { built_from },
    }
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
    current: &str,
    rebuild_for: Option<&str>,
    store_label: &str,
    servers: &str,
) -> Result<(), OriginError> {
    let built_from = store.built_from().await?;
    let had_read = built_from.is_none() && store.has_read().await?;
    match decide(built_from, had_read, current, rebuild_for) {
        Decision::Keep => {}
        Decision::Adopt { had_read } => {
            if had_read {
                tracing::warn!(
                    cluster = current,
                    store = store_label,
                    "the order view did not record its Kafka cluster (it predates the check): \
                     taking it as this cluster's"
                );
            }
            store.build_from(current, false).await?;
        }
        Decision::Rebuild { built_from } => {
            tracing::warn!(
                cluster = current,
                previous = %built_from,
                store = store_label,
                "api.rebuild_view_for_cluster: emptying the order view of the other cluster and \
                 rebuilding it from this one"
            );
            store.build_from(current, true).await?;
        }
        Decision::Refuse { built_from } => {
            return Err(OriginError::OtherCluster {
                store: store_label.to_string(),
                servers: servers.to_string(),
                built_from,
                current: current.to_string(),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_of_another_cluster_is_refused_unless_rebuilt_for_this_one() {
        let other = || Some("other".to_string());
        assert_eq!(
            decide(Some("this".into()), true, "this", None),
            Decision::Keep
        );
        assert_eq!(
            decide(Some("this".into()), true, "this", Some("this")),
            Decision::Keep,
            "left set, the option changes nothing once the view is this cluster's"
        );
        assert_eq!(
            decide(other(), true, "this", None),
            Decision::Refuse {
                built_from: "other".into()
            }
        );
        assert_eq!(
            decide(other(), true, "this", Some("yet-another")),
            Decision::Refuse {
                built_from: "other".into()
            },
            "only this cluster's id rebuilds"
        );
        assert_eq!(
            decide(other(), true, "this", Some("this")),
            Decision::Rebuild {
                built_from: "other".into()
            }
        );
        assert_eq!(
            decide(None, false, "this", None),
            Decision::Adopt { had_read: false }
        );
        assert_eq!(
            decide(None, true, "this", Some("this")),
            Decision::Adopt { had_read: true }
        );
    }
}
