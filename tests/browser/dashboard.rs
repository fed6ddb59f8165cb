//! A person's visit to the dashboard: sign in with a runner token, open the project,
//! trigger a scan from its form, watch its suites go from running to their outcome on the
//! run page (no reload), read its findings, one of whose messages is an HTML payload that
//! must show as text, then a second, targeted scan, and the project's trend chart.
//!
//! Throughout: no console error, no uncaught exception, no dialog, and no request for
//! anything but the server on loopback. The run page and the project page are saved as
//! screenshots in `target/dashboard-browser/` (README's `docs/dashboard.png` is the run
//! page's).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::cdp::{Browser, chromium};
use crate::findings_common::probe_bandit_suite;
use crate::harness::{As, Server, projects_toml, wait_finished};
use crate::runs::probe_suite;
use crate::support::{self, Workspace};

/// What a tool wrote as a finding's message: it must show as these characters.
const PAYLOAD: &str = "<img src=x onerror=alert(1)>";

/// Generous bounds for things that take a real run on a busy machine.
const PAGE: Duration = Duration::from_secs(60);
const RUN: Duration = Duration::from_secs(300);

const WIDTH: u32 = 1280;

fn out_dir() -> PathBuf {
    let dir = support::target_dir().join("dashboard-browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `quick` sleeps a moment and passes; `sast` writes Bandit's SARIF whose high finding's
/// message is [`PAYLOAD`]; its other finding is suppressed by `suppressions.toml`;
/// `slow` would sleep for minutes (it is cancelled), and is not in the project's default
/// selection (see [`visit`]).
async fn workspace() -> Workspace {
    let image = support::probe_image().await;
    let ws = Workspace::new();
    ws.suite(
        "quick",
        &probe_suite(
            &image,
            &["sleep", "2", "--", "print", "checked"],
            "tags = [\"fast\"]",
        ),
    );
    let sast = probe_bandit_suite(&image, |results| {
        results[1]["message"]["text"] = Value::String(PAYLOAD.into());
    });
    ws.suite("sast", &format!("tags = [\"sast\"]\n{sast}"));
    ws.suite(
        "slow",
        &probe_suite(&image, &["sleep", "600"], "tags = [\"slow\"]"),
    );
    std::fs::write(
        ws.root().join("suppressions.toml"),
        "[[suppress]]\nsuite = \"sast\"\nrule = \"B105\"\n\
         reason = \"a test fixture, not a real password\"\nowner = \"appsec@example.com\"\n\
         expires = 2026-06-10\nticket = \"SEC-42\"\n",
    )
    .unwrap();
    ws
}

/// The browser, or `None` after saying why the test is skipped.
fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        eprintln!(
            "skipping the dashboard browser test: no chromium found (apt-get install chromium, or set PHALANX_CHROMIUM)"
        );
    }
    found
}

/// A server for `ws` and a browser tab on its dashboard's page.
struct Visit {
    server: Server,
    browser: Browser,
    tab: String,
}

fn visit(bin: &std::path::Path, ws: Workspace) -> Visit {
    let config = projects_toml(&ws, "default_tags = [\"fast\", \"sast\"]");
    let server = Server::start(ws, &config);
    let mut browser = Browser::start(bin);
    let tab = browser.tab(WIDTH, 900);
    browser.navigate(&tab, &server.url("/"));
    Visit {
        server,
        browser,
        tab,
    }
}

/// Records every `data-state` a suite row of the page leaves (the value it had before
/// each change), so a state held for a moment between two polls is still seen.
const WATCH_SUITES: &str = r#"
    window.__left = {};
    new MutationObserver((records) => {
      for (const r of records) {
        const suite = r.target.dataset && r.target.dataset.suite;
        if (suite) (window.__left[suite] = window.__left[suite] || []).push(r.oldValue);
      }
    }).observe(document.body, { subtree: true, attributes: true, attributeOldValue: true, attributeFilter: ['data-state'] });
    true"#;

/// The suite rows of the run page: name → state.
fn suite_states(browser: &mut Browser, tab: &str) -> Value {
    browser.eval(
        tab,
        "Object.fromEntries([...document.querySelectorAll('#suites tr[data-suite]')]
            .map((r) => [r.dataset.suite, r.dataset.state]))",
    )
}

/// Triggers a scan from the project page's form with the suites `ticked`; returns the
/// run id the page went to.
fn trigger(browser: &mut Browser, tab: &str, ticked: &[&str]) -> String {
    browser.eval(tab, "location.hash = '#/projects/app'; true");
    browser.wait_for(
        tab,
        "document.querySelectorAll('#trigger input[name=suite]').length === 3",
        PAGE,
        "the trigger form lists the project's three suites",
    );
    for suite in ticked {
        browser.eval(
            tab,
            &format!("document.querySelector('#trigger input[name=suite][value={suite:?}]').click(); true"),
        );
    }
    browser.eval(
        tab,
        "document.querySelector('#trigger').requestSubmit(); true",
    );
    browser.wait_for(
        tab,
        "location.hash.startsWith('#/runs/')",
        PAGE,
        "the form opens the run it started",
    );
    let hash = browser.eval(
        tab,
        "decodeURIComponent(location.hash.slice('#/runs/'.length))",
    );
    hash.as_str().unwrap().to_string()
}

/// Signs in on the page's form with `token`; waits for the project list.
fn sign_in(browser: &mut Browser, tab: &str, token: &str) {
    browser.wait_for(
        tab,
        "!!document.querySelector('#login #token')",
        PAGE,
        "the sign-in form",
    );
    browser.eval(
        tab,
        &format!(
            "document.querySelector('#token').value = {token:?}; document.querySelector('#login').requestSubmit(); true"
        ),
    );
    browser.wait_for(
        tab,
        "!!document.querySelector('#projects .card[data-project=app]')",
        PAGE,
        "the project list shows `app`",
    );
}

/// Picks `value` in the `<select>` at `selector`, as a person would.
fn choose(browser: &mut Browser, tab: &str, selector: &str, value: &str) {
    browser.eval(
        tab,
        &format!(
            "(() => {{ const s = document.querySelector({selector:?}); s.value = {value:?};
               s.dispatchEvent(new Event('change')); return true; }})()"
        ),
    );
}

/// Waits until every suite row shows an outcome and the findings are listed.
fn wait_run_shown(browser: &mut Browser, tab: &str, suites: usize) {
    browser.wait_for(
        tab,
        &format!(
            "(() => {{ const rows = [...document.querySelectorAll('#suites tr[data-suite]')];
               return rows.length === {suites}
                 && rows.every((r) => !['queued', 'building', 'running', 'retrying'].includes(r.dataset.state))
                 && !!document.querySelector('#findings-panel p.muted'); }})()"
        ),
        RUN,
        "the run's suites reach their outcomes and its findings are listed",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_triggered_from_the_dashboard_is_followed_live_and_tool_text_stays_text() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let Visit {
        server,
        mut browser,
        tab,
    } = visit(&bin, workspace().await);

    // Sign in: the token goes to sessionStorage, the projects appear.
    sign_in(&mut browser, &tab, server.token(As::Runner));
    // A second tab stays on the overview, which must follow the runs by itself (a viewer
    // may watch; sessionStorage is per tab, so it signs in too).
    let overview = browser.tab(WIDTH, 900);
    browser.navigate(&overview, &server.url("/"));
    sign_in(&mut browser, &overview, server.token(As::Viewer));
    browser.eval(&overview, "window.__same = true");
    // The page must stay this document from here on: a reload would lose these.
    browser.eval(&tab, WATCH_SUITES);

    // A scan of the default selection (nothing ticked: both suites).
    let run_id = trigger(&mut browser, &tab, &[]);
    wait_run_shown(&mut browser, &tab, 2);
    let run = wait_finished(&server, &run_id, As::Runner);

    // The page showed each suite live, and ends where the API does.
    let left = browser.eval(&tab, "window.__left");
    assert!(
        left.is_object(),
        "the page was reloaded: its suite watcher is gone ({left})"
    );
    for suite in ["quick", "sast"] {
        let states: Vec<&str> = left[suite]
            .as_array()
            .unwrap_or_else(|| panic!("no state change of {suite} seen: {left}"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            states.contains(&"running"),
            "{suite} never showed as running before its outcome: left {states:?}"
        );
    }
    let shown = suite_states(&mut browser, &tab);
    let api: serde_json::Map<String, Value> = run["suites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["state"].clone()))
        .collect();
    assert_eq!(shown, Value::Object(api), "the page and the API disagree");
    assert_eq!(shown["quick"], "passed", "{shown}");

    // The page's stream reader resumes where it was: made to reconnect once the run's
    // stream has ended, it sends the last id it had and is given nothing twice.
    let seqs = browser.eval(
        &tab,
        &format!(
            "(async () => {{
               const seqs = []; let again = true;
               await window.phalanxDashboard.follow('/runs/' + {run_id:?} + '/events', {{
                 signal: new AbortController().signal,
                 onEvent: (doc) => seqs.push(doc.seq),
                 done: () => {{ const stop = !again; again = false; return stop; }},
               }});
               return seqs; }})()"
        ),
    );
    let seqs: Vec<u64> = serde_json::from_value(seqs).unwrap();
    assert!(seqs.len() >= 6, "{seqs:?}");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    browser.drain();
    let resumed: Vec<&Value> = browser
        .events
        .iter()
        .filter(|e| e["method"] == "Network.requestWillBeSent")
        .filter(|e| {
            e["params"]["request"]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with(&format!("/runs/{run_id}/events")))
        })
        .filter_map(|e| e["params"]["request"]["headers"].get("Last-Event-ID"))
        .collect();
    assert_eq!(resumed, [&Value::String(seqs.len().to_string())]);

    // The tool's HTML is text: the message reads as written, and no element came of it.
    browser.wait_for(
        &tab,
        "document.querySelectorAll('#findings tr.finding').length === 2",
        PAGE,
        "the run's two findings are listed",
    );
    let messages = browser.eval(
        &tab,
        "[...document.querySelectorAll('#findings .message')].map((m) => m.textContent)",
    );
    assert!(
        messages.as_array().unwrap().iter().any(|m| m == PAYLOAD),
        "the payload is not shown as text: {messages}"
    );
    let planted = browser.eval(
        &tab,
        "document.querySelectorAll('#view img, [onerror]').length",
    );
    assert_eq!(planted, 0, "the finding's message became markup");

    // The filters ask the server: only the suppressed one, then only high.
    choose(&mut browser, &tab, "#filter-state", "suppressed");
    browser.wait_for(
        &tab,
        "(() => { const rows = [...document.querySelectorAll('#findings tr.finding')];
           return rows.length === 1 && rows[0].dataset.state === 'suppressed'; })()",
        PAGE,
        "the state filter leaves the suppressed finding",
    );
    choose(&mut browser, &tab, "#filter-state", "");
    browser.eval(
        &tab,
        "document.querySelector('#findings-panel input[name=severity][value=high]').click(); true",
    );
    browser.wait_for(
        &tab,
        "(() => { const rows = [...document.querySelectorAll('#findings tr.finding')];
           return rows.length === 1 && rows[0].dataset.severity === 'high'
             && rows[0].querySelector('.message').textContent === '<img src=x onerror=alert(1)>'; })()",
        PAGE,
        "the severity filter leaves the high finding",
    );
    browser.eval(
        &tab,
        "document.querySelector('#findings-panel input[name=severity][value=high]').click(); true",
    );
    browser.wait_for(
        &tab,
        "document.querySelectorAll('#findings tr.finding').length === 2",
        PAGE,
        "without filters both findings are back",
    );

    // The suppression that covered the other finding, with its owner and expiry.
    browser.wait_for(
        &tab,
        "[...document.querySelectorAll('#suppressions tr[data-state]')].some((r) =>
           r.textContent.includes('appsec@example.com') && r.textContent.includes('2026-06-10'))",
        PAGE,
        "the suppressions panel names the entry's owner and expiry",
    );
    let shot = browser.screenshot(&tab, WIDTH, 2400);
    assert!(
        shot.starts_with(b"\x89PNG\r\n\x1a\n") && shot.len() > 20_000,
        "{} bytes",
        shot.len()
    );
    std::fs::write(out_dir().join("dashboard.png"), &shot).unwrap();
    browser.call(
        Some(&tab),
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    );

    // A targeted scan: only `quick`, and the run is only that.
    let second = trigger(&mut browser, &tab, &["quick"]);
    assert_ne!(second, run_id);
    wait_run_shown(&mut browser, &tab, 1);
    let run2 = wait_finished(&server, &second, As::Runner);
    assert_eq!(
        run2["selection"]["suites"],
        serde_json::json!(["quick"]),
        "{run2}"
    );
    assert_eq!(
        suite_states(&mut browser, &tab),
        serde_json::json!({"quick": "passed"})
    );

    // The overview followed both runs without a reload: each is listed with its verdict,
    // and the project's card has the latest verdict and its trend.
    browser.wait_for(
        &overview,
        &format!(
            "window.__same === true
               && !!document.querySelector('#runs tr[data-run={run_id:?}] .badge.state-failed')
               && !!document.querySelector('#runs tr[data-run={second:?}] .badge.state-passed')
               && /1 fewer than the run before/.test(document.querySelector('#projects .card[data-project=app]').textContent)
               && !!document.querySelector('#projects .card[data-project=app] .badge.state-passed')"
        ),
        RUN,
        "the overview shows both runs and the project's new verdict and trend",
    );
    let home = browser.screenshot(&overview, WIDTH, 2400);
    std::fs::write(out_dir().join("overview.png"), &home).unwrap();

    // The project's trend: one bar per run, the first with its findings.
    browser.eval(&tab, "location.hash = '#/projects/app'; true");
    browser.wait_for(
        &tab,
        "document.querySelectorAll('#trend svg g.bar').length === 2
           && document.querySelectorAll('#runs tr[data-run]').length === 2",
        PAGE,
        "the trend chart and the run list show both runs",
    );
    let bars = browser.eval(
        &tab,
        "[...document.querySelectorAll('#trend svg g.bar')].map((g) => g.dataset.run)",
    );
    assert_eq!(bars, serde_json::json!([run_id, second]), "oldest first");
    let project_shot = browser.screenshot(&tab, WIDTH, 2400);
    std::fs::write(out_dir().join("project.png"), &project_shot).unwrap();

    // A run cancelled from its page: the suite under way ends cancelled, as recorded.
    let third = trigger(&mut browser, &tab, &["slow"]);
    browser.wait_for(
        &tab,
        "!!document.querySelector('#suites tr[data-suite=slow][data-state=running]')
           && !!document.querySelector('#cancel')",
        RUN,
        "the slow suite runs and the run can be cancelled",
    );
    browser.eval(&tab, "document.querySelector('#cancel').click(); true");
    wait_run_shown(&mut browser, &tab, 1);
    let run3 = wait_finished(&server, &third, As::Runner);
    assert_eq!(run3["suites"][0]["state"], "cancelled", "{run3}");
    // Never shown as a pass, whatever exit code the run was recorded with.
    let verdict = browser.eval(
        &tab,
        "document.querySelector('#run-facts .badge').textContent",
    );
    assert!(
        verdict == "cancelled" || verdict == "interrupted",
        "{verdict} for {run3}"
    );
    assert_eq!(
        suite_states(&mut browser, &tab),
        serde_json::json!({"slow": "cancelled"})
    );
    assert!(
        browser
            .eval(&tab, "document.querySelector('#cancel') === null")
            .as_bool()
            .unwrap(),
        "a finished run still offers to cancel"
    );

    // Nothing went wrong on the way, and nothing left loopback.
    let problems = browser.console_problems();
    assert!(problems.is_empty(), "console: {problems:#?}");
    let requests = browser.requests();
    let base = server.url("/");
    let away: Vec<&String> = requests
        .iter()
        .filter(|u| !u.starts_with(&base) && !u.starts_with("about:"))
        .collect();
    assert!(away.is_empty(), "requests not for the server: {away:?}");
    let streamed = format!("{base}api/v1/runs/{run_id}/events");
    assert!(
        requests.contains(&streamed),
        "the run page never streamed its events: {requests:#?}"
    );
    assert!(requests.contains(&format!("{base}api/v1/events")));

    // The checks above can fail: a refused request is seen as a console problem.
    browser.eval(&tab, "fetch('/api/v1/runs').then((r) => r.status)");
    let problems = browser.console_problems();
    assert!(
        problems.iter().any(|p| p.contains("401")),
        "a 401 was not noticed: {problems:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_parser_follows_the_html_standard() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    // No run needed: only the page's script.
    let Visit {
        server: _server,
        mut browser,
        tab,
    } = visit(&bin, Workspace::new());
    browser.wait_for(
        &tab,
        "!!window.phalanxDashboard",
        PAGE,
        "the dashboard's script",
    );
    // Line ends of every kind, split across chunks (a CRLF cut in two included), comments,
    // multi-line data, an id that persists, and a last event without its blank line.
    let seen = browser.eval(
        &tab,
        r#"(() => {
            const out = [];
            const p = window.phalanxDashboard.sseParser((e) => out.push(e));
            for (const chunk of [': keep-alive\r\n', 'id: 7\r', '\nevent: suite-started\ndata: {"a":', '1}\r\n\r',
                                 '\ndata: one\ndata: two\n\n', 'id: 8\ndata:x\r\r', 'retry: 50\ndata: cut']) p.push(chunk);
            return { out, last: p.lastId(), retry: p.retry() };
        })()"#,
    );
    assert_eq!(
        seen,
        serde_json::json!({
            "out": [
                {"id": "7", "event": "suite-started", "data": "{\"a\":1}"},
                {"id": "7", "event": "message", "data": "one\ntwo"},
                {"id": "8", "event": "message", "data": "x"},
            ],
            "last": "8",
            "retry": 50,
        })
    );
    let problems = browser.console_problems();
    assert!(problems.is_empty(), "console: {problems:#?}");
}
