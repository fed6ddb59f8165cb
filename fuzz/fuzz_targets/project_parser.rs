//! `phalanx.toml`: whatever the bytes, a project or one positioned error, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use phalanx::config::parse_project;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_project(Path::new("phalanx.toml"), &text) {
        Ok(project) => assert!(project.jobs.is_none_or(|j| j >= 1)),
        Err(error) => {
            assert!(error.to_string().starts_with("phalanx.toml"));
            assert!(!error.message.is_empty());
        }
    }
});
