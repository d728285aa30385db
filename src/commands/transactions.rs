//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! Queued data commands are parsed at EXEC time (so TTLs count from EXEC, as in Redis) and run
//! as one [`Op::Exec`]: a single atomic batch through the node's write path, which checks the
//! watched keys' versions inside the same step that applies the batch. A transaction holding
//! function calls (FCALL, WASM.CALL and their `_RO` forms) is one log entry instead, whose
//! commands and calls every member runs in order holding the keyspace
//! ([`Node::transaction`](crate::node::Node::transaction)). Queued non-data commands (PING,
//! INFO, ...) run right after the batch, their replies put back in queue order.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{CommandError, Session, Shared};
use crate::command_table::{self, CommandSpec, Handler, Transaction};
use crate::node::{self, Op, Queued};
use crate::reply::Reply;

pub(super) async fn execute(
    shared: &Shared,
    session: &mut Session,
    command: Transaction,
    argv: Vec<Bytes>,
) -> Reply {
    let result = match command {
        Transaction::Multi => multi(session),
        Transaction::Discard => match session.multi.take() {
            None => Err(CommandError::DiscardWithoutMulti),
            Some(_) => {
                end_transaction(session);
                Ok(Reply::ok())
            }
        },
        Transaction::Watch => {
            if session.multi.is_some() {
                Err(CommandError::WatchInMulti)
            } else {
                for key in &argv[1..] {
                    let token = shared.node.watch(key);
                    session.watches.push(token);
                }
                Ok(Reply::ok())
            }
        }
        Transaction::Unwatch => {
            session.watches.clear();
            Ok(Reply::ok())
        }
        Transaction::Exec => return exec(shared, session).await,
    };
    result.unwrap_or_else(Reply::error)
}

fn multi(session: &mut Session) -> Result<Reply, CommandError> {
    if session.multi.is_some() {
        return Err(CommandError::NestedMulti);
    }
    session.multi = Some(Vec::new());
    session.multi_failed = false;
    session.client.in_multi.store(true, Ordering::Relaxed);
    Ok(Reply::ok())
}

/// Leaves MULTI state and forgets the watched keys (EXEC and DISCARD both unwatch).
fn end_transaction(session: &mut Session) {
    session.multi = None;
    session.multi_failed = false;
    session.watches.clear();
    session.client.in_multi.store(false, Ordering::Relaxed);
}

/// Where a queued command's reply comes from.
enum Slot {
    /// The n-th reply of the batch.
    Batch,
    /// A reply known before the batch runs (a parse error).
    Ready(Reply),
    /// A command that is neither data nor a call, to run after the batch.
    After(&'static CommandSpec, Vec<Bytes>),
}

async fn exec(shared: &Shared, session: &mut Session) -> Reply {
    let Some(queue) = session.multi.take() else {
        return Reply::error(CommandError::ExecWithoutMulti);
    };
    let failed = session.multi_failed;
    let watches = std::mem::take(&mut session.watches);
    end_transaction(session);
    if failed {
        return Reply::error(CommandError::ExecAbort);
    }
    let ctx = shared.node.parse_ctx();
    let mut queued = Vec::new();
    let mut slots = Vec::with_capacity(queue.len());
    for argv in queue {
        let Some(spec) = command_table::lookup(&argv[0]) else {
            continue;
        };
        let parsed = match spec.handler {
            Handler::Data => match node::parse(spec.name, &argv[1..], &ctx) {
                Some(parsed) => Some(parsed.map(Queued::Op).map_err(Reply::error)),
                None => Some(Err(Reply::error(super::unknown_command(&argv)))),
            },
            Handler::Functions(command) => super::functions::queued_call(command, &argv[1..])
                .map(|parsed| parsed.map_err(Reply::error)),
            _ => None,
        };
        match parsed {
            Some(Ok(step)) => {
                queued.push(step);
                slots.push(Slot::Batch);
            }
            Some(Err(reply)) => slots.push(Slot::Ready(reply)),
            None => slots.push(Slot::After(spec, argv)),
        }
    }
    let keys = queued.iter().flat_map(|q| match q {
        Queued::Op(op) => op.keys(),
        Queued::Call { keys, .. } => keys.iter().collect(),
    });
    if let Err(e) = super::same_slot(keys) {
        return Reply::error(e);
    }
    let has_calls = queued.iter().any(|q| matches!(q, Queued::Call { .. }));
    let batch = if has_calls {
        let limits = super::functions::call_limits(shared);
        shared.node.transaction(queued, watches, ctx, limits).await
    } else {
        let ops = queued
            .into_iter()
            .filter_map(|q| match q {
                Queued::Op(op) => Some(op),
                Queued::Call { .. } => None,
            })
            .collect();
        let exec = Op::Exec { ops, watches };
        shared
            .node
            .execute(exec, &ctx, super::read_mode(shared, session))
            .await
    };
    let batch = match batch {
        Reply::Array(replies) => replies,
        // A watched key changed: nothing ran.
        other => return other,
    };
    let mut batch = batch.into_iter();
    let mut replies = Vec::with_capacity(slots.len());
    for slot in slots {
        replies.push(match slot {
            Slot::Batch => batch.next().unwrap_or(Reply::Nil),
            Slot::Ready(reply) => reply,
            Slot::After(spec, argv) => Box::pin(super::run(shared, session, spec, argv)).await,
        });
    }
    Reply::Array(replies)
}
