//! Waiting on a condition, always with a deadline.

use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(10);

/// Polls `condition` until it holds or `timeout` passes; whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `attempt` until it gives a value, and returns it; fails the test, naming `what`,
/// when `timeout` passes first.
pub fn eventually<T>(what: &str, timeout: Duration, mut attempt: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    let held = wait_until(timeout, || {
        found = attempt();
        found.is_some()
    });
    match found {
        Some(value) if held => value,
        _ => panic!("{what}: not within {timeout:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_that_never_holds_times_out() {
        let started = Instant::now();
        assert!(!wait_until(Duration::from_millis(50), || false));
        assert!(started.elapsed() >= Duration::from_millis(50));
        let mut calls = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        }));
    }

    #[test]
    #[should_panic(expected = "the answer: not within")]
    fn eventually_fails_by_name() {
        eventually("the answer", Duration::from_millis(20), || None::<u8>);
    }
}
