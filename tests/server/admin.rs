//! Transactions and the server's own commands (INFO, CONFIG, COMMAND, CLIENT, TIME...)
//! through a real client.

use redis::Value;

use ferrite_testkit::{Server, cmd, err, roundtrip};

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

#[test]
fn transactions_are_atomic_and_watch_aborts() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let mut other = server.client();
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("tx")
        .cmd("INCRBY")
        .arg("tx")
        .arg(10)
        .query(&mut c)
        .unwrap();
    assert_eq!((a, b), (1, 11));

    // Errors inside EXEC are per command; the rest still applies (checked on the raw wire,
    // since the redis crate turns an array holding an error into an error).
    cmd(&mut c, &["SET", "s", "text"]).unwrap();
    let mut raw = server.raw();
    let request = b"*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$1\r\ns\r\n*3\r\n$3\r\nSET\r\n$8\r\n{s}after\r\n$1\r\n1\r\n*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nEXEC\r\n";
    let expected = "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n-ERR value is not an integer or out of range\r\n+OK\r\n+PONG\r\n";
    let got = roundtrip(&mut raw, request, expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
    assert_eq!(cmd(&mut c, &["GET", "{s}after"]).unwrap(), bulk("1"));

    // A refused command while queueing aborts the whole transaction.
    cmd(&mut c, &["MULTI"]).unwrap();
    cmd(&mut c, &["SET", "never", "1"]).unwrap();
    assert_eq!(
        err(&mut c, &["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err(&mut c, &["EXEC"]),
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(cmd(&mut c, &["EXISTS", "never"]).unwrap(), Value::Int(0));

    // WATCH: a change by another client makes EXEC return nil and apply nothing.
    cmd(&mut c, &["WATCH", "w"]).unwrap();
    cmd(&mut other, &["SET", "w", "changed"]).unwrap();
    cmd(&mut c, &["MULTI"]).unwrap();
    cmd(&mut c, &["SET", "w", "mine"]).unwrap();
    assert_eq!(cmd(&mut c, &["EXEC"]).unwrap(), Value::Nil);
    assert_eq!(cmd(&mut c, &["GET", "w"]).unwrap(), bulk("changed"));
    // Unchanged watched keys let EXEC through.
    cmd(&mut c, &["WATCH", "w"]).unwrap();
    cmd(&mut c, &["MULTI"]).unwrap();
    cmd(&mut c, &["SET", "w", "mine"]).unwrap();
    assert_eq!(
        cmd(&mut c, &["EXEC"]).unwrap(),
        Value::Array(vec![Value::Okay])
    );
    // A watched key that is deleted and recreated also aborts.
    cmd(&mut c, &["WATCH", "w"]).unwrap();
    cmd(&mut other, &["DEL", "w"]).unwrap();
    cmd(&mut other, &["SET", "w", "mine"]).unwrap();
    cmd(&mut c, &["MULTI"]).unwrap();
    cmd(&mut c, &["GET", "w"]).unwrap();
    assert_eq!(cmd(&mut c, &["EXEC"]).unwrap(), Value::Nil);

    assert_eq!(err(&mut c, &["EXEC"]), "ERR EXEC without MULTI");
    assert_eq!(err(&mut c, &["DISCARD"]), "ERR DISCARD without MULTI");
    cmd(&mut c, &["MULTI"]).unwrap();
    assert_eq!(err(&mut c, &["MULTI"]), "ERR MULTI calls can not be nested");
    assert_eq!(
        err(&mut c, &["WATCH", "x"]),
        "ERR WATCH inside MULTI is not allowed"
    );
    cmd(&mut c, &["SET", "discarded", "1"]).unwrap();
    assert_eq!(cmd(&mut c, &["DISCARD"]).unwrap(), Value::Okay);
    assert_eq!(
        cmd(&mut c, &["EXISTS", "discarded"]).unwrap(),
        Value::Int(0)
    );
}

#[test]
fn server_commands() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query(&mut c)
        .unwrap();
    assert_eq!(config, ["save", ""]);
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query(&mut c)
        .unwrap();
    assert_eq!(config, ["appendonly", "no"]);
    assert_eq!(
        cmd(&mut c, &["CONFIG", "SET", "maxclients", "500"]).unwrap(),
        Value::Okay
    );
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclient*")
        .query(&mut c)
        .unwrap();
    assert_eq!(config, ["maxclients", "500"]);
    assert_eq!(
        err(&mut c, &["CONFIG", "SET", "port", "1"]),
        "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config"
    );
    assert_eq!(
        err(&mut c, &["CONFIG", "SET", "nosuch", "1"]),
        "ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'"
    );
    assert_eq!(
        err(&mut c, &["CONFIG", "FOO"]),
        "ERR unknown subcommand 'FOO'. Try CONFIG HELP."
    );
    assert_eq!(
        err(&mut c, &["CONFIG", "GET"]),
        "ERR wrong number of arguments for 'config|get' command"
    );
    assert_eq!(
        cmd(&mut c, &["CONFIG", "SET", "loglevel", "debug"]).unwrap(),
        Value::Okay
    );
    assert_eq!(cmd(&mut c, &["CONFIG", "RESETSTAT"]).unwrap(), Value::Okay);

    let info: String = redis::cmd("INFO").query(&mut c).unwrap();
    for needle in [
        "# Server",
        "redis_version:",
        "# Clients",
        "connected_clients:1",
        "# Memory",
        "# Stats",
        "# Replication",
        "role:master",
        "# Cluster",
        "cluster_enabled:1",
        "# Keyspace",
        "# Errorstats",
    ] {
        assert!(info.contains(needle), "INFO lacks {needle}: {info}");
    }
    cmd(&mut c, &["SET", "k", "v"]).unwrap();
    let _ = cmd(&mut c, &["INCR", "k"]);
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .arg("errorstats")
        .arg("keyspace")
        .query(&mut c)
        .unwrap();
    assert!(info.contains("cmdstat_set:calls=1,"), "{info}");
    assert!(
        info.contains("cmdstat_incr:calls=1,") && info.contains("failed_calls=1"),
        "{info}"
    );
    assert!(info.contains("errorstat_ERR:count=1"), "{info}");
    assert!(info.contains("db0:keys=1,expires=0"), "{info}");
    assert!(
        !info.contains("# Server"),
        "only the asked sections: {info}"
    );

    let Value::Array(time) = cmd(&mut c, &["TIME"]).unwrap() else {
        panic!()
    };
    assert_eq!(time.len(), 2);

    let Value::Int(count) = cmd(&mut c, &["COMMAND", "COUNT"]).unwrap() else {
        panic!()
    };
    assert!(count > 80);
    let Value::Array(info) = cmd(&mut c, &["COMMAND", "INFO", "get", "mset", "nosuch"]).unwrap()
    else {
        panic!()
    };
    let Value::Array(get) = &info[0] else {
        panic!()
    };
    assert_eq!(get.len(), 10);
    assert_eq!(&get[..2], &[bulk("get"), Value::Int(2)]);
    assert_eq!(&get[3..6], &[Value::Int(1), Value::Int(1), Value::Int(1)]);
    let Value::Array(mset) = &info[1] else {
        panic!()
    };
    assert_eq!(&mset[1..2], &[Value::Int(-3)]);
    assert_eq!(&mset[3..6], &[Value::Int(1), Value::Int(-1), Value::Int(2)]);
    assert_eq!(info[2], Value::Nil);
    assert_eq!(
        cmd(&mut c, &["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"]).unwrap(),
        Value::Array(vec![bulk("a"), bulk("b")])
    );
    assert_eq!(
        err(&mut c, &["COMMAND", "GETKEYS", "PING", "x"]),
        "ERR The command has no key arguments"
    );
    let Value::Array(list) =
        cmd(&mut c, &["COMMAND", "LIST", "FILTERBY", "PATTERN", "h*"]).unwrap()
    else {
        panic!()
    };
    assert!(list.contains(&bulk("hset")) && !list.contains(&bulk("get")));
    assert!(
        matches!(cmd(&mut c, &["COMMAND", "DOCS", "get"]).unwrap(), Value::Array(v) if v.len() == 2)
    );
    let Value::Array(all) = cmd(&mut c, &["COMMAND"]).unwrap() else {
        panic!()
    };
    assert_eq!(all.len() as i64, count);

    assert_eq!(
        cmd(&mut c, &["CLIENT", "SETNAME", "tester"]).unwrap(),
        Value::Okay
    );
    assert_eq!(cmd(&mut c, &["CLIENT", "GETNAME"]).unwrap(), bulk("tester"));
    assert_eq!(
        err(&mut c, &["CLIENT", "SETNAME", "has space"]),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    assert_eq!(
        cmd(&mut c, &["CLIENT", "SETINFO", "LIB-NAME", "mylib"]).unwrap(),
        Value::Okay
    );
    let Value::Int(id) = cmd(&mut c, &["CLIENT", "ID"]).unwrap() else {
        panic!()
    };
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    assert!(
        list.contains(&format!("id={id} "))
            && list.contains("name=tester")
            && list.contains("lib-name=mylib"),
        "{list}"
    );
    assert!(list.ends_with('\n'));
    let me: String = redis::cmd("CLIENT").arg("INFO").query(&mut c).unwrap();
    assert!(me.starts_with(&format!("id={id} ")), "{me}");
    assert_eq!(cmd(&mut c, &["SELECT", "0"]).unwrap(), Value::Okay);
    assert_eq!(
        err(&mut c, &["SELECT", "1"]),
        "ERR DB index is out of range"
    );
    assert_eq!(cmd(&mut c, &["ECHO", "hi"]).unwrap(), bulk("hi"));
    assert_eq!(cmd(&mut c, &["PING", "x"]).unwrap(), bulk("x"));
}
