//! Validating JUnit files against the Jenkins xUnit schema in the shared folder, with the
//! extension attributes DESIGN.md lists set aside. Shared by the tests that write JUnit.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, Writer};

/// Attributes quick-junit and nextest write that the schema lacks (DESIGN.md, "JUnit
/// mapping"). CI tools read them; only the schema check sets them aside.
fn is_extension(element: &[u8], attribute: &[u8]) -> bool {
    let ext: &[&[u8]] = match element {
        b"testsuites" => &[b"skipped", b"timestamp", b"uuid", b"disabled"],
        b"testsuite" => &[b"disabled"],
        b"testcase" => &[b"file", b"line", b"timestamp", b"assertions"],
        _ => &[],
    };
    ext.contains(&attribute)
}

/// Re-writes the document without the extension attributes, leaving everything else as it
/// was written (text is copied still escaped).
pub fn strip_extensions(xml: &str) -> Vec<u8> {
    let mut reader = Reader::from_str(xml);
    let mut writer = Writer::new(Vec::new());
    loop {
        let event = match reader.read_event().unwrap() {
            Event::Eof => break,
            Event::Start(e) => Event::Start(without_extensions(&e)),
            Event::Empty(e) => Event::Empty(without_extensions(&e)),
            other => other,
        };
        writer.write_event(event).unwrap();
    }
    writer.into_inner()
}

fn without_extensions(e: &BytesStart) -> BytesStart<'static> {
    let name = e.name().as_ref().to_vec();
    let mut out = e.to_owned();
    out.clear_attributes();
    for attr in e.attributes() {
        let attr = attr.unwrap();
        if !is_extension(&name, attr.key.as_ref()) {
            out.push_attribute(attr);
        }
    }
    out
}

/// `xmllint` and the schema, or `None` after saying which is missing.
pub fn validator() -> Option<(PathBuf, PathBuf)> {
    let xsd = schema_path();
    if !xsd.is_file() {
        eprintln!("skipping schema check: {} not found", xsd.display());
        return None;
    }
    match Command::new("xmllint").arg("--version").output() {
        Ok(_) => Some((PathBuf::from("xmllint"), xsd)),
        Err(e) => {
            eprintln!("skipping schema check: xmllint unavailable ({e}); install libxml2-utils");
            None
        }
    }
}

pub fn schema_path() -> PathBuf {
    let shared = match std::env::var_os("PHALANX_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    };
    shared.join("schemas/junit-10.xsd")
}

pub fn validate(xmllint: &Path, xsd: &Path, file: &Path) -> Result<(), String> {
    let out = Command::new(xmllint)
        .args(["--noout", "--huge", "--schema"])
        .arg(xsd)
        .arg(file)
        .output()
        .expect("xmllint runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
