//! The live progress bar on stderr: elapsed time, accepted rate, counts. Hidden when stderr is
//! not a terminal or with `--quiet`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::driver::Counters;

/// What the bar fills up towards.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    Count(u64),
    Duration(Duration),
    Forever,
}

pub struct Progress {
    bar: ProgressBar,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing (when `wanted` and stderr is a terminal).
    pub fn start(
        wanted: bool,
        goal: Goal,
        counters: Arc<Counters>,
        verdicts: Option<Arc<AtomicU64>>,
    ) -> Self {
        let stop = CancellationToken::new();
        if !wanted || !std::io::stderr().is_terminal() {
            return Self {
                bar: ProgressBar::hidden(),
                stop,
                task: None,
            };
        }
        let (len, template) = match goal {
            Goal::Count(n) => (
                Some(n),
                "{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} {msg}",
            ),
            Goal::Duration(d) => (
                Some(d.as_millis() as u64),
                "{elapsed_precise} [{bar:30.cyan/blue}] {msg}",
            ),
            Goal::Forever => (None, "{spinner:.green} {elapsed_precise} {msg}"),
        };
        let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("static template")
                .progress_chars("=> "),
        );
        let task = tokio::spawn(draw(bar.clone(), goal, counters, verdicts, stop.clone()));
        Self {
            bar,
            stop,
            task: Some(task),
        }
    }

    /// Shown while waiting for the last verdicts.
    pub fn set_phase(&self, phase: &str) {
        self.bar.set_prefix(phase.to_string());
    }

    pub async fn finish(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.bar.finish_and_clear();
    }
}

async fn draw(
    bar: ProgressBar,
    goal: Goal,
    counters: Arc<Counters>,
    verdicts: Option<Arc<AtomicU64>>,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    // Accepted count a second ago, for the rate: a ring of the last five samples.
    let mut window = std::collections::VecDeque::from([(started, 0u64)]);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let sent = counters.sent.load(Ordering::Relaxed);
        let accepted = counters.accepted.load(Ordering::Relaxed);
        let errors = counters.errors.load(Ordering::Relaxed);
        window.push_back((now, accepted));
        while window.len() > 6 {
            window.pop_front();
        }
        let (then, before) = window[0];
        let secs = now.duration_since(then).as_secs_f64();
        let rate = if secs > 0.0 {
            (accepted - before) as f64 / secs
        } else {
            0.0
        };
        match goal {
            Goal::Count(_) => bar.set_position(sent),
            Goal::Duration(d) => {
                bar.set_position((now.duration_since(started).min(d)).as_millis() as u64)
            }
            Goal::Forever => bar.tick(),
        }
        let mut message = format!("{rate:>7.0}/s  accepted {accepted}  errors {errors}");
        if let Some(v) = &verdicts {
            message.push_str(&format!("  verdicts {}", v.load(Ordering::Relaxed)));
        }
        let phase = bar.prefix();
        if !phase.is_empty() {
            message.push_str(&format!("  ({phase})"));
        }
        bar.set_message(message);
    }
}
