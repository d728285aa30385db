//! Cluster membership as data: node ids, a member's addresses, and the peer list a cluster
//! starts from. A leaf: it knows nothing of Raft, sockets or commands, so the configuration,
//! the replication layer and the cluster commands share these types without importing each
//! other.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A node's id in the cluster (its Raft id): 1 or more.
pub type NodeId = u64;

/// How far the cluster (Raft) port lies above the client port when none is given, as in Redis
/// Cluster (`6379` → `16379`).
pub const CLUSTER_PORT_OFFSET: u16 = 10_000;

/// The cluster port that goes with client port `port` when none is given; `None` when it
/// would pass 65535.
pub fn default_cluster_port(port: u16) -> Option<u16> {
    port.checked_add(CLUSTER_PORT_OFFSET)
}

/// What the cluster knows of a member: where clients reach it and where its Raft port is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// Host or IP clients are given (MOVED, CLUSTER SLOTS).
    pub host: String,
    /// Client port.
    pub port: u16,
    /// Raft (cluster bus) port.
    pub cport: u16,
}

impl Member {
    /// Parses Redis's `host:port[@cport]`; the cluster port defaults to
    /// [`default_cluster_port`].
    pub fn parse(text: &str) -> Option<Member> {
        let (addr, cport) = match text.split_once('@') {
            Some((addr, cport)) => (addr, Some(cport.parse().ok()?)),
            None => (text, None),
        };
        let (host, port) = addr.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        if host.is_empty() || port == 0 {
            return None;
        }
        Some(Member {
            host: host.to_owned(),
            port,
            cport: match cport {
                Some(cport) => cport,
                None => default_cluster_port(port)?,
            },
        })
    }

    /// `host:port`, the address clients use.
    pub fn client_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `host:cport`, the address Raft RPCs go to.
    pub fn cluster_addr(&self) -> String {
        format!("{}:{}", self.host, self.cport)
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}@{}", self.host, self.port, self.cport)
    }
}

/// Why a peer list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PeerError {
    /// An item without the `@` between id and address.
    #[error("'{0}' is not id@host:port")]
    NotIdAtAddress(String),
    /// An id that is not a positive integer.
    #[error("'{id}' in '{item}' is not a node id")]
    BadId {
        /// The id as written.
        id: String,
        /// The whole item.
        item: String,
    },
    /// An address that is not `host:port[@cport]`.
    #[error("'{0}' is not host:port[@cport]")]
    BadAddress(String),
    /// The same id twice.
    #[error("node id {0} appears twice")]
    Duplicate(NodeId),
    /// No item at all.
    #[error("the peer list is empty")]
    Empty,
}

/// The members a cluster starts with, by id: `1@127.0.0.1:7001,2@127.0.0.1:7002[@17002],...`.
/// Parsed once, where the configuration is read; the lowest id initializes the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers(BTreeMap<NodeId, Member>);

impl Peers {
    /// No peers: the node is a cluster of its own (or joins one later).
    pub fn none() -> Peers {
        Peers::default()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The member with id `id`.
    pub fn get(&self, id: NodeId) -> Option<&Member> {
        self.0.get(&id)
    }

    /// The lowest id, the one that initializes the cluster.
    pub fn first_id(&self) -> Option<NodeId> {
        self.0.keys().next().copied()
    }

    /// The members by id.
    pub fn members(&self) -> &BTreeMap<NodeId, Member> {
        &self.0
    }
}

impl FromStr for Peers {
    type Err = PeerError;

    fn from_str(text: &str) -> Result<Peers, PeerError> {
        let mut peers = BTreeMap::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (id, addr) = item
                .split_once('@')
                .ok_or_else(|| PeerError::NotIdAtAddress(item.to_owned()))?;
            let id: NodeId = id.parse().map_err(|_| PeerError::BadId {
                id: id.to_owned(),
                item: item.to_owned(),
            })?;
            let member =
                Member::parse(addr).ok_or_else(|| PeerError::BadAddress(addr.to_owned()))?;
            if peers.insert(id, member).is_some() {
                return Err(PeerError::Duplicate(id));
            }
        }
        if peers.is_empty() {
            return Err(PeerError::Empty);
        }
        Ok(Peers(peers))
    }
}

impl fmt::Display for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (id, member) in &self.0 {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{id}@{member}")?;
        }
        Ok(())
    }
}

/// In a configuration file the list is one string, as on the command line; an empty string
/// means no peers.
impl<'de> Deserialize<'de> for Peers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Peers, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().is_empty() {
            return Ok(Peers::none());
        }
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_like_redis_addresses() {
        assert_eq!(
            Member::parse("127.0.0.1:7001"),
            Some(Member {
                host: "127.0.0.1".into(),
                port: 7001,
                cport: 17001
            })
        );
        assert_eq!(
            Member::parse("10.5.0.11:6379@16000").map(|m| m.to_string()),
            Some("10.5.0.11:6379@16000".to_owned())
        );
        assert_eq!(Member::parse("nohost"), None);
        assert_eq!(Member::parse(":80"), None);
        assert_eq!(Member::parse("h:99999"), None);
        assert_eq!(
            Member::parse("h:60000"),
            None,
            "no room for the default cluster port"
        );
    }

    #[test]
    fn peer_lists_parse_and_refuse_nonsense() {
        let peers: Peers = "1@127.0.0.1:7001, 2@127.0.0.1:7002,3@h:7003@7103"
            .parse()
            .unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(peers.get(3).unwrap().cluster_addr(), "h:7103");
        assert_eq!(peers.first_id(), Some(1));
        assert_eq!(
            peers.to_string(),
            "1@127.0.0.1:7001@17001,2@127.0.0.1:7002@17002,3@h:7003@7103"
        );
        assert_eq!("1@a:1,1@b:2".parse::<Peers>(), Err(PeerError::Duplicate(1)));
        assert!(matches!(
            "x@a:1".parse::<Peers>(),
            Err(PeerError::BadId { .. })
        ));
        assert!(matches!(
            "1-a:1".parse::<Peers>(),
            Err(PeerError::NotIdAtAddress(_))
        ));
        assert_eq!("".parse::<Peers>(), Err(PeerError::Empty));
    }

    #[test]
    fn the_default_cluster_port_is_ten_thousand_up() {
        assert_eq!(default_cluster_port(6379), Some(16379));
        assert_eq!(default_cluster_port(60000), None);
    }
}
