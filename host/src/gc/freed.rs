//! `allocd.gc.bytes_freed`: the space collections gave back, as the filesystem shows it.
//!
//! Backends delete in the background (out of sight at once, then a walk) and the plugin ABI
//! reports no sizes, so the collector measures what an operator's disk alert sees: the drop in
//! the allocation filesystem's used bytes from just before a deletion until the space has
//! settled. Deletions that overlap share one window, so one drop is never counted twice. Other
//! writers on the same filesystem make the figure approximate: their writes hide part of it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes freed so far and the measurement under way.
#[derive(Default)]
pub struct FreedSpace {
    total: AtomicU64,
    window: Mutex<Option<Window>>,
}

/// Deletions whose space has not settled yet.
#[derive(Clone, Copy)]
struct Window {
    used_before: u64,
    deletions: u64,
}

impl FreedSpace {
    /// A deletion finished (out of sight) that began with `used_before` bytes in use. True when
    /// it opens a window: the caller then waits for the space to settle and calls [`Self::end`].
    pub fn begin(&self, used_before: u64) -> bool {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        match window.as_mut() {
            Some(open) => {
                open.deletions += 1;
                false
            }
            None => {
                *window = Some(Window { used_before, deletions: 1 });
                true
            }
        }
    }

    /// The bytes in use before the open window's first deletion, and how many it holds.
    pub fn window(&self) -> Option<(u64, u64)> {
        let window = *self.window.lock().unwrap_or_else(|e| e.into_inner());
        window.map(|w| (w.used_before, w.deletions))
    }

    /// Closes the window with the settled `used` bytes.
    pub fn end(&self, used: u64) {
        if let Some(window) = self.window.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.total.fetch_add(window.used_before.saturating_sub(used), Ordering::Relaxed);
        }
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_deletions_count_one_drop() {
        let freed = FreedSpace::default();
        assert!(freed.begin(1_000));
        assert!(!freed.begin(900), "a second deletion joins the open window");
        assert_eq!(freed.window(), Some((1_000, 2)));
        freed.end(400);
        assert_eq!(freed.total(), 600);
        assert!(freed.begin(400));
        freed.end(700); // others wrote more than was freed: nothing counted, never negative
        assert_eq!(freed.total(), 600);
        assert_eq!(freed.window(), None);
    }
}
