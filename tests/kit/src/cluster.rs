//! A local cluster of ferrite processes on 127.0.0.1.
//!
//! Members started together must know each other's addresses before they start (`--peers`),
//! so they cannot bind port 0: the cluster picks unused ports ([`crate::unused_ports`]) and,
//! when a member cannot bind one because something took it meanwhile, stops every member and
//! starts over on new ports. A member added later (`--join`) binds port 0 and reports what it
//! got.

use std::path::PathBuf;
use std::time::Duration;

use crate::resp::{SyncClient, Value};
use crate::server::{Server, SpawnError};

/// How many sets of ports are tried before giving up.
const ATTEMPTS: usize = 5;

/// The cluster secret members are started with (`--cluster-secret`).
pub const SECRET: &str = "the test cluster's secret";

/// A local cluster, each member with its own data directory under one temporary directory.
/// Members are numbered from 1 (their Raft ids).
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Option<Server>>,
    /// (client port, cluster port) per member.
    pub ports: Vec<(u16, u16)>,
    dir: tempfile::TempDir,
    peers: String,
    extra: Vec<String>,
    /// Environment variables per member id, added when it (re)starts.
    env: std::collections::BTreeMap<usize, Vec<(String, String)>>,
}

impl Cluster {
    /// Starts `n` members that know each other through `--peers`; `extra` flags go to each.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with_env(n, extra, |_| Vec::new())
    }

    /// Like [`Cluster::start`], with `env(id)` added to member `id`'s environment.
    pub fn start_with_env(
        n: usize,
        extra: &[&str],
        env: impl Fn(usize) -> Vec<(String, String)>,
    ) -> Cluster {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let ports = crate::unused_ports(2 * n);
            let ports: Vec<(u16, u16)> = ports.chunks(2).map(|p| (p[0], p[1])).collect();
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
                env: (1..=n).map(|id| (id, env(id))).collect(),
            };
            match (1..=n).try_for_each(|id| cluster.try_start_node(id)) {
                Ok(()) => return cluster,
                Err(e) if e.is_bind_failure() => last = Some(e),
                Err(e) => panic!("{e}"),
            }
        }
        panic!(
            "no free ports in {ATTEMPTS} attempts: {}",
            last.expect("an error")
        );
    }

    /// The data directory of member `id`.
    pub fn data_dir(&self, id: usize) -> PathBuf {
        self.dir.path().join(format!("n{id}"))
    }

    fn args(&self, id: usize) -> Vec<String> {
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
            "--peers".to_owned(),
            self.peers.clone(),
            "--cluster-secret".to_owned(),
            SECRET.to_owned(),
        ];
        args.extend(self.extra.iter().cloned());
        args
    }

    fn try_start_node(&mut self, id: usize) -> Result<(), SpawnError> {
        let args = self.args(id);
        let env = self.env.get(&id).cloned().unwrap_or_default();
        self.nodes[id - 1] = Some(Server::spawn_with_env(
            &args,
            None,
            self.data_dir(id),
            &env,
        )?);
        Ok(())
    }

    /// (Re)starts member `id` on its data directory and ports.
    pub fn start_node(&mut self, id: usize) {
        let mut outcome = self.try_start_node(id);
        // Its old ports may be held a moment longer by the process that just died.
        for _ in 0..ATTEMPTS {
            match &outcome {
                Err(e) if e.is_bind_failure() => {
                    std::thread::sleep(Duration::from_millis(200));
                    outcome = self.try_start_node(id);
                }
                _ => break,
            }
        }
        if let Err(e) = outcome {
            panic!("restarting node {id}: {e}");
        }
    }

    /// Starts a member with `--join` on ports it binds itself (to be added with
    /// `CLUSTER ADDNODE`); its id.
    pub fn spawn_joiner(&mut self) -> usize {
        self.spawn_joiner_with_secret(SECRET)
    }

    /// Like [`Cluster::spawn_joiner`], holding `secret` (to show that another one is refused).
    pub fn spawn_joiner_with_secret(&mut self, secret: &str) -> usize {
        self.nodes.push(None);
        let id = self.nodes.len();
        let mut args = vec![
            "--node-id".to_owned(),
            id.to_string(),
            "--port".to_owned(),
            "0".to_owned(),
            "--cluster-port".to_owned(),
            "0".to_owned(),
            "--data-dir".to_owned(),
            self.data_dir(id).display().to_string(),
            "--join".to_owned(),
            "--cluster-secret".to_owned(),
            secret.to_owned(),
        ];
        args.extend(self.extra.iter().cloned());
        let server =
            Server::spawn(&args, None, self.data_dir(id)).unwrap_or_else(|e| panic!("{e}"));
        let cport = server
            .log()
            .iter()
            .find_map(|line| {
                line.split("cluster_addr=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse::<u16>()
                    .ok()
            })
            .expect("the joiner logs its cluster address");
        self.ports.push((server.port, cport));
        self.nodes[id - 1] = Some(server);
        id
    }

    /// Kills member `id` (SIGKILL: no shutdown, only what reached the disk survives).
    pub fn kill(&mut self, id: usize) {
        self.nodes[id - 1] = None;
    }

    /// Member `id`'s process.
    pub fn node(&self, id: usize) -> &Server {
        self.nodes[id - 1].as_ref().expect("node is running")
    }

    /// Ids of the running members.
    pub fn running(&self) -> Vec<usize> {
        (1..=self.nodes.len())
            .filter(|id| self.nodes[id - 1].is_some())
            .collect()
    }

    /// `redis://` URLs of the running members, for cluster clients.
    pub fn urls(&self) -> Vec<String> {
        self.running()
            .iter()
            .map(|id| self.node(*id).url())
            .collect()
    }

    /// Field `name` of member `id`'s `INFO cluster`, if it answers.
    pub fn info_field(&self, id: usize, name: &str) -> Option<String> {
        let mut c = SyncClient::connect(self.node(id).port, Duration::from_secs(5)).ok()?;
        let Value::Bulk(Some(info)) = c.request(&[b"INFO", b"cluster"]).ok()? else {
            return None;
        };
        let prefix = format!("{name}:");
        String::from_utf8_lossy(&info)
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_owned())
    }

    /// An integer field of member `id`'s `INFO cluster`; 0 if it does not answer.
    pub fn info_u64(&self, id: usize, name: &str) -> u64 {
        self.info_field(id, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The leader member `id` names in INFO (`raft_leader_id`), if it answers and knows one.
    pub fn leader_seen_by(&self, id: usize) -> Option<usize> {
        self.info_field(id, "raft_leader_id")?.parse().ok()
    }

    /// The cluster id member `id` reports in INFO (`cluster_id`; all zeros until the first
    /// leader has named the cluster).
    pub fn cluster_id_seen_by(&self, id: usize) -> Option<String> {
        self.info_field(id, "cluster_id")
            .filter(|v| v.bytes().any(|b| b != b'0'))
    }

    /// Waits until every running member names the same running leader and holds the same
    /// cluster id (the first leader names the cluster through the log, so a cluster that has
    /// settled has applied that entry everywhere); that leader.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        crate::eventually("an agreed leader", timeout, || {
            let running = self.running();
            let seen: Vec<Option<usize>> =
                running.iter().map(|id| self.leader_seen_by(*id)).collect();
            let leader = seen[0]?;
            let named: Vec<Option<String>> = running
                .iter()
                .map(|id| self.cluster_id_seen_by(*id))
                .collect();
            (running.contains(&leader)
                && seen.iter().all(|s| *s == Some(leader))
                && named[0].is_some()
                && named.iter().all(|n| *n == named[0]))
            .then_some(leader)
        })
    }
}

#[cfg(feature = "clients")]
impl Cluster {
    /// A connection to member `id` (10 s read timeout).
    pub fn client(&self, id: usize) -> redis::Connection {
        self.node(id).client()
    }
}
