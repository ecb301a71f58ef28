//! A bounded memory of recently seen ids: at-least-once delivery replays events, and a customer
//! should hear about each status change once.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

pub struct DedupWindow<T> {
    seen: HashSet<T>,
    order: VecDeque<T>,
    capacity: usize,
}

impl<T: Hash + Eq + Clone> DedupWindow<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: HashSet::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
        }
    }

    /// True the first time an id is offered within the window; false for a repeat.
    pub fn first_time(&mut self, id: T) -> bool {
        if self.seen.contains(&id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(id.clone());
        self.order.push_back(id);
        true
    }

    /// Whether `id` is within the window, without offering it.
    pub fn contains(&self, id: &T) -> bool {
        self.seen.contains(id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_dropped() {
        let mut w = DedupWindow::new(3);
        assert!(w.first_time(1));
        assert!(!w.first_time(1));
        assert!(w.first_time(2));
        assert!(!w.first_time(1));
        assert!(!w.first_time(2));
    }

    #[test]
    fn the_window_is_bounded_and_forgets_the_oldest() {
        let mut w = DedupWindow::new(3);
        for id in 1..=4 {
            assert!(w.first_time(id));
        }
        assert_eq!(w.len(), 3);
        assert!(w.first_time(1), "1 fell out of the window");
        assert!(!w.first_time(4));
        assert!(!w.first_time(3));
    }

    #[test]
    fn contains_looks_without_remembering() {
        let mut w = DedupWindow::new(2);
        assert!(!w.contains(&1));
        assert!(w.first_time(1), "looking did not remember 1");
        assert!(w.contains(&1));
        w.first_time(2);
        w.first_time(3);
        assert!(!w.contains(&1), "1 fell out of the window");
    }

    #[test]
    fn a_window_of_zero_still_remembers_the_last_id() {
        let mut w = DedupWindow::new(0);
        assert!(w.first_time("a"));
        assert!(!w.first_time("a"));
        assert!(w.first_time("b"));
        assert!(w.first_time("a"));
    }
}
