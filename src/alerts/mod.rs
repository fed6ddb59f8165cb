//! Alerts: webhooks for what a person must act on — new serious findings, scans that could
//! not run, failed runs, accepted risks about to expire or expired — one digest message per
//! run and channel.
//!
//! The stages, each its own module:
//! - [`config`]: `[[alerts]]` in `phalanx.toml` ([`AlertSpec`]), with webhook URLs kept
//!   secret ([`WebhookUrl`]);
//! - [`plan`]: which events of a finished run go to which channel, against what the
//!   channel was told before (the alert state in the run store);
//! - [`payload`]: the body, Phalanx's versioned JSON or a Slack message;
//! - [`sign`]: `X-Phalanx-Signature`, an HMAC-SHA256 of the timestamp and body;
//! - [`deliver`]: the request, its retries and timeouts.
//!
//! [`after_run`] ties them together for a finished run, [`retry_pending`] sends what a
//! stopped server left pending, [`send_test`] a test message. Delivery never harms a run:
//! everything here reports problems in the returned [`DeliveryOutcome`] and never fails.
//! Every delivery and attempt is recorded in the store when there is one
//! (`crate::store::alerts`); without a store there is no memory of what was alerted, so
//! every finding new against the baseline (without one: every finding) is alerted.

pub mod config;
pub mod deliver;
pub mod payload;
pub mod plan;
pub mod sign;

pub use crate::store::alerts::DeliveryStatus;
pub use config::{AlertSettings, AlertSpec, EventKind, Format, WebhookUrl};
pub use deliver::{Attempt, AttemptResult};
pub use plan::{Digest, RunEvents, Subject};

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::outcome::RunReport;
use crate::store::alerts::{AttemptRow, NewDelivery, PreviousOf};
use crate::store::{GitInfo, Store};

/// How long a pending delivery stays worth sending after a restart.
pub const PENDING_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// A finished run, as the alert stage sees it.
#[derive(Clone, Copy)]
pub struct AlertRun<'a> {
    pub report: &'a RunReport,
    /// The run store the run was recorded in (`None`: `--no-store`, or it failed).
    pub store: Option<&'a Store>,
    pub git: Option<&'a GitInfo>,
    /// The target, absolute, as the store records it.
    pub target: &'a Path,
    pub project: Option<&'a str>,
    /// The server's base URL, for links to the run.
    pub server_url: Option<&'a str>,
}

/// What became of each channel's message.
#[derive(Debug, Clone, Default)]
pub struct DeliveryOutcome {
    pub channels: Vec<ChannelOutcome>,
    /// Problems with the store (each one line); the deliveries went ahead regardless.
    pub warnings: Vec<String>,
}

/// One channel's message and how it went.
#[derive(Debug, Clone)]
pub struct ChannelOutcome {
    pub channel: String,
    /// The redacted URL.
    pub endpoint: String,
    pub summary: String,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    /// The store's id of the delivery, when it was recorded.
    pub delivery: Option<i64>,
    /// The deadline it was sent under, for saying why an abandoned one did not go out.
    pub deadline: Duration,
}

impl ChannelOutcome {
    /// A message to `spec` not sent yet.
    fn pending(
        spec: &AlertSpec,
        summary: String,
        delivery: Option<i64>,
        deadline: Duration,
    ) -> Self {
        ChannelOutcome {
            channel: spec.name.clone(),
            endpoint: spec.endpoint(),
            summary,
            status: DeliveryStatus::Pending,
            attempts: Vec::new(),
            delivery,
            deadline,
        }
    }
}

impl DeliveryOutcome {
    /// The channels whose message did not go out.
    pub fn undelivered(&self) -> impl Iterator<Item = &ChannelOutcome> {
        self.channels
            .iter()
            .filter(|c| c.status != DeliveryStatus::Delivered)
    }
}

impl fmt::Display for ChannelOutcome {
    /// `alert to slack delivered (HTTP 200, 1 attempt): 3 new high findings in shop@a1b2c3d`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tries = match self.attempts.len() {
            1 => "1 attempt".to_string(),
            n => format!("{n} attempts"),
        };
        let last = self.attempts.last().map(|a| &a.result);
        match (self.status, last) {
            (DeliveryStatus::Delivered, Some(result)) => write!(
                f,
                "alert to {} delivered ({result}, {tries}): {}",
                self.channel, self.summary
            ),
            (_, Some(AttemptResult::NotConfigured { detail })) => write!(
                f,
                "alert to {} not sent: {detail}: {}",
                self.channel, self.summary
            ),
            (DeliveryStatus::Abandoned, last) => {
                write!(
                    f,
                    "alert to {} not delivered by the {}s deadline (alerts_deadline), {tries}",
                    self.channel,
                    self.deadline.as_secs_f64()
                )?;
                if let Some(result) = last {
                    write!(f, ", the last: {result}")?;
                }
                write!(f, "; it goes into the next digest: {}", self.summary)
            }
            (_, last) => {
                write!(f, "alert to {} not delivered, {tries}", self.channel)?;
                if let Some(result) = last {
                    write!(f, ", the last: {result}")?;
                }
                write!(f, "; it goes into the next digest: {}", self.summary)
            }
        }
    }
}

/// Registers every channel's URL and secret as secrets of this process, so no report file
/// holds them (`crate::secrets`), whatever printed them.
pub fn protect(channels: &[AlertSpec]) {
    let values: Vec<String> = channels.iter().flat_map(AlertSpec::secret_values).collect();
    crate::secrets::protect_values(values.iter().map(String::as_str));
}

/// Plans the digests of a finished run for `channels` and records them, now; the future
/// sends them, waiting at most `deadline`. Call it after the reports are written and the
/// run is recorded; whatever happens, the run's exit code is its own.
///
/// The future owns all it needs (its own connection to the store), so a server can spawn
/// it: `tokio::spawn(alerts::after_run(run, &channels, deadline))`.
pub fn after_run(
    run: AlertRun<'_>,
    channels: &[AlertSpec],
    deadline: Duration,
) -> impl Future<Output = DeliveryOutcome> + Send + 'static {
    let until = Instant::now() + deadline;
    let mut outcome = DeliveryOutcome::default();
    let jobs = if channels.is_empty() {
        Vec::new()
    } else {
        protect(channels);
        plan_run(run, channels, deadline, &mut outcome)
    };
    let log = log_for(run.store, &jobs, &mut outcome);
    send_all(jobs, log, until, outcome)
}

/// What `channels` are to be sent about the run, recorded in its store.
fn plan_run(
    run: AlertRun<'_>,
    channels: &[AlertSpec],
    deadline: Duration,
    outcome: &mut DeliveryOutcome,
) -> Vec<(deliver::Job, ChannelOutcome)> {
    let report = run.report;
    let subject = plan::subject(report, run.target, run.git, run.project, run.server_url);
    let target = run.target.to_string_lossy().into_owned();
    let store = run.store;
    let events = {
        let previous_of = PreviousOf {
            target: &target,
            // The store records git's branch, so runs are compared on that.
            branch: run.git.and_then(|g| g.branch.as_deref()),
            run_id: &report.run_id,
            started_at: report.started_at,
        };
        let warnings = &mut outcome.warnings;
        let mut previous = |suite: &str| {
            let store = store?;
            store
                .previous_fingerprints(&previous_of, suite)
                .unwrap_or_else(|e| {
                    warnings.push(format!("{e}; every finding of {suite} counts as new"));
                    None
                })
        };
        RunEvents::of(report, subject, &mut previous)
    };
    channels
        .iter()
        .filter_map(|spec| queue(spec, &events, store, &target, outcome, deadline))
        .collect()
}

/// A connection of its own to `store`, for recording the attempts of `jobs` from a future
/// that may run on another thread (a connection is not shared between threads).
fn log_for(
    store: Option<&Store>,
    jobs: &[(deliver::Job, ChannelOutcome)],
    outcome: &mut DeliveryOutcome,
) -> Option<Store> {
    let store = store.filter(|_| jobs.iter().any(|(_, c)| c.delivery.is_some()))?;
    match Store::open(store.path()) {
        Ok(own) => Some(own),
        Err(e) => {
            outcome
                .warnings
                .push(format!("{e}; the attempts to alert are not recorded"));
            None
        }
    }
}

/// Plans one channel's digest, records it, and returns what to send (`None`: nothing is
/// due, or the channel cannot be reached from here, which `outcome` then says).
fn queue(
    spec: &AlertSpec,
    events: &RunEvents,
    store: Option<&Store>,
    target: &str,
    outcome: &mut DeliveryOutcome,
    deadline: Duration,
) -> Option<(deliver::Job, ChannelOutcome)> {
    let known = match store.map(|s| s.alert_known(&spec.name, target, pending_since())) {
        Some(Ok(known)) => known,
        Some(Err(e)) => {
            outcome.warnings.push(format!(
                "{e}; alerts to {} go out without knowing what was alerted before",
                spec.name
            ));
            HashMap::new()
        }
        None => HashMap::new(),
    };
    let planned = plan::plan_channel(spec, events, &known);
    let Some(digest) = planned.digest else {
        if let Some(Err(e)) =
            store.map(|s| s.forget_alert_state(&spec.name, target, &planned.forget))
        {
            outcome.warnings.push(e.to_string());
        }
        return None;
    };
    let summary = digest.summary(&events.subject);
    let body = scrubbed(payload::body(spec.format, &digest, &events.subject));
    let kinds: Vec<&str> = digest.events.iter().map(|k| k.as_str()).collect();
    let key = format!("{}-{}", events.subject.run_id, spec.name);
    let endpoint = spec.endpoint();
    let new = NewDelivery {
        run_id: Some(&events.subject.run_id),
        channel: &spec.name,
        endpoint: &endpoint,
        format: spec.format.as_str(),
        events: &kinds,
        summary: &summary,
        body: &body,
        key: &key,
    };
    let queued = store.map(|s| s.queue_delivery(&new, target, &planned.mark, &planned.forget));
    let delivery = recorded(queued, outcome, &format!("the alert to {}", spec.name));
    let channel = ChannelOutcome::pending(spec, summary, delivery, deadline);
    let message = Message {
        body,
        key,
        event: "digest",
        first_attempt: 1,
    };
    job_for(spec, message, channel, store, outcome)
}

/// The id of a delivery just queued in the store, or `None` (no store, or it failed: then
/// `what` is sent but not recorded, which `outcome` says).
fn recorded(
    queued: Option<Result<i64, crate::store::StoreError>>,
    outcome: &mut DeliveryOutcome,
    what: &str,
) -> Option<i64> {
    match queued? {
        Ok(id) => Some(id),
        Err(e) => {
            outcome
                .warnings
                .push(format!("{e}; {what} is sent but not recorded"));
            None
        }
    }
}

/// What is sent to a channel, whatever its URL.
struct Message {
    body: Vec<u8>,
    /// `X-Phalanx-Delivery`.
    key: String,
    /// `X-Phalanx-Event`.
    event: &'static str,
    first_attempt: u32,
}

/// The request for `spec`, or, when its URL or secret is missing here, the failed
/// delivery saying so (recorded, so what it was about is owed to the next run).
fn job_for(
    spec: &AlertSpec,
    message: Message,
    mut channel: ChannelOutcome,
    store: Option<&Store>,
    outcome: &mut DeliveryOutcome,
) -> Option<(deliver::Job, ChannelOutcome)> {
    let Message {
        body,
        key,
        event,
        first_attempt,
    } = message;
    let resolved = spec
        .url()
        .and_then(|url| spec.secret().map(|secret| (url, secret)));
    match resolved {
        Ok((url, secret)) => Some((
            deliver::Job {
                channel: spec.name.clone(),
                url,
                secret,
                body: Arc::from(body),
                key,
                event,
                timeout: spec.timeout,
                first_attempt,
            },
            channel,
        )),
        Err(missing) => {
            let attempt = Attempt {
                number: first_attempt,
                started_at: Utc::now(),
                duration: Duration::ZERO,
                result: AttemptResult::NotConfigured {
                    detail: missing.to_string(),
                },
            };
            record(store, &channel, &attempt, outcome);
            channel.attempts.push(attempt);
            finish(store, &mut channel, DeliveryStatus::Failed, outcome);
            outcome.channels.push(channel);
            None
        }
    }
}

/// Sends every job at once and waits for them until `until`; what is not done by then is
/// abandoned. Attempts are recorded in `store` as they end.
async fn send_all(
    jobs: Vec<(deliver::Job, ChannelOutcome)>,
    store: Option<Store>,
    until: Instant,
    mut outcome: DeliveryOutcome,
) -> DeliveryOutcome {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut channels = Vec::with_capacity(jobs.len());
    let mut tasks = Vec::with_capacity(jobs.len());
    for (index, (job, channel)) in jobs.into_iter().enumerate() {
        tasks.push(tokio::spawn(deliver::send(job, index, until, tx.clone())));
        channels.push(channel);
    }
    drop(tx);
    let deadline = tokio::time::sleep_until(until.into());
    tokio::pin!(deadline);
    loop {
        let report = tokio::select! {
            report = rx.recv() => report,
            () = &mut deadline => None,
        };
        match report {
            Some(deliver::Report::Attempt(i, attempt)) => {
                record(store.as_ref(), &channels[i], &attempt, &mut outcome);
                channels[i].attempts.push(attempt);
            }
            Some(deliver::Report::Done(i, status)) => {
                finish(store.as_ref(), &mut channels[i], status, &mut outcome)
            }
            None => break,
        }
    }
    for task in tasks {
        task.abort();
    }
    for mut channel in channels {
        if channel.status == DeliveryStatus::Pending {
            finish(
                store.as_ref(),
                &mut channel,
                DeliveryStatus::Abandoned,
                &mut outcome,
            );
        }
        outcome.channels.push(channel);
    }
    outcome
}

fn record(
    store: Option<&Store>,
    channel: &ChannelOutcome,
    attempt: &Attempt,
    outcome: &mut DeliveryOutcome,
) {
    let (Some(store), Some(id)) = (store, channel.delivery) else {
        return;
    };
    let row = AttemptRow {
        attempt: attempt.number,
        started_at: attempt.started_at,
        duration: attempt.duration,
        result: attempt.result.kind().to_string(),
        http_status: attempt.result.http_status(),
        detail: attempt.result.detail(),
    };
    if let Err(e) = store.record_attempt(id, &row) {
        outcome.warnings.push(format!(
            "{e}; an attempt to alert {} is not recorded",
            channel.channel
        ));
    }
}

fn finish(
    store: Option<&Store>,
    channel: &mut ChannelOutcome,
    status: DeliveryStatus,
    outcome: &mut DeliveryOutcome,
) {
    channel.status = status;
    let (Some(store), Some(id)) = (store, channel.delivery) else {
        return;
    };
    if let Err(e) = store.finish_delivery(id, status) {
        outcome.warnings.push(format!(
            "{e}; the end of the alert to {} is not recorded",
            channel.channel
        ));
    }
}

/// The body with every secret of this process redacted (suite secrets a tool printed into
/// a finding's message, say): a webhook leaves the machine.
fn scrubbed(body: Vec<u8>) -> Vec<u8> {
    match crate::secrets::scrub_text(&body) {
        std::borrow::Cow::Borrowed(_) => body,
        std::borrow::Cow::Owned(clean) => clean,
    }
}

/// Pending deliveries queued before this are no longer being sent by anyone.
fn pending_since() -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(PENDING_MAX_AGE).unwrap_or_default()
}

/// Sends again what is still pending in the store for `channels` (a server stopped while
/// sending it), waiting at most `deadline`. Deliveries pending for longer than
/// [`PENDING_MAX_AGE`] are marked abandoned instead: their news goes into the next digest.
/// Like [`after_run`], reads the store now and returns a future that can be spawned.
pub fn retry_pending(
    store: &Store,
    channels: &[AlertSpec],
    deadline: Duration,
) -> impl Future<Output = DeliveryOutcome> + Send + 'static {
    let until = Instant::now() + deadline;
    let mut outcome = DeliveryOutcome::default();
    let names: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
    let pending = store
        .pending_deliveries(&names, pending_since())
        .unwrap_or_else(|e| {
            outcome
                .warnings
                .push(format!("{e}; pending alerts are not sent again"));
            Vec::new()
        });
    let mut jobs = Vec::new();
    for p in pending {
        let Some(spec) = channels.iter().find(|c| c.name == p.channel) else {
            continue;
        };
        let channel = ChannelOutcome::pending(spec, p.summary, Some(p.id), deadline);
        let message = Message {
            body: p.body,
            key: p.key,
            event: if p.run_id.is_some() { "digest" } else { "test" },
            first_attempt: p.next_attempt,
        };
        if let Some(job) = job_for(spec, message, channel, Some(store), &mut outcome) {
            jobs.push(job);
        }
    }
    let log = log_for(Some(store), &jobs, &mut outcome);
    send_all(jobs, log, until, outcome)
}

/// Sends `spec` a clearly marked test message, recorded in `store` when given.
pub fn send_test(
    spec: &AlertSpec,
    store: Option<&Store>,
    deadline: Duration,
) -> impl Future<Output = DeliveryOutcome> + Send + 'static {
    let until = Instant::now() + deadline;
    let mut outcome = DeliveryOutcome::default();
    let summary = format!(
        "Test message from Phalanx to the channel `{}`: alerts reach it",
        spec.name
    );
    let body = payload::test_body(spec.format, &spec.name, &summary);
    let key = format!("test-{}", crate::run::new_run_id());
    let endpoint = spec.endpoint();
    let new = NewDelivery {
        run_id: None,
        channel: &spec.name,
        endpoint: &endpoint,
        format: spec.format.as_str(),
        events: &[],
        summary: &summary,
        body: &body,
        key: &key,
    };
    let queued = store.map(|s| s.queue_test_delivery(&new));
    let delivery = recorded(queued, &mut outcome, "the test message");
    let channel = ChannelOutcome::pending(spec, summary, delivery, deadline);
    let message = Message {
        body,
        key,
        event: "test",
        first_attempt: 1,
    };
    let jobs: Vec<_> = job_for(spec, message, channel, store, &mut outcome)
        .into_iter()
        .collect();
    let log = log_for(store, &jobs, &mut outcome);
    send_all(jobs, log, until, outcome)
}
