//! When a producer should batch: its own rate of records, measured over short windows.
//!
//! librdkafka's `linger.ms` is fixed when a client is made. Lingering 5 ms halves the requests
//! per order from about 1,000 orders/s on, but below that rate records do not meet within the
//! linger, and every hop of an order's way pays it (BENCHMARKS.md, "The producers' linger").
//! So [`super::Producer`] keeps a prompt client and a lingering one, and this says which one a
//! record goes to: the lingering one while the producer's rate is at or above the switch rate,
//! the prompt one again once it falls below half of it (so a rate near the switch does not
//! flap), and after any pause.

use std::time::{Duration, Instant};

/// How long one measurement lasts: at the default switch rate it counts a hundred records, and
/// a burst is followed within a tenth of a second.
const WINDOW: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(super) struct Pace {
    /// Records per second from which records linger.
    above: f64,
    window_start: Instant,
    counted: u32,
    batching: bool,
}

impl Pace {
    pub(super) fn new(above_per_sec: u32, now: Instant) -> Self {
        Self {
            above: f64::from(above_per_sec),
            window_start: now,
            counted: 0,
            batching: false,
        }
    }

    /// Counts a record sent at `now`; says whether it should linger to share a request.
    pub(super) fn batch(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            // The window just ended, or a pause did: the rate over it decides until the next.
            let rate = f64::from(self.counted) / elapsed.as_secs_f64();
            let threshold = if self.batching {
                self.above / 2.0
            } else {
                self.above
            };
            self.batching = rate >= threshold;
            self.window_start = now;
            self.counted = 0;
        }
        self.counted += 1;
        self.batching
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `count` records evenly over `over`, from `start`; returns the last record's answer
    /// and the time after the last one.
    fn send(pace: &mut Pace, start: Instant, count: u32, over: Duration) -> (bool, Instant) {
        let gap = over / count;
        let mut answer = false;
        for i in 0..count {
            answer = pace.batch(start + gap * i);
        }
        (answer, start + over)
    }

    #[test]
    fn a_trickle_goes_out_at_once() {
        let t0 = Instant::now();
        let mut pace = Pace::new(1_000, t0);
        // 100 records/s for 2 s: never batched.
        let gap = Duration::from_millis(10);
        assert!((0..200).all(|i| !pace.batch(t0 + gap * i)));
    }

    #[test]
    fn a_flow_above_the_switch_rate_lingers_from_the_next_window_on() {
        let t0 = Instant::now();
        let mut pace = Pace::new(1_000, t0);
        // The first window is measured before anything can linger.
        let (first, t1) = send(&mut pace, t0, 110, WINDOW);
        assert!(!first);
        let (second, _) = send(&mut pace, t1, 110, WINDOW);
        assert!(
            second,
            "1,100 records/s, above the switch rate, should linger"
        );
    }

    #[test]
    fn just_below_the_switch_rate_nothing_lingers() {
        let t0 = Instant::now();
        let mut pace = Pace::new(1_000, t0);
        let mut t = t0;
        for _ in 0..10 {
            let (batching, next) = send(&mut pace, t, 90, WINDOW);
            assert!(!batching, "900 records/s is below the switch rate");
            t = next;
        }
    }

    #[test]
    fn once_lingering_it_holds_until_the_rate_halves() {
        let t0 = Instant::now();
        let mut pace = Pace::new(1_000, t0);
        let (_, t1) = send(&mut pace, t0, 200, WINDOW);
        // 600 records/s: below the switch, above half of it: still lingering.
        let (held, t2) = send(&mut pace, t1, 60, WINDOW);
        assert!(held);
        let (still, t3) = send(&mut pace, t2, 60, WINDOW);
        assert!(still);
        // 400 records/s: below half: prompt again from the next window.
        let (_, t4) = send(&mut pace, t3, 40, WINDOW);
        let (prompt, _) = send(&mut pace, t4, 40, WINDOW);
        assert!(!prompt);
    }

    #[test]
    fn the_first_record_after_a_pause_goes_out_at_once() {
        let t0 = Instant::now();
        let mut pace = Pace::new(1_000, t0);
        let (_, t1) = send(&mut pace, t0, 500, WINDOW);
        assert!(pace.batch(t1), "5,000 records/s lingers");
        // Nothing for a second: the window that ends with the next record saw one record.
        assert!(!pace.batch(t1 + Duration::from_secs(1)));
    }
}
