//! JUnit files written by suites are untrusted: whatever the bytes, the reader returns test
//! cases or an error naming the file, never panics, and the cases it returns can always be
//! written back into Phalanx's own JUnit report.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use phalanx::findings::junit::{count, read_cases};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("results/fuzzed.xml");
    match read_cases(data, path) {
        Ok(cases) => {
            let counts = count(&cases);
            assert_eq!(counts.tests, cases.len());
            let mut suite = quick_junit::TestSuite::new("fuzzed");
            suite.add_test_cases(cases);
            let mut report = quick_junit::Report::new("phalanx");
            report.add_test_suite(suite);
            report.to_string().expect("carried-over cases serialise");
        }
        Err(e) => assert!(e.to_string().contains("results/fuzzed.xml"), "{e}"),
    }
});
