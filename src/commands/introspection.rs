//! `COMMAND` (COUNT, INFO, DOCS, LIST, GETKEYS): the command table rendered as Redis 7 answers,
//! which redis-py's cluster client and redis-cli route by (key specs included).

use bytes::Bytes;

use super::CommandError;
use crate::args::{is, text};
use crate::command_table::{self, COMMANDS, CommandSpec, Keys};
use crate::glob;
use crate::reply::Reply;

pub(super) fn command(args: &[Bytes]) -> Result<Reply, CommandError> {
    let Some(sub) = args.first() else {
        return Ok(Reply::Array(COMMANDS.iter().map(info).collect()));
    };
    match sub.to_ascii_lowercase().as_slice() {
        b"count" => Ok(Reply::Int(COMMANDS.len() as i64)),
        b"info" => Ok(Reply::Array(if args.len() == 1 {
            COMMANDS.iter().map(info).collect()
        } else {
            args[1..]
                .iter()
                .map(|name| command_table::lookup(name).map_or(Reply::Nil, info))
                .collect()
        })),
        b"docs" => {
            let chosen: Vec<&CommandSpec> = if args.len() == 1 {
                COMMANDS.iter().collect()
            } else {
                args[1..]
                    .iter()
                    .filter_map(|n| command_table::lookup(n))
                    .collect()
            };
            Ok(Reply::Map(
                chosen
                    .into_iter()
                    .map(|s| (Reply::bulk(s.name), docs(s)))
                    .collect(),
            ))
        }
        b"list" => {
            let names = COMMANDS.iter().map(|c| c.name);
            let filtered: Vec<&str> = match &args[1..] {
                [] => names.collect(),
                [filterby, kind, value] if is(filterby, "FILTERBY") => {
                    if is(kind, "PATTERN") {
                        names
                            .filter(|n| glob::matches(&value.to_ascii_lowercase(), n.as_bytes()))
                            .collect()
                    } else if is(kind, "ACLCAT") {
                        let cat = format!("@{}", text(value).to_ascii_lowercase());
                        COMMANDS
                            .iter()
                            .filter(|c| c.acl_categories().contains(&cat.as_str()))
                            .map(|c| c.name)
                            .collect()
                    } else if is(kind, "MODULE") {
                        Vec::new()
                    } else {
                        return Err(CommandError::Syntax);
                    }
                }
                _ => return Err(CommandError::Syntax),
            };
            Ok(Reply::Array(
                filtered.into_iter().map(Reply::bulk).collect(),
            ))
        }
        b"getkeys" => {
            let target = &args[1..];
            let spec =
                command_table::lookup(&target[0]).ok_or(CommandError::InvalidCommandSpecified)?;
            if !spec.arity_ok(target.len()) {
                return Err(CommandError::InvalidArgumentCount);
            }
            let keys = spec.keys(target);
            if keys.is_empty() {
                return Err(CommandError::NoKeyArguments);
            }
            Ok(Reply::Array(
                keys.into_iter().map(|k| Reply::Bulk(k.clone())).collect(),
            ))
        }
        _ => Err(CommandError::UnknownSubcommand {
            sub: text(sub),
            container: "COMMAND".to_owned(),
        }),
    }
}

fn status(s: &str) -> Reply {
    Reply::Status(s.to_owned())
}

/// A command's `COMMAND INFO` entry: all ten fields, as redis-py's parser requires once an
/// entry has more than seven.
fn info(spec: &CommandSpec) -> Reply {
    let (first, last, step) = spec.keys.positions();
    Reply::Array(vec![
        Reply::bulk(spec.name),
        Reply::Int(spec.arity as i64),
        Reply::Set(spec.shown_flags().names().map(status).collect()),
        Reply::Int(first as i64),
        Reply::Int(last as i64),
        Reply::Int(step as i64),
        Reply::Set(spec.acl_categories().into_iter().map(status).collect()),
        Reply::Array(Vec::new()),
        key_specs(spec),
        Reply::Array(spec.subcommands.iter().map(info).collect()),
    ])
}

/// A command's `COMMAND DOCS` entry.
fn docs(spec: &CommandSpec) -> Reply {
    let mut fields = vec![
        (Reply::bulk("summary"), Reply::bulk(spec.summary)),
        (Reply::bulk("since"), Reply::bulk(spec.since)),
        (Reply::bulk("group"), Reply::bulk(spec.group.doc_name())),
    ];
    if !spec.subcommands.is_empty() {
        fields.push((
            Reply::bulk("subcommands"),
            Reply::Map(
                spec.subcommands
                    .iter()
                    .map(|s| (Reply::bulk(s.name), docs(s)))
                    .collect(),
            ),
        ));
    }
    Reply::Map(fields)
}

fn map(pairs: Vec<(&str, Reply)>) -> Reply {
    Reply::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Reply::bulk(k), v))
            .collect(),
    )
}

/// The Redis 7 key specification of a command.
fn key_specs(spec: &CommandSpec) -> Reply {
    let write = spec.is_write();
    let (flags, begin, find): (&[&str], Reply, Reply) = match spec.keys {
        Keys::None => return Reply::Array(Vec::new()),
        Keys::Range { first, last, step } => (
            if write {
                &["RW", "update"]
            } else {
                &["RO", "access"]
            },
            map(vec![
                ("type", Reply::bulk("index")),
                ("spec", map(vec![("index", Reply::Int(first as i64))])),
            ]),
            map(vec![
                ("type", Reply::bulk("range")),
                (
                    "spec",
                    map(vec![
                        (
                            "lastkey",
                            Reply::Int(if last < 0 {
                                last as i64
                            } else {
                                (last - first) as i64
                            }),
                        ),
                        ("keystep", Reply::Int(step as i64)),
                        ("limit", Reply::Int(0)),
                    ]),
                ),
            ]),
        ),
        Keys::Numkeys(at) => (
            if write {
                &["RW", "access", "update"]
            } else {
                &["RO", "access"]
            },
            map(vec![
                ("type", Reply::bulk("index")),
                ("spec", map(vec![("index", Reply::Int(at as i64))])),
            ]),
            map(vec![
                ("type", Reply::bulk("keynum")),
                (
                    "spec",
                    map(vec![
                        ("keynumidx", Reply::Int(0)),
                        ("firstkey", Reply::Int(1)),
                        ("keystep", Reply::Int(1)),
                    ]),
                ),
            ]),
        ),
        Keys::KeysKeyword => (
            if write {
                &["RW", "access", "update"]
            } else {
                &["RO", "access"]
            },
            map(vec![
                ("type", Reply::bulk("keyword")),
                (
                    "spec",
                    map(vec![
                        ("keyword", Reply::bulk("KEYS")),
                        ("startfrom", Reply::Int(2)),
                    ]),
                ),
            ]),
            map(vec![
                ("type", Reply::bulk("unknown")),
                ("spec", map(Vec::new())),
            ]),
        ),
    };
    Reply::Array(vec![map(vec![
        (
            "flags",
            Reply::Set(flags.iter().map(|f| status(f)).collect()),
        ),
        ("begin_search", begin),
        ("find_keys", find),
    ])])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_info_has_ten_fields() {
        for spec in COMMANDS {
            let Reply::Array(fields) = info(spec) else {
                panic!()
            };
            assert_eq!(fields.len(), 10, "{}", spec.name);
        }
    }
}
