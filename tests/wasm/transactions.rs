//! Calls inside MULTI: they run where they were queued, between the other commands, as one
//! atomic step.

use super::*;

fn exec(c: &mut redis::Connection, commands: &[&[&str]]) -> Value {
    assert_eq!(cmd(c, &["MULTI"]).unwrap(), Value::Okay);
    for command in commands {
        let queued = cmd(c, command).unwrap_or_else(|e| panic!("{command:?}: {e}"));
        assert_eq!(queued, Value::SimpleString("QUEUED".into()));
    }
    cmd(c, &["EXEC"]).unwrap()
}

#[test]
fn calls_inside_multi_run_in_order_with_the_other_commands() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "p", "probe.wat", &["PERMISSIONS", "READ", "WRITE"]).unwrap();
    let replies = exec(
        &mut c,
        &[
            &["SET", "{t}a", "10"],
            &["FCALL", "p.incr", "1", "{t}a"],
            &["GET", "{t}a"],
            &["FCALL_RO", "p.get_via_call", "1", "{t}a"],
            &["SET", "{t}a", "20"],
            &["WASM.CALL_RO", "p.get_via_call", "KEYS", "{t}a"],
            &["WASM.CALL", "p.incr", "KEYS", "{t}a"],
            &["PING"],
        ],
    );
    assert_eq!(
        replies,
        Value::Array(vec![
            Value::Okay,
            Value::Int(11),
            bulk("11"),
            bulk("11"),
            Value::Okay,
            bulk("20"),
            Value::Int(21),
            Value::SimpleString("PONG".into()),
        ])
    );
    assert_eq!(cmd(&mut c, &["GET", "{t}a"]).unwrap(), bulk("21"));

    // A call's own error is its reply; the commands around it run (on the raw wire: the
    // redis crate turns an array holding an error into an error).
    let mut raw = server.raw();
    let request = b"*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$4\r\n{t}a\r\n$3\r\nabc\r\n*4\r\n$5\r\nFCALL\r\n$6\r\np.incr\r\n$1\r\n1\r\n$4\r\n{t}a\r\n*2\r\n$3\r\nGET\r\n$4\r\n{t}a\r\n*1\r\n$4\r\nEXEC\r\n";
    let expected = "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n-ERR value is not an integer or out of range\r\n$3\r\nabc\r\n";
    let got = ferrite_testkit::roundtrip(&mut raw, request, expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
    assert_eq!(cmd(&mut c, &["GET", "{t}a"]).unwrap(), bulk("abc"));
}

#[test]
fn a_watched_key_that_changed_keeps_the_calls_from_running() {
    let server = Server::start(&[]);
    let (mut c, mut other) = (server.client(), server.client());
    load(&mut c, "p", "probe.wat", &["PERMISSIONS", "READ", "WRITE"]).unwrap();
    cmd(&mut c, &["SET", "{t}a", "1"]).unwrap();
    cmd(&mut c, &["WATCH", "{t}a"]).unwrap();
    cmd(&mut other, &["SET", "{t}a", "5"]).unwrap();
    let replies = exec(&mut c, &[&["FCALL", "p.incr", "1", "{t}a"]]);
    assert_eq!(replies, Value::Nil);
    assert_eq!(cmd(&mut c, &["GET", "{t}a"]).unwrap(), bulk("5"));
    // Unwatched, the same transaction runs.
    let replies = exec(&mut c, &[&["FCALL", "p.incr", "1", "{t}a"]]);
    assert_eq!(replies, Value::Array(vec![Value::Int(6)]));
}

#[test]
fn keys_of_calls_and_commands_in_multi_share_one_slot() {
    let server = Server::start(&[]);
    let mut c = server.client();
    load(&mut c, "p", "probe.wat", &["PERMISSIONS", "READ", "WRITE"]).unwrap();
    assert_eq!(cmd(&mut c, &["MULTI"]).unwrap(), Value::Okay);
    cmd(&mut c, &["SET", "{t}a", "1"]).unwrap();
    cmd(&mut c, &["FCALL", "p.incr", "1", "{u}b"]).unwrap();
    assert_eq!(
        err(&mut c, &["EXEC"]),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
    assert_eq!(cmd(&mut c, &["GET", "{t}a"]).unwrap(), Value::Nil);
}
