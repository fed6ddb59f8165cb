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
