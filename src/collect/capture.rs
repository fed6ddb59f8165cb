//! Console output of one suite: the full log on disk (capped), a head and tail in memory.
//!
//! Log file format: the bytes exactly as the container wrote them, stdout and stderr
//! interleaved in arrival order, with no prefixes. Chunks are not lines, so prefixing stderr
//! would mean re-assembling lines across chunks and streams, and would change what the tool
//! printed; the log reads like `docker logs` on a terminal. The two streams stay apart in
//! [`CapturedOutput`], which is what the reports show.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

use tokio::fs::File;
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::engine::LogChunk;
use crate::outcome::CapturedOutput;

/// How much output is kept, on disk and in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureLimits {
    /// Bytes written to the log file before it is cut off (both streams together).
    pub log_bytes: u64,
    /// Bytes kept in memory from the start of each stream.
    pub head_bytes: usize,
    /// Bytes kept in memory from the end of each stream.
    pub tail_bytes: usize,
}

impl Default for CaptureLimits {
    fn default() -> Self {
        CaptureLimits {
            log_bytes: 64 << 20,
            head_bytes: 32 << 10,
            tail_bytes: 32 << 10,
        }
    }
}

/// Where a suite's log goes: `<reports>/logs/<suite>.log`.
pub fn log_path(reports: &Path, suite: &str) -> PathBuf {
    reports.join("logs").join(format!("{suite}.log"))
}

/// Receives a container's output as it streams; see the module docs for the log format.
pub struct OutputCapture {
    path: PathBuf,
    log: BufWriter<File>,
    log_cap: u64,
    logged: u64,
    log_truncated: bool,
    stdout: HeadTail,
    stderr: HeadTail,
}

impl OutputCapture {
    /// Creates (or truncates) the log file at `path`, creating its parent directories.
    pub async fn create(path: impl Into<PathBuf>, limits: CaptureLimits) -> io::Result<Self> {
        let path = path.into();
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| with_path(e, "creating", parent))?;
        }
        let file = File::create(&path)
            .await
            .map_err(|e| with_path(e, "creating", &path))?;
        Ok(OutputCapture {
            path,
            // Container output arrives in small frames; batch them into fewer file writes.
            log: BufWriter::with_capacity(64 << 10, file),
            log_cap: limits.log_bytes,
            logged: 0,
            log_truncated: false,
            stdout: HeadTail::new(limits.head_bytes, limits.tail_bytes),
            stderr: HeadTail::new(limits.head_bytes, limits.tail_bytes),
        })
    }

    pub async fn push(&mut self, chunk: LogChunk) -> io::Result<()> {
        let data = match &chunk {
            LogChunk::Stdout(b) => {
                self.stdout.push(b);
                b
            }
            LogChunk::Stderr(b) => {
                self.stderr.push(b);
                b
            }
        };
        self.write_log(data)
            .await
            .map_err(|e| with_path(e, "writing", &self.path))
    }

    /// Writes a line of Phalanx's own to the log, past the cap if need be (a note on why the
    /// output ends where it does).
    pub async fn note(&mut self, text: &str) -> io::Result<()> {
        let line = format!("\n[phalanx: {text}]\n");
        self.log
            .write_all(line.as_bytes())
            .await
            .map_err(|e| with_path(e, "writing", &self.path))
    }

    /// Whether some output is still only in memory, not yet in the log file.
    pub fn has_unwritten(&self) -> bool {
        !self.log.buffer().is_empty()
    }

    /// Writes buffered output to the log file, so it can be read (`tail -f`) while the
    /// suite still runs.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.log
            .flush()
            .await
            .map_err(|e| with_path(e, "writing", &self.path))
    }

    /// Flushes the log and returns the in-memory head and tail of each stream.
    pub async fn finish(mut self) -> io::Result<CapturedOutput> {
        self.log
            .flush()
            .await
            .map_err(|e| with_path(e, "writing", &self.path))?;
        let truncated = self.stdout.omitted() > 0 || self.stderr.omitted() > 0;
        Ok(CapturedOutput {
            stdout: self.stdout.into_text(),
            stderr: self.stderr.into_text(),
            truncated,
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.path
    }

    /// Whether the log file was cut off at the cap.
    pub fn log_truncated(&self) -> bool {
        self.log_truncated
    }

    /// Bytes received so far, both streams together (what the tool printed, not what was kept).
    pub fn bytes_seen(&self) -> u64 {
        self.stdout.total + self.stderr.total
    }

    async fn write_log(&mut self, data: &[u8]) -> io::Result<()> {
        if self.log_truncated {
            return Ok(());
        }
        let room = self.log_cap - self.logged;
        let n = room.min(data.len() as u64) as usize;
        self.log.write_all(&data[..n]).await?;
        self.logged += n as u64;
        if n < data.len() {
            // Written once, at the moment the cap is hit, so the log says so even if the
            // run is interrupted before `finish`.
            self.log_truncated = true;
            let marker = format!("\n[phalanx: log truncated after {} bytes]\n", self.logged);
            self.log.write_all(marker.as_bytes()).await?;
        }
        Ok(())
    }
}

fn with_path(err: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{action} {}: {err}", path.display()))
}

/// The first `head_cap` and last `tail_cap` bytes of a stream, whatever its length.
struct HeadTail {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

impl HeadTail {
    fn new(head_cap: usize, tail_cap: usize) -> Self {
        HeadTail {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap,
            total: 0,
        }
    }

    fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        let n = (self.head_cap - self.head.len()).min(data.len());
        self.head.extend_from_slice(&data[..n]);
        data = &data[n..];
        if data.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_cap..]);
        } else {
            let over = (self.tail.len() + data.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..over);
            self.tail.extend(data);
        }
    }

    /// Bytes dropped between head and tail.
    fn omitted(&self) -> u64 {
        self.total - self.head.len() as u64 - self.tail.len() as u64
    }

    fn into_text(self) -> String {
        let omitted = self.omitted();
        let mut tail = Vec::from(self.tail);
        if omitted == 0 {
            let mut all = self.head;
            all.append(&mut tail);
            return String::from_utf8_lossy(&all).into_owned();
        }
        // Cut at character boundaries so the seams show no replacement characters for
        // characters that were merely split by the cap.
        let head_len = complete_utf8_len(&self.head);
        let tail_start = tail_char_start(&tail);
        let omitted = omitted + (self.head.len() - head_len + tail_start) as u64;
        let head = String::from_utf8_lossy(&self.head[..head_len]);
        let tail = String::from_utf8_lossy(&tail[tail_start..]);
        let newline = if head.is_empty() || head.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        format!("{head}{newline}[… {omitted} bytes omitted …]\n{tail}")
    }
}

/// Length of `b` without an incomplete UTF-8 sequence at its end.
fn complete_utf8_len(b: &[u8]) -> usize {
    // A sequence is at most 4 bytes: look for its lead byte among the last 3.
    for back in 1..=3.min(b.len()) {
        let i = b.len() - back;
        let needed = match b[i] {
            0x00..=0x7f => return b.len(),
            0x80..=0xbf => continue,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return b.len(), // not a lead byte: invalid, left to the lossy conversion
        };
        return if back < needed { i } else { b.len() };
    }
    b.len()
}

/// Number of continuation bytes at the start of `b` (the rest of a character cut in two).
fn tail_char_start(b: &[u8]) -> usize {
    b.iter()
        .take(3)
        .take_while(|&&c| (0x80..=0xbf).contains(&c))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn limits(log: u64, head: usize, tail: usize) -> CaptureLimits {
        CaptureLimits {
            log_bytes: log,
            head_bytes: head,
            tail_bytes: tail,
        }
    }

    async fn capture(dir: &Path, l: CaptureLimits) -> OutputCapture {
        OutputCapture::create(dir.join("logs/s.log"), l)
            .await
            .unwrap()
    }

    fn out(s: &str) -> LogChunk {
        LogChunk::Stdout(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn err(s: &str) -> LogChunk {
        LogChunk::Stderr(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[tokio::test]
    async fn small_output_is_kept_whole_and_interleaved_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = capture(dir.path(), CaptureLimits::default()).await;
        for chunk in [out("hel"), err("warn\n"), out("lo\n")] {
            c.push(chunk).await.unwrap();
        }
        let captured = c.finish().await.unwrap();
        assert_eq!(captured.stdout, "hello\n");
        assert_eq!(captured.stderr, "warn\n");
        assert!(!captured.truncated);
        let log = std::fs::read_to_string(dir.path().join("logs/s.log")).unwrap();
        assert_eq!(log, "helwarn\nlo\n");
    }

    #[tokio::test]
    async fn large_stream_keeps_only_head_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = capture(dir.path(), limits(u64::MAX, 100, 50)).await;
        let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        // Odd chunk sizes, so the head and tail boundaries fall inside chunks.
        for piece in text.as_bytes().chunks(7919) {
            c.push(LogChunk::Stdout(Bytes::copy_from_slice(piece)))
                .await
                .unwrap();
            assert!(c.stdout.head.len() <= 100 && c.stdout.tail.len() <= 50);
        }
        assert_eq!(c.bytes_seen(), text.len() as u64);
        let captured = c.finish().await.unwrap();
        assert!(captured.truncated);
        assert_eq!(captured.stderr, "");
        let omitted = text.len() - 150;
        let expected = format!(
            "{}\n[… {omitted} bytes omitted …]\n{}",
            &text[..100],
            &text[text.len() - 50..]
        );
        assert_eq!(captured.stdout, expected);
    }

    #[tokio::test]
    async fn memory_stays_bounded_for_a_huge_single_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = capture(dir.path(), limits(1024, 10, 10)).await;
        c.push(LogChunk::Stderr(Bytes::from(vec![b'x'; 5 << 20])))
            .await
            .unwrap();
        assert_eq!((c.stderr.head.len(), c.stderr.tail.len()), (10, 10));
        let captured = c.finish().await.unwrap();
        assert!(captured.truncated);
        assert!(captured.stderr.contains("[… 5242860 bytes omitted …]"));
    }

    #[tokio::test]
    async fn log_file_stops_at_the_cap_with_one_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = capture(dir.path(), limits(1000, 10, 10)).await;
        for _ in 0..10 {
            c.push(out(&"a".repeat(300))).await.unwrap();
            c.push(err(&"b".repeat(300))).await.unwrap();
        }
        assert!(c.log_truncated());
        c.finish().await.unwrap();
        let log = std::fs::read_to_string(dir.path().join("logs/s.log")).unwrap();
        let marker = "\n[phalanx: log truncated after 1000 bytes]\n";
        assert_eq!(log.len(), 1000 + marker.len());
        assert!(log.ends_with(marker));
        assert!(log.starts_with(&format!("{}{}", "a".repeat(300), "b".repeat(300))));
        assert_eq!(log.matches("[phalanx:").count(), 1);
    }

    #[tokio::test]
    async fn output_exactly_at_the_cap_is_not_marked() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = capture(dir.path(), limits(10, 5, 5)).await;
        c.push(out("0123456789")).await.unwrap();
        assert!(!c.log_truncated());
        let captured = c.finish().await.unwrap();
        assert_eq!(captured.stdout, "0123456789");
        assert!(!captured.truncated);
    }

    #[tokio::test]
    async fn cuts_fall_on_character_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        // "é" is 2 bytes, "€" is 3: the head cap splits "é", the tail cap splits "€".
        let mut c = capture(dir.path(), limits(u64::MAX, 4, 4)).await;
        c.push(out("abcé middle €xyz")).await.unwrap();
        let captured = c.finish().await.unwrap();
        assert!(
            !captured.stdout.contains('\u{fffd}'),
            "{:?}",
            captured.stdout
        );
        assert!(captured.stdout.starts_with("abc\n[… "));
        assert!(captured.stdout.ends_with(" omitted …]\nxyz"));
    }

    #[tokio::test]
    async fn invalid_utf8_is_replaced_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = capture(dir.path(), CaptureLimits::default()).await;
        c.push(LogChunk::Stdout(Bytes::from_static(b"ok \xff\xfe\0 end")))
            .await
            .unwrap();
        let captured = c.finish().await.unwrap();
        assert_eq!(captured.stdout, "ok \u{fffd}\u{fffd}\0 end");
    }

    #[test]
    fn utf8_boundary_helpers() {
        assert_eq!(complete_utf8_len(b"ab"), 2);
        assert_eq!(complete_utf8_len("aé".as_bytes()), 3);
        assert_eq!(complete_utf8_len(&"a€".as_bytes()[..3]), 1);
        assert_eq!(complete_utf8_len(&"😀".as_bytes()[..3]), 0);
        assert_eq!(complete_utf8_len(b"a\xff"), 2); // invalid, not incomplete: left to lossy
        assert_eq!(tail_char_start(&"€x".as_bytes()[1..]), 2);
        assert_eq!(tail_char_start(b"xyz"), 0);
    }
}
