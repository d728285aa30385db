//! The registry of connected clients: ids, names and library info for CLIENT LIST/INFO, and the
//! count that `maxclients` is checked against.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

/// What CLIENT LIST shows about one connection.
#[derive(Debug)]
pub struct ClientInfo {
    /// Unique, increasing id.
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address.
    pub laddr: SocketAddr,
    created: Instant,
    last_active_ms: AtomicU64,
    /// CLIENT SETNAME.
    pub name: Mutex<String>,
    /// CLIENT SETINFO LIB-NAME / LIB-VER.
    pub lib: Mutex<(String, String)>,
    /// Name of the last command.
    pub last_command: Mutex<&'static str>,
    /// Whether the client speaks RESP3.
    pub resp3: AtomicBool,
    /// Whether the client is inside MULTI.
    pub in_multi: AtomicBool,
}

impl ClientInfo {
    /// Notes activity for `idle=`.
    pub fn touch(&self, command: &'static str, now: Instant) {
        self.last_active_ms.store(
            now.saturating_duration_since(self.created).as_millis() as u64,
            Ordering::Relaxed,
        );
        *self.last_command.lock() = command;
    }

    /// The CLIENT LIST / CLIENT INFO line (without newline), in Redis's field order.
    pub fn line(&self) -> String {
        let age = self.created.elapsed();
        let idle = age.as_millis() as u64
            - self
                .last_active_ms
                .load(Ordering::Relaxed)
                .min(age.as_millis() as u64);
        let (lib_name, lib_ver) = self.lib.lock().clone();
        let multi = if self.in_multi.load(Ordering::Relaxed) {
            0
        } else {
            -1
        };
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db=0 sub=0 psub=0 ssub=0 multi={} \
             qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r \
             cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.name.lock(),
            age.as_secs(),
            idle / 1000,
            if multi == 0 { "x" } else { "N" },
            multi,
            self.last_command.lock(),
            if self.resp3.load(Ordering::Relaxed) {
                3
            } else {
                2
            },
            lib_name,
            lib_ver,
        )
    }
}

/// All connected clients.
#[derive(Debug, Default)]
pub struct Clients {
    next_id: AtomicU64,
    connected: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
}

impl Clients {
    /// Registers a new connection unless `max` clients are already connected.
    pub fn register(
        &self,
        addr: SocketAddr,
        laddr: SocketAddr,
        max: u64,
    ) -> Option<Arc<ClientInfo>> {
        let mut connected = self.connected.lock();
        if connected.len() as u64 >= max {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            addr,
            laddr,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            name: Mutex::new(String::new()),
            lib: Mutex::new((String::new(), String::new())),
            last_command: Mutex::new("NULL"),
            resp3: AtomicBool::new(false),
            in_multi: AtomicBool::new(false),
        });
        connected.insert(id, info.clone());
        Some(info)
    }

    /// Forgets a closed connection.
    pub fn unregister(&self, id: u64) {
        self.connected.lock().remove(&id);
    }

    /// Number of connected clients.
    pub fn len(&self) -> usize {
        self.connected.lock().len()
    }

    /// Whether no client is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// CLIENT LIST: one line per client, each ending in a newline, by id.
    pub fn list(&self) -> String {
        self.connected
            .lock()
            .values()
            .map(|c| c.line() + "\n")
            .collect()
    }
}
