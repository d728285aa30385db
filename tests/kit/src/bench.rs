//! `redis-benchmark` runs for the benchmarks, parsed from its CSV output.

/// One row of `redis-benchmark --csv`: the test's name and its numeric columns (requests/s,
/// then average, min, p50, p95, p99 and max latency in ms).
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// The test name as redis-benchmark prints it (`SET`, or the command line).
    pub test: String,
    /// The numeric columns, in order.
    pub values: Vec<f64>,
}

impl BenchRow {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        self.values.first().copied().unwrap_or(0.0)
    }

    /// The median latency in ms.
    pub fn p50(&self) -> f64 {
        self.values.get(3).copied().unwrap_or(0.0)
    }

    /// The 99th percentile latency in ms.
    pub fn p99(&self) -> f64 {
        self.values.get(5).copied().unwrap_or(0.0)
    }
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
    let rows = parse_csv(&text);
    assert!(
        !rows.is_empty(),
        "no results from redis-benchmark {args:?}: {text}"
    );
    rows
}

fn parse_csv(text: &str) -> Vec<BenchRow> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
            let values: Vec<f64> = fields[1..].iter().filter_map(|f| f.parse().ok()).collect();
            (!values.is_empty()).then(|| BenchRow {
                test: fields[0].to_owned(),
                values,
            })
        })
        .collect()
}

/// `examples/bench_udf` built for `wasm32-unknown-unknown` (release) with the examples' linker
/// settings (64 KiB of stack, 512 KiB of memory at start): the guest the WebAssembly benchmarks
/// call.
pub fn bench_udf() -> Vec<u8> {
    build_example("bench_udf", false)
}

/// The same guest built with the linker's default settings, as a module built without the
/// SDK's advice is: 1 MiB of stack at the bottom of memory, 17 pages at start, and the
/// allocator growing memory for its heap.
pub fn bench_udf_default_linking() -> Vec<u8> {
    build_example("bench_udf", true)
}

/// `examples/plain_udf`, the same four workloads written without the SDK (`#[no_mangle]`
/// exports, input and reply coded by hand), built with the linker's default settings.
pub fn plain_udf() -> Vec<u8> {
    build_example("plain_udf", true)
}

/// `examples/c/bench_udf.c`, the same four workloads in C with no library, built by clang
/// (`apt-get install clang lld`) with its defaults for `wasm32-unknown-unknown` at `-O2`.
pub fn c_udf() -> Vec<u8> {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let out = examples.join("target/bench_udf_c.wasm");
    std::fs::create_dir_all(examples.join("target")).expect("examples/target");
    let status = std::process::Command::new("clang")
        .args([
            "--target=wasm32-unknown-unknown",
            "-O2",
            "-nostdlib",
            "-Wl,--no-entry",
            "-o",
        ])
        .arg(&out)
        .arg(examples.join("c/bench_udf.c"))
        .status()
        .expect("run clang (apt-get install clang lld)");
    assert!(status.success(), "building examples/c/bench_udf.c failed");
    std::fs::read(&out).expect("the built module")
}

fn build_example(package: &str, default_linking: bool) -> Vec<u8> {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let target = examples.join(if default_linking {
        "target/default-linking"
    } else {
        "target"
    });
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = std::process::Command::new(cargo);
    build
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            package,
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(&examples);
    if default_linking {
        // Any RUSTFLAGS replace the examples' `target.wasm32-unknown-unknown.rustflags`.
        build.env("RUSTFLAGS", "-C target-cpu=generic");
    }
    let status = build.status().expect("build the examples");
    assert!(status.success(), "building examples/{package} failed");
    std::fs::read(target.join(format!("wasm32-unknown-unknown/release/{package}.wasm")))
        .expect("the built module")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_parse_and_the_header_is_skipped() {
        let rows = parse_csv(
            "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"SET\",\"50000.00\",\"0.5\",\"0.1\",\"0.4\",\"0.9\",\"1.2\",\"3.0\"\n",
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].test, "SET");
        assert_eq!(
            (rows[0].rps(), rows[0].p50(), rows[0].p99()),
            (50000.0, 0.4, 1.2)
        );
    }
}
