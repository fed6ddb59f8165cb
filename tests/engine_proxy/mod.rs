//! A fault-injecting proxy in front of the Docker engine's unix socket, for tests that
//! point `DOCKER_HOST=unix://<proxy>` at it.
//!
//! Every request is forwarded with `Connection: close`, so each connection carries exactly
//! one request and the proxy can look at each request line without parsing bodies. It can
//! answer chosen requests with an injected error instead of forwarding them, and it can
//! [`EngineProxy::cut`] every connection at once, like an engine that died.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// Decides whether to fail a request, from its method and path (with query).
type Matcher = Box<dyn Fn(&str, &str) -> bool + Send + Sync>;

struct Rule {
    matches: Matcher,
    /// How many more matching requests to fail.
    remaining: u32,
    status: u16,
}

#[derive(Default)]
struct State {
    rules: Mutex<Vec<Rule>>,
    /// Request lines seen, in order, and whether each was failed on purpose.
    seen: Mutex<Vec<(String, bool)>>,
}

pub struct EngineProxy {
    dir: tempfile::TempDir,
    socket: PathBuf,
    state: Arc<State>,
    cut: CancellationToken,
}

impl EngineProxy {
    /// Listens on a fresh socket and forwards to the engine the tests use.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("phalanx-proxy-")
            .tempdir()
            .unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let state = Arc::new(State::default());
        let cut = CancellationToken::new();
        let upstream = upstream_socket();
        let (st, token) = (state.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let client = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        Err(_) => return,
                    },
                };
                let (st, token, upstream) = (st.clone(), token.clone(), upstream.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = serve(client, &upstream, &st) => {}
                    }
                });
            }
        });
        EngineProxy {
            dir,
            socket,
            state,
            cut,
        }
    }

    /// The value for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Answers the next `times` requests for which `matches(method, path)` holds with an
    /// engine error of `status`, without forwarding them.
    pub fn fail(
        &self,
        times: u32,
        status: u16,
        matches: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) {
        self.state.rules.lock().unwrap().push(Rule {
            matches: Box::new(matches),
            remaining: times,
            status,
        });
    }

    /// Drops every open connection and refuses new ones: the engine is gone.
    pub fn cut(&self) {
        self.cut.cancel();
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Request lines seen so far (`METHOD PATH`), with whether each was failed on purpose.
    pub fn seen(&self) -> Vec<(String, bool)> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.cut.cancel();
    }
}

/// The engine's own socket: `DOCKER_HOST` if it names a unix socket, else the default.
fn upstream_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => PathBuf::from(&host["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

async fn serve(mut client: UnixStream, upstream: &Path, state: &State) -> std::io::Result<()> {
    let (head, rest) = read_head(&mut client).await?;
    let Some(request_line) = head.lines().next().map(str::to_string) else {
        return Ok(());
    };
    let mut words = request_line.split(' ');
    let (method, path) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let failure = {
        let mut rules = state.rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| r.remaining > 0 && (r.matches)(method, path))
            .map(|r| {
                r.remaining -= 1;
                r.status
            })
    };
    state
        .seen
        .lock()
        .unwrap()
        .push((format!("{method} {path}"), failure.is_some()));
    if let Some(status) = failure {
        let body = format!(r#"{{"message":"injected by the test proxy for {method} {path}"}}"#);
        let response = format!(
            "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(response.as_bytes()).await?;
        return client.shutdown().await;
    }
    let mut engine = UnixStream::connect(upstream).await?;
    engine.write_all(close_after(&head).as_bytes()).await?;
    engine.write_all(&rest).await?;
    tokio::io::copy_bidirectional(&mut client, &mut engine).await?;
    Ok(())
}

/// Reads up to the end of the request head; returns the head and any body bytes after it.
async fn read_head(client: &mut UnixStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 || buf.len() > 1 << 20 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The head with `Connection: close` instead of whatever the client asked for.
fn close_after(head: &str) -> String {
    let mut out = String::new();
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}
