//! The report of a run against the API.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::{per_second, round3, ErrorCounts, LatencySummary};

/// What was asked of the run, echoed in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    pub url: String,
    /// Orders per second aimed at; `None` means as fast as `concurrency` allows.
    pub target_rate: Option<f64>,
    pub concurrency: usize,
    pub seed: u64,
    pub users: usize,
    /// Whether verdicts were tracked on Kafka.
    pub tracked: bool,
    /// The `Authorization` sent: `none`, `given` (`--token`) or `self-minted` (an operator token
    /// minted from the configuration).
    pub auth: &'static str,
}

/// The raw material of a run's report.
#[derive(Debug, Clone, Default)]
pub struct RunTotals {
    pub sent: u64,
    pub accepted: u64,
    pub errors: ErrorCounts,
    /// From the first request sent to the last response received.
    pub send_phase: Duration,
    pub post_202: Option<LatencySummary>,
    /// 202 → the answer of `GET /pedidos/{id}`, with `--get-after-202`.
    pub get_after_202: Option<LatencySummary>,
    pub post_analise: Option<LatencySummary>,
    pub post_verdict: Option<LatencySummary>,
    /// Accepted orders whose `Analise` / verdict event was seen on `Notificacoes`.
    pub analise_seen: u64,
    pub verdicts: u64,
    pub aprovado: u64,
    pub recusado: u64,
    /// From the first request sent to the last verdict seen.
    pub verdict_phase: Duration,
    /// Status events on `Notificacoes` that matched no order of this run (other clients).
    pub foreign_events: u64,
    /// Orders whose verdict was on `Notificacoes` before their `Analise` event.
    pub analise_after_verdict: u64,
    /// Rate mode: how far the sender fell behind its schedule at worst.
    pub max_schedule_lag: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub sent_per_s: f64,
    pub accepted_per_s: f64,
    /// `None` when verdicts were not tracked.
    pub verdicted_per_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Errors {
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    pub post_202: Option<LatencySummary>,
    pub get_after_202: Option<LatencySummary>,
    pub post_analise: Option<LatencySummary>,
    pub post_verdict: Option<LatencySummary>,
}

/// The final report of a load run; serialises to the `--json` object.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub settings: RunSettings,
    pub send_seconds: f64,
    pub sent: u64,
    pub accepted: u64,
    pub errors: Errors,
    pub verdicts: Option<u64>,
    pub aprovado: Option<u64>,
    pub recusado: Option<u64>,
    pub verdicts_missing: Option<u64>,
    pub analise_missing: Option<u64>,
    pub foreign_events: Option<u64>,
    /// Orders whose verdict reached `Notificacoes` before their `Analise` event.
    pub analise_after_verdict: Option<u64>,
    pub throughput: Throughput,
    pub latency_ms: Latencies,
    pub max_schedule_lag_ms: f64,
}

impl RunReport {
    pub fn new(settings: RunSettings, t: &RunTotals) -> Self {
        let tracked = settings.tracked;
        let when = |v: u64| tracked.then_some(v);
        Self {
            send_seconds: round3(t.send_phase.as_secs_f64()),
            sent: t.sent,
            accepted: t.accepted,
            errors: Errors {
                total: t.errors.total(),
                by_kind: t.errors.by_label(),
            },
            verdicts: when(t.verdicts),
            aprovado: when(t.aprovado),
            recusado: when(t.recusado),
            verdicts_missing: when(t.accepted.saturating_sub(t.verdicts)),
            analise_missing: when(t.accepted.saturating_sub(t.analise_seen)),
            foreign_events: when(t.foreign_events),
            analise_after_verdict: when(t.analise_after_verdict),
            throughput: Throughput {
                sent_per_s: per_second(t.sent, t.send_phase),
                accepted_per_s: per_second(t.accepted, t.send_phase),
                verdicted_per_s: tracked.then(|| per_second(t.verdicts, t.verdict_phase)),
            },
            latency_ms: Latencies {
                post_202: t.post_202,
                get_after_202: t.get_after_202,
                post_analise: t.post_analise.filter(|_| tracked),
                post_verdict: t.post_verdict.filter(|_| tracked),
            },
            max_schedule_lag_ms: round3(t.max_schedule_lag.as_secs_f64() * 1000.0),
            settings,
        }
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let pace = match s.target_rate {
            Some(rate) => format!("{rate} orders/s (at most {} in flight)", s.concurrency),
            None => format!("max speed ({} in flight)", s.concurrency),
        };
        let auth = match s.auth {
            "none" => String::new(),
            other => format!(", bearer token ({other})"),
        };
        let _ = writeln!(
            out,
            "loadgen: {:.1} s at {pace} against {}, seed {}, {} users{auth}",
            self.send_seconds, s.url, s.seed, s.users
        );
        let t = &self.throughput;
        let _ = write!(
            out,
            "throughput  sent {:.1}/s  accepted {:.1}/s",
            t.sent_per_s, t.accepted_per_s
        );
        match t.verdicted_per_s {
            Some(v) => {
                let _ = writeln!(out, "  verdicted {v:.1}/s");
            }
            None => out.push_str("  verdicted (not tracked)\n"),
        }
        let _ = write!(
            out,
            "counts      sent {}  accepted (202) {}  errors {}",
            self.sent, self.accepted, self.errors.total
        );
        if !self.errors.by_kind.is_empty() {
            let kinds: Vec<String> = self
                .errors
                .by_kind
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            let _ = write!(out, " ({})", kinds.join(", "));
        }
        out.push('\n');
        if let (Some(v), Some(missing)) = (self.verdicts, self.verdicts_missing) {
            let _ = writeln!(
                out,
                "verdicts    {v} (Aprovado {}, Recusado {})  verdicts missing {missing}  Analise missing {}",
                self.aprovado.unwrap_or(0),
                self.recusado.unwrap_or(0),
                self.analise_missing.unwrap_or(0),
            );
        }
        if let Some(n) = self.analise_after_verdict.filter(|n| *n > 0) {
            let _ = writeln!(
                out,
                "order       {n} verdicts reached Notificacoes before their Analise event"
            );
        }
        if self.foreign_events.unwrap_or(0) > 0 {
            let _ = writeln!(
                out,
                "note        {} status events of other clients' orders were ignored",
                self.foreign_events.unwrap_or(0)
            );
        }
        if s.target_rate.is_some() {
            let _ = writeln!(
                out,
                "schedule    fell behind by at most {:.1} ms",
                self.max_schedule_lag_ms
            );
        }
        let _ = writeln!(
            out,
            "latency ms          count       p50       p90       p99       max"
        );
        // The GET row only when GETs were asked for (`--get-after-202`).
        let get = self.latency_ms.get_after_202;
        let rows = [
            ("POST -> 202", self.latency_ms.post_202, true),
            ("202 -> GET 200", get, get.is_some()),
            ("POST -> Analise", self.latency_ms.post_analise, true),
            ("POST -> verdict", self.latency_ms.post_verdict, true),
        ];
        for (name, summary, _) in rows.into_iter().filter(|row| row.2) {
            match summary {
                Some(l) if l.count > 0 => {
                    let _ = writeln!(
                        out,
                        "  {name:<16}{:>8}{:>10.2}{:>10.2}{:>10.2}{:>10.2}",
                        l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
                    );
                }
                Some(_) => {
                    let _ = writeln!(
                        out,
                        "  {name:<16}       0         -         -         -         -"
                    );
                }
                None => {
                    let _ = writeln!(out, "  {name:<16}(not tracked)");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ErrorKind, Latency};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn settings(tracked: bool) -> RunSettings {
        RunSettings {
            url: "http://127.0.0.1:8000".into(),
            target_rate: Some(1000.0),
            concurrency: 64,
            seed: 7,
            users: 500,
            tracked,
            auth: "none",
        }
    }

    fn totals() -> RunTotals {
        let mut lat = Latency::new();
        lat.record(ms(4));
        let mut errors = ErrorCounts::default();
        errors.add(ErrorKind::Http(503));
        errors.add(ErrorKind::Timeout);
        RunTotals {
            sent: 1002,
            accepted: 1000,
            errors,
            send_phase: Duration::from_secs(2),
            post_202: Some(lat.summary()),
            get_after_202: None,
            post_analise: Some(lat.summary()),
            post_verdict: Some(lat.summary()),
            analise_seen: 1000,
            verdicts: 990,
            aprovado: 900,
            recusado: 90,
            verdict_phase: Duration::from_secs(2),
            foreign_events: 0,
            analise_after_verdict: 4,
            max_schedule_lag: ms(3),
        }
    }

    #[test]
    fn report_counts_rates_and_missing_verdicts() {
        let r = RunReport::new(settings(true), &totals());
        assert_eq!(r.throughput.accepted_per_s, 500.0);
        assert_eq!(r.throughput.verdicted_per_s, Some(495.0));
        assert_eq!(r.verdicts_missing, Some(10));
        assert_eq!(r.analise_missing, Some(0));
        assert_eq!(r.errors.total, 2);
        let text = r.to_text();
        for needle in [
            "accepted 500.0/s",
            "verdicted 495.0/s",
            "errors 2 (http_503: 1, timeout: 1)",
            "verdicts missing 10",
            "POST -> verdict",
            "p99",
            "fell behind by at most 3.0 ms",
            "4 verdicts reached Notificacoes before their Analise event",
        ] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
    }

    #[test]
    fn the_get_after_202_row_and_its_errors_show_only_when_gets_were_sent() {
        let without = RunReport::new(settings(true), &totals()).to_text();
        assert!(!without.contains("202 -> GET 200"), "{without}");
        let mut t = totals();
        let mut get = Latency::new();
        get.record(ms(2));
        t.get_after_202 = Some(get.summary());
        t.errors.add(ErrorKind::Get(404));
        let r = RunReport::new(settings(true), &t);
        assert_eq!(r.latency_ms.get_after_202.map(|l| l.count), Some(1));
        let text = r.to_text();
        assert!(text.contains("202 -> GET 200"), "{text}");
        assert!(text.contains("get_http_404: 1"), "{text}");
    }

    #[test]
    fn report_json_is_one_object_with_the_documented_keys() {
        let r = RunReport::new(settings(true), &totals());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["accepted"], 1000);
        assert_eq!(v["errors"]["by_kind"]["http_503"], 1);
        assert_eq!(v["verdicts_missing"], 10);
        assert_eq!(v["throughput"]["verdicted_per_s"], 495.0);
        assert_eq!(v["latency_ms"]["post_verdict"]["count"], 1);
        assert!(v["latency_ms"]["post_verdict"]["p99_ms"].as_f64().unwrap() > 3.9);
        assert_eq!(v["settings"]["seed"], 7);
    }

    #[test]
    fn report_says_which_credentials_were_sent() {
        let plain = RunReport::new(settings(true), &totals());
        assert!(!plain.to_text().contains("bearer"), "{}", plain.to_text());
        let minted = RunReport::new(
            RunSettings {
                auth: "self-minted",
                ..settings(true)
            },
            &totals(),
        );
        assert!(minted.to_text().contains("bearer token (self-minted)"));
        assert_eq!(
            serde_json::to_value(&minted).unwrap()["settings"]["auth"],
            "self-minted"
        );
    }

    #[test]
    fn untracked_report_says_so_instead_of_claiming_missing_verdicts() {
        let r = RunReport::new(settings(false), &totals());
        assert_eq!(r.verdicts_missing, None);
        assert_eq!(r.throughput.verdicted_per_s, None);
        assert!(r.latency_ms.post_verdict.is_none());
        let text = r.to_text();
        assert!(text.contains("verdicted (not tracked)"), "{text}");
        assert!(text.contains("(not tracked)"), "{text}");
        assert!(!text.contains("verdicts missing"), "{text}");
    }
}
