//! Warn-once bookkeeping: the plugin is sampled every `collection_interval` (1 s by default),
//! so a missing or garbled file would otherwise flood the host's log. Each distinct problem —
//! a kind plus the file name it concerns (not the task, so the set stays bounded under task
//! churn) — is logged through `log::warn!` (forwarded to the host by the SDK) the first time only.

use std::collections::HashSet;

/// What went wrong with a file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Problem {
    /// A file every task cgroup should have does not exist.
    Missing,
    /// The file exists but could not be read (permissions, I/O error).
    Unreadable,
    /// The file was read but its contents do not parse.
    Garbled,
    /// Something about the cgroup hierarchy itself (no hierarchy found, layout changed).
    Hierarchy,
}

/// The set of problems already reported.
#[derive(Default, Debug)]
pub struct Warnings {
    seen: HashSet<(Problem, &'static str)>,
}

impl Warnings {
    /// Logs `message()` unless `(problem, what)` was reported before; the message is only
    /// formatted when it is actually logged. Returns whether it was logged.
    pub fn warn(&mut self, problem: Problem, what: &'static str, message: impl FnOnce() -> String) -> bool {
        let first = self.seen.insert((problem, what));
        if first {
            let message = message();
            log::warn!("{message}");
        }
        first
    }

    /// Whether `(problem, what)` has been reported.
    pub fn reported(&self, problem: Problem, what: &'static str) -> bool {
        self.seen.contains(&(problem, what))
    }

    /// Forgets a hierarchy-level problem so it is reported again if it comes back after being
    /// resolved (for example the cgroup root appearing, then disappearing).
    pub fn clear(&mut self, problem: Problem, what: &'static str) {
        self.seen.remove(&(problem, what));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_problem_is_logged_once() {
        let mut warnings = Warnings::default();
        let mut formatted = 0;
        for _ in 0..3 {
            warnings.warn(Problem::Garbled, "memory.stat", || {
                formatted += 1;
                "garbled".into()
            });
        }
        assert_eq!(formatted, 1, "the message is built only when logged");
        assert!(warnings.reported(Problem::Garbled, "memory.stat"));
        assert!(!warnings.reported(Problem::Missing, "memory.stat"));
        assert!(warnings.warn(Problem::Missing, "memory.stat", String::new));
        warnings.clear(Problem::Missing, "memory.stat");
        assert!(warnings.warn(Problem::Missing, "memory.stat", String::new));
    }
}
