//! A real `redis-server`, for comparisons in the same run.
//!
//! Redis cannot bind port 0 and report it, so the port is picked unused
//! ([`crate::unused_port`]) and, when the server exits because something took it meanwhile,
//! picked again.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How many ports are tried before giving up.
const ATTEMPTS: usize = 5;

/// A running redis-server, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis-server with `args` (besides `--port`, `--bind 127.0.0.1` and its own
    /// `--dir`) and waits until it answers PING.
    pub fn start(args: &[&str]) -> RedisServer {
        let binary = crate::which("redis-server")
            .expect("redis-server must be installed (the test command installs it)");
        for _ in 0..ATTEMPTS {
            let port = crate::unused_port();
            let dir = tempfile::tempdir().unwrap();
            let mut child = Command::new(&binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(args)
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            let ready = crate::wait_until(Duration::from_secs(10), || {
                crate::resp::pongs(port) || matches!(child.try_wait(), Ok(Some(_)))
            });
            if ready && matches!(child.try_wait(), Ok(None)) {
                return RedisServer {
                    child,
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start on any of {ATTEMPTS} ports");
    }

    /// `redis://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
