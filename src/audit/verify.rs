//! Checks an audit file and says which line was changed and how.
//!
//! [`scan`] reads the file once, in constant memory (apart from what it
//! reports). The checkpoint MACs can only be checked by the root of trust, so
//! the caller verifies each [`CheckpointClaim`] and reports a mismatch with
//! [`Scan::mark_bad_mac`]; the server's chain head is compared with
//! [`Scan::check_head`].
//!
//! Locating a change: line `n+1`'s `prev` must equal the hash of line `n`,
//! and line `n`'s `seq` must be one more than line `n-1`'s. A broken link
//! between two lines means one of them changed; which one is read from the
//! neighbours (one line of look-ahead):
//!
//! * an edited body breaks only the link to the next line;
//! * an edited `prev` breaks the links on both sides;
//! * an edited `seq` keeps the link from the line before but not the count;
//! * a deleted line leaves a gap in `seq`; swapped lines link to each other
//!   across the swap; a forged line is skipped by the chain (the line after it
//!   links to the line before it).
//!
//! The last line has no successor: an edit to it is seen by the server head
//! (or, for a checkpoint's `prev`, by its MAC).

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead};

use super::record::{
    Head, Kind, LineHash, Parsed, checkpoint_message, genesis_prev, line_hash, parse_line,
};
use crate::crypto::hex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line number in the file.
    pub line: u64,
    /// The record's `seq` as written, if it could be read.
    pub seq: Option<u64>,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not a valid audit line (including a line cut by an edit into two, or
    /// two joined into one).
    Malformed(String),
    /// The line's bytes are not what the writer wrote.
    Altered(Evidence),
    /// Records `expected_seq..found_seq` are gone from before this line.
    Missing { expected_seq: u64, found_seq: u64 },
    /// This line belongs elsewhere (two swapped lines each get one).
    OutOfOrder { expected_seq: u64, found_seq: u64 },
    /// A line the chain does not go through: the next line links to the line
    /// before this one.
    Inserted,
    /// The last line has no `\n`: a torn write, or an edit.
    TornTail,
    /// Lines from `from_seq` on are not covered by a checkpoint MAC. Normal
    /// for a log that is still being written or that stopped without closing,
    /// but those lines could be cut off unnoticed without the server head, so
    /// `keyward audit verify` fails on it unless told to allow it
    /// ([`Scan::sealed`]).
    UnsealedTail { from_seq: u64 },
    /// The root of trust rejects this checkpoint's MAC: everything up to
    /// here was rewritten (or the MAC key is wrong).
    BadMac,
    /// The server wrote more than the file holds.
    Truncated { file_ends_at: u64, server_head: u64 },
    /// The server head is older than what the scan kept, so it could not be
    /// compared; take the head right before scanning.
    HeadNotChecked { server_head: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Its hash does not match the next line's `prev`.
    NextPrev { next_line: u64 },
    /// Its own `prev` does not match the line before it (nor, if given, its
    /// hash the next line's `prev`).
    OwnPrev { next_line: Option<u64> },
    /// It links to the line before it but its `seq` is not the next one.
    Seq { expected_seq: u64 },
    /// Its hash is not the one the server holds for that record.
    ServerHead,
}

/// A checkpoint to be verified by the root of trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointClaim {
    pub line: u64,
    pub seq: u64,
    /// The exact MAC input, built from the line's own `seq` and `prev`.
    pub message: Vec<u8>,
    pub mac: Vec<u8>,
    pub key_id: String,
}

#[derive(Debug, Clone)]
pub struct Scan {
    pub lines: u64,
    /// Request lines.
    pub records: u64,
    /// Sorted by line.
    pub findings: Vec<Finding>,
    pub checkpoints: Vec<CheckpointClaim>,
    /// End of the chain as the file has it.
    pub last: Option<Head>,
    last_line: u64,
    /// Recent (seq, hash, line) of the chain, for a server head taken while
    /// the log was still growing.
    recent: VecDeque<(u64, LineHash, u64)>,
    /// A break at the very end that only the server head can place:
    /// (line before, last line).
    ambiguous_end: Option<(u64, u64)>,
}

const RECENT: usize = 4096;

impl Scan {
    /// Compares the file with the server's chain head. The head may be older
    /// than the file (the log kept growing during the scan) by up to a few
    /// thousand lines.
    pub fn check_head(&mut self, server_head: &Head) {
        let Some(last) = self.last.clone() else {
            if server_head.seq > 0 {
                self.add(Finding {
                    line: self.last_line + 1,
                    seq: Some(1),
                    problem: Problem::Truncated {
                        file_ends_at: 0,
                        server_head: server_head.seq,
                    },
                });
            }
            return;
        };
        if server_head.seq > last.seq {
            self.add(Finding {
                line: self.last_line + 1,
                seq: Some(last.seq + 1),
                problem: Problem::Truncated {
                    file_ends_at: last.seq,
                    server_head: server_head.seq,
                },
            });
            return;
        }
        let Some(&(seq, hash, line)) = self
            .recent
            .iter()
            .rev()
            .find(|(seq, ..)| *seq == server_head.seq)
        else {
            self.add(Finding {
                line: self.last_line,
                seq: Some(last.seq),
                problem: Problem::HeadNotChecked {
                    server_head: server_head.seq,
                },
            });
            return;
        };
        let matches = hex::decode(&server_head.hash).is_some_and(|h| h == hash);
        if let Some((before, end)) = self.ambiguous_end {
            // The break just before the last line: the head says which side.
            let culprit = if matches && line == before {
                Some((end, Evidence::OwnPrev { next_line: None }))
            } else if !matches && line == end {
                Some((end, Evidence::ServerHead))
            } else {
                None
            };
            if let Some((end, evidence)) = culprit {
                self.ambiguous_end = None;
                self.findings.retain(|f| {
                    !(f.line == before
                        && matches!(f.problem, Problem::Altered(Evidence::NextPrev { .. })))
                });
                self.add(Finding {
                    line: end,
                    seq: Some(last.seq),
                    problem: Problem::Altered(evidence),
                });
                return;
            }
        }
        if !matches && !self.findings.iter().any(|f| f.line == line) {
            self.add(Finding {
                line,
                seq: Some(seq),
                problem: Problem::Altered(Evidence::ServerHead),
            });
        }
    }

    /// Records that the root of trust rejected `checkpoints[claim_index]`.
    pub fn mark_bad_mac(&mut self, claim_index: usize) {
        if let Some(claim) = self.checkpoints.get(claim_index) {
            let finding = Finding {
                line: claim.line,
                seq: Some(claim.seq),
                problem: Problem::BadMac,
            };
            self.add(finding);
        }
    }

    /// True if every line is covered by a checkpoint MAC: the log has a
    /// checkpoint and nothing follows the last one. Judged apart from
    /// [`Scan::ok`] because a live log's newest lines wait for the next one.
    pub fn sealed(&self) -> bool {
        !self.checkpoints.is_empty()
            && !self
                .findings
                .iter()
                .any(|f| matches!(f.problem, Problem::UnsealedTail { .. }))
    }

    /// True if the chain is intact: nothing but an unsealed tail
    /// ([`Problem::UnsealedTail`], see [`Scan::sealed`]) was found.
    pub fn ok(&self) -> bool {
        self.findings
            .iter()
            .all(|f| matches!(f.problem, Problem::UnsealedTail { .. }))
    }

    fn add(&mut self, finding: Finding) {
        let at = self.findings.partition_point(|f| f.line <= finding.line);
        self.findings.insert(at, finding);
    }
}

/// Reads a whole audit file.
pub fn scan(mut reader: impl BufRead) -> io::Result<Scan> {
    let mut scanner = Scanner::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            scanner.push(&buf);
        } else {
            scanner.torn();
        }
    }
    Ok(scanner.finish())
}

struct Line {
    number: u64,
    hash: LineHash,
    parsed: Result<Parsed, String>,
}

impl Line {
    fn prev(&self) -> Option<LineHash> {
        self.parsed.as_ref().ok().map(|p| p.prev)
    }
}

/// The end of the chain as judged so far.
#[derive(Clone)]
struct Pred {
    seq: u64,
    hash: LineHash,
    line: Option<u64>,
    /// Already reported as altered, so the break after it is explained.
    blamed: bool,
}

struct Scanner {
    scan: Scan,
    pred: Pred,
    /// The chain end before `pred`, to take `pred` back if it turns out to
    /// be a forged line.
    before_pred: Option<Pred>,
    /// The line waiting for its successor before it can be judged.
    pending: Option<Line>,
    /// The pending line was judged together with the one before it.
    skip_pending: bool,
    /// First chain line after the last checkpoint: (line, seq).
    unsealed: Option<(u64, u64)>,
}

impl Scanner {
    fn new() -> Self {
        Scanner {
            scan: Scan {
                lines: 0,
                records: 0,
                findings: Vec::new(),
                checkpoints: Vec::new(),
                last: None,
                last_line: 0,
                recent: VecDeque::new(),
                ambiguous_end: None,
            },
            pred: Pred {
                seq: 0,
                hash: genesis_prev(),
                line: None,
                blamed: false,
            },
            before_pred: None,
            pending: None,
            skip_pending: false,
            unsealed: None,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.scan.lines += 1;
        let line = Line {
            number: self.scan.lines,
            hash: line_hash(bytes),
            parsed: parse_line(bytes),
        };
        if let Ok(parsed) = &line.parsed {
            if parsed.kind == Kind::Request {
                self.scan.records += 1;
            }
            if let Some((mac, key_id)) = &parsed.checkpoint {
                self.scan.checkpoints.push(CheckpointClaim {
                    line: line.number,
                    seq: parsed.seq,
                    message: checkpoint_message(parsed.seq, &parsed.prev),
                    mac: mac.clone(),
                    key_id: key_id.clone(),
                });
            }
        }
        self.judge_pending(Some(&line));
        self.pending = Some(line);
    }

    fn torn(&mut self) {
        self.scan.lines += 1;
        self.judge_pending(None);
        self.scan.add(Finding {
            line: self.scan.lines,
            seq: None,
            problem: Problem::TornTail,
        });
    }

    fn finish(mut self) -> Scan {
        self.judge_pending(None);
        if let Some((line, seq)) = self.unsealed {
            self.scan.add(Finding {
                line,
                seq: Some(seq),
                problem: Problem::UnsealedTail { from_seq: seq },
            });
        }
        if let Some(line) = self.pred.line {
            self.scan.last = Some(Head {
                seq: self.pred.seq,
                hash: hex::encode(&self.pred.hash),
            });
            self.scan.last_line = line;
        }
        self.scan
    }

    fn judge_pending(&mut self, next: Option<&Line>) {
        if let Some(line) = self.pending.take() {
            if std::mem::take(&mut self.skip_pending) {
                return;
            }
            self.judge(&line, next);
        }
    }

    fn report(&mut self, line: u64, seq: Option<u64>, problem: Problem) {
        self.scan.add(Finding { line, seq, problem });
    }

    /// Makes `line` the end of the chain.
    fn accept(&mut self, line: &Line, seq: u64, blamed: bool) {
        let pred = Pred {
            seq,
            hash: line.hash,
            line: Some(line.number),
            blamed,
        };
        self.before_pred = Some(std::mem::replace(&mut self.pred, pred));
        let is_checkpoint = matches!(&line.parsed, Ok(p) if p.kind == Kind::Checkpoint);
        if is_checkpoint {
            self.unsealed = None;
        } else {
            self.unsealed.get_or_insert((line.number, seq));
        }
        if self.scan.recent.len() == RECENT {
            self.scan.recent.pop_front();
        }
        self.scan.recent.push_back((seq, line.hash, line.number));
    }

    fn judge(&mut self, line: &Line, next: Option<&Line>) {
        let expected = self.pred.seq + 1;
        let next_links_pred = next.and_then(Line::prev) == Some(self.pred.hash);
        let p = match &line.parsed {
            Err(why) => {
                self.report(line.number, None, Problem::Malformed(why.clone()));
                // Unless it was slipped in between two lines, it stands for
                // the record that should be here.
                if !next_links_pred {
                    self.accept(line, expected, true);
                }
                return;
            }
            Ok(p) => p,
        };
        let seq = Some(p.seq);
        if p.prev == self.pred.hash {
            if p.seq == expected {
                self.accept(line, p.seq, false);
            } else {
                self.report(
                    line.number,
                    seq,
                    Problem::Altered(Evidence::Seq {
                        expected_seq: expected,
                    }),
                );
                self.accept(line, expected, true);
            }
            return;
        }
        if let Some(next) = next
            && let Ok(n) = &next.parsed
            && p.seq == expected + 1
            && n.seq == expected
            && n.prev == self.pred.hash
            && p.prev == next.hash
        {
            let (first, second) = (expected + 1, expected);
            self.report(
                line.number,
                seq,
                Problem::OutOfOrder {
                    expected_seq: second,
                    found_seq: first,
                },
            );
            self.report(
                next.number,
                Some(second),
                Problem::OutOfOrder {
                    expected_seq: first,
                    found_seq: second,
                },
            );
            self.accept(next, second, false);
            self.accept(line, first, false);
            self.skip_pending = true;
            return;
        }
        if next_links_pred {
            self.report(line.number, seq, Problem::Inserted);
            return;
        }
        // A forged line with a correct prev is accepted at first; the line
        // after it then links past it.
        if let (Some(before), Some(forged)) = (self.before_pred.clone(), self.pred.line)
            && p.prev == before.hash
            && p.seq == before.seq + 1
        {
            self.report(forged, Some(self.pred.seq), Problem::Inserted);
            self.scan.recent.pop_back();
            self.pred = before;
            self.before_pred = None;
            self.accept(line, p.seq, false);
            return;
        }
        if p.seq > expected {
            self.report(
                line.number,
                seq,
                Problem::Missing {
                    expected_seq: expected,
                    found_seq: p.seq,
                },
            );
            self.accept(line, p.seq, false);
            return;
        }
        if p.seq < expected {
            self.report(
                line.number,
                seq,
                Problem::OutOfOrder {
                    expected_seq: expected,
                    found_seq: p.seq,
                },
            );
            self.accept(line, self.pred.seq, true);
            return;
        }
        if self.pred.blamed {
            self.accept(line, p.seq, false);
            return;
        }
        let next_links_this = next.map(|n| n.prev() == Some(line.hash));
        match self.pred.line {
            Some(before) if next_links_this != Some(false) => {
                self.report(
                    before,
                    Some(self.pred.seq),
                    Problem::Altered(Evidence::NextPrev {
                        next_line: line.number,
                    }),
                );
                if next.is_none() {
                    self.scan.ambiguous_end = Some((before, line.number));
                }
                self.accept(line, p.seq, false);
            }
            _ => {
                let next_line = next
                    .filter(|_| next_links_this == Some(false))
                    .map(|n| n.number);
                self.report(
                    line.number,
                    seq,
                    Problem::Altered(Evidence::OwnPrev { next_line }),
                );
                self.accept(line, p.seq, true);
            }
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "line {} (record {seq}): {}", self.line, self.problem),
            None => write!(f, "line {}: {}", self.line, self.problem),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Malformed(why) => write!(f, "malformed — {why}"),
            Problem::Altered(evidence) => write!(f, "altered — {evidence}"),
            Problem::Missing {
                expected_seq,
                found_seq,
            } if found_seq - expected_seq == 1 => {
                write!(
                    f,
                    "missing — record {expected_seq} should come before this line"
                )
            }
            Problem::Missing {
                expected_seq,
                found_seq,
            } => write!(
                f,
                "missing — records {expected_seq} to {} should come before this line",
                found_seq - 1
            ),
            Problem::OutOfOrder { expected_seq, .. } => {
                write!(f, "out of order — record {expected_seq} belongs here")
            }
            Problem::Inserted => write!(
                f,
                "inserted — the chain goes from the line before to the line after it"
            ),
            Problem::TornTail => write!(
                f,
                "torn — the last line has no newline (incomplete write or edit)"
            ),
            Problem::UnsealedTail { from_seq } => write!(
                f,
                "unsealed tail — records from {from_seq} on are not covered by a checkpoint MAC"
            ),
            Problem::BadMac => write!(
                f,
                "bad checkpoint MAC — the log up to here was rewritten, or the key is wrong"
            ),
            Problem::Truncated {
                file_ends_at,
                server_head,
            } => write!(
                f,
                "truncated — the file ends at record {file_ends_at} but the server's head is record {server_head}"
            ),
            Problem::HeadNotChecked { server_head } => write!(
                f,
                "server head (record {server_head}) not checked — it is older than the last {RECENT} records; \
                 take the head right before scanning"
            ),
        }
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Evidence::NextPrev { next_line } => {
                write!(f, "its hash does not match line {next_line}'s prev")
            }
            Evidence::OwnPrev {
                next_line: Some(next),
            } => write!(
                f,
                "its prev does not match the line before it, and its hash does not match line {next}'s prev"
            ),
            Evidence::OwnPrev { next_line: None } => {
                write!(f, "its prev does not match the line before it")
            }
            Evidence::Seq { expected_seq } => write!(
                f,
                "it links to the line before it but its seq should be {expected_seq}"
            ),
            Evidence::ServerHead => write!(f, "its hash does not match the server's head"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{AuditEvent, Body, Outcome, encode};
    use crate::audit::test_support::{KEY_ID, fake_mac};

    /// A log as the writer makes it: a start line, `records` requests with a
    /// checkpoint after every `every`, and a closing checkpoint.
    fn build(records: u64, every: u64, close: bool) -> Vec<Vec<u8>> {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut prev = genesis_prev();
        let push = |lines: &mut Vec<Vec<u8>>, body: Body<'_>, prev: &mut LineHash| {
            let seq = lines.len() as u64 + 1;
            let line = encode(seq, 1_796_011_200_000 + seq as i64, None, prev, body).unwrap();
            *prev = line_hash(&line);
            lines.push(line);
        };
        let checkpoint = |lines: &mut Vec<Vec<u8>>, prev: &mut LineHash, records| {
            let mac = fake_mac(KEY_ID, &checkpoint_message(lines.len() as u64 + 1, prev));
            let body = Body::Checkpoint {
                mac: &mac,
                key: KEY_ID,
                records,
            };
            push(lines, body, prev);
        };
        push(&mut lines, Body::Start { reason: "new file" }, &mut prev);
        let mut unsealed = 0;
        for i in 0..records {
            let event = AuditEvent {
                request_id: format!("req-{i}"),
                api: "aws-json",
                principal: "keyward:principal/app".into(),
                source: "127.0.0.1:5000".into(),
                action: "secretsmanager:GetSecretValue".into(),
                resource: "*".into(),
                outcome: Outcome::Success,
                duration_us: 1000 + i,
                ..AuditEvent::default()
            };
            push(&mut lines, Body::Request(&event), &mut prev);
            unsealed += 1;
            if unsealed == every {
                checkpoint(&mut lines, &mut prev, unsealed);
                unsealed = 0;
            }
        }
        if close && unsealed > 0 {
            checkpoint(&mut lines, &mut prev, unsealed);
        }
        lines
    }

    fn join(lines: &[Vec<u8>]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| l.iter().copied().chain([b'\n']))
            .collect()
    }

    fn head(lines: &[Vec<u8>]) -> Head {
        let last = lines.last().unwrap();
        Head {
            seq: parse_line(last).unwrap().seq,
            hash: hex::encode(&line_hash(last)),
        }
    }

    /// Everything a verifier does: the chain, the MACs, and the head.
    fn verify(bytes: &[u8], server_head: Option<&Head>) -> Scan {
        let mut scan = scan(bytes).unwrap();
        for i in 0..scan.checkpoints.len() {
            let claim = &scan.checkpoints[i];
            if fake_mac(&claim.key_id, &claim.message) != claim.mac {
                scan.mark_bad_mac(i);
            }
        }
        if let Some(h) = server_head {
            scan.check_head(h);
        }
        scan
    }

    /// (line, problem) of every failure, warnings left out.
    fn failures(scan: &Scan) -> Vec<(u64, Problem)> {
        scan.findings
            .iter()
            .filter(|f| !matches!(f.problem, Problem::UnsealedTail { .. }))
            .map(|f| (f.line, f.problem.clone()))
            .collect()
    }

    fn edit(lines: &mut [Vec<u8>], line: usize, from: &str, to: &str) {
        let text = String::from_utf8(lines[line - 1].clone()).unwrap();
        assert!(text.contains(from), "{text}");
        lines[line - 1] = text.replacen(from, to, 1).into_bytes();
    }

    fn prev_field(line: &[u8]) -> String {
        let text = std::str::from_utf8(line).unwrap();
        let at = text.find(r#""prev":""#).unwrap() + 8;
        text[at..at + 64].to_string()
    }

    // Layout of build(10, 4, true):
    // 1 S, 2-5 r, 6 C, 7-10 r, 11 C, 12-13 r, 14 C
    fn sample() -> Vec<Vec<u8>> {
        build(10, 4, true)
    }

    #[test]
    fn a_clean_log_passes() {
        let lines = sample();
        let scan = verify(&join(&lines), Some(&head(&lines)));
        assert!(scan.findings.is_empty(), "{:?}", scan.findings);
        assert!(scan.ok() && scan.sealed());
        assert_eq!((scan.lines, scan.records), (14, 10));
        assert_eq!(scan.last, Some(head(&lines)));
        let claimed: Vec<_> = scan.checkpoints.iter().map(|c| (c.line, c.seq)).collect();
        assert_eq!(claimed, [(6, 6), (11, 11), (14, 14)]);
        assert_eq!(
            scan.checkpoints[0].message,
            checkpoint_message(6, &line_hash(&lines[4]))
        );
    }

    #[test]
    fn an_empty_file_is_fine_unless_the_server_wrote_something() {
        let mut scan = scan(&b""[..]).unwrap();
        assert!(scan.ok() && scan.last.is_none());
        assert!(!scan.sealed(), "no checkpoint seals an empty file");
        scan.check_head(&Head {
            seq: 3,
            hash: String::new(),
        });
        assert_eq!(
            failures(&scan),
            [(
                1,
                Problem::Truncated {
                    file_ends_at: 0,
                    server_head: 3
                }
            )]
        );
    }

    #[test]
    fn an_edit_that_keeps_valid_json_is_located() {
        let mut lines = sample();
        edit(&mut lines, 3, "principal/app", "principal/adm");
        let scan = verify(&join(&lines), Some(&head(&sample())));
        assert_eq!(
            failures(&scan),
            [(3, Problem::Altered(Evidence::NextPrev { next_line: 4 }))]
        );
        assert_eq!(
            scan.findings[0].to_string(),
            "line 3 (record 3): altered — its hash does not match line 4's prev"
        );
    }

    #[test]
    fn an_edit_that_breaks_the_json_is_located() {
        let mut lines = sample();
        edit(
            &mut lines,
            8,
            r#""outcome":"success""#,
            r#""outcome":"success"#,
        );
        let scan = verify(&join(&lines), Some(&head(&lines)));
        let found = failures(&scan);
        assert!(
            matches!(found.as_slice(), [(8, Problem::Malformed(_))]),
            "{found:?}"
        );
    }

    #[test]
    fn an_edited_seq_is_located() {
        let mut lines = sample();
        edit(&mut lines, 4, r#"{"seq":4,"#, r#"{"seq":9,"#);
        let scan = verify(&join(&lines), None);
        assert_eq!(
            failures(&scan),
            [(4, Problem::Altered(Evidence::Seq { expected_seq: 4 }))]
        );
    }

    #[test]
    fn an_edited_prev_is_blamed_on_its_own_line() {
        let mut lines = sample();
        let prev = prev_field(&lines[6]);
        let forged = format!(
            "{}{}",
            &prev[..63],
            if prev.ends_with('0') { "1" } else { "0" }
        );
        edit(&mut lines, 7, &prev, &forged);
        let scan = verify(&join(&lines), None);
        assert_eq!(
            failures(&scan),
            [(
                7,
                Problem::Altered(Evidence::OwnPrev { next_line: Some(8) })
            )]
        );
    }

    #[test]
    fn a_deleted_record_is_located() {
        let mut lines = sample();
        lines.remove(3); // record 4
        let scan = verify(&join(&lines), Some(&head(&lines)));
        assert_eq!(
            failures(&scan),
            [(
                4,
                Problem::Missing {
                    expected_seq: 4,
                    found_seq: 5
                }
            )]
        );
        assert_eq!(
            scan.findings[0].to_string(),
            "line 4 (record 5): missing — record 4 should come before this line"
        );
    }

    #[test]
    fn deleting_the_first_lines_is_seen() {
        let mut lines = sample();
        lines.drain(..2);
        let scan = verify(&join(&lines), None);
        assert_eq!(
            failures(&scan),
            [(
                1,
                Problem::Missing {
                    expected_seq: 1,
                    found_seq: 3
                }
            )]
        );
    }

    #[test]
    fn swapped_records_are_located() {
        let mut lines = sample();
        lines.swap(7, 8); // records 8 and 9
        let scan = verify(&join(&lines), Some(&head(&lines)));
        assert_eq!(
            failures(&scan),
            [
                (
                    8,
                    Problem::OutOfOrder {
                        expected_seq: 8,
                        found_seq: 9
                    }
                ),
                (
                    9,
                    Problem::OutOfOrder {
                        expected_seq: 9,
                        found_seq: 8
                    }
                ),
            ]
        );
    }

    #[test]
    fn swapping_the_last_two_lines_is_located() {
        let original = sample();
        let mut lines = original.clone();
        lines.swap(12, 13);
        let scan = verify(&join(&lines), Some(&head(&original)));
        assert_eq!(
            failures(&scan),
            [
                (
                    13,
                    Problem::OutOfOrder {
                        expected_seq: 13,
                        found_seq: 14
                    }
                ),
                (
                    14,
                    Problem::OutOfOrder {
                        expected_seq: 14,
                        found_seq: 13
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_forged_line_with_a_made_up_prev_is_located() {
        let mut lines = sample();
        let mut forged = lines[3].clone();
        let text = String::from_utf8(forged).unwrap();
        forged = text
            .replacen(&prev_field(&lines[3]), &hex::encode(&[0x5a; 32]), 1)
            .replacen("keyward:principal/app", "keyward:principal/mallory", 1)
            .into_bytes();
        lines.insert(4, forged); // between records 4 and 5, claiming seq 4
        let scan = verify(&join(&lines), Some(&head(&lines)));
        assert_eq!(failures(&scan), [(5, Problem::Inserted)]);
    }

    #[test]
    fn a_forged_line_with_a_correct_prev_is_located() {
        let mut lines = sample();
        // Claims to be record 5 and chains to record 4, as the real one does.
        let forged = String::from_utf8(lines[4].clone())
            .unwrap()
            .replacen("req-3", "req-x", 1)
            .into_bytes();
        lines.insert(4, forged);
        let scan = verify(&join(&lines), Some(&head(&lines)));
        assert_eq!(failures(&scan), [(5, Problem::Inserted)]);
    }

    #[test]
    fn a_forged_line_appended_at_the_end_is_located_with_the_head() {
        let original = sample();
        let mut lines = original.clone();
        let forged = String::from_utf8(lines[12].clone())
            .unwrap()
            .replacen(r#"{"seq":13,"#, r#"{"seq":15,"#, 1)
            .into_bytes();
        lines.push(forged);
        let scan = verify(&join(&lines), Some(&head(&original)));
        assert_eq!(
            failures(&scan),
            [(15, Problem::Altered(Evidence::OwnPrev { next_line: None }))]
        );
    }

    #[test]
    fn a_cut_off_tail_shows_as_unsealed_and_against_the_head() {
        let original = sample();
        let server = head(&original);
        // Cut after record 13: lines 12-13 are unsealed.
        let lines = &original[..13];
        let scan = verify(&join(lines), None);
        assert!(scan.ok(), "the chain is intact without the head");
        assert!(!scan.sealed(), "but its tail is unsealed");
        assert_eq!(
            scan.findings,
            [Finding {
                line: 12,
                seq: Some(12),
                problem: Problem::UnsealedTail { from_seq: 12 }
            }]
        );
        let scan = verify(&join(lines), Some(&server));
        assert!(!scan.ok());
        assert_eq!(
            failures(&scan),
            [(
                14,
                Problem::Truncated {
                    file_ends_at: 13,
                    server_head: 14
                }
            )]
        );

        // Cut right after a checkpoint: only the head can tell.
        let lines = &original[..11];
        assert!(verify(&join(lines), None).findings.is_empty());
        let scan = verify(&join(lines), Some(&server));
        assert_eq!(
            failures(&scan),
            [(
                12,
                Problem::Truncated {
                    file_ends_at: 11,
                    server_head: 14
                }
            )]
        );
        assert_eq!(
            scan.findings[0].to_string(),
            "line 12 (record 12): truncated — the file ends at record 11 but the server's head is record 14"
        );
    }

    #[test]
    fn a_torn_last_line_is_located() {
        let lines = sample();
        let mut bytes = join(&lines);
        bytes.truncate(bytes.len() - 20);
        let scan = verify(&bytes, None);
        assert_eq!(failures(&scan), [(14, Problem::TornTail)]);
        assert_eq!(scan.lines, 14);
        assert_eq!(scan.last.as_ref().map(|h| h.seq), Some(13));
    }

    #[test]
    fn an_edit_to_the_last_line_needs_the_head() {
        let original = sample();
        let mut lines = original.clone();
        edit(&mut lines, 14, r#""records":2"#, r#""records":3"#);
        assert!(
            verify(&join(&lines), None).ok(),
            "nothing after it to break"
        );
        let scan = verify(&join(&lines), Some(&head(&original)));
        assert_eq!(
            failures(&scan),
            [(14, Problem::Altered(Evidence::ServerHead))]
        );
    }

    #[test]
    fn a_break_before_the_last_line_is_placed_by_the_head() {
        let original = build(5, 100, false); // ends with a request line
        let mut lines = original.clone();
        let prev = prev_field(&lines[5]);
        edit(&mut lines, 6, &prev, &hex::encode(&[1; 32]));
        let scan = verify(&join(&lines), None);
        // Alone, the break could be either line's fault.
        assert_eq!(
            failures(&scan),
            [(5, Problem::Altered(Evidence::NextPrev { next_line: 6 }))]
        );
        let scan = verify(&join(&lines), Some(&head(&original)));
        assert_eq!(
            failures(&scan),
            [(6, Problem::Altered(Evidence::ServerHead))]
        );

        // Same break, but the last line is intact: the head confirms it.
        let mut lines = original.clone();
        edit(&mut lines, 5, "req-3", "req-9");
        let scan = verify(&join(&lines), Some(&head(&original)));
        assert_eq!(
            failures(&scan),
            [(5, Problem::Altered(Evidence::NextPrev { next_line: 6 }))]
        );
    }

    #[test]
    fn an_edit_to_a_checkpoint_is_caught_by_chain_and_mac() {
        let mut lines = sample();
        let mac = hex::encode(&fake_mac(
            KEY_ID,
            &checkpoint_message(6, &line_hash(&lines[4])),
        ));
        let forged = format!(
            "{}{}",
            &mac[..63],
            if mac.ends_with('0') { "1" } else { "0" }
        );
        edit(&mut lines, 6, &mac, &forged);
        let scan = verify(&join(&lines), Some(&head(&lines)));
        assert_eq!(
            failures(&scan),
            [
                (6, Problem::Altered(Evidence::NextPrev { next_line: 7 })),
                (6, Problem::BadMac),
            ]
        );
    }

    /// Rewrites every `prev` so the chain is consistent again.
    fn rechain(lines: &mut [Vec<u8>]) {
        let mut prev = genesis_prev();
        for line in lines.iter_mut() {
            let old = prev_field(line);
            let text = String::from_utf8(line.clone()).unwrap();
            *line = text.replacen(&old, &hex::encode(&prev), 1).into_bytes();
            prev = line_hash(line);
        }
    }

    #[test]
    fn a_rewritten_log_with_recomputed_hashes_is_caught_only_by_the_mac() {
        let mut lines = sample();
        lines.remove(8); // drop record 9 ...
        for (i, line) in lines.iter_mut().enumerate().skip(8) {
            // ... renumber the rest ...
            let text = String::from_utf8(line.clone()).unwrap();
            let seq = parse_line(line).unwrap().seq;
            *line = text
                .replacen(
                    &format!(r#"{{"seq":{seq},"#),
                    &format!(r#"{{"seq":{},"#, i + 1),
                    1,
                )
                .into_bytes();
        }
        edit(&mut lines, 3, "principal/app", "principal/adm"); // ... and change one
        rechain(&mut lines);

        let chain_only = scan(&join(&lines)[..]).unwrap();
        assert!(chain_only.findings.is_empty(), "{:?}", chain_only.findings);
        assert!(chain_only.ok());

        let scan = verify(&join(&lines), None);
        assert!(!scan.ok());
        // Every checkpoint after the change covers a rewritten prev.
        assert_eq!(
            failures(&scan),
            [
                (6, Problem::BadMac),
                (10, Problem::BadMac),
                (13, Problem::BadMac)
            ]
        );
    }

    #[test]
    fn a_head_taken_while_the_log_grew_is_checked() {
        let lines = sample();
        let earlier = head(&lines[..9]);
        let scan = verify(&join(&lines), Some(&earlier));
        assert!(scan.findings.is_empty(), "{:?}", scan.findings);

        // A rechained rewrite passes the chain; the head still sees it,
        // even though the file has grown past it.
        let mut altered = lines.clone();
        edit(&mut altered, 9, "req-6", "req-7");
        rechain(&mut altered);
        let mut scan = super::scan(&join(&altered)[..]).unwrap();
        assert!(scan.ok());
        scan.check_head(&earlier);
        assert_eq!(
            failures(&scan),
            [(9, Problem::Altered(Evidence::ServerHead))]
        );
    }

    #[test]
    fn a_head_older_than_the_scan_keeps_is_reported() {
        let lines = build(RECENT as u64 + 10, 1000, true);
        let scan = verify(&join(&lines), Some(&head(&lines[..5])));
        assert!(!scan.ok());
        assert!(matches!(
            failures(&scan).as_slice(),
            [(_, Problem::HeadNotChecked { server_head: 5 })]
        ));
    }

    /// Flips one bit of every byte in turn: each edit must fail the check
    /// and be reported at the line that was edited.
    #[test]
    fn every_single_byte_edit_is_detected_and_located() {
        let lines = build(4, 2, true); // S r r C r r C — every kind of line
        let original = join(&lines);
        let server = head(&lines);
        for at in 0..original.len() {
            let mut bytes = original.clone();
            bytes[at] ^= 1;
            let line = 1 + original[..at].iter().filter(|&&b| b == b'\n').count() as u64;
            let scan = verify(&bytes, Some(&server));
            let found = failures(&scan);
            let what = format!(
                "byte {at} ({:?} -> {:?}) on line {line}: {found:?}",
                char::from(original[at]),
                char::from(bytes[at])
            );
            assert!(!scan.ok(), "undetected: {what}");
            if original[at] == b'\n' {
                // Two lines became one; what follows is shifted.
                assert_eq!(found[0].0, line, "{what}");
            } else {
                assert!(found.iter().all(|(l, _)| *l == line), "misplaced: {what}");
            }
        }
    }
}
