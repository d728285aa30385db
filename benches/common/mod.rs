//! Helpers shared by the benchmarks: child processes that die with the benchmark, free ports,
//! and waiting for a server to listen.

// Each benchmark compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One row of `redis-benchmark --csv`: the test's name and its numeric columns (requests/s,
/// then average, min, p50, p95, p99 and max latency in ms).
pub struct BenchRow {
    /// The test name as redis-benchmark prints it (`SET`, or the command line).
    pub test: String,
    /// The numeric columns, in order.
    pub values: Vec<f64>,
}

/// Runs `redis-benchmark --csv` against `127.0.0.1:port` with `args` and returns its rows;
/// panics when it printed none.
pub fn redis_benchmark(port: u16, args: &[&str]) -> Vec<BenchRow> {
    let out = std::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--csv"])
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .expect("run redis-benchmark (apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<BenchRow> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
            let values: Vec<f64> = fields[1..].iter().filter_map(|f| f.parse().ok()).collect();
            (!values.is_empty()).then(|| BenchRow {
                test: fields[0].to_owned(),
                values,
            })
        })
        .collect();
    assert!(
        !rows.is_empty(),
        "no results from redis-benchmark {args:?}: {text}"
    );
    rows
}
