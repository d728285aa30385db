//! Time and seeds as the node stamps operations: a wall clock that never goes back, and a
//! fresh seed per random command. Both are read on the leader when a command is parsed and
//! then travel in the operation; nothing applied reads them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch from the system clock.
pub fn system_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Milliseconds since the Unix epoch that never go backwards, so operations stamped one after
/// another carry non-decreasing times even if the wall clock steps back.
#[derive(Debug)]
pub struct Clock {
    last: AtomicU64,
    /// The wall clock: the system's, or simulated time in `simulation/`.
    source: fn() -> u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(system_time_ms)
    }
}

impl Clock {
    /// A clock reading `source`.
    pub fn new(source: fn() -> u64) -> Clock {
        Clock {
            last: AtomicU64::new(0),
            source,
        }
    }

    /// The current time in ms, at least the last one returned.
    pub fn now_ms(&self) -> u64 {
        let wall = (self.source)();
        // Read first: the shared line is written at most once per millisecond, not once per
        // command, so it is not bounced between cores.
        let previous = self.last.load(Ordering::Relaxed);
        if wall <= previous {
            return previous;
        }
        self.last.fetch_max(wall, Ordering::Relaxed).max(wall)
    }

    /// Never answer earlier than `ms` from now on.
    pub fn advance_to(&self, ms: u64) {
        self.last.fetch_max(ms, Ordering::Relaxed);
    }
}

/// A fresh seed for random commands, from the per-thread generator Raft's election timeouts
/// draw from (started at a random point in a server, seeded in a simulation; no shared counter
/// to contend on). Seeds need not be unique, only carried by the operation.
pub fn next_seed() -> u64 {
    crate::replication::next_random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_never_goes_back() {
        let clock = Clock::default();
        clock.advance_to(u64::MAX / 2);
        assert_eq!(clock.now_ms(), u64::MAX / 2);
    }
}
