//! Secret env values come from the host and never reach what Phalanx writes: the suite
//! prints its token (split across output chunks, on both streams) and fails, so its output
//! goes into the JUnit report too; the value must be nowhere in the log, JUnit, run.json or
//! Phalanx's own output, while the redaction marks show the suite really had it.

use crate::runs;
use crate::support;

use runs::{probe_suite, read};
use support::{Workspace, probe_image, unique};

/// A value no other text in the run can contain by chance: the time in letters that are
/// not hex digits (so no id or hash holds a piece of it).
fn secret_value() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let letters: String = nanos
        .to_string()
        .bytes()
        .map(|d| char::from(b'g' + (d - b'0')))
        .collect();
    format!("Tok-{letters}-Sekrit")
}

#[tokio::test]
async fn secret_values_are_redacted_from_logs_and_reports() {
    let image = probe_image().await;
    let ws = Workspace::new();
    let leaky = unique("leaky");
    let secret = secret_value();
    let var = "PHALANX_TEST_SECRET_TOKEN";
    ws.suite(
        &leaky,
        &probe_suite(
            &image,
            &["print-env", "TOKEN", "--", "exit", "1"],
            &format!(
                "env = {{ TOKEN = {{ from_env = \"{var}\", secret = true }}, PLAIN = \"x\" }}"
            ),
        ),
    );

    let output = ws
        .phalanx(["run", "--progress", "plain", "--target", "target"])
        .env(var, &secret)
        .output()
        .unwrap();
    let run = runs::finished(&ws, output);
    runs::assert_nothing_left(run.run_id()).await;

    assert_eq!(run.code, 1, "{}", run.stderr);
    let log = read(&ws.reports_dir().join(format!("logs/{leaky}.log")));
    // Both streams printed it, each in two writes with a pause between.
    assert_eq!(
        log.matches("TOKEN=[REDACTED] (end)").count(),
        2,
        "the suite got the value, and it was redacted: {log:?}"
    );
    let junit = read(&ws.reports_dir().join("junit.xml"));
    assert!(junit.contains("TOKEN=[REDACTED] (end)"), "{junit}");
    let json = read(&ws.reports_dir().join("run.json"));
    for (what, text) in [
        ("the log", &log),
        ("junit.xml", &junit),
        ("run.json", &json),
        ("phalanx's stdout", &run.stdout),
        ("phalanx's stderr", &run.stderr),
    ] {
        // Any 8 consecutive characters of the value would be a leak too.
        let leaked = (0..=secret.len() - 8).find(|&i| text.contains(&secret[i..i + 8]));
        assert!(
            leaked.is_none(),
            "{what} holds part of the secret ({:?}): {text}",
            leaked.map(|i| &secret[i..i + 8])
        );
    }
}

#[tokio::test]
async fn a_missing_host_variable_names_file_line_and_key() {
    let ws = Workspace::new();
    let suite = unique("needs-token");
    ws.suite(
        &suite,
        "image = \"x\"\n\nenv = { TOKEN = { from_env = \"PHALANX_TEST_SURELY_UNSET\", secret = true } }\n",
    );
    let output = ws
        .phalanx(["validate"])
        .env_remove("PHALANX_TEST_SURELY_UNSET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{suite}.toml:3:")), "{stderr}");
    assert!(stderr.contains("`env.TOKEN`"), "{stderr}");
    assert!(
        stderr.contains("`PHALANX_TEST_SURELY_UNSET` (from_env) is not set"),
        "{stderr}"
    );
}
