//! Server statistics for INFO: per-command calls and time, errors by prefix, connection and
//! traffic counters. Counters are relaxed atomics: they are reports, not synchronisation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Counters of one command.
#[derive(Debug, Default)]
pub struct CommandStats {
    /// Times it ran.
    pub calls: AtomicU64,
    /// Nanoseconds spent running it. Summed in nanoseconds, not in whole microseconds per
    /// call: a command of about a microsecond would otherwise count as 1 µs or 0, and INFO
    /// would show well under its real time (Redis subtracts two microsecond clock readings,
    /// which errs either way and averages out).
    pub nsec: AtomicU64,
    /// Calls refused before running (arity, auth, unknown subcommand...).
    pub rejected: AtomicU64,
    /// Calls that ran and answered with an error.
    pub failed: AtomicU64,
}

/// Counters a connection accumulates privately and merges into [`Stats`] once per batch of
/// requests: every command touching shared atomics would bounce their cache lines between the
/// worker threads.
#[derive(Debug, Default)]
pub struct LocalStats {
    commands: u64,
    /// (command index, calls, nanoseconds, failed calls), a handful of entries per batch.
    per_command: Vec<(usize, u64, u64, u64)>,
}

impl LocalStats {
    /// Counts one command that ran.
    pub fn record(&mut self, index: usize, nsec: u64, failed: bool) {
        self.commands += 1;
        match self.per_command.iter_mut().find(|(i, ..)| *i == index) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += nsec;
                entry.3 += failed as u64;
            }
            None => self.per_command.push((index, 1, nsec, failed as u64)),
        }
    }

    /// Counts a command refused before it ran (also counted in the shared rejected counter).
    pub fn record_rejected(&mut self) {
        self.commands += 1;
    }
}

/// Every counter INFO reports.
#[derive(Debug)]
pub struct Stats {
    /// Per command, indexed like the command table.
    pub commands: Vec<CommandStats>,
    /// Error replies by prefix (`ERR`, `WRONGTYPE`...).
    pub errors: Mutex<BTreeMap<String, u64>>,
    /// Commands processed.
    pub total_commands: AtomicU64,
    /// Connections accepted.
    pub total_connections: AtomicU64,
    /// Connections refused by maxclients.
    pub rejected_connections: AtomicU64,
    /// Error replies sent.
    pub total_errors: AtomicU64,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
}

impl Stats {
    /// Zeroed counters for `commands` commands.
    pub fn new(commands: usize) -> Stats {
        Stats {
            commands: (0..commands).map(|_| CommandStats::default()).collect(),
            errors: Mutex::new(BTreeMap::new()),
            total_commands: AtomicU64::new(0),
            total_connections: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            total_errors: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
        }
    }

    /// Counts an error reply by its prefix.
    pub fn record_error(&self, line: &str) {
        let prefix = line.split(' ').next().unwrap_or("ERR");
        self.total_errors.fetch_add(1, Ordering::Relaxed);
        *self.errors.lock().entry(prefix.to_owned()).or_default() += 1;
    }

    /// Adds a connection's private counters and empties them.
    pub fn merge(&self, local: &mut LocalStats) {
        if local.commands > 0 {
            self.total_commands
                .fetch_add(local.commands, Ordering::Relaxed);
            local.commands = 0;
        }
        for (index, calls, nsec, failed) in local.per_command.drain(..) {
            if let Some(c) = self.commands.get(index) {
                c.calls.fetch_add(calls, Ordering::Relaxed);
                c.nsec.fetch_add(nsec, Ordering::Relaxed);
                if failed > 0 {
                    c.failed.fetch_add(failed, Ordering::Relaxed);
                }
            }
        }
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for c in &self.commands {
            for counter in [&c.calls, &c.nsec, &c.rejected, &c.failed] {
                counter.store(0, Ordering::Relaxed);
            }
        }
        self.errors.lock().clear();
        for counter in [
            &self.total_commands,
            &self.total_connections,
            &self.rejected_connections,
            &self.total_errors,
            &self.net_input_bytes,
            &self.net_output_bytes,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_time_adds_up_below_a_microsecond() {
        let stats = Stats::new(2);
        let mut local = LocalStats::default();
        for _ in 0..3 {
            local.record(1, 600, false);
        }
        local.record(1, 2_300, true);
        stats.merge(&mut local);
        let c = &stats.commands[1];
        assert_eq!(c.calls.load(Ordering::Relaxed), 4);
        assert_eq!(
            c.nsec.load(Ordering::Relaxed),
            4_100,
            "no call rounded away"
        );
        assert_eq!(c.failed.load(Ordering::Relaxed), 1);
        assert_eq!(stats.total_commands.load(Ordering::Relaxed), 4);
        stats.reset();
        assert_eq!(c.nsec.load(Ordering::Relaxed), 0);
    }
}
