//! Ports and raw sockets.
//!
//! A port chosen by binding port 0 comes from the kernel's ephemeral range, where the next
//! outgoing connection may take it before the child binds it. [`unused_ports`] picks ports
//! below that range instead (checked unused when picked), so only another test picking the
//! same port at the same moment can collide, and the callers that cannot bind port 0 start
//! over on a collision.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Ports are picked from here: below Linux's ephemeral range (32768-60999), above the
/// well-known services.
const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;

/// `n` ports that nothing listens on now, all distinct.
pub fn unused_ports(n: usize) -> Vec<u16> {
    // Spread the processes running tests at once over the range, then walk it.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(LAST - FIRST);
    let start = (std::process::id().wrapping_mul(7919)) % span;
    let mut out: Vec<u16> = Vec::with_capacity(n);
    let mut tried = 0;
    while out.len() < n {
        assert!(tried < span, "no {n} unused ports in {FIRST}-{LAST}");
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = FIRST + offset as u16;
        tried += 1;
        if !out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            out.push(port);
        }
    }
    out
}

/// One port that nothing listens on now.
pub fn unused_port() -> u16 {
    unused_ports(1)[0]
}

/// Finds an installed program on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

/// Sends raw bytes and reads what comes back until `expected_len` bytes, EOF or the read
/// timeout.
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

/// Whether the peer closed the connection: a read returns EOF or a reset before the stream's
/// read timeout (which the caller must have set).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_are_distinct_unused_and_below_the_ephemeral_range() {
        let ports = unused_ports(8);
        for (i, port) in ports.iter().enumerate() {
            assert!((FIRST..LAST).contains(port));
            assert!(!ports[i + 1..].contains(port));
            assert!(TcpListener::bind(("127.0.0.1", *port)).is_ok());
        }
    }
}
