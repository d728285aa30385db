//! Ferrite: a Redis-compatible key-value server built to run WebAssembly user-defined functions
//! next to the data and to replicate through Raft.
//!
//! Layers, each importing only the ones below it: `server` (listener, connections) →
//! `commands` (parse, dispatch, command table) → `node` (the engine: keyspace behind a lock,
//! expiry, write path) → `keyspace` (the deterministic state machine). `protocol`, `config`,
//! `reply`, `args` and `glob` are leaves. See ARCHITECTURE.md.

pub mod args;
pub mod clients;
pub mod commands;
pub mod config;
pub mod connection;
pub mod glob;
pub mod keyspace;
pub mod net;
pub mod node;
pub mod protocol;
pub mod replication;
pub mod reply;
pub mod server;
pub mod slot;
pub mod spec;
pub mod stats;
pub mod wasm;
