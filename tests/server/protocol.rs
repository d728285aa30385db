//! The wire: RESP3, pipelining, inline commands, and hostile input that must be refused
//! without affecting other clients.

use std::io::Write;
use std::time::Duration;

use redis::Value;

use ferrite_testkit::{Server, cmd, is_closed, read_at_least, roundtrip};

/// After any abuse, a fresh client must still be served.
fn assert_serving(server: &Server) {
    let mut c = server.client();
    assert_eq!(
        cmd(&mut c, &["PING"]).unwrap(),
        Value::SimpleString("PONG".into())
    );
}

#[test]
fn resp3_hello_and_typed_replies() {
    let server = Server::start(&[]);
    let mut raw = server.raw();
    let hello = roundtrip(&mut raw, b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n", 40);
    let text = String::from_utf8_lossy(&hello);
    assert!(text.starts_with("%7\r\n"), "{text}");
    assert!(text.contains("$5\r\nproto\r\n:3\r\n"), "{text}");
    let reply = roundtrip(
        &mut raw,
        b"*4\r\n$4\r\nHSET\r\n$1\r\nh\r\n$1\r\nf\r\n$1\r\nv\r\n*2\r\n$7\r\nHGETALL\r\n$1\r\nh\r\n",
        20,
    );
    assert_eq!(
        String::from_utf8_lossy(&reply),
        ":1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    let reply = roundtrip(&mut raw, b"*2\r\n$3\r\nGET\r\n$4\r\nnone\r\n", 3);
    assert_eq!(reply, b"_\r\n");
    assert_eq!(
        roundtrip(&mut raw, b"*2\r\n$5\r\nHELLO\r\n$1\r\n4\r\n", 10),
        b"-NOPROTO unsupported protocol version\r\n"
    );

    let mut c = server.client_resp3();
    cmd(&mut c, &["SADD", "s", "a"]).unwrap();
    assert_eq!(
        cmd(&mut c, &["SMEMBERS", "s"]).unwrap(),
        Value::Set(vec![Value::BulkString(b"a".to_vec())])
    );
    assert_eq!(
        cmd(&mut c, &["INCRBYFLOAT", "f", "1.5"]).unwrap(),
        Value::BulkString(b"1.5".to_vec())
    );
    assert!(matches!(cmd(&mut c, &["HGETALL", "nope"]).unwrap(), Value::Map(m) if m.is_empty()));
    let Value::Map(config) = cmd(&mut c, &["CONFIG", "GET", "save"]).unwrap() else {
        panic!()
    };
    assert_eq!(config.len(), 1);
}

#[test]
fn ten_thousand_pipelined_commands_answer_in_order() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let entries = |c: &mut redis::Connection| -> i64 {
        let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("raft_log_entries_written:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let before = entries(&mut c);
    let mut pipe = redis::pipe();
    for i in 0..5_000 {
        pipe.cmd("SET").arg(format!("k{i}")).arg(i);
        pipe.cmd("INCR").arg("counter");
    }
    let replies: Vec<Value> = pipe.query(&mut c).unwrap();
    assert_eq!(replies.len(), 10_000);
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair[0], Value::Okay);
        assert_eq!(
            pair[1],
            Value::Int(i as i64 + 1),
            "INCR replies must come in order"
        );
    }
    assert_eq!(
        cmd(&mut c, &["GET", "k4999"]).unwrap(),
        Value::BulkString(b"4999".to_vec())
    );
    // Pipelined writes are queued to the log together: they share entries (and fsyncs).
    let written = entries(&mut c) - before;
    assert!(
        written < 1_000,
        "10000 pipelined writes took {written} log entries"
    );
    // A read in a pipeline sees the writes queued before it.
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg("seen").arg(1);
    pipe.cmd("INCR").arg("seen");
    pipe.cmd("GET").arg("seen");
    pipe.cmd("INCR").arg("seen");
    let replies: Vec<Value> = pipe.query(&mut c).unwrap();
    assert_eq!(
        replies,
        vec![
            Value::Okay,
            Value::Int(2),
            Value::BulkString(b"2".to_vec()),
            Value::Int(3)
        ]
    );

    // The same through one raw write: every reply arrives, in order.
    let mut raw = server.raw();
    let request: Vec<u8> = (0..10_000)
        .flat_map(|_| b"*2\r\n$4\r\nINCR\r\n$1\r\nr\r\n".to_vec())
        .collect();
    raw.write_all(&request).unwrap();
    let expected: String = (1..=10_000).map(|i| format!(":{i}\r\n")).collect();
    let got = read_at_least(&mut raw, expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

/// An integer field of `INFO persistence`.
fn persistence_field(c: &mut redis::Connection, name: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("INFO persistence has no {name}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_lone_writer_proposes_its_own_writes_and_a_pipeline_after_them_keeps_its_order() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let alone = |c: &mut redis::Connection| persistence_field(c, "raft_writes_proposed_alone");
    // One client writing and waiting: after two entries of one write each, the writes skip
    // the batcher.
    let before = alone(&mut c);
    for i in 0..20 {
        assert_eq!(
            cmd(&mut c, &["SET", &format!("solo{i}"), "v"]).unwrap(),
            Value::Okay
        );
    }
    let direct = alone(&mut c) - before;
    assert!(
        direct >= 15,
        "only {direct} of 20 lone writes went on their own"
    );
    // A pipeline from the same client: its first write takes the lone writer's ticket, the
    // others queue behind it before it is proposed, so it is handed to the batcher to lead
    // their entry; all apply in the order sent.
    let before = alone(&mut c);
    let entries = persistence_field(&mut c, "raft_log_entries_written");
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg("chain").arg("0");
    for i in 1..=50 {
        pipe.cmd("APPEND").arg("chain").arg(i.to_string());
    }
    pipe.cmd("GET").arg("chain");
    let replies: Vec<Value> = pipe.query(&mut c).unwrap();
    let expected: String = (0..=50).map(|i| i.to_string()).collect();
    assert_eq!(
        replies.last(),
        Some(&Value::BulkString(expected.into_bytes()))
    );
    assert_eq!(
        alone(&mut c) - before,
        0,
        "a pipeline's first write went alone, ahead of the rest"
    );
    let entries = persistence_field(&mut c, "raft_log_entries_written") - entries;
    assert!(entries < 51, "51 pipelined writes took {entries} entries");
}

#[test]
fn inline_commands_work_like_telnet() {
    let server = Server::start(&[]);
    let mut raw = server.raw();
    assert_eq!(roundtrip(&mut raw, b"PING\r\n", 7), b"+PONG\r\n");
    assert_eq!(
        roundtrip(&mut raw, b"SET greeting \"hello world\"\r\n", 5),
        b"+OK\r\n"
    );
    assert_eq!(
        roundtrip(&mut raw, b"GET greeting\n", 17),
        b"$11\r\nhello world\r\n"
    );
    // Blank lines are ignored; pipelined inline commands all answer.
    assert_eq!(
        roundtrip(&mut raw, b"\r\nPING\r\nECHO hi\r\n", 14),
        b"+PONG\r\n$2\r\nhi\r\n"
    );
    assert_eq!(
        roundtrip(&mut raw, b"SET a \"unterminated\r\n", 40),
        b"-ERR Protocol error: unbalanced quotes in request\r\n"
    );
    assert!(is_closed(&mut raw));
    assert_serving(&server);
}

#[test]
fn hostile_input_is_refused_and_others_keep_being_served() {
    let server = Server::start(&[]);
    // Another client stays connected through all of it and keeps working.
    let mut bystander = server.client();
    cmd(&mut bystander, &["SET", "safe", "1"]).unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "huge bulk header",
            b"*1\r\n$99999999999\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            "huge multibulk count",
            b"*9999999999\r\n".to_vec(),
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            "negative bulk",
            b"*1\r\n$-3\r\n".to_vec(),
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            "not a bulk",
            b"*1\r\n:12\r\n".to_vec(),
            "-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            "garbage count",
            b"*abc\r\n".to_vec(),
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            "inline too long",
            vec![b'a'; 70 * 1024],
            "-ERR Protocol error: too big inline request\r\n",
        ),
    ];
    for (name, bytes, expected) in cases {
        let mut raw = server.raw();
        raw.write_all(&bytes).unwrap();
        let got = read_at_least(&mut raw, expected.len());
        assert_eq!(String::from_utf8_lossy(&got), expected, "{name}");
        assert!(is_closed(&mut raw), "{name}: connection should close");
        assert_eq!(
            cmd(&mut bystander, &["GET", "safe"]).unwrap(),
            Value::BulkString(b"1".to_vec()),
            "{name}"
        );
    }

    // Random bytes: an error or a close, never a crash.
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..20 {
        let noise: Vec<u8> = (0..512)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect();
        let mut raw = server.raw();
        let _ = raw.write_all(&noise);
        // End our side: the server must answer or close rather than wait forever.
        let _ = raw.shutdown(std::net::Shutdown::Write);
        let _ = read_at_least(&mut raw, usize::MAX);
    }

    // A truncated frame followed by a disconnect leaves nothing behind.
    {
        let mut raw = server.raw();
        raw.write_all(b"*3\r\n$3\r\nSET\r\n$4\r\ntrun").unwrap();
    }
    // A frame over a lowered limit is refused.
    cmd(
        &mut bystander,
        &["CONFIG", "SET", "proto-max-bulk-len", "2048"],
    )
    .unwrap();
    let mut raw = server.raw();
    raw.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4096\r\n")
        .unwrap();
    let got = read_at_least(&mut raw, 10);
    assert!(
        String::from_utf8_lossy(&got).starts_with("-ERR Protocol error: invalid bulk length"),
        "{got:?}"
    );
    cmd(
        &mut bystander,
        &["CONFIG", "SET", "proto-max-bulk-len", "512mb"],
    )
    .unwrap();

    assert_eq!(
        cmd(&mut bystander, &["EXISTS", "trun"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(
        cmd(&mut bystander, &["GET", "safe"]).unwrap(),
        Value::BulkString(b"1".to_vec())
    );
    assert_serving(&server);
}

#[test]
fn a_stalled_client_does_not_stall_others() {
    let server = Server::start(&[]);
    // Half a frame, never finished.
    let mut stalled = server.raw();
    stalled
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\nabc")
        .unwrap();
    // A client that pipelines a lot and never reads its replies.
    let mut deaf = server.raw();
    let flood: Vec<u8> = (0..20_000)
        .flat_map(|_| b"*1\r\n$4\r\nPING\r\n".to_vec())
        .collect();
    deaf.write_all(&flood).unwrap();
    let started = std::time::Instant::now();
    let mut c = server.client();
    for i in 0..100 {
        cmd(&mut c, &["SET", "k", &i.to_string()]).unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        cmd(&mut c, &["GET", "k"]).unwrap(),
        Value::BulkString(b"99".to_vec())
    );
}

/// A write larger than one log entry may hold is refused with an error naming the limit; the
/// key is untouched and the server keeps serving (smaller large values still work).
#[test]
fn a_write_larger_than_a_log_entry_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferrite.toml");
    std::fs::write(&config, "[cluster]\nmax_entry_bytes = 1048576\n").unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    let mut c = server.client();
    let big = "x".repeat(1 << 20);
    let refused = cmd(&mut c, &["SET", "k", &big]).unwrap_err();
    let line = format!("{refused}");
    assert!(
        line.contains("more than one log entry may hold (cluster.max_entry_bytes = 1048576)"),
        "{line}"
    );
    assert_eq!(cmd(&mut c, &["GET", "k"]).unwrap(), Value::Nil);
    let fits = "x".repeat(1000 * 1000);
    assert_eq!(cmd(&mut c, &["SET", "k", &fits]).unwrap(), Value::Okay);
    assert_eq!(
        cmd(&mut c, &["STRLEN", "k"]).unwrap(),
        Value::Int(1000 * 1000)
    );
    assert_serving(&server);
}
