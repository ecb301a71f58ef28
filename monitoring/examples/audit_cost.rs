//! What the audit writer costs, without a broker: `LINES` order records (default 200,000)
//! through [`AuditWriter`] the way the consumer loop hands them over (at most `IN_FLIGHT`,
//! default 10,000, waiting for their line), into a file in `DIR` (default: a temporary
//! directory), once per setting: no rotation; rotation every `ROTATE_BYTES` (default 1 MiB);
//! and `fdatasync` before each acknowledgement.
//!
//! `cargo run --release -p monitoring --example audit_cost`. Prints lines/s and MiB/s.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Instant;

use chrono::Utc;
use monitoring::audit::entry;
use monitoring::audit_file::Rotation;
use monitoring::writer::AuditWriter;
use shared::config::TopicsConfig;
use shared::events::{Order, OutRecord};
use shared::pipeline::InRecord;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(dir: &Path, name: &str, rotation: Rotation, fsync: bool) {
    let (lines, in_flight) = (env("LINES", 200_000usize), env("IN_FLIGHT", 10_000usize));
    let path = dir.join(format!("{name}.jsonl"));
    let (writer, thread) = AuditWriter::open(&path, rotation, fsync).expect("audit file");
    let topics = TopicsConfig::default();
    let record = OutRecord::event(
        "Pedidos",
        &Order::new("ana", "livro", 2, "19.90".parse().unwrap()),
    );
    let started = Instant::now();
    let mut waiting = VecDeque::with_capacity(in_flight);
    for _ in 0..lines {
        if waiting.len() == in_flight {
            let oldest: tokio::sync::oneshot::Receiver<()> = waiting.pop_front().unwrap();
            oldest.await.expect("written");
        }
        let e = entry(
            &InRecord::new("Pedidos", Some(&record.payload)),
            &topics,
            Utc::now(),
        );
        waiting.push_back(writer.append(&e));
    }
    for w in waiting {
        w.await.expect("written");
    }
    let took = started.elapsed().as_secs_f64();
    drop(writer);
    thread.join().expect("writer thread");
    let mut bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let rotated = monitoring::audit_file::rotated_files(&path).expect("rotated files");
    for f in &rotated {
        bytes += std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    }
    println!(
        "{name:>10}: {lines} lines in {took:.2} s: {:.0} lines/s, {:.1} MiB/s, {} rotated files",
        lines as f64 / took,
        bytes as f64 / took / 1048576.0,
        rotated.len()
    );
}

#[tokio::main]
async fn main() {
    let temp = tempfile::tempdir().expect("a temporary directory");
    let dir = std::env::var("DIR").map_or(temp.path().to_path_buf(), Into::into);
    let rotate = Rotation {
        max_bytes: env("ROTATE_BYTES", 1024 * 1024u64),
        ..Rotation::default()
    };
    run(&dir, "plain", Rotation::default(), false).await;
    run(&dir, "rotating", rotate, false).await;
    run(&dir, "fsync", Rotation::default(), true).await;
}
