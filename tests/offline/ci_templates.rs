//! The CI templates in `ci/`: each is valid YAML (the Jenkinsfile is Groovy and only
//! searched), has what its CI system needs to show the results, and every `phalanx …`
//! command in it is one Phalanx accepts. Accepting is checked by running the command for
//! real with an engine that cannot answer (`DOCKER_HOST` at a closed loopback port): a
//! usage or configuration error exits 2, while getting as far as the engine exits 3.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(rel: &str) -> Yaml {
    let docs = YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one document");
    docs.into_iter().next().unwrap()
}

/// Every string in the document, keys included.
fn strings(doc: &Yaml, out: &mut Vec<String>) {
    match doc {
        Yaml::String(s) => out.push(s.clone()),
        Yaml::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Yaml::Hash(map) => map.iter().for_each(|(k, v)| {
            strings(k, out);
            strings(v, out);
        }),
        _ => {}
    }
}

/// The arguments of every `phalanx <subcommand> …` in `texts`, one command per line.
fn phalanx_commands(texts: &[String]) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    for line in texts.iter().flat_map(|t| t.lines()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words
            .iter()
            .position(|w| *w == "phalanx" || w.ends_with("/phalanx"))
        else {
            continue;
        };
        let args: Vec<String> = words[at + 1..].iter().map(|w| w.to_string()).collect();
        if args.is_empty() {
            continue;
        }
        // Plain words only, so splitting on spaces is what a shell would do.
        assert!(
            args.iter()
                .all(|a| !a.contains(['$', '"', '\'', '`', '\\'])),
            "keep template commands free of quoting and variables: {line}"
        );
        commands.push(args);
    }
    commands
}

/// Runs `phalanx ARGS` in a scratch folder that sees the repo's suites and examples,
/// against an engine that cannot answer; returns the exit code and stderr.
fn run_unreachable(args: &[String]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    for shared in ["suites", "examples", "docker"] {
        std::os::unix::fs::symlink(repo().join(shared), dir.path().join(shared)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_phalanx"))
        .args(args)
        .current_dir(dir.path())
        .env("DOCKER_HOST", "tcp://127.0.0.1:1")
        .env_remove("CI")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_commands(file: &str, commands: &[Vec<String>]) {
    assert!(
        commands.iter().any(|c| c[0] == "run"),
        "{file}: no `phalanx run`"
    );
    for args in commands {
        let (code, stderr) = run_unreachable(args);
        assert_ne!(
            code,
            2,
            "{file}: `phalanx {}` is refused:\n{stderr}",
            args.join(" ")
        );
        assert_eq!(
            code,
            3,
            "{file}: `phalanx {}` should stop at the unreachable engine:\n{stderr}",
            args.join(" ")
        );
    }
}

fn get<'a>(doc: &'a Yaml, path: &[&str]) -> &'a Yaml {
    path.iter().fold(doc, |node, key| &node[*key])
}

#[test]
fn the_gitlab_template_uses_dind_copies_the_target_and_keeps_junit_and_sarif() {
    let doc = yaml("ci/gitlab-ci.yml");
    let job = &doc["phalanx"];
    let services = job["services"].as_vec().expect("services");
    assert!(
        services
            .iter()
            .any(|s| s["name"].as_str() == Some("docker:dind")),
        "{services:?}"
    );
    assert_eq!(
        get(job, &["variables", "DOCKER_HOST"]).as_str(),
        Some("tcp://docker:2375")
    );
    assert_eq!(
        get(job, &["artifacts", "reports", "junit"]).as_str(),
        Some("reports/junit.xml")
    );
    assert_eq!(get(job, &["artifacts", "when"]).as_str(), Some("always"));
    let paths = get(job, &["artifacts", "paths"]).as_vec().unwrap();
    assert!(
        paths.iter().any(|p| p.as_str() == Some("reports/")),
        "the SARIF is kept"
    );
    let mut texts = Vec::new();
    strings(&doc, &mut texts);
    let commands = phalanx_commands(&texts);
    let run = commands.iter().find(|c| c[0] == "run").unwrap();
    assert!(
        run.windows(2).any(|w| w == ["--target-mode", "copy"]),
        "{run:?}"
    );
    check_commands("ci/gitlab-ci.yml", &commands);
}

#[test]
fn the_github_template_uploads_sarif_and_writes_a_summary() {
    let doc = yaml("ci/github-actions.yml");
    let steps = get(&doc, &["jobs", "scan", "steps"])
        .as_vec()
        .expect("steps");
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("github/codeql-action/upload-sarif@"))
        })
        .expect("an upload-sarif step");
    assert_eq!(
        get(upload, &["with", "sarif_file"]).as_str(),
        Some("reports/results.sarif")
    );
    assert_eq!(upload["if"].as_str(), Some("always()"));
    assert!(
        steps.iter().any(|s| s["run"]
            .as_str()
            .is_some_and(|r| r.contains("$GITHUB_STEP_SUMMARY"))),
        "a job summary"
    );
    assert_eq!(
        get(&doc, &["permissions", "security-events"]).as_str(),
        Some("write")
    );
    let mut texts = Vec::new();
    strings(&doc, &mut texts);
    let commands = phalanx_commands(&texts);
    let run = commands.iter().find(|c| c[0] == "run").unwrap();
    assert!(
        run.windows(2)
            .any(|w| w == ["--target", "examples/vulnerable-app"]),
        "the demo scan: {run:?}"
    );
    check_commands("ci/github-actions.yml", &commands);
}

#[test]
fn the_jenkinsfile_records_junit_and_runs_accepted_commands() {
    let text = read("ci/Jenkinsfile");
    assert!(
        text.contains("pipeline {") && text.contains("post {"),
        "declarative"
    );
    assert!(text.contains("junit testResults: 'reports/junit.xml'"));
    // Commands are the single-quoted Groovy strings.
    let quoted: Vec<String> = text
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    check_commands("ci/Jenkinsfile", &phalanx_commands(&quoted));
}

#[test]
fn a_bad_argument_is_told_apart_from_an_unreachable_engine() {
    let bad = ["run", "--target-mode", "sideways"].map(String::from);
    assert_eq!(run_unreachable(&bad).0, 2);
    let good = ["run", "--target", "examples/vulnerable-app"].map(String::from);
    assert_eq!(run_unreachable(&good).0, 3);
    assert!(Path::new(env!("CARGO_BIN_EXE_phalanx")).is_file());
}
