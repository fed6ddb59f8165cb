//! `/results` back through a task's log stream.
//!
//! A swarm task's files cannot be copied out through the manager, so the task wrapper
//! (see [`super::layer`]) prints them after the suite's tool has exited: a line
//! `<nonce> begin`, the tar of `/results` in base64 lines, and a line `<nonce> end <status>`,
//! on stdout. [`Deframer`] splits the stream back into the tool's own output, which goes on
//! to the log as if nothing had been added, and the tar.
//!
//! The nonce is random per attempt, so the tool cannot end its output early by accident; a
//! tool that goes looking for it (it runs in the same container) can forge only what it could
//! already write to `/results`. Everything in the frame is untrusted like any result: the tar
//! goes to the same extractor, with its caps.

use base64::Engine as _;
use bytes::Bytes;

/// Longest line kept inside a frame (the wrapper's are 76 characters).
const MAX_FRAME_LINE: usize = 64 * 1024;

/// What the deframer hands on, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The tool's own stdout.
    Output(Bytes),
    /// The frame ended: the wrapper packed `/results` with this exit status (0: all of it),
    /// and the task's memory cgroup had counted this many OOM kills.
    Ended { tar_status: i32, oom_kills: u64 },
}

/// Splits stdout into the tool's output and the framed results tar.
#[derive(Debug)]
pub struct Deframer {
    begin: Vec<u8>,
    end: Vec<u8>,
    state: State,
    /// Bytes not yet known to be output (they may start the begin line) or, in the frame,
    /// an unfinished line.
    pending: Vec<u8>,
    /// The decoded tar, up to `max_tar` bytes.
    tar: Vec<u8>,
    max_tar: usize,
    overflowed: bool,
    /// A base64 line that did not decode.
    corrupt: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Output,
    Frame,
    Done,
}

/// What the frame held, once the stream is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// The tar of `/results`.
    Tar(Bytes),
    /// No frame came: the wrapper never got that far (killed, never started).
    Missing,
    /// The frame began but did not end.
    Cut,
    /// The wrapper could not pack everything (`tar` exited with this status).
    PackFailed { status: i32 },
    /// More than the cap.
    TooLarge { limit: usize },
    /// A line of the frame was not base64.
    Corrupt,
}

impl Deframer {
    /// `nonce`: the attempt's marker, `[A-Za-z0-9]` only; `max_tar`: most bytes of tar kept.
    pub fn new(nonce: &str, max_tar: usize) -> Self {
        Deframer {
            begin: format!("\n{nonce} begin\n").into_bytes(),
            end: format!("{nonce} end ").into_bytes(),
            state: State::Output,
            pending: Vec::new(),
            tar: Vec::new(),
            max_tar,
            overflowed: false,
            corrupt: false,
        }
    }

    /// Whether the end line has been seen: nothing the task prints after it matters.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds a chunk of stdout; returns what can be handed on now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        match self.state {
            State::Output => self.push_output(chunk, &mut out),
            State::Frame => self.push_frame(chunk, &mut out),
            State::Done => {}
        }
        out
    }

    /// The stream ended: whatever was held back as a possible marker is output after all.
    pub fn finish(&mut self) -> Vec<Piece> {
        match self.state {
            State::Output if !self.pending.is_empty() => {
                vec![Piece::Output(Bytes::from(std::mem::take(
                    &mut self.pending,
                )))]
            }
            _ => Vec::new(),
        }
    }

    /// What the frame held; call after [`Deframer::finish`] or once [`Deframer::done`].
    pub fn into_framed(self, tar_status: Option<i32>) -> Framed {
        match (self.state, tar_status) {
            (State::Output, _) => Framed::Missing,
            (State::Frame, _) | (State::Done, None) => Framed::Cut,
            _ if self.overflowed => Framed::TooLarge {
                limit: self.max_tar,
            },
            _ if self.corrupt => Framed::Corrupt,
            (State::Done, Some(0)) => Framed::Tar(Bytes::from(self.tar)),
            (State::Done, Some(status)) => Framed::PackFailed { status },
        }
    }

    fn push_output(&mut self, chunk: &[u8], out: &mut Vec<Piece>) {
        self.pending.extend_from_slice(chunk);
        if let Some(at) = find(&self.pending, &self.begin) {
            let rest = self.pending.split_off(at + self.begin.len());
            self.pending.truncate(at);
            if !self.pending.is_empty() {
                out.push(Piece::Output(Bytes::from(std::mem::take(
                    &mut self.pending,
                ))));
            }
            self.state = State::Frame;
            self.push_frame(&rest, out);
            return;
        }
        // Keep back only what could still be the start of the begin line.
        let keep = longest_prefix_suffix(&self.pending, &self.begin);
        let emit = self.pending.len() - keep;
        if emit > 0 {
            let tail = self.pending.split_off(emit);
            out.push(Piece::Output(Bytes::from(std::mem::replace(
                &mut self.pending,
                tail,
            ))));
        }
    }

    fn push_frame(&mut self, chunk: &[u8], out: &mut Vec<Piece>) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = &self.pending[start..start + nl];
            start += nl + 1;
            if let Some(rest) = line.strip_prefix(self.end.as_slice()) {
                let text = String::from_utf8_lossy(rest);
                let mut fields = text.split_whitespace();
                let tar_status = fields.next().and_then(|s| s.parse().ok()).unwrap_or(-1);
                let oom_kills = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                self.state = State::Done;
                self.pending.clear();
                out.push(Piece::Ended {
                    tar_status,
                    oom_kills,
                });
                return;
            }
            let line = line.to_vec();
            self.decode_line(&line);
        }
        self.pending.drain(..start);
        // A frame's lines are short; an endless one (a tool that found the nonce and
        // forged a frame) must not grow without bound here.
        if self.pending.len() > MAX_FRAME_LINE {
            self.corrupt = true;
            self.pending.clear();
        }
    }

    fn decode_line(&mut self, line: &[u8]) {
        if self.overflowed || self.corrupt || line.is_empty() {
            return;
        }
        match base64::engine::general_purpose::STANDARD.decode(line) {
            Ok(bytes) if self.tar.len() + bytes.len() <= self.max_tar => {
                self.tar.extend_from_slice(&bytes);
            }
            Ok(_) => {
                self.overflowed = true;
                self.tar = Vec::new();
            }
            Err(_) => self.corrupt = true,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The length of the longest suffix of `data` that is a proper prefix of `pattern`.
fn longest_prefix_suffix(data: &[u8], pattern: &[u8]) -> usize {
    let most = data.len().min(pattern.len() - 1);
    (1..=most)
        .rev()
        .find(|&n| data[data.len() - n..] == pattern[..n])
        .unwrap_or(0)
}

/// A fresh nonce: 24 characters of `[a-z0-9]`.
pub fn nonce() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 24];
    // Without randomness a run cannot frame safely; the OS always has some.
    getrandom::fill(&mut raw).expect("the OS has no randomness to give");
    raw.iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "n0nce";

    fn framed(tool: &[u8], tar: &[u8], status: i32) -> Vec<u8> {
        let mut all = tool.to_vec();
        all.extend_from_slice(format!("\n{NONCE} begin\n").as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(tar);
        for line in b64.as_bytes().chunks(76) {
            all.extend_from_slice(line);
            all.push(b'\n');
        }
        all.extend_from_slice(format!("{NONCE} end {status}\n").as_bytes());
        all
    }

    /// Feeds `stream` in chunks of `size` and collects the output and the frame.
    fn run(stream: &[u8], size: usize, max: usize) -> (Vec<u8>, Framed) {
        let mut d = Deframer::new(NONCE, max);
        let mut output = Vec::new();
        let mut status = None;
        for chunk in stream.chunks(size) {
            for piece in d.push(chunk) {
                match piece {
                    Piece::Output(b) => output.extend_from_slice(&b),
                    Piece::Ended { tar_status, .. } => status = Some(tar_status),
                }
            }
        }
        for piece in d.finish() {
            if let Piece::Output(b) = piece {
                output.extend_from_slice(&b);
            }
        }
        (output, d.into_framed(status))
    }

    #[test]
    fn the_tools_output_and_the_tar_come_apart_whatever_the_chunking() {
        let tar: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let stream = framed(b"line one\nno newline at the end", &tar, 0);
        for size in [1, 2, 3, 7, 64, 1000, stream.len()] {
            let (output, frame) = run(&stream, size, 1 << 20);
            assert_eq!(
                output, b"line one\nno newline at the end",
                "chunk size {size}"
            );
            assert_eq!(frame, Framed::Tar(tar.clone().into()), "chunk size {size}");
        }
    }

    #[test]
    fn output_that_only_looks_like_a_marker_stays_output() {
        let tool = b"\nn0nc\nn0nce begun\nn0nce begin"; // no newline after `begin`
        let (output, frame) = run(tool, 3, 1 << 20);
        assert_eq!(output, tool);
        assert_eq!(frame, Framed::Missing);
    }

    #[test]
    fn a_frame_that_never_ends_is_cut_and_a_failed_pack_is_reported() {
        let mut stream = framed(b"x", b"tar", 0);
        stream.truncate(stream.len() - 12);
        assert_eq!(run(&stream, 5, 1 << 20).1, Framed::Cut);
        let stream = framed(b"x", b"tar", 1);
        assert_eq!(run(&stream, 5, 1 << 20).1, Framed::PackFailed { status: 1 });
    }

    #[test]
    fn a_tar_over_the_cap_is_refused_and_not_kept() {
        let tar = vec![7u8; 10_000];
        let (_, frame) = run(&framed(b"", &tar, 0), 100, 9_999);
        assert_eq!(frame, Framed::TooLarge { limit: 9_999 });
        let (_, frame) = run(&framed(b"", &tar, 0), 100, 10_000);
        assert_eq!(frame, Framed::Tar(tar.into()));
    }

    #[test]
    fn the_end_line_carries_the_oom_kills() {
        let mut d = Deframer::new(NONCE, 1 << 20);
        let pieces = d.push(format!("\n{NONCE} begin\n{NONCE} end 0 2\n").as_bytes());
        assert_eq!(
            pieces,
            [Piece::Ended {
                tar_status: 0,
                oom_kills: 2
            }]
        );
    }

    #[test]
    fn garbage_inside_the_frame_is_corrupt() {
        let stream = format!("\n{NONCE} begin\n!!!not base64!!!\n{NONCE} end 0\n");
        assert_eq!(run(stream.as_bytes(), 4, 1 << 20).1, Framed::Corrupt);
    }

    #[test]
    fn an_endless_line_inside_a_frame_is_corrupt_and_not_kept() {
        let mut d = Deframer::new(NONCE, 1 << 20);
        d.push(format!("\n{NONCE} begin\n").as_bytes());
        for _ in 0..100 {
            d.push(&[b'A'; 4096]);
        }
        assert!(d.pending.len() <= MAX_FRAME_LINE);
        d.push(format!("\n{NONCE} end 0\n").as_bytes());
        assert_eq!(d.into_framed(Some(0)), Framed::Corrupt);
    }

    #[test]
    fn nonces_are_fresh_and_plain() {
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
