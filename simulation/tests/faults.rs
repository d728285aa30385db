//! Three Ferrite nodes under turmoil: a client writes keys and makes write calls while the
//! leader is partitioned away and healed, and a node crashes (keeping only what it synced) and
//! restarts. At the end every acknowledged write is present and every node holds the same
//! state. Each seed replays exactly; a failure prints the seed that reproduces it.
//!
//! `FERRITE_SIM_SEEDS=1,2,3 cargo test` (or `1-1000`) runs chosen seeds; by default seeds 1
//! to 8 run.

use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrite_simulation::harness::{
    HOSTS, LOAD_PROBE, Live, Rng, add_hosts, agreed, leader, seeds, simulation,
};
use ferrite_simulation::workload::{self, Ended};
use ferrite_simulation::{Client, Reply};

const OPS: usize = 400;

/// What the client saw acknowledged.
#[derive(Debug, Default, Clone, PartialEq)]
struct Outcome {
    acked_keys: Vec<usize>,
    acked_incr: i64,
    uncertain_incr: i64,
    counter: Option<i64>,
    fingerprint: Option<(u64, String)>,
    verified: bool,
    /// The faults injected, with the simulated time and the leader at that moment.
    events: Vec<String>,
}

/// Sends `args` until a node accepts it, following MOVED and moving on from unreachable
/// nodes. `Ok(reply)` once answered without a redirect or cluster-down error; `Err` when the
/// outcome is unknown (timeout, connection lost, UNCERTAIN) and `retry_unknown` is false.
async fn send(
    client: &mut Client,
    target: &mut u64,
    args: &[&[u8]],
    retry_unknown: bool,
) -> Result<Reply, ()> {
    for _ in 0..20 {
        match workload::send(client, target, args).await {
            Ended::Reply(reply) => return Ok(reply),
            Ended::Unknown if !retry_unknown => return Err(()),
            Ended::Unknown | Ended::Refused => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    panic!(
        "no node accepted {:?} in 20 rounds",
        String::from_utf8_lossy(args[0])
    );
}

async fn workload(live: Live, outcome: Arc<Mutex<Outcome>>) -> Result<(), Box<dyn Error>> {
    let mut client = Client::new();
    let mut target = 1;
    // Let the cluster elect its first leader.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let load = send(&mut client, &mut target, &LOAD_PROBE, true).await;
    match load {
        Ok(Reply::Status(s)) if s == "OK" => {}
        Ok(Reply::Error(e)) if e.contains("already exists") => {}
        other => panic!("WASM.LOAD: {other:?}"),
    }
    for i in 0..OPS {
        if i % 4 == 3 {
            match send(
                &mut client,
                &mut target,
                &[b"FCALL", b"probe.incr", b"1", b"{t}a"],
                false,
            )
            .await
            {
                Ok(Reply::Int(_)) => outcome.lock().unwrap().acked_incr += 1,
                Ok(other) => panic!("FCALL: {other:?}"),
                Err(()) => outcome.lock().unwrap().uncertain_incr += 1,
            }
        } else {
            let key = format!("k{i}");
            let value = format!("v{i}");
            // SET of a fixed value is idempotent: retrying an unknown outcome is safe.
            match send(
                &mut client,
                &mut target,
                &[b"SET", key.as_bytes(), value.as_bytes()],
                true,
            )
            .await
            {
                Ok(Reply::Status(s)) if s == "OK" => outcome.lock().unwrap().acked_keys.push(i),
                other => panic!("SET {key}: {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    // Quiesce: every node running, same applied position and state.
    let mut print = None;
    for _ in 0..600 {
        if let Some(p) = agreed(&live) {
            print = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(print) = print else {
        let prints: Vec<_> = live
            .lock()
            .unwrap()
            .iter()
            .map(|(id, s)| (*id, s.node.state_fingerprint()))
            .collect();
        return Err(format!("nodes never converged: {prints:?}").into());
    };
    outcome.lock().unwrap().fingerprint = Some(print);
    // Every acknowledged write, read back linearizably from the leader.
    let keys = outcome.lock().unwrap().acked_keys.clone();
    for i in keys {
        let key = format!("k{i}");
        let got = send(&mut client, &mut target, &[b"GET", key.as_bytes()], true).await;
        if got != Ok(Reply::Bulk(Some(format!("v{i}").into_bytes()))) {
            return Err(format!("acknowledged SET {key} lost: {got:?}").into());
        }
    }
    let counter = match send(&mut client, &mut target, &[b"GET", b"{t}a"], true).await {
        Ok(Reply::Bulk(Some(v))) => String::from_utf8(v)?.parse::<i64>()?,
        Ok(Reply::Bulk(None)) => 0,
        other => return Err(format!("GET {{t}}a: {other:?}").into()),
    };
    let mut o = outcome.lock().unwrap();
    o.counter = Some(counter);
    if counter < o.acked_incr || counter > o.acked_incr + o.uncertain_incr {
        return Err(format!(
            "counter {counter} outside [{}, {}]: an acknowledged call was lost or applied twice",
            o.acked_incr,
            o.acked_incr + o.uncertain_incr
        )
        .into());
    }
    o.verified = true;
    Ok(())
}

fn note(outcome: &Arc<Mutex<Outcome>>, event: String) {
    outcome.lock().unwrap().events.push(event);
}

/// Runs the scenario for `seed`; the outcome, or why it failed.
fn run(seed: u64) -> Result<Outcome, String> {
    let mut sim = simulation(seed, Duration::from_secs(120));
    let live: Live = Arc::default();
    add_hosts(&mut sim, &live, &Arc::default());
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    {
        let (live, outcome) = (live.clone(), outcome.clone());
        sim.client("client", workload(live, outcome));
    }
    let mut rng = Rng(seed);
    let partition_at = Duration::from_millis(rng.between(2_500, 4_000));
    let heal_at = partition_at + Duration::from_millis(rng.between(1_500, 3_000));
    let crash_at = heal_at + Duration::from_millis(rng.between(500, 1_500));
    let restart_at = crash_at + Duration::from_millis(rng.between(1_000, 2_500));
    let mut partitioned: Option<u64> = None;
    let mut crashed: Option<u64> = None;
    let mut healed = false;
    let mut restarted = false;
    loop {
        let elapsed = sim.elapsed();
        if partitioned.is_none()
            && elapsed >= partition_at
            && let Some(l) = leader(&live)
        {
            note(
                &outcome,
                format!("{elapsed:?}: leader n{l} partitioned away"),
            );
            // The client can still reach the old leader: its writes there cannot commit and
            // end UNCERTAIN (or MOVED once it learns of the new leader).
            for other in HOSTS.iter().filter(|h| **h != HOSTS[l as usize - 1]) {
                sim.partition(HOSTS[l as usize - 1], *other);
            }
            partitioned = Some(l);
        }
        if let Some(l) = partitioned
            && !healed
            && elapsed >= heal_at
        {
            for other in HOSTS.iter().filter(|h| **h != HOSTS[l as usize - 1]) {
                sim.repair(HOSTS[l as usize - 1], *other);
            }
            healed = true;
            note(
                &outcome,
                format!("{elapsed:?}: healed; leader now {:?}", leader(&live)),
            );
        }
        if healed && crashed.is_none() && elapsed >= crash_at {
            // The leader for odd seeds, a follower for even ones; unsynced writes are lost.
            let current = leader(&live);
            let victim = if seed % 2 == 1 {
                current
            } else {
                (1..=3u64).find(|id| Some(*id) != current)
            }
            .unwrap_or(1);
            note(
                &outcome,
                format!("{elapsed:?}: n{victim} crashed (leader {current:?})"),
            );
            sim.crash(HOSTS[victim as usize - 1]);
            live.lock().unwrap().remove(&victim);
            crashed = Some(victim);
        }
        if let Some(victim) = crashed
            && !restarted
            && elapsed >= restart_at
        {
            sim.bounce(HOSTS[victim as usize - 1]);
            restarted = true;
            note(&outcome, format!("{elapsed:?}: n{victim} restarted"));
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let outcome = outcome.lock().unwrap().clone();
    if !(partitioned.is_some() && restarted) {
        return Err(format!("the faults did not all happen: {outcome:?}"));
    }
    Ok(outcome)
}

#[test]
fn acknowledged_writes_survive_partitions_and_crashes_and_a_seed_replays_exactly() {
    for seed in seeds(1..=8) {
        match run(seed) {
            Ok(outcome) => {
                assert!(outcome.verified);
                println!(
                    "seed {seed}: {} SETs and {} calls acknowledged ({} unknown), counter {:?}, state {:?}\n  {}",
                    outcome.acked_keys.len(),
                    outcome.acked_incr,
                    outcome.uncertain_incr,
                    outcome.counter,
                    outcome.fingerprint,
                    outcome.events.join("\n  ")
                );
            }
            Err(e) => panic!(
                "seed {seed} failed: {e}\nreproduce with: cd simulation && FERRITE_SIM_SEEDS={seed} cargo test"
            ),
        }
    }
    // In the same test, after the others: simulations on parallel test threads would take
    // tokio task ids from each other, and a seed replays exactly only when its simulations
    // run one after another (see `harness::simulation`).
    let seed = seeds(1..=8)[0];
    let first = run(seed).unwrap_or_else(|e| panic!("seed {seed} failed: {e}"));
    let second = run(seed).unwrap_or_else(|e| panic!("seed {seed} failed: {e}"));
    assert_eq!(first, second, "seed {seed} did not replay identically");
}
