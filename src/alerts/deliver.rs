//! Sending one message: a POST to the channel's URL, signed when it has a secret, tried
//! again with backoff after connection errors, timeouts, 429 and 5xx (honouring
//! `Retry-After`), never after another 4xx; every attempt is reported as it ends.
//!
//! Requests go only to the configured URL: redirects are not followed (a 3xx is refused
//! like a 4xx) and no proxy from the environment is used. The HTTP client is ureq (rustls
//! with ring), called from `spawn_blocking`; each request's timeout is the channel's
//! `timeout` or what is left before the deadline, whichever is shorter, so no request
//! thread outlives the deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::UnboundedSender;

use super::config::{Secret, WebhookUrl};
use super::sign;
use crate::report::one_line;
use crate::secrets::Redactor;
use crate::store::alerts::DeliveryStatus;

/// Attempts per delivery, the first included.
pub const MAX_ATTEMPTS: u32 = 4;

/// The wait before the second attempt; it doubles after each retry.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The longest `Retry-After` honoured; a receiver asking for more is asked again then
/// anyway, if the deadline allows.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Less time than this before the deadline is not worth a request.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(200);

/// A request gives up this long before the deadline, so that its end is still reported
/// (and recorded) in time.
const REPORT_TIME: Duration = Duration::from_millis(100);

/// What one request is made of.
#[derive(Debug, Clone)]
pub struct Job {
    pub channel: String,
    pub url: WebhookUrl,
    pub secret: Option<Secret>,
    pub body: Arc<[u8]>,
    /// `X-Phalanx-Delivery`: the same on every attempt, so a receiver can drop repeats.
    pub key: String,
    /// `X-Phalanx-Event`: `digest` or `test`.
    pub event: &'static str,
    pub timeout: Duration,
    /// The number of the first attempt made here (later than 1 when a restarted server
    /// sends a pending delivery again).
    pub first_attempt: u32,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// 2xx.
    Delivered { status: u16 },
    /// 3xx or a 4xx other than 429: the receiver will not take it; never retried.
    Rejected { status: u16 },
    /// 5xx: retried.
    ServerError { status: u16 },
    /// 429: retried after `Retry-After` when given, else the backoff.
    RateLimited { retry_after: Option<Duration> },
    /// No answer within the request's timeout: retried.
    Timeout { after: Duration },
    /// The connection could not be made or broke: retried.
    Connection { detail: String },
    /// The channel's URL or secret is not in the environment: nothing was sent.
    NotConfigured { detail: String },
    /// Anything else (TLS, a request that cannot be built): not retried.
    Failed { detail: String },
}

/// What comes after an attempt.
enum Step {
    Done(DeliveryStatus),
    Retry(Option<Duration>),
}

impl AttemptResult {
    fn step(&self) -> Step {
        match self {
            AttemptResult::Delivered { .. } => Step::Done(DeliveryStatus::Delivered),
            AttemptResult::Rejected { .. }
            | AttemptResult::NotConfigured { .. }
            | AttemptResult::Failed { .. } => Step::Done(DeliveryStatus::Failed),
            AttemptResult::RateLimited { retry_after } => Step::Retry(*retry_after),
            AttemptResult::ServerError { .. }
            | AttemptResult::Timeout { .. }
            | AttemptResult::Connection { .. } => Step::Retry(None),
        }
    }

    /// The stored word (`alert_attempts.result`).
    pub fn kind(&self) -> &'static str {
        match self {
            AttemptResult::Delivered { .. } => "delivered",
            AttemptResult::Rejected { .. } => "rejected",
            AttemptResult::ServerError { .. } => "server-error",
            AttemptResult::RateLimited { .. } => "rate-limited",
            AttemptResult::Timeout { .. } => "timeout",
            AttemptResult::Connection { .. } => "connection",
            AttemptResult::NotConfigured { .. } => "not-configured",
            AttemptResult::Failed { .. } => "failed",
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            AttemptResult::Delivered { status }
            | AttemptResult::Rejected { status }
            | AttemptResult::ServerError { status } => Some(*status),
            AttemptResult::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// The stored detail: what the status code does not say.
    pub fn detail(&self) -> Option<String> {
        match self {
            AttemptResult::RateLimited {
                retry_after: Some(after),
            } => Some(format!("Retry-After {}s", after.as_secs())),
            AttemptResult::Timeout { after } => {
                Some(format!("no answer within {:.1}s", after.as_secs_f64()))
            }
            AttemptResult::Connection { detail }
            | AttemptResult::NotConfigured { detail }
            | AttemptResult::Failed { detail } => Some(detail.clone()),
            _ => None,
        }
    }
}

impl std::fmt::Display for AttemptResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptResult::Delivered { status } => write!(f, "HTTP {status}"),
            AttemptResult::Rejected { status } => write!(f, "HTTP {status}, refused (not retried)"),
            AttemptResult::ServerError { status } => write!(f, "HTTP {status}, a server error"),
            AttemptResult::RateLimited { retry_after: None } => {
                f.write_str("HTTP 429, rate limited")
            }
            AttemptResult::RateLimited {
                retry_after: Some(after),
            } => write!(
                f,
                "HTTP 429, rate limited (Retry-After {}s)",
                after.as_secs()
            ),
            AttemptResult::Timeout { after } => {
                write!(f, "no answer within {:.1}s", after.as_secs_f64())
            }
            AttemptResult::Connection { detail } => write!(f, "connection failed: {detail}"),
            AttemptResult::NotConfigured { detail } => write!(f, "not configured: {detail}"),
            AttemptResult::Failed { detail } => write!(f, "failed: {detail}"),
        }
    }
}

/// One request made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub result: AttemptResult,
}

/// What a delivery reports while it runs, tagged with its index among the jobs.
#[derive(Debug)]
pub enum Report {
    Attempt(usize, Attempt),
    Done(usize, DeliveryStatus),
}

/// Sends `job` until it is delivered, refused, out of attempts or out of time (the
/// `deadline`), reporting each attempt and the end on `reports` as job `index`.
pub async fn send(job: Job, index: usize, deadline: Instant, reports: UnboundedSender<Report>) {
    let job = Arc::new(job);
    let mut backoff = FIRST_BACKOFF;
    let mut number = job.first_attempt;
    let end = |status| {
        let _ = reports.send(Report::Done(index, status));
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < MIN_REQUEST_TIME {
            return end(DeliveryStatus::Abandoned);
        }
        let timeout = job.timeout.min(left - REPORT_TIME);
        let started_at = Utc::now();
        let clock = Instant::now();
        let request = Arc::clone(&job);
        let result = tokio::task::spawn_blocking(move || post(&request, timeout))
            .await
            .unwrap_or_else(|e| AttemptResult::Failed {
                detail: format!("the request thread failed: {e}"),
            });
        let step = result.step();
        let attempt = Attempt {
            number,
            started_at,
            duration: clock.elapsed(),
            result,
        };
        let _ = reports.send(Report::Attempt(index, attempt));
        let wait = match step {
            Step::Done(status) => return end(status),
            Step::Retry(after) => after.unwrap_or(backoff),
        };
        if number + 1 - job.first_attempt >= MAX_ATTEMPTS {
            return end(DeliveryStatus::Failed);
        }
        if Instant::now() + wait + MIN_REQUEST_TIME >= deadline {
            return end(DeliveryStatus::Abandoned);
        }
        tokio::time::sleep(wait).await;
        backoff = backoff.saturating_mul(2);
        number += 1;
    }
}

/// One POST, blocking.
fn post(job: &Job, timeout: Duration) -> AttemptResult {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .user_agent(concat!("phalanx/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = agent
        .post(job.url.expose())
        .header("Content-Type", "application/json")
        .header("X-Phalanx-Event", job.event)
        .header("X-Phalanx-Delivery", &job.key);
    if let Some(secret) = &job.secret {
        for (name, value) in sign::headers(secret, Utc::now().timestamp(), &job.body) {
            request = request.header(name, value);
        }
    }
    match request.send(&job.body[..]) {
        Ok(response) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            classify(response.status().as_u16(), retry_after)
        }
        Err(error) => transport_error(error, timeout, job),
    }
}

fn classify(status: u16, retry_after: Option<Duration>) -> AttemptResult {
    match status {
        200..=299 => AttemptResult::Delivered { status },
        429 => AttemptResult::RateLimited { retry_after },
        500..=599 => AttemptResult::ServerError { status },
        _ => AttemptResult::Rejected { status },
    }
}

fn transport_error(error: ureq::Error, timeout: Duration, job: &Job) -> AttemptResult {
    use std::io::ErrorKind;
    // Errors may quote the request's URI: never let the URL through.
    let detail = || redact(job, &error.to_string());
    match &error {
        ureq::Error::Timeout(_) => AttemptResult::Timeout { after: timeout },
        ureq::Error::Io(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            AttemptResult::Timeout { after: timeout }
        }
        ureq::Error::Io(_)
        | ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Protocol(_) => AttemptResult::Connection { detail: detail() },
        _ => AttemptResult::Failed { detail: detail() },
    }
}

/// `text` without the job's URL or secret, on one line.
fn redact(job: &Job, text: &str) -> String {
    let url = job.url.expose();
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let mut values = vec![url, without_scheme];
    if let Some(secret) = &job.secret {
        values.push(secret.expose());
    }
    one_line(&Redactor::new(values).redact_str(text), 300)
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&Utc) - Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decide_retries() {
        assert!(matches!(
            classify(204, None).step(),
            Step::Done(DeliveryStatus::Delivered)
        ));
        assert!(matches!(
            classify(400, None).step(),
            Step::Done(DeliveryStatus::Failed)
        ));
        assert!(matches!(
            classify(404, None).step(),
            Step::Done(DeliveryStatus::Failed)
        ));
        assert!(matches!(
            classify(302, None).step(),
            Step::Done(DeliveryStatus::Failed)
        ));
        assert!(matches!(classify(500, None).step(), Step::Retry(None)));
        assert!(matches!(classify(503, None).step(), Step::Retry(None)));
        let wait = Some(Duration::from_secs(2));
        assert!(matches!(classify(429, wait).step(), Step::Retry(w) if w == wait));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
