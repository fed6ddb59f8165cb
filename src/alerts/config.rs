//! `[[alerts]]` in `phalanx.toml`: where alerts go, in which format, on which events.
//!
//! ```toml
//! alerts_deadline = "30s"                 # how long `phalanx run` waits for deliveries
//!
//! [[alerts]]
//! name            = "appsec-slack"        # default: the url_from_env variable, else the URL's host
//! url_from_env    = "SLACK_WEBHOOK_URL"   # or url = "https://…" (a secret either way)
//! format          = "slack"               # json (default) | slack
//! on              = ["new-finding", "suite-error", "suppression-expiring"]
//! min_severity    = "high"                # for new-finding (default high)
//! branches        = ["main", "release/*"] # only runs on these git branches (default: all)
//! secret_from_env = "PHALANX_WEBHOOK_SECRET"  # signs each request (HMAC-SHA256)
//! timeout         = "10s"                 # per request (default 10s)
//! ```
//!
//! Webhook URLs are credentials (Slack's and Teams' are the key to post): [`WebhookUrl`]
//! shows itself as `scheme://host/[REDACTED]` in `Debug` and `Display`, and errors about a
//! URL never repeat it. The raw serde type, [`RawAlerts`], reads one list of entries and
//! checks their names are unique, so a per-project `alerts` list can reuse it.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer};
use serde::{Deserialize as DeriveDeserialize, Serialize};

use crate::config::suppressions::PathGlob;
use crate::config::values::{Name, NonEmptyVec, Timeout, checked_str};
use crate::findings::Severity;
use crate::secrets::MARK;

/// How long one request may take unless `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `phalanx run` waits for its deliveries unless `alerts_deadline` says otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// Finding alerts at or above this severity unless `min_severity` says otherwise.
pub const DEFAULT_MIN_SEVERITY: Severity = Severity::High;

/// What an alert can be about. Spelled in kebab case in `on = [...]` and in payloads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, DeriveDeserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A finding new against the baseline (or the previous run of the target), not yet
    /// alerted to this channel.
    NewFinding,
    /// A suite ended in error or timed out, or its file could not be read: the scan
    /// cannot be trusted.
    SuiteError,
    /// The run's exit code is not 0.
    RunFailed,
    /// An accepted risk ends within `suppressions_warn_days`.
    SuppressionExpiring,
    /// An accepted risk is past its date: its findings gate again.
    SuppressionExpired,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::NewFinding,
        EventKind::SuiteError,
        EventKind::RunFailed,
        EventKind::SuppressionExpiring,
        EventKind::SuppressionExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::NewFinding => "new-finding",
            EventKind::SuiteError => "suite-error",
            EventKind::RunFailed => "run-failed",
            EventKind::SuppressionExpiring => "suppression-expiring",
            EventKind::SuppressionExpired => "suppression-expired",
        }
    }

    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body a channel is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, DeriveDeserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Phalanx's own versioned document (README, "Alerts").
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text` and `blocks`).
    Slack,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Slack => "slack",
        }
    }
}

/// A webhook URL: a secret. `Debug` and `Display` show only its scheme and host.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    text: String,
    shown: String,
}

impl WebhookUrl {
    /// Checks `text` is an absolute `http://` or `https://` URL with a host. The error
    /// never repeats the URL, which is a secret.
    pub fn parse(text: &str) -> Result<WebhookUrl, String> {
        let bad = |why: &str| {
            format!(
                "expected an http:// or https:// URL ({why}; not shown: a webhook URL is a secret)"
            )
        };
        let uri: ureq::http::Uri = text.trim().parse().map_err(|_| bad("it does not parse"))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s,
            Some(_) => return Err(bad("its scheme is neither http nor https")),
            None => return Err(bad("it has no scheme")),
        };
        let host = match uri.host() {
            Some(h) if !h.is_empty() => h,
            _ => return Err(bad("it has no host")),
        };
        let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(WebhookUrl {
            text: text.trim().to_string(),
            shown: format!("{scheme}://{host}{port}/{MARK}"),
        })
    }

    /// The URL itself, for the request only.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// What may be printed or stored: scheme, host and port.
    pub fn redacted(&self) -> &str {
        &self.shown
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WebhookUrl").field(&self.shown).finish()
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_str(d, "an http:// or https:// URL", WebhookUrl::parse)
    }
}

/// A signing secret read from the environment. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MARK)
    }
}

/// Where a channel's URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    Given(WebhookUrl),
    /// Read when an alert is sent, so a run without the variable (a fork's pipeline) still
    /// runs, and says the channel is not configured.
    Env(String),
}

/// One `[[alerts]]` entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSpec {
    /// Unique among the entries: names the channel in the store, the log and `alerts test`.
    pub name: String,
    pub url: UrlSource,
    pub format: Format,
    /// Sorted, without repeats.
    pub on: Vec<EventKind>,
    pub min_severity: Severity,
    /// Globs (`*` stays within a `/`); empty means every branch.
    pub branches: Vec<PathGlob>,
    /// The environment variable holding the signing secret.
    pub secret_from_env: Option<String>,
    /// Per request.
    pub timeout: Duration,
}

/// Why a channel could not be used when an alert was due.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("${var} is not set (url_from_env)")]
    UrlUnset { var: String },
    #[error("${var}: {why}")]
    BadUrl { var: String, why: String },
    #[error("${var} is not set (secret_from_env)")]
    SecretUnset { var: String },
}

impl AlertSpec {
    pub fn wants(&self, kind: EventKind) -> bool {
        self.on.contains(&kind)
    }

    /// Whether a run on `branch` is one this channel hears of: every run without
    /// `branches`; with them, only a run on a matching branch (a detached HEAD matches none).
    pub fn applies_to(&self, branch: Option<&str>) -> bool {
        self.branches.is_empty()
            || branch.is_some_and(|b| self.branches.iter().any(|g| g.is_match(b)))
    }

    /// The URL, reading the environment for `url_from_env`.
    pub fn url(&self) -> Result<WebhookUrl, ChannelError> {
        match &self.url {
            UrlSource::Given(url) => Ok(url.clone()),
            UrlSource::Env(var) => match std::env::var(var) {
                Ok(text) if !text.trim().is_empty() => {
                    WebhookUrl::parse(&text).map_err(|why| ChannelError::BadUrl {
                        var: var.clone(),
                        why,
                    })
                }
                _ => Err(ChannelError::UrlUnset { var: var.clone() }),
            },
        }
    }

    /// The signing secret, when `secret_from_env` names one; an unset variable is an
    /// error rather than an unsigned request the receiver would reject or, worse, accept.
    pub fn secret(&self) -> Result<Option<Secret>, ChannelError> {
        let Some(var) = &self.secret_from_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Some(Secret(value))),
            _ => Err(ChannelError::SecretUnset { var: var.clone() }),
        }
    }

    /// Where it goes, as it may be printed and stored: the redacted URL, or `$VAR` when
    /// the variable is unset.
    pub fn endpoint(&self) -> String {
        match self.url() {
            Ok(url) => url.redacted().to_string(),
            Err(_) => match &self.url {
                UrlSource::Env(var) => format!("${var}"),
                UrlSource::Given(url) => url.redacted().to_string(),
            },
        }
    }

    /// The values that must never be printed or written: the URL and the secret, as far
    /// as the environment holds them now.
    pub fn secret_values(&self) -> Vec<String> {
        let mut values = Vec::new();
        if let Ok(url) = self.url() {
            values.push(url.expose().to_string());
        }
        if let Ok(Some(secret)) = self.secret() {
            values.push(secret.expose().to_string());
        }
        values
    }
}

/// The alert settings of a project: its channels and how long a CLI run waits for them.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    pub channels: Vec<AlertSpec>,
    /// `alerts_deadline`.
    pub deadline: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            channels: Vec::new(),
            deadline: DEFAULT_DEADLINE,
        }
    }
}

impl AlertSettings {
    /// From `phalanx.toml`'s `[[alerts]]` and `alerts_deadline`.
    pub(crate) fn resolve(alerts: Option<RawAlerts>, deadline: Option<Timeout>) -> AlertSettings {
        AlertSettings {
            channels: alerts.map(|a| a.0).unwrap_or_default(),
            deadline: deadline.map_or(DEFAULT_DEADLINE, |t| t.0),
        }
    }

    pub fn channel(&self, name: &str) -> Option<&AlertSpec> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// A list of `[[alerts]]` entries as written, each checked, with unique names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawAlerts(pub Vec<AlertSpec>);

impl<'de> Deserialize<'de> for RawAlerts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<RawAlert>::deserialize(d)?;
        let mut seen = BTreeSet::new();
        for entry in &entries {
            if !seen.insert(entry.0.name.as_str()) {
                return Err(de::Error::custom(format!(
                    "two [[alerts]] entries are called `{}`: give each a `name` of its own",
                    entry.0.name
                )));
            }
        }
        Ok(RawAlerts(entries.into_iter().map(|e| e.0).collect()))
    }
}

/// One `[[alerts]]` entry as written.
#[derive(DeriveDeserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    name: Option<Name>,
    url: Option<WebhookUrl>,
    url_from_env: Option<EnvName>,
    format: Option<Format>,
    on: NonEmptyVec<EventKind>,
    min_severity: Option<Severity>,
    branches: Option<Vec<BranchGlob>>,
    secret_from_env: Option<EnvName>,
    timeout: Option<Timeout>,
}

struct RawAlert(AlertSpec);

impl<'de> Deserialize<'de> for RawAlert {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = Fields::deserialize(d)?;
        let url = match (f.url, f.url_from_env) {
            (Some(url), None) => UrlSource::Given(url),
            (None, Some(var)) => UrlSource::Env(var.0),
            (Some(_), Some(_)) => {
                return Err(de::Error::custom(
                    "an [[alerts]] entry has either `url` or `url_from_env`, not both",
                ));
            }
            (None, None) => {
                return Err(de::Error::custom(
                    "an [[alerts]] entry needs `url` or `url_from_env` (the variable holding the URL)",
                ));
            }
        };
        let name = match (f.name, &url) {
            (Some(name), _) => name.0,
            (None, UrlSource::Env(var)) => var.clone(),
            (None, UrlSource::Given(given)) => host_of(given),
        };
        let mut on = f.on.0;
        on.sort();
        on.dedup();
        Ok(RawAlert(AlertSpec {
            name,
            url,
            format: f.format.unwrap_or_default(),
            on,
            min_severity: f.min_severity.unwrap_or(DEFAULT_MIN_SEVERITY),
            branches: f
                .branches
                .unwrap_or_default()
                .into_iter()
                .map(|b| b.0)
                .collect(),
            secret_from_env: f.secret_from_env.map(|v| v.0),
            timeout: f.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
        }))
    }
}

/// The host of a URL, as a default channel name.
fn host_of(url: &WebhookUrl) -> String {
    let shown = url.redacted();
    let after_scheme = shown.split_once("://").map_or(shown, |(_, rest)| rest);
    after_scheme
        .split(['/', ':'])
        .next()
        .unwrap_or(after_scheme)
        .to_string()
}

/// An environment variable's name: `[A-Za-z_][A-Za-z0-9_]*`.
struct EnvName(String);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "an environment variable name such as \"SLACK_WEBHOOK_URL\"";
        checked_str(d, EXPECTING, |s| {
            let mut chars = s.chars();
            let first = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if first && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Ok(EnvName(s.to_string()))
            } else {
                Err(format!("expected {EXPECTING}, found {s:?}"))
            }
        })
    }
}

/// A branch name or glob (`release/*`).
struct BranchGlob(PathGlob);

impl<'de> Deserialize<'de> for BranchGlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EXPECTING: &str = "a branch name or glob such as \"main\" or \"release/*\"";
        checked_str(d, EXPECTING, |s| {
            if s.trim().is_empty() {
                return Err(format!("expected {EXPECTING}, found {s:?}"));
            }
            PathGlob::new(s)
                .map(BranchGlob)
                .map_err(|_| format!("expected {EXPECTING}, found {s:?}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `text` as phalanx.toml, as `phalanx` does.
    fn parse(text: &str) -> Result<RawAlerts, String> {
        crate::config::parse_project(std::path::Path::new("phalanx.toml"), text)
            .map(|p| RawAlerts(p.alerts.channels))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_entry_gets_defaults_and_a_name_from_its_url() {
        let alerts = parse(
            "[[alerts]]\nurl = \"https://hooks.example.com/services/T0/B1/secret\"\non = [\"suite-error\", \"new-finding\", \"new-finding\"]\n",
        )
        .unwrap();
        let spec = &alerts.0[0];
        assert_eq!(spec.name, "hooks.example.com");
        assert_eq!(spec.format, Format::Json);
        assert_eq!(spec.on, [EventKind::NewFinding, EventKind::SuiteError]);
        assert_eq!(spec.min_severity, Severity::High);
        assert_eq!(spec.timeout, DEFAULT_TIMEOUT);
        assert!(spec.applies_to(None), "no branches: every run");
    }

    #[test]
    fn the_url_never_shows_in_debug_display_or_errors() {
        let url = WebhookUrl::parse("https://user:pw@hooks.slack.com:8443/services/T0/B1/XYZ?x=1")
            .unwrap();
        for shown in [format!("{url}"), format!("{url:?}")] {
            assert!(!shown.contains("XYZ") && !shown.contains("pw"), "{shown}");
            assert!(shown.contains("https://hooks.slack.com:8443/"), "{shown}");
        }
        let alerts =
            parse("[[alerts]]\nurl = \"https://h.example/T0K3N\"\non = [\"run-failed\"]\n")
                .unwrap();
        assert!(!format!("{alerts:?}").contains("T0K3N"));
        for bad in ["ftp://h.example/T0K3N", "/relative/T0K3N", "https:///T0K3N"] {
            let err = WebhookUrl::parse(bad).unwrap_err();
            assert!(!err.contains("T0K3N"), "{err}");
        }
        let err = parse("[[alerts]]\nurl = \"ftp://h.example/T0K3N\"\non = [\"run-failed\"]\n")
            .unwrap_err();
        assert!(!err.contains("T0K3N") && err.contains("http"), "{err}");
        assert!(
            err.starts_with("phalanx.toml:2:7: key `alerts.url`"),
            "{err}"
        );
    }

    #[test]
    fn url_and_url_from_env_exclude_each_other_and_names_are_unique() {
        let both = parse(
            "[[alerts]]\nurl = \"https://a.example/x\"\nurl_from_env = \"HOOK\"\non = [\"run-failed\"]\n",
        )
        .unwrap_err();
        assert!(both.contains("not both"), "{both}");
        let neither = parse("[[alerts]]\non = [\"run-failed\"]\n").unwrap_err();
        assert!(neither.contains("url_from_env"), "{neither}");
        let twice = parse(
            "[[alerts]]\nurl_from_env = \"HOOK\"\non = [\"run-failed\"]\n[[alerts]]\nurl_from_env = \"HOOK\"\non = [\"suite-error\"]\n",
        )
        .unwrap_err();
        assert!(
            twice.contains("`HOOK`") && twice.contains("name"),
            "{twice}"
        );
        assert!(twice.starts_with("phalanx.toml:"), "positioned: {twice}");
        let empty_on = parse("[[alerts]]\nurl_from_env = \"HOOK\"\non = []\n").unwrap_err();
        assert!(empty_on.contains("non-empty"), "{empty_on}");
        let unknown =
            parse("[[alerts]]\nurl_from_env = \"HOOK\"\non = [\"new-findings\"]\n").unwrap_err();
        assert!(unknown.contains("new-finding"), "{unknown}");
        let bad_var =
            parse("[[alerts]]\nurl_from_env = \"1HOOK\"\non = [\"run-failed\"]\n").unwrap_err();
        assert!(bad_var.contains("environment variable"), "{bad_var}");
    }

    #[test]
    fn branches_are_globs_within_one_folder() {
        let alerts = parse(
            "[[alerts]]\nurl_from_env = \"HOOK\"\non = [\"new-finding\"]\nbranches = [\"main\", \"release/*\"]\n",
        )
        .unwrap();
        let spec = &alerts.0[0];
        assert!(spec.applies_to(Some("main")));
        assert!(spec.applies_to(Some("release/1.2")));
        assert!(!spec.applies_to(Some("release/1.2/hotfix")));
        assert!(!spec.applies_to(Some("feature")));
        assert!(!spec.applies_to(None), "a detached HEAD is on no branch");
    }

    #[test]
    fn an_unset_url_variable_is_named_not_fatal() {
        let alerts = parse(
            "[[alerts]]\nurl_from_env = \"PHALANX_TEST_SURELY_UNSET_HOOK\"\non = [\"run-failed\"]\n",
        )
        .unwrap();
        let spec = &alerts.0[0];
        assert_eq!(
            spec.url().unwrap_err().to_string(),
            "$PHALANX_TEST_SURELY_UNSET_HOOK is not set (url_from_env)"
        );
        assert_eq!(spec.endpoint(), "$PHALANX_TEST_SURELY_UNSET_HOOK");
    }
}
