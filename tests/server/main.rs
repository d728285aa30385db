//! Integration tests of the single-node server: the real binary over TCP, driven by the
//! `redis` crate, raw sockets and `redis-cli`.

mod admin;
mod commands;
mod compat;
mod lifecycle;
mod protocol;
