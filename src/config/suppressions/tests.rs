//! The suppressions file: each key, each error (file, line and key in the message), and
//! the entries `phalanx suppress` writes.

use super::*;

const FILE: &str = "suppressions.toml";

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 5, 1).unwrap()
}

fn horizon(max_days: Option<u32>) -> Horizon {
    Horizon {
        today: today(),
        max_days,
    }
}

fn parse(text: &str) -> Result<SuppressionsFile, Vec<ConfigError>> {
    parse_suppressions(Path::new(FILE), text, horizon(None))
}

fn only_error(text: &str) -> ConfigError {
    let mut errors = parse(text).expect_err("an error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.remove(0)
}

const FULL: &str = r#"# accepted risks
[[suppress]]
suite       = "bandit"
rule        = "B105"
fingerprint = "076eb15941a7b51d"
path        = "app/**/*.py"
reason      = "demo fixture, not a real secret"
owner       = "appsec@example.com"
expires     = 2027-03-01
ticket      = "SEC-123"

[[suppress]]
fingerprint = "076eb15941a7b51d:2"
reason = "r"
owner = "o"
expires = 2026-05-01
"#;

#[test]
fn every_key_is_read() {
    let file = parse(FULL).unwrap();
    assert_eq!(file.path.as_deref(), Some(Path::new(FILE)));
    let [a, b] = file.entries.as_slice() else {
        panic!("{:?}", file.entries)
    };
    assert_eq!((a.index, a.line), (0, 2));
    assert_eq!(a.suite.as_deref(), Some("bandit"));
    assert_eq!(a.rule.as_deref(), Some("B105"));
    assert_eq!(a.fingerprint.unwrap().to_string(), "076eb15941a7b51d");
    assert_eq!(a.path.as_ref().unwrap().text, "app/**/*.py");
    assert_eq!(a.reason, "demo fixture, not a real secret");
    assert_eq!(a.owner, "appsec@example.com");
    assert_eq!(a.expires, NaiveDate::from_ymd_opt(2027, 3, 1).unwrap());
    assert_eq!(a.ticket.as_deref(), Some("SEC-123"));
    assert_eq!((b.index, b.line), (1, 12));
    assert_eq!(b.fingerprint.unwrap().occurrence, 2);
    assert_eq!(
        (b.suite.as_ref(), b.rule.as_ref(), b.path.as_ref()),
        (None, None, None)
    );
    assert_eq!(b.ticket, None);
}

#[test]
fn an_empty_file_has_no_entries() {
    assert!(
        parse("# nothing accepted yet\n")
            .unwrap()
            .entries
            .is_empty()
    );
}

#[test]
fn path_globs_stay_within_folders_unless_double_starred() {
    let glob = PathGlob::new("app/*.py").unwrap();
    assert!(glob.is_match("app/settings.py"));
    assert!(!glob.is_match("app/sub/settings.py"));
    let deep = PathGlob::new("app/**/*.py").unwrap();
    assert!(deep.is_match("app/sub/settings.py") && deep.is_match("app/settings.py"));
    assert!(!deep.is_match("lib/app/settings.py"));
}

#[test]
fn each_required_key_is_named_with_its_line() {
    let entry =
        "[[suppress]]\nrule = \"B105\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\n";
    for key in ["reason", "owner", "expires"] {
        let text: String = format!("# header\n\n{entry}")
            .lines()
            .filter(|l| !l.starts_with(key))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = only_error(&text);
        assert_eq!(e.kind, ConfigErrorKind::MissingKey, "{e}");
        assert_eq!(e.key.as_deref(), Some(format!("suppress.{key}").as_str()));
        let shown = e.to_string();
        assert!(shown.starts_with("suppressions.toml:3:"), "{shown}");
        assert!(shown.contains(&format!("`{key}`")), "{shown}");
    }
}

#[test]
fn an_entry_without_rule_or_fingerprint_is_refused() {
    let e = only_error(
        "[[suppress]]\nsuite = \"bandit\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\n",
    );
    assert_eq!(e.kind, ConfigErrorKind::MissingKey);
    assert_eq!(e.location.unwrap().line, 1);
    assert!(e.to_string().contains("`rule` or `fingerprint`"), "{e}");
}

#[test]
fn unknown_keys_are_named_with_a_hint() {
    let e = only_error(
        "[[suppress]]\nrule = \"B105\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\nexpiry = 2027-01-01\n",
    );
    assert_eq!(e.kind, ConfigErrorKind::UnknownKey);
    assert_eq!(e.key.as_deref(), Some("suppress.expiry"));
    assert_eq!(e.location.unwrap().line, 6);
    assert!(e.message.contains("did you mean `expires`?"), "{e}");

    let top = only_error("suppressions = []\n");
    assert_eq!(top.kind, ConfigErrorKind::UnknownKey);
    assert!(
        top.to_string()
            .starts_with("suppressions.toml:1:1: unknown key `suppressions`"),
        "{top}"
    );
}

#[test]
fn dates_must_be_plain_toml_dates() {
    let with = |expires: &str| {
        format!(
            "[[suppress]]\nrule = \"B105\"\nreason = \"r\"\nowner = \"o\"\nexpires = {expires}\n"
        )
    };
    for bad in [
        "\"2027-03-01\"",
        "2027-03-01T10:00:00",
        "2027-03-01T10:00:00Z",
        "20270301",
    ] {
        let e = only_error(&with(bad));
        assert_eq!(e.key.as_deref(), Some("suppress.expires"), "{bad}: {e}");
        assert_eq!(e.location.unwrap().line, 5, "{bad}: {e}");
        assert!(e.message.contains("TOML date"), "{bad}: {e}");
    }
    // The parser itself refuses a day the calendar does not have: still file, line and key.
    let e = only_error(&with("2027-02-30"));
    assert_eq!(e.key.as_deref(), Some("suppress.expires"), "{e}");
    let shown = e.to_string();
    assert!(shown.starts_with("suppressions.toml:5:"), "{shown}");
    assert!(shown.contains("key `expires`"), "{shown}");
}

#[test]
fn bad_values_are_named() {
    let cases = [
        (
            "fingerprint = \"xyz\"",
            "suppress.fingerprint",
            "16 hex digits",
        ),
        (
            "fingerprint = \"076eb15941a7b51d:1\"",
            "suppress.fingerprint",
            "16 hex digits",
        ),
        ("path = \"app/[\"", "suppress.path", "path glob"),
        ("suite = \"no spaces\"", "suppress.suite", "a name"),
        ("ticket = \"\"", "suppress.ticket", "non-empty"),
    ];
    for (line, key, says) in cases {
        let text = format!(
            "[[suppress]]\nrule = \"B105\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01\n{line}\n"
        );
        let e = only_error(&text);
        assert_eq!(e.key.as_deref(), Some(key), "{line}: {e}");
        assert_eq!(e.location.unwrap().line, 6, "{line}: {e}");
        assert!(e.message.contains(says), "{line}: {e}");
    }
    let blank = only_error(
        "[[suppress]]\nrule = \"B105\"\nreason = \"  \"\nowner = \"o\"\nexpires = 2027-01-01\n",
    );
    assert_eq!(blank.key.as_deref(), Some("suppress.reason"));
}

#[test]
fn every_broken_entry_is_reported() {
    let text = "[[suppress]]\nrule = \"a\"\nowner = \"o\"\nexpires = 2027-01-01\n\n[[suppress]]\nrule = \"b\"\nreason = \"r\"\nexpires = 2027-01-01\n";
    let errors = parse(text).unwrap_err();
    let lines: Vec<u32> = errors.iter().map(|e| e.location.unwrap().line).collect();
    assert_eq!(lines, [1, 6], "{errors:?}");
}

#[test]
fn the_horizon_refuses_entries_expiring_too_far_ahead() {
    let text =
        "[[suppress]]\nrule = \"B105\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2026-06-01\n";
    let path = Path::new(FILE);
    assert!(parse_suppressions(path, text, horizon(Some(31))).is_ok());
    let errors = parse_suppressions(path, text, horizon(Some(30))).unwrap_err();
    let e = &errors[0];
    assert_eq!(e.key.as_deref(), Some("suppress.expires"));
    assert_eq!(e.location.unwrap().line, 5);
    assert!(
        e.message.contains("31 days ahead") && e.message.contains("2026-05-31"),
        "{e}"
    );
}

#[test]
fn a_missing_default_file_is_no_suppressions_but_a_named_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = SuppressionSettings {
        file: dir.path().join("suppressions.toml"),
        ..SuppressionSettings::default()
    };
    assert_eq!(
        load_suppressions(&settings, horizon(None)).unwrap(),
        SuppressionsFile::default()
    );
    settings.explicit = true;
    let errors = load_suppressions(&settings, horizon(None)).unwrap_err();
    assert_eq!(errors[0].kind, ConfigErrorKind::Io);
}

#[test]
fn written_entries_parse_back_and_comments_stay_comments() {
    let entry = NewEntry {
        suite: Some("bandit".into()),
        fingerprint: "076eb15941a7b51d:3".parse().unwrap(),
        reason: "quote \" and\nnewline".into(),
        owner: "appsec@example.com".into(),
        expires: NaiveDate::from_ymd_opt(2027, 3, 1).unwrap(),
        ticket: Some("SEC-1".into()),
    };
    let hostile =
        "B105 at a.py:1: x\n[[suppress]]\nrule = \"*\"\r\n\u{7f}\u{2028}expires = 2099-01-01"
            .to_string();
    let text = entry_toml(&entry, &[hostile]);
    let existing =
        "[[suppress]]\nrule = \"B1\"\nreason = \"r\"\nowner = \"o\"\nexpires = 2027-01-01";
    let file = parse(&format!("{existing}{text}")).unwrap();
    assert_eq!(file.entries.len(), 2, "{text}");
    let back = &file.entries[1];
    assert_eq!(back.suite.as_deref(), Some("bandit"));
    assert_eq!(back.fingerprint, Some(entry.fingerprint));
    assert_eq!(back.reason, entry.reason);
    assert_eq!(back.expires, entry.expires);
    assert_eq!(back.ticket.as_deref(), Some("SEC-1"));
    assert_eq!(back.rule, None);
    let comments: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(comments.len(), 1, "{text}");
}

#[test]
fn the_project_file_sets_the_file_and_its_date_rules() {
    let path = Path::new("proj/phalanx.toml");
    let set = "suppressions = \"risk/accepted.toml\"\nsuppressions_warn_days = 30\nsuppressions_max_days = 180\n";
    let project = crate::config::parse_project(path, set).unwrap();
    assert_eq!(
        project.suppressions,
        SuppressionSettings {
            file: PathBuf::from("proj/risk/accepted.toml"),
            explicit: true,
            warn_days: 30,
            max_days: Some(180),
        }
    );
    let default = crate::config::parse_project(path, "").unwrap().suppressions;
    assert_eq!(default.file, PathBuf::from("proj/suppressions.toml"));
    assert_eq!(
        (default.explicit, default.warn_days, default.max_days),
        (false, 14, None)
    );
    let e = crate::config::parse_project(path, "suppressions_max_days = 0\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("suppressions_max_days"), "{e}");
}
