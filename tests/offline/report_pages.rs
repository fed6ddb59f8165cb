//! `report.html` and `report.md`: byte-for-byte goldens for the demo-like run, the verdict
//! of runs that did not run to the end, what changed, the notes for missing inputs, and
//! hostile strings from tools coming out inert — checked with real parsers: the page is
//! parsed as XML (it is written well-formed), the Markdown with comrak, a port of GitHub's
//! own cmark-gfm with its table and autolink extensions.
//!
//! After an intended change: `PHALANX_BLESS=1 cargo test --test report_pages`, then review
//! the diff of `tests/fixtures/report/`.

use crate::report_common;

use std::path::Path;

use comrak::nodes::NodeValue;
use phalanx::findings::Severity;
use phalanx::outcome::{InvalidSuite, Outcome};
use phalanx::report::input::{Comparison, GitFacts, ReportInput, Trend};
use phalanx::report::{html_report, markdown_report};
use report_common::{F, demo_run, full_input, passing_run, sarif_suite};

fn check(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/report")
        .join(name);
    if std::env::var_os("PHALANX_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with PHALANX_BLESS=1", path.display()));
    assert!(
        expected == actual,
        "{} differs from what is now written (PHALANX_BLESS=1 to accept):\n{actual}",
        path.display()
    );
}

#[test]
fn html_matches_fixture() {
    let run = demo_run();
    check("report.html", &html_report(&full_input(&run)));
}

#[test]
fn markdown_matches_fixture() {
    let run = demo_run();
    check("report.md", &markdown_report(&full_input(&run)));
}

/// The page's text with the markup gone, whitespace collapsed.
fn page_text(html: &str) -> String {
    let doc = roxmltree::Document::parse_with_options(
        html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .expect("the page is well-formed");
    let text: Vec<&str> = doc
        .descendants()
        .filter(|n| n.is_text() && n.parent().is_some_and(|p| !p.has_tag_name("style")))
        .filter_map(|n| n.text())
        .collect();
    text.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_run_with_an_errored_suite_is_not_trustworthy_even_with_findings() {
    let run = demo_run();
    let input = full_input(&run);
    let text = page_text(&html_report(&input));
    assert!(text.contains("⚠ NOT TRUSTWORTHY"), "{text}");
    assert!(text.contains("exit code 3"), "{text}");
    assert!(text.contains("1 suite errored, 1 suite skipped"), "{text}");
    let md = markdown_report(&input);
    assert!(
        md.starts_with("## ⚠️ Phalanx: NOT TRUSTWORTHY (exit code 3)"),
        "{md}"
    );
    assert!(
        md.contains("### Did not run to the end (not checked)"),
        "{md}"
    );
    assert!(
        md.contains("- **trivy** ERROR: result file /results/trivy.sarif is missing"),
        "{md}"
    );
}

#[test]
fn invalid_suite_files_and_empty_runs_are_not_trustworthy() {
    let mut run = passing_run();
    run.invalid_suites.push(InvalidSuite {
        name: "broken".into(),
        file: "suites/broken.toml".into(),
        errors: vec!["suites/broken.toml:3: `image` is missing".into()],
    });
    let text = page_text(&html_report(&ReportInput::new(&run, "/t")));
    assert!(text.contains("NOT TRUSTWORTHY"), "{text}");
    assert!(text.contains("1 suite file is invalid"), "{text}");
    run.invalid_suites.clear();
    run.suites.clear();
    let md = markdown_report(&ReportInput::new(&run, "/t"));
    assert!(
        md.contains("NOT TRUSTWORTHY") && md.contains("no suite ran"),
        "{md}"
    );
}

#[test]
fn passed_and_failed_runs_say_so() {
    let run = passing_run();
    let text = page_text(&html_report(&ReportInput::new(&run, "/t")));
    assert!(
        text.contains("✔ PASSED") && text.contains("exit code 0"),
        "{text}"
    );
    let mut run = demo_run();
    run.suites
        .retain(|s| matches!(s.outcome, Outcome::Passed | Outcome::Failed));
    let md = markdown_report(&ReportInput::new(&run, "/t"));
    assert!(
        md.starts_with("## ❌ Phalanx: FAILED (exit code 1)"),
        "{md}"
    );
}

#[test]
fn changes_are_counted_per_severity_with_the_new_ones_first() {
    let run = demo_run();
    let input = full_input(&run);
    let text = page_text(&html_report(&input));
    assert!(
        text.contains("Against run 20260430-090000-ffff (main)."),
        "{text}"
    );
    // critical high medium low info total
    assert!(
        text.contains("new 0 1 0 0 0 1 fixed 1 0 0 2 0 3 unchanged 0 1 2 0 0 3"),
        "{text}"
    );
    let new = text.find("New findings (1)").expect("new findings listed");
    let fixed = text
        .find("Fixed findings (1)")
        .expect("fixed findings listed");
    assert!(new < fixed);
    let md = markdown_report(&input);
    assert!(md.contains("| new | 0 | 1 | 0 | 0 | 0 | 1 |"), "{md}");
    assert!(
        md.contains("| high | semgrep | python.lang.security.eval | app/admin.py:7 |"),
        "{md}"
    );
}

#[test]
fn missing_store_and_suppressions_are_said_plainly() {
    let run = demo_run();
    let bare = ReportInput::new(&run, "/t");
    let text = page_text(&html_report(&bare));
    for note in [
        "no run store is in use, so there is no baseline",
        "No suppressions file is in use",
        "no run store is in use, so there is no history",
        "not a git work tree",
    ] {
        assert!(text.contains(note), "{note}: {text}");
    }
    // The in-source suppression is shown with its justification.
    assert!(
        text.contains("Suppressed findings, in source or by the suppressions file (1)"),
        "{text}"
    );
    assert!(text.contains("checksum only, not a password"), "{text}");
    let first = ReportInput {
        comparison: Comparison::FirstRun,
        trend: Trend::Runs(Vec::new()),
        ..ReportInput::new(&run, "/t")
    };
    let text = page_text(&html_report(&first));
    assert!(
        text.contains("No baseline: first run of this target."),
        "{text}"
    );
    assert!(text.contains("No history yet"), "{text}");
    let md = markdown_report(&first);
    assert!(
        md.contains("No baseline: first run of this target. The most severe findings:"),
        "{md}"
    );
}

#[test]
fn trend_charts_carry_their_numbers_as_text() {
    let run = demo_run();
    let html = html_report(&full_input(&run));
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 2);
    let text = page_text(&html);
    // The oldest point, then the current run (2 high, 1 medium; 3 not passing).
    assert!(
        text.contains("20260424-run 2026-04-24 12:00 1 3 2 4 1 2"),
        "{text}"
    );
    assert!(
        text.contains("20260501-120000-abcd 2026-05-01 12:00 0 2 2 0 0 3"),
        "{text}"
    );
}

const HOSTILE: [&str; 6] = [
    "<script>alert(1)</script>",
    "</td></tr></table><img src=x onerror=alert(1)>",
    "[click](javascript:alert(1)) ![i](https://evil.test/x.png)",
    "`code` | cell | break ``` ~~~",
    "<https://evil.test> www.evil.test a@evil.test # heading\n\n- item",
    "&lt;script&gt; &amp; \" ' \u{1b}[31m\u{7}",
];

/// A run whose every tool-given string is hostile, including a 10 kB message.
fn hostile_run() -> phalanx::outcome::RunReport {
    let long = format!("{}<script>", "A".repeat(10_000));
    let findings: Vec<F> = HOSTILE
        .iter()
        .map(|h| F {
            rule: 0,
            severity: Severity::High,
            path: h,
            line: 1,
            message: h,
            suppressed: None,
        })
        .chain([F {
            rule: 1,
            severity: Severity::Critical,
            path: "p",
            line: 2,
            message: &long,
            suppressed: Some(HOSTILE[1]),
        }])
        .chain([F {
            rule: 1,
            severity: Severity::Critical,
            path: "p",
            line: 3,
            message: &long,
            suppressed: None,
        }])
        .collect();
    let mut suite = sarif_suite(
        HOSTILE[0],
        Outcome::Error,
        &[(HOSTILE[2], HOSTILE[1]), (HOSTILE[3], HOSTILE[4])],
        &findings,
    );
    suite.cause = Some(phalanx::cause::Cause::internal(HOSTILE.join(" ")));
    suite.image = HOSTILE[1].into();
    suite.image_digest = Some(HOSTILE[3].into());
    let mut run = demo_run();
    run.suites = vec![suite];
    run.run_id = HOSTILE[2].into();
    run.invalid_suites.push(InvalidSuite {
        name: HOSTILE[4].into(),
        file: HOSTILE[1].into(),
        errors: vec![HOSTILE[0].into()],
    });
    run
}

fn hostile_input(run: &phalanx::outcome::RunReport) -> ReportInput<'_> {
    let mut input = full_input(run);
    input.target = HOSTILE[1].into();
    input.command_line = HOSTILE[0].into();
    input.git = Some(GitFacts {
        commit: HOSTILE[3].into(),
        branch: Some(HOSTILE[2].into()),
        dirty: None,
    });
    if let Comparison::Against(c) = &mut input.comparison {
        c.baseline_label = HOSTILE[2].into();
        c.new_findings[0].message = HOSTILE[2].into();
        c.new_findings[0].rule = HOSTILE[3].into();
        c.new_findings[0].suite = HOSTILE[0].into();
    }
    for risk in input.accepted_risk.as_mut().unwrap() {
        risk.owner = HOSTILE[4].into();
        risk.selector = HOSTILE[3].into();
        risk.ticket = Some(HOSTILE[2].into());
    }
    if let Trend::Runs(points) = &mut input.trend {
        points[0].run_id = HOSTILE[1].into();
    }
    input
}

#[test]
fn hostile_strings_are_inert_in_the_html() {
    let run = hostile_run();
    let html = html_report(&hostile_input(&run));
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .expect("the page stays well-formed");
    let allowed = [
        "html", "head", "meta", "title", "style", "body", "header", "div", "section", "h2", "h3",
        "h4", "table", "thead", "tbody", "tr", "th", "td", "span", "small", "br", "code", "p",
        "details", "summary", "svg", "rect", "text", "line", "footer",
    ];
    for node in doc.descendants().filter(|n| n.is_element()) {
        let name = node.tag_name().name();
        assert!(allowed.contains(&name), "unexpected element <{name}>");
        for attr in node.attributes() {
            let a = attr.name();
            assert!(
                !a.starts_with("on") && a != "href" && a != "src",
                "attribute {a} on <{name}>"
            );
        }
    }
    // Only the page's own structure: one table per known place, no extra rows or cells
    // opened by a `</td>` in a message.
    assert_eq!(
        doc.descendants().filter(|n| n.has_tag_name("meta")).count(),
        3
    );
    assert!(!html.contains("<script"), "a raw script tag");
    assert!(!html.contains("<img"), "a raw img tag");
    let text = page_text(&html);
    assert!(text.contains("<script>alert(1)</script>"), "shown as text");
    assert!(
        text.contains("</td></tr></table><img src=x onerror=alert(1)>"),
        "shown as text"
    );
    // The 10 kB message is cut.
    assert!(!text.contains(&"A".repeat(400)));
    assert!(text.contains(&format!("{}…", "A".repeat(300))));
    assert!(html.len() < 100_000, "{} bytes", html.len());
}

/// Every node of the Markdown as GitHub would parse it.
fn md_nodes(md: &str, mut each: impl FnMut(&NodeValue)) {
    let arena = comrak::Arena::new();
    let mut options = comrak::Options::default();
    options.extension.table = true;
    options.extension.autolink = true;
    options.extension.strikethrough = true;
    options.extension.tasklist = true;
    options.extension.footnotes = true;
    let root = comrak::parse_document(&arena, md, &options);
    for node in root.descendants() {
        each(&node.data.borrow().value);
    }
}

#[test]
fn hostile_strings_are_inert_in_the_markdown() {
    let run = hostile_run();
    let md = markdown_report(&hostile_input(&run));
    let mut links = Vec::new();
    let mut html = Vec::new();
    let mut cells = 0;
    md_nodes(&md, |v| match v {
        NodeValue::Link(l) => links.push(l.url.clone()),
        NodeValue::Image(l) => panic!("an image: {}", l.url),
        NodeValue::HtmlInline(h) => html.push(h.clone()),
        NodeValue::HtmlBlock(h) => panic!("an HTML block: {}", h.literal),
        NodeValue::Heading(h) if h.level == 1 => panic!("a level-1 heading"),
        NodeValue::Item(_) | NodeValue::Strikethrough | NodeValue::FootnoteReference(_) => {}
        NodeValue::TableCell => cells += 1,
        _ => {}
    });
    // Only the link to the published HTML, and the footer's own <sub>.
    assert_eq!(
        links,
        vec!["https://ci.example.test/jobs/7/artifacts/report.html".to_string()],
        "{md}"
    );
    assert_eq!(
        html,
        vec!["<sub>".to_string(), "</sub>".to_string()],
        "{md}"
    );
    assert!(cells > 0);
    // A `|` in a string never adds a cell: GFM would drop the extra ones silently, so the
    // check is that each hostile cell kept its text whole.
    let text = md_text(&md);
    assert!(text.contains("`code` | cell | break ``` ~~~"), "{text}");
    assert!(text.contains("[click](javascript:"), "{text}");
    assert!(md.len() < 20_000, "{} bytes", md.len());
    // No list item, heading or emphasis was opened by a string: the only list items are the
    // ones the report writes.
    let items = md.lines().filter(|l| l.starts_with("- ")).count();
    let mut parsed_items = 0;
    md_nodes(&md, |v| {
        if matches!(v, NodeValue::Item(_)) {
            parsed_items += 1;
        }
    });
    assert_eq!(items, parsed_items, "{md}");
}

/// The Markdown's text as a reader sees it (escapes resolved, zero-width breaks gone).
fn md_text(md: &str) -> String {
    let mut out = String::new();
    md_nodes(md, |v| {
        if let NodeValue::Text(t) = v {
            out.push_str(t);
        }
        if let NodeValue::Code(c) = v {
            out.push_str(&c.literal);
        }
    });
    out.replace('\u{200b}', "")
}
