//! The velocity rule end to end: its verdicts stay a pure function of the input log. One stream
//! of orders, some customers fast enough to trip the rule, is decided by the mesh's fraud
//! (undisturbed: the reference) and, on the same `Pedidos`, by three more fraud groups writing to
//! topics of their own: one killed (-9) twice mid-stream, one joined by a second instance
//! mid-stream (partitions move between them), and one in exactly-once mode, killed twice too. Afterwards the reference group is reset to the beginning and replays
//! everything. In all three cases every order gets exactly the reference's verdict, and the
//! refusals name velocity.

use std::collections::HashMap;
use std::time::Duration;

use e2e::ledger::{finish_and_check, read_verdicts, Driver};
use e2e::mesh::{Mesh, Options, WAIT};
use e2e::{message, Daemon};
use testkit::{read_topic, reset_group_to_earliest, Broker};
use tokio::time::Instant;

/// ~13 customers (`e2e::orders::order_body`) at 60 orders/s: each places ~4 orders a second, so
/// a limit of 20 in 5 s is crossed now and then, not always.
const TOTAL: usize = 2_400;
const RATE: u32 = 60;
const VELOCITY: [(&str, &str); 2] = [
    ("PEDIDOS_FRAUD__VELOCITY_MAX_ORDERS", "20"),
    ("PEDIDOS_FRAUD__VELOCITY_WINDOW_SECS", "5"),
];

/// Each order's verdicts, `(status, motivo)`, one per copy found.
type Verdicts = HashMap<String, Vec<(String, String)>>;

/// A fraud group of its own on the mesh's `Pedidos`, publishing to topics of its own.
struct Variant {
    name: String,
    env: Vec<(String, String)>,
    daemons: Vec<Daemon>,
    validos: String,
    recusados: String,
}

impl Variant {
    fn start(mesh: &Mesh, name: &str, instances: usize, extra: &[(&str, &str)]) -> Self {
        let topics = &mesh.config.topics;
        let (validos, recusados) = (
            format!("{}-{name}", topics.pedidos_validos),
            format!("{}-{name}", topics.pedidos_recusados),
        );
        let mut env = mesh.env.clone();
        env.extend([
            (
                "PEDIDOS_FRAUD__GROUP_ID".to_string(),
                format!("{}-{name}", mesh.config.fraud.group_id),
            ),
            ("PEDIDOS_TOPICS__PEDIDOS_VALIDOS".into(), validos.clone()),
            (
                "PEDIDOS_TOPICS__PEDIDOS_RECUSADOS".into(),
                recusados.clone(),
            ),
            (
                "PEDIDOS_TOPICS__NOTIFICACOES".into(),
                format!("{}-{name}", topics.notificacoes),
            ),
        ]);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut variant = Self {
            name: name.to_string(),
            env,
            daemons: Vec::new(),
            validos,
            recusados,
        };
        for _ in 0..instances {
            variant.add_instance(mesh);
        }
        variant
    }

    /// One more fraud process in the group: the group rebalances.
    fn add_instance(&mut self, mesh: &Mesh) {
        let name = format!("fraud-{}{}", self.name, self.daemons.len());
        let daemon = Daemon::spawn(&name, "fraud", mesh.dir.path(), &self.env);
        self.daemons.push(daemon);
    }
}

/// Each order's verdicts on `validos` and `recusados`, once every order of `ids` has one (or
/// `WAIT` ran out).
async fn verdicts(mesh: &Mesh, validos: &str, recusados: &str, ids: &[String]) -> Verdicts {
    let records = read_verdicts(&mesh.config.kafka, validos, recusados, ids.iter(), WAIT).await;
    let mut found: Verdicts = HashMap::new();
    for record in &records {
        let value = record.json();
        let field = |name: &str| value[name].as_str().unwrap_or_default().to_string();
        found
            .entry(field("id"))
            .or_default()
            .push((field("status"), field("motivo")));
    }
    found
}

/// Every order of `reference` has, in `other`, only copies of its reference verdict.
fn assert_same_verdicts(reference: &Verdicts, other: &Verdicts, what: &str) {
    let mut differing = Vec::new();
    for (id, want) in reference {
        match other.get(id) {
            None => differing.push(format!("{id}: no verdict")),
            Some(got) if got.iter().any(|v| v != &want[0]) => {
                differing.push(format!("{id}: {:?}, reference {:?}", got, want[0]))
            }
            Some(_) => {}
        }
    }
    assert!(
        differing.is_empty(),
        "{what}: {} of {} orders differ from the reference, e.g. {:?}",
        differing.len(),
        reference.len(),
        &differing[..differing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn velocity_verdicts_survive_replay_kill_9_and_a_second_instance() {
    let options = Options::default().with_env(&VELOCITY);
    let mut mesh = Mesh::start_with_options(Broker::shared(), options).await;
    let mut killed = Variant::start(&mesh, "killed", 1, &[]);
    let mut pair = Variant::start(&mesh, "pair", 1, &[]);
    let transactional = [("PEDIDOS_FRAUD__TRANSACTIONAL", "true")];
    let mut exactly_once = Variant::start(&mesh, "exactly-once", 1, &transactional);

    let driver = Driver::start(&mesh.api_url, TOTAL, RATE, 16);
    for round in 1..=2 {
        driver.wait_accepted(round * TOTAL / 3, WAIT).await;
        if round == 1 {
            // The second instance joins mid-stream: partitions move, windows are rebuilt.
            pair.add_instance(&mesh);
        }
        for victim in [&mut killed.daemons[0], &mut exactly_once.daemons[0]] {
            victim.kill();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        killed.daemons[0].start();
        exactly_once.daemons[0].start();
    }
    let report = finish_and_check(&mut mesh, driver, "the velocity stream").await;
    let (topics, kafka) = (mesh.config.topics.clone(), mesh.config.kafka.clone());
    let ids: Vec<String> = {
        let all = read_topic(&kafka, &topics.pedidos, report.accepted, WAIT).await;
        all.iter()
            .map(|r| r.json()["id"].as_str().unwrap().to_string())
            .collect()
    };
    let reference = verdicts(
        &mesh,
        &topics.pedidos_validos,
        &topics.pedidos_recusados,
        &ids,
    )
    .await;
    assert_eq!(reference.len(), report.accepted);

    // The rule was exercised: it refused some orders, and others of the same customers passed.
    let velocity = reference
        .values()
        .filter(|v| v[0].1.starts_with("velocidade: "))
        .count();
    let approved = reference.values().filter(|v| v[0].0 == "Aprovado").count();
    eprintln!(
        "velocity: {} orders, {velocity} refused by velocity, {approved} approved",
        reference.len()
    );
    assert!(velocity >= 50, "velocity refused only {velocity} orders");
    assert!(approved >= 100, "only {approved} orders approved");

    let after_kills = verdicts(&mesh, &killed.validos, &killed.recusados, &ids).await;
    assert_same_verdicts(&reference, &after_kills, "kill -9 of fraud mid-stream");
    let after_pair = verdicts(&mesh, &pair.validos, &pair.recusados, &ids).await;
    assert_same_verdicts(&reference, &after_pair, "two fraud instances");
    let transacted = verdicts(&mesh, &exactly_once.validos, &exactly_once.recusados, &ids).await;
    assert_same_verdicts(
        &reference,
        &transacted,
        "exactly-once mode, killed -9 twice",
    );
    let copies = transacted.values().filter(|v| v.len() > 1).count();
    assert_eq!(copies, 0, "exactly-once mode committed each verdict once");
    // Both variants got there by rebuilding their windows from the log: the killed one after
    // each restart, the pair at its start and again for the partitions that moved.
    let rebuilds = |daemons: &[Daemon]| -> usize {
        daemons
            .iter()
            .flat_map(|d| d.log_events())
            .filter(|e| message(e) == "handler state rebuilt from the log")
            .count()
    };
    let (after_restarts, in_pair) = (rebuilds(&killed.daemons), rebuilds(&pair.daemons));
    eprintln!("velocity: windows rebuilt {after_restarts} times by the killed fraud, {in_pair} by the pair");
    assert!(
        after_restarts >= 9,
        "3 partitions × 3 starts, got {after_restarts}"
    );
    assert!(
        in_pair >= 4,
        "3 partitions, then the one(s) that moved; got {in_pair}"
    );

    // The reference group, reset to the beginning, decides everything again: each order now has
    // two copies of the same verdict.
    assert_eq!(
        tokio::task::block_in_place(|| mesh.daemon_mut("fraud").terminate(WAIT)),
        Some(0)
    );
    reset_group_to_earliest(&kafka, &mesh.config.fraud.group_id, &topics.pedidos).await;
    mesh.daemon_mut("fraud").start();
    let deadline = Instant::now() + WAIT;
    let replayed = loop {
        let found = verdicts(
            &mesh,
            &topics.pedidos_validos,
            &topics.pedidos_recusados,
            &ids,
        )
        .await;
        if found.values().all(|v| v.len() >= 2) || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let twice = replayed.values().filter(|v| v.len() >= 2).count();
    assert_eq!(
        twice,
        reference.len(),
        "every order decided again after the reset"
    );
    assert_same_verdicts(&reference, &replayed, "replay after resetting the group");

    let mut variants = [killed.daemons, pair.daemons, exactly_once.daemons];
    for daemon in variants.iter_mut().flatten() {
        assert!(
            daemon.is_running(),
            "{} exited:\n{}",
            daemon.name,
            daemon.log_text()
        );
    }
}
