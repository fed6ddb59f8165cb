//! SARIF logs written by suites are untrusted: whatever the bytes, the reader returns
//! findings or an error naming the file, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phalanx::findings::sarif::read_str;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match read_str("fuzzed", &text) {
        Ok(found) => {
            assert_eq!(found.suite, "fuzzed");
            for finding in &found.findings {
                // Every finding points at a rule that exists.
                let _ = found.rule_of(finding);
            }
        }
        Err(e) => assert!(e.to_string().starts_with("<memory>"), "{e}"),
    }
});
