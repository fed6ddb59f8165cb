//! The JUnit reader on files shaped like what test tools write (`tests/fixtures/junit/`):
//! pytest, a bare Surefire `<testsuite>`, and files that are not JUnit or not XML.

use std::path::{Path, PathBuf};

use phalanx::findings::TestCounts;
use phalanx::findings::junit::{self, JunitError};
use quick_junit::{NonSuccessKind, TestCaseStatus};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/junit")
        .join(name)
}

fn err(name: &str) -> JunitError {
    match junit::read_files(&[fixture(name)]) {
        Ok(r) => panic!("{name} should not be readable, got {:?}", r.counts),
        Err(e) => e,
    }
}

#[test]
fn pytest_cases_and_counts_are_carried_over() {
    let r = junit::read_files(&[fixture("pytest.xml")]).unwrap();
    assert_eq!(
        r.counts,
        TestCounts {
            tests: 4,
            failures: 1,
            errors: 1,
            skipped: 1
        }
    );
    let names: Vec<_> = r.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "test_login_rejects_bad_password",
            "test_session_cookie_is_secure",
            "test_csp_header",
            "test_hsts"
        ]
    );
    let failed = &r.cases[1];
    assert_eq!(failed.classname.as_deref(), Some("tests.test_auth"));
    match &failed.status {
        TestCaseStatus::NonSuccess {
            kind: NonSuccessKind::Failure,
            message,
            description,
            ..
        } => {
            assert_eq!(message.as_deref(), Some("AssertionError: assert False"));
            assert!(
                description.as_deref().unwrap().contains("> "),
                "{description:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        failed.system_out.as_deref(),
        Some("set-cookie: session=abc; HttpOnly")
    );
}

#[test]
fn a_bare_testsuite_root_with_loose_attributes_is_read() {
    let r = junit::read_files(&[fixture("surefire.xml")]).unwrap();
    assert_eq!(r.counts.tests, 2);
    assert_eq!(r.counts.failures + r.counts.errors, 0);
    // A case without classname gets its suite's name, as Jenkins would show it.
    assert_eq!(
        r.cases[1].classname.as_deref(),
        Some("com.example.SecurityHeadersTest")
    );
}

#[test]
fn several_files_are_one_suite() {
    let files = [fixture("pytest.xml"), fixture("all-pass.xml")];
    let r = junit::read_files(&files).unwrap();
    assert_eq!(r.sources, files);
    assert_eq!(r.counts.tests, 6);
}

#[test]
fn malformed_xml_is_an_error_with_its_position() {
    let e = err("invalid.xml");
    assert!(matches!(e, JunitError::Xml { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("invalid.xml") && msg.contains("not well-formed XML"),
        "{msg}"
    );
}

#[test]
fn a_truncated_file_is_an_error() {
    let msg = err("truncated.xml").to_string();
    assert!(msg.contains("truncated.xml"), "{msg}");
    // Cut off after a complete tag, with and without a <testsuites> root.
    for name in ["truncated-at-element.xml", "truncated-bare.xml"] {
        let e = err(name);
        assert!(matches!(e, JunitError::Truncated { .. }), "{name}: {e}");
        assert!(e.to_string().contains("<testsuite> is closed"), "{e}");
    }
}

#[test]
fn xml_that_is_not_junit_is_an_error() {
    let msg = err("not-junit.xml").to_string();
    assert!(
        msg.contains("root element is <html>, expected <testsuites> or <testsuite>"),
        "{msg}"
    );
    let msg = err("empty.xml").to_string();
    assert!(msg.contains("no XML element"), "{msg}");
}

#[test]
fn a_missing_file_is_an_error() {
    let e = err("nope.xml");
    assert!(matches!(e, JunitError::Open { .. }), "{e}");
}
