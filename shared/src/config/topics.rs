//! `[topics]`: the names of the flow's topics and how missing ones are created.

use serde::Deserialize;

use super::InvalidValue;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    pub pedidos: String,
    pub notificacoes: String,
    pub pedidos_validos: String,
    pub pedidos_recusados: String,
    /// Dead-letter topics are named `<input topic><dlq_suffix>`, one per input topic.
    pub dlq_suffix: String,
    /// Create missing topics at start-up.
    pub create: bool,
    pub partitions: i32,
    /// -1 lets the broker choose (Confluent Cloud: 3).
    pub replication_factor: i32,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            pedidos: "Pedidos".into(),
            notificacoes: "Notificacoes".into(),
            pedidos_validos: "Pedidos_validos".into(),
            pedidos_recusados: "Pedidos_recusados".into(),
            dlq_suffix: "_dlq".into(),
            create: true,
            partitions: 3,
            replication_factor: -1,
        }
    }
}

impl TopicsConfig {
    pub fn dlq(&self, input_topic: &str) -> String {
        Self::dlq_with_suffix(input_topic, &self.dlq_suffix)
    }
    pub fn dlq_with_suffix(input_topic: &str, suffix: &str) -> String {
        format!("{input_topic}{suffix}")
    }
    /// The four topics of the flow.
    pub fn flow(&self) -> [&str; 4] {
        [
            &self.pedidos,
            &self.notificacoes,
            &self.pedidos_validos,
            &self.pedidos_recusados,
        ]
    }
    /// Every topic the mesh uses: the flow plus the dead-letter topics of consumed inputs.
    pub fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = self.flow().iter().map(|t| t.to_string()).collect();
        all.push(self.dlq(&self.pedidos));
        all.push(self.dlq(&self.notificacoes));
        all
    }

    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        for (key, name) in [
            ("pedidos", &self.pedidos),
            ("notificacoes", &self.notificacoes),
            ("pedidos_validos", &self.pedidos_validos),
            ("pedidos_recusados", &self.pedidos_recusados),
        ] {
            validate_topic_name(name).map_err(|m| InvalidValue::new(key, m))?;
        }
        if self.partitions < 1 {
            return Err(InvalidValue::new("partitions", "must be at least 1"));
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            return Err(InvalidValue::new(
                "replication_factor",
                "must be -1 (broker default) or at least 1",
            ));
        }
        Ok(())
    }
}

fn validate_topic_name(name: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 249 || !name.chars().all(legal) {
        return Err(format!(
            "{name:?} is not a legal Kafka topic name (1-249 of [a-zA-Z0-9._-])"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::err;

    #[test]
    fn every_topic_the_mesh_uses_includes_the_dead_letter_topics() {
        let t = TopicsConfig::default();
        assert_eq!(
            t.all(),
            [
                "Pedidos",
                "Notificacoes",
                "Pedidos_validos",
                "Pedidos_recusados",
                "Pedidos_dlq",
                "Notificacoes_dlq"
            ]
        );
    }

    #[test]
    fn illegal_topic_names_and_counts_are_rejected_by_name() {
        let e = err("[topics]\npedidos_validos = \"a b\"\n", &[]);
        assert!(e.contains("topics.pedidos_validos"), "{e}");
        let e = err("[topics]\npartitions = 0\n", &[]);
        assert!(e.contains("topics.partitions"), "{e}");
        let e = err("[topics]\nreplication_factor = 0\n", &[]);
        assert!(e.contains("topics.replication_factor"), "{e}");
    }
}
