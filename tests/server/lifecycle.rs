//! Start-up, configuration, authentication, limits and shutdown of the real process.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use redis::Value;

use ferrite_testkit::{ConfigFile, Server, cmd, err, is_closed, read_at_least, roundtrip};

fn ferrite(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(args)
        .env_remove("FERRITE_CLUSTER_SECRET")
        .output()
        .unwrap()
}

#[test]
fn help_and_version() {
    let help = ferrite(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--config",
        "--bind",
        "--port",
        "--requirepass",
        "--data-dir",
        "--log-level",
        "--version",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}: {text}");
    }
    let version = ferrite(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("ferrite {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_configuration_files_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (contents, needle) in [
        ("[server]\nprot = 1\n", "prot"),
        ("[server]\nport = \"high\"\n", "port"),
        ("[server]\nlog_level = \"loud\"\n", "server.log_level"),
        ("[server]\nbind = \"not-an-ip\"\n", "server.bind"),
        ("[nosection]\n", "nosection"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, contents).unwrap();
        let out = ferrite(&["--config", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{contents} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "error for {contents:?} does not name {needle}: {stderr}"
        );
    }
}

#[test]
fn config_file_values_apply_and_flags_win() {
    let config = ConfigFile::new("[server]\nrequirepass = \"from-file\"\nmaxclients = 77\n");
    let server = Server::start(&["--config", config.arg(), "--requirepass", "from-flag"]);
    let mut c = redis::Client::open(format!("redis://:from-flag@127.0.0.1:{}/", server.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(&mut c)
        .unwrap();
    assert_eq!(config, ["maxclients", "77"]);
}

#[test]
fn authentication_is_required_when_configured() {
    let server = Server::start(&["--requirepass", "s3cret"]);
    let mut raw = server.raw();
    assert_eq!(
        roundtrip(&mut raw, b"*1\r\n$4\r\nPING\r\n", 33),
        b"-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        roundtrip(&mut raw, b"*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n", 60),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        roundtrip(&mut raw, b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n", 5),
        b"+OK\r\n"
    );
    assert_eq!(
        roundtrip(&mut raw, b"*1\r\n$4\r\nPING\r\n", 7),
        b"+PONG\r\n"
    );

    // Before AUTH only small frames are accepted.
    let mut raw = server.raw();
    raw.write_all(b"*20\r\n").unwrap();
    let got = read_at_least(&mut raw, 20);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert!(is_closed(&mut raw));
    let mut raw = server.raw();
    raw.write_all(b"*2\r\n$4\r\nAUTH\r\n$100000\r\n").unwrap();
    let got = read_at_least(&mut raw, 20);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );

    // HELLO with AUTH authenticates and switches protocol in one step.
    let mut raw = server.raw();
    let reply = roundtrip(
        &mut raw,
        b"*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$6\r\ns3cret\r\n",
        30,
    );
    assert!(
        reply.starts_with(b"%7\r\n"),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    // The redis crate authenticates through the URL; RESET forgets it.
    let mut c = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}/", server.port))
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(cmd(&mut c, &["SET", "k", "v"]).unwrap(), Value::Okay);
    assert_eq!(
        cmd(&mut c, &["RESET"]).unwrap(),
        Value::SimpleString("RESET".into())
    );
    assert_eq!(
        err(&mut c, &["GET", "k"]),
        "NOAUTH Authentication required."
    );

    let open = Server::start(&[]);
    let mut c = open.client();
    assert!(
        err(&mut c, &["AUTH", "x"])
            .starts_with("ERR AUTH <password> called without any password configured")
    );
}

#[test]
fn maxclients_refuses_extra_connections() {
    let server = Server::start(&[]);
    let mut admin = server.client();
    cmd(&mut admin, &["CONFIG", "SET", "maxclients", "2"]).unwrap();
    let _second = server.client();
    let mut third = server.raw();
    let got = read_at_least(&mut third, 36);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR max number of clients reached\r\n"
    );
    let info: String = redis::cmd("INFO").arg("stats").query(&mut admin).unwrap();
    assert!(info.contains("rejected_connections:1"), "{info}");
}

#[test]
fn quit_closes_only_that_connection() {
    let server = Server::start(&[]);
    let mut raw = server.raw();
    assert_eq!(roundtrip(&mut raw, b"*1\r\n$4\r\nQUIT\r\n", 5), b"+OK\r\n");
    assert!(is_closed(&mut raw));
    let mut c = server.client();
    assert_eq!(
        cmd(&mut c, &["PING"]).unwrap(),
        Value::SimpleString("PONG".into())
    );
}

#[test]
fn shutdown_command_stops_the_server() {
    let mut server = Server::start(&[]);
    let mut other = server.raw();
    let mut c = server.client();
    assert!(
        cmd(&mut c, &["SHUTDOWN"]).is_err(),
        "SHUTDOWN closes the connection without a reply"
    );
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("server exited");
    assert!(status.success(), "{status:?}");
    assert!(is_closed(&mut other), "other clients are disconnected");
    assert!(server.log().iter().any(|l| l.contains("server stopped")));
}

#[test]
fn sigterm_and_sigint_shut_down_gracefully() {
    for signal in ["TERM", "INT"] {
        let mut server = Server::start(&[]);
        let mut c = server.client();
        cmd(&mut c, &["SET", "k", signal]).unwrap();
        server.signal(signal);
        let status = server
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("SIG{signal} did not stop the server"));
        assert!(status.success(), "SIG{signal}: {status:?}");
        let log = server.log();
        assert!(
            log.iter().any(|l| l.contains("signal received"))
                && log.iter().any(|l| l.contains("node stopped")),
            "SIG{signal} did not take the orderly path: {log:?}"
        );
        // What was acknowledged before the signal is on disk: a new process on the same data
        // directory has it.
        let data_dir = server.data_dir().display().to_string();
        let restarted = Server::start(&["--data-dir", &data_dir]);
        assert_eq!(
            cmd(&mut restarted.client(), &["GET", "k"]).unwrap(),
            Value::BulkString(signal.as_bytes().to_vec()),
            "after SIG{signal}"
        );
    }
}

/// Started with no flags, a node logs its own lifecycle, one line per event, and none of
/// openraft's internals; at `debug` openraft's lines appear, so it is the filter that hides
/// them, not their absence.
#[test]
fn the_default_log_is_the_nodes_own_lifecycle() {
    let events = [
        "no cluster port",
        "role=\"leader\"",
        "ready to accept connections",
        "membership changed",
        "node stopped",
    ];
    let mut server = Server::start(&[]);
    // At once: the handlers are in place by the time the node says it is ready.
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(10)).expect("stopped");
    assert!(
        status.success(),
        "SIGTERM as soon as it is ready: {status:?}"
    );
    let log = server.log();
    for event in events {
        let lines = log.iter().filter(|l| l.contains(event)).count();
        assert_eq!(lines, 1, "{event:?} logged {lines} times: {log:#?}");
    }
    for line in &log {
        assert!(
            !line.contains("openraft") && !line.contains("RaftState") && line.len() < 300,
            "not a lifecycle line: {line}"
        );
    }

    let mut chatty = Server::start(&["--log-level", "debug"]);
    chatty.signal("TERM");
    chatty.wait_exit(Duration::from_secs(10)).expect("stopped");
    assert!(
        chatty.log().iter().any(|l| l.contains("openraft")),
        "at debug, openraft's own lines show"
    );
}

/// A free client port above 55535, where the client port + 10000 would pass 65535.
fn free_high_port() -> u16 {
    (55_536..=65_535u16)
        .rev()
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port above 55535")
}

#[test]
fn a_single_node_serves_on_any_port_and_opens_no_cluster_port() {
    let mut last = String::new();
    // The port may be taken between the probe and the start: try a few.
    let server = (0..5)
        .find_map(|_| {
            let port = free_high_port().to_string();
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let args: Vec<String> = ["--port", &port, "--data-dir", &data.display().to_string()]
                .iter()
                .map(|s| s.to_string())
                .collect();
            match Server::spawn(&args, Some(dir), data) {
                Ok(server) => Some(server),
                Err(e) => {
                    last = e.to_string();
                    None
                }
            }
        })
        .unwrap_or_else(|| panic!("never started: {last}"));
    assert!(server.port > 55_535);
    let mut c = server.client();
    assert_eq!(cmd(&mut c, &["SET", "k", "v"]).unwrap(), Value::Okay);
    assert!(
        server.log().iter().any(|l| l.contains("no cluster port")),
        "{:?}",
        server.log()
    );
    assert!(
        !server.log().iter().any(|l| l.contains("raft listening")),
        "a single node without a secret listens for no peers"
    );
    let refused = err(&mut c, &["CLUSTER", "ADDNODE", "2", "127.0.0.1:7002@17002"]);
    assert!(refused.contains("no cluster port"), "{refused}");
}

#[test]
fn peers_without_a_cluster_secret_are_refused_at_start() {
    let out = ferrite(&["--peers", "1@127.0.0.1:7001,2@127.0.0.1:7002"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cluster.secret"), "{stderr}");
    let out = ferrite(&["--join", "--cluster-secret", "short"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 16"), "{stderr}");
}

/// A node whose Raft core stops on a storage error (here its data directory is removed under
/// it, which the next snapshot save finds) refuses writes with CLUSTERDOWN and the cause,
/// rather than a redirect to itself, and stays up to answer and to be shut down.
#[test]
fn a_node_whose_raft_stopped_on_a_disk_error_says_so() {
    let config = ConfigFile::new("[cluster]\nsnapshot_logs = 20\n");
    let mut server = Server::start(&["--config", config.arg()]);
    let mut c = server.client();
    assert_eq!(cmd(&mut c, &["SET", "k", "v"]).unwrap(), Value::Okay);
    std::fs::remove_dir_all(server.data_dir()).unwrap();
    let mut answers = Vec::new();
    let refused = (0..500).find_map(|i| match cmd(&mut c, &["SET", &format!("k{i}"), "v"]) {
        Ok(_) => None,
        Err(e) => {
            let line = ferrite_testkit::error_line(&e);
            answers.push(line.clone());
            line.starts_with("CLUSTERDOWN").then_some(line)
        }
    });
    let refused =
        refused.unwrap_or_else(|| panic!("writes went on, or failed otherwise: {answers:?}"));
    assert!(refused.contains("raft stopped"), "{refused}");
    assert!(
        answers
            .iter()
            .all(|a| a.starts_with("CLUSTERDOWN") || a.starts_with("UNCERTAIN")),
        "a write was refused some other way (a redirect to itself?): {answers:?}"
    );
    assert_eq!(
        cmd(&mut c, &["PING"]).unwrap(),
        Value::SimpleString("PONG".into())
    );
    server.signal("TERM");
    assert!(
        server.wait_exit(Duration::from_secs(10)).is_some(),
        "the stopped node did not shut down"
    );
}
