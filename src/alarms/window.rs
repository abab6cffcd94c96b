//! A sliding-window event counter with bounded memory.
//!
//! Events are counted in buckets of 1/[`BUCKETS`] of the window rather than kept one by one,
//! so a counter costs at most `BUCKETS` entries however many events it sees: one per principal
//! is affordable even under a flood. The price is resolution: an event leaves the count when
//! its whole bucket does, so the window it is counted in is exact only to one bucket.

use std::collections::VecDeque;

/// Buckets per window: 50 divides any whole number of seconds into whole milliseconds.
const BUCKETS: i64 = 50;

#[derive(Debug)]
pub(crate) struct SlidingWindow {
    bucket_ms: i64,
    /// Whole buckets that fit in the window, so no event is counted for longer than it.
    span: i64,
    /// (bucket index, events in it), oldest first; only non-empty buckets are kept.
    buckets: VecDeque<(i64, u64)>,
    total: u64,
}

impl SlidingWindow {
    pub(crate) fn new(window_ms: i64) -> Self {
        let window_ms = window_ms.max(1);
        let bucket_ms = (window_ms + BUCKETS - 1) / BUCKETS;
        Self {
            bucket_ms,
            span: window_ms / bucket_ms,
            buckets: VecDeque::new(),
            total: 0,
        }
    }

    /// Forgets events that fell out of the window ending at `now_ms`; returns what is left.
    pub(crate) fn advance(&mut self, now_ms: i64) -> u64 {
        let current = self.bucket_of(now_ms);
        while let Some(&(index, count)) = self.buckets.front() {
            if index > current - self.span {
                break;
            }
            self.total -= count;
            self.buckets.pop_front();
        }
        self.total
    }

    /// Counts one event at `now_ms`; returns the count within the window, this event included.
    pub(crate) fn add(&mut self, now_ms: i64) -> u64 {
        self.advance(now_ms);
        let current = self.bucket_of(now_ms);
        match self.buckets.back_mut() {
            Some((index, count)) if *index == current => *count += 1,
            _ => self.buckets.push_back((current, 1)),
        }
        self.total += 1;
        self.total
    }

    /// Observations come from many request tasks and may arrive slightly out of order; a
    /// late one counts in the newest bucket instead of reopening an older one.
    fn bucket_of(&self, now_ms: i64) -> i64 {
        let index = now_ms.div_euclid(self.bucket_ms);
        self.buckets
            .back()
            .map_or(index, |&(newest, _)| index.max(newest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_the_window_and_forgets_after_it() {
        let mut window = SlidingWindow::new(60_000);
        assert_eq!(window.add(0), 1);
        assert_eq!(window.add(500), 2);
        assert_eq!(window.add(30_000), 3);
        assert_eq!(window.advance(59_999), 3);
        // The first bucket (0..1200 ms) has aged out; the event at 30 s has not.
        assert_eq!(window.advance(60_000), 1);
        assert_eq!(window.advance(90_000), 0);
        assert!(window.buckets.is_empty());
    }

    #[test]
    fn memory_is_bounded_by_the_bucket_count() {
        let mut window = SlidingWindow::new(60_000);
        for t in 0..100_000 {
            window.add(t);
        }
        assert!(window.buckets.len() <= BUCKETS as usize);
        // Buckets of 1200 ms: the last 50 started at 40.8 s.
        assert_eq!(window.total, 100_000 - 40_800);
    }

    #[test]
    fn late_events_count_in_the_newest_bucket() {
        let mut window = SlidingWindow::new(60_000);
        window.add(10_000);
        window.add(9_000);
        assert_eq!(window.buckets.len(), 1);
        // Both count in the bucket starting at 9.6 s, so they leave together, a minute later.
        assert_eq!(window.advance(69_599), 2);
        assert_eq!(window.advance(69_600), 0);
    }

    #[test]
    fn odd_windows_never_count_an_event_for_longer_than_the_window() {
        let mut window = SlidingWindow::new(1_001);
        window.add(0);
        assert_eq!(window.advance(900), 1);
        assert_eq!(window.advance(1_001), 0);
    }

    #[test]
    fn short_windows_still_have_buckets() {
        let mut window = SlidingWindow::new(1_000);
        window.add(0);
        assert_eq!(window.advance(999), 1);
        assert_eq!(window.advance(1_000), 0);
        assert_eq!(window.span * window.bucket_ms, 1_000);
    }
}
