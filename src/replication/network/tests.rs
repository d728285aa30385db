//! Tests of the client side of the cluster bus.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use openraft::{CommittedLeaderId, LogId, Vote};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;

use super::super::auth::{BusAuth, TAG, os_entropy};
use super::super::durable::{Durable, Mark};
use super::*;
use crate::clock::Clock;
use crate::net::TcpDialer;
use crate::replication::{Payload, PeerClocks};

fn entry(index: u64, bytes: usize) -> Entry<TypeConfig<Vec<u8>>> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Payload(Bytes::from(vec![0; bytes]))),
    }
}

#[test]
fn append_entries_are_split_by_bytes_and_a_large_entry_travels_alone() {
    let mib = 1 << 20;
    let fit = |sizes: &[usize]| {
        let entries: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| entry(i as u64 + 1, *s))
            .collect();
        entries_that_fit(&entries)
    };
    assert_eq!(fit(&[mib, mib]), None, "exactly the cap");
    assert_eq!(fit(&[mib; 6]), Some(2));
    assert_eq!(
        fit(&[10 * mib, 10]),
        Some(1),
        "a large entry goes first, alone"
    );
    assert_eq!(fit(&[10, 10 * mib]), Some(1));
    assert_eq!(fit(&[10; 300]), None);
}

const SECRET: &[u8] = b"a secret of the cluster bus";
const GROUP: u64 = 7;

fn id(index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// An AppendEntries of leader 1 in term 1: after entry `prev`, carrying entries `entries`,
/// with commit position `commit`.
fn append(
    prev: u64,
    entries: std::ops::Range<u64>,
    commit: u64,
) -> AppendEntriesRequest<TypeConfig<Vec<u8>>> {
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: Some(id(prev)),
        leader_commit: Some(id(commit)),
        entries: entries.map(|i| entry(i, 8)).collect(),
    }
}

fn clocks() -> Arc<PeerClocks> {
    Arc::new(PeerClocks::new(
        Arc::new(Clock::default()),
        250,
        Duration::from_secs(1),
    ))
}

/// What the scripted follower received: on which of its connections (counted from 1), how
/// many entries, after which entry, with which commit position.
#[derive(Debug, PartialEq)]
struct Seen {
    conn: usize,
    entries: usize,
    prev: u64,
    commit: u64,
}

/// A follower (node 2) on a real socket that passes the bus handshake, reports every
/// AppendEntries it receives and answers each, in order, with the next response the test
/// gives it, only once given.
async fn scripted_follower(
    listener: tokio::net::TcpListener,
    seen: mpsc::UnboundedSender<Seen>,
    mut answers: mpsc::UnboundedReceiver<Response>,
) {
    let auth = BusAuth::new(SECRET, 2, os_entropy);
    let clocks = clocks();
    let mut conns = 0;
    while let Ok((stream, _)) = listener.accept().await {
        conns += 1;
        let mut conn = Framed::new(stream, codec());
        let Ok((_, mut session)) = auth.accept(&mut conn, GROUP).await else {
            continue;
        };
        conn.codec_mut().set_max_frame_length(MAX_FRAME + TAG);
        while let Some(Ok(frame)) = conn.next().await {
            let frame = session.open(frame).expect("a sealed frame");
            let request: Request<Vec<u8>> = decode(&frame).expect("a request");
            let Rpc::Append(r) = request.rpc else {
                panic!("only AppendEntries are sent here");
            };
            let index = |id: Option<LogId<NodeId>>| id.map_or(0, |id| id.index);
            let _ = seen.send(Seen {
                conn: conns,
                entries: r.entries.len(),
                prev: index(r.prev_log_id),
                commit: index(r.leader_commit),
            });
            let Some(response) = answers.recv().await else {
                return;
            };
            let sent_ms = clocks.now_ms();
            let answer = session.seal(encode(&Answer { sent_ms, response }));
            if conn.send(answer).await.is_err() {
                break;
            }
        }
    }
}

type TestPeer = Peer<TcpDialer, Vec<u8>>;
type AppendResult =
    Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>>;

/// The test's side of [`scripted_follower`].
struct Script {
    seen: mpsc::UnboundedReceiver<Seen>,
    answers: mpsc::UnboundedSender<Response>,
}

impl Script {
    /// The next request the follower received.
    async fn received(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(5), self.seen.recv())
            .await
            .expect("the follower received it")
            .expect("the follower runs")
    }

    /// Has the follower answer its oldest unanswered request with `response`.
    fn answer(&self, response: AppendEntriesResponse<NodeId>) {
        self.answers.send(Response::Append(Ok(response))).unwrap();
    }
}

fn seen(conn: usize, entries: usize, prev: u64, commit: u64) -> Seen {
    Seen {
        conn,
        entries,
        prev,
        commit,
    }
}

fn option() -> RPCOption {
    RPCOption::new(Duration::from_secs(5))
}

/// Sends `request` from a task and checks that the follower received it as `expected` and
/// that the call is still waiting a while later; then has the follower answer `response`.
/// The peer comes back with the call's result.
async fn waits_for_its_answer(
    mut peer: TestPeer,
    request: AppendEntriesRequest<TypeConfig<Vec<u8>>>,
    script: &mut Script,
    expected: Seen,
    response: AppendEntriesResponse<NodeId>,
) -> (TestPeer, AppendResult) {
    let call = tokio::spawn(async move {
        let r = peer.append_entries(request, option()).await;
        (peer, r)
    });
    assert_eq!(script.received().await, expected);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !call.is_finished(),
        "answered before the follower answered: {expected:?}"
    );
    script.answer(response);
    call.await.unwrap()
}

#[tokio::test]
async fn a_commit_position_goes_without_waiting_and_its_answer_is_checked_before_the_next() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cport = listener.local_addr().unwrap().port();
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let (answers, answers_rx) = mpsc::unbounded_channel();
    tokio::spawn(scripted_follower(listener, seen_tx, answers_rx));
    let mut script = Script {
        seen: seen_rx,
        answers,
    };

    // Everything is on this leader's disk: the commit positions go out unclamped.
    let (_disk, mark) = watch::channel(Mark {
        last: Some(id(1000)),
        ..Mark::default()
    });
    let bus = Bus {
        auth: BusAuth::new(SECRET, 1, os_entropy),
        clocks: clocks(),
        cluster: Arc::new(AtomicU64::new(0)),
        dials: Arc::new(AtomicU64::new(0)),
    };
    let lease = Arc::new(Lease::new(1, Duration::from_secs(1), 0.1, true));
    let mut network: Network<TcpDialer, Vec<u8>> = Network::new(
        Arc::new(TcpDialer),
        bus,
        GROUP,
        Durable::new(mark, Arc::default()),
        lease,
    );
    let member = Member {
        host: "127.0.0.1".to_owned(),
        port: 0,
        cport,
    };
    let mut peer = network.new_client(2, &member).await;
    let success = |r: &AppendResult| matches!(r, Ok(AppendEntriesResponse::Success));

    // An entry: answered as always.
    script.answer(AppendEntriesResponse::Success);
    let r = peer.append_entries(append(4, 5..6, 4), option()).await;
    assert!(success(&r), "{r:?}");
    assert_eq!(script.received().await, seen(1, 1, 4, 4));

    // The commit position moves, in a heartbeat at the entry just answered for: it is sent,
    // and reported answered while the follower has not answered it.
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        peer.append_entries(append(5, 0..0, 5), option()),
    )
    .await
    .expect("a commit position is not waited for");
    assert!(success(&r), "{r:?}");
    assert_eq!(script.received().await, seen(1, 0, 5, 5));

    // The next entries go at once on the same connection; the answer owed comes first.
    script.answer(AppendEntriesResponse::Success);
    script.answer(AppendEntriesResponse::Success);
    let r = peer.append_entries(append(5, 6..7, 5), option()).await;
    assert!(success(&r), "{r:?}");
    assert_eq!(script.received().await, seen(1, 1, 5, 5));

    // A heartbeat that moves nothing waits for its answer, as any other request.
    let (peer, r) = waits_for_its_answer(
        peer,
        append(6, 0..0, 5),
        &mut script,
        seen(1, 0, 6, 5),
        AppendEntriesResponse::Success,
    )
    .await;
    assert!(success(&r), "{r:?}");

    // A probe before the entries the follower answered for may meet a conflict: it waits for
    // its answer even though it moves the commit position.
    let (peer, r) = waits_for_its_answer(
        peer,
        append(3, 0..0, 6),
        &mut script,
        seen(1, 0, 3, 6),
        AppendEntriesResponse::Conflict,
    )
    .await;
    assert!(matches!(r, Ok(AppendEntriesResponse::Conflict)), "{r:?}");

    // After a conflict the match is unknown again: the commit position waits too.
    let (mut peer, r) = waits_for_its_answer(
        peer,
        append(6, 0..0, 7),
        &mut script,
        seen(1, 0, 6, 7),
        AppendEntriesResponse::Success,
    )
    .await;
    assert!(success(&r), "{r:?}");

    // A commit position sent ahead and answered with a higher vote: the next call fails, and
    // the one after it dials a new connection.
    let r = peer.append_entries(append(6, 0..0, 8), option()).await;
    assert!(success(&r), "{r:?}");
    assert_eq!(script.received().await, seen(1, 0, 6, 8));
    script.answer(AppendEntriesResponse::HigherVote(Vote::new(2, 3)));
    script.answer(AppendEntriesResponse::Success);
    let r = peer.append_entries(append(6, 7..8, 8), option()).await;
    assert!(
        r.is_err(),
        "a refused commit position went unnoticed: {r:?}"
    );
    assert_eq!(script.received().await, seen(1, 1, 6, 8));
    script.answer(AppendEntriesResponse::Success);
    let r = peer.append_entries(append(6, 7..8, 8), option()).await;
    assert!(success(&r), "{r:?}");
    assert_eq!(script.received().await, seen(2, 1, 6, 8));
    assert!(script.seen.try_recv().is_err(), "nothing more was sent");
}
