//! Synchronous work off the async worker.
//!
//! Long work (building or restoring a snapshot, compiling a module at apply): on a
//! multi-threaded runtime the worker first hands its other tasks (clients, Raft heartbeats) to
//! another thread (`block_in_place`); on a current-thread runtime (the simulation, where a
//! second thread would make timing nondeterministic) the work simply runs.
//!
//! Long read-only function calls: the server runs one async worker, since a request that
//! crosses threads pays for the wake-ups, which cost more than a short command. The other
//! command threads are [`Helpers`]: a read-only call long enough to pay for a hand-off goes
//! to a helper that is free; when none is, it is queued all the same, and its own task, after
//! letting the worker serve the other clients that are ready, runs it itself unless a helper
//! has taken it by then (a call next in line waits up to 1 ms for one). So with every
//! thread busy a helper that ends a call takes the next one at once, and the worker runs the
//! rest.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

/// How long a call next in line for a helper waits for one before its own task runs it.
const NEXT_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Native stack a thread that runs WebAssembly calls needs besides a call's own.
pub const HOST_STACK_BYTES: usize = 2 * 1024 * 1024;

/// Runs `work`, keeping the calling worker's other tasks running meanwhile.
pub fn off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Threads besides the async worker that run long read-only calls. The threads end once this
/// is dropped.
#[derive(Debug)]
pub struct Helpers {
    shared: Arc<Shared>,
    count: usize,
    /// The task (a client's connection) that began the last long call, and when.
    last_long: Mutex<Option<(tokio::task::Id, std::time::Instant)>>,
}

/// How recently another client's long call must have begun for calls to count as concurrent.
const CONCURRENT_WITHIN: std::time::Duration = std::time::Duration::from_millis(1);

/// A call waiting for a thread: whoever takes it first runs it.
type Job = Arc<dyn Runnable>;

trait Runnable: Send + Sync {
    /// Runs the work unless someone took it already (then false), calling `done` between
    /// the work's end and its answer.
    fn run(&self, done: &dyn Fn()) -> bool;
}

/// Work and where its result goes, until taken.
struct Call<F, T>(Mutex<Option<(F, oneshot::Sender<T>)>>);

impl<F: FnOnce() -> T + Send, T: Send> Runnable for Call<F, T> {
    fn run(&self, done: &dyn Fn()) -> bool {
        let taken = self.0.lock().take();
        let Some((work, answer)) = taken else {
            return false;
        };
        let value = work();
        done();
        let _ = answer.send(value);
        true
    }
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Calls the helpers ran (`WASM.STATS`).
    ran: AtomicU64,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Helpers free for a job: waiting for one, or done with their last and about to look.
    idle: usize,
    closed: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Helpers {
    /// Starts `count` helper threads, each with `stack_bytes` of stack.
    pub fn start(count: usize, stack_bytes: usize) -> std::io::Result<Helpers> {
        let shared = Arc::new(Shared::default());
        shared.queue.lock().idle = count;
        for i in 0..count {
            let serving = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ferrite-helper-{i}"))
                .stack_size(stack_bytes)
                .spawn(move || serving.serve());
            if let Err(e) = spawned {
                // The helpers started so far end rather than wait for work forever.
                shared.queue.lock().closed = true;
                shared.ready.notify_all();
                return Err(e);
            }
        }
        Ok(Helpers {
            shared,
            count,
            last_long: Mutex::new(None),
        })
    }

    /// Notes that the calling task begins a long call, and tells whether another task began
    /// one within the last millisecond: whether long calls come from more than one client,
    /// so that a hand-off lets the worker serve one while a helper runs another.
    pub fn others_calling(&self) -> bool {
        let now = std::time::Instant::now();
        let Some(me) = tokio::task::try_id() else {
            return false;
        };
        let mut last = self.last_long.lock();
        let others = last.is_some_and(|(task, at)| task != me && now - at < CONCURRENT_WITHIN);
        *last = Some((me, now));
        others
    }

    /// How many there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Calls the helper threads ran.
    pub fn ran(&self) -> u64 {
        self.shared.ran.load(Ordering::Relaxed)
    }

    /// Runs `work` on a helper thread and returns its result, or gives `work` back to be run
    /// by the caller when no helper took it once the worker has served the other tasks ready
    /// now. Without helpers, or on a current-thread runtime, it is given back at once.
    pub async fn hand_off<T, F>(&self, work: F) -> Result<T, F>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if self.count == 0 || !multi {
            return Err(work);
        }
        let (answer, mut answered) = oneshot::channel();
        let call = Arc::new(Call(Mutex::new(Some((work, answer)))));
        let helper_free = {
            let mut queue = self.shared.queue.lock();
            // A helper is free for this call if more are free than calls are queued before it.
            let free = queue.idle > queue.jobs.len();
            queue.jobs.push_back(call.clone());
            free
        };
        self.shared.ready.notify_one();
        if !helper_free {
            // The clients whose requests are ready go first; a helper that ends its call
            // meanwhile takes this one.
            tokio::task::yield_now().await;
            let queued: Job = call.clone();
            let next =
                (self.shared.queue.lock().jobs.front()).is_some_and(|j| Arc::ptr_eq(j, &queued));
            // Next in line: a helper takes it as soon as it ends its call, unless that call
            // runs on past a short wait. (A helper that takes most calls leaves the worker
            // more time for the clients' requests than sharing them evenly would.)
            if next && let Ok(answer) = tokio::time::timeout(NEXT_WAIT, &mut answered).await {
                return Ok(helper_answer(answer));
            }
            let mine = call.0.lock().take();
            if let Some((work, _)) = mine {
                let mut queue = self.shared.queue.lock();
                queue.jobs.retain(|job| !Arc::ptr_eq(job, &queued));
                return Err(work);
            }
        }
        Ok(helper_answer(answered.await))
    }
}

/// A helper's answer; a call that panicked on the helper panics its caller too, as it would
/// have where it was called.
fn helper_answer<T>(answer: Result<T, oneshot::error::RecvError>) -> T {
    match answer {
        Ok(value) => value,
        Err(_) => panic!("a call on a helper thread panicked"),
    }
}

impl Shared {
    fn serve(&self) {
        loop {
            let job = {
                let mut queue = self.queue.lock();
                loop {
                    if queue.closed {
                        return;
                    }
                    if let Some(job) = queue.jobs.pop_front() {
                        queue.idle -= 1;
                        break job;
                    }
                    self.ready.wait(&mut queue);
                }
            };
            // Free again before the answer goes out: the caller's next call, made as soon as
            // it has this answer, finds this helper free.
            let free = || self.queue.lock().idle += 1;
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(&free)));
            match ran {
                Ok(true) => {
                    self.ran.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => free(),
                // The caller is answered by its dropped sender; the helper lives on.
                Err(_) => free(),
            }
        }
    }
}

impl Drop for Helpers {
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(helpers: &Helpers) -> usize {
        helpers.shared.queue.lock().idle
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_call_goes_to_a_free_helper_else_runs_on_its_own_task() {
        let helpers = Arc::new(Helpers::start(1, 1 << 20).unwrap());
        let name = || std::thread::current().name().map(str::to_owned);
        let ran = helpers.hand_off(name).await.ok().flatten();
        assert_eq!(ran.as_deref(), Some("ferrite-helper-0"));
        // The helper marked itself free before it answered.
        assert_eq!(idle(&helpers), 1);
        // The helper busy until released: the next call runs on this task's own thread.
        let (started, wait) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let busy = {
            let helpers = helpers.clone();
            tokio::spawn(async move {
                helpers
                    .hand_off(move || {
                        started.send(()).unwrap();
                        released.recv().unwrap();
                        name()
                    })
                    .await
            })
        };
        wait.recv().unwrap();
        assert!(helpers.hand_off(|| 2).await.is_err());
        release.send(()).unwrap();
        let ran = busy.await.unwrap().ok().flatten();
        assert_eq!(ran.as_deref(), Some("ferrite-helper-0"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn long_calls_count_as_concurrent_only_from_two_tasks() {
        let helpers = Arc::new(Helpers::start(1, 1 << 20).unwrap());
        let call = |helpers: Arc<Helpers>| tokio::spawn(async move { helpers.others_calling() });
        let one = helpers.clone();
        let alone = tokio::spawn(async move {
            // The same task again and again: one client.
            (
                one.others_calling(),
                one.others_calling(),
                one.others_calling(),
            )
        });
        assert_eq!(alone.await.unwrap(), (false, false, false));
        // Another task right after: two clients.
        assert!(call(helpers.clone()).await.unwrap());
        // Long after the last one: alone again.
        tokio::time::sleep(CONCURRENT_WITHIN * 3).await;
        assert!(!call(helpers.clone()).await.unwrap());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_current_thread_runtime_runs_everything_itself() {
        let helpers = Helpers::start(2, 1 << 20).unwrap();
        assert!(helpers.hand_off(|| 1).await.is_err());
        assert_eq!(helpers.ran(), 0);
    }
}
