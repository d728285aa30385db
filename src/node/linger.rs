//! How long the write batcher waits for writers it expects back before proposing an entry.
//!
//! With one entry in flight, clients that each wait for their reply before writing again
//! split into two groups that take turns: the writers answered by one entry come back while
//! the next is in flight, so each entry carries about half of them (measured on three nodes:
//! 2 clients, 1 write per entry and no more throughput than 1 client; 16 clients, 7.8 per
//! entry). An entry's round (the leader's sync, a follower's round trip) costs about the same
//! for one write or sixteen, so the batcher waits a little for the writers the last entry
//! answered, as long as they were busy writing: it expects back as many writes as the last
//! entry answered plus those that had queued meanwhile, and proposes as soon as that many
//! have queued, or when a wait of at most one round (and at most `cluster.batch_wait_us`)
//! ends. A lone client never waits (the last entry answered its one write and nothing else
//! had queued). Writers answered may not write again soon (a client that reads next, or
//! pauses): a wait that ends with no write gained makes the batcher skip the next wait, then
//! the next 2, 4, ... up to 64, until a wait gains a write again, so such a workload pays at
//! most one round now and then rather than one per entry.
//!
//! Rounds take a few hundred microseconds, finer than tokio's timer (milliseconds), so on a
//! server the wait is a `timerfd` on the runtime's reactor. On a current-thread runtime (the
//! simulation, whose time is simulated) it is tokio's timer.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// When the batcher waits for more writes, and for how long.
pub(super) struct Linger {
    /// The most a wait lasts (`cluster.batch_wait_us`); zero turns waiting off.
    most: Duration,
    /// Writes expected back: the last entry's writes and the ones queued when it was answered.
    expected: usize,
    /// How long the last entry took, from its proposal to its answer.
    last_round: Duration,
    /// Waits to skip, after waits that gained nothing.
    skip: u32,
    /// How many the next fruitless wait makes the batcher skip, halved back to 0 by a wait
    /// that gains a write.
    backoff: u32,
    timer: Timer,
}

/// The most waits one fruitless wait makes the batcher skip.
const MAX_SKIP: u32 = 64;

impl Linger {
    pub(super) fn new(most: Duration) -> Linger {
        Linger {
            most,
            expected: 0,
            last_round: Duration::ZERO,
            skip: 0,
            backoff: 0,
            timer: Timer::new(),
        }
    }

    /// Notes an entry answered after `round`, carrying `answered` writes, with `queued`
    /// more waiting by then.
    pub(super) fn answered(&mut self, answered: usize, queued: usize, round: Duration) {
        self.expected = answered + queued;
        self.last_round = round;
    }

    /// Notes an entry that failed: nothing is expected back.
    pub(super) fn failed(&mut self) {
        self.expected = 0;
    }

    /// How long to wait for more writes when `have` are ready, or `None` to propose now.
    pub(super) fn wait_for(&mut self, have: usize) -> Option<Duration> {
        let wait = self.most.min(self.last_round);
        if self.enough(have) || wait.is_zero() {
            return None;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        Some(wait)
    }

    /// Whether `have` writes are as many as expected.
    pub(super) fn enough(&self, have: usize) -> bool {
        have >= self.expected
    }

    /// Starts a wait of `wait`; [`Linger::elapsed`] then resolves when it ends.
    pub(super) fn start(&mut self, wait: Duration) {
        self.timer.start(wait);
    }

    /// Resolves when the wait started last has ended (cancel-safe).
    pub(super) async fn elapsed(&mut self) {
        self.timer.elapsed().await;
    }

    /// Ends the wait (early, or after it elapsed), which gained `gained` writes.
    pub(super) fn stop(&mut self, gained: usize) {
        self.timer.stop();
        if gained == 0 {
            self.backoff = (self.backoff * 2).clamp(1, MAX_SKIP);
            self.skip = self.backoff;
        } else {
            self.backoff /= 2;
        }
    }
}

/// A one-shot timer with microsecond resolution where the runtime allows it.
enum Timer {
    /// A `timerfd` read through the reactor (a multi-threaded runtime).
    Fine(AsyncFd<OwnedFd>),
    /// tokio's timer (millisecond wheel; simulated time in the simulation).
    Coarse(Option<std::pin::Pin<Box<tokio::time::Sleep>>>),
}

impl Timer {
    fn new() -> Timer {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let fine = || -> io::Result<AsyncFd<OwnedFd>> {
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            register(fd)
        };
        match multi_thread.then(fine) {
            Some(Ok(fd)) => Timer::Fine(fd),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "no timerfd: the write batcher waits on tokio's timer");
                Timer::Coarse(None)
            }
            None => Timer::Coarse(None),
        }
    }

    fn start(&mut self, wait: Duration) {
        match self {
            Timer::Fine(fd) => set(fd, wait),
            Timer::Coarse(sleep) => *sleep = Some(Box::pin(tokio::time::sleep(wait))),
        }
    }

    async fn elapsed(&mut self) {
        match self {
            Timer::Fine(fd) => loop {
                let Ok(mut ready) = fd.readable().await else {
                    return;
                };
                let mut expirations = [0u8; 8];
                match rustix::io::read(fd.get_ref(), &mut expirations) {
                    Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                    // Expired, or the timer cannot be read: the wait is over either way.
                    _ => return,
                }
            },
            Timer::Coarse(Some(sleep)) => sleep.as_mut().await,
            Timer::Coarse(None) => std::future::pending().await,
        }
    }

    fn stop(&mut self) {
        match self {
            Timer::Fine(fd) => {
                set(fd, Duration::ZERO);
                // An expiry that came before the disarm must not end the next wait.
                let _ = rustix::io::read(fd.get_ref(), &mut [0u8; 8]);
            }
            Timer::Coarse(sleep) => *sleep = None,
        }
    }
}

/// `fd` on the runtime's reactor, for reading.
#[allow(unsafe_code)]
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is an open descriptor, owned by the `AsyncFd` from here on and
    // closed only when that is dropped; its raw descriptor never changes.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(io::Error::from)
}

/// Arms `fd` to expire once after `wait` (zero disarms it).
fn set(fd: &AsyncFd<OwnedFd>, wait: Duration) {
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let value = Timespec {
        tv_sec: wait.as_secs() as i64,
        tv_nsec: i64::from(wait.subsec_nanos()),
    };
    let spec = Itimerspec {
        it_interval: zero,
        it_value: value,
    };
    if let Err(e) = timerfd_settime(fd.get_ref(), TimerfdTimerFlags::empty(), &spec) {
        tracing::debug!(error = %e, "timerfd_settime failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUND: Duration = Duration::from_micros(300);

    #[tokio::test]
    async fn a_lone_writer_never_waits() {
        let mut linger = Linger::new(Duration::from_micros(400));
        assert_eq!(linger.wait_for(1), None, "nothing answered yet");
        linger.answered(1, 0, ROUND);
        assert_eq!(linger.wait_for(1), None);
    }

    #[tokio::test]
    async fn writers_taking_turns_are_waited_for_at_most_a_round() {
        let mut linger = Linger::new(Duration::from_micros(400));
        // The last entry answered one write while another had queued: two expected back.
        linger.answered(1, 1, ROUND);
        assert_eq!(linger.wait_for(1), Some(ROUND));
        assert!(!linger.enough(1) && linger.enough(2));
        assert_eq!(linger.wait_for(2), None);
        linger.answered(8, 8, Duration::from_millis(5));
        assert_eq!(linger.wait_for(9), Some(Duration::from_micros(400)));
        linger.failed();
        assert_eq!(linger.wait_for(1), None, "a failed entry answered nobody");
    }

    #[tokio::test]
    async fn fruitless_waits_are_skipped_more_and_more_until_one_gains_a_write() {
        let mut linger = Linger::new(Duration::from_micros(400));
        let waits = |linger: &mut Linger, entries: usize| {
            (0..entries)
                .filter(|_| {
                    linger.answered(1, 1, ROUND);
                    linger.wait_for(1).is_some()
                })
                .count()
        };
        assert_eq!(waits(&mut linger, 1), 1);
        linger.stop(0);
        // One fruitless wait: the next is skipped.
        assert_eq!(waits(&mut linger, 2), 1);
        linger.stop(0);
        // Two in a row: the next two are skipped.
        assert_eq!(waits(&mut linger, 3), 1);
        for _ in 0..10 {
            linger.stop(0);
        }
        assert_eq!(waits(&mut linger, 64), 0, "64 skipped after many");
        assert_eq!(waits(&mut linger, 1), 1);
        linger.stop(1);
        assert_eq!(waits(&mut linger, 1), 1, "a wait that gained a write");
    }

    #[tokio::test]
    async fn a_wait_of_zero_turns_waiting_off() {
        let mut linger = Linger::new(Duration::ZERO);
        linger.answered(8, 8, ROUND);
        assert_eq!(linger.wait_for(1), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_fine_timer_ends_a_wait_and_a_stopped_one_leaves_no_expiry_behind() {
        let mut timer = Timer::new();
        assert!(
            matches!(timer, Timer::Fine(_)),
            "no timerfd on a server runtime"
        );
        timer.start(Duration::from_micros(200));
        tokio::time::timeout(Duration::from_secs(20), timer.elapsed())
            .await
            .expect("the wait ended");
        // An expiry that nobody read before the timer was stopped must not end the next wait.
        timer.start(Duration::from_micros(1));
        std::thread::sleep(Duration::from_millis(5));
        timer.stop();
        timer.start(Duration::from_secs(600));
        let early = tokio::time::timeout(Duration::from_millis(50), timer.elapsed()).await;
        assert!(early.is_err(), "a stale expiry ended a new wait");
    }
}
