//! A value that a SIGHUP may replace while requests use it: the ACLs, the TLS acceptor, the
//! fleet's cluster and its forwarding client. A reader takes a clone of the value in force (an
//! `Arc` or a handle) and keeps it for as long as it needs, so a replacement never changes
//! anything under a request that already started.

use std::sync::RwLock;

pub struct Live<T>(RwLock<T>);

impl<T: Clone> Live<T> {
    pub fn new(value: T) -> Self {
        Self(RwLock::new(value))
    }

    /// The value in force (also after a panic while it was being replaced).
    pub fn current(&self) -> T {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `value` in force; the one it replaces.
    pub fn replace(&self, value: T) -> T {
        std::mem::replace(&mut *self.0.write().unwrap_or_else(|e| e.into_inner()), value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_keeps_what_it_took_while_the_value_is_replaced() {
        let live = Live::new(std::sync::Arc::new(1));
        let taken = live.current();
        assert_eq!(*live.replace(std::sync::Arc::new(2)), 1);
        assert_eq!((*taken, *live.current()), (1, 2));
    }
}
