//! Secret values (`env = { TOKEN = { from_env = "CI_TOKEN", secret = true } }`) never reach
//! what Phalanx writes: they are replaced by [`MARK`] in
//!
//! - the log stream of the suite, before it is spooled to `<reports>/logs/<suite>.log` or
//!   kept as head and tail for the reports ([`redact_logs`]); a value split across two
//!   chunks of output is still found, because the end of each chunk that could begin a
//!   secret is held back until the next chunk shows how it goes on;
//! - every text of a suite's report: reason, captured output, result file names and
//!   warnings, retried attempts ([`scrub_report`]);
//! - every report file, as it is written ([`ScrubWriter`], in `report::atomic_write_with`),
//!   which catches what the structured pass cannot know about (findings read from SARIF
//!   or JUnit results, the merged SARIF log), in plain, JSON-escaped and XML-escaped form.
//!
//! The result files a suite leaves in `reports/results/<suite>/` are the tool's own output
//! and are copied as they are. A secret is also visible to anyone who can inspect the
//! container on the engine while it exists, as every container environment is.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::config::Suite;
use crate::engine::{EngineError, LogChunk};
use crate::outcome::SuiteReport;

/// What a secret value is replaced with.
pub const MARK: &str = "[REDACTED]";

/// Lines of a multi-line secret shorter than this are not redacted on their own (a lone
/// `}` or `-----` would blank out unrelated output); the whole value always is.
const MIN_LINE_LEN: usize = 8;

/// Finds and replaces a set of secret values.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so that when two secrets match at one place the longer one wins.
    patterns: Vec<Vec<u8>>,
}

impl Redactor {
    /// A redactor for `values`; empty values are ignored. Each line of a multi-line value
    /// is redacted on its own too, since tools often print such values line by line.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut set: BTreeSet<Vec<u8>> = BTreeSet::new();
        for value in values {
            if value.is_empty() {
                continue;
            }
            set.insert(value.as_bytes().to_vec());
            if value.contains('\n') {
                for line in value.lines().map(str::trim) {
                    if line.len() >= MIN_LINE_LEN {
                        set.insert(line.as_bytes().to_vec());
                    }
                }
            }
        }
        Redactor::from_patterns(set)
    }

    fn from_patterns(set: BTreeSet<Vec<u8>>) -> Self {
        let mut patterns: Vec<Vec<u8>> = set.into_iter().collect();
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Redactor { patterns }
    }

    /// The secrets of `suite`, plus every secret registered with [`protect`].
    pub fn for_suite(suite: &Suite) -> Self {
        let registered = registry().read().unwrap().clone();
        let mut set: BTreeSet<Vec<u8>> = registered.patterns.into_iter().collect();
        set.extend(Redactor::new(suite.secret_values()).patterns);
        Redactor::from_patterns(set)
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `data` with every secret replaced.
    pub fn redact_bytes<'a>(&self, data: &'a [u8]) -> Cow<'a, [u8]> {
        if self.is_empty() {
            return Cow::Borrowed(data);
        }
        let (out, end) = self.redact_until(data, true);
        debug_assert_eq!(end, data.len());
        match out {
            Some(out) => Cow::Owned(out),
            None => Cow::Borrowed(data),
        }
    }

    /// `text` with every secret replaced.
    pub fn redact_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.redact_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Whole valid UTF-8 sequences were replaced by ASCII: still valid.
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    /// Replaces in place; true if anything was replaced.
    pub fn redact_string(&self, text: &mut String) -> bool {
        match self.redact_str(text) {
            Cow::Borrowed(_) => false,
            Cow::Owned(clean) => {
                *text = clean;
                true
            }
        }
    }

    /// Redacts `data` up to the point from which a secret might still be completed by more
    /// data (all of it when `last`). Returns the redacted bytes (`None`: nothing replaced,
    /// the input up to that point is unchanged) and that point.
    ///
    /// Matches are leftmost, then longest, as if the whole stream were seen at once: a
    /// complete match is only taken if no longer or earlier secret could still be
    /// completed where it starts.
    fn redact_until(&self, data: &[u8], last: bool) -> (Option<Vec<u8>>, usize) {
        let mut out: Option<Vec<u8>> = None;
        let mut at = 0;
        let undecided = |at: usize| {
            let rest = &data[at..];
            if last {
                data.len()
            } else {
                at + rest.len() - self.held_back(rest)
            }
        };
        let mut end = undecided(at);
        while let Some((start, len)) = self.earliest_match(&data[at..]) {
            if at + start >= end {
                break;
            }
            let buf = out.get_or_insert_with(|| Vec::with_capacity(data.len()));
            buf.extend_from_slice(&data[at..at + start]);
            buf.extend_from_slice(MARK.as_bytes());
            at += start + len;
            end = undecided(at);
        }
        if let Some(buf) = &mut out {
            buf.extend_from_slice(&data[at..end]);
        }
        (out, end)
    }

    /// The first complete secret in `data`: (offset, length); the longest one at the
    /// earliest offset.
    fn earliest_match(&self, data: &[u8]) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize)> = None;
        for p in &self.patterns {
            let limit = best.map_or(data.len(), |(start, _)| (start + p.len()).min(data.len()));
            if let Some(start) = memchr::memmem::find(&data[..limit], p)
                && best.is_none_or(|(b, _)| start < b)
            {
                best = Some((start, p.len()));
            }
        }
        best
    }

    /// How many bytes at the end of `data` could be the beginning of a secret.
    fn held_back(&self, data: &[u8]) -> usize {
        let mut hold = 0;
        for p in &self.patterns {
            let window = (p.len() - 1).min(data.len());
            let tail = &data[data.len() - window..];
            // Candidates start where the secret's first byte occurs; longest first.
            for (i, _) in tail.iter().enumerate().filter(|(_, b)| **b == p[0]) {
                let k = tail.len() - i;
                if k > hold && p.starts_with(&tail[i..]) {
                    hold = k;
                    break;
                }
            }
        }
        hold
    }
}

/// Redacts one stream of output as it arrives in chunks.
#[derive(Debug)]
pub struct StreamRedactor {
    redactor: Arc<Redactor>,
    pending: Vec<u8>,
}

impl StreamRedactor {
    pub fn new(redactor: Arc<Redactor>) -> Self {
        StreamRedactor {
            redactor,
            pending: Vec::new(),
        }
    }

    /// What can be passed on after `chunk`; the possible start of a secret at its end waits
    /// for the next chunk (or [`StreamRedactor::finish`]).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let (out, end) = self.redactor.redact_until(&self.pending, false);
        let out = out.unwrap_or_else(|| self.pending[..end].to_vec());
        self.pending.drain(..end);
        Bytes::from(out)
    }

    /// The rest, once the stream has ended.
    pub fn finish(&mut self) -> Bytes {
        let pending = std::mem::take(&mut self.pending);
        Bytes::from(self.redactor.redact_bytes(&pending).into_owned())
    }
}

/// The log stream of a container with the secrets of `suite` (and every registered one)
/// redacted; stdout and stderr are redacted separately, each across its chunks.
pub fn redact_logs(
    logs: BoxStream<'static, Result<LogChunk, EngineError>>,
    suite: &Suite,
) -> BoxStream<'static, Result<LogChunk, EngineError>> {
    redact_logs_with(logs, Redactor::for_suite(suite))
}

/// The log stream of a container with every registered secret ([`protect`],
/// [`protect_values`]) redacted: for services, whose secrets are registered as they start.
pub fn redact_registered(
    logs: BoxStream<'static, Result<LogChunk, EngineError>>,
) -> BoxStream<'static, Result<LogChunk, EngineError>> {
    redact_logs_with(logs, registry().read().unwrap().clone())
}

fn redact_logs_with(
    logs: BoxStream<'static, Result<LogChunk, EngineError>>,
    redactor: Redactor,
) -> BoxStream<'static, Result<LogChunk, EngineError>> {
    if redactor.is_empty() {
        return logs;
    }
    let redactor = Arc::new(redactor);
    let mut out = StreamRedactor::new(redactor.clone());
    let mut err = StreamRedactor::new(redactor);
    let body = logs.map(Some).chain(stream::once(async { None }));
    body.flat_map(move |item| {
        let chunks: Vec<Result<LogChunk, EngineError>> = match item {
            Some(Ok(LogChunk::Stdout(b))) => vec![Ok(LogChunk::Stdout(out.push(&b)))],
            Some(Ok(LogChunk::Stderr(b))) => vec![Ok(LogChunk::Stderr(err.push(&b)))],
            Some(Err(e)) => vec![Err(e)],
            // The end: whatever was held back, which cannot be a whole secret.
            None => vec![
                Ok(LogChunk::Stdout(out.finish())),
                Ok(LogChunk::Stderr(err.finish())),
            ],
        };
        stream::iter(chunks.into_iter().filter(
            |c| !matches!(c, Ok(LogChunk::Stdout(b) | LogChunk::Stderr(b)) if b.is_empty()),
        ))
    })
    .boxed()
}

/// Redacts the secrets of `suite` (and every registered one) from every text of `report`.
pub fn scrub_report(report: &mut SuiteReport, suite: &Suite) {
    let redactor = Redactor::for_suite(suite);
    if redactor.is_empty() {
        return;
    }
    if let Some(cause) = &mut report.cause {
        cause.visit_text(&mut |text| {
            redactor.redact_string(text);
        });
    }
    redactor.redact_string(&mut report.output.stdout);
    redactor.redact_string(&mut report.output.stderr);
    for warning in &mut report.result_warnings {
        redactor.redact_string(warning);
    }
    for file in &mut report.result_files {
        let shown = file.to_string_lossy();
        if let Cow::Owned(clean) = redactor.redact_str(&shown) {
            *file = clean.into();
        }
    }
    for retried in &mut report.retried {
        retried.cause.visit_text(&mut |text| {
            redactor.redact_string(text);
        });
    }
}

fn registry() -> &'static RwLock<Redactor> {
    static REGISTRY: RwLock<Redactor> = RwLock::new(Redactor {
        patterns: Vec::new(),
    });
    &REGISTRY
}

/// Registers the secrets of `suites` for this whole process: every report file written
/// afterwards ([`scrub_text`]) and every suite's logs ([`Redactor::for_suite`]) are
/// redacted of them, in plain, JSON-escaped and XML-escaped form.
pub fn protect<'a>(suites: impl IntoIterator<Item = &'a Suite>) {
    let mut values: BTreeSet<String> = BTreeSet::new();
    for suite in suites {
        values.extend(suite.secret_values().map(str::to_owned));
    }
    protect_values(values.iter().map(String::as_str));
}

/// Registers secret values directly (see [`protect`]).
pub fn protect_values<'a>(values: impl IntoIterator<Item = &'a str>) {
    let mut forms: Vec<String> = Vec::new();
    for value in values {
        forms.push(value.to_owned());
        forms.push(json_escaped(value));
        forms.push(xml_escaped(value));
    }
    let added = Redactor::new(forms.iter().map(String::as_str));
    if added.is_empty() {
        return;
    }
    let mut registry = registry().write().unwrap();
    let mut set: BTreeSet<Vec<u8>> = std::mem::take(&mut registry.patterns).into_iter().collect();
    set.extend(added.patterns);
    *registry = Redactor::from_patterns(set);
}

/// `bytes` with every registered secret redacted.
pub fn scrub_text(bytes: &[u8]) -> Cow<'_, [u8]> {
    let registry = registry().read().unwrap();
    match registry.redact_bytes(bytes) {
        Cow::Borrowed(_) => Cow::Borrowed(bytes),
        Cow::Owned(clean) => Cow::Owned(clean),
    }
}

/// A writer that redacts every registered secret from what goes through it, however the
/// writes cut the text: the last step before a report file reaches the disk. Call
/// [`ScrubWriter::finish`] at the end, or the possible start of a secret held back at the
/// end is lost.
pub struct ScrubWriter<W: std::io::Write> {
    inner: W,
    /// `None` when no secret is registered: everything passes straight through.
    redactor: Option<StreamRedactor>,
}

impl<W: std::io::Write> ScrubWriter<W> {
    pub fn new(inner: W) -> Self {
        let registered = registry().read().unwrap().clone();
        let redactor = (!registered.is_empty()).then(|| StreamRedactor::new(Arc::new(registered)));
        ScrubWriter { inner, redactor }
    }

    /// Writes what was held back and flushes.
    pub fn finish(mut self) -> std::io::Result<W> {
        if let Some(redactor) = &mut self.redactor {
            self.inner.write_all(&redactor.finish())?;
        }
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: std::io::Write> std::io::Write for ScrubWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.redactor {
            None => self.inner.write(buf),
            Some(redactor) => {
                self.inner.write_all(&redactor.push(buf))?;
                Ok(buf.len())
            }
        }
    }

    /// Flushes what has been passed on; a held-back possible secret start stays until more
    /// is written or [`ScrubWriter::finish`].
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// How a JSON writer spells `value` inside a string.
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted[1..quoted.len().saturating_sub(1).max(1)].to_string()
}

/// How an XML writer spells `value` in text or an attribute.
fn xml_escaped(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(values: &[&str]) -> Redactor {
        Redactor::new(values.iter().copied())
    }

    #[test]
    fn whole_values_are_replaced() {
        let red = r(&["hunter2", "tok-123"]);
        assert_eq!(
            red.redact_str("pw=hunter2 t=tok-123 hunter2hunter2 hunter"),
            "pw=[REDACTED] t=[REDACTED] [REDACTED][REDACTED] hunter"
        );
        assert!(matches!(red.redact_str("nothing here"), Cow::Borrowed(_)));
        assert!(matches!(r(&[""]).redact_str("anything"), Cow::Borrowed(_)));
    }

    #[test]
    fn the_longest_secret_wins_where_two_start_together() {
        let red = r(&["abc", "abcdef"]);
        assert_eq!(red.redact_str("xabcdefx abcx"), "x[REDACTED]x [REDACTED]x");
        // One secret inside another that starts earlier.
        let red = r(&["cde", "abcdef"]);
        assert_eq!(red.redact_str("abcdef cde"), "[REDACTED] [REDACTED]");
    }

    #[test]
    fn lines_of_multi_line_secrets_are_redacted_on_their_own() {
        let key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----";
        let red = r(&[key]);
        assert_eq!(
            red.redact_str(&format!("{key}\nline: MIIEvQIBADANBgkqhkiG9w0B\n")),
            "[REDACTED]\nline: [REDACTED]\n"
        );
    }

    /// Every way of cutting `text` into chunks gives the same result as redacting it whole.
    fn stream_equals_whole(red: &Redactor, text: &[u8]) {
        let whole = red.redact_bytes(text).into_owned();
        let red = Arc::new(red.clone());
        for size in 1..=text.len() {
            let mut s = StreamRedactor::new(red.clone());
            let mut out = Vec::new();
            for chunk in text.chunks(size) {
                out.extend_from_slice(&s.push(chunk));
            }
            out.extend_from_slice(&s.finish());
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&whole),
                "chunks of {size}"
            );
        }
        for cut in 0..=text.len() {
            let mut s = StreamRedactor::new(red.clone());
            let mut out = s.push(&text[..cut]).to_vec();
            out.extend_from_slice(&s.push(&text[cut..]));
            out.extend_from_slice(&s.finish());
            assert_eq!(out, whole, "cut at {cut}");
        }
    }

    #[test]
    fn secrets_split_across_chunks_are_found() {
        let red = r(&["s3cr3t-value", "aab"]);
        stream_equals_whole(&red, b"x s3cr3t-value y s3cr3t-valu s3cr3t-values aaab aab");
        stream_equals_whole(&red, b"s3cr3t-values3cr3t-value");
        stream_equals_whole(&red, b"aaaaaaab");
        // A complete secret is held while a longer or earlier one may still complete.
        stream_equals_whole(&r(&["abc", "abcdef"]), b"xabcdefx abcx abcde");
        stream_equals_whole(&r(&["cde", "abcdef"]), b"abcdef cde abcdx abcde");
        let whole = red.redact_bytes(b"1 s3cr3t-value 2");
        assert_eq!(&whole[..], b"1 [REDACTED] 2");
    }

    #[test]
    fn streams_hold_back_only_what_could_start_a_secret() {
        let red = Arc::new(r(&["secret"]));
        let mut s = StreamRedactor::new(red);
        assert_eq!(&s.push(b"abc sec")[..], b"abc ");
        assert_eq!(&s.push(b"ond")[..], b"second");
        assert_eq!(&s.push(b" se")[..], b" ");
        assert_eq!(&s.push(b"cret!")[..], b"[REDACTED]!");
        assert_eq!(&s.push(b"secre")[..], b"");
        assert_eq!(&s.finish()[..], b"secre");
    }

    #[tokio::test]
    async fn log_streams_are_redacted_per_stream() {
        let mut suite = crate::config::tests_support::suite("s");
        suite.env.insert("TOKEN".into(), "tok-SECRET-42".into());
        suite.secret_env.insert("TOKEN".into());
        let chunks = vec![
            Ok(LogChunk::Stdout(Bytes::from_static(b"a tok-SEC"))),
            Ok(LogChunk::Stderr(Bytes::from_static(b"err tok-SECRET-"))),
            Ok(LogChunk::Stdout(Bytes::from_static(b"RET-42 b\n"))),
            Ok(LogChunk::Stderr(Bytes::from_static(b"4"))),
        ];
        let logs = redact_logs(stream::iter(chunks).boxed(), &suite);
        let got: Vec<LogChunk> = logs.map(Result::unwrap).collect().await;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        for chunk in got {
            match chunk {
                LogChunk::Stdout(b) => out.extend_from_slice(&b),
                LogChunk::Stderr(b) => err.extend_from_slice(&b),
            }
        }
        assert_eq!(String::from_utf8(out).unwrap(), "a [REDACTED] b\n");
        // Never completed: shown as it was, at the end.
        assert_eq!(String::from_utf8(err).unwrap(), "err tok-SECRET-4");
    }

    #[test]
    fn reports_are_scrubbed() {
        let mut suite = crate::config::tests_support::suite("s");
        suite.env.insert("TOKEN".into(), "tok-REPORT-77".into());
        suite.secret_env.insert("TOKEN".into());
        let bad = |message: &str| crate::cause::Cause::ResultInvalid {
            message: message.into(),
        };
        let mut report = SuiteReport::not_run("s", "img", crate::outcome::Outcome::Error, None);
        report.cause = Some(bad("bad token tok-REPORT-77"));
        report.retried = vec![crate::outcome::RetriedAttempt {
            attempt: 1,
            started_at: None,
            duration: std::time::Duration::ZERO,
            cause: bad("tok-REPORT-77 refused"),
        }];
        report.output.stdout = "tok-REPORT-77".into();
        report.result_files = vec!["dir/tok-REPORT-77.txt".into()];
        report.result_warnings = vec!["skipped tok-REPORT-77".into()];
        scrub_report(&mut report, &suite);
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("tok-REPORT-77"), "{json}");
        assert_eq!(report.cause, Some(bad("bad token [REDACTED]")));
        assert_eq!(report.output.stdout, "[REDACTED]");
    }

    #[test]
    fn registered_secrets_are_scrubbed_from_report_text_in_every_spelling() {
        let value = "p&ss<\"word\">-registry-test-9c1";
        protect_values([value]);
        let json = serde_json::to_string(&serde_json::json!({ "v": value })).unwrap();
        let xml = format!("<a m=\"{}\">{}</a>", xml_escaped(value), xml_escaped(value));
        for text in [value.to_string(), json, xml] {
            let clean = scrub_text(text.as_bytes());
            let clean = String::from_utf8_lossy(&clean);
            assert!(clean.contains(MARK), "{clean}");
            assert!(!clean.contains("registry-test-9c1"), "{clean}");
        }
        assert!(matches!(scrub_text(b"unrelated"), Cow::Borrowed(_)));
    }

    #[test]
    fn report_writers_are_scrubbed_however_the_writes_cut() {
        use std::io::Write;
        let value = "writer-secret-5e7";
        protect_values([value]);
        let text = format!("{{\"a\": \"{value}\", \"b\": \"x{value}y\"}}");
        for size in [1, 3, 7, 64] {
            let mut w = ScrubWriter::new(Vec::new());
            for piece in text.as_bytes().chunks(size) {
                w.write_all(piece).unwrap();
            }
            let out = String::from_utf8(w.finish().unwrap()).unwrap();
            assert_eq!(
                out, r#"{"a": "[REDACTED]", "b": "x[REDACTED]y"}"#,
                "writes of {size}"
            );
        }
    }
}
