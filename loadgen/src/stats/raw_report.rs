//! The report of `loadgen raw`.

use std::time::Duration;

use serde::Serialize;

use super::{per_second, round1, round3};

/// The pipeline phase of `loadgen raw`: `units` orders, `records` records produced and consumed
/// for them in all, in `elapsed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PipelineRun {
    pub units: u64,
    pub records: u64,
    pub elapsed: Duration,
}

/// Measured figures of `loadgen raw`.
#[derive(Debug, Clone, Serialize)]
pub struct RawReport {
    pub topic: String,
    pub partitions: i32,
    pub records: u64,
    pub avg_key_bytes: f64,
    pub avg_value_bytes: f64,
    pub avg_headers_bytes: f64,
    pub produce_seconds: f64,
    pub produced_per_s: f64,
    pub consume_seconds: f64,
    pub consumed_per_s: f64,
    /// Producing another `records` while a consumer tails the topic: from the first send to
    /// the last record read.
    pub live_seconds: f64,
    pub live_per_s: f64,
    /// Orders put through the mesh's shape (four topics, two producers, three consumers, all
    /// live); 0 when the phase was skipped, and then the three figures below are null.
    pub pipeline_units: u64,
    /// From the first send until the last record of the last order was read.
    pub pipeline_seconds: Option<f64>,
    pub pipeline_units_per_s: Option<f64>,
    /// Records produced and consumed per second: orders/s × 11.
    pub pipeline_records_per_s: Option<f64>,
}

impl RawReport {
    /// Builds the report from what was measured.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topic: String,
        partitions: i32,
        records: u64,
        sizes: (f64, f64, f64),
        produce: Duration,
        consumed: u64,
        consume: Duration,
        live: Duration,
        pipeline: Option<PipelineRun>,
    ) -> Self {
        Self {
            topic,
            partitions,
            records,
            avg_key_bytes: round1(sizes.0),
            avg_value_bytes: round1(sizes.1),
            avg_headers_bytes: round1(sizes.2),
            produce_seconds: round3(produce.as_secs_f64()),
            produced_per_s: per_second(records, produce),
            consume_seconds: round3(consume.as_secs_f64()),
            consumed_per_s: per_second(consumed, consume),
            live_seconds: round3(live.as_secs_f64()),
            live_per_s: per_second(records, live),
            pipeline_units: pipeline.map_or(0, |p| p.units),
            pipeline_seconds: pipeline.map(|p| round3(p.elapsed.as_secs_f64())),
            pipeline_units_per_s: pipeline.map(|p| per_second(p.units, p.elapsed)),
            pipeline_records_per_s: pipeline.map(|p| per_second(p.records, p.elapsed)),
        }
    }

    pub fn to_text(&self) -> String {
        let pipeline = match (
            self.pipeline_records_per_s,
            self.pipeline_units_per_s,
            self.pipeline_seconds,
        ) {
            (Some(records), Some(units), Some(seconds)) => format!(
                "pipeline    {records:.0} records/s ({units:.0} orders/s, {} orders in {seconds:.2} s; \
                 the mesh's shape: 4 produced + 7 consumed per order, 2 producers and 3 consumers live)\n",
                self.pipeline_units,
            ),
            _ => "pipeline    skipped (--pipeline-units 0)\n".to_string(),
        };
        let mut text = format!(
            "raw broker: {} records to {} ({} partitions); key {:.0} B, value {:.0} B, headers {:.0} B\n\
             produced    {:.0} records/s ({:.2} s, the daemons' producer settings: idempotent, acks=all, lz4)\n\
             consumed    {:.0} records/s ({:.2} s, reading back from the start)\n\
             live        {:.0} records/s ({:.2} s, produced while a consumer tails the topic)\n",
            self.records,
            self.topic,
            self.partitions,
            self.avg_key_bytes,
            self.avg_value_bytes,
            self.avg_headers_bytes,
            self.produced_per_s,
            self.produce_seconds,
            self.consumed_per_s,
            self.consume_seconds,
            self.live_per_s,
            self.live_seconds,
        );
        text.push_str(&pipeline);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of `records` records produced, consumed and produced live in `seconds`.
    fn report(records: u64, seconds: [u64; 3], pipeline: Option<PipelineRun>) -> RawReport {
        let [produce, consume, live] = seconds.map(Duration::from_secs);
        RawReport::new(
            "t".into(),
            3,
            records,
            (8.0, 250.0, 90.0),
            produce,
            records,
            consume,
            live,
            pipeline,
        )
    }

    #[test]
    fn raw_report_rates() {
        let pipeline = PipelineRun {
            units: 10_000,
            records: 110_000,
            elapsed: Duration::from_secs(4),
        };
        let r = report(200_000, [2, 1, 4], Some(pipeline));
        assert_eq!(r.produced_per_s, 100_000.0);
        assert_eq!(r.consumed_per_s, 200_000.0);
        assert_eq!(r.live_per_s, 50_000.0);
        assert_eq!(r.pipeline_units, 10_000);
        assert_eq!(r.pipeline_seconds, Some(4.0));
        assert_eq!(r.pipeline_units_per_s, Some(2_500.0));
        assert_eq!(r.pipeline_records_per_s, Some(27_500.0));
        let text = r.to_text();
        assert!(text.contains("produced    100000 records/s"), "{text}");
        assert!(
            text.contains("pipeline    27500 records/s (2500 orders/s, 10000 orders in 4.00 s"),
            "{text}"
        );
    }

    #[test]
    fn raw_report_without_pipeline_says_skipped_and_keeps_the_other_keys() {
        let r = report(1_000, [1, 1, 1], None);
        assert!(
            r.to_text().contains("pipeline    skipped"),
            "{}",
            r.to_text()
        );
        let json = serde_json::to_value(&r).expect("serializes");
        for key in [
            "produced_per_s",
            "consumed_per_s",
            "live_per_s",
            "avg_key_bytes",
            "avg_value_bytes",
            "avg_headers_bytes",
            "records",
            "partitions",
            "produce_seconds",
            "consume_seconds",
            "live_seconds",
        ] {
            assert!(json[key].is_number(), "{key}: {json}");
        }
        assert_eq!(json["pipeline_units"], 0);
        for key in [
            "pipeline_seconds",
            "pipeline_units_per_s",
            "pipeline_records_per_s",
        ] {
            assert!(json[key].is_null(), "{key}: {json}");
        }
    }
}
