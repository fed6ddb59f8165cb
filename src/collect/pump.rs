//! Moves a container's output from the engine's log stream into an [`OutputCapture`], in a
//! task of its own so a chatty suite never slows the wait for its exit.
//!
//! The engine delivers logs well behind the container (about 8 MB/s here): a suite that
//! printed a gigabyte has long exited while most of its output is still on the way. Once
//! the container has stopped, the pump therefore keeps reading as long as output keeps
//! coming (the tail of the output, which the reports show, comes last) and gives up only
//! when nothing arrives for [`IDLE`], or after [`MAX_AFTER_EXIT`] in all. What was captured
//! until then is kept either way, with a note saying the rest was not read.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::OutputCapture;
use crate::engine::{EngineError, LogChunk};
use crate::outcome::CapturedOutput;

/// After the container stopped: how long the stream may stay silent before the rest of the
/// output is given up on.
pub const IDLE: Duration = Duration::from_secs(30);
/// After the container stopped: the longest the rest of the output is waited for.
pub const MAX_AFTER_EXIT: Duration = Duration::from_secs(15 * 60);

pub struct LogPump {
    task: JoinHandle<CapturedOutput>,
    exited: watch::Sender<bool>,
}

impl LogPump {
    /// Starts moving `logs` into `capture`.
    pub fn spawn(
        logs: BoxStream<'static, Result<LogChunk, EngineError>>,
        capture: OutputCapture,
    ) -> Self {
        Self::spawn_with(logs, capture, IDLE, MAX_AFTER_EXIT)
    }

    fn spawn_with(
        logs: BoxStream<'static, Result<LogChunk, EngineError>>,
        capture: OutputCapture,
        idle: Duration,
        max: Duration,
    ) -> Self {
        let (exited, rx) = watch::channel(false);
        let task = tokio::spawn(pump(logs, capture, rx, idle, max));
        LogPump { task, exited }
    }

    /// The container has stopped: reads what is still coming (see the module docs) and
    /// returns the captured output.
    pub async fn finish(self) -> CapturedOutput {
        let _ = self.exited.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// How long the output may pause before what was buffered is written to the log file.
const FLUSH_WHEN_QUIET: Duration = Duration::from_millis(250);

async fn pump(
    mut logs: BoxStream<'static, Result<LogChunk, EngineError>>,
    mut capture: OutputCapture,
    mut exited: watch::Receiver<bool>,
    idle: Duration,
    max: Duration,
) -> CapturedOutput {
    let mut deadline: Option<Instant> = None;
    let mut flush_now = false;
    let gave_up = loop {
        if std::mem::take(&mut flush_now) && capture.flush().await.is_err() {
            break false;
        }
        let next = match deadline {
            None => tokio::select! {
                next = logs.next() => next,
                // The sender is dropped only with the pump's owner: treat that as an exit.
                _ = exited.wait_for(|e| *e) => {
                    deadline = Some(Instant::now() + max);
                    continue;
                }
                // A quiet suite's last lines reach the log file now, not only at its end.
                () = tokio::time::sleep(FLUSH_WHEN_QUIET), if capture.has_unwritten() => {
                    flush_now = true;
                    continue;
                }
            },
            Some(end) => {
                let wait = idle.min(end.saturating_duration_since(Instant::now()));
                match tokio::time::timeout(wait, logs.next()).await {
                    Ok(next) => next,
                    Err(_) => break true,
                }
            }
        };
        match next {
            Some(Ok(chunk)) => {
                if capture.push(chunk).await.is_err() {
                    break false;
                }
            }
            Some(Err(_)) | None => break false,
        }
    };
    let note = "stopped reading the output: the engine was still delivering it, or had gone \
                silent, well after the container stopped; the rest was not collected";
    if gave_up {
        let _ = capture.note(note).await;
    }
    let mut output = capture.finish().await.unwrap_or_default();
    if gave_up {
        output.truncated = true;
        output.stderr.push_str(&format!("\n[phalanx: {note}]\n"));
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::CaptureLimits;
    use bytes::Bytes;
    use futures::stream;

    fn chunk(s: &str) -> Result<LogChunk, EngineError> {
        Ok(LogChunk::Stdout(Bytes::copy_from_slice(s.as_bytes())))
    }

    async fn capture(dir: &std::path::Path) -> OutputCapture {
        OutputCapture::create(dir.join("s.log"), CaptureLimits::default())
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn output_still_arriving_after_exit_is_read_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        // One chunk every 20 s, for 100 s after the exit: slow, never idle for 30 s.
        let slow = stream::iter(0..5)
            .then(|i| async move {
                tokio::time::sleep(Duration::from_secs(20)).await;
                chunk(&format!("part {i}\n"))
            })
            .boxed();
        let pump = LogPump::spawn(slow, capture(dir.path()).await);
        let output = pump.finish().await;
        assert_eq!(output.stdout, "part 0\npart 1\npart 2\npart 3\npart 4\n");
        assert!(!output.truncated);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_silent_after_exit_is_given_up_keeping_what_came() {
        let dir = tempfile::tempdir().unwrap();
        let stuck = stream::iter([chunk("head\n")])
            .chain(stream::pending())
            .boxed();
        let pump = LogPump::spawn(stuck, capture(dir.path()).await);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let output = pump.finish().await;
        assert_eq!(output.stdout, "head\n");
        assert!(output.truncated);
        assert!(output.stderr.contains("stopped reading the output"));
        let log = std::fs::read_to_string(dir.path().join("s.log")).unwrap();
        assert!(log.starts_with("head\n") && log.contains("[phalanx: stopped reading"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_after_exit_is_cut_at_the_overall_limit() {
        let dir = tempfile::tempdir().unwrap();
        let trickle = stream::repeat_with(|| chunk("x"))
            .then(|c| async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                c
            })
            .boxed();
        let pump = LogPump::spawn_with(
            trickle,
            capture(dir.path()).await,
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        let started = Instant::now();
        let output = pump.finish().await;
        assert!(started.elapsed() <= Duration::from_secs(61));
        assert!(output.truncated);
    }

    #[tokio::test]
    async fn before_the_exit_nothing_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let logs = stream::iter([chunk("a"), chunk("b")]).boxed();
        let pump = LogPump::spawn(logs, capture(dir.path()).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let output = pump.finish().await;
        assert_eq!(output.stdout, "ab");
        assert!(!output.truncated);
    }
}
