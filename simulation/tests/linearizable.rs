//! Six concurrent clients (one of them only reads) against three nodes while a nemesis mixes faults at random per
//! seed: symmetric, one-way and bridge partitions, crashes of one node, of a majority and of
//! all nodes (unsynced disk writes lost), restarts, paused links, and clocks: every host runs
//! at its own offset (within the cluster's bound), and a node's clock jumps ahead or back
//! beyond it for a while; slow disks (on one node, or on all, which may then lose power with
//! writes in flight); and a follower that must catch up by a snapshot crashing while it writes
//! one. Every operation is
//! recorded with its invocation and completion time (unknown outcomes as such) and the
//! history goes through the linearizability checker (`ferrite_simulation::checker`):
//!
//! - registers: SET / GET;
//! - a register written with TTLs (SET PX / GET): once a read found it expired, it stays
//!   gone until the next write;
//! - a counter: INCR, the WASM write call `probe.incr`, GET, and the read-only call
//!   `probe.get_via_call` on the leader;
//! - lists: RPUSH / LRANGE 0 -1 on the leader (an Elle-style append workload);
//! - READONLY reads of the lists on followers, checked for what they promise: each session's
//!   reads never go back, and every read is a prefix of the final list (no element that was
//!   never written, no other order).
//!
//! The same seeds run with test-only switches that break the system (a read that skips the
//! read barrier, an acknowledgement before fsync, an apply at the node's own clock rather than
//! the entry's time): the checker must catch each.
//!
//! `FERRITE_SIM_SEEDS=1-1000 cargo test --release --test linearizable` runs any seeds; a
//! failure prints the seed and a minimal failing sub-history.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrite::sabotage::{self, Sabotage};
use ferrite_simulation::harness::{
    HOSTS, Live, Offsets, Rng, add_hosts, clock_rate, leader, reset_clock_rates, seeds, simulation,
    step,
};
use ferrite_simulation::workload::{
    CLIENTS, Shared, WORKLOAD, check_history, client, coordinator, note,
};

/// How far apart the hosts' clocks start: within the cluster's default bound (250 ms) for any
/// two of them.
const SPREAD_MS: u64 = 200;

/// The faults the nemesis can inject.
#[derive(Debug, Clone, Copy)]
enum Fault {
    IsolateLeader,
    IsolateOne,
    LeaderCannotSend,
    Bridge,
    CrashOne,
    CrashMajority,
    CrashAll,
    Pause,
    ClockAhead,
    ClockBehind,
    SlowDisk,
    CrashInSnapshot,
}

const FAULTS: [Fault; 12] = [
    Fault::IsolateLeader,
    Fault::IsolateOne,
    Fault::LeaderCannotSend,
    Fault::Bridge,
    Fault::CrashOne,
    Fault::CrashMajority,
    Fault::CrashAll,
    Fault::Pause,
    Fault::ClockAhead,
    Fault::ClockBehind,
    Fault::SlowDisk,
    Fault::CrashInSnapshot,
];

/// The run's outcome: the checked counts and a digest of everything recorded.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    checked: usize,
    completed: usize,
    unknown: usize,
    follower_reads: usize,
    events: Vec<String>,
    digest: u64,
}

/// Runs `seed`; the outcome, or the anomaly found.
fn run(seed: u64) -> Result<Outcome, String> {
    let mut sim = simulation(seed, Duration::from_secs(90));
    let live: Live = Arc::default();
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let offsets: Offsets = Arc::default();
    let base: Vec<i64> = (0..3)
        .map(|_| rng.between(0, SPREAD_MS + 1) as i64 - SPREAD_MS as i64 / 2)
        .collect();
    for (i, offset) in base.iter().enumerate() {
        offsets[i].store(*offset, Ordering::Relaxed);
    }
    let disks = add_hosts(&mut sim, &live, &offsets);
    let history: Shared = Arc::default();
    for id in 0..CLIENTS {
        let history = history.clone();
        sim.client(format!("c{id}"), client(id, seed, history));
    }
    {
        let (live, history) = (live.clone(), history.clone());
        sim.client("coordinator", coordinator(live, history));
    }
    let mut next_fault = Duration::from_millis(rng.between(2_000, 3_000));
    let mut heal_at: Option<Duration> = None;
    let mut crashed: Vec<&str> = Vec::new();
    // Hosts crashed while a snapshot write hung, and when each comes back.
    let mut hung: Vec<(usize, Duration)> = Vec::new();
    // When every node crashes during a slow-disk fault.
    let mut power_loss_at: Option<Duration> = None;
    loop {
        let at = sim.elapsed();
        for (i, disk) in disks.iter().enumerate() {
            if disk.snapshot_hung.swap(false, Ordering::Relaxed) {
                sim.crash(HOSTS[i]);
                live.lock().unwrap().remove(&(i as u64 + 1));
                hung.push((i, at + Duration::from_millis(rng.between(300, 1_500))));
                note(
                    &history,
                    at,
                    format!("n{} crashed writing a snapshot", i + 1),
                );
            }
        }
        if power_loss_at.is_some_and(|t| at >= t) {
            power_loss_at = None;
            for (i, host) in HOSTS.iter().enumerate() {
                if !hung.iter().any(|&(h, _)| h == i) && !crashed.contains(host) {
                    sim.crash(*host);
                    live.lock().unwrap().remove(&(i as u64 + 1));
                    crashed.push(host);
                }
            }
            note(&history, at, "power lost: every node crashed".into());
        }
        hung.retain(|&(i, back)| {
            if at < back {
                return true;
            }
            sim.bounce(HOSTS[i]);
            false
        });
        if let Some(h) = heal_at
            && at >= h
        {
            for a in HOSTS {
                for b in HOSTS {
                    if a != b {
                        sim.repair(a, b);
                        sim.release(a, b);
                    }
                }
            }
            for host in crashed.drain(..) {
                sim.bounce(host);
            }
            for (i, offset) in base.iter().enumerate() {
                offsets[i].store(*offset, Ordering::Relaxed);
            }
            reset_clock_rates();
            for disk in &disks {
                disk.slow_ms.store(0, Ordering::Relaxed);
            }
            note(&history, at, "healed, crashed nodes restarted".into());
            heal_at = None;
            next_fault = at + Duration::from_millis(rng.between(500, 2_000));
        }
        if heal_at.is_none() && at >= next_fault && at < WORKLOAD {
            let fault = FAULTS[rng.between(0, FAULTS.len() as u64) as usize];
            for disk in &disks {
                disk.hang_on_snapshot.store(false, Ordering::Relaxed);
            }
            let current = leader(&live).unwrap_or(1) as usize - 1;
            let random = rng.between(0, 3) as usize;
            let others = |i: usize| HOSTS.iter().enumerate().filter(move |(j, _)| *j != i);
            match fault {
                Fault::IsolateLeader | Fault::IsolateOne => {
                    let i = if matches!(fault, Fault::IsolateLeader) {
                        current
                    } else {
                        random
                    };
                    for (_, other) in others(i) {
                        sim.partition(HOSTS[i], *other);
                    }
                    note(&history, at, format!("{fault:?}: n{} cut off", i + 1));
                    if matches!(fault, Fault::IsolateLeader)
                        && sabotage::on(Sabotage::ClockRatesApart)
                    {
                        // Its lease then outlasts, in real time, the followers' refusal and
                        // the writers' timeout at it (at a quarter of its rate, the lease ended
                        // before any writer had moved to the new leader: not caught in 1-50).
                        clock_rate(i as u64 + 1).set(0.05);
                    }
                }
                Fault::LeaderCannotSend => {
                    for (_, other) in others(current) {
                        sim.partition_oneway(HOSTS[current], *other);
                    }
                    note(
                        &history,
                        at,
                        format!("{fault:?}: n{} can hear, not speak", current + 1),
                    );
                }
                Fault::Bridge => {
                    let (a, b) = ((random + 1) % 3, (random + 2) % 3);
                    sim.partition(HOSTS[a], HOSTS[b]);
                    note(
                        &history,
                        at,
                        format!(
                            "{fault:?}: n{} bridges n{} and n{}",
                            random + 1,
                            a + 1,
                            b + 1
                        ),
                    );
                }
                Fault::CrashOne | Fault::CrashMajority | Fault::CrashAll => {
                    let count = match fault {
                        Fault::CrashOne => 1,
                        Fault::CrashMajority => 2,
                        _ => 3,
                    };
                    for k in 0..count {
                        let index = (random + k) % 3;
                        if hung.iter().any(|&(i, _)| i == index) {
                            continue;
                        }
                        sim.crash(HOSTS[index]);
                        live.lock().unwrap().remove(&(index as u64 + 1));
                        crashed.push(HOSTS[index]);
                    }
                    note(&history, at, format!("{fault:?}: {crashed:?} crashed"));
                }
                Fault::Pause => {
                    for (_, other) in others(random) {
                        sim.hold(HOSTS[random], *other);
                    }
                    note(&history, at, format!("{fault:?}: n{} paused", random + 1));
                }
                Fault::ClockAhead => {
                    // The leader or any node, well beyond the bound: its peers must refuse it.
                    let i = if rng.between(0, 2) == 0 {
                        current
                    } else {
                        random
                    };
                    let jump = rng.between(300, 2_000) as i64;
                    offsets[i].store(base[i] + jump, Ordering::Relaxed);
                    note(
                        &history,
                        at,
                        format!("{fault:?}: n{}'s clock jumps {jump} ms", i + 1),
                    );
                }
                Fault::SlowDisk => {
                    // Writes slower than a heartbeat on one node (the leader's or any), or on
                    // all of them, which then may lose power while writes are in flight.
                    let ms = rng.between(30, 300);
                    let which = rng.between(0, 3);
                    let slowed: Vec<usize> = match which {
                        0 => vec![current],
                        1 => vec![random],
                        _ => vec![0, 1, 2],
                    };
                    for &i in &slowed {
                        disks[i].slow_ms.store(ms, Ordering::Relaxed);
                    }
                    let power_loss = which == 2 && rng.between(0, 2) == 0;
                    if power_loss {
                        power_loss_at = Some(at + Duration::from_millis(rng.between(200, 800)));
                    }
                    note(
                        &history,
                        at,
                        format!(
                            "{fault:?}: disks of {:?} take {ms} ms more per write{}",
                            slowed.iter().map(|i| i + 1).collect::<Vec<_>>(),
                            if power_loss { ", then lose power" } else { "" }
                        ),
                    );
                }
                Fault::CrashInSnapshot => {
                    // A follower falls behind (cut off) and, once back, catches up by a
                    // snapshot; the host crashes while writing it (or while writing one it
                    // built, whichever comes first).
                    let i = (current + 1 + random % 2) % 3;
                    for (_, other) in others(i) {
                        sim.partition(HOSTS[i], *other);
                    }
                    disks[i].hang_on_snapshot.store(true, Ordering::Relaxed);
                    note(
                        &history,
                        at,
                        format!(
                            "{fault:?}: n{} cut off, to crash at its next snapshot",
                            i + 1
                        ),
                    );
                }
                Fault::ClockBehind => {
                    // A follower's clock is set back, well beyond the bound, and it restarts
                    // (its stamps no longer hold it up); then the leader is cut off: the
                    // follower must not become a leader that reads at its time.
                    let i = (current + 1 + random % 2) % 3;
                    let jump = rng.between(300, 2_000) as i64;
                    offsets[i].store(base[i] - jump, Ordering::Relaxed);
                    live.lock().unwrap().remove(&(i as u64 + 1));
                    sim.bounce(HOSTS[i]);
                    for (_, other) in others(current) {
                        sim.partition(HOSTS[current], *other);
                    }
                    note(
                        &history,
                        at,
                        format!(
                            "{fault:?}: n{}'s clock jumps -{jump} ms, it restarts, leader n{} cut off",
                            i + 1,
                            current + 1
                        ),
                    );
                }
            }
            heal_at = Some(at + Duration::from_millis(rng.between(800, 3_000)));
        }
        if step(&mut sim)? {
            break;
        }
    }
    let h = std::mem::take(&mut *history.lock().unwrap());
    let checked = check_history(&h)?;
    let mut hasher = std::hash::DefaultHasher::new();
    format!(
        "{:?}{:?}{:?}{:?}{:?}{:?}",
        h.registers, h.expiring, h.counter, h.lists, h.follower_reads, h.events
    )
    .hash(&mut hasher);
    Ok(Outcome {
        checked,
        completed: h.completed,
        unknown: h.unknown,
        follower_reads: h.follower_reads.len(),
        events: h.events,
        digest: hasher.finish(),
    })
}

fn report(seed: u64, outcome: &Outcome) {
    println!(
        "seed {seed}: {} operations checked ({} completed, {} unknown), {} follower reads; faults: {}",
        outcome.checked,
        outcome.completed,
        outcome.unknown,
        outcome.follower_reads,
        outcome.events.join("; ")
    );
}

/// Everything runs in this one test, one simulation after another: a seed replays exactly
/// wherever it runs in the sequence (`harness::simulation` aligns tokio's process-wide task
/// ids, which decide the order a crashed host's tasks are dropped in), but simulations on
/// parallel test threads would take task ids from each other.
#[test]
fn histories_under_faults_are_linearizable_replay_exactly_and_catch_sabotage() {
    let seeds = seeds(1..=50);
    for &seed in &seeds {
        match run(seed) {
            Ok(outcome) => report(seed, &outcome),
            Err(e) => panic!(
                "seed {seed}: {e}\nreproduce with: cd simulation && FERRITE_SIM_SEEDS={seed} cargo test --release --test linearizable"
            ),
        }
    }

    // Each seed replays exactly: the same history, times and faults, by digest.
    let seed = seeds[0];
    let first = run(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let second = run(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert_eq!(first, second, "seed {seed} did not replay identically");
    println!(
        "seed {seed} replayed with trace digest {:016x}",
        first.digest
    );

    // The checker can fail: each switch that breaks the system is caught within the CI seeds.
    // (A chosen seed list may be too short to catch them: then this only reports.) The waits
    // that AckBeforeFsync skips at once are also switched off one by one; the apply's and the
    // commit clamp's alone need a rarer crash (a leader lost between its reply and its own
    // sync, then a leader elected without the entry) than these seeds hold, so those two are
    // only reported.
    let ci_seeds = std::env::var("FERRITE_SIM_SEEDS").is_err();
    for (which, required) in [
        (Sabotage::SkipReadBarrier, true),
        (Sabotage::LeaseOutlivesVotes, true),
        (Sabotage::ClockRatesApart, true),
        (Sabotage::AckBeforeFsync, true),
        (Sabotage::ApplyLocalTime, true),
        (Sabotage::AnswerBeforeFsync, true),
        (Sabotage::ApplyBeforeFsync, false),
        (Sabotage::CommitBeyondDisk, false),
    ] {
        match caught(which, &seeds) {
            Some((seed, why)) => println!("{which:?} caught at seed {seed}: {why}"),
            None if ci_seeds && required => panic!("{which:?} went unnoticed in every seed"),
            None => println!("{which:?} not caught by these seeds"),
        }
    }
}

/// Runs `seeds` with `which` switched on until one fails the check; that seed and why. A
/// panic counts as caught: a break can also leave a node with state openraft refuses to work
/// on (committed below applied, after acknowledged entries were lost), and it stops loudly.
fn caught(which: Sabotage, seeds: &[u64]) -> Option<(u64, String)> {
    sabotage::set(which, true);
    let found = seeds
        .iter()
        .find_map(|&seed| match std::panic::catch_unwind(|| run(seed)) {
            Ok(outcome) => outcome.err().map(|e| (seed, e)),
            Err(panic) => Some((seed, format!("a node panicked: {}", panic_text(&panic)))),
        });
    sabotage::set(which, false);
    found
}

/// The message a panic carried.
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}
