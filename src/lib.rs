//! Ferrite: a Redis-compatible key-value server built to run WebAssembly user-defined functions
//! next to the data and to replicate through Raft.
//!
//! Layers, each importing only the ones below it (ARCHITECTURE.md has the map, and
//! `tests/architecture` checks it):
//! - `app`: the composition root, which builds and starts everything below;
//! - `server`, `connection`: sockets and framing, one task per client;
//! - `commands`: a decoded request to a reply, dispatched through the command table;
//! - `node`: routing, read barriers, proposals, membership, expiry;
//! - `state_machine`: the replicated state the Raft log drives (keyspace and modules);
//! - `wasm`, `keyspace`: functions and data, deterministic;
//! - `replication`: the Raft log, its storage and network, over opaque payloads.
//!
//! Leaves, importing nothing above them: `protocol`, `config`, `command_table`, `peers`, `net`,
//! `reply`, `args`, `glob`, `slot`, `stats`, `clients`.

pub mod app;
pub mod args;
pub mod blocking;
pub mod clients;
pub mod clock;
pub mod command_table;
pub mod commands;
pub mod config;
pub mod connection;
pub mod glob;
pub mod keyspace;
pub mod net;
pub mod node;
pub mod peers;
pub mod protocol;
pub mod replication;
pub mod reply;
#[cfg(feature = "fault-injection")]
pub mod sabotage;
pub mod server;
pub mod slot;
pub mod state_machine;
pub mod stats;
pub mod wasm;
