//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET, CLIENT.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{CommandError, REDIS_COMPAT_VERSION, Session, Shared};
use crate::args::{Args, is, parse_i64, text};
use crate::command_table::Connection;
use crate::reply::Reply;

pub(super) fn execute(
    shared: &Shared,
    session: &mut Session,
    command: Connection,
    argv: &[Bytes],
) -> Result<Reply, CommandError> {
    let args = &argv[1..];
    match command {
        Connection::Ping => match args {
            [] => Ok(Reply::Status("PONG".to_owned())),
            [message] => Ok(Reply::Bulk(message.clone())),
            _ => Err(CommandError::WrongArity("ping".to_owned())),
        },
        Connection::Echo => Ok(Reply::Bulk(args[0].clone())),
        Connection::Hello => hello(shared, session, args),
        Connection::Auth => {
            let (user, password) = match args {
                [password] => (None, password),
                [user, password] => (Some(user), password),
                _ => return Err(CommandError::Syntax),
            };
            authenticate(shared, session, user.map(|u| u.as_ref()), password)?;
            Ok(Reply::ok())
        }
        Connection::Select => match parse_i64(&args[0]) {
            Some(0) => Ok(Reply::ok()),
            Some(_) => Err(CommandError::DbIndexOutOfRange),
            None => Err(CommandError::NotInteger),
        },
        Connection::Quit => {
            session.close = true;
            Ok(Reply::ok())
        }
        Connection::Reset => {
            session.multi = None;
            session.multi_failed = false;
            session.watches.clear();
            session.resp3 = false;
            session.client.resp3.store(false, Ordering::Relaxed);
            session.client.in_multi.store(false, Ordering::Relaxed);
            session.client.name.lock().clear();
            session.authenticated = shared.config.read().server.requirepass.is_empty();
            Ok(Reply::Status("RESET".to_owned()))
        }
        Connection::Client => client(shared, session, args),
    }
}

/// Checks a password (and user, which must be `default`) against `requirepass`.
fn authenticate(
    shared: &Shared,
    session: &mut Session,
    user: Option<&[u8]>,
    password: &[u8],
) -> Result<(), CommandError> {
    let required = shared.config.read().server.requirepass.clone();
    if required.is_empty() && user.is_none() {
        return Err(CommandError::NoPasswordSet);
    }
    let user_ok = user.is_none_or(|u| u == b"default");
    // With no password configured, the default user accepts any password (Redis's nopass).
    if user_ok && (required.is_empty() || constant_time_eq(password, required.as_bytes())) {
        session.authenticated = true;
        Ok(())
    } else {
        Err(CommandError::WrongPass)
    }
}

/// Compares without an early exit, so response time does not reveal a matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hello(shared: &Shared, session: &mut Session, args: &[Bytes]) -> Result<Reply, CommandError> {
    let mut args = Args::new(args);
    let mut resp3 = session.resp3;
    if let Some(version) = args.next_arg() {
        resp3 = match parse_i64(version) {
            Some(2) => false,
            Some(3) => true,
            Some(_) => return Err(CommandError::NoProto),
            None => return Err(CommandError::ProtocolNotInteger),
        };
    }
    let mut credentials = None;
    let mut name = None;
    while let Some(option) = args.next_arg() {
        if is(option, "AUTH") && args.remaining() >= 2 {
            credentials = Some((args.take(), args.take()));
        } else if is(option, "SETNAME") && args.remaining() >= 1 {
            name = Some(args.take());
        } else {
            return Err(CommandError::HelloOption(text(option)));
        }
    }
    if let Some((user, password)) = credentials {
        authenticate(shared, session, Some(&user), &password)?;
    }
    if !session.authenticated {
        return Err(CommandError::HelloNoAuth);
    }
    if let Some(name) = name {
        set_name(session, &name)?;
    }
    session.resp3 = resp3;
    session.client.resp3.store(resp3, Ordering::Relaxed);
    let field = |k: &str, v: Reply| (Reply::bulk(k), v);
    Ok(Reply::Map(vec![
        field("server", Reply::bulk("redis")),
        field("version", Reply::bulk(REDIS_COMPAT_VERSION)),
        field("proto", Reply::Int(if resp3 { 3 } else { 2 })),
        field("id", Reply::Int(session.client.id as i64)),
        field("mode", Reply::bulk("standalone")),
        field("role", Reply::bulk("master")),
        field("modules", Reply::Array(Vec::new())),
    ]))
}

/// Client names and library names may not contain spaces or special characters.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn set_name(session: &Session, name: &[u8]) -> Result<(), CommandError> {
    if !valid_name(name) {
        return Err(CommandError::BadClientName);
    }
    *session.client.name.lock() = text(name);
    Ok(())
}

fn client(shared: &Shared, session: &mut Session, args: &[Bytes]) -> Result<Reply, CommandError> {
    let sub = args[0].to_ascii_lowercase();
    let info = &session.client;
    match sub.as_slice() {
        b"id" => Ok(Reply::Int(info.id as i64)),
        b"getname" => {
            let name = info.name.lock().clone();
            Ok(if name.is_empty() {
                Reply::Nil
            } else {
                Reply::bulk(name)
            })
        }
        b"setname" => {
            set_name(session, &args[1])?;
            Ok(Reply::ok())
        }
        b"list" => {
            if args.len() > 1
                && !(args.len() == 3 && is(&args[1], "TYPE") && is(&args[2], "normal"))
            {
                return Err(CommandError::Syntax);
            }
            Ok(Reply::Verbatim(shared.clients.list()))
        }
        b"info" => Ok(Reply::Verbatim(info.line() + "\n")),
        b"setinfo" => {
            let value = &args[2];
            if !valid_name(value) && !value.is_empty() {
                return Err(CommandError::BadClientInfo(
                    text(&args[1]).to_ascii_lowercase(),
                ));
            }
            let mut lib = info.lib.lock();
            if is(&args[1], "LIB-NAME") {
                lib.0 = text(value);
            } else if is(&args[1], "LIB-VER") {
                lib.1 = text(value);
            } else {
                return Err(CommandError::UnknownClientOption(text(&args[1])));
            }
            Ok(Reply::ok())
        }
        _ => Err(CommandError::UnknownSubcommand {
            sub: text(&args[0]),
            container: "CLIENT".to_owned(),
        }),
    }
}
