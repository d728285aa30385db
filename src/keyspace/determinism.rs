//! Property test: the keyspace is a deterministic state machine. Random sequences of commands,
//! parsed once and applied to independent keyspaces (each with its own random hash seeds), give
//! identical replies and identical states, also when the operations travel through bincode as
//! they will through the Raft log.

use bytes::Bytes;
use proptest::prelude::*;

use super::{Ctx, Keyspace, Op, ParseCtx, parse};

/// Command templates over a small key space so commands collide on the same keys and types.
fn command() -> impl Strategy<Value = Vec<String>> {
    let key = prop::sample::select(vec!["a", "b", "c", "d", "{t}x", "{t}y"]);
    let field = prop::sample::select(vec!["f1", "f2", "f3"]);
    let value = prop::sample::select(vec!["1", "-7", "2.5", "text", "", "99"]);
    let small = -3i64..6;
    (
        0usize..34,
        key.clone(),
        key,
        field,
        value,
        small,
        0u64..3,
        0usize..4,
    )
        .prop_map(|(which, k, k2, f, v, n, seed, members)| {
            let n = n.to_string();
            let members: Vec<String> = (0..=members).map(|i| format!("m{i}")).collect();
            let w = |words: &[&str]| words.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let mut cmd = match which {
                0 => w(&["set", k, v]),
                1 => w(&["set", k, v, "PX", "50"]),
                2 => w(&["set", k, v, "NX", "GET"]),
                3 => w(&["get", k]),
                4 => w(&["incrby", k, &n]),
                5 => w(&["incrbyfloat", k, v]),
                6 => w(&["append", k, v]),
                7 => w(&["del", k, k2]),
                8 => w(&["rename", k, k2]),
                9 => w(&["pexpire", k, &(n.parse::<i64>().unwrap() * 20).to_string()]),
                10 => w(&["persist", k]),
                11 => w(&["hset", k, f, v]),
                12 => w(&["hdel", k, f]),
                13 => w(&["hincrby", k, f, &n]),
                14 => w(&["hgetall", k]),
                15 => w(&["lpush", k, v, v]),
                16 => w(&["rpush", k, v]),
                17 => w(&["lpop", k]),
                18 => w(&["rpop", k, "2"]),
                19 => w(&["lrange", k, "0", "-1"]),
                20 => w(&["lrem", k, &n, v]),
                21 => w(&["ltrim", k, "1", &n]),
                22 => w(&["lset", k, &n, v]),
                23 => {
                    let mut c = w(&["sadd", k]);
                    c.extend(members);
                    c
                }
                24 => w(&["srem", k, "m1", "m2"]),
                25 => w(&["spop", k, "2"]),
                26 => w(&["smembers", k]),
                27 => w(&["mset", k, v, k2, v]),
                28 => w(&["getdel", k]),
                29 => w(&["setrange", k, "2", v]),
                30 => w(&["keys", "*"]),
                31 => w(&["scan", "0", "COUNT", "3"]),
                32 => w(&["flushall"]),
                _ => w(&["getex", k, "PX", "30"]),
            };
            cmd.push(format!("#{seed}"));
            cmd
        })
}

/// A command plus the milliseconds that pass before it.
fn script() -> impl Strategy<Value = Vec<(Vec<String>, u64)>> {
    prop::collection::vec((command(), 0u64..40), 1..120)
}

fn ops(script: &[(Vec<String>, u64)]) -> Vec<(Op, Ctx)> {
    let mut now = 1_000_000;
    let mut out = Vec::new();
    for (words, elapsed) in script {
        now += elapsed;
        let seed: u64 = words.last().unwrap()[1..].parse().unwrap();
        let args: Vec<Bytes> = words[1..words.len() - 1]
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let parse_ctx = ParseCtx { now_ms: now, seed };
        if let Some(Ok(op)) = parse(&words[0], &args, &parse_ctx) {
            out.push((op, Ctx { now_ms: now }));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn replaying_the_same_operations_gives_the_same_state(script in script()) {
        let ops = ops(&script);
        let (mut a, mut b, mut c) = (Keyspace::new(), Keyspace::new(), Keyspace::new());
        for (op, ctx) in ops {
            let encoded = bincode::serde::encode_to_vec(&op, bincode::config::standard()).unwrap();
            let (decoded, _): (Op, usize) =
                bincode::serde::decode_from_slice(&encoded, bincode::config::standard()).unwrap();
            prop_assert_eq!(&decoded, &op);
            let ra = op.clone().apply(&mut a, ctx);
            let rb = op.apply(&mut b, ctx);
            let rc = decoded.apply(&mut c, ctx);
            prop_assert_eq!(&ra, &rb);
            prop_assert_eq!(&ra, &rc);
        }
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &c);
    }
}
