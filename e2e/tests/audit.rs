//! monitoring's audit file under a steady stream (real processes, real Apache Kafka): rotated
//! by size, renamed by an external logrotate with SIGHUP, monitoring killed with `kill -9` in
//! the middle; and put on a small tmpfs that fills up mid-stream and is freed again.
//!
//! What "every record exactly once, after dedup by position" means here. monitoring is
//! at-least-once: a record's offset is stored only once its line is in the file, so a
//! `kill -9` (or a rebalance) makes it handle again the records after the last committed
//! offset, and those get a second line, with the same (topic, partition, offset) and a later
//! `recordedAt`. So the tests assert:
//!
//! - nothing missing: every record on the mesh's topics has a line in the concatenated audit
//!   files (current, rotated, logrotate's), and no line names a record that is not there;
//! - no line written twice, and none torn: rotation, reopen and a full disk never repeat or
//!   split a line (no two lines with the same position *and* the same `recordedAt`);
//! - a second line for a position only as a replay (a new handling, a later `recordedAt`), and
//!   none at all without a kill or a rebalance (the full-disk test).
//!
//! Run with the figures: `cargo test -p e2e --test audit -- --nocapture`.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use e2e::audit::{metric_sum, scrape, topic_positions, wait_audited, AuditFiles, Position, Tmpfs};
use e2e::ledger::{check_sent, Driver};
use e2e::mesh::{Mesh, Options, WAIT};
use e2e::{message, ready_becomes};
use testkit::Broker;

/// Asserts what holds for every run: nothing missing or foreign, nothing torn, no line twice.
/// Returns how many positions have more than one line (replays).
fn assert_every_record_once_after_dedup(files: &AuditFiles, wanted: &HashSet<Position>) -> usize {
    assert!(
        files.broken.is_empty(),
        "torn or broken audit lines: {:?}",
        &files.broken[..files.broken.len().min(5)]
    );
    let missing = files.missing(wanted);
    assert!(
        missing.is_empty(),
        "{} of {} records missing from the audit files, e.g. {:?}; files: {:?}",
        missing.len(),
        wanted.len(),
        &missing[..missing.len().min(5)],
        files.files
    );
    let foreign: Vec<&Position> = files
        .lines
        .iter()
        .map(|l| &l.position)
        .filter(|p| !wanted.contains(*p))
        .collect();
    assert!(
        foreign.is_empty(),
        "lines for records not on the topics: {foreign:?}"
    );
    let repeated = files.repeated();
    for (position, copies) in &repeated {
        let stamps: HashSet<_> = copies.iter().map(|l| l.recorded_at).collect();
        assert_eq!(
            stamps.len(),
            copies.len(),
            "one line written twice for {position:?}: {copies:?}"
        );
    }
    repeated.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_logrotate_and_kill_9_under_a_steady_stream_lose_and_repeat_no_line() {
    const TOTAL: usize = 2_000;
    const MAX_BYTES: u64 = 64 * 1024;
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("audit");
    let audit_file = dir.join("audit.jsonl");
    let max_bytes = MAX_BYTES.to_string();
    // Static membership: a restarted monitoring takes its partitions back at once, so the
    // three kills fit in the stream.
    let options = Options {
        static_membership: true,
        ..Options::default()
    }
    .with_env(&[
        (
            "PEDIDOS_MONITORING__AUDIT_FILE",
            audit_file.to_str().unwrap(),
        ),
        ("PEDIDOS_MONITORING__AUDIT_MAX_BYTES", max_bytes.as_str()),
        ("PEDIDOS_MONITORING__AUDIT_KEEP", "0"),
    ]);
    let mut mesh = Mesh::start_with_options(Broker::shared(), options).await;
    let driver = Driver::start(&mesh.api_url, TOTAL, 100, 16);

    // An external logrotate: rename, then SIGHUP.
    driver.wait_accepted(TOTAL / 4, WAIT).await;
    let logrotated = dir.join("audit.jsonl.logrotated");
    std::fs::rename(&audit_file, &logrotated).unwrap();
    mesh.daemon("monitoring").hangup();
    mesh.daemon("monitoring")
        .wait_for_log("the reopen on SIGHUP", WAIT, |e| {
            message(e) == "reopened the audit file (SIGHUP)"
        });
    assert!(
        mesh.daemon_mut("monitoring").is_running(),
        "SIGHUP does not end monitoring"
    );

    // kill -9 in mid-stream, and a restart, three times: with a rotation every second or
    // so, a kill may land in the middle of one.
    let first_kill = Utc::now();
    for fifth in 2..=4 {
        driver.wait_accepted(TOTAL * fifth / 5, WAIT).await;
        mesh.daemon_mut("monitoring").kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        mesh.daemon_mut("monitoring").start();
    }

    let sent = driver.finish().await;
    assert!(sent.accepted.len() >= TOTAL * 9 / 10, "{sent:?}");
    let wanted = topic_positions(&mesh.config, &sent, WAIT).await;
    let files = wait_audited(&dir, "audit", &wanted, WAIT).await;
    let replayed = assert_every_record_once_after_dedup(&files, &wanted);
    mesh.assert_all_running();

    let rotated = files
        .files
        .iter()
        .filter(|(p, _)| p != &audit_file && p != &logrotated)
        .count();
    assert!(rotated >= 40, "rotated by size: {:?}", files.files);
    for (path, len) in &files.files {
        assert!(
            *len <= MAX_BYTES || path == &logrotated,
            "{} is {len} bytes, over {MAX_BYTES}",
            path.display()
        );
    }
    let in_logrotated = files.lines.iter().filter(|l| l.file == logrotated).count();
    assert!(
        in_logrotated > 0,
        "lines before the SIGHUP went to the renamed file"
    );
    let replays_after_a_kill = files
        .repeated()
        .iter()
        .filter(|(_, copies)| copies.iter().any(|l| l.recorded_at >= first_kill))
        .count();
    let torn_tails_cut = mesh
        .daemon("monitoring")
        .log_events()
        .iter()
        .filter(|e| message(e).starts_with("cut off a torn last line"))
        .count();
    eprintln!(
        "audit after rotation, logrotate + SIGHUP and three kill -9: {} records, {} lines in {} files ({rotated} rotated by size), {replayed} positions replayed ({replays_after_a_kill} of them after the first kill), torn last lines cut at a restart: {torn_tails_cut}, accepted {} of {}",
        wanted.len(),
        files.lines.len(),
        files.files.len(),
        sent.accepted.len(),
        sent.sent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_monitoring_back_without_exit_and_it_resumes_with_no_gap_or_repeat() {
    let base = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&base.path().join("disk"), 16 * 1024 * 1024) else {
        return;
    };
    let audit_file = disk.dir.join("audit.jsonl");
    let (mut mesh, admin) = mesh_auditing_to(&audit_file, &[]).await;
    let admin_url = format!("http://{admin}");
    let driver = Driver::start(&mesh.api_url, 2_000, 100, 16);
    driver.wait_accepted(400, WAIT).await;

    let filler = disk.fill();
    let full_at = Instant::now();
    let body = ready_becomes("monitoring on a full disk", &admin_url, 503).await;
    let reasons = body["reasons"].to_string();
    assert!(
        reasons.contains(&audit_file.display().to_string()) && reasons.contains("os error 28"),
        "/ready names the audit file and the full disk: {body}"
    );
    // What the full disk left: usually part of a line, written into the last page the file
    // had, that the resume must complete rather than repeat.
    let cut_mid_line = !std::fs::read(&audit_file).unwrap().ends_with(b"\n");
    let metrics = scrape(&admin).await;
    assert_eq!(metric_sum(&metrics, "pedidos_audit_write_blocked"), 1.0);
    assert!(metric_sum(&metrics, "pedidos_audit_write_errors_total") >= 1.0);
    let written = metric_sum(&metrics, "pedidos_audit_lines_written_total");

    // Held back: records wait in flight, none is written, and monitoring stays up.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let metrics = scrape(&admin).await;
    assert_eq!(
        metric_sum(&metrics, "pedidos_audit_lines_written_total"),
        written,
        "no line is acknowledged while the disk is full"
    );
    let waiting = metric_sum(&metrics, "pedidos_records_in_flight");
    assert!(waiting > 0.0, "records wait for the audit file:\n{metrics}");
    assert!(
        mesh.daemon_mut("monitoring").is_running(),
        "monitoring does not exit"
    );

    std::fs::remove_file(&filler).unwrap();
    let freed_at = Instant::now();
    let blocked = freed_at - full_at;
    ready_becomes("monitoring once space returns", &admin_url, 200).await;
    let resumed_after = freed_at.elapsed();
    let metrics = scrape(&admin).await;
    assert_eq!(metric_sum(&metrics, "pedidos_audit_write_blocked"), 0.0);
    mesh.daemon("monitoring")
        .wait_for_log("the resume", WAIT, |e| {
            message(e).starts_with("the audit file takes lines again")
        });

    let sent = driver.finish().await;
    let report = check_sent(&mut mesh, &sent, "a full disk under monitoring").await;
    assert_eq!(report.audit_repeats, 0, "no kill, no replay: {report}");
    let wanted = topic_positions(&mesh.config, &sent, WAIT).await;
    let files = AuditFiles::read(&disk.dir, "audit");
    let replayed = assert_every_record_once_after_dedup(&files, &wanted);
    assert_eq!(replayed, 0, "no line twice for one record");
    assert_eq!(files.files.len(), 1, "{:?}", files.files);
    eprintln!(
        "full disk: {waiting} records waited in flight; blocked {:.1} s, a line cut mid-write by it: {cut_mid_line}; /ready 200 again {:.1} s after the space returned; {} records audited once each",
        blocked.as_secs_f64(),
        resumed_after.as_secs_f64(),
        wanted.len()
    );
    drop(mesh);
    drop(disk);
    assert!(!Path::new(&audit_file).exists(), "the tmpfs is unmounted");
}

/// The full disk held for longer than `max.poll.interval.ms` (7 s here) with few records
/// allowed in flight, so monitoring's loop stops taking records well before the space returns:
/// the group moves on without it (librdkafka leaves it), and hands it the same records again
/// once it polls; their lines are queued already, so none is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_longer_than_the_poll_interval_loses_and_repeats_no_line() {
    let base = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&base.path().join("disk"), 16 * 1024 * 1024) else {
        return;
    };
    let audit_file = disk.dir.join("audit.jsonl");
    let (mut mesh, admin) = mesh_auditing_to(
        &audit_file,
        &[
            ("PEDIDOS_MONITORING__MAX_IN_FLIGHT", "50"),
            (
                "PEDIDOS_KAFKA__CONSUMER_PROPERTIES",
                r#"{ "max.poll.interval.ms" = "7000", "session.timeout.ms" = "6000" }"#,
            ),
        ],
    )
    .await;
    let admin_url = format!("http://{admin}");
    let driver = Driver::start(&mesh.api_url, 1_500, 100, 16);
    driver.wait_accepted(300, WAIT).await;

    let filler = disk.fill();
    ready_becomes("monitoring on a full disk", &admin_url, 503).await;
    // Three poll intervals: a loop that stopped polling would have left its group by then.
    tokio::time::sleep(Duration::from_secs(21)).await;
    assert!(
        mesh.daemon_mut("monitoring").is_running(),
        "monitoring does not exit"
    );
    std::fs::remove_file(&filler).unwrap();
    ready_becomes("monitoring once space returns", &admin_url, 200).await;

    let sent = driver.finish().await;
    let report = check_sent(&mut mesh, &sent, "a full disk past the poll interval").await;
    let wanted = topic_positions(&mesh.config, &sent, WAIT).await;
    let files = AuditFiles::read(&disk.dir, "audit");
    let replayed = assert_every_record_once_after_dedup(&files, &wanted);
    let left_group = mesh
        .daemon("monitoring")
        .log_text()
        .contains("max.poll.interval.ms");
    let skipped = metric_sum(&scrape(&admin).await, "pedidos_audit_replays_skipped_total");
    eprintln!("full disk past the poll interval: left the group: {left_group}, {skipped} records handed again and not written twice, {replayed} positions with a second line; {report}");
    assert!(
        left_group && skipped > 0.0,
        "the group moved on without monitoring and handed it the records again"
    );
    assert_eq!(replayed, 0, "no line twice for one record: {report}");
    assert_eq!(report.audit_repeats, 0, "{report}");
    drop(mesh);
    drop(disk);
}

/// A mesh whose monitoring writes its audit file at `audit_file`, with the `extra` settings, and
/// monitoring's admin address.
async fn mesh_auditing_to(audit_file: &Path, extra: &[(&str, &str)]) -> (Mesh, String) {
    let options = Options::default()
        .with_env(&[(
            "PEDIDOS_MONITORING__AUDIT_FILE",
            audit_file.to_str().unwrap(),
        )])
        .with_env(extra);
    let mut mesh = Mesh::start_with_options(Broker::shared(), options).await;
    mesh.audit_file = audit_file.to_path_buf();
    let admin = mesh
        .daemon("monitoring")
        .admin_address()
        .expect("monitoring's admin address");
    (mesh, admin)
}
