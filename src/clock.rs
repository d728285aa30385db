//! The wall clock a node stamps operations with, and reads to compare its time with its
//! peers': milliseconds since the Unix epoch that never go backwards. Shared by the node
//! (which stamps operations) and the cluster bus (which refuses peers whose clocks differ too
//! much), so both see one time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in ms since the epoch: the system's in a server, simulated time
/// (with a per-host offset) in `simulation/`.
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Milliseconds since the Unix epoch from the system clock.
pub fn system_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The system clock as a [`WallClock`].
pub fn system_clock() -> WallClock {
    Arc::new(system_time_ms)
}

/// Milliseconds since the Unix epoch that never go backwards, so operations stamped one after
/// another carry non-decreasing times even if the wall clock steps back.
pub struct Clock {
    last: AtomicU64,
    source: WallClock,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("last", &self.last.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(system_clock())
    }
}

impl Clock {
    /// A clock reading `source`.
    pub fn new(source: WallClock) -> Clock {
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
        // Read first, as in `now_ms`: every read calls this, and an unconditional `fetch_max`
        // would take the shared line exclusive on every call, bouncing it between cores.
        if self.last.load(Ordering::Relaxed) < ms {
            self.last.fetch_max(ms, Ordering::Relaxed);
        }
    }
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

    #[test]
    fn a_wall_clock_stepping_back_does_not_move_the_clock_back() {
        let wall = Arc::new(AtomicU64::new(1_000));
        let source = wall.clone();
        let clock = Clock::new(Arc::new(move || source.load(Ordering::Relaxed)));
        assert_eq!(clock.now_ms(), 1_000);
        wall.store(400, Ordering::Relaxed);
        assert_eq!(clock.now_ms(), 1_000);
        wall.store(1_200, Ordering::Relaxed);
        assert_eq!(clock.now_ms(), 1_200);
    }
}
