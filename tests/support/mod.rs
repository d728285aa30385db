//! Test support: start the real `ferrite` binary on a free port and talk to it.
//!
//! The server is started with `--port 0`; the harness reads its log until the ready line names
//! the address, then keeps draining the log in a thread (so the child never blocks on a full
//! pipe) and keeps the lines for failure messages. Dropping the handle kills the process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running ferrite process.
pub struct Server {
    child: Child,
    /// The client port it listens on.
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
    data_dir: PathBuf,
}

impl Server {
    /// Starts ferrite with `args` (plus `--port 0` and a fresh data dir unless given).
    pub fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if !args.contains(&"--port") {
            full.extend(["--port".into(), "0".into()]);
        }
        if !args.contains(&"--data-dir") {
            full.extend(["--data-dir".into(), data_dir.display().to_string()]);
        }
        Server::spawn(&full, Some(dir), data_dir)
    }

    fn spawn(args: &[String], dir: Option<tempfile::TempDir>, data_dir: PathBuf) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferrite");
        let stdout = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut sent = false;
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if !sent
                        && line.contains("ready to accept connections")
                        && let Some(port) = line
                            .split("addr=")
                            .nth(1)
                            .and_then(|a| a.split_whitespace().next())
                            .and_then(|a| a.rsplit(':').next())
                            .and_then(|p| p.parse::<u16>().ok())
                    {
                        let _ = tx.send(port);
                        sent = true;
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "ferrite did not start: stderr={err} log={:?}",
                    log.lock().unwrap()
                );
            }
        };
        Server {
            child,
            port,
            log,
            _dir: dir,
            data_dir,
        }
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A synchronous redis-crate connection (RESP2).
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .expect("connect")
    }

    /// A synchronous redis-crate connection speaking RESP3.
    pub fn client_resp3(&self) -> redis::Connection {
        redis::Client::open(format!("{}?protocol=resp3", self.url()))
            .unwrap()
            .get_connection()
            .expect("connect resp3")
    }

    /// A raw TCP connection with a read timeout.
    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("raw connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill");
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The data directory given to the server.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends raw bytes and reads what comes back until `expected_len` bytes or EOF/timeout.
pub fn roundtrip(stream: &mut TcpStream, request: &[u8], expected_len: usize) -> Vec<u8> {
    stream.write_all(request).unwrap();
    read_at_least(stream, expected_len)
}

/// Reads until at least `n` bytes arrived, the peer closed, or the read timed out.
pub fn read_at_least(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < n {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
        }
    }
    out
}

/// Whether the peer closed the connection (a read returns EOF or reset within the timeout).
pub fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                );
            }
        }
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a command and returns the raw value (errors included as `Err`).
pub fn cmd(conn: &mut redis::Connection, words: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut c = redis::cmd(words[0]);
    for w in &words[1..] {
        c.arg(*w);
    }
    c.query(conn)
}

/// The error text of a command that must fail (`CODE message`).
pub fn err(conn: &mut redis::Connection, words: &[&str]) -> String {
    match cmd(conn, words) {
        Ok(v) => panic!("{words:?} should fail, got {v:?}"),
        Err(e) => error_line(&e),
    }
}

/// The whole error line of a redis-crate error, as the server sent it.
pub fn error_line(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// Finds an installed program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

/// A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A local cluster of ferrite processes on 127.0.0.1, each with its own data directory under
/// one temporary directory. Nodes are numbered from 1 (their Raft ids).
pub struct Cluster {
    nodes: Vec<Option<Server>>,
    /// (client port, cluster port) per node.
    pub ports: Vec<(u16, u16)>,
    dir: tempfile::TempDir,
    peers: String,
    extra: Vec<String>,
}

impl Cluster {
    /// Starts `n` nodes that know each other through `--peers`; `extra` flags go to each.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, (p, c))| format!("{}@127.0.0.1:{p}@{c}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            nodes: (0..n).map(|_| None).collect(),
            ports,
            dir: tempfile::tempdir().unwrap(),
            peers,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for id in 1..=n {
            cluster.start_node(id);
        }
        cluster
    }

    /// The data directory of node `id`.
    pub fn data_dir(&self, id: usize) -> PathBuf {
        self.dir.path().join(format!("n{id}"))
    }

    fn args(&self, id: usize, peers: bool) -> Vec<String> {
        let (port, cport) = self.ports[id - 1];
        let mut args = vec![
            "--node-id".to_owned(),
            id.to_string(),
            "--port".to_owned(),
            port.to_string(),
            "--cluster-port".to_owned(),
            cport.to_string(),
            "--data-dir".to_owned(),
            self.data_dir(id).display().to_string(),
        ];
        if peers {
            args.extend(["--peers".to_owned(), self.peers.clone()]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// (Re)starts node `id` on its data directory.
    pub fn start_node(&mut self, id: usize) {
        let args = self.args(id, true);
        self.nodes[id - 1] = Some(Server::spawn(&args, None, self.data_dir(id)));
    }

    /// Adds a node that starts with `--join` (to be added with CLUSTER ADDNODE); its id.
    pub fn spawn_joiner(&mut self) -> usize {
        self.ports.push((free_port(), free_port()));
        self.nodes.push(None);
        let id = self.nodes.len();
        let mut args = self.args(id, false);
        args.push("--join".to_owned());
        self.nodes[id - 1] = Some(Server::spawn(&args, None, self.data_dir(id)));
        id
    }

    /// Kills node `id` (SIGKILL: no shutdown, only what reached the disk survives).
    pub fn kill(&mut self, id: usize) {
        self.nodes[id - 1] = None;
    }

    /// Node `id`'s process.
    pub fn node(&self, id: usize) -> &Server {
        self.nodes[id - 1].as_ref().expect("node is running")
    }

    /// Ids of the running nodes.
    pub fn running(&self) -> Vec<usize> {
        (1..=self.nodes.len())
            .filter(|id| self.nodes[id - 1].is_some())
            .collect()
    }

    /// A connection to node `id`.
    pub fn client(&self, id: usize) -> redis::Connection {
        let c = self.node(id).client();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    }

    /// `host:port` URLs of the running nodes, for the redis crate's cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.running()
            .iter()
            .map(|id| self.node(*id).url())
            .collect()
    }

    /// The leader as node `id` reports it in INFO (`raft_leader_id`).
    pub fn leader_seen_by(&self, id: usize) -> Option<usize> {
        let mut c = self.node(id).client();
        let info: String = redis::cmd("INFO").arg("cluster").query(&mut c).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("raft_leader_id:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Waits until every running node names the same running leader; that leader.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let mut leader = None;
        let agreed = wait_until(timeout, || {
            let seen: Vec<Option<usize>> = self
                .running()
                .iter()
                .map(|id| self.leader_seen_by(*id))
                .collect();
            leader = seen[0];
            leader.is_some_and(|l| self.running().contains(&l)) && seen.iter().all(|s| *s == leader)
        });
        assert!(agreed, "no agreed leader within {timeout:?}");
        leader.unwrap()
    }
}
