//! The run's topics: the one of the produce, consume and live phases, the pipeline's (the
//! mesh's set, named after it), and their removal afterwards.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use shared::config::{Config, TopicsConfig};
use shared::kafka::{self, Context, StartupError};

pub fn admin(config: &Config) -> Result<AdminClient<Context>, StartupError> {
    kafka::client_config(&config.kafka)
        .create_with_context(Context::default())
        .map_err(StartupError::Client)
}

/// Creates the topic of the first three phases; one that exists already is used as it is.
/// `shared::kafka::ensure_topics` creates only the mesh's set (the pipeline's topics go through
/// it); this one topic is no such set.
pub async fn create(
    admin: &AdminClient<Context>,
    config: &Config,
    topic: &str,
    partitions: i32,
) -> Result<(), StartupError> {
    let failed = |reason: String| StartupError::CreateTopic {
        topic: topic.to_string(),
        reason,
    };
    let replication = TopicReplication::Fixed(config.topics.replication_factor);
    let new = NewTopic::new(topic, partitions, replication);
    let options = AdminOptions::new().operation_timeout(Some(config.kafka.startup_timeout()));
    let results = admin
        .create_topics([&new], &options)
        .await
        .map_err(|e| failed(e.to_string()))?;
    match results.into_iter().next() {
        Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(()),
        Some(Err((_, code))) => Err(failed(code.to_string())),
    }
}

/// The pipeline's topics: the mesh's four, `<prefix>-pedidos`, `-notificacoes`, `-validos` and
/// `-recusados`, with the configured dead-letter suffix and replication.
pub fn pipeline(config: &Config, prefix: &str, partitions: i32) -> TopicsConfig {
    TopicsConfig {
        pedidos: format!("{prefix}-pedidos"),
        notificacoes: format!("{prefix}-notificacoes"),
        pedidos_validos: format!("{prefix}-validos"),
        pedidos_recusados: format!("{prefix}-recusados"),
        create: true,
        partitions,
        ..config.topics.clone()
    }
}

/// Deletes the topics and consumer groups; a failure is only worth a warning.
pub async fn delete(admin: &AdminClient<Context>, topics: &[String], groups: &[&str]) {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let deleted = admin.delete_topics(&names, &AdminOptions::new()).await;
    if let Err(e) = deleted {
        tracing::warn!(topics = %names.join(","), error = %e, "could not delete the benchmark topics");
    }
    // The pipeline's consumers committed offsets, as the daemons do: their groups would
    // otherwise linger until the broker expires them (a week, by default).
    if !groups.is_empty() {
        let deleted = admin.delete_groups(groups, &AdminOptions::new()).await;
        if let Err(e) = deleted {
            tracing::warn!(groups = %groups.join(","), error = %e, "could not delete the benchmark's consumer groups");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_has_the_mesh_topics_named_after_the_run() {
        let topics = pipeline(&Config::default(), "p", 5);
        assert_eq!(
            topics.flow(),
            ["p-pedidos", "p-notificacoes", "p-validos", "p-recusados"]
        );
        // Dead letters of the relay's input go where the daemons' loop sends them.
        assert!(topics.all().contains(&"p-pedidos_dlq".to_string()));
        assert_eq!((topics.partitions, topics.create), (5, true));
    }
}
