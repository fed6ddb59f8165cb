//! Who may do what on `phalanx serve`: bearer tokens, their roles and their projects.
//!
//! A token is 32 random bytes shown once (`phalanx token new`); `phalanx.toml` keeps only
//! its SHA-256 (`[[tokens]]`), so a leaked config file gives no token away. A presented
//! token is hashed and compared with every configured hash in constant time. This module
//! knows nothing of HTTP: the server maps "no such token" to 401 and "not allowed" to 403.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every token starts with, so that secret scanners (and people) recognise one.
pub const TOKEN_PREFIX: &str = "phx_";

/// Random bytes in a token: 256 bits, far beyond guessing.
const TOKEN_BYTES: usize = 32;

/// What a token may do. Each role may do everything the one before it may.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads projects, runs, findings, reports and events.
    Viewer,
    /// Also triggers and cancels runs.
    Runner,
    /// Everything, including what is only for administrators.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Runner => "runner",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do `action`.
    pub fn allows(self, action: Action) -> bool {
        self >= action.needs()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request asks to do, as far as roles are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Trigger,
    Cancel,
    Administer,
}

impl Action {
    /// The least role that may do it.
    pub fn needs(self) -> Role {
        match self {
            Action::Read => Role::Viewer,
            Action::Trigger | Action::Cancel => Role::Runner,
            Action::Administer => Role::Admin,
        }
    }
}

/// Which projects a token sees: the ones it names, or every one (`projects = ["*"]`). An
/// admin token too sees only its own projects unless it says `"*"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Only(BTreeSet<String>),
}

impl Scope {
    pub fn sees(&self, project: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(names) => names.contains(project),
        }
    }

    /// Whether it sees a run recorded without a project (`phalanx run` without
    /// `--project`): only a token that sees every project does.
    pub fn sees_run_of(&self, project: Option<&str>) -> bool {
        match project {
            Some(p) => self.sees(p),
            None => *self == Scope::All,
        }
    }

    /// The names, for listing (`["*"]` for every project).
    pub fn names(&self) -> Vec<String> {
        match self {
            Scope::All => vec!["*".into()],
            Scope::Only(names) => names.iter().cloned().collect(),
        }
    }
}

/// One configured token: its name (for logs), role, projects and the SHA-256 of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub name: String,
    pub role: Role,
    pub scope: Scope,
    pub sha256: [u8; 32],
}

impl TokenSpec {
    /// Whether this token may do `action` on `project`.
    pub fn may(&self, action: Action, project: &str) -> bool {
        self.role.allows(action) && self.scope.sees(project)
    }
}

/// The configured tokens, checked against what a request presents.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    specs: Vec<TokenSpec>,
}

impl Tokens {
    pub fn new(specs: Vec<TokenSpec>) -> Tokens {
        Tokens { specs }
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The token whose hash is the presented text's, if any. Every configured hash is
    /// compared, in constant time each, so the time taken says nothing about which
    /// (or whether one) matched.
    pub fn verify(&self, presented: &str) -> Option<&TokenSpec> {
        let hash = sha256(presented);
        let mut found = None;
        for spec in &self.specs {
            if bool::from(spec.sha256.ct_eq(&hash)) {
                found = found.or(Some(spec));
            }
        }
        found
    }
}

/// The SHA-256 of a token's text, as `[[tokens]]` stores it.
pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// 64 hex digits back to the 32 bytes of a hash.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A token just made: its text (shown once, never stored) and its hash.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: String,
    pub sha256: [u8; 32],
}

/// Makes a token from the operating system's random source.
pub fn new_token() -> Result<NewToken, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    let token = format!("{TOKEN_PREFIX}{}", to_hex(&bytes));
    Ok(NewToken {
        sha256: sha256(&token),
        token,
    })
}

/// The `[[tokens]]` entry for a new token, to paste into `phalanx.toml`. Names come from
/// the command line and were checked as names, so they need no TOML escaping beyond
/// quoting; `toml` quotes them anyway.
pub fn toml_entry(name: &str, role: Role, scope: &Scope, sha256: &[u8; 32]) -> String {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let projects: Vec<String> = scope.names().iter().map(|p| quote(p)).collect();
    format!(
        "[[tokens]]\nname = {}\nrole = {}\nprojects = [{}]\nsha256 = {}\n",
        quote(name),
        quote(role.as_str()),
        projects.join(", "),
        quote(&to_hex(sha256)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, token: &str, role: Role, scope: Scope) -> TokenSpec {
        TokenSpec {
            name: name.into(),
            role,
            scope,
            sha256: sha256(token),
        }
    }

    #[test]
    fn roles_are_ordered_viewer_runner_admin() {
        assert!(Role::Viewer.allows(Action::Read));
        assert!(!Role::Viewer.allows(Action::Trigger));
        assert!(!Role::Viewer.allows(Action::Cancel));
        assert!(Role::Runner.allows(Action::Trigger));
        assert!(Role::Runner.allows(Action::Cancel));
        assert!(!Role::Runner.allows(Action::Administer));
        assert!(Role::Admin.allows(Action::Administer));
    }

    #[test]
    fn a_token_is_found_by_its_text_and_only_by_it() {
        let one = Scope::Only(["web".to_string()].into());
        let tokens = Tokens::new(vec![
            spec("a", "phx_a", Role::Viewer, one.clone()),
            spec("b", "phx_b", Role::Admin, Scope::All),
        ]);
        assert_eq!(tokens.verify("phx_b").map(|s| s.name.as_str()), Some("b"));
        assert_eq!(tokens.verify("phx_a").map(|s| s.name.as_str()), Some("a"));
        assert!(tokens.verify("phx_c").is_none());
        assert!(tokens.verify("").is_none());
        let a = tokens.verify("phx_a").unwrap();
        assert!(a.may(Action::Read, "web"));
        assert!(!a.may(Action::Read, "api"));
        assert!(!a.may(Action::Trigger, "web"));
    }

    #[test]
    fn only_an_all_projects_token_sees_runs_without_a_project() {
        let one = Scope::Only(["web".to_string()].into());
        assert!(!one.sees_run_of(None));
        assert!(one.sees_run_of(Some("web")));
        assert!(Scope::All.sees_run_of(None));
    }

    #[test]
    fn a_new_token_is_random_prefixed_and_hashes_to_its_entry() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a.token, b.token);
        assert!(a.token.starts_with(TOKEN_PREFIX));
        assert_eq!(a.token.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(sha256(&a.token), a.sha256);
        let hex = to_hex(&a.sha256);
        assert_eq!(parse_sha256(&hex), Some(a.sha256));
        assert_eq!(parse_sha256(&hex[1..]), None);
        assert_eq!(parse_sha256(&"g".repeat(64)), None);
    }

    #[test]
    fn the_entry_is_toml_that_reads_back() {
        let scope = Scope::Only(["api".to_string(), "web".to_string()].into());
        let entry = toml_entry("qa-bot", Role::Runner, &scope, &[0xab; 32]);
        let value: toml::Table = entry.parse().unwrap();
        let token = &value["tokens"].as_array().unwrap()[0];
        assert_eq!(token["name"].as_str(), Some("qa-bot"));
        assert_eq!(token["role"].as_str(), Some("runner"));
        assert_eq!(token["projects"].as_array().unwrap().len(), 2);
        assert_eq!(token["sha256"].as_str(), Some("ab".repeat(32).as_str()));
    }
}
