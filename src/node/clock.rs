//! Seeds for random commands. The time operations carry comes from the node's
//! [`crate::clock::Clock`]; both are read on the leader when a command is parsed and then
//! travel in the operation; nothing applied reads them.

/// A fresh seed for random commands, from the per-thread generator Raft's election timeouts
/// draw from (started at a random point in a server, seeded in a simulation; no shared counter
/// to contend on). Seeds need not be unique, only carried by the operation.
pub fn next_seed() -> u64 {
    crate::replication::next_random()
}
