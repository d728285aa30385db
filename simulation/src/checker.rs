//! A linearizability checker in the style of Wing & Gong, Lowe, and porcupine: histories are
//! split per key (linearizability is compositional), and each key's history is searched for
//! an order of its operations that respects real time (an operation that completed before
//! another was invoked comes first) and that a sequential model accepts, output for output.
//!
//! An operation whose outcome is unknown (a timeout, a lost connection, `UNCERTAIN`) has no
//! completion time: it may take effect at any point after its invocation, or never, and its
//! output is not checked. A failing key's report is shrunk: operations invoked after the
//! anomaly are dropped, then every read whose removal leaves the history failing, so that it
//! shows the writes up to the anomaly and the reads that contradict them.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::Hash;

/// A sequential specification: the state of one key and what each operation does to it.
pub trait Model {
    /// The key's state.
    type State: Clone + Eq + Hash + fmt::Debug;
    /// An operation with its input and, when known, its output.
    type Op: Clone + fmt::Debug;
    /// The state before any operation.
    fn init(&self) -> Self::State;
    /// The state after `op` on `state`, or `None` when `op`'s recorded output could not have
    /// come from `state`. `known` says whether the output was observed.
    fn step(&self, state: &Self::State, op: &Self::Op, known: bool) -> Option<Self::State>;
    /// Whether `op` leaves the state as it is (removing it cannot change what others return).
    fn is_read(&self, op: &Self::Op) -> bool;
    /// Whether a write's output is independent of earlier writes (a register's SET), so the
    /// report may drop writes too; not so for a counter's INCR or a list's RPUSH.
    fn writes_independent(&self) -> bool {
        false
    }
    /// Whether `read` saw what `write` wrote (such a write stays in a report with the read).
    fn observed(&self, _write: &Self::Op, _read: &Self::Op) -> bool {
        false
    }
}

/// One operation of a history.
#[derive(Debug, Clone)]
pub struct Entry<O> {
    /// Which client ran it.
    pub client: usize,
    /// When it was invoked (any monotonic unit, the same for every entry).
    pub invoke: u64,
    /// When it completed; `None`: its outcome is unknown.
    pub complete: Option<u64>,
    /// The operation and its output.
    pub op: O,
}

/// A key whose history no order explains.
#[derive(Debug, Clone)]
pub struct Violation<O> {
    /// The operations of a minimal failing sub-history, by invocation time.
    pub minimal: Vec<Entry<O>>,
    /// How many operations the key's whole history had.
    pub of: usize,
}

impl<O: fmt::Debug> fmt::Display for Violation<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "no linearization of these {} operations (of {}):",
            self.minimal.len(),
            self.of
        )?;
        // Long reports keep their head and their end, where the anomaly is.
        let n = self.minimal.len();
        for (i, e) in self.minimal.iter().enumerate() {
            if n > 40 && i == 5 {
                writeln!(f, "  ... {} operations ...", n - 35)?;
            }
            if n > 40 && (5..n - 30).contains(&i) {
                continue;
            }
            let done = match e.complete {
                Some(t) => format!("{t}"),
                None => "unknown".to_owned(),
            };
            writeln!(
                f,
                "  client {} [{} .. {}] {:?}",
                e.client, e.invoke, done, e.op
            )?;
        }
        Ok(())
    }
}

/// How many search states one key may visit before the check gives up as inconclusive.
const BUDGET: usize = 2_000_000;

/// The outcome of a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Some order explains the history.
    Linearizable,
    /// No order does.
    Violation,
    /// The search ran out of budget.
    Unknown,
}

/// Checks one key's history against `model`.
///
/// A depth-first search over (operations placed so far, model state), memoized by a 128-bit
/// digest of the pair. At each step the candidates are the unplaced operations invoked before
/// the earliest unplaced completion; they are tried completed ones first, earliest completion
/// first, and operations of unknown outcome last, so that a linearizable history (the common
/// case) is found without backtracking.
pub fn check<M: Model>(model: &M, history: &[Entry<M::Op>]) -> Verdict {
    let mut entries: Vec<&Entry<M::Op>> = history.iter().collect();
    entries.sort_by_key(|e| e.invoke);
    let n = entries.len();
    // Operations that must be placed: those that completed. Unknown ones are optional.
    let required = entries.iter().filter(|e| e.complete.is_some()).count();
    // The order candidates are tried in: completed before unknown, then by completion.
    let mut preference: Vec<usize> = (0..n).collect();
    preference.sort_by_key(|&i| {
        (
            entries[i].complete.is_none(),
            entries[i].complete,
            entries[i].invoke,
        )
    });
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut visits = 0usize;
    let mut stack: Vec<(Vec<u64>, M::State, usize)> =
        vec![(vec![0; n.div_ceil(64)], model.init(), 0)];
    while let Some((placed, state, placed_required)) = stack.pop() {
        if placed_required == required {
            return Verdict::Linearizable;
        }
        visits += 1;
        if visits > BUDGET {
            return Verdict::Unknown;
        }
        let is_placed = |i: usize| placed[i / 64] & (1 << (i % 64)) != 0;
        // The earliest completion among operations not yet placed: nothing invoked after it
        // may be placed before it.
        let horizon = (0..n)
            .filter(|&i| !is_placed(i))
            .filter_map(|i| entries[i].complete)
            .min()
            .unwrap_or(u64::MAX);
        // Pushed in reverse preference, so the preferred candidate is popped first.
        for &i in preference.iter().rev() {
            if is_placed(i) || entries[i].invoke > horizon {
                continue;
            }
            let e = entries[i];
            let Some(next) = model.step(&state, &e.op, e.complete.is_some()) else {
                continue;
            };
            let mut now = placed.clone();
            now[i / 64] |= 1 << (i % 64);
            if seen.insert(digest(&now, &next)) {
                let r = placed_required + usize::from(e.complete.is_some());
                stack.push((now, next, r));
            }
        }
    }
    Verdict::Violation
}

/// A 128-bit digest of a search state: two independent 64-bit hashes.
fn digest<S: Hash>(placed: &[u64], state: &S) -> (u64, u64) {
    use std::hash::Hasher;
    let mut a = std::hash::DefaultHasher::new();
    let mut b = std::hash::DefaultHasher::new();
    b.write_u64(0x9E37_79B9_7F4A_7C15);
    placed.hash(&mut a);
    state.hash(&mut a);
    placed.hash(&mut b);
    state.hash(&mut b);
    (a.finish(), b.finish())
}

/// Checks every key's history; the first violation found, shrunk, or why the check could not
/// conclude. `histories` maps a key to its operations.
pub fn check_all<M: Model, K: Ord + fmt::Debug>(
    model: &M,
    histories: &BTreeMap<K, Vec<Entry<M::Op>>>,
) -> Result<usize, String>
where
    M::Op: fmt::Debug,
{
    let mut checked = 0;
    for (key, history) in histories {
        match check(model, history) {
            Verdict::Linearizable => checked += history.len(),
            Verdict::Unknown => {
                return Err(format!(
                    "key {key:?}: the search for a linearization of {} operations ran out of budget",
                    history.len()
                ));
            }
            Verdict::Violation => {
                let minimal = shrink(model, history.clone());
                return Err(format!(
                    "key {key:?}: {}",
                    Violation {
                        minimal,
                        of: history.len()
                    }
                ));
            }
        }
    }
    Ok(checked)
}

/// Drops operations from the end while the rest still fails, then each read whose removal
/// leaves it failing, then (for models whose writes are independent) each such write.
/// Dependent writes stay: removing one changes what later writes return.
fn shrink<M: Model>(model: &M, mut history: Vec<Entry<M::Op>>) -> Vec<Entry<M::Op>> {
    history.sort_by_key(|e| e.invoke);
    while history.len() > 1 && check(model, &history[..history.len() - 1]) == Verdict::Violation {
        history.pop();
    }
    // Reads first, over the whole history, so that a write is tried only once the reads that
    // would keep it are gone.
    for writes in [false, true] {
        if writes && !model.writes_independent() {
            break;
        }
        let mut i = 0;
        while i < history.len() {
            let op = &history[i].op;
            let removable = if writes {
                !model.is_read(op) && !history.iter().any(|e| model.observed(op, &e.op))
            } else {
                model.is_read(op)
            };
            if removable {
                let mut without = history.clone();
                without.remove(i);
                if check(model, &without) == Verdict::Violation {
                    history = without;
                    continue;
                }
            }
            i += 1;
        }
    }
    history
}

/// A register: SET writes a value, GET reads the latest (or nothing).
///
/// An expiring register's writes carry a TTL (SET with PX): the value may vanish at any
/// moment after a write (the checker does not know the exact time a TTL runs out), but once a
/// read saw it gone it stays gone until the next write. That catches a key that comes back
/// after a read found it expired: a read evaluated at an earlier time than one before it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register {
    /// Whether writes carry a TTL.
    pub expires: bool,
}

impl Register {
    /// Values stay until overwritten.
    pub const PLAIN: Register = Register { expires: false };
    /// Values may expire after any write.
    pub const EXPIRING: Register = Register { expires: true };
}

/// A register operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    /// SET to this value.
    Write(String),
    /// GET, which returned this.
    Read(Option<String>),
}

impl Model for Register {
    type State = Option<String>;
    type Op = RegisterOp;

    fn init(&self) -> Self::State {
        None
    }

    fn step(&self, state: &Self::State, op: &Self::Op, known: bool) -> Option<Self::State> {
        match op {
            RegisterOp::Write(v) => Some(Some(v.clone())),
            _ if !known => Some(state.clone()),
            // Expired: from now on the key is gone.
            RegisterOp::Read(None) if self.expires => Some(None),
            RegisterOp::Read(seen) => (seen == state).then(|| state.clone()),
        }
    }

    fn is_read(&self, op: &Self::Op) -> bool {
        matches!(op, RegisterOp::Read(_))
    }

    fn writes_independent(&self) -> bool {
        true
    }

    fn observed(&self, write: &Self::Op, read: &Self::Op) -> bool {
        matches!((write, read), (RegisterOp::Write(w), RegisterOp::Read(Some(r))) if w == r)
    }
}

/// A counter: INCR (by one) returns the new value, GET reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter;

/// A counter operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterOp {
    /// Increment by one, which returned this value.
    Incr(i64),
    /// Read, which returned this (`None`: no key yet).
    Read(Option<i64>),
}

impl Model for Counter {
    type State = Option<i64>;
    type Op = CounterOp;

    fn init(&self) -> Self::State {
        None
    }

    fn step(&self, state: &Self::State, op: &Self::Op, known: bool) -> Option<Self::State> {
        let next = state.unwrap_or(0) + 1;
        match op {
            CounterOp::Incr(returned) => (!known || *returned == next).then_some(Some(next)),
            CounterOp::Read(seen) => (!known || seen == state).then_some(*state),
        }
    }

    fn is_read(&self, op: &Self::Op) -> bool {
        matches!(op, CounterOp::Read(_))
    }
}

/// A list that only grows at its tail: RPUSH returns the new length, LRANGE 0 -1 reads it
/// whole (an Elle-style list-append workload).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppendList;

/// A list operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListOp {
    /// Append this element, which returned this length.
    Append(String, usize),
    /// Read the whole list, which returned this.
    Read(Vec<String>),
}

impl Model for AppendList {
    type State = Vec<String>;
    type Op = ListOp;

    fn init(&self) -> Self::State {
        Vec::new()
    }

    fn step(&self, state: &Self::State, op: &Self::Op, known: bool) -> Option<Self::State> {
        match op {
            ListOp::Append(value, len) => {
                let mut next = state.clone();
                next.push(value.clone());
                (!known || *len == next.len()).then_some(next)
            }
            ListOp::Read(seen) => (!known || seen == state).then(|| state.clone()),
        }
    }

    fn is_read(&self, op: &Self::Op) -> bool {
        matches!(op, ListOp::Read(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e<O>(client: usize, invoke: u64, complete: Option<u64>, op: O) -> Entry<O> {
        Entry {
            client,
            invoke,
            complete,
            op,
        }
    }

    fn w(v: &str) -> RegisterOp {
        RegisterOp::Write(v.to_owned())
    }

    fn r(v: Option<&str>) -> RegisterOp {
        RegisterOp::Read(v.map(str::to_owned))
    }

    #[test]
    fn an_expired_key_may_not_come_back_without_a_write() {
        let expired_then_back = vec![
            e(0, 0, Some(10), w("a")),
            e(1, 20, Some(30), r(None)),
            e(2, 40, Some(50), r(Some("a"))),
        ];
        assert_eq!(
            check(&Register::EXPIRING, &expired_then_back),
            Verdict::Violation
        );
        // The same reads overlapping: the value was read before it expired.
        let overlapping = vec![
            e(0, 0, Some(10), w("a")),
            e(1, 20, Some(50), r(None)),
            e(2, 30, Some(40), r(Some("a"))),
        ];
        assert_eq!(
            check(&Register::EXPIRING, &overlapping),
            Verdict::Linearizable
        );
        // A plain register refuses the expiry itself.
        assert_eq!(check(&Register::PLAIN, &overlapping), Verdict::Violation);
        // Gone, then written again and read: fine.
        let rewritten = vec![
            e(0, 0, Some(10), w("a")),
            e(1, 20, Some(30), r(None)),
            e(0, 40, Some(50), w("b")),
            e(2, 60, Some(70), r(Some("b"))),
        ];
        assert_eq!(
            check(&Register::EXPIRING, &rewritten),
            Verdict::Linearizable
        );
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        let h = vec![
            e(0, 0, Some(10), w("a")),
            e(1, 1, Some(11), w("b")),
            e(2, 2, Some(12), r(Some("a"))),
            e(3, 3, Some(13), r(Some("b"))),
        ];
        // Everything overlaps: w(a), r(a), w(b), r(b) explains it.
        assert_eq!(check(&Register::PLAIN, &h), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        let h = vec![
            e(0, 0, Some(10), w("a")),
            e(1, 20, Some(30), w("b")),
            e(2, 40, Some(50), r(Some("a"))),
        ];
        assert_eq!(check(&Register::PLAIN, &h), Verdict::Violation);
        let err = check_all(&Register::PLAIN, &BTreeMap::from([("k", h)])).unwrap_err();
        assert!(err.contains("these 3 operations (of 3)"), "{err}");
    }

    #[test]
    fn an_unknown_write_may_have_happened_or_not() {
        let happened = vec![
            e(0, 0, None, w("a")),
            e(1, 20, Some(30), r(Some("a"))),
            e(1, 40, Some(50), r(Some("a"))),
        ];
        assert_eq!(check(&Register::PLAIN, &happened), Verdict::Linearizable);
        let never = vec![e(0, 0, None, w("a")), e(1, 20, Some(30), r(None))];
        assert_eq!(check(&Register::PLAIN, &never), Verdict::Linearizable);
        // But not both: seen, then gone.
        let flicker = vec![
            e(0, 0, None, w("a")),
            e(1, 20, Some(30), r(Some("a"))),
            e(1, 40, Some(50), r(None)),
        ];
        assert_eq!(check(&Register::PLAIN, &flicker), Verdict::Violation);
    }

    #[test]
    fn a_lost_increment_is_caught_and_the_report_is_minimal() {
        let h = vec![
            e(0, 0, Some(5), CounterOp::Incr(1)),
            e(1, 1, Some(6), CounterOp::Read(None)),
            e(0, 10, Some(15), CounterOp::Incr(2)),
            e(2, 11, Some(16), CounterOp::Read(Some(1))),
            e(0, 20, Some(25), CounterOp::Read(Some(1))),
        ];
        assert_eq!(check(&Counter, &h), Verdict::Violation);
        let minimal = shrink(&Counter, h);
        let ops: Vec<CounterOp> = minimal.into_iter().map(|e| e.op).collect();
        assert_eq!(
            ops,
            vec![
                CounterOp::Incr(1),
                CounterOp::Incr(2),
                CounterOp::Read(Some(1))
            ]
        );
    }

    #[test]
    fn list_reads_must_be_prefixes_in_real_time_order() {
        let a = |v: &str, n| ListOp::Append(v.to_owned(), n);
        let read = |vs: &[&str]| ListOp::Read(vs.iter().map(|s| s.to_string()).collect());
        let fine = vec![
            e(0, 0, Some(10), a("x", 1)),
            e(1, 5, Some(15), a("y", 2)),
            e(2, 16, Some(20), read(&["x", "y"])),
        ];
        assert_eq!(check(&AppendList, &fine), Verdict::Linearizable);
        let reordered = vec![
            e(0, 0, Some(10), a("x", 1)),
            e(1, 11, Some(15), a("y", 2)),
            e(2, 16, Some(20), read(&["y", "x"])),
        ];
        assert_eq!(check(&AppendList, &reordered), Verdict::Violation);
    }
}
