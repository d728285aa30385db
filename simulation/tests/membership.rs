//! Membership changes while faults run: the workload of `tests/linearizable.rs` against three
//! nodes, a fourth that starts empty and is added (`CLUSTER ADDNODE`) a few seconds in, and
//! then one of the three first members (the leader, or any) removed (`CLUSTER REMOVENODE`):
//! together a replacement. Meanwhile a nemesis cuts off, crashes and pauses nodes (the joiner
//! too). The history goes through the same linearizability checker, and the members left at
//! the end must converge on one state.
//!
//! `FERRITE_SIM_SEEDS=1-200 cargo test --release --test membership` runs any seeds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrite_simulation::harness::{
    HOSTS, JOINER, Live, Offsets, Rng, add_hosts, add_joiner, host_name, leader, seeds, simulation,
    step,
};
use ferrite_simulation::workload::{
    CLIENTS, Ended, Shared, WORKLOAD, check_history, client, coordinator, note, send,
};
use ferrite_simulation::{Client, Reply};

/// The member removed, once it is.
type Removed = Arc<Mutex<Option<u64>>>;

/// Sends `args` until a reply that `done` accepts (at most 100 rounds).
async fn until(
    conn: &mut Client,
    target: &mut u64,
    args: &[&[u8]],
    done: impl Fn(&Reply) -> bool,
) -> Result<(), String> {
    for _ in 0..100 {
        if let Ended::Reply(reply) = send(conn, target, args).await
            && done(&reply)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "{:?} never succeeded",
        String::from_utf8_lossy(args[1])
    ))
}

/// Adds the joiner, then removes one of the first three members.
async fn admin(
    seed: u64,
    live: Live,
    history: Shared,
    removed: Removed,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng(seed ^ 0xADD_0DE);
    let mut conn = Client::new();
    let mut target = 1;
    while !history.lock().unwrap().loaded {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(rng.between(1_000, 4_000))).await;
    let joiner = format!("{JOINER}:6379@16379");
    // A retried ADDNODE that already took effect is refused as a member already there.
    let add: [&[u8]; 4] = [b"CLUSTER", b"ADDNODE", b"4", joiner.as_bytes()];
    until(&mut conn, &mut target, &add, |r| match r {
        Reply::Status(_) => true,
        Reply::Error(e) => e.contains("already"),
        _ => false,
    })
    .await?;
    note(&history, now(), "n4 added".to_owned());
    tokio::time::sleep(Duration::from_millis(rng.between(1_000, 5_000))).await;
    let victim = if rng.between(0, 2) == 0 {
        leader(&live).filter(|l| *l <= 3).unwrap_or(1)
    } else {
        rng.between(1, 4)
    };
    let id = victim.to_string();
    let remove: [&[u8]; 3] = [b"CLUSTER", b"REMOVENODE", id.as_bytes()];
    until(&mut conn, &mut target, &remove, |r| match r {
        Reply::Status(_) => true,
        Reply::Error(e) => e.contains("not a member") || e.contains("no such"),
        _ => false,
    })
    .await?;
    *removed.lock().unwrap() = Some(victim);
    live.lock().unwrap().remove(&victim);
    note(&history, now(), format!("n{victim} removed"));
    Ok(())
}

/// Simulated time, inside a host or client.
fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Runs `seed`: the number of operations checked, or the anomaly found.
fn run(seed: u64) -> Result<(usize, Vec<String>), String> {
    let mut sim = simulation(seed, Duration::from_secs(90));
    let live: Live = Arc::default();
    let offsets: Offsets = Arc::default();
    let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    add_hosts(&mut sim, &live, &offsets);
    add_joiner(&mut sim, &live, &offsets);
    let history: Shared = Arc::default();
    let removed: Removed = Arc::default();
    for id in 0..CLIENTS {
        let history = history.clone();
        sim.client(format!("c{id}"), client(id, seed, history));
    }
    {
        let (live, history) = (live.clone(), history.clone());
        sim.client("coordinator", coordinator(live, history));
    }
    {
        let (live, history, removed) = (live.clone(), history.clone(), removed.clone());
        sim.client("admin", admin(seed, live, history, removed));
    }
    let all: Vec<u64> = (1..=HOSTS.len() as u64 + 1).collect();
    let mut next_fault = Duration::from_millis(rng.between(2_000, 3_000));
    let mut heal_at: Option<Duration> = None;
    let mut crashed: Option<u64> = None;
    loop {
        let at = sim.elapsed();
        // A removed member no longer counts, even after a crash restarts it.
        if let Some(gone) = *removed.lock().unwrap() {
            live.lock().unwrap().remove(&gone);
        }
        if let Some(h) = heal_at
            && at >= h
        {
            for &a in &all {
                for &b in &all {
                    if a != b {
                        sim.repair(host_name(a), host_name(b));
                        sim.release(host_name(a), host_name(b));
                    }
                }
            }
            if let Some(id) = crashed.take() {
                sim.bounce(host_name(id));
            }
            note(&history, at, "healed".to_owned());
            heal_at = None;
            next_fault = at + Duration::from_millis(rng.between(500, 2_000));
        }
        if heal_at.is_none() && at >= next_fault && at < WORKLOAD {
            // Faults hit the members (and the joiner before it is one), not a removed node.
            let gone = *removed.lock().unwrap();
            let targets: Vec<u64> = all.iter().copied().filter(|&n| Some(n) != gone).collect();
            let victim = targets[rng.between(0, targets.len() as u64) as usize];
            let others = all.iter().filter(|&&o| o != victim);
            match rng.between(0, 3) {
                0 => {
                    for &o in others {
                        sim.partition(host_name(victim), host_name(o));
                    }
                    note(&history, at, format!("n{victim} cut off"));
                }
                1 => {
                    sim.crash(host_name(victim));
                    live.lock().unwrap().remove(&victim);
                    crashed = Some(victim);
                    note(&history, at, format!("n{victim} crashed"));
                }
                _ => {
                    for &o in others {
                        sim.hold(host_name(victim), host_name(o));
                    }
                    note(&history, at, format!("n{victim} paused"));
                }
            }
            heal_at = Some(at + Duration::from_millis(rng.between(800, 3_000)));
        }
        if step(&mut sim)? {
            break;
        }
    }
    let h = std::mem::take(&mut *history.lock().unwrap());
    if !h.events.iter().any(|e| e.ends_with("removed")) {
        return Err(format!(
            "the membership changes did not finish: {:?}",
            h.events
        ));
    }
    let checked = check_history(&h)?;
    Ok((checked, h.events))
}

#[test]
fn histories_stay_linearizable_while_a_member_is_replaced_under_faults() {
    let seeds = seeds(1..=20);
    for &seed in &seeds {
        match run(seed) {
            Ok((checked, events)) => {
                println!(
                    "seed {seed}: {checked} operations checked; {}",
                    events.join("; ")
                )
            }
            Err(e) => panic!(
                "seed {seed}: {e}\nreproduce with: cd simulation && FERRITE_SIM_SEEDS={seed} cargo test --release --test membership"
            ),
        }
    }
    // A seed replays exactly: the same count and the same events at the same times.
    let seed = seeds[0];
    let replay = |_| run(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert_eq!(
        replay(1),
        replay(2),
        "seed {seed} did not replay identically"
    );
}
