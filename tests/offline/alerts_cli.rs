//! `phalanx alerts test` and the `[[alerts]]` configuration, against a webhook receiver on
//! a loopback port this test starts (`tests/receiver`): no engine needed.

use std::path::Path;
use std::process::{Command, Output};

use crate::receiver::{Receiver, Reply};

fn phalanx(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phalanx"));
    cmd.args(args).current_dir(dir);
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_test_message_reaches_each_channel_in_its_format_and_reports_the_status() {
    let json = Receiver::start();
    let slack = Receiver::start();
    let refusing = Receiver::start();
    refusing.script([Reply::Status(400)]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("phalanx.toml"),
        format!(
            "[[alerts]]\nname = \"ops\"\nurl = \"{}\"\non = [\"suite-error\"]\n\n\
             [[alerts]]\nname = \"chat\"\nurl_from_env = \"CHAT_HOOK\"\nformat = \"slack\"\non = [\"new-finding\"]\n\n\
             [[alerts]]\nname = \"strict\"\nurl = \"{}\"\non = [\"run-failed\"]\n",
            json.url("/hook/0PS-T0K3N"),
            refusing.url("/hook/STR1CT-T0K3N"),
        ),
    )
    .unwrap();
    let chat_url = slack.url("/services/CH4T-T0K3N");

    let one = phalanx(dir.path(), &["alerts", "test", "ops"])
        .output()
        .unwrap();
    assert_eq!(one.status.code(), Some(0), "{}", text(&one));
    assert!(
        text(&one).contains("alert to ops delivered (HTTP 200, 1 attempt)"),
        "{}",
        text(&one)
    );
    let got = json.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/hook/0PS-T0K3N");
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[0].header("x-phalanx-event"), Some("test"));
    let body = got[0].json();
    assert_eq!(body["schema"], "phalanx.alert/v1");
    assert_eq!(body["kind"], "test");
    assert_eq!(body["channel"], "ops");
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .starts_with("Test message from Phalanx")
    );

    let all = phalanx(dir.path(), &["alerts", "test"])
        .env("CHAT_HOOK", &chat_url)
        .output()
        .unwrap();
    assert_eq!(
        all.status.code(),
        Some(3),
        "a refused test exits 3: {}",
        text(&all)
    );
    let out = text(&all);
    assert!(out.contains("alert to chat delivered (HTTP 200"), "{out}");
    assert!(
        out.contains(
            "alert to strict not delivered, 1 attempt, the last: HTTP 400, refused (not retried)"
        ),
        "{out}"
    );
    let slack_body = slack.requests()[0].json();
    assert_eq!(slack_body["blocks"][0]["type"], "header");
    assert!(
        slack_body["text"]
            .as_str()
            .unwrap()
            .contains("Test message")
    );
    assert_eq!(refusing.requests().len(), 1, "a 400 is not retried");
    for secret in ["0PS-T0K3N", "CH4T-T0K3N", "STR1CT-T0K3N"] {
        assert!(
            !out.contains(secret) && !text(&one).contains(secret),
            "{secret} printed:\n{out}"
        );
    }

    let unset = phalanx(dir.path(), &["alerts", "test", "chat"])
        .output()
        .unwrap();
    assert_eq!(unset.status.code(), Some(3));
    assert!(
        text(&unset).contains("alert to chat not sent: $CHAT_HOOK is not set (url_from_env)"),
        "{}",
        text(&unset)
    );

    let unknown = phalanx(dir.path(), &["alerts", "test", "nope"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown).contains("known: ops, chat, strict"),
        "{}",
        text(&unknown)
    );
}

#[test]
fn a_bad_alerts_entry_names_file_line_and_key_without_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "jobs = 2\n\n[[alerts]]\nurl = \"ftp://hooks.example/S3CR3T\"\non = [\"new-finding\"]\n",
            "phalanx.toml:4:7: key `alerts.url`: expected an http:// or https:// URL",
        ),
        (
            "[[alerts]]\nurl_from_env = \"HOOK\"\non = [\"new-findings\"]\n",
            "phalanx.toml:3:7: key `alerts.on`: expected one of",
        ),
        (
            "[[alerts]]\nurl_from_env = \"HOOK\"\non = [\"run-failed\"]\nmin_severty = \"high\"\n",
            "phalanx.toml:4:1: unknown key `min_severty` in the [alerts] table",
        ),
        (
            "alerts_deadline = \"soon\"\n",
            "phalanx.toml:1:19: key `alerts_deadline`",
        ),
    ];
    for (toml, expected) in cases {
        std::fs::write(dir.path().join("phalanx.toml"), toml).unwrap();
        let out = phalanx(dir.path(), &["alerts", "log"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{toml}");
        let said = text(&out);
        assert!(
            said.contains(expected),
            "for\n{toml}\nexpected {expected:?} in:\n{said}"
        );
        assert!(!said.contains("S3CR3T"), "{said}");
    }
}

/// What a server does at its start: deliveries a killed process left pending are sent
/// again, numbered after the attempts already made; one pending for more than a day is
/// abandoned instead. The counts per status are what `/metrics` reads.
#[tokio::test]
async fn pending_deliveries_are_sent_again_and_counted() {
    use phalanx::alerts::{self, DeliveryStatus};
    use phalanx::store::Store;
    use phalanx::store::alerts::{AttemptRow, NewDelivery};

    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[[alerts]]\nname = \"ops\"\nurl = \"{}\"\non = [\"new-finding\"]\n",
        receiver.url("/hook/P3ND1NG")
    );
    let project = phalanx::config::parse_project(&dir.path().join("phalanx.toml"), &toml).unwrap();
    let store = Store::open(&dir.path().join("phalanx.db")).unwrap();
    let queue = |key: &str| {
        let new = NewDelivery {
            run_id: None,
            channel: "ops",
            endpoint: "http://127.0.0.1/[REDACTED]",
            format: "json",
            events: &[],
            summary: "left pending",
            body: br#"{"schema":"phalanx.alert/v1","kind":"test"}"#,
            key,
        };
        store.queue_test_delivery(&new).unwrap()
    };
    let fresh = queue("fresh-key");
    let attempt = AttemptRow {
        attempt: 1,
        started_at: chrono::Utc::now(),
        duration: std::time::Duration::from_secs(1),
        result: "connection".into(),
        http_status: None,
        detail: Some("connection refused".into()),
    };
    store.record_attempt(fresh, &attempt).unwrap();
    let stale = queue("stale-key");
    let two_days_ago = (chrono::Utc::now() - chrono::Duration::days(2)).timestamp_millis();
    store
        .connection()
        .execute(
            "UPDATE alert_deliveries SET created_at = ?1 WHERE id = ?2",
            rusqlite::params![two_days_ago, stale],
        )
        .unwrap();

    let outcome = alerts::retry_pending(
        &store,
        &project.alerts.channels,
        std::time::Duration::from_secs(10),
    )
    .await;

    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(outcome.channels.len(), 1, "only the fresh one: {outcome:?}");
    let sent = &outcome.channels[0];
    assert_eq!(sent.status, DeliveryStatus::Delivered);
    assert_eq!(sent.attempts[0].number, 2, "after the attempt already made");
    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-phalanx-delivery"), Some("fresh-key"));
    assert_eq!(got[0].header("x-phalanx-event"), Some("test"));
    assert_eq!(got[0].json()["kind"], "test");
    let counts: Vec<(String, DeliveryStatus, u64)> = store
        .alert_counts()
        .unwrap()
        .into_iter()
        .map(|c| (c.channel, c.status, c.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("ops".to_string(), DeliveryStatus::Abandoned, 1),
            ("ops".to_string(), DeliveryStatus::Delivered, 1)
        ]
    );
    let log = store.alert_log(None, 10).unwrap();
    let fresh_log = log.iter().find(|d| d.id == fresh).unwrap();
    let results: Vec<&str> = fresh_log
        .attempts
        .iter()
        .map(|a| a.result.as_str())
        .collect();
    assert_eq!(results, ["connection", "delivered"]);
}
