//! Switches that break the system on purpose, so that the fault simulation can show its
//! checker catches each break. Compiled only with the `fault-injection` feature, which only
//! `simulation/` (a workspace of its own) turns on: no server build contains them.
//!
//! Switches are per thread: turmoil runs every simulated host on the test's own thread, so a
//! sabotaged run never leaks into another test running beside it.

use std::cell::Cell;

/// A way to break the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sabotage {
    /// The leader answers reads without confirming it still leads (no read index).
    SkipReadBarrier,
    /// Entries count as durable before the disk write completed: every wait of `durable.rs`
    /// is skipped (the three switches below at once).
    AckBeforeFsync,
    /// A follower answers AppendEntries before the entries are on its disk.
    AnswerBeforeFsync,
    /// A node applies entries before they are on its own disk.
    ApplyBeforeFsync,
    /// A leader tells followers a commit position beyond its own disk.
    CommitBeyondDisk,
    /// Entries are applied at the applying node's own clock rather than the time they carry.
    ApplyLocalTime,
    /// A leader's lease never runs out for reads: once a majority accepted a heartbeat of its
    /// leadership, it answers reads from its own state for as long as it believes it leads,
    /// though followers (and it) grant votes again after the usual span.
    LeaseOutlivesVotes,
    /// The simulation slows the clock of a leader it cuts off to a twentieth of its rate, far
    /// beyond the drift the lease allows for: its lease then lasts past the write timeout that
    /// moves the writers to a new leader (read by the simulation's nemesis).
    ClockRatesApart,
}

impl Sabotage {
    fn bit(self) -> u8 {
        match self {
            Sabotage::SkipReadBarrier => 1,
            Sabotage::AckBeforeFsync => 2,
            Sabotage::ApplyLocalTime => 4,
            Sabotage::AnswerBeforeFsync => 8,
            Sabotage::ApplyBeforeFsync => 16,
            Sabotage::CommitBeyondDisk => 32,
            Sabotage::LeaseOutlivesVotes => 64,
            Sabotage::ClockRatesApart => 128,
        }
    }
}

thread_local! {
    static ON: Cell<u8> = const { Cell::new(0) };
}

/// Turns `which` on or off for this thread.
pub fn set(which: Sabotage, on: bool) {
    ON.with(|s| {
        let bits = if on {
            s.get() | which.bit()
        } else {
            s.get() & !which.bit()
        };
        s.set(bits);
    });
}

/// Whether `which` is on for this thread.
pub fn on(which: Sabotage) -> bool {
    ON.with(|s| s.get() & which.bit() != 0)
}
