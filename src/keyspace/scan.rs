//! SCAN and HSCAN's arguments, shared by the key and hash families.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{KeyspaceError, KsResult};
use crate::args::{Args, parse_i64};

/// The arguments of SCAN and HSCAN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanOp {
    /// Where to resume.
    pub cursor: u64,
    /// MATCH pattern.
    pub pattern: Option<Bytes>,
    /// COUNT hint: how many entries to visit.
    pub count: usize,
    /// TYPE filter (SCAN only).
    pub kind: Option<String>,
    /// NOVALUES (HSCAN only).
    pub novalues: bool,
}

/// Parses `cursor [MATCH p] [COUNT n] [TYPE t] [NOVALUES]`; `hash` selects HSCAN's options.
pub(super) fn parse_scan(args: &mut Args<'_>, hash: bool) -> KsResult<ScanOp> {
    let cursor_arg = args.take();
    let cursor = std::str::from_utf8(&cursor_arg)
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or(KeyspaceError::InvalidCursor)?;
    let mut scan = ScanOp {
        cursor,
        pattern: None,
        count: 10,
        kind: None,
        novalues: false,
    };
    while !args.is_done() {
        if args.eat("MATCH") {
            scan.pattern = Some(args.next_arg().ok_or(KeyspaceError::Syntax)?.clone());
        } else if args.eat("COUNT") {
            let count = parse_i64(args.next_arg().ok_or(KeyspaceError::Syntax)?)
                .ok_or(KeyspaceError::NotInteger)?;
            if count < 1 {
                return Err(KeyspaceError::Syntax);
            }
            scan.count = count as usize;
        } else if !hash && args.eat("TYPE") {
            let kind = args.next_arg().ok_or(KeyspaceError::Syntax)?;
            scan.kind = Some(String::from_utf8_lossy(kind).to_ascii_lowercase());
        } else if hash && args.eat("NOVALUES") {
            scan.novalues = true;
        } else {
            return Err(KeyspaceError::Syntax);
        }
    }
    Ok(scan)
}
