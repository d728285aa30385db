//! Who may speak on the cluster bus, and proof that every frame came from them.
//!
//! Every connection starts with a three-message handshake before any Raft RPC:
//!
//! 1. dialer → acceptor, `hello`: a magic and version, the dialer's node id, the node id it
//!    means to reach, the Raft group, and a fresh 32-byte nonce;
//! 2. acceptor → dialer: its own nonce and a proof, HMAC-SHA256 under the cluster secret of
//!    the transcript (`hello` and its nonce) with the label `server`;
//! 3. dialer → acceptor: the same with the label `client`.
//!
//! Each side checks the other's proof in constant time; the acceptor also checks that the
//! hello names it and a group it serves. Then each direction gets its own session key (HMAC of
//! the transcript with a direction label), and every later frame carries a 16-byte tag:
//! HMAC-SHA256 under that key of a per-direction sequence number and the payload. A frame that
//! is forged, altered, replayed, reordered or sent back the other way fails its tag and the
//! connection is dropped. During the handshake a frame may hold at most [`HANDSHAKE_FRAME`]
//! bytes, so a stranger cannot make a node reserve memory; the caller raises the limit once
//! the peer has proved itself.
//!
//! The frames are authenticated, not encrypted: the bus carries keys and values in clear.

use std::fmt;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::peers::NodeId;

type HmacSha256 = Hmac<Sha256>;

/// The largest frame accepted before the peer has proved it holds the secret.
pub const HANDSHAKE_FRAME: usize = 128;

/// Bytes of randomness each side contributes.
const NONCE: usize = 32;
/// Bytes of each frame's tag: an authenticated connection's frames are this much longer than
/// their payload.
pub const TAG: usize = 16;
/// The bus protocol and its version, first in every hello.
const MAGIC: [u8; 4] = *b"FRB1";
/// Length of a hello: magic, two node ids, group, nonce.
const HELLO: usize = 4 + 8 + 8 + 8 + NONCE;
/// Length of a proof.
const PROOF: usize = 32;

/// Fills a buffer with unpredictable bytes (the operating system's generator in a server, a
/// seeded one in a simulation).
pub type Entropy = fn(&mut [u8]) -> std::io::Result<()>;

/// The operating system's random source.
pub fn os_entropy(buf: &mut [u8]) -> std::io::Result<()> {
    getrandom::fill(buf).map_err(|e| std::io::Error::other(e.to_string()))
}

/// The cluster secret and this node's identity on the bus. Without a secret the node opens no
/// bus and dials nobody.
#[derive(Clone)]
pub struct BusAuth {
    secret: Arc<[u8]>,
    me: NodeId,
    entropy: Entropy,
}

impl fmt::Debug for BusAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusAuth")
            .field("me", &self.me)
            .field(
                "secret",
                &if self.secret.is_empty() {
                    "none"
                } else {
                    "set"
                },
            )
            .finish()
    }
}

/// Why a connection was refused, or a frame rejected.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// This node has no cluster secret, so it neither dials nor accepts.
    #[error("no cluster secret is configured")]
    NoSecret,
    /// The peer does not speak this protocol or version.
    #[error("not a Ferrite cluster bus hello")]
    NotAHello,
    /// The hello names another node: a stale address, or a node replaced on it.
    #[error("the peer wanted node {wanted}, this is node {me}")]
    WrongNode {
        /// The node the peer meant to reach.
        wanted: NodeId,
        /// This node.
        me: NodeId,
    },
    /// The hello names a Raft group this node does not serve.
    #[error("the peer wanted raft group {0}, which this node does not serve")]
    WrongGroup(u64),
    /// The peer's proof does not verify: it holds another secret, or none.
    #[error("the peer does not hold the cluster secret")]
    BadProof,
    /// A frame's tag does not verify: forged, altered, replayed or reordered.
    #[error("a frame failed authentication")]
    BadTag,
    /// A handshake message of the wrong size.
    #[error("malformed handshake message")]
    Malformed,
    /// The connection failed or closed during the handshake.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl BusAuth {
    /// `secret` for node `me`, with nonces from `entropy`.
    pub fn new(secret: &[u8], me: NodeId, entropy: Entropy) -> BusAuth {
        BusAuth {
            secret: secret.into(),
            me,
            entropy,
        }
    }

    /// No secret: the node serves no bus.
    pub fn none(me: NodeId) -> BusAuth {
        BusAuth::new(&[], me, os_entropy)
    }

    /// Whether a secret is set.
    pub fn enabled(&self) -> bool {
        !self.secret.is_empty()
    }

    fn mac(&self, label: &[u8], transcript: &[u8]) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts keys of any length");
        mac.update(label);
        mac.update(transcript);
        mac
    }

    fn key(&self, label: &[u8], transcript: &[u8]) -> HmacSha256 {
        let key = self.mac(label, transcript).finalize().into_bytes();
        HmacSha256::new_from_slice(&key).expect("HMAC accepts keys of any length")
    }

    fn session(&self, transcript: &[u8], dialer: bool) -> Session {
        let c2s = self.key(b"ferrite bus key dialer->acceptor", transcript);
        let s2c = self.key(b"ferrite bus key acceptor->dialer", transcript);
        let (send, recv) = if dialer { (c2s, s2c) } else { (s2c, c2s) };
        Session {
            send: Direction { key: send, seq: 0 },
            recv: Direction { key: recv, seq: 0 },
        }
    }

    fn nonce(&self) -> Result<[u8; NONCE], AuthError> {
        let mut nonce = [0; NONCE];
        (self.entropy)(&mut nonce)?;
        Ok(nonce)
    }

    /// Runs the dialer's side of the handshake on a fresh connection to node `target`.
    pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Framed<S, LengthDelimitedCodec>,
        target: NodeId,
        group: u64,
    ) -> Result<Session, AuthError> {
        if !self.enabled() {
            return Err(AuthError::NoSecret);
        }
        conn.codec_mut().set_max_frame_length(HANDSHAKE_FRAME);
        let mut transcript = Vec::with_capacity(HELLO + NONCE);
        transcript.extend_from_slice(&MAGIC);
        transcript.extend_from_slice(&self.me.to_be_bytes());
        transcript.extend_from_slice(&target.to_be_bytes());
        transcript.extend_from_slice(&group.to_be_bytes());
        transcript.extend_from_slice(&self.nonce()?);
        conn.send(bytes::Bytes::copy_from_slice(&transcript))
            .await?;
        let challenge = receive(conn).await?;
        if challenge.len() != NONCE + PROOF {
            return Err(AuthError::Malformed);
        }
        transcript.extend_from_slice(&challenge[..NONCE]);
        self.mac(b"ferrite bus proof acceptor", &transcript)
            .verify_slice(&challenge[NONCE..])
            .map_err(|_| AuthError::BadProof)?;
        let proof = self
            .mac(b"ferrite bus proof dialer", &transcript)
            .finalize()
            .into_bytes();
        conn.send(bytes::Bytes::copy_from_slice(&proof)).await?;
        Ok(self.session(&transcript, true))
    }

    /// Runs the acceptor's side of the handshake for a node serving `group`; the peer's node
    /// id once it has proved itself.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Framed<S, LengthDelimitedCodec>,
        group: u64,
    ) -> Result<(NodeId, Session), AuthError> {
        if !self.enabled() {
            return Err(AuthError::NoSecret);
        }
        conn.codec_mut().set_max_frame_length(HANDSHAKE_FRAME);
        let hello = receive(conn).await?;
        if hello.len() != HELLO || hello[..4] != MAGIC {
            return Err(AuthError::NotAHello);
        }
        let field = |at: usize| u64::from_be_bytes(hello[at..at + 8].try_into().expect("8 bytes"));
        let (peer, wanted, wanted_group) = (field(4), field(12), field(20));
        let mut transcript = hello.to_vec();
        let nonce = self.nonce()?;
        transcript.extend_from_slice(&nonce);
        let proof = self
            .mac(b"ferrite bus proof acceptor", &transcript)
            .finalize()
            .into_bytes();
        // The proof goes out before the checks below so that a mismatch can be reported to a
        // peer that holds the secret; it reveals nothing to one that does not.
        let mut challenge = Vec::with_capacity(NONCE + PROOF);
        challenge.extend_from_slice(&nonce);
        challenge.extend_from_slice(&proof);
        conn.send(bytes::Bytes::from(challenge)).await?;
        let answer = receive(conn).await?;
        self.mac(b"ferrite bus proof dialer", &transcript)
            .verify_slice(&answer)
            .map_err(|_| AuthError::BadProof)?;
        if wanted != self.me {
            return Err(AuthError::WrongNode {
                wanted,
                me: self.me,
            });
        }
        if wanted_group != group {
            return Err(AuthError::WrongGroup(wanted_group));
        }
        Ok((peer, self.session(&transcript, false)))
    }
}

async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Framed<S, LengthDelimitedCodec>,
) -> Result<bytes::BytesMut, AuthError> {
    match conn.next().await {
        Some(frame) => Ok(frame?),
        None => Err(AuthError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the peer closed the connection during the handshake",
        ))),
    }
}

/// One direction's key and the sequence number of its next frame.
struct Direction {
    key: HmacSha256,
    seq: u64,
}

impl Direction {
    fn tag(&mut self, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.key.clone();
        mac.update(&self.seq.to_be_bytes());
        mac.update(payload);
        self.seq += 1;
        mac
    }
}

/// An authenticated connection's keys: tags frames going out, checks frames coming in.
pub struct Session {
    send: Direction,
    recv: Direction,
}

impl Session {
    /// Appends the tag to an outgoing frame.
    pub fn seal(&mut self, mut frame: Vec<u8>) -> bytes::Bytes {
        let tag = self.send.tag(&frame).finalize().into_bytes();
        frame.extend_from_slice(&tag[..TAG]);
        frame.into()
    }

    /// Checks and strips the tag of an incoming frame.
    pub fn open(&mut self, mut frame: bytes::BytesMut) -> Result<bytes::BytesMut, AuthError> {
        if frame.len() < TAG {
            return Err(AuthError::BadTag);
        }
        let tag = frame.split_off(frame.len() - TAG);
        self.recv
            .tag(&frame)
            .verify_truncated_left(&tag)
            .map_err(|_| AuthError::BadTag)?;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter_entropy(buf: &mut [u8]) -> std::io::Result<()> {
        use std::sync::atomic::{AtomicU8, Ordering};
        static NEXT: AtomicU8 = AtomicU8::new(1);
        buf.fill(NEXT.fetch_add(1, Ordering::Relaxed));
        Ok(())
    }

    fn pair() -> (
        Framed<tokio::io::DuplexStream, LengthDelimitedCodec>,
        Framed<tokio::io::DuplexStream, LengthDelimitedCodec>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 16);
        (
            Framed::new(a, LengthDelimitedCodec::new()),
            Framed::new(b, LengthDelimitedCodec::new()),
        )
    }

    async fn handshake(
        dialer: BusAuth,
        acceptor: BusAuth,
        target: NodeId,
    ) -> (
        Result<Session, AuthError>,
        Result<(NodeId, Session), AuthError>,
    ) {
        let (mut a, mut b) = pair();
        // Each side owns its end, so a side that gives up closes it and the other sees that.
        tokio::join!(
            async move { dialer.dial(&mut a, target, 0).await },
            async move { acceptor.accept(&mut b, 0).await }
        )
    }

    #[tokio::test]
    async fn nodes_sharing_the_secret_agree_and_tag_each_frame() {
        let secret = b"sixteen byte key!";
        let (d, a) = handshake(
            BusAuth::new(secret, 1, counter_entropy),
            BusAuth::new(secret, 2, counter_entropy),
            2,
        )
        .await;
        let mut d = d.unwrap();
        let (peer, mut a) = a.unwrap();
        assert_eq!(peer, 1);
        let sealed = d.seal(b"append".to_vec());
        assert_eq!(
            &a.open(bytes::BytesMut::from(&sealed[..])).unwrap()[..],
            b"append"
        );
        // Replaying the same frame fails: the sequence number moved on.
        assert!(matches!(
            a.open(bytes::BytesMut::from(&sealed[..])),
            Err(AuthError::BadTag)
        ));
        // A frame sent back the other way fails: each direction has its own key.
        let echoed = d.seal(b"x".to_vec());
        assert!(matches!(
            d.open(bytes::BytesMut::from(&echoed[..])),
            Err(AuthError::BadTag)
        ));
        // One flipped bit fails.
        let mut flipped = bytes::BytesMut::from(&d.seal(b"vote".to_vec())[..]);
        flipped[0] ^= 1;
        assert!(matches!(a.open(flipped), Err(AuthError::BadTag)));
    }

    #[tokio::test]
    async fn another_secret_fails_both_ways() {
        let (d, a) = handshake(
            BusAuth::new(b"the first secret!", 1, counter_entropy),
            BusAuth::new(b"the other secret!", 2, counter_entropy),
            2,
        )
        .await;
        assert!(matches!(d, Err(AuthError::BadProof)), "{:?}", d.err());
        // The acceptor never sees a proof: the dialer hung up.
        assert!(a.is_err());
    }

    #[tokio::test]
    async fn a_hello_for_another_node_is_refused() {
        let secret = b"sixteen byte key!";
        let (_, a) = handshake(
            BusAuth::new(secret, 1, counter_entropy),
            BusAuth::new(secret, 2, counter_entropy),
            3,
        )
        .await;
        assert!(matches!(a, Err(AuthError::WrongNode { wanted: 3, me: 2 })));
    }

    #[tokio::test]
    async fn no_secret_no_bus() {
        let (d, a) = handshake(BusAuth::none(1), BusAuth::none(2), 2).await;
        assert!(matches!(d, Err(AuthError::NoSecret)));
        assert!(matches!(a, Err(AuthError::NoSecret)));
    }

    #[tokio::test]
    async fn a_stranger_cannot_announce_a_large_frame() {
        let (mut a, b) = pair();
        let acceptor = BusAuth::new(b"sixteen byte key!", 2, counter_entropy);
        let mut raw = b.into_inner();
        let accepting = tokio::spawn(async move { acceptor.accept(&mut a, 0).await.map(|_| ()) });
        tokio::io::AsyncWriteExt::write_all(&mut raw, &(1u32 << 30).to_be_bytes())
            .await
            .unwrap();
        let refused = accepting.await.unwrap();
        assert!(matches!(refused, Err(AuthError::Io(_))), "{refused:?}");
    }
}
