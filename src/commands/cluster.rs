//! Cluster commands: CLUSTER SLOTS, SHARDS, NODES, INFO, MYID, KEYSLOT, COUNTKEYSINSLOT,
//! GETKEYSINSLOT, ADDNODE, REMOVENODE, and READONLY / READWRITE / ASKING.
//!
//! The cluster is one shard owning all 16384 slots: its master is the Raft leader and every
//! other member is its replica. Node ids are derived from Raft ids, so every member names
//! every other one the same way and the replies agree across nodes.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{CommandError, Session, Shared};
use crate::args::{parse_i64, text};
use crate::command_table::Cluster;
use crate::node::{MemberView, Topology};
use crate::peers::{Member, NodeId};
use crate::reply::Reply;
use crate::slot::{SLOTS, key_slot};

pub(super) async fn execute(
    shared: &Shared,
    session: &mut Session,
    command: Cluster,
    argv: &[Bytes],
) -> Result<Reply, CommandError> {
    match command {
        Cluster::ReadOnly => {
            session.readonly = true;
            Ok(Reply::ok())
        }
        Cluster::ReadWrite => {
            session.readonly = false;
            Ok(Reply::ok())
        }
        Cluster::Asking => Ok(Reply::ok()),
        Cluster::Cluster => cluster(shared, &argv[1..]).await,
    }
}

/// The 40-hex cluster node id of Raft node `id`: stable across restarts and the same on
/// every member.
pub fn node_name(id: NodeId) -> String {
    let digest = Sha256::digest(format!("ferrite-node-{id}").as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..40]
        .to_owned()
}

fn slot_arg(word: &[u8]) -> Result<u16, CommandError> {
    match parse_i64(word) {
        Some(n) if (0..i64::from(SLOTS)).contains(&n) => Ok(n as u16),
        _ => Err(CommandError::InvalidSlot),
    }
}

async fn cluster(shared: &Shared, args: &[Bytes]) -> Result<Reply, CommandError> {
    let sub = text(&args[0]).to_ascii_lowercase();
    let topology = shared.node.topology();
    Ok(match sub.as_str() {
        "myid" => Reply::bulk(node_name(topology.me)),
        "keyslot" => Reply::Int(i64::from(key_slot(&args[1]))),
        "countkeysinslot" => {
            let slot = slot_arg(&args[1])?;
            Reply::Int(shared.node.keys_in_slot(slot, 0).1 as i64)
        }
        "getkeysinslot" => {
            let slot = slot_arg(&args[1])?;
            let count = parse_i64(&args[2])
                .filter(|n| *n >= 0)
                .ok_or(CommandError::InvalidKeyCount)?;
            let (keys, _) = shared.node.keys_in_slot(slot, count as usize);
            Reply::Array(keys.into_iter().map(Reply::Bulk).collect())
        }
        "info" => Reply::Verbatim(info(&topology)),
        "nodes" => Reply::Verbatim(nodes(&topology)),
        "slots" => slots(&topology),
        "shards" => shards(&topology),
        "addnode" => {
            let id = parse_node_id(&args[1])?;
            let member = Member::parse(&text(&args[2]))
                .ok_or_else(|| CommandError::InvalidNodeAddress(text(&args[2])))?;
            shared.node.add_node(id, member).await?;
            Reply::ok()
        }
        "removenode" => {
            let id = parse_node_id(&args[1])?;
            shared.node.remove_node(id).await?;
            Reply::ok()
        }
        // The table only lets known subcommands through.
        _ => return Err(CommandError::Syntax),
    })
}

fn parse_node_id(word: &[u8]) -> Result<NodeId, CommandError> {
    parse_i64(word)
        .filter(|n| *n > 0)
        .map(|n| n as NodeId)
        .ok_or(CommandError::InvalidNodeId)
}

/// The leader first, then the other members by id.
fn ordered(topology: &Topology) -> (Option<&MemberView>, Vec<&MemberView>) {
    let leader = topology
        .members
        .iter()
        .find(|m| Some(m.id) == topology.leader);
    let replicas = topology
        .members
        .iter()
        .filter(|m| Some(m.id) != topology.leader)
        .collect();
    (leader, replicas)
}

fn info(topology: &Topology) -> String {
    let ok = topology.leader.is_some();
    let slots_ok = if ok { SLOTS } else { 0 };
    [
        format!("cluster_state:{}", if ok { "ok" } else { "fail" }),
        format!("cluster_slots_assigned:{SLOTS}"),
        format!("cluster_slots_ok:{slots_ok}"),
        "cluster_slots_pfail:0".to_owned(),
        format!("cluster_slots_fail:{}", SLOTS - slots_ok),
        format!("cluster_known_nodes:{}", topology.members.len()),
        "cluster_size:1".to_owned(),
        format!("cluster_current_epoch:{}", topology.term),
        format!("cluster_my_epoch:{}", topology.term),
    ]
    .iter()
    .map(|l| format!("{l}\r\n"))
    .collect()
}

fn nodes(topology: &Topology) -> String {
    let (leader, replicas) = ordered(topology);
    let mut out = String::new();
    let mut line = |m: &MemberView, master: bool| {
        let myself = if m.id == topology.me { "myself," } else { "" };
        let role = if master { "master" } else { "slave" };
        let master_id = match (master, leader) {
            (false, Some(l)) => node_name(l.id),
            _ => "-".to_owned(),
        };
        let slots = if master {
            format!(" 0-{}", SLOTS - 1)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{} {}:{}@{} {myself}{role} {master_id} 0 0 {} connected{slots}\n",
            node_name(m.id),
            m.member.host,
            m.member.port,
            m.member.cport,
            topology.term,
        ));
    };
    if let Some(l) = leader {
        line(l, true);
    }
    for r in replicas {
        line(r, false);
    }
    out
}

fn node_entry(m: &MemberView) -> Reply {
    Reply::Array(vec![
        Reply::bulk(&m.member.host),
        Reply::Int(i64::from(m.member.port)),
        Reply::bulk(node_name(m.id)),
        Reply::Map(Vec::new()),
    ])
}

fn slots(topology: &Topology) -> Reply {
    let (leader, replicas) = ordered(topology);
    let Some(leader) = leader else {
        // No leader, no owner: clients see an empty table and retry.
        return Reply::Array(Vec::new());
    };
    let mut range = vec![
        Reply::Int(0),
        Reply::Int(i64::from(SLOTS - 1)),
        node_entry(leader),
    ];
    range.extend(replicas.into_iter().map(node_entry));
    Reply::Array(vec![Reply::Array(range)])
}

fn shards(topology: &Topology) -> Reply {
    let (leader, replicas) = ordered(topology);
    let field = |k: &str, v: Reply| (Reply::bulk(k), v);
    let node = |m: &MemberView, role: &str| {
        Reply::Map(vec![
            field("id", Reply::bulk(node_name(m.id))),
            field("port", Reply::Int(i64::from(m.member.port))),
            field("ip", Reply::bulk(&m.member.host)),
            field("endpoint", Reply::bulk(&m.member.host)),
            field("role", Reply::bulk(role)),
            field("replication-offset", Reply::Int(topology.applied as i64)),
            field("health", Reply::bulk("online")),
        ])
    };
    let mut members: Vec<Reply> = leader.iter().map(|l| node(l, "master")).collect();
    members.extend(replicas.into_iter().map(|r| node(r, "replica")));
    let slots = if leader.is_some() {
        vec![Reply::Int(0), Reply::Int(i64::from(SLOTS - 1))]
    } else {
        Vec::new()
    };
    Reply::Array(vec![Reply::Map(vec![
        field("slots", Reply::Array(slots)),
        field("nodes", Reply::Array(members)),
    ])])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: NodeId, port: u16) -> MemberView {
        MemberView {
            id,
            member: Member {
                host: "127.0.0.1".into(),
                port,
                cport: port + 10000,
            },
            voter: true,
        }
    }

    #[test]
    fn node_names_are_stable_hex() {
        assert_eq!(node_name(1), node_name(1));
        assert_ne!(node_name(1), node_name(2));
        assert_eq!(node_name(7).len(), 40);
        assert!(node_name(7).bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn nodes_lists_the_leader_as_master_with_every_line_terminated() {
        let topology = Topology {
            me: 2,
            leader: Some(1),
            term: 3,
            members: vec![view(1, 7001), view(2, 7002), view(3, 7003)],
            applied: 9,
            clock_bound_ms: 250,
            state_check_index: 0,
            diverged: None,
            clock_refusals: 0,
            bus_dials: 0,
            read_rounds: 0,
        };
        let text = nodes(&topology);
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert!(text.ends_with('\n'));
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            format!(
                "{} 127.0.0.1:7001@17001 master - 0 0 3 connected 0-16383",
                node_name(1)
            )
        );
        assert_eq!(
            lines[1],
            format!(
                "{} 127.0.0.1:7002@17002 myself,slave {} 0 0 3 connected",
                node_name(2),
                node_name(1)
            )
        );
    }

    #[test]
    fn slots_cover_everything_with_the_leader_first() {
        let topology = Topology {
            me: 1,
            leader: Some(2),
            term: 1,
            members: vec![view(1, 7001), view(2, 7002)],
            applied: 0,
            clock_bound_ms: 250,
            state_check_index: 0,
            diverged: None,
            clock_refusals: 0,
            bus_dials: 0,
            read_rounds: 0,
        };
        let Reply::Array(ranges) = slots(&topology) else {
            panic!()
        };
        let Reply::Array(range) = &ranges[0] else {
            panic!()
        };
        assert_eq!(range[0], Reply::Int(0));
        assert_eq!(range[1], Reply::Int(16383));
        assert_eq!(range[2], node_entry(&view(2, 7002)));
        assert_eq!(range[3], node_entry(&view(1, 7001)));
        let none = Topology {
            leader: None,
            ..topology
        };
        assert_eq!(slots(&none), Reply::Array(vec![]));
        assert!(info(&none).starts_with("cluster_state:fail\r\n"));
    }
}
