//! The orders this instance's POST handlers have written to the store, until the reader reads
//! them back from the topics: it then skips what the store already holds (the order's row and
//! its `Analise`) rather than writing it a second time, so each order costs the store one
//! write of each row. Bounded: an entry the reader never claims (it read the record before the
//! POST's commit, or another instance shares the topics) ages out, and then the reader merely
//! writes that row again, which changes nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

/// Orders per generation: two generations are kept, so at most twice this many entries.
const GENERATION: usize = 16_384;

const ORDER: u8 = 1;
const RECEIVED: u8 = 2;

#[derive(Default)]
pub struct Posted {
    generations: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: HashMap<Uuid, u8>,
    previous: HashMap<Uuid, u8>,
}

impl Posted {
    /// These orders, and their `Analise`, are in the store (committed).
    pub fn insert(&self, ids: impl IntoIterator<Item = Uuid>) {
        let mut g = self.generations.lock().unwrap();
        for id in ids {
            if g.current.len() >= GENERATION {
                g.previous = std::mem::take(&mut g.current);
            }
            g.current.insert(id, ORDER | RECEIVED);
        }
    }

    /// Whether the store already holds this order's row; each is claimed once.
    pub fn claim_order(&self, id: Uuid) -> bool {
        self.claim(id, ORDER)
    }

    /// Whether the store already holds this order's `Analise`; each is claimed once.
    pub fn claim_received(&self, id: Uuid) -> bool {
        self.claim(id, RECEIVED)
    }

    fn claim(&self, id: Uuid, part: u8) -> bool {
        let mut g = self.generations.lock().unwrap();
        let Generations { current, previous } = &mut *g;
        for generation in [current, previous] {
            if let Some(parts) = generation.get_mut(&id) {
                let held = *parts & part != 0;
                *parts &= !part;
                if *parts == 0 {
                    generation.remove(&id);
                }
                return held;
            }
        }
        false
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let g = self.generations.lock().unwrap();
        g.current.len() + g.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_part_of_a_posted_order_is_claimed_once() {
        let posted = Posted::default();
        let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
        posted.insert([id]);
        assert!(!posted.claim_order(other), "never posted here");
        assert!(posted.claim_order(id));
        assert!(!posted.claim_order(id), "read a second time: written again");
        assert!(posted.claim_received(id));
        assert!(!posted.claim_received(id));
        assert_eq!(posted.len(), 0, "both parts claimed: forgotten");
    }

    #[test]
    fn unclaimed_entries_age_out_after_two_generations() {
        let posted = Posted::default();
        let first = Uuid::now_v7();
        posted.insert([first]);
        posted.insert((0..GENERATION).map(|_| Uuid::now_v7()));
        assert!(posted.claim_order(first), "one generation old: still known");
        posted.insert((0..2 * GENERATION).map(|_| Uuid::now_v7()));
        assert!(
            !posted.claim_received(first),
            "two generations old: forgotten"
        );
        assert!(posted.len() <= 2 * GENERATION);
    }
}
