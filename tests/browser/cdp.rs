//! Debian's headless chromium, driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: commands in on fd 3, answers and events out on fd 4, each
//! message JSON ended by a NUL). No WebDriver, no websocket and no crate that fetches a
//! browser: `sh` maps the two descriptors onto the child's stdin and stdout.
//!
//! The browser's own background traffic is switched off and any request that is not for
//! loopback goes to a closed port on loopback (`--proxy-server`; loopback bypasses proxies),
//! so nothing leaves the machine even if the page tried.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The chromium binary: `$PHALANX_CHROMIUM`, else `chromium` or `chromium-browser` on
/// PATH; `None` when there is none (the test then says so and skips).
pub fn chromium() -> Option<PathBuf> {
    std::env::var_os("PHALANX_CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["chromium", "chromium-browser"].map(PathBuf::from))
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// Headless, with none of the browser's own background traffic (updates, sync, safe
/// browsing, translation…); whatever still tries to go out meets a closed port on
/// loopback, the proxy every request not for loopback is sent to.
pub const HEADLESS_OFFLINE: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--mute-audio",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-breakpad",
    "--no-pings",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=Translate,OptimizationHints,MediaRouter,SpellCheck",
    "--proxy-server=127.0.0.1:9",
];

/// How long one protocol command may take before the test gives up on the browser.
const COMMAND_WAIT: Duration = Duration::from_secs(60);

pub struct Browser {
    child: Child,
    commands: ChildStdin,
    messages: mpsc::Receiver<Value>,
    next_id: u64,
    /// Every event the browser sent so far, in order (`method`, `params`, `sessionId`).
    pub events: Vec<Value>,
    /// Where chromium's own log goes, for failure messages.
    pub log: PathBuf,
    /// The profile and the log; removed after the browser has exited (fields drop after
    /// `Drop::drop`).
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromium headless with a profile of its own.
    pub fn start(bin: &Path) -> Browser {
        let dir = tempfile::tempdir().expect("a profile directory");
        let profile = dir.path().join("profile");
        let log = dir.path().join("chromium.log");
        let stderr = std::fs::File::create(&log).expect("chromium's log file");
        let mut child = Command::new("sh")
            // fd 3 <- our stdin pipe, fd 4 -> our stdout pipe; chromium's own stdout joins
            // its stderr in the log.
            .args(["-c", "exec \"$0\" \"$@\" 3<&0 4>&1 </dev/null >&2"])
            .arg(bin)
            .args(HEADLESS_OFFLINE)
            .args(["--window-size=1280,900", "--remote-debugging-pipe"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting chromium");
        let commands = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                let Ok(message) = serde_json::from_slice::<Value>(&buf) else {
                    continue;
                };
                if tx.send(message).is_err() {
                    return;
                }
            }
        });
        Browser {
            child,
            commands,
            messages: rx,
            next_id: 0,
            events: Vec::new(),
            log,
            _dir: dir,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text[text.floor_char_boundary(start)..].to_string()
    }

    /// Sends `method` (to the page of `session`, or the browser) and waits for its answer;
    /// events that come meanwhile are kept in `events`. Panics on a protocol error.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        match self.try_call(session, method, params) {
            Ok(result) => result,
            Err(error) => panic!("{method}: {error}"),
        }
    }

    pub fn try_call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        if let Err(e) = self
            .commands
            .write_all(&bytes)
            .and_then(|()| self.commands.flush())
        {
            panic!("chromium is gone ({e}); its log ends:\n{}", self.log_tail());
        }
        let deadline = Instant::now() + COMMAND_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match self.messages.recv_timeout(left) {
                Ok(message) => message,
                Err(e) => panic!(
                    "no answer to {method} from chromium ({e}); its log ends:\n{}",
                    self.log_tail()
                ),
            };
            if message["id"] == id {
                return match message.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(message["result"].clone()),
                };
            }
            if message.get("method").is_some() {
                self.events.push(message);
            }
        }
    }

    /// Keeps the events that came without a command (while the test waits).
    pub fn drain(&mut self) {
        while let Ok(message) = self.messages.try_recv() {
            if message.get("method").is_some() {
                self.events.push(message);
            }
        }
    }

    /// A new tab of `width`×`height`, attached: its session id. Runtime, Log, Network and
    /// Page events of the tab are reported from here on.
    pub fn tab(&mut self, width: u32, height: u32) -> String {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Runtime", "Log", "Network", "Page"] {
            self.call(Some(&session), &format!("{domain}.enable"), json!({}));
        }
        self.call(
            Some(&session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        session
    }

    /// Loads `url` in the tab and waits for its `load` event.
    pub fn navigate(&mut self, session: &str, url: &str) {
        let seen = self.events.len();
        let answer = self.call(Some(session), "Page.navigate", json!({"url": url}));
        assert!(
            answer.get("errorText").is_none(),
            "cannot load {url}: {answer}"
        );
        self.wait_event(
            session,
            "Page.loadEventFired",
            seen,
            Duration::from_secs(60),
        );
    }

    fn wait_event(&mut self, session: &str, method: &str, from: usize, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            let found = self.events[from..]
                .iter()
                .any(|e| e["method"] == method && e["sessionId"] == session);
            if found {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) if message.get("method").is_some() => self.events.push(message),
                Ok(_) => {}
                Err(_) => panic!("no {method} within {wait:?}"),
            }
        }
    }

    /// The value of the JavaScript expression `js` in the tab (awaited when a promise).
    /// Panics when it throws.
    pub fn eval(&mut self, session: &str, js: &str) -> Value {
        let answer = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(thrown) = answer.get("exceptionDetails") {
            panic!("{js}\nthrew: {thrown}");
        }
        answer["result"]["value"].clone()
    }

    /// Polls `js` every 100 ms until it is true; panics after `wait` saying `what`.
    pub fn wait_for(&mut self, session: &str, js: &str, wait: Duration, what: &str) {
        let deadline = Instant::now() + wait;
        loop {
            if self.eval(session, js) == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let page = self.eval(session, "document.body ? document.body.innerText : ''");
                panic!("{what}: not within {wait:?}; the page shows:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the tab's whole page, at most `max_height` pixels tall.
    pub fn screenshot(&mut self, session: &str, width: u32, max_height: u32) -> Vec<u8> {
        // A tab behind another draws no frame, and its capture would never come.
        self.call(Some(session), "Page.bringToFront", json!({}));
        let height = self
            .eval(session, "document.documentElement.scrollHeight")
            .as_u64()
            .unwrap_or(900)
            .min(max_height as u64);
        self.call(
            Some(session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        let shot = self.call(
            Some(session),
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": false}),
        );
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("the screenshot is base64")
    }

    /// Console calls of level error or warning, uncaught exceptions, and log entries of
    /// level error or warning (CSP violations and failed loads are logged so), as lines.
    pub fn console_problems(&mut self) -> Vec<String> {
        self.drain();
        let mut out = Vec::new();
        for e in &self.events {
            let p = &e["params"];
            match e["method"].as_str() {
                Some("Runtime.consoleAPICalled")
                    if matches!(p["type"].as_str(), Some("error" | "warning" | "assert")) =>
                {
                    out.push(format!("console.{}: {}", p["type"], p["args"]))
                }
                Some("Runtime.exceptionThrown") => {
                    out.push(format!("exception: {}", p["exceptionDetails"]))
                }
                Some("Log.entryAdded")
                    if matches!(p["entry"]["level"].as_str(), Some("error" | "warning")) =>
                {
                    out.push(format!(
                        "{} {}: {} {}",
                        p["entry"]["source"],
                        p["entry"]["level"],
                        p["entry"]["text"],
                        p["entry"]["url"]
                    ))
                }
                Some("Page.javascriptDialogOpening") => {
                    out.push(format!("dialog: {}", p["message"]))
                }
                _ => {}
            }
        }
        out
    }

    /// Every URL the tab's pages asked for, in order.
    pub fn requests(&mut self) -> Vec<String> {
        self.drain();
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(String::from))
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Written directly: a drop must not panic, whatever state the browser is in.
        let _ = self
            .commands
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\",\"params\":{}}\0");
        let _ = self.commands.flush();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
