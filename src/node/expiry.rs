//! Active expiry: on the leader, keys found expired are removed through the log
//! (`PurgeExpired`), so removal is an operation like any other and every member removes the
//! same keys at the same point of the log.

use std::time::Duration;

use futures_util::FutureExt;
use tracing::debug;

use super::Node;
use crate::keyspace::Op;
use crate::reply::Reply;

/// Most expired keys removed by one purge operation.
const PURGE_BATCH: usize = 200;
/// Most purge operations per expiry tick, so a mass expiry cannot monopolise the write path.
const PURGE_ROUNDS_PER_TICK: usize = 16;

impl Node {
    /// One round of active expiry, on the leader only: finds keys that have expired and removes
    /// them through the log. Returns how many were removed.
    pub async fn expire_cycle(&self) -> usize {
        if !self.is_leader() {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..PURGE_ROUNDS_PER_TICK {
            let ctx = self.parse_ctx();
            let (keys, next) = {
                let cursor = *self.expire_cursor.lock();
                self.state
                    .keyspace()
                    .expired_keys(cursor, PURGE_BATCH, ctx.now_ms)
            };
            *self.expire_cursor.lock() = next;
            let found = keys.len();
            if found > 0
                && let Reply::Int(n) = self
                    .execute(Op::PurgeExpired { keys }, &ctx, self.linearizable())
                    .await
            {
                removed += n as usize;
            }
            if found < PURGE_BATCH && next == 0 {
                break;
            }
        }
        if removed > 0 {
            debug!(removed, "active expiry");
        }
        removed
    }

    /// Runs the expiry cycle every `period` until `shutdown` fires.
    pub async fn run_expiry(
        &self,
        period: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => { self.expire_cycle().await; }
                _ = shutdown.wait_for(|stop| *stop).map(drop) => return,
            }
        }
    }
}
