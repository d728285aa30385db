//! The workload of `tests/linearizable.rs`: six clients issuing random operations against
//! the cluster and recording each with its invocation and completion time, and a coordinator
//! that loads the WASM module first and reads every key once the faults are over.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::checker::{
    AppendList, Counter, CounterOp, Entry, ListOp, Register, RegisterOp, check_all,
};
use crate::harness::{LOAD_PROBE, Live, Rng, agreed, diverged, host_addr, host_id};
use crate::{Client, Reply};

/// Concurrent clients: five that read and write, and one (the last) that only reads on the
/// leader. The reader never writes, so nothing makes it leave a node that still believes it
/// leads: a deposed leader answering reads without confirming its leadership is seen.
pub const CLIENTS: usize = 6;
/// How long the clients run (simulated).
pub const WORKLOAD: Duration = Duration::from_secs(20);
pub const REGISTERS: [&str; 2] = ["r0", "r1"];
/// Registers written with short TTLs (`SET e0 v PX ms`), rarely: most of the time they have
/// expired, and reads find out when.
pub const EXPIRING: [&str; 2] = ["e0", "e1"];
pub const LISTS: [&str; 2] = ["l0", "l1"];
pub const COUNTER: &str = "{t}a";

/// What was done and seen, per model.
#[derive(Debug, Default)]
pub struct History {
    pub registers: BTreeMap<String, Vec<Entry<RegisterOp>>>,
    /// The registers written with TTLs.
    pub expiring: BTreeMap<String, Vec<Entry<RegisterOp>>>,
    pub counter: Vec<Entry<CounterOp>>,
    pub lists: BTreeMap<String, Vec<Entry<ListOp>>>,
    /// READONLY reads on followers: (client, follower, connection, list, what was read), in
    /// order. The connection counts the client's READONLY sessions on that follower: a new
    /// one starts after any error (a crashed or cut-off follower).
    pub follower_reads: Vec<(usize, u64, u64, String, Vec<String>)>,
    /// The faults, with simulated times.
    pub events: Vec<String>,
    /// Operations by outcome: completed, unknown.
    pub completed: usize,
    pub unknown: usize,
    /// Set once the probe module is loaded; the clients wait for it.
    pub loaded: bool,
}

pub type Shared = Arc<Mutex<History>>;

/// Records a fault or a membership change in the history's events, at simulated time `at`.
pub fn note(history: &Shared, at: Duration, what: String) {
    history
        .lock()
        .unwrap()
        .events
        .push(format!("{:.1}s {what}", at.as_secs_f64()));
}

/// Simulated time in microseconds: the clock every record uses.
pub fn now() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| d.as_micros() as u64)
}

/// How a request ended.
pub enum Ended {
    /// Answered (not a redirect, not cluster-down).
    Reply(Reply),
    /// It may or may not have taken effect.
    Unknown,
    /// Refused everywhere it was sent (MOVED, CLUSTERDOWN, TRYAGAIN): it did not happen.
    Refused,
}

/// Sends `args`, following MOVED and moving on from nodes without a leader; never retries a
/// request whose outcome is unknown.
pub async fn send(client: &mut Client, target: &mut u64, args: &[&[u8]]) -> Ended {
    for _ in 0..20 {
        let reply = client
            .request(&host_addr(*target), args, Duration::from_secs(4))
            .await;
        match reply {
            Ok(Reply::Error(e)) if e.starts_with("MOVED ") => {
                let addr = e.rsplit(' ').next().unwrap_or_default();
                let host = addr.split(':').next().unwrap_or_default();
                if let Some(id) = host_id(host) {
                    *target = id;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(Reply::Error(e)) if e.starts_with("CLUSTERDOWN") || e.starts_with("TRYAGAIN") => {
                *target = *target % 3 + 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Reply::Error(e)) if e.starts_with("UNCERTAIN") => {
                *target = *target % 3 + 1;
                return Ended::Unknown;
            }
            Ok(other) => return Ended::Reply(other),
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {
                // Nothing was sent: the node is down or cut off.
                *target = *target % 3 + 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => {
                *target = *target % 3 + 1;
                return Ended::Unknown;
            }
        }
    }
    Ended::Refused
}

fn text(reply: &Reply) -> Option<String> {
    match reply {
        Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn list(reply: &Reply) -> Option<Vec<String>> {
    match reply {
        Reply::Array(Some(items)) => items.iter().map(text).collect(),
        _ => None,
    }
}

fn push<O>(into: &mut Vec<Entry<O>>, client: usize, invoke: u64, complete: Option<u64>, op: O) {
    into.push(Entry {
        client,
        invoke,
        complete,
        op,
    });
}

/// One client's loop: random operations until the workload time is over.
pub async fn client(
    id: usize,
    seed: u64,
    history: Shared,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng(seed ^ (id as u64).wrapping_mul(0x5851_F42D_4C95_7F2D));
    let mut leader_conn = Client::new();
    let mut target = (id as u64 % 3) + 1;
    // A follower session: its own connection, READONLY, one node for the whole session.
    let mut follower_conn = Client::new();
    let follower = (id as u64 + 1) % 3 + 1;
    let mut follower_ready = false;
    let mut session = 0u64;
    let mut n = 0u64;
    while !history.lock().unwrap().loaded {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while turmoil::sim_elapsed().unwrap_or_default() < WORKLOAD {
        n += 1;
        tokio::time::sleep(Duration::from_millis(rng.between(2, 25))).await;
        let mut roll = rng.between(0, 100);
        if id == CLIENTS - 1 {
            // The reader: GET of a register, of the TTL register and of the counter, the
            // read-only call, LRANGE.
            roll = [24, 38, 61, 66, 88][roll as usize % 5];
        }
        let invoke = now();
        if roll < 10 {
            // A READONLY read on a follower.
            if !follower_ready {
                let ready = follower_conn
                    .request(&host_addr(follower), &[b"READONLY"], Duration::from_secs(2))
                    .await;
                follower_ready = matches!(ready, Ok(Reply::Status(_)));
                session += u64::from(follower_ready);
                continue;
            }
            let key = LISTS[rng.between(0, 2) as usize];
            let read = follower_conn
                .request(
                    &host_addr(follower),
                    &[b"LRANGE", key.as_bytes(), b"0", b"-1"],
                    Duration::from_secs(2),
                )
                .await;
            match read {
                // Anything but a list (MOVED once no longer a member, CLUSTERDOWN) is no read.
                Ok(reply) => {
                    if let Some(items) = list(&reply) {
                        let read = (id, follower, session, key.to_owned(), items);
                        history.lock().unwrap().follower_reads.push(read);
                    }
                }
                Err(_) => follower_ready = false,
            }
            continue;
        }
        let (args, kind) = plan(&mut rng, id, n, roll);
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let ended = send(&mut leader_conn, &mut target, &refs).await;
        let mut h = history.lock().unwrap();
        record(&mut h, id, invoke, now(), &args, kind, ended)?;
    }
    Ok(())
}

/// What operation a client runs for `roll` (10 to 99): its arguments and its kind, which
/// [`record`] files it by. `n` makes written values unique per client.
pub fn plan(rng: &mut Rng, id: usize, n: u64, roll: u64) -> (Vec<Vec<u8>>, u8) {
    match roll {
        10..24 => {
            let key = REGISTERS[rng.between(0, 2) as usize];
            let value = format!("c{id}-{n}");
            (vec![b"SET".to_vec(), key.into(), value.into()], 0)
        }
        24..33 => {
            let key = REGISTERS[rng.between(0, 2) as usize];
            (vec![b"GET".to_vec(), key.into()], 1)
        }
        33..36 => {
            let key = EXPIRING[rng.between(0, 2) as usize];
            let value = format!("c{id}-{n}");
            let ttl = rng.between(50, 600).to_string();
            (
                vec![
                    b"SET".to_vec(),
                    key.into(),
                    value.into(),
                    b"PX".to_vec(),
                    ttl.into(),
                ],
                6,
            )
        }
        36..45 => {
            let key = EXPIRING[rng.between(0, 2) as usize];
            (vec![b"GET".to_vec(), key.into()], 7)
        }
        45..53 => (vec![b"INCR".to_vec(), COUNTER.into()], 2),
        53..61 => (
            vec![
                b"FCALL".to_vec(),
                b"probe.incr".to_vec(),
                b"1".to_vec(),
                COUNTER.into(),
            ],
            2,
        ),
        61..66 => (vec![b"GET".to_vec(), COUNTER.into()], 3),
        66..71 => (
            vec![
                b"FCALL_RO".to_vec(),
                b"probe.get_via_call".to_vec(),
                b"1".to_vec(),
                COUNTER.into(),
            ],
            3,
        ),
        71..88 => {
            let key = LISTS[rng.between(0, 2) as usize];
            let value = format!("c{id}-{n}");
            (vec![b"RPUSH".to_vec(), key.into(), value.into()], 4)
        }
        _ => {
            let key = LISTS[rng.between(0, 2) as usize];
            (
                vec![
                    b"LRANGE".to_vec(),
                    key.into(),
                    b"0".to_vec(),
                    b"-1".to_vec(),
                ],
                5,
            )
        }
    }
}

/// Files an operation [`plan`] made, invoked at `invoke` and ended at `complete` as `ended`
/// says, under its key and model, and counts it; a refused one did not happen and is not
/// filed. An error reply, or one the model cannot hold, ends the run.
pub fn record(
    h: &mut History,
    id: usize,
    invoke: u64,
    complete: u64,
    args: &[Vec<u8>],
    kind: u8,
    ended: Ended,
) -> Result<(), String> {
    let (reply, done) = match ended {
        Ended::Refused => return Ok(()),
        Ended::Unknown => {
            h.unknown += 1;
            (None, None)
        }
        Ended::Reply(r) => {
            h.completed += 1;
            (Some(r), Some(complete))
        }
    };
    if let Some(Reply::Error(e)) = &reply {
        return Err(format!(
            "{:?} answered {e}",
            String::from_utf8_lossy(&args[0])
        ));
    }
    let key = String::from_utf8_lossy(&args[1]).into_owned();
    let bad = || {
        format!(
            "unexpected reply {reply:?} to {:?}",
            String::from_utf8_lossy(&args[0])
        )
    };
    match kind {
        0 => {
            let value = String::from_utf8_lossy(&args[2]).into_owned();
            let into = h.registers.entry(key).or_default();
            push(into, id, invoke, done, RegisterOp::Write(value));
        }
        1 => {
            let seen = reply.as_ref().map(text);
            if done.is_some() {
                let into = h.registers.entry(key).or_default();
                push(into, id, invoke, done, RegisterOp::Read(seen.flatten()));
            }
        }
        2 => {
            let value = match &reply {
                Some(Reply::Int(v)) => *v,
                None => 0,
                Some(_) => return Err(bad()),
            };
            push(&mut h.counter, id, invoke, done, CounterOp::Incr(value));
        }
        3 => {
            if let Some(r) = &reply {
                let seen = match text(r) {
                    Some(t) => Some(t.parse::<i64>().map_err(|_| bad())?),
                    None if matches!(r, Reply::Bulk(None)) => None,
                    None => return Err(bad()),
                };
                push(&mut h.counter, id, invoke, done, CounterOp::Read(seen));
            }
        }
        6 => {
            let value = String::from_utf8_lossy(&args[2]).into_owned();
            let into = h.expiring.entry(key).or_default();
            push(into, id, invoke, done, RegisterOp::Write(value));
        }
        7 => {
            if done.is_some() {
                let seen = reply.as_ref().and_then(text);
                let into = h.expiring.entry(key).or_default();
                push(into, id, invoke, done, RegisterOp::Read(seen));
            }
        }
        4 => {
            let value = String::from_utf8_lossy(&args[2]).into_owned();
            let len = match &reply {
                Some(Reply::Int(v)) => *v as usize,
                None => 0,
                Some(_) => return Err(bad()),
            };
            let into = h.lists.entry(key).or_default();
            push(into, id, invoke, done, ListOp::Append(value, len));
        }
        _ => {
            if let Some(r) = &reply {
                let items = list(r).ok_or_else(bad)?;
                let into = h.lists.entry(key).or_default();
                push(into, id, invoke, done, ListOp::Read(items));
            }
        }
    }
    Ok(())
}

/// Loads the probe module, then waits for the clients, then (all faults healed) reads every
/// key on the leader once everyone agrees: the last operations of the history.
pub async fn coordinator(live: Live, history: Shared) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = Client::new();
    let mut target = 1;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    loop {
        let load = send(&mut conn, &mut target, &LOAD_PROBE).await;
        match load {
            Ended::Reply(Reply::Status(_)) => break,
            Ended::Reply(Reply::Error(e)) if e.contains("already exists") => break,
            Ended::Reply(other) => return Err(format!("WASM.LOAD: {other:?}").into()),
            Ended::Unknown | Ended::Refused => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    history.lock().unwrap().loaded = true;
    while turmoil::sim_elapsed().unwrap_or_default() < WORKLOAD + Duration::from_secs(8) {
        // A replica stopped by a state check is an anomaly, even if a crash restarts it.
        if let Some(why) = diverged(&live) {
            return Err(why.into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut converged = false;
    for _ in 0..600 {
        if let Some(why) = diverged(&live) {
            return Err(why.into());
        }
        if agreed(&live).is_some() {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !converged {
        return Err("the nodes never converged on one state".into());
    }
    // Final reads, linearizable on the leader: they fix what every acknowledged write must
    // have left behind.
    let mut reads: Vec<Vec<Vec<u8>>> = Vec::new();
    for key in REGISTERS.iter().chain(&EXPIRING).chain([COUNTER].iter()) {
        reads.push(vec![b"GET".to_vec(), key.as_bytes().to_vec()]);
    }
    for key in LISTS {
        reads.push(vec![
            b"LRANGE".to_vec(),
            key.into(),
            b"0".to_vec(),
            b"-1".to_vec(),
        ]);
    }
    for args in reads {
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let invoke = now();
        let reply = loop {
            match send(&mut conn, &mut target, &refs).await {
                Ended::Reply(r) => break r,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let done = Some(now());
        let key = String::from_utf8_lossy(&args[1]).into_owned();
        let mut h = history.lock().unwrap();
        if key == COUNTER {
            let seen = text(&reply).map(|t| t.parse::<i64>()).transpose()?;
            push(&mut h.counter, CLIENTS, invoke, done, CounterOp::Read(seen));
        } else if EXPIRING.contains(&key.as_str()) {
            let read = RegisterOp::Read(text(&reply));
            push(
                h.expiring.entry(key).or_default(),
                CLIENTS,
                invoke,
                done,
                read,
            );
        } else if args[0] == b"GET" {
            let into = h.registers.entry(key).or_default();
            push(into, CLIENTS, invoke, done, RegisterOp::Read(text(&reply)));
        } else {
            let items = list(&reply).ok_or("LRANGE answered no list")?;
            let into = h.lists.entry(key).or_default();
            push(into, CLIENTS, invoke, done, ListOp::Read(items));
        }
    }
    Ok(())
}

/// What READONLY promises: within a session (one client's connection to one follower), reads
/// of a list never shrink; every read is a prefix of the list's final state (read on the
/// leader at the end). Across connections a follower may go back: one that restarted serves
/// from what its disk held (the log up to the commit position it had recorded), and catches
/// up from the leader only after that.
/// Checks a whole history: each register, TTL register, the counter and each list for
/// linearizability, and the follower reads for what they promise. The operations checked, or
/// the first anomaly (a minimal failing sub-history).
pub fn check_history(h: &History) -> Result<usize, String> {
    let mut checked = check_all(&Register::PLAIN, &h.registers)?;
    checked += check_all(&Register::EXPIRING, &h.expiring)?;
    checked += check_all(&Counter, &BTreeMap::from([(COUNTER, h.counter.clone())]))?;
    checked += check_all(&AppendList, &h.lists)?;
    check_follower_reads(h)?;
    Ok(checked)
}

pub fn check_follower_reads(h: &History) -> Result<(), String> {
    let finals: BTreeMap<&str, &Vec<String>> = h
        .lists
        .iter()
        .filter_map(|(key, ops)| {
            ops.iter().rev().find_map(|e| match &e.op {
                ListOp::Read(items) if e.client == CLIENTS => Some((key.as_str(), items)),
                _ => None,
            })
        })
        .collect();
    let mut last: BTreeMap<(usize, u64, u64, &str), usize> = BTreeMap::new();
    for (client, follower, session, key, items) in &h.follower_reads {
        let empty = Vec::new();
        let full = finals.get(key.as_str()).copied().unwrap_or(&empty);
        if items.len() > full.len() || full[..items.len()] != items[..] {
            return Err(format!(
                "client {client} read {key} on follower n{follower} as {items:?}, not a prefix of its final state {full:?}"
            ));
        }
        let seen = last.entry((*client, *follower, *session, key)).or_default();
        if items.len() < *seen {
            return Err(format!(
                "client {client} read {key} on follower n{follower} going back from {} to {} elements",
                *seen,
                items.len()
            ));
        }
        *seen = items.len();
    }
    Ok(())
}
