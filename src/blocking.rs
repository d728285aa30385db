//! Long synchronous work on an async worker: building or restoring a snapshot, compiling a
//! module at apply. On a multi-threaded runtime the worker first hands its other tasks
//! (clients, Raft heartbeats) to another thread (`block_in_place`); on a current-thread
//! runtime (the simulation, where a second thread would make timing nondeterministic) the work
//! simply runs.

/// Runs `work`, keeping the calling worker's other tasks running meanwhile.
pub fn off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}
