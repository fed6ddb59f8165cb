//! Alerts end to end: real `phalanx run`s against the real engine, their store a real
//! SQLite file, their webhooks a real HTTP server on a loopback port this test starts
//! (`tests/receiver`), which records each request and can answer 500, 429 with
//! `Retry-After`, 400, or hang. The probe writes Bandit's SARIF (B602 high, B105 low), with
//! more high findings added where a test needs several; "today" is fixed with
//! PHALANX_TODAY.

use std::path::{Path, PathBuf};
use std::process::Output;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::findings_common;
use crate::receiver::{Receiver, Reply};
use crate::runs;
use crate::support::{Workspace, probe_image, unique};

const TODAY: &str = "2026-05-01";
const SECRET: &str = "s1gn1ng-s3cr3t-value";

/// `phalanx run` in `ws` with `env`, and its run.json.
async fn run(ws: &Workspace, env: &[(&str, &str)]) -> (runs::Run, Output) {
    let mut cmd = ws.phalanx(["run", "--progress", "plain", "--target", "target"]);
    cmd.env("PHALANX_TODAY", TODAY);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("phalanx runs");
    let run = runs::finished(ws, output.clone());
    runs::assert_nothing_left(run.run_id()).await;
    (run, output)
}

/// A Bandit suite whose results are the fixture's, plus a high finding per extra file.
fn bandit_with(image: &str, extra_files: &[String]) -> String {
    findings_common::probe_bandit_suite(image, |results| {
        let b602 = results
            .iter()
            .find(|r| r["ruleId"] == "B602")
            .unwrap()
            .clone();
        for file in extra_files {
            let mut copy = b602.clone();
            copy["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] =
                Value::String(format!("/target/{file}"));
            results.push(copy);
        }
    })
}

fn extra(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("app/mod{i:02}.py")).collect()
}

/// What `phalanx alerts log --json` says.
fn log(ws: &Workspace) -> Vec<Value> {
    let out = ws.phalanx(["alerts", "log", "--json"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn delivery<'a>(log: &'a [Value], channel: &str) -> &'a Value {
    log.iter()
        .find(|d| d["channel"] == channel)
        .unwrap_or_else(|| panic!("no delivery to {channel} in {log:?}"))
}

fn results_of(d: &Value) -> Vec<&str> {
    d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["result"].as_str().unwrap())
        .collect()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// None of `secrets` is in what the runs printed, in the reports or in the store's files.
fn assert_nowhere(ws: &Workspace, outputs: &[&Output], secrets: &[&str]) {
    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        places.push((format!("stdout of run {i}"), out.stdout.clone()));
        places.push((format!("stderr of run {i}"), out.stderr.clone()));
    }
    let written = files(&ws.reports_dir())
        .into_iter()
        .chain(files(&ws.root().join(".phalanx")));
    for file in written {
        places.push((file.display().to_string(), std::fs::read(&file).unwrap()));
    }
    assert!(
        places.iter().any(|(p, _)| p.contains("phalanx.db")),
        "the store was looked at"
    );
    for secret in secrets {
        for (place, bytes) in &places {
            assert!(
                memchr_find(bytes, secret.as_bytes()).is_none(),
                "{secret:?} is in {place}"
            );
        }
    }
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The test's own check of `X-Phalanx-Signature`, as the README tells a receiver to do.
fn assert_signed(request: &crate::receiver::Request) {
    let timestamp = request
        .header("x-phalanx-timestamp")
        .expect("a timestamp header");
    let signature = request
        .header("x-phalanx-signature")
        .expect("a signature header");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(signature, format!("sha256={expected}"));
    let sent: i64 = timestamp.parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - sent).abs() < 600,
        "a current timestamp: {sent} vs {now}"
    );
}

#[tokio::test]
async fn a_digest_lists_new_findings_once_and_again_after_they_were_fixed_and_came_back() {
    let image = probe_image().await;
    let json = Receiver::start();
    let slack = Receiver::start();
    let ws = Workspace::new();
    let suite = unique("bandit");
    ws.suite(&suite, &bandit_with(&image, &extra(11)));
    let (json_url, slack_url) = (
        json.url("/hooks/J50N-T0K3N"),
        slack.url("/services/SL4CK-T0K3N"),
    );
    ws.project(&format!(
        "[[alerts]]\nname = \"appsec\"\nurl = \"{json_url}\"\non = [\"new-finding\"]\nsecret_from_env = \"ALERT_SECRET\"\n\n\
         [[alerts]]\nname = \"chat\"\nurl_from_env = \"CHAT_HOOK\"\nformat = \"slack\"\non = [\"new-finding\"]\nmin_severity = \"low\"\n"
    ));
    let env = [("ALERT_SECRET", SECRET), ("CHAT_HOOK", slack_url.as_str())];

    let (first, out1) = run(&ws, &env).await;

    assert_eq!(
        first.code, 1,
        "the findings fail the suite: {}",
        first.stderr
    );
    let got = json.requests();
    assert_eq!(got.len(), 1, "one message per run and channel: {got:?}");
    assert_signed(&got[0]);
    assert_eq!(got[0].header("x-phalanx-event"), Some("digest"));
    let body = got[0].json();
    assert_eq!(body["schema"], "phalanx.alert/v1");
    assert_eq!(body["kind"], "digest");
    assert_eq!(body["channel"], "appsec");
    assert_eq!(body["events"], serde_json::json!(["new-finding"]));
    assert_eq!(body["summary"], "12 new high findings in target");
    assert_eq!(body["run"]["id"], first.run_id());
    assert_eq!(body["run"]["exit_code"], 1);
    assert_eq!(body["run"]["url"], Value::Null, "no server configured");
    assert_eq!(body["target"]["name"], "target");
    let new = &body["new_findings"];
    assert_eq!(
        (new["total"].as_u64(), new["more"].as_u64()),
        (Some(12), Some(2))
    );
    assert_eq!(new["counts"]["high"], 12);
    let listed = new["listed"].as_array().unwrap();
    assert_eq!(listed.len(), 10, "the first few, and the count of the rest");
    let known: Vec<&str> = first.suite(&suite)["findings"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fingerprint"].as_str().unwrap())
        .collect();
    for f in listed {
        assert_eq!(
            (
                f["suite"].as_str(),
                f["severity"].as_str(),
                f["rule"].as_str()
            ),
            (Some(suite.as_str()), Some("high"), Some("B602"))
        );
        assert!(known.contains(&f["fingerprint"].as_str().unwrap()), "{f}");
        let location = f["location"].as_str().unwrap();
        assert_eq!(
            location,
            format!("{}:{}", f["path"].as_str().unwrap(), f["line"]),
            "{f}"
        );
    }
    let chat = slack.requests();
    assert_eq!(chat.len(), 1);
    assert!(
        chat[0].header("x-phalanx-signature").is_none(),
        "no secret, no signature"
    );
    let message = chat[0].json();
    assert_eq!(
        message["text"],
        "13 new findings (12 high, 1 low) in target"
    );
    let blocks = message["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert!(
        blocks.iter().any(|b| b["text"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("New findings\n• HIGH"))),
        "{message}"
    );

    // The same findings again: nothing new to say.
    let (_, out2) = run(&ws, &env).await;
    assert_eq!(
        (json.requests().len(), slack.requests().len()),
        (1, 1),
        "told once while it stays"
    );

    // One finding fixed: nothing to say either; then it comes back, and is new again.
    let mut fewer = extra(11);
    let fixed = fewer.remove(3);
    ws.suite(&suite, &bandit_with(&image, &fewer));
    let (_, out3) = run(&ws, &env).await;
    assert_eq!(json.requests().len(), 1);
    ws.suite(&suite, &bandit_with(&image, &extra(11)));
    let (back, out4) = run(&ws, &env).await;
    let got = json.requests();
    assert_eq!(got.len(), 2, "fixed and back is new again");
    let again = got[1].json();
    assert_eq!(again["summary"], "1 new high finding in target");
    assert_eq!(again["new_findings"]["listed"][0]["path"], fixed);
    assert_eq!(again["run"]["id"], back.run_id());

    let log = log(&ws);
    assert_eq!(log.len(), 4, "two deliveries per channel: {log:?}");
    assert!(
        log.iter()
            .all(|d| d["status"] == "delivered" && results_of(d) == ["delivered"]),
        "{log:?}"
    );
    assert!(
        log.iter()
            .all(|d| d["endpoint"].as_str().unwrap().ends_with("/[REDACTED]")),
        "{log:?}"
    );
    let text = ws
        .phalanx(["alerts", "log", "--run", back.run_id()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("1 new high finding in target") && !text.contains("12 new"),
        "{text}"
    );

    assert_nowhere(
        &ws,
        &[&out1, &out2, &out3, &out4],
        &["J50N-T0K3N", "SL4CK-T0K3N", SECRET],
    );
}

#[tokio::test]
async fn a_suite_that_cannot_run_is_alerted_with_retries_and_a_400_is_not_retried() {
    let flaky = Receiver::start();
    flaky.script([
        Reply::Status(500),
        Reply::With(429, vec![("Retry-After".into(), "1".into())]),
    ]);
    let refusing = Receiver::start();
    refusing.script([Reply::Status(400)]);
    let ws = Workspace::new();
    let suite = unique("missing");
    ws.suite(&suite, &format!("image = \"phalanx-test/{suite}:nope\"\n"));
    ws.project(&format!(
        "[[alerts]]\nname = \"flaky\"\nurl = \"{}\"\non = [\"suite-error\", \"run-failed\"]\n\n\
         [[alerts]]\nname = \"refusing\"\nurl = \"{}\"\non = [\"suite-error\"]\n",
        flaky.url("/fl4ky-T0K3N"),
        refusing.url("/r3fus1ng-T0K3N"),
    ));

    let (run, out) = run(&ws, &[]).await;

    assert_eq!(
        run.code, 3,
        "a suite error, whatever the webhooks said: {}",
        run.stderr
    );
    assert_eq!(run.outcome(&suite), "error");
    let tries = flaky.requests();
    assert_eq!(tries.len(), 3, "500, 429, then 200");
    let keys: Vec<_> = tries
        .iter()
        .map(|r| r.header("x-phalanx-delivery").unwrap().to_string())
        .collect();
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "one delivery id on every attempt: {keys:?}"
    );
    assert_eq!(tries[0].body, tries[2].body, "the same message each time");
    let body = tries[2].json();
    assert_eq!(
        body["events"],
        serde_json::json!(["suite-error", "run-failed"])
    );
    assert_eq!(body["suite_errors"][0]["suite"], suite.as_str());
    assert_eq!(body["suite_errors"][0]["outcome"], "error");
    assert!(
        body["suite_errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("nope"),
        "{body}"
    );
    assert_eq!(body["run_failed"]["exit_code"], 3);
    assert_eq!(
        body["summary"],
        format!("1 suite could not run ({suite}) in target; run failed (exit 3)")
    );
    assert!(body.get("new_findings").is_none());
    assert_eq!(refusing.requests().len(), 1, "a 400 is never retried");
    assert!(
        run.stderr.contains("warning: alert to refusing not delivered, 1 attempt, the last: HTTP 400, refused (not retried)"),
        "{}",
        run.stderr
    );

    let log = log(&ws);
    let flaky_log = delivery(&log, "flaky");
    assert_eq!(flaky_log["status"], "delivered");
    assert_eq!(
        results_of(flaky_log),
        ["server-error", "rate-limited", "delivered"]
    );
    assert_eq!(flaky_log["attempts"][1]["http_status"], 429);
    assert_eq!(flaky_log["attempts"][1]["detail"], "Retry-After 1s");
    let refused = delivery(&log, "refusing");
    assert_eq!(refused["status"], "failed");
    assert_eq!(results_of(refused), ["rejected"]);
    assert_eq!(refused["attempts"][0]["http_status"], 400);
    assert_eq!(refused["run_id"], run.run_id());
    assert_nowhere(&ws, &[&out], &["fl4ky-T0K3N", "r3fus1ng-T0K3N"]);
}

#[tokio::test]
async fn a_hanging_receiver_holds_the_run_no_longer_than_the_deadline() {
    let hanging = Receiver::start();
    hanging.script([Reply::Hang, Reply::Hang, Reply::Hang, Reply::Hang]);
    let ws = Workspace::new();
    let suite = unique("missing");
    ws.suite(&suite, &format!("image = \"phalanx-test/{suite}:nope\"\n"));
    ws.project(&format!(
        "alerts_deadline = \"2s\"\n\n[[alerts]]\nname = \"slow\"\nurl = \"{}\"\non = [\"suite-error\"]\n",
        hanging.url("/hang")
    ));

    let (run, _) = run(&ws, &[]).await;

    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("warning: alert to slow not delivered by the 2s deadline (alerts_deadline), 1 attempt, the last: no answer within"),
        "{}",
        run.stderr
    );
    // The run gave up on the request, rather than the receiver letting go of it.
    assert_eq!(hanging.requests().len(), 1);
    for _ in 0..50 {
        if hanging.hung_up() == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        hanging.hung_up(),
        1,
        "phalanx closed the connection it was waiting on"
    );
    let log = log(&ws);
    let slow = delivery(&log, "slow");
    assert_eq!(slow["status"], "abandoned");
    assert_eq!(results_of(slow), ["timeout"]);
}

fn entry(suite: &str, rule: &str, expires: &str) -> String {
    format!(
        "[[suppress]]\nsuite = \"{suite}\"\nrule = \"{rule}\"\nreason = \"accepted for now\"\nowner = \"appsec@example.com\"\nexpires = {expires}\n\n"
    )
}

#[tokio::test]
async fn expiring_and_expired_accepted_risks_are_alerted_once_each() {
    let image = probe_image().await;
    let receiver = Receiver::start();
    let ws = Workspace::new();
    let suite = unique("bandit");
    ws.suite(&suite, &findings_common::probe_bandit_suite(&image, |_| {}));
    let file = [
        entry(&suite, "B602", "2026-05-06"),
        entry(&suite, "B105", "2026-04-30"),
    ]
    .concat();
    std::fs::write(ws.root().join("suppressions.toml"), file).unwrap();
    ws.project(&format!(
        "[[alerts]]\nname = \"risk\"\nurl = \"{}\"\non = [\"suppression-expiring\", \"suppression-expired\"]\n",
        receiver.url("/risk")
    ));

    let (first, _) = run(&ws, &[]).await;

    assert_eq!(
        first.outcome(&suite),
        "passed",
        "B602 accepted, B105 low: {}",
        first.stderr
    );
    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    assert_eq!(
        body["events"],
        serde_json::json!(["suppression-expiring", "suppression-expired"])
    );
    assert_eq!(
        body["summary"],
        "1 accepted risk expires in 5 days in target; 1 accepted risk expired"
    );
    let expiring = &body["suppressions"]["expiring"][0];
    assert_eq!(
        (expiring["rule"].as_str(), expiring["expires"].as_str()),
        (Some("B602"), Some("2026-05-06"))
    );
    assert_eq!(expiring["state"]["expiring"]["days_left"], 5);
    assert_eq!(expiring["owner"], "appsec@example.com");
    assert_eq!(body["suppressions"]["expired"][0]["rule"], "B105");

    run(&ws, &[]).await;
    assert_eq!(receiver.requests().len(), 1, "told once");

    // A week later the first one has expired too: that alone is news.
    let (_, later) = {
        let mut cmd = ws.phalanx(["run", "--progress", "plain", "--target", "target"]);
        let out = cmd.env("PHALANX_TODAY", "2026-05-08").output().unwrap();
        (runs::finished(&ws, out.clone()), out)
    };
    assert_eq!(later.status.code(), Some(1), "B602 gates again");
    let got = receiver.requests();
    assert_eq!(got.len(), 2);
    let body = got[1].json();
    assert_eq!(body["events"], serde_json::json!(["suppression-expired"]));
    let expired = body["suppressions"]["expired"].as_array().unwrap();
    assert_eq!(expired.len(), 1, "B105 was told already: {body}");
    assert_eq!(expired[0]["rule"], "B602");
}

/// The digest of the demo target (`examples/vulnerable-app`) with every bundled suite, as
/// the receiver gets it; kept in `target/alerts-demo/` for the README and the issue.
/// Slow (the real scanners): `cargo test --test docker alerts::demo -- --ignored`.
#[tokio::test]
#[ignore = "runs every bundled scanner: minutes"]
async fn demo_digest_of_the_vulnerable_app() {
    let json = Receiver::start();
    let slack = Receiver::start();
    let ws = Workspace::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ws.project(&format!(
        "[[alerts]]\nname = \"appsec\"\nurl = \"{}\"\non = [\"new-finding\", \"suite-error\", \"run-failed\"]\nsecret_from_env = \"ALERT_SECRET\"\n\n\
         [[alerts]]\nname = \"appsec-slack\"\nurl = \"{}\"\nformat = \"slack\"\non = [\"new-finding\", \"suite-error\"]\n",
        json.url("/hooks/demo"),
        slack.url("/services/demo"),
    ));
    let suites = root.join("suites");
    let target = root.join("examples/vulnerable-app");
    let _images = crate::support::image_build_lock();
    let out = ws
        .phalanx(["run", "--progress", "plain", "--suites"])
        .arg(&suites)
        .arg("--target")
        .arg(&target)
        .env("ALERT_SECRET", SECRET)
        .output()
        .unwrap();
    let run = runs::finished(&ws, out);
    assert_eq!(run.code, 1, "the demo's flaws are found: {}", run.stderr);
    let (got, chat) = (json.requests(), slack.requests());
    assert_eq!((got.len(), chat.len()), (1, 1), "{}", run.stderr);
    assert_signed(&got[0]);
    let body = got[0].json();
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .contains("in vulnerable-app@"),
        "{body}"
    );
    let dir = crate::support::target_dir().join("alerts-demo");
    std::fs::create_dir_all(&dir).unwrap();
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap();
    let headers: Vec<String> = got[0]
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    std::fs::write(dir.join("json-headers.txt"), headers.join("\n")).unwrap();
    // As received, byte for byte.
    std::fs::write(dir.join("json.json"), &got[0].body).unwrap();
    std::fs::write(dir.join("slack.json"), &chat[0].body).unwrap();
    println!("{}\n{}", pretty(&body), dir.display());
}
