//! `phalanx doctor`, and the prerequisites a run checks before it starts a single suite.
//!
//! Doctor looks at everything a run needs (the engine, its storage, free disk, the images
//! of the selected suites and what building them takes, the reports folder, the config
//! files) and says, for each problem, what is wrong and the command that fixes it.
//! [`preflight`] is the part of that which every suite of a run depends on: when one of
//! those is missing, the run says so once and starts nothing.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{self, ConfigError, LoadedSuites, ProjectConfig, Suite};
use crate::engine::Engine;
use crate::engine::base::{self, BASE_IMAGE};
use crate::engine::docker::{DockerEngine, EngineFacts};
use crate::images::{self, ImageJob};
use crate::plan;

/// Below this much free space where images go, a first build (a few GB) cannot finish.
const IMAGES_FAIL_BYTES: u64 = 2 << 30;
/// Below this, builds and result volumes may run out part-way.
const IMAGES_WARN_BYTES: u64 = 10 << 30;
/// Below this much free space where reports go, logs and results may not fit.
const REPORTS_FAIL_BYTES: u64 = 64 << 20;
const REPORTS_WARN_BYTES: u64 = 1 << 30;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// A run works, but something will cost time or data (a slow storage driver, little
    /// free disk, an unreadable run store).
    Warn,
    /// A run would not work.
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the diagnosis: what was checked, what was found, and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// The command or change that fixes it; `None` when there is nothing to do.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn bad(name: &'static str, status: Status, detail: impl Into<String>, fix: &str) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
            fix: Some(fix.to_string()),
        }
    }
}

/// Every check, in the order shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    pub checks: Vec<Check>,
}

impl Diagnosis {
    /// A run would work: nothing failed (warnings cost time or data, not the run).
    pub fn would_run(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// 0 when a run would work, else 3, whatever failed: doctor answers one question.
    /// (A run itself exits 2 for an invalid suite file; doctor's own usage errors, such
    /// as an unknown flag, exit 2 as well.)
    pub fn exit_code(&self) -> u8 {
        if self.would_run() { 0 } else { 3 }
    }

    /// One line per check (a detail's further lines indented below it), then its fix;
    /// never cut to the terminal width.
    pub fn render(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let indent = format!("\n{:<4}  {:<width$}    ", "", "");
        let mut out = String::new();
        for check in &self.checks {
            let line = format!(
                "{:<4}  {:<width$}  {}",
                check.status.label(),
                check.name,
                check.detail.replace('\n', &indent)
            );
            out.push_str(line.trim_end());
            out.push('\n');
            if let Some(fix) = &check.fix {
                out.push_str(&format!("{:<4}  {:<width$}  fix: {fix}\n", "", ""));
            }
        }
        let verdict = match self.would_run() {
            true => "a run would work",
            false => "a run would not work: see the FAIL lines above",
        };
        out.push_str(&format!("\n{verdict}  (exit {})\n", self.exit_code()));
        out
    }

    /// One JSON document for scripts: `{"ok": …, "exit_code": …, "checks": [{name, status,
    /// detail, fix}]}`.
    pub fn to_json(&self) -> String {
        let doc = serde_json::json!({
            "ok": self.would_run(),
            "exit_code": self.exit_code(),
            "checks": self.checks,
        });
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }
}

/// What to diagnose: the same choices a `phalanx run` makes.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    pub project_file: PathBuf,
    /// `--suites`; `None` takes the project's folder.
    pub suites_dir: Option<PathBuf>,
    pub names: Vec<String>,
    pub tags: Vec<String>,
    /// `--reports`; `None` takes the project's folder.
    pub reports_dir: Option<PathBuf>,
    /// `--store` / `PHALANX_STORE`; `None` takes the project's `[store]` path.
    pub store: Option<PathBuf>,
}

/// Runs every check. Never fails: what cannot be checked is itself a finding.
pub async fn diagnose(options: &DoctorOptions) -> Diagnosis {
    let mut checks = Vec::new();
    let (project, project_check) = project_check(&options.project_file);
    checks.push(project_check);
    let suites_dir = options
        .suites_dir
        .clone()
        .unwrap_or_else(|| project.suites_dir.clone());
    let reports_dir = options
        .reports_dir
        .clone()
        .unwrap_or_else(|| project.reports_dir.clone());
    let (selected, suite_checks) = suite_checks(&suites_dir, &project, options);
    checks.extend(suite_checks);
    checks.push(reports_check(&reports_dir));
    match DockerEngine::connect().await {
        Ok(engine) => checks.extend(engine_checks(&engine, &selected).await),
        Err(e) => checks.push(Check::bad(
            "engine",
            Status::Fail,
            e.to_string(),
            &engine_fix(&e.to_string()),
        )),
    }
    let store = options.store.clone().unwrap_or(project.store.path);
    checks.push(store_check(&store, open_read_only(&store)));
    Diagnosis { checks }
}

/// Start the engine, or (when `DOCKER_HOST` names one) point the client elsewhere; when
/// the socket is there but refused this user (`error` says permission denied), join its
/// group instead: starting the engine would not help.
fn engine_fix(error: &str) -> String {
    if error.to_lowercase().contains("permission denied") {
        return "the engine's socket refuses this user: run Phalanx as a member of the \
                socket's group (`usermod -aG docker USER`, or for Phalanx's image \
                `docker run --group-add \"$(stat -c %g /var/run/docker.sock)\" …`)"
            .to_string();
    }
    let start = "start the Docker engine (`systemctl start docker`, or `dockerd &`)";
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => format!(
            "{start} at {host}, or point DOCKER_HOST at one that runs \
             (`unset DOCKER_HOST` uses unix:///var/run/docker.sock)"
        ),
        _ => format!("{start}, or set DOCKER_HOST to the engine to use"),
    }
}

const CONFIG_FIX: &str = "correct the file at the line named; `phalanx validate` lists every error";

fn project_check(file: &Path) -> (ProjectConfig, Check) {
    match config::load_project(file) {
        Ok(project) if file.exists() => (
            project,
            Check::ok("phalanx.toml", format!("{} is valid", file.display())),
        ),
        Ok(project) => (
            project,
            Check::ok("phalanx.toml", "none; the defaults apply"),
        ),
        Err(e) => (
            ProjectConfig::default(),
            Check::bad("phalanx.toml", Status::Fail, e.to_string(), CONFIG_FIX),
        ),
    }
}

/// The suite files (one check, listing every error whole) and the selection; returns the
/// selected suites that could be read.
fn suite_checks(
    dir: &Path,
    project: &ProjectConfig,
    options: &DoctorOptions,
) -> (Vec<Suite>, Vec<Check>) {
    let loaded = match config::load_suites(dir, project) {
        Ok(loaded) => loaded,
        Err(e) => {
            let fix = "create the folder, or name another with --suites DIR or `suites_dir` in phalanx.toml";
            return (
                Vec::new(),
                vec![Check::bad("suite files", Status::Fail, e.to_string(), fix)],
            );
        }
    };
    let mut checks = vec![suite_files_check(dir, &loaded)];
    let selected = match plan::select(&loaded.suites, &options.names, &options.tags) {
        Ok(selected) => selected,
        // With no valid suite at all, the suite files check has said why.
        Err(_) if loaded.suites.is_empty() && !loaded.errors.is_empty() => Vec::new(),
        Err(e) => {
            let fix = match loaded.suites.is_empty() {
                true => "add a suite file to the folder, or name another with --suites DIR",
                false => "name suites that exist (`phalanx list` shows them)",
            };
            checks.push(Check::bad("selection", Status::Fail, e.to_string(), fix));
            Vec::new()
        }
    };
    (selected, checks)
}

fn suite_files_check(dir: &Path, loaded: &LoadedSuites) -> Check {
    let valid = loaded.suites.len();
    if loaded.errors.is_empty() {
        return Check::ok(
            "suite files",
            format!("{valid} suite(s) in {} valid", dir.display()),
        );
    }
    let lines: Vec<String> = loaded.errors.iter().map(ConfigError::to_string).collect();
    let detail = format!(
        "{} error(s) ({valid} suite(s) valid):\n{}",
        lines.len(),
        lines.join("\n")
    );
    Check::bad("suite files", Status::Fail, detail, CONFIG_FIX)
}

fn reports_check(dir: &Path) -> Check {
    if let Err(e) = probe_writable(dir) {
        return Check::bad(
            "reports",
            Status::Fail,
            format!("{} cannot be written: {e}", dir.display()),
            REPORTS_FIX,
        );
    }
    let mut check = disk_check("reports", dir, REPORTS_FAIL_BYTES, REPORTS_WARN_BYTES);
    check.detail = format!("{} writable; {}", dir.display(), check.detail);
    check
}

const REPORTS_FIX: &str = "choose a writable folder with --reports DIR (or `reports_dir` in phalanx.toml), \
    or make this one writable";

async fn engine_checks(engine: &DockerEngine, selected: &[Suite]) -> Vec<Check> {
    let facts = match engine.facts().await {
        Ok(facts) => facts,
        Err(e) => {
            return vec![Check::bad(
                "engine",
                Status::Fail,
                e.to_string(),
                &engine_fix(&e.to_string()),
            )];
        }
    };
    let mut checks = vec![
        Check::ok("engine", engine_detail(&facts)),
        storage_check(&facts),
        images_disk_check(&facts),
    ];
    let jobs = images::jobs(selected);
    let states = image_states(engine, &jobs).await;
    checks.push(images_check(&jobs, &states));
    checks.push(base_check(engine, selected).await);
    checks
}

fn engine_detail(facts: &EngineFacts) -> String {
    let version = facts
        .server_version
        .as_deref()
        .map(|v| format!(" (Docker {v})"))
        .unwrap_or_default();
    format!(
        "answers at {}, API {}{version}",
        facts.location, facts.api_version
    )
}

fn storage_check(facts: &EngineFacts) -> Check {
    match facts.storage_driver.as_deref() {
        // vfs copies every layer whole: builds take many times the disk and time.
        Some("vfs") => Check::bad(
            "storage",
            Status::Warn,
            "storage driver vfs copies every image layer in full: builds are slow and take much disk",
            "configure overlay2 (or fuse-overlayfs) as `storage-driver` in /etc/docker/daemon.json and restart the engine",
        ),
        Some(driver) => Check::ok("storage", format!("storage driver {driver}")),
        None => Check::ok("storage", "the engine does not name its storage driver"),
    }
}

fn images_disk_check(facts: &EngineFacts) -> Check {
    match (&facts.data_root, facts.local) {
        (Some(root), true) if root.exists() => {
            disk_check("images disk", root, IMAGES_FAIL_BYTES, IMAGES_WARN_BYTES)
        }
        (Some(root), _) => Check::ok(
            "images disk",
            format!(
                "the engine keeps images in {} on its own host; free space not visible from here",
                root.display()
            ),
        ),
        (None, _) => Check::ok("images disk", "the engine does not name its data root"),
    }
}

fn disk_check(name: &'static str, path: &Path, fail: u64, warn: u64) -> Check {
    let place = existing_ancestor(path);
    let free = match free_bytes(&place) {
        Ok(free) => free,
        Err(e) => {
            return Check::bad(
                name,
                Status::Warn,
                format!("cannot measure free space at {}: {e}", place.display()),
                "check the path exists and is readable",
            );
        }
    };
    let detail = format!("{} free at {}", human_bytes(free), place.display());
    let status = match free {
        n if n < fail => Status::Fail,
        n if n < warn => Status::Warn,
        _ => return Check::ok(name, detail),
    };
    let fix = "free space there (`docker image prune`, `docker builder prune`, old reports), or use another disk";
    Check::bad(
        name,
        status,
        format!("only {detail}; want at least {}", human_bytes(warn)),
        fix,
    )
}

/// Whether each job's image is present; `Err` holds why the engine could not say.
async fn image_states(engine: &DockerEngine, jobs: &[ImageJob]) -> Vec<Result<bool, String>> {
    let mut states = Vec::with_capacity(jobs.len());
    for job in jobs {
        states.push(
            engine
                .image_exists(&job.image)
                .await
                .map_err(|e| e.to_string()),
        );
    }
    states
}

fn images_check(jobs: &[ImageJob], states: &[Result<bool, String>]) -> Check {
    let (mut present, mut to_build, mut problems) = (0, Vec::new(), Vec::new());
    for (job, state) in jobs.iter().zip(states) {
        match (state, &job.context) {
            (Ok(true), _) => present += 1,
            (Err(e), _) => problems.push(format!("{}: {e}", job.image)),
            (Ok(false), Some(ctx)) if ctx.join("Dockerfile").is_file() => {
                to_build.push(job.image.clone())
            }
            (Ok(false), Some(ctx)) => problems.push(format!(
                "{}: missing, and its build context {} has no Dockerfile",
                job.image,
                ctx.display()
            )),
            (Ok(false), None) => problems.push(format!(
                "{}: missing, and no suite using it has a `build` (no registry is used)",
                job.image
            )),
        }
    }
    let mut detail = format!("{present} of {} present", jobs.len());
    if !to_build.is_empty() {
        detail.push_str(&format!("; to build on first use: {}", to_build.join(", ")));
    }
    if problems.is_empty() {
        return Check::ok("images", detail);
    }
    let fix = "give the suite a `build` context with a Dockerfile, or load the image (`docker load -i image.tar`)";
    Check::bad(
        "images",
        Status::Fail,
        format!("{detail}; cannot be made:\n{}", problems.join("\n")),
        fix,
    )
}

async fn base_check(engine: &DockerEngine, selected: &[Suite]) -> Check {
    match base_prerequisite(engine, selected).await {
        Ok(None) if base::find_debootstrap().is_some() => Check::ok(
            "base image",
            format!("{BASE_IMAGE} present or not needed; debootstrap found"),
        ),
        Ok(None) => Check::ok(
            "base image",
            format!(
                "{BASE_IMAGE} present or not needed (debootstrap, which would make it, is not installed)"
            ),
        ),
        Ok(Some(missing)) => {
            Check::bad("base image", Status::Fail, missing.cause(), &missing.fix())
        }
        Err(e) => Check::bad(
            "base image",
            Status::Fail,
            e.to_string(),
            &engine_fix(&e.to_string()),
        ),
    }
}

/// A prerequisite that every suite of a run depends on, found missing before the run
/// started. Displays whole: what is missing, then how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{}; {}", self.cause(), self.fix())]
pub enum Prerequisite {
    /// The reports folder (or a parent of it) cannot be created or written.
    ReportsUnwritable { dir: PathBuf, error: io::Error },
    /// The base image is missing, suites must be built from it, and debootstrap, which
    /// makes it, is not installed.
    Debootstrap { suites: Vec<String> },
    /// As [`Prerequisite::Debootstrap`], but debootstrap is there and needs root.
    NotRoot { suites: Vec<String> },
}

impl Prerequisite {
    /// What is missing, without the fix.
    pub fn cause(&self) -> String {
        match self {
            Prerequisite::ReportsUnwritable { dir, error } => {
                format!(
                    "the reports folder {} cannot be written: {error}",
                    dir.display()
                )
            }
            Prerequisite::Debootstrap { suites } => format!(
                "building image {BASE_IMAGE} needs `debootstrap`, which is not installed \
                 (the image is missing, and the images of {} are built from it)",
                suites.join(", ")
            ),
            Prerequisite::NotRoot { suites } => format!(
                "building image {BASE_IMAGE} runs debootstrap, which needs root, and Phalanx \
                 is not running as root (the images of {} are built from it)",
                suites.join(", ")
            ),
        }
    }

    /// The command or change that fixes it.
    pub fn fix(&self) -> String {
        match self {
            Prerequisite::ReportsUnwritable { .. } => REPORTS_FIX.to_string(),
            Prerequisite::Debootstrap { .. } => "install it with `apt-get install debootstrap`, \
                 or make the image by hand as docker/base/README.md describes"
                .to_string(),
            Prerequisite::NotRoot { .. } => {
                "build the images once as root (`sudo phalanx images`), \
                 or make the base image by hand as docker/base/README.md describes"
                    .to_string()
            }
        }
    }
}

/// Checks what every suite of a run needs before any starts: a writable reports folder
/// and, when the base image must be made, debootstrap (run as root). An engine that
/// cannot say whether an image is there proves nothing missing: the run goes ahead and
/// each suite reports what the engine says.
pub async fn preflight(
    engine: &DockerEngine,
    suites: &[Suite],
    reports_dir: &Path,
) -> Result<(), Prerequisite> {
    probe_writable(reports_dir).map_err(|error| Prerequisite::ReportsUnwritable {
        dir: reports_dir.to_path_buf(),
        error,
    })?;
    match base_prerequisite(engine, suites).await {
        Ok(Some(missing)) => Err(missing),
        Ok(None) | Err(_) => Ok(()),
    }
}

/// `Some` when the base image is missing, some of `suites` must be built from it, and it
/// cannot be made here.
async fn base_prerequisite(
    engine: &DockerEngine,
    suites: &[Suite],
) -> Result<Option<Prerequisite>, crate::engine::EngineError> {
    let suites = needing_base(engine, suites).await?;
    if suites.is_empty() {
        return Ok(None);
    }
    Ok(match (base::find_debootstrap(), base::is_root()) {
        (None, _) => Some(Prerequisite::Debootstrap { suites }),
        (Some(_), false) => Some(Prerequisite::NotRoot { suites }),
        (Some(_), true) => None,
    })
}

/// The suites whose image is missing and is built `FROM` the base image, while the base
/// image itself is missing; empty when it is there.
async fn needing_base(
    engine: &DockerEngine,
    suites: &[Suite],
) -> Result<Vec<String>, crate::engine::EngineError> {
    if engine.image_exists(BASE_IMAGE).await? {
        return Ok(Vec::new());
    }
    let mut needing = Vec::new();
    for job in images::jobs(suites) {
        let Some(context) = &job.context else {
            continue;
        };
        // An unreadable Dockerfile fails that suite's build by itself, with its own cause.
        if base::builds_from_base(context).unwrap_or(false)
            && !engine.image_exists(&job.image).await?
        {
            needing.extend(job.suites);
        }
    }
    Ok(needing)
}

/// Whether `dir` can be created and written: probes the nearest existing ancestor with a
/// temporary directory (removed again), so that checking leaves nothing behind. Permission
/// bits do not stop root, but a read-only or immutable filesystem, or a parent that is a
/// regular file, does.
pub fn probe_writable(dir: &Path) -> io::Result<()> {
    let place = existing_ancestor(dir);
    if !place.is_dir() {
        let message = format!("{} is not a directory", place.display());
        return Err(io::Error::new(io::ErrorKind::NotADirectory, message));
    }
    tempfile::Builder::new()
        .prefix(".phalanx-probe-")
        .tempdir_in(&place)?
        .close()
}

/// `path` itself when it exists, else its nearest ancestor that does (`.` for a relative
/// path none of whose parents exist).
fn existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .find(|p| p.symlink_metadata().is_ok())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

fn free_bytes(path: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

fn human_bytes(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    match n as f64 {
        b if b >= GIB => format!("{:.1} GiB", b / GIB),
        b => format!("{:.0} MiB", b / MIB),
    }
}

/// What a read-only look at the store says, in [`store_check`]'s terms.
fn open_read_only(path: &Path) -> Option<Result<u32, String>> {
    use crate::store::{Store, StoreError};
    match Store::check(path) {
        Err(StoreError::Missing { .. }) => None,
        Err(e) => Some(Err(e.to_string())),
        Ok(status) if status.schema > status.known => Some(Err(format!(
            "its schema version {} is newer than this Phalanx knows ({})",
            status.schema, status.known
        ))),
        Ok(status) => Some(Ok(status.schema)),
    }
}

/// The run store check. `opened` is what opening the store at `path` read-only said: `None` when the file does
/// not exist (the first run creates it), `Some(Ok(version))` when its schema is one this
/// Phalanx knows, `Some(Err(why))` when it cannot be read or its schema is unknown.
/// A broken store never stops a run (it only loses history), so that is a warning.
pub fn store_check(path: &Path, opened: Option<Result<u32, String>>) -> Check {
    match opened {
        None => Check::ok(
            "run store",
            format!(
                "{} not created yet; the first run creates it",
                path.display()
            ),
        ),
        Some(Ok(version)) => Check::ok(
            "run store",
            format!("{} readable, schema version {version}", path.display()),
        ),
        Some(Err(why)) => Check::bad(
            "run store",
            Status::Warn,
            format!(
                "{} cannot be used: {why}; runs work but keep no history",
                path.display()
            ),
            &format!(
                "move it aside (`mv {0} {0}.broken`); the next run starts a new store",
                path.display()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_socket_asks_for_its_group_not_for_an_engine() {
        let refused = "cannot reach the Docker engine at unix:///var/run/docker.sock: \
                       Permission denied (os error 13)";
        assert!(engine_fix(refused).contains("--group-add"));
        assert!(!engine_fix(refused).contains("start the Docker engine"));
        let absent = "cannot reach the Docker engine at unix:///x.sock: No such file";
        assert!(engine_fix(absent).contains("start the Docker engine"));
    }

    #[test]
    fn exit_code_follows_the_worst_check() {
        let mut d = Diagnosis {
            checks: vec![
                Check::ok("a", "fine"),
                Check::bad("b", Status::Warn, "slow", "tune"),
            ],
        };
        assert_eq!((d.would_run(), d.exit_code()), (true, 0));
        d.checks
            .push(Check::bad("c", Status::Fail, "broken", "mend it"));
        assert_eq!((d.would_run(), d.exit_code()), (false, 3));
        let text = d.render();
        assert!(
            text.contains("FAIL  c  broken\n         fix: mend it\n"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(json["exit_code"], 3);
        assert_eq!(json["checks"][1]["status"], "warn");
        assert_eq!(json["checks"][0]["fix"], serde_json::Value::Null);
    }

    #[test]
    fn a_path_below_a_regular_file_is_not_writable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = probe_writable(&file.join("reports/deeper")).unwrap_err();
        assert!(err.to_string().contains("is not a directory"), "{err}");
        probe_writable(&dir.path().join("new/reports")).unwrap();
        assert!(
            !dir.path().join("new").exists(),
            "probing leaves nothing behind"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn prerequisites_say_what_and_how() {
        let p = Prerequisite::Debootstrap {
            suites: vec!["a".into(), "b".into()],
        };
        let text = p.to_string();
        assert!(
            text.contains("debootstrap") && text.contains("a, b"),
            "{text}"
        );
        assert!(text.contains("apt-get install debootstrap"), "{text}");
    }

    #[test]
    fn a_broken_store_warns_with_the_move_aside_command() {
        let path = Path::new(crate::store::DEFAULT_PATH);
        assert_eq!(store_check(path, None).status, Status::Ok);
        assert_eq!(store_check(path, Some(Ok(3))).status, Status::Ok);
        let broken = store_check(path, Some(Err("file is not a database".into())));
        assert_eq!(broken.status, Status::Warn);
        assert!(
            broken
                .fix
                .unwrap()
                .contains("mv .phalanx/phalanx.db .phalanx/phalanx.db.broken")
        );
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(64 << 20), "64 MiB");
    }
}
