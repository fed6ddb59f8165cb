//! Reading the JUnit XML that test-style suites write, so their test cases can be carried
//! over into our report under the suite's `<testsuite>`.
//!
//! quick-junit reads the XML, but it is strict where real tools are loose, so each file goes
//! through a normalising pass first (quick-xml, streaming):
//! - a bare `<testsuite>` root (Maven Surefire, older Ant and pytest) is wrapped in
//!   `<testsuites>`, which quick-junit requires;
//! - a `timestamp` without a UTC offset (Surefire, pytest) is read as UTC; one that cannot
//!   be read at all is dropped, like a `time` that is not a number of seconds, since a
//!   wrong clock must not turn a test report into an error.
//!
//! Anything that is not well-formed XML, or not JUnit, is an error.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus};
use quick_xml::events::{BytesEnd, BytesStart, Event};
use quick_xml::{Reader, Writer};

use super::model::{JunitResults, TestCounts};

/// A JUnit file could not be read. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    #[error("cannot open JUnit file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not well-formed XML (at byte {position}): {source}", path.display())]
    Xml {
        path: PathBuf,
        position: u64,
        source: quick_xml::Error,
    },
    #[error("{} ends before <{element}> is closed: the file is truncated", path.display())]
    Truncated { path: PathBuf, element: String },
    #[error("{} is not a JUnit report: {problem}", path.display())]
    NotJunit { path: PathBuf, problem: String },
    #[error("{} is not a valid JUnit report: {source}", path.display())]
    Invalid {
        path: PathBuf,
        source: quick_junit::DeserializeError,
    },
}

/// Reads every file's test cases, in order. Blocking: call from `spawn_blocking`.
pub fn read_files(files: &[PathBuf]) -> Result<JunitResults, JunitError> {
    let mut cases = Vec::new();
    for path in files {
        let file = File::open(path).map_err(|source| JunitError::Open {
            path: path.clone(),
            source,
        })?;
        cases.extend(read_cases(BufReader::new(file), path)?);
    }
    Ok(JunitResults {
        sources: files.to_vec(),
        counts: count(&cases),
        cases,
    })
}

/// The test cases of one JUnit document; `path` is only used in errors.
pub fn read_cases(reader: impl BufRead, path: &Path) -> Result<Vec<TestCase>, JunitError> {
    let xml = normalise(reader, path)?;
    let report = Report::deserialize(xml.as_slice()).map_err(|source| JunitError::Invalid {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(flatten(report))
}

/// Every case of every suite, each with a classname (its suite's name when it had none,
/// which is what Jenkins and GitLab would show for it anyway).
fn flatten(report: Report) -> Vec<TestCase> {
    let mut cases = Vec::new();
    for suite in report.test_suites {
        for mut case in suite.test_cases {
            if case.classname.is_none() {
                case.set_classname(suite.name.clone());
            }
            cases.push(case);
        }
    }
    cases
}

pub fn count(cases: &[TestCase]) -> TestCounts {
    let mut counts = TestCounts {
        tests: cases.len(),
        ..TestCounts::default()
    };
    for case in cases {
        match &case.status {
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Failure,
                ..
            } => counts.failures += 1,
            TestCaseStatus::NonSuccess {
                kind: NonSuccessKind::Error,
                ..
            } => counts.errors += 1,
            TestCaseStatus::Skipped { .. } => counts.skipped += 1,
            TestCaseStatus::Success { .. } => {}
        }
    }
    counts
}

/// Rewrites the document into the shape quick-junit reads (see the module comment).
fn normalise(reader: impl BufRead, path: &Path) -> Result<Vec<u8>, JunitError> {
    let mut reader = Reader::from_reader(reader);
    reader.config_mut().trim_text(false);
    let mut writer = Writer::new(Vec::new());
    let mut buf = Vec::new();
    // None until the root element is seen; then whether it was wrapped.
    let mut wrapped: Option<bool> = None;
    // Elements still open: quick-xml stops quietly at the end of input, and a file cut off
    // after a complete tag must still be reported as cut off.
    let mut open: Vec<Vec<u8>> = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|source| JunitError::Xml {
                path: path.to_path_buf(),
                position: reader.error_position(),
                source,
            })?;
        let element = match &event {
            Event::Start(e) | Event::Empty(e) => Some(e),
            _ => None,
        };
        if let (Some(e), None) = (element, wrapped) {
            let wrap = is_bare_testsuite(e, path)?;
            if wrap {
                write(&mut writer, Event::Start(BytesStart::new("testsuites")));
            }
            wrapped = Some(wrap);
        }
        match event {
            Event::Eof => break,
            Event::Start(e) => {
                open.push(e.name().as_ref().to_vec());
                write(&mut writer, Event::Start(fix_attributes(&e)));
            }
            Event::End(e) => {
                open.pop();
                write(&mut writer, Event::End(e));
            }
            Event::Empty(e) => write(&mut writer, Event::Empty(fix_attributes(&e))),
            other => write(&mut writer, other),
        }
        buf.clear();
    }
    if let Some(element) = open.last() {
        return Err(JunitError::Truncated {
            path: path.to_path_buf(),
            element: String::from_utf8_lossy(element).into_owned(),
        });
    }
    match wrapped {
        None => Err(JunitError::NotJunit {
            path: path.to_path_buf(),
            problem: "the file holds no XML element".into(),
        }),
        Some(true) => {
            write(&mut writer, Event::End(BytesEnd::new("testsuites")));
            Ok(writer.into_inner())
        }
        Some(false) => Ok(writer.into_inner()),
    }
}

/// `false` for `<testsuites>`, `true` for a bare `<testsuite>`, an error for anything else.
fn is_bare_testsuite(root: &BytesStart, path: &Path) -> Result<bool, JunitError> {
    match root.name().as_ref() {
        b"testsuites" => Ok(false),
        b"testsuite" => Ok(true),
        other => Err(JunitError::NotJunit {
            path: path.to_path_buf(),
            problem: format!(
                "the root element is <{}>, expected <testsuites> or <testsuite>",
                String::from_utf8_lossy(other)
            ),
        }),
    }
}

fn write(writer: &mut Writer<Vec<u8>>, event: Event) {
    writer
        .write_event(event)
        .expect("writing XML to memory cannot fail");
}

/// Repairs or drops the `timestamp` and `time` attributes quick-junit would reject.
fn fix_attributes(element: &BytesStart) -> BytesStart<'static> {
    let mut out = element.to_owned();
    if !matches!(
        element.name().as_ref(),
        b"testsuites" | b"testsuite" | b"testcase"
    ) {
        return out;
    }
    out.clear_attributes();
    for attr in element.attributes().flatten() {
        let value = String::from_utf8_lossy(&attr.value);
        let fixed = match attr.key.as_ref() {
            b"timestamp" => fix_timestamp(&value),
            b"time" => fix_seconds(&value),
            _ => {
                out.push_attribute(attr);
                continue;
            }
        };
        if let Some(fixed) = fixed {
            out.push_attribute((attr.key.as_ref(), fixed.as_bytes()));
        }
    }
    out
}

/// RFC 3339 as is; a local date-time without offset as UTC; anything else dropped.
fn fix_timestamp(value: &str) -> Option<String> {
    let value = value.trim();
    if DateTime::parse_from_rfc3339(value).is_ok() {
        return Some(value.to_string());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .map(|t| t.and_utc().to_rfc3339())
}

/// Seconds as a non-negative number; `1,234.5` (thousands separators) is read too.
fn fix_seconds(value: &str) -> Option<String> {
    let plain = value.trim().replace(',', "");
    plain
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|_| plain)
}
