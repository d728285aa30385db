//! One `ferrite` process.
//!
//! The harness reads the process's log until the ready line names the address it listens on
//! (with `--port 0` that is the port the process bound itself), then keeps draining the log in
//! a thread (so the child never blocks on a full pipe) and keeps the lines for failure
//! messages. A process that exits before it is ready is reported with what it printed.
//! Dropping the handle kills the process.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a process may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `ferrite` binary under test: `FERRITE_BIN` when set (to measure another build), else
/// the one cargo built beside the running test or benchmark (`target/<profile>/ferrite`).
pub fn ferrite_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("FERRITE_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/ferrite
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let bin = profile_dir.join(format!("ferrite{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is not built (cargo builds it for integration tests and benchmarks)",
        bin.display()
    );
    bin
}

/// Why a process did not become ready.
#[derive(Debug)]
pub enum SpawnError {
    /// It exited first; what it wrote.
    Exited {
        /// Its standard error.
        stderr: String,
        /// Its log.
        log: Vec<String>,
    },
    /// It printed no ready line in time.
    TimedOut {
        /// Its log so far.
        log: Vec<String>,
    },
}

impl SpawnError {
    /// Whether it failed to bind a port (another process took it): worth another try on
    /// other ports.
    pub fn is_bind_failure(&self) -> bool {
        matches!(self, SpawnError::Exited { stderr, .. } if stderr.contains("binding"))
    }
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Exited { stderr, log } => {
                write!(
                    f,
                    "ferrite exited before it was ready: stderr={stderr} log={log:?}"
                )
            }
            SpawnError::TimedOut { log } => {
                write!(
                    f,
                    "ferrite printed no ready line in {START_TIMEOUT:?}: log={log:?}"
                )
            }
        }
    }
}

/// A running ferrite process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// The client port it listens on.
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    /// Set when the log reader reached the end of the process's output.
    log_closed: Arc<std::sync::atomic::AtomicBool>,
    _dir: Option<tempfile::TempDir>,
    data_dir: PathBuf,
}

impl Server {
    /// Starts ferrite with `args`, plus `--port 0` (it binds a free port itself and reports
    /// it) and a fresh data directory unless given; panics with its output if it fails.
    pub fn start(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if !args.contains(&"--port") {
            full.extend(["--port".into(), "0".into()]);
        }
        if !args.contains(&"--data-dir") {
            full.extend(["--data-dir".into(), data_dir.display().to_string()]);
        }
        Server::spawn(&full, Some(dir), data_dir).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts ferrite with exactly `args` on `data_dir` and waits for its ready line.
    pub fn spawn(
        args: &[String],
        dir: Option<tempfile::TempDir>,
        data_dir: PathBuf,
    ) -> Result<Server, SpawnError> {
        Server::spawn_with_env(args, dir, data_dir, &[])
    }

    /// Like [`Server::spawn`], with `env` added to the process's environment.
    pub fn spawn_with_env(
        args: &[String],
        dir: Option<tempfile::TempDir>,
        data_dir: PathBuf,
        env: &[(String, String)],
    ) -> Result<Server, SpawnError> {
        let mut child = Command::new(ferrite_binary())
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            // A secret in the caller's environment would open a cluster port the test did not ask for.
            .env_remove("FERRITE_CLUSTER_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferrite");
        let stdout = child.stdout.take().expect("piped stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready, port) = std::sync::mpsc::channel();
        {
            let (log, closed) = (log.clone(), log_closed.clone());
            std::thread::spawn(move || {
                let mut sent = false;
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if !sent
                        && line.contains("ready to accept connections")
                        && let Some(port) = line
                            .split("addr=")
                            .nth(1)
                            .and_then(|a| a.split_whitespace().next())
                            .and_then(|a| a.rsplit(':').next())
                            .and_then(|p| p.parse::<u16>().ok())
                    {
                        let _ = ready.send(port);
                        sent = true;
                    }
                    log.lock().unwrap().push(line);
                }
                closed.store(true, std::sync::atomic::Ordering::Release);
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let port = loop {
            match port.recv_timeout(Duration::from_millis(50)) {
                Ok(port) => break port,
                Err(_) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = log.lock().unwrap().clone();
                    return Err(SpawnError::TimedOut { log });
                }
                Err(_) => {
                    if let Ok(Some(_)) = child.try_wait() {
                        let mut stderr = String::new();
                        if let Some(mut e) = child.stderr.take() {
                            let _ = e.read_to_string(&mut stderr);
                        }
                        // Let the reader thread take the last lines.
                        crate::wait_until(Duration::from_secs(2), || {
                            log_closed.load(std::sync::atomic::Ordering::Acquire)
                        });
                        let log = log.lock().unwrap().clone();
                        return Err(SpawnError::Exited { stderr, log });
                    }
                }
            }
        };
        Ok(Server {
            child,
            port,
            log,
            log_closed,
            _dir: dir,
            data_dir,
        })
    }

    /// `redis://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A raw TCP connection with a 10 s read timeout.
    pub fn raw(&self) -> std::net::TcpStream {
        let s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("raw connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None` if it still runs.
    /// Once it exited, [`Server::log`] holds everything it printed.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        crate::wait_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_some() {
            crate::wait_until(Duration::from_secs(5), || {
                self.log_closed.load(std::sync::atomic::Ordering::Acquire)
            });
        }
        status
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill");
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The data directory given to the server.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(feature = "clients")]
mod clients {
    use std::time::Duration;

    use super::Server;

    impl Server {
        /// A synchronous redis-crate connection (RESP2) with a 10 s read timeout.
        pub fn client(&self) -> redis::Connection {
            let c = redis::Client::open(self.url())
                .unwrap()
                .get_connection()
                .expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c
        }

        /// A synchronous redis-crate connection speaking RESP3.
        pub fn client_resp3(&self) -> redis::Connection {
            redis::Client::open(format!("{}?protocol=resp3", self.url()))
                .unwrap()
                .get_connection()
                .expect("connect resp3")
        }
    }

    /// Runs a command and returns the raw value (errors included as `Err`).
    pub fn cmd(conn: &mut redis::Connection, words: &[&str]) -> redis::RedisResult<redis::Value> {
        let mut c = redis::cmd(words[0]);
        for w in &words[1..] {
            c.arg(*w);
        }
        c.query(conn)
    }

    /// The error text of a command that must fail (`CODE message`).
    pub fn err(conn: &mut redis::Connection, words: &[&str]) -> String {
        match cmd(conn, words) {
            Ok(v) => panic!("{words:?} should fail, got {v:?}"),
            Err(e) => error_line(&e),
        }
    }

    /// The whole error line of a redis-crate error, as the server sent it.
    pub fn error_line(e: &redis::RedisError) -> String {
        match (e.code(), e.detail()) {
            (Some(code), Some(detail)) => format!("{code} {detail}"),
            (Some(code), None) => code.to_string(),
            _ => e.to_string(),
        }
    }
}

#[cfg(feature = "clients")]
pub use clients::{cmd, err, error_line};

/// A configuration file holding `toml`, in a directory that lives as long as the value.
pub struct ConfigFile {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl ConfigFile {
    /// Writes `toml` to `ferrite.toml` in a new temporary directory.
    pub fn new(toml: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("ferrite.toml");
        std::fs::write(&path, toml).expect("writing the configuration file");
        ConfigFile { _dir: dir, path }
    }

    /// Its path, as a command-line argument.
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temporary path")
    }
}
