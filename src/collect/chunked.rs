//! Bytes written on a blocking thread and read as an async stream of chunks: how a tar
//! made from files on this host (a suite's results read from its volume, the target sent
//! in copy mode) reaches the engine or the extractor without being held whole in memory.

use std::io::{self, Write};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

/// Called with the size of each chunk as it is handed over (a progress bar).
pub type OnChunk = Box<dyn Fn(usize) + Send>;

/// Runs `write` on a blocking thread and streams what it writes, in chunks of about
/// `chunk` bytes. The stream ends when `write` returns; an error it returns is the
/// stream's last item, except the broken pipe of a reader that went away (the extractor
/// stops reading at its limits), which only stops the writing.
pub fn blocking_stream(
    chunk: usize,
    on_chunk: Option<OnChunk>,
    write: impl FnOnce(ChunkWriter) -> io::Result<()> + Send + 'static,
) -> BoxStream<'static, io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let errors = tx.clone();
        let writer = ChunkWriter {
            tx,
            buf: Vec::with_capacity(chunk),
            chunk,
            on_chunk,
        };
        if let Err(e) = write(writer)
            && e.kind() != io::ErrorKind::BrokenPipe
        {
            let _ = errors.blocking_send(Err(e));
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

/// The writing end of [`blocking_stream`]; `flush` hands over what is buffered.
pub struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    chunk: usize,
    on_chunk: Option<OnChunk>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        if let Some(on_chunk) = &self.on_chunk {
            on_chunk(chunk.len());
        }
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.chunk {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn chunks_arrive_whole_and_in_order_and_are_counted() {
        let counted = Arc::new(AtomicUsize::new(0));
        let seen = counted.clone();
        let on_chunk: OnChunk = Box::new(move |n| {
            seen.fetch_add(n, Ordering::Relaxed);
        });
        let stream = blocking_stream(4, Some(on_chunk), |mut w| {
            w.write_all(b"hello, ")?;
            w.write_all(b"world")?;
            w.flush()
        });
        let chunks: Vec<Bytes> = stream.map(|c| c.unwrap()).collect().await;
        assert_eq!(chunks.concat(), b"hello, world");
        assert_eq!(counted.load(Ordering::Relaxed), 12);
    }

    #[tokio::test]
    async fn a_writer_error_is_the_last_item() {
        let stream = blocking_stream(4, None, |mut w| {
            w.write_all(b"abcdef")?;
            Err(io::Error::other("disk gone"))
        });
        let items: Vec<io::Result<Bytes>> = stream.collect().await;
        assert_eq!(items.len(), 2);
        assert!(
            items[1]
                .as_ref()
                .is_err_and(|e| e.to_string() == "disk gone")
        );
    }
}
