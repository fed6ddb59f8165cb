//! A real `phalanx serve` for one test: its own workspace, `phalanx.toml` with the
//! projects the test gives and one token per role and scope, the binary started on a free
//! loopback port, and a blocking HTTP client (ureq) that never treats a status as an
//! error, so tests assert on every status themselves.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use phalanx::access::{Role, Scope, new_token, toml_entry};
use serde_json::Value;

use crate::support::Workspace;

/// A token the server knows: its text and who it is.
#[derive(Debug, Clone)]
pub struct Token {
    pub name: String,
    pub token: String,
}

/// Who a test speaks as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum As {
    Viewer,
    Runner,
    Admin,
    /// A runner for the project `other` only.
    OtherRunner,
    /// A viewer of every project (`projects = ["*"]`).
    Watcher,
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Asserts an RFC 9457 problem of `status`; returns its document.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        let doc = self.json();
        for key in ["type", "title", "detail", "instance"] {
            assert!(doc[key].is_string(), "problem without {key}: {doc}");
        }
        assert_eq!(doc["status"], status, "{doc}");
        doc
    }
}

/// The project every test server has: `app`, scanning the workspace's `target/` with its
/// `suites/`; and `other`, a second project for the access tests.
pub fn projects_toml(ws: &Workspace, extra: &str) -> String {
    let other = ws.root().join("other");
    std::fs::create_dir_all(other.join("suites")).unwrap();
    std::fs::create_dir_all(other.join("target")).unwrap();
    format!(
        "[projects.app]\ntarget = \"target\"\nsuites = \"suites\"\n{extra}\n\n\
         [projects.other]\ntarget = \"other/target\"\nsuites = \"other/suites\"\n"
    )
}

pub struct Server {
    pub ws: Workspace,
    child: Child,
    pub base: String,
    tokens: HashMap<As, Token>,
    agent: ureq::Agent,
    /// What the server printed after its address line, for failure messages.
    stdout: Option<mpsc::Receiver<String>>,
}

impl Server {
    /// Starts `phalanx serve` in `ws` with `config` (phalanx.toml without tokens).
    pub fn start(ws: Workspace, config: &str) -> Server {
        Self::start_with(ws, config, &[])
    }

    /// The same, with more arguments for `serve` and environment for the process.
    pub fn start_with(ws: Workspace, config: &str, args: &[&str]) -> Server {
        let mut tokens = HashMap::new();
        let mut text = config.to_string();
        for (who, role, scope) in [
            (As::Viewer, Role::Viewer, only("app")),
            (As::Runner, Role::Runner, only("app")),
            (As::Admin, Role::Admin, Scope::All),
            (As::OtherRunner, Role::Runner, only("other")),
            (As::Watcher, Role::Viewer, Scope::All),
        ] {
            let made = new_token().unwrap();
            let name = format!("{who:?}").to_lowercase();
            text.push('\n');
            text.push_str(&toml_entry(&name, role, &scope, &made.sha256));
            tokens.insert(
                who,
                Token {
                    name,
                    token: made.token,
                },
            );
        }
        ws.project(&text);
        let mut cmd = ws.phalanx(["serve", "--listen", "127.0.0.1:0"].iter().chain(args));
        cmd.env_remove("PHALANX_STORE")
            .env("PHALANX_TODAY", "2026-06-01")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("phalanx serve starts");
        let stdout = child.stdout.take().unwrap();
        let (base, rest) = match read_address(stdout) {
            Ok(found) => found,
            Err(seen) => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("phalanx serve printed no address ({seen}); stderr:\n{err}");
            }
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Server {
            ws,
            child,
            base,
            tokens,
            agent,
            stdout: Some(rest),
        }
    }

    pub fn token(&self, who: As) -> &str {
        &self.tokens[&who].token
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str, who: Option<As>) -> Reply {
        let mut request = self.agent.get(self.url(path));
        if let Some(who) = who {
            request = request.header("Authorization", &format!("Bearer {}", self.token(who)));
        }
        reply(request.call())
    }

    /// A GET with headers of the test's choosing (no token unless among them).
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.agent.get(self.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        reply(request.call())
    }

    pub fn post(&self, path: &str, who: Option<As>, body: &str) -> Reply {
        self.post_as(path, who, "application/json", body.as_bytes())
    }

    pub fn post_as(&self, path: &str, who: Option<As>, content_type: &str, body: &[u8]) -> Reply {
        let mut request = self
            .agent
            .post(self.url(path))
            .header("Content-Type", content_type);
        if let Some(who) = who {
            request = request.header("Authorization", &format!("Bearer {}", self.token(who)));
        }
        reply(request.send(body))
    }

    /// The server's process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `INT`) and waits for the server to exit; returns its exit
    /// code, what it wrote to stderr, and its workspace (to start another server on).
    pub fn stop(mut self, signal: &str) -> (Option<i32>, String, Workspace) {
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} failed");
        let status = self.child.wait().expect("the server exits");
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        let ws = std::mem::take(&mut self.ws);
        (status.code(), err, ws)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A test that failed midway leaves no server behind (stop() has waited already).
        if let Ok(None) = self.child.try_wait() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            for _ in 0..300 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn only(project: &str) -> Scope {
    Scope::Only([project.to_string()].into())
}

/// Reads the server's stdout up to `listening on http://ADDR`; the rest of its lines are
/// passed on through the channel, so the pipe never fills.
fn read_address(stdout: ChildStdout) -> Result<(String, mpsc::Receiver<String>), String> {
    let (tx, rx) = mpsc::channel();
    let (addr_tx, addr_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = String::new();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = addr_tx.send(Ok(addr.trim().to_string()));
                for line in lines.map_while(Result::ok) {
                    let _ = tx.send(line);
                }
                return;
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let _ = addr_tx.send(Err(seen));
    });
    let found = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| "nothing within 60 s".to_string())?;
    found.map(|addr| (addr, rx))
}

fn reply(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = result.expect("the server answers");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(200 << 20)
        .read_to_string()
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

/// One Server-Sent Event as a client parses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl Sse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// A live SSE response, read event by event (comments skipped) by a thread of its own.
pub struct SseStream {
    pub status: u16,
    pub content_type: String,
    events: mpsc::Receiver<Sse>,
    /// Keep-alive comments seen so far.
    pub comments: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Server {
    /// Opens `path` as an event stream, with `Last-Event-ID` when given.
    pub fn events(&self, path: &str, who: As, last_event_id: Option<&str>) -> SseStream {
        let mut request = self
            .agent
            .get(self.url(path))
            .header("Accept", "text/event-stream")
            .header("Authorization", &format!("Bearer {}", self.token(who)));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.call().expect("the server answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (tx, rx) = mpsc::channel();
        let comments = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = comments.clone();
        let reader = response.into_body().into_reader();
        std::thread::spawn(move || parse_sse(BufReader::new(reader), tx, &counted));
        SseStream {
            status,
            content_type,
            events: rx,
            comments,
        }
    }
}

fn parse_sse(
    reader: impl BufRead,
    tx: mpsc::Sender<Sse>,
    comments: &std::sync::atomic::AtomicUsize,
) {
    let mut current = Sse {
        id: None,
        event: None,
        data: String::new(),
    };
    let mut has_data = false;
    for line in reader.lines() {
        let Ok(line) = line else { return };
        if line.is_empty() {
            if has_data && tx.send(current.clone()).is_err() {
                return;
            }
            current = Sse {
                id: None,
                event: None,
                data: String::new(),
            };
            has_data = false;
            continue;
        }
        if line.starts_with(':') {
            comments.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => current.id = Some(value.to_string()),
            "event" => current.event = Some(value.to_string()),
            "data" => {
                if has_data {
                    current.data.push('\n');
                }
                current.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
}

impl SseStream {
    /// The next event, or `None` when the stream ended (or nothing came in `wait`).
    pub fn next(&self, wait: Duration) -> Option<Sse> {
        self.events.recv_timeout(wait).ok()
    }

    /// Every event until the stream ends (at most `wait` in all).
    pub fn until_end(&self, wait: Duration) -> Vec<Sse> {
        let deadline = std::time::Instant::now() + wait;
        let mut all = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => all.push(event),
                Err(mpsc::RecvTimeoutError::Disconnected) => return all,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the stream did not end within {wait:?}; got {all:#?}")
                }
            }
        }
    }
}

/// Polls `GET /api/v1/runs/{id}` until the run is finished or interrupted; returns it.
pub fn wait_finished(server: &Server, run_id: &str, who: As) -> Value {
    for _ in 0..1800 {
        let reply = server.get(&format!("/api/v1/runs/{run_id}"), Some(who));
        if reply.status == 200 {
            let run = reply.json();
            if run["state"] == "finished" || run["state"] == "interrupted" {
                return run;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("run {run_id} did not finish");
}

/// Records a finished run of `project` straight into the workspace's store (the store
/// the server reads), as `phalanx run` would: one Bandit suite with the fixture's two
/// findings (B105 low, B602 high), the high one suppressed in source and the low one
/// unchanged since a baseline. Started `start` seconds after a fixed time.
pub fn seed_run(ws: &Workspace, project: Option<&str>, run_id: &str, start: i64) {
    use phalanx::config::ResultFormat;
    use phalanx::findings::{BaselineState, Severity, SuiteResults, Suppression};
    use phalanx::store::{RunFacts, Selection, Store};
    use std::sync::Arc;

    use crate::findings_common::{fixtures, judged, run_of, suite};

    let suite = suite("bandit", ResultFormat::Sarif, Severity::High);
    let mut report = judged(&suite, &fixtures().join("sarif"), &["bandit.sarif"]);
    if let Some(results) = report.results.as_mut()
        && let SuiteResults::Sarif(found) = Arc::make_mut(results)
    {
        for f in &mut found.findings {
            match f.severity {
                Severity::High => {
                    f.suppression = Suppression::InSource {
                        justification: Some("reviewed".into()),
                    }
                }
                _ => f.baseline = Some(BaselineState::Unchanged),
            }
        }
    }
    let mut run = run_of(vec![report]);
    run.run_id = run_id.to_string();
    run.started_at += chrono::Duration::seconds(start);
    run.finished_at += chrono::Duration::seconds(start);
    let facts = RunFacts {
        target: ws.target_dir(),
        selection: Selection::default(),
        git: None,
        project: project.map(str::to_owned),
    };
    let mut store = Store::open(&store_path(ws)).expect("the store opens");
    store.record(&run, &facts).expect("the run is recorded");
}

/// Where the server of a workspace keeps its store (phalanx.toml names none).
pub fn store_path(ws: &Workspace) -> std::path::PathBuf {
    ws.root().join(".phalanx/phalanx.db")
}
