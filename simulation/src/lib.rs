//! Ferrite under turmoil: the seams the real server exposes, filled with simulated parts.
//!
//! - [`SimDisk`]: a Raft disk whose contents survive a host crash only as far as a write
//!   completed ("synced"); a batch in flight when the host crashes is lost.
//! - [`SimListener`], [`SimDialer`]: turmoil's TCP behind Ferrite's socket traits.
//! - [`Client`]: the test kit's RESP client over turmoil's sockets, one node at a time.
//!
//! Everything runs on turmoil's single thread, so a seed replays the same schedule.

pub mod checker;
pub mod harness;
pub mod workload;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrite::replication::{Disk, DiskOp, Recovered};

/// How long a simulated fsync takes.
pub const FSYNC: Duration = Duration::from_millis(2);

/// What a disk holds durably.
#[derive(Debug, Default, Clone)]
struct Stored {
    log: BTreeMap<u64, Vec<u8>>,
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<Vec<u8>>,
    snapshot: Option<Vec<u8>>,
}

/// A disk that outlives its host: create it before `sim.host` and share it with every run.
/// A nemesis may slow it down, or make its next snapshot write hang until the host crashes.
#[derive(Debug, Default)]
pub struct SimDisk {
    stored: Mutex<Stored>,
    /// Extra milliseconds every write takes (a slow disk).
    pub slow_ms: AtomicU64,
    /// Armed: the next snapshot save (of one built here or installed from the leader) never
    /// completes, and `snapshot_hung` is set for the nemesis to crash the host.
    pub hang_on_snapshot: AtomicBool,
    /// Set when a snapshot save hung.
    pub snapshot_hung: AtomicBool,
}

impl Disk for SimDisk {
    fn recover(&self) -> io::Result<Recovered> {
        let s = self.stored.lock().unwrap().clone();
        Ok(Recovered {
            vote: s.vote,
            committed: s.committed,
            purged: s.purged,
            entries: s.log.into_values().collect(),
            old_snapshot: None,
        })
    }

    fn write(
        self: &Arc<Self>,
        ops: Vec<DiskOp>,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send {
        let disk = self.clone();
        async move {
            // The batch becomes durable only when the "fsync" completes: a crash before then
            // drops this future and the batch with it.
            disk.fsync().await;
            let mut s = disk.stored.lock().unwrap();
            for op in ops {
                match op {
                    DiskOp::Append { index, entry } => {
                        s.log.insert(index, entry);
                    }
                    DiskOp::TruncateFrom(index) => {
                        s.log.split_off(&index);
                    }
                    DiskOp::PurgeUpTo { index, log_id } => {
                        s.log = s.log.split_off(&(index + 1));
                        s.purged = Some(log_id);
                    }
                    DiskOp::Vote(v) => s.vote = Some(v),
                    DiskOp::Committed(c) => s.committed = Some(c),
                    DiskOp::DropOldSnapshot => {}
                }
            }
            Ok(())
        }
    }

    fn load_snapshot(
        self: &Arc<Self>,
    ) -> impl std::future::Future<Output = io::Result<Option<Vec<u8>>>> + Send {
        let snapshot = self.stored.lock().unwrap().snapshot.clone();
        async move { Ok(snapshot) }
    }

    fn save_snapshot(
        self: &Arc<Self>,
        snapshot: Arc<Vec<u8>>,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send {
        let disk = self.clone();
        async move {
            if disk.hang_on_snapshot.swap(false, Ordering::Relaxed) {
                disk.snapshot_hung.store(true, Ordering::Relaxed);
                std::future::pending::<()>().await;
            }
            // Durable, replacing the previous one, only once the "fsync" completes.
            disk.fsync().await;
            disk.stored.lock().unwrap().snapshot = Some(snapshot.to_vec());
            Ok(())
        }
    }
}

impl SimDisk {
    /// Waits as long as one fsync takes on this disk now.
    async fn fsync(&self) {
        let slow = Duration::from_millis(self.slow_ms.load(Ordering::Relaxed));
        tokio::time::sleep(FSYNC + slow).await;
    }
}

thread_local! {
    static ENTROPY: Cell<u64> = const { Cell::new(0) };
}

/// Seeds [`entropy`] (turmoil runs every host on one thread, so one per-thread stream serves
/// them all and a seed replays the same nonces).
pub fn seed_entropy(seed: u64) {
    ENTROPY.with(|s| s.set(seed));
}

/// Cluster bus nonces from a seeded stream (splitmix64): unpredictable enough for a
/// simulation, and the same on every replay of a seed.
pub fn entropy(buf: &mut [u8]) -> io::Result<()> {
    for chunk in buf.chunks_mut(8) {
        let next = ENTROPY.with(|s| {
            let state = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            s.set(state);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        });
        chunk.copy_from_slice(&next.to_le_bytes()[..chunk.len()]);
    }
    Ok(())
}

/// turmoil's listener behind Ferrite's [`ferrite::net::Listener`].
pub struct SimListener(pub turmoil::net::TcpListener);

impl ferrite::net::Listener for SimListener {
    type Stream = turmoil::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, SocketAddr, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        let local = self.0.local_addr()?;
        Ok((stream, peer, local))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// turmoil's connector behind Ferrite's [`ferrite::net::Dialer`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SimDialer;

impl ferrite::net::Dialer for SimDialer {
    type Stream = turmoil::net::TcpStream;

    async fn connect(&self, addr: &str) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect(addr.to_owned()).await
    }
}

/// A reply as the simulation's client sees it: the test kit's RESP value, the same client the
/// integration tests use.
pub use ferrite_testkit::resp::Value as Reply;

/// A RESP client for one node at a time, over turmoil's sockets; every request has a deadline.
#[derive(Default)]
pub struct Client {
    conn: Option<(
        String,
        ferrite_testkit::resp::Client<turmoil::net::TcpStream>,
    )>,
}

impl Client {
    /// Not yet connected.
    pub fn new() -> Client {
        Client { conn: None }
    }

    /// Sends `args` to `addr` (reusing the connection when it is the same node) and reads the
    /// reply; `Err` when the node cannot be reached or does not answer within `deadline`. An
    /// error of kind `NotConnected` means the connection could not be made, so nothing was
    /// sent; any other may come after the request left.
    pub async fn request(
        &mut self,
        addr: &str,
        args: &[&[u8]],
        deadline: Duration,
    ) -> io::Result<Reply> {
        let result = tokio::time::timeout(deadline, self.exchange(addr, args)).await;
        let result =
            result.unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")));
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn exchange(&mut self, addr: &str, args: &[&[u8]]) -> io::Result<Reply> {
        if self.conn.as_ref().is_none_or(|(a, _)| a != addr) {
            // A failed connect sent nothing: say so apart from failures after sending.
            let stream = turmoil::net::TcpStream::connect(addr.to_owned())
                .await
                .map_err(|e| io::Error::new(io::ErrorKind::NotConnected, e))?;
            self.conn = Some((addr.to_owned(), ferrite_testkit::resp::Client::new(stream)));
        }
        let (_, conn) = self.conn.as_mut().expect("connected above");
        conn.request(args).await
    }
}
