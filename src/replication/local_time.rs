//! The clock a node measures spans on: openraft's timers (heartbeats, election timeouts, the
//! followers' side of the leader lease) and the leader's own lease ([`super::Lease`]).
//!
//! It is tokio's monotonic clock. The fault simulation runs it at a rate of its own on each
//! host ([`use_clock_rate`]), so that the lease is tested against clocks that run apart, the
//! one thing its safety depends on. In a server the rate is always 1 and nothing is scaled.

use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

/// An instant on this node's own monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalInstant(tokio::time::Instant);

impl LocalInstant {
    /// Now, on this node's clock.
    pub fn now() -> LocalInstant {
        LocalInstant(rate::to_local(tokio::time::Instant::now()))
    }

    /// The tokio instant at which this node's clock reads `self`.
    pub(super) fn to_tokio(self) -> tokio::time::Instant {
        rate::to_tokio(self.0)
    }
}

impl Add<Duration> for LocalInstant {
    type Output = LocalInstant;
    fn add(self, d: Duration) -> LocalInstant {
        LocalInstant(self.0 + d)
    }
}

impl AddAssign<Duration> for LocalInstant {
    fn add_assign(&mut self, d: Duration) {
        self.0 += d;
    }
}

impl Sub<Duration> for LocalInstant {
    type Output = LocalInstant;
    fn sub(self, d: Duration) -> LocalInstant {
        LocalInstant(self.0 - d)
    }
}

impl SubAssign<Duration> for LocalInstant {
    fn sub_assign(&mut self, d: Duration) {
        self.0 -= d;
    }
}

impl Sub<LocalInstant> for LocalInstant {
    type Output = Duration;
    fn sub(self, other: LocalInstant) -> Duration {
        self.0.saturating_duration_since(other.0)
    }
}

impl openraft::Instant for LocalInstant {
    fn now() -> Self {
        LocalInstant::now()
    }
}

/// `span` of this node's clock in tokio's time.
pub(super) fn tokio_span(span: Duration) -> Duration {
    rate::to_tokio_span(span)
}

/// Sleeps for `span` on this node's clock (how openraft's timers sleep).
pub fn sleep_local(span: Duration) -> tokio::time::Sleep {
    tokio::time::sleep(tokio_span(span))
}

/// A clock rate the fault simulation can change while a host runs: a second of tokio time
/// reads as `rate` seconds on a host that follows it ([`use_clock_rate`]).
#[derive(Debug, Clone)]
pub struct ClockRate(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl ClockRate {
    /// A rate of `rate`.
    pub fn new(rate: f64) -> ClockRate {
        ClockRate(std::sync::Arc::new(rate.to_bits().into()))
    }

    /// Changes the rate from now on (the clocks that follow it go on from where they are).
    pub fn set(&self, rate: f64) {
        self.0
            .store(rate.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

pub use rate::use_clock_rate;

#[cfg(not(all(feature = "fault-injection", tokio_unstable)))]
mod rate {
    use std::time::Duration;

    pub(super) fn to_local(t: tokio::time::Instant) -> tokio::time::Instant {
        t
    }

    pub(super) fn to_tokio(t: tokio::time::Instant) -> tokio::time::Instant {
        t
    }

    pub(super) fn to_tokio_span(span: Duration) -> Duration {
        span
    }

    /// Only the fault simulation runs clocks at other rates.
    pub fn use_clock_rate(rate: &super::ClockRate) {
        let _ = rate.get();
    }
}

/// Clocks per tokio runtime: turmoil runs each simulated host (each start of it) on a runtime of
/// its own, all on one thread. Each clock is linear in tokio's time from its last anchor.
#[cfg(all(feature = "fault-injection", tokio_unstable))]
mod rate {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::Duration;

    use tokio::runtime::{Handle, Id};
    use tokio::time::Instant;

    use super::ClockRate;

    struct Clock {
        source: ClockRate,
        rate: f64,
        /// A tokio instant and what this clock read then.
        tokio: Instant,
        local: Instant,
    }

    thread_local! {
        static CLOCKS: RefCell<HashMap<Id, Clock>> = RefCell::new(HashMap::new());
    }

    /// Runs this host's clock (the current tokio runtime's) at `rate`, from now on and as it
    /// changes.
    pub fn use_clock_rate(rate: &ClockRate) {
        let id = Handle::current().id();
        let now = Instant::now();
        let clock = Clock {
            source: rate.clone(),
            rate: rate.get(),
            tokio: now,
            local: now,
        };
        CLOCKS.with(|c| c.borrow_mut().insert(id, clock));
    }

    /// The current clock's (rate, anchor in tokio time, anchor in its own), re-anchored first
    /// if its rate changed.
    fn current() -> Option<(f64, Instant, Instant)> {
        let id = Handle::try_current().ok()?.id();
        CLOCKS.with(|c| {
            let mut clocks = c.borrow_mut();
            let clock = clocks.get_mut(&id)?;
            let wanted = clock.source.get();
            if wanted != clock.rate {
                let now = Instant::now();
                clock.local += now
                    .saturating_duration_since(clock.tokio)
                    .mul_f64(clock.rate);
                clock.tokio = now;
                clock.rate = wanted;
            }
            Some((clock.rate, clock.tokio, clock.local))
        })
    }

    pub(super) fn to_local(t: Instant) -> Instant {
        match current() {
            Some((rate, tokio, local)) => local + t.saturating_duration_since(tokio).mul_f64(rate),
            None => t,
        }
    }

    pub(super) fn to_tokio(t: Instant) -> Instant {
        match current() {
            Some((rate, tokio, local)) => tokio + t.saturating_duration_since(local).div_f64(rate),
            None => t,
        }
    }

    pub(super) fn to_tokio_span(span: Duration) -> Duration {
        match current() {
            Some((rate, _, _)) => span.div_f64(rate),
            None => span,
        }
    }
}
