//! `report.html` in a real browser: Debian's headless `chromium` opens it from `file://`,
//! the page makes no request and logs no console error, a screenshot is taken, and
//! printing gives an A4 PDF (turned into a PNG by `pdftoppm` when poppler-utils is there).
//!
//! Skipped, saying so, when chromium is not installed (`apt-get install chromium
//! poppler-utils`). The browser's own background traffic is switched off and everything
//! else is sent to a closed loopback port, so nothing leaves the machine.
//!
//! The screenshot and the PDF page stay in `target/report-browser/` to look at; the
//! README's `docs/report.png` is that screenshot.

use crate::cdp::{HEADLESS_OFFLINE, chromium};
use crate::report_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use phalanx::report::html_report;

/// Runs chromium headless on `url` with `args`; its stderr. Killed after two minutes.
fn run_chromium(bin: &Path, profile: &Path, args: &[String], url: &str) -> String {
    let mut child = Command::new(bin)
        .args(HEADLESS_OFFLINE)
        .args([
            // Not even loopback is spared the closed proxy: the page is a file.
            "--proxy-bypass-list=<-loopback>",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let err = reader.join().unwrap();
            assert!(status.success(), "chromium failed ({status}):\n{err}");
            return err;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish in two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Console messages of level error or warning (`INFO:CONSOLE` lines carry every level;
/// CSP violations and failed loads are logged as errors).
fn console_problems(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.contains(":CONSOLE") || l.contains("Refused to") || l.contains("Failed to load")
        })
        .collect()
}

/// URLs the page asked the network for, from chromium's net log: requests made on
/// behalf of a document (the browser's own have initiator `not an origin`).
fn page_requests(netlog: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(netlog).expect("the net log");
    // Chromium leaves the array unterminated when it is killed; it exits normally here.
    let log: serde_json::Value = serde_json::from_str(&text).expect("the net log is JSON");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].clone();
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == start_job)
        .filter(|e| e["params"]["initiator"] != "not an origin")
        .filter_map(|e| e["params"]["url"].as_str().map(String::from))
        .collect()
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Opens `page` and returns (console problems, page requests).
fn load(bin: &Path, page: &Path, work: &Path) -> (Vec<String>, Vec<String>) {
    let netlog = work.join("net.json");
    let stderr = run_chromium(
        bin,
        &work.join("profile-load"),
        &[
            format!("--log-net-log={}", netlog.display()),
            "--dump-dom".into(),
        ],
        &format!("file://{}", page.display()),
    );
    let problems = console_problems(&stderr)
        .into_iter()
        .map(String::from)
        .collect();
    (problems, page_requests(&netlog))
}

#[test]
fn the_page_loads_offline_cleanly_and_prints_to_a4() {
    let Some(bin) = chromium() else {
        eprintln!(
            "skipping the browser test: no chromium found (apt-get install chromium poppler-utils, or set PHALANX_CHROMIUM)"
        );
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let out = out_dir();

    // The checks can fail: a page that loads an image and logs an error is caught.
    let bad = work.path().join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><html><body><img src=\"http://127.0.0.1:9/x.png\"/>\
         <script>console.error('boom')</script></body></html>",
    )
    .unwrap();
    let (problems, requests) = load(&bin, &bad, work.path());
    assert!(problems.iter().any(|p| p.contains("boom")), "{problems:?}");
    assert_eq!(requests, vec!["http://127.0.0.1:9/x.png".to_string()]);

    let run = report_common::demo_run();
    let page = work.path().join("report.html");
    std::fs::write(&page, html_report(&report_common::full_input(&run))).unwrap();
    let (problems, requests) = load(&bin, &page, work.path());
    assert!(problems.is_empty(), "console: {problems:#?}");
    assert!(requests.is_empty(), "the page requested {requests:?}");

    let url = format!("file://{}", page.display());
    let shot = out.join("report.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &bin,
        &work.path().join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,900".into(),
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    let pdf = out.join("report.pdf");
    let _ = std::fs::remove_file(&pdf);
    run_chromium(
        &bin,
        &work.path().join("profile-pdf"),
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".into(),
        ],
        &url,
    );
    let bytes = std::fs::read(&pdf).expect("a PDF");
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    pdf_checks(&pdf, &out);
}

/// A4 pages, and page 1 as a PNG to look at, when poppler-utils is installed.
fn pdf_checks(pdf: &Path, out: &Path) {
    match Command::new("pdfinfo").arg(pdf).output() {
        Ok(info) if info.status.success() => {
            let info = String::from_utf8_lossy(&info.stdout);
            assert!(info.contains("(A4)"), "not A4:\n{info}");
        }
        _ => {
            eprintln!(
                "skipping the PDF page checks: pdfinfo/pdftoppm not found (apt-get install poppler-utils)"
            );
            return;
        }
    }
    let prefix = out.join("report-page");
    let status = Command::new("pdftoppm")
        .args(["-png", "-r", "60", "-f", "1", "-l", "2"])
        .arg(pdf)
        .arg(&prefix)
        .status()
        .expect("running pdftoppm");
    assert!(status.success());
    assert!(out.join("report-page-1.png").exists(), "page 1 as PNG");
}
