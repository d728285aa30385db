//! The test kit: what Ferrite's integration tests, benchmarks and turmoil simulation share.
//!
//! - [`Server`] and [`Cluster`]: the real `ferrite` binary as child processes. A single server
//!   binds port 0 and reports the port it got (no race for a port someone else takes
//!   between choosing and binding it); a cluster, whose members must know each other's ports
//!   before they start, picks unused ports outside the kernel's ephemeral range and starts
//!   over on new ones when a member cannot bind.
//! - [`RedisServer`]: a real `redis-server` on an unused port, started again on another port
//!   when the first is taken.
//! - [`wait`]: every wait has a deadline, and the ones that must succeed fail the test by
//!   name when it passes.
//! - [`resp`]: a RESP2 client, over any async stream (the simulation drives turmoil's sockets
//!   with it) or over a blocking TCP stream (readiness probes).
//! - [`bench`]: `redis-benchmark` runs, parsed; [`plot`]: line charts of their figures as SVG.
//!
//! Every child process is killed when its handle drops.

pub mod bench;
pub mod net;
pub mod plot;
pub mod resp;
pub mod wait;

mod cluster;
mod redis_server;
mod server;

pub use cluster::Cluster;
pub use net::{is_closed, read_at_least, roundtrip, unused_port, unused_ports, which};
pub use redis_server::RedisServer;
pub use server::{ConfigFile, Server, SpawnError, ferrite_binary};
pub use wait::{eventually, wait_until};

#[cfg(feature = "clients")]
pub use server::{cmd, err, error_line};
