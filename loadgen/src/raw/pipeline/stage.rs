//! The pipeline's stages, what each reads and writes per order, and how far each got.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shared::config::TopicsConfig;

use crate::raw::{RawError, STALL};

/// A client of the pipeline phase, and the part of the mesh it plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The API: `Analise` to the status topic, then the order to `pedidos`.
    Source,
    /// Fraud: reads `pedidos`, writes an evaluated order and a verdict per order.
    Relay,
    /// Notification: reads the status topic.
    NotifyReader,
    /// Monitoring: reads all four topics.
    AuditReader,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Source => "source (the API's part)",
            Stage::Relay => "relay (fraud's part)",
            Stage::NotifyReader => "notify reader (notification's part)",
            Stage::AuditReader => "audit reader (monitoring's part)",
        })
    }
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::Source,
        Stage::Relay,
        Stage::NotifyReader,
        Stage::AuditReader,
    ];

    /// The topics it reads.
    pub fn reads(self, topics: &TopicsConfig) -> Vec<&str> {
        match self {
            Stage::Source => Vec::new(),
            Stage::Relay => vec![&topics.pedidos],
            Stage::NotifyReader => vec![&topics.notificacoes],
            Stage::AuditReader => topics.flow().to_vec(),
        }
    }

    /// Records it reads per order.
    pub fn reads_per_unit(self) -> u64 {
        match self {
            Stage::Source => 0,
            Stage::Relay => 1,
            Stage::NotifyReader => 2,
            Stage::AuditReader => 4,
        }
    }

    /// Records it produces per order.
    pub fn produces_per_unit(self) -> u64 {
        match self {
            Stage::Source | Stage::Relay => 2,
            Stage::NotifyReader | Stage::AuditReader => 0,
        }
    }
}

/// Records one order puts through the broker, produced and consumed: 4 + 7.
pub fn records_per_unit() -> u64 {
    Stage::ALL
        .iter()
        .map(|s| s.reads_per_unit() + s.produces_per_unit())
        .sum()
}

/// A reader's count against its two marks: the warm-up's records, then all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    seen: u64,
    marks: [u64; 2],
    next: usize,
}

impl Tally {
    /// For a reader of `per_unit` records per order, `warm_up` orders then `units` more.
    pub fn new(per_unit: u64, warm_up: u64, units: u64) -> Self {
        Self {
            seen: 0,
            marks: [per_unit * warm_up, per_unit * (warm_up + units)],
            next: 0,
        }
    }

    /// Counts one record; says which mark (0: warm-up, 1: all) it completed, if any.
    pub fn count(&mut self) -> Option<usize> {
        self.seen += 1;
        if self.next < self.marks.len() && self.seen >= self.marks[self.next] {
            self.next += 1;
            return Some(self.next - 1);
        }
        None
    }

    pub fn done(&self) -> bool {
        self.next == self.marks.len()
    }

    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The mark it is counting towards (the last one once done).
    pub fn expected(&self) -> u64 {
        self.marks[self.next.min(self.marks.len() - 1)]
    }
}

/// The phase's orders, and how far the relay got (for the error messages).
#[derive(Clone)]
pub struct Workload {
    warm_up: u64,
    /// Orders measured, after the warm-up's.
    units: u64,
    /// Orders the relay has read (and started forwarding), warm-up included.
    relayed: Arc<AtomicU64>,
}

impl Workload {
    pub fn new(warm_up: u64, units: u64) -> Self {
        Self {
            warm_up,
            units,
            relayed: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn tally(&self, stage: Stage) -> Tally {
        Tally::new(stage.reads_per_unit(), self.warm_up, self.units)
    }

    /// Counts an order the relay read.
    pub fn relayed_one(&self) {
        self.relayed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stalled(&self, stage: Stage, tally: &Tally) -> RawError {
        RawError::PipelineStalled {
            stage,
            seen: tally.seen(),
            expected: tally.expected(),
            silent: STALL,
            relayed: self.relayed.load(Ordering::Relaxed),
            units: self.warm_up + self.units,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::records::OrderPool;
    use shared::config::{Config, FraudConfig};

    #[test]
    fn each_stage_reads_and_writes_its_share_of_an_order() {
        let topics = crate::raw::topics::pipeline(&Config::default(), "p", 3);
        let pool = OrderPool::new(&topics, &FraudConfig::default(), 11, 40);
        for i in 0..40 {
            let o = pool.get(i);
            let records = [&o.order, &o.analise, &o.verdict, &o.evaluated];
            for stage in Stage::ALL {
                let reads = stage.reads(&topics);
                let read = records
                    .iter()
                    .filter(|r| reads.contains(&r.topic.as_str()))
                    .count() as u64;
                assert_eq!(read, stage.reads_per_unit(), "{stage}, order {i}");
            }
        }
        // The source writes the order and Analise, the relay the other two.
        let produced: u64 = Stage::ALL.iter().map(|s| s.produces_per_unit()).sum();
        assert_eq!(produced, 4);
        assert_eq!(records_per_unit(), 11);
    }

    #[test]
    fn tally_reports_the_warm_up_then_the_end() {
        // 2 records per order, 3 warm-up orders, then 5.
        let mut tally = Tally::new(2, 3, 5);
        let marks: Vec<(u64, usize)> = (1..=16)
            .filter_map(|n| tally.count().map(|mark| (n, mark)))
            .collect();
        assert_eq!(marks, vec![(6, 0), (16, 1)]);
        assert!(tally.done());
        assert_eq!(tally.seen(), 16);

        let mut tally = Tally::new(4, 100, 10);
        assert_eq!(tally.expected(), 400);
        for _ in 0..401 {
            tally.count();
        }
        assert!(!tally.done());
        assert_eq!((tally.seen(), tally.expected()), (401, 440));
    }

    #[test]
    fn a_stall_names_the_reader_and_its_counts() {
        let workload = Workload::new(100, 1_000);
        for _ in 0..900 {
            workload.relayed_one();
        }
        let mut tally = workload.tally(Stage::AuditReader);
        for _ in 0..3_000 {
            tally.count();
        }
        let message = workload.stalled(Stage::AuditReader, &tally).to_string();
        assert!(message.contains("audit reader"), "{message}");
        assert!(message.contains("after 3000 of 4400 records"), "{message}");
        assert!(
            message.contains("forwarded 900 of 1100 orders"),
            "{message}"
        );
    }
}
