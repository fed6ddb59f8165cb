//! Suite files are written by people and by tools: whatever the bytes, the parser returns a
//! suite or positioned errors, never panics, never hangs.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use phalanx::config::{ProjectConfig, parse_suite};

fuzz_target!(|data: &[u8]| {
    // Files that are not UTF-8 are refused when read; their text still gets parsed here.
    let text = String::from_utf8_lossy(data);
    let path = Path::new("suites/fuzzed.toml");
    match parse_suite(path, &text, &ProjectConfig::default()) {
        Ok(suite) => {
            assert!(!suite.name.is_empty());
            assert!(suite.weight >= 1);
            assert!(suite.results.path.starts_with("/results"));
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            let lines = text.lines().count() as u32 + 1;
            for error in errors {
                let shown = error.to_string();
                assert!(shown.starts_with("suites/fuzzed.toml"), "{shown}");
                assert!(!error.message.is_empty());
                if let Some(at) = error.location {
                    assert!(at.line >= 1 && at.line <= lines, "{shown}");
                }
            }
        }
    }
});
