//! openraft's async runtime: tokio, except for the random numbers behind election timeouts,
//! which come from a per-thread generator that a simulation can seed ([`seed_rng`]), so a
//! turmoil run replays exactly (in a server the generator starts at a random point), and the
//! clock, which is this node's own (`local_time.rs`).

use std::cell::Cell;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use openraft::OptionalSend;
use openraft::async_runtime::{AsyncRuntime, TokioOneShotSender};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::local_time::{LocalInstant, sleep_local, tokio_span};

thread_local! {
    static RNG_STATE: Cell<u64> = Cell::new({
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0);
        hasher.finish()
    });
}

/// Seeds this thread's generator for election timeouts (simulations call it before starting
/// their hosts; turmoil runs every host on one thread).
pub fn seed_rng(seed: u64) {
    RNG_STATE.with(|s| s.set(seed));
}

/// A number from this thread's generator (the one [`seed_rng`] seeds): election timeouts and
/// the seeds random commands carry draw from it, so a seeded simulation replays both.
pub fn next_random() -> u64 {
    let state = RNG_STATE.with(|s| {
        let next = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(next);
        next
    });
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// tokio with a seedable generator.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct FerriteRuntime;

impl AsyncRuntime for FerriteRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = LocalInstant;
    type TimeoutError = tokio::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = tokio::time::Timeout<T>;
    type ThreadLocalRng = SmallRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        sleep_local(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline.to_tokio())
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout(tokio_span(duration), future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout_at(deadline.to_tokio(), future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        // Each call advances the thread's state, so successive draws differ.
        let seed = RNG_STATE.with(|s| {
            let next = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            s.set(next);
            next
        });
        SmallRng::seed_from_u64(seed)
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (TokioOneShotSender(tx), rx)
    }
}
