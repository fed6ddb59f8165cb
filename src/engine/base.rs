//! Phalanx's own Debian base image, made without any registry, and the image builder the
//! Docker engine calls for suites that carry a `build` context.
//!
//! No registry is reachable on the machines Phalanx runs on, so `FROM debian` cannot work.
//! Instead, when a Dockerfile names [`BASE_IMAGE`] and the engine lacks it, Phalanx runs
//! `debootstrap --variant=minbase` against the host's own Debian mirror and imports the
//! resulting root filesystem (the `docker import` API). Everything else is built `FROM` it.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::errors::Error as DockerError;
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder};
use bollard::{Docker, body_try_stream};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

use super::EngineError;

/// The base image every bundled Dockerfile starts `FROM`.
pub const BASE_IMAGE: &str = "phalanx/base:bookworm";
const BASE_REPO: &str = "phalanx/base";
const BASE_TAG: &str = "bookworm";
/// The Debian release the base is bootstrapped from.
const RELEASE: &str = "bookworm";

/// bollard's default 120 s timeout also covers sending the request body, so a slow import
/// of a few hundred MB or a long build would be cut off. Streams themselves never time out.
const LONG_TIMEOUT: Duration = Duration::from_secs(3600);

/// Size of the chunks a tar file is streamed to the engine in.
const CHUNK: usize = 256 * 1024;

/// Several suites may need the base image at once: bootstrap it only once per process.
static BOOTSTRAP: Mutex<()> = Mutex::const_new(());

/// One lock per image tag: suites sharing an image may ask for it at the same moment, and
/// concurrent builds of one tag waste minutes and leave the loser's image dangling.
static BUILDS: std::sync::Mutex<BTreeMap<String, Arc<Mutex<()>>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Makes sure [`BASE_IMAGE`] exists if the Dockerfile in `context` builds `FROM` it,
/// bootstrapping it with debootstrap when missing. Output goes to `log` (appended).
pub async fn ensure_base_image(
    docker: &Docker,
    context: &Path,
    log: &Path,
) -> Result<(), EngineError> {
    let dockerfile = context.join("Dockerfile");
    let text = tokio::fs::read_to_string(&dockerfile).await.map_err(|e| {
        build_error(
            BASE_IMAGE,
            format!("cannot read {}: {e}", dockerfile.display()),
            log,
        )
    })?;
    if !from_images(&text).iter().any(|image| image == BASE_IMAGE) {
        return Ok(());
    }
    let _once = BOOTSTRAP.lock().await;
    // Checked under the lock: whoever waited finds the image the first caller made.
    if image_exists(docker, BASE_IMAGE).await? {
        return Ok(());
    }
    bootstrap(docker, log).await
}

/// Makes sure [`BASE_IMAGE`] exists, bootstrapping it when missing (for what runs in the
/// base itself, such as a service's readiness check). Output goes to `log` (appended).
pub async fn ensure_base(docker: &Docker, log: &Path) -> Result<(), EngineError> {
    if image_exists(docker, BASE_IMAGE).await? {
        return Ok(());
    }
    let _once = BOOTSTRAP.lock().await;
    if image_exists(docker, BASE_IMAGE).await? {
        return Ok(());
    }
    bootstrap(docker, log).await
}

/// Builds the image `tag` from the directory `context` (its `Dockerfile`), making the base
/// image first if needed. The build output is appended to `log`.
///
/// `.dockerignore` is not honoured: the whole context directory is sent (symlinks as links).
/// Bundled contexts are small dedicated folders, so there is nothing to leave out.
///
/// Concurrent calls for one tag build it once: a caller that had to wait for another
/// build of the same tag returns as soon as that image exists.
pub async fn build_image(
    docker: &Docker,
    context: &Path,
    tag: &str,
    log: &Path,
) -> Result<(), EngineError> {
    if !context.join("Dockerfile").is_file() {
        let message = format!("{} has no Dockerfile", context.display());
        return Err(build_error(tag, message, log));
    }
    let lock = {
        let mut builds = BUILDS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        builds.entry(tag.to_string()).or_default().clone()
    };
    let _guard = match lock.clone().try_lock_owned() {
        Ok(guard) => guard,
        Err(_) => {
            let guard = lock.lock_owned().await;
            if image_exists(docker, tag).await? {
                return Ok(());
            }
            guard
        }
    };
    ensure_base_image(docker, context, log).await?;
    ensure_parent_images(docker, context, log).await?;
    let dir = context.to_path_buf();
    let tar = blocking(move || tar_context(&dir)).await.map_err(|e| {
        let message = format!("cannot pack the build context {}: {e}", context.display());
        build_error(tag, message, log)
    })?;
    let options = build_options(tag);
    let docker = docker.clone().with_timeout(LONG_TIMEOUT);
    let stream = docker.build_image(
        options,
        None,
        Some(body_try_stream(file_chunks(tar.into()))),
    );
    drive_build(stream, tag, log).await
}

/// How every image Phalanx builds is built: intermediate containers removed, labelled as
/// Phalanx's.
fn build_options(tag: &str) -> bollard::query_parameters::BuildImageOptions {
    BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .labels(&HashMap::from([("phalanx.built-by", "phalanx")]))
        .build()
}

/// Builds `tag` from a build context already packed as a tar (its `Dockerfile` at the top),
/// for a context whose file modes matter: [`build_image`] packs folders deterministically,
/// every directory 0755. Every image the Dockerfile names must exist. Output goes to `log`.
pub async fn build_from_tar(
    docker: &Docker,
    context: Vec<u8>,
    tag: &str,
    log: &Path,
) -> Result<(), EngineError> {
    let options = build_options(tag);
    let docker = docker.clone().with_timeout(LONG_TIMEOUT);
    let stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    drive_build(stream, tag, log).await
}

/// Builds the intermediate images the Dockerfile in `context` starts `FROM` that the
/// engine lacks: an image `phalanx/NAME:TAG` is built from the folder `NAME` beside
/// `context` (`docker/python` for `FROM phalanx/python:1` in `docker/bandit`), when that
/// folder has a Dockerfile. Their output goes to `log` too.
async fn ensure_parent_images(
    docker: &Docker,
    context: &Path,
    log: &Path,
) -> Result<(), EngineError> {
    let Ok(text) = tokio::fs::read_to_string(context.join("Dockerfile")).await else {
        // build_image checked it is there; the build itself will say what is wrong.
        return Ok(());
    };
    for image in from_images(&text) {
        let Some(folder) = parent_context(context, &image) else {
            continue;
        };
        if image_exists(docker, &image).await? {
            continue;
        }
        append_log(
            log,
            &format!(
                "phalanx: building {image} first, from {}\n",
                folder.display()
            ),
        )
        .await;
        Box::pin(build_image(docker, &folder, &image, log)).await?;
    }
    Ok(())
}

/// Where the intermediate image `image` is built from, if it is one (see
/// [`ensure_parent_images`]): never the base, which is bootstrapped.
fn parent_context(context: &Path, image: &str) -> Option<PathBuf> {
    let (repo, _tag) = image.split_once(':')?;
    let name = repo.strip_prefix("phalanx/")?;
    if image == BASE_IMAGE || name.is_empty() || name.contains(['/', '.']) {
        return None;
    }
    let folder = context.parent()?.join(name);
    let same = folder.canonicalize().ok()? == context.canonicalize().ok()?;
    (folder.join("Dockerfile").is_file() && !same).then_some(folder)
}

/// Drives a build stream to its end (dropping it would abort the build), logging its text
/// and turning a failure into an error that quotes the last meaningful line of output.
async fn drive_build(
    stream: impl futures::Stream<Item = Result<bollard::models::BuildInfo, DockerError>>,
    tag: &str,
    log: &Path,
) -> Result<(), EngineError> {
    let mut out = open_log(log).await.map_err(|e| log_error(tag, log, e))?;
    let mut last = String::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                let text = info.stream.or(info.status).unwrap_or_default();
                out.write_all(text.as_bytes()).await.ok();
                if let Some(line) = last_meaningful_line(&strip_ansi(&text)) {
                    last = line.to_string();
                }
            }
            Err(e) => {
                out.write_all(format!("\nerror: {e}\n").as_bytes())
                    .await
                    .ok();
                out.flush().await.ok();
                let message = match last.is_empty() {
                    true => e.to_string(),
                    false => format!("{e}; last output: {last}"),
                };
                return Err(build_error(tag, message, log));
            }
        }
    }
    out.flush().await.map_err(|e| log_error(tag, log, e))
}

/// The line worth quoting from build output: not blank and not the builder's bookkeeping.
fn last_meaningful_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rev().find(|line| {
        !line.is_empty()
            && !line.starts_with("--->")
            && !line.starts_with("Removing intermediate container")
            && !line.starts_with("Successfully ")
    })
}

/// The builder colours a step's stderr (`ESC[91m`…); quoted lines must not carry that.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI sequences end with a letter; skip up to and including it.
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// The images a Dockerfile builds `FROM` (one per stage), ignoring `--platform=` flags.
/// Build arguments in `FROM` are not expanded.
fn from_images(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\r\n", " ").replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let first = words.next()?;
            if !first.eq_ignore_ascii_case("FROM") {
                return None;
            }
            words.find(|w| !w.starts_with("--")).map(str::to_string)
        })
        .collect()
}

async fn image_exists(docker: &Docker, image: &str) -> Result<bool, EngineError> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(EngineError::api("inspect image", e)),
    }
}

/// Makes [`BASE_IMAGE`]: debootstrap into a scratch directory, tar it, import it.
async fn bootstrap(docker: &Docker, log: &Path) -> Result<(), EngineError> {
    let fail = |message: String| build_error(BASE_IMAGE, message, log);
    let program = find_debootstrap().ok_or_else(|| {
        fail(format!(
            "`debootstrap` is not installed; install it with `apt-get install debootstrap` \
             (Phalanx uses it to build its base image {BASE_IMAGE} without a registry)"
        ))
    })?;
    if !is_root() {
        return Err(fail(format!(
            "Phalanx is not running as root, which debootstrap needs to build {BASE_IMAGE}; \
             run it once as root, or make the image by hand as docker/base/README.md describes"
        )));
    }
    let scratch =
        Scratch::new().map_err(|e| fail(format!("cannot create a scratch directory: {e}")))?;
    let started = Instant::now();
    let result = bootstrap_in(docker, &program, &scratch.path, log).await;
    if let Err(e) = scratch.remove().await {
        append_log(log, &format!("phalanx: warning: {e}\n")).await;
    }
    if result.is_ok() {
        let secs = started.elapsed().as_secs();
        append_log(log, &format!("phalanx: made {BASE_IMAGE} in {secs}s\n")).await;
    }
    result.map_err(fail)
}

/// The steps of [`bootstrap`] inside the scratch directory `dir`; errors are messages.
async fn bootstrap_in(
    docker: &Docker,
    program: &Path,
    dir: &Path,
    log: &Path,
) -> Result<(), String> {
    let rootfs = dir.join("rootfs");
    let sources = apt_sources(Path::new("/etc/apt"));
    let mirror = pick_mirror(&sources);
    let shown = mirror.as_deref().unwrap_or("debootstrap's default");
    append_log(
        log,
        &format!("phalanx: bootstrapping {BASE_IMAGE} from {shown}\n"),
    )
    .await;
    run_debootstrap(program, &rootfs, mirror.as_deref(), log).await?;

    let list = mirror.map(|m| sources_list(&sources, &m));
    let (root, tar) = (rootfs.clone(), dir.join("rootfs.tar"));
    let skipped = blocking(move || {
        tidy_rootfs(&root, list.as_deref())?;
        tar_rootfs(&root, &tar)
    })
    .await
    .map_err(|e| format!("cannot pack the bootstrapped root filesystem: {e}"))?;
    append_log(log, &format!("phalanx: packed rootfs ({skipped} device nodes/fifos/sockets left out; Docker provides /dev)\n")).await;
    import_rootfs(docker, &dir.join("rootfs.tar"), log).await
}

/// Runs debootstrap with its output appended to `log`. On failure, also copies
/// debootstrap's own log into `log`, since the scratch directory holding it is removed.
async fn run_debootstrap(
    program: &Path,
    rootfs: &Path,
    mirror: Option<&str>,
    log: &Path,
) -> Result<(), String> {
    let stdout = open_log_std(log).map_err(|e| format!("cannot open the build log: {e}"))?;
    let stderr = stdout.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--variant=minbase");
    if mirror.is_some_and(|m| m.starts_with("https:")) {
        // apt inside the image needs CA certificates to use an https mirror.
        cmd.arg("--include=ca-certificates");
    }
    cmd.arg(RELEASE).arg(rootfs).args(mirror);
    cmd.env("PATH", path_with_sbin())
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // If Phalanx is cancelled, don't leave debootstrap running; Scratch cleans up.
        .kill_on_drop(true);
    let status = cmd
        .status()
        .await
        .map_err(|e| format!("cannot run debootstrap: {e}"))?;
    if status.success() {
        return Ok(());
    }
    if let Ok(own) = tokio::fs::read_to_string(rootfs.join("debootstrap/debootstrap.log")).await {
        append_log(log, &format!("--- debootstrap's own log ---\n{own}")).await;
    }
    Err(format!(
        "debootstrap failed ({status}); its output is in the build log"
    ))
}

/// Imports the root filesystem tar as [`BASE_IMAGE`], streaming the file as the body.
async fn import_rootfs(docker: &Docker, tar: &Path, log: &Path) -> Result<(), String> {
    let file = tokio::fs::File::open(tar)
        .await
        .map_err(|e| e.to_string())?;
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(BASE_REPO)
        .tag(BASE_TAG)
        .message("debootstrap --variant=minbase bookworm, made by Phalanx")
        .changes(vec![
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            "ENV LANG=C.UTF-8".into(),
            "LABEL phalanx.built-by=phalanx".into(),
            r#"CMD ["/bin/bash"]"#.into(),
        ])
        .build();
    let docker = docker.clone().with_timeout(LONG_TIMEOUT);
    let mut stream = docker.create_image(
        Some(options),
        Some(body_try_stream(file_chunks(file))),
        None,
    );
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| format!("importing the root filesystem failed: {e}"))?;
        if let Some(status) = info.status {
            append_log(log, &format!("phalanx: import: {status}\n")).await;
        }
    }
    Ok(())
}

/// `file` as a stream of chunks, for a request body that is never loaded into memory whole
/// (bollard's body type is private, so callers wrap this in `body_try_stream`).
fn file_chunks(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; CHUNK];
        let n = file.read(&mut buf).await?;
        buf.truncate(n);
        Ok((n > 0).then(|| (Bytes::from(buf), file)))
    })
}

/// Writes the base image's apt sources and trims what debootstrap leaves behind.
fn tidy_rootfs(root: &Path, sources_list: Option<&str>) -> io::Result<()> {
    ensure_no_mounts(root)?;
    if let Some(list) = sources_list {
        fs::write(root.join("etc/apt/sources.list"), list)?;
    }
    // Keep images built on the base small and builds unattended.
    let conf = "APT::Install-Recommends \"false\";\nAPT::Install-Suggests \"false\";\n\
                Acquire::Retries \"3\";\n";
    fs::write(root.join("etc/apt/apt.conf.d/90phalanx"), conf)?;
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        clear_files(&root.join(dir))?;
    }
    copy_local_cas(
        Path::new("/").join(LOCAL_CA_DIR).as_path(),
        &root.join(LOCAL_CA_DIR),
    )?;
    Ok(())
}

/// Where Debian keeps locally added CA certificates; `update-ca-certificates` (run when a
/// Dockerfile installs `ca-certificates`) adds every `*.crt` below it to the trust store.
const LOCAL_CA_DIR: &str = "usr/local/share/ca-certificates";

/// Copies the host's locally added CA certificates (`*.crt` below `from`) into the image at
/// `to`, so that builds `FROM` the base trust what this machine trusts: where egress goes
/// through a TLS-intercepting proxy, `pip install` in a build fails without its CA, just as
/// the base's apt sources come from this machine's. Certificates are public; nothing else
/// is copied. Returns how many were copied.
fn copy_local_cas(from: &Path, to: &Path) -> io::Result<usize> {
    let mut copied = 0;
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let Ok(entries) = fs::read_dir(from.join(&rel)) else {
            continue; // no such folder on this host: nothing to add
        };
        for entry in entries {
            let entry = entry?;
            let name = rel.join(entry.file_name());
            // Follows links, as update-ca-certificates does.
            let Ok(meta) = fs::metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                pending.push(name);
            } else if meta.is_file() && name.extension().is_some_and(|e| e == "crt") {
                let dest = to.join(&name);
                fs::create_dir_all(dest.parent().unwrap_or(to))?;
                fs::copy(entry.path(), &dest)?;
                fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))?;
                copied += 1;
            }
        }
    }
    Ok(copied)
}

/// Removes the plain files directly in `dir` (downloaded .debs, package lists).
fn clear_files(dir: &Path) -> io::Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() && entry.file_name() != "lock" {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Tars the root filesystem at `root` into `out`, keeping modes, owners and symlinks as
/// they are (never following links). Device nodes, fifos and sockets are left out: Docker
/// gives every container its own /dev. Returns how many were left out.
fn tar_rootfs(root: &Path, out: &Path) -> io::Result<usize> {
    let mut tar = tar::Builder::new(BufWriter::new(File::create(out)?));
    tar.follow_symlinks(false);
    let mut skipped = 0;
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for entry in fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let name = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                tar.append_path_with_name(entry.path(), &name)?;
                pending.push(name);
            } else if kind.is_file() || kind.is_symlink() {
                tar.append_path_with_name(entry.path(), &name)?;
            } else {
                skipped += 1;
            }
        }
    }
    tar.into_inner()?.flush()?;
    Ok(skipped)
}

/// Tars a build context into an anonymous temporary file, rewound for reading.
/// Deterministic headers (fixed mtime, root owner) keep the builder's cache effective.
fn tar_context(context: &Path) -> io::Result<File> {
    let mut tar = tar::Builder::new(tempfile::tempfile()?);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    tar.append_dir_all(".", context)?;
    let mut file = tar.into_inner()?;
    io::Seek::rewind(&mut file)?;
    Ok(file)
}

/// One `deb` source from the host's apt configuration.
#[derive(Debug, Clone, PartialEq)]
struct AptSource {
    uri: String,
    suites: Vec<String>,
}

/// The host's binary package sources: `sources.list`, `sources.list.d/*.list` (one-line
/// format) and `sources.list.d/*.sources` (deb822). Unreadable files are skipped.
fn apt_sources(etc_apt: &Path) -> Vec<AptSource> {
    let mut files = vec![etc_apt.join("sources.list")];
    if let Ok(entries) = fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut extra: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        extra.sort();
        files.extend(extra);
    }
    let mut sources = Vec::new();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => sources.extend(parse_deb822(&text)),
            _ if file.ends_with("sources.list") || file.extension() == Some("list".as_ref()) => {
                sources.extend(text.lines().filter_map(parse_one_line))
            }
            _ => {}
        }
    }
    sources
}

/// `deb [options] uri suite [component...]`
fn parse_one_line(line: &str) -> Option<AptSource> {
    let line = line.split('#').next()?.trim();
    let rest = line.strip_prefix("deb ")?.trim_start();
    let rest = match rest.strip_prefix('[') {
        Some(options) => options.split_once(']')?.1,
        None => rest,
    };
    let mut words = rest.split_whitespace();
    let uri = words.next()?.to_string();
    let suite = words.next()?.to_string();
    Some(AptSource {
        uri,
        suites: vec![suite],
    })
}

/// Paragraphs of `Types:`, `URIs:`, `Suites:`, `Enabled:` fields; one source per URI.
fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut sources = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut fields: HashMap<String, String> = HashMap::new();
        for line in paragraph.lines() {
            if line.starts_with('#') || line.starts_with(char::is_whitespace) {
                continue; // comments and continuation lines (e.g. inline keys)
            }
            if let Some((key, value)) = line.split_once(':') {
                fields.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let field = |key: &str| fields.get(key).map(String::as_str).unwrap_or("");
        let is_deb = field("types").split_whitespace().any(|t| t == "deb");
        if !is_deb || field("enabled").eq_ignore_ascii_case("no") {
            continue;
        }
        let suites: Vec<String> = field("suites")
            .split_whitespace()
            .map(String::from)
            .collect();
        sources.extend(field("uris").split_whitespace().map(|uri| AptSource {
            uri: uri.to_string(),
            suites: suites.clone(),
        }));
    }
    sources
}

fn is_http(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// The mirror to bootstrap from: one that serves [`RELEASE`] itself, else one that looks
/// like a Debian archive (`…/debian`). `None` lets debootstrap use its default.
fn pick_mirror(sources: &[AptSource]) -> Option<String> {
    let serves_release = sources
        .iter()
        .find(|s| is_http(&s.uri) && s.suites.iter().any(|suite| suite == RELEASE));
    let looks_debian = || {
        sources
            .iter()
            .find(|s| is_http(&s.uri) && s.uri.trim_end_matches('/').ends_with("/debian"))
    };
    serves_release
        .or_else(looks_debian)
        .map(|s| s.uri.trim_end_matches('/').to_string())
}

/// The base image's `sources.list`: the mirror's release, plus the updates and security
/// suites wherever the host gets them from.
fn sources_list(sources: &[AptSource], mirror: &str) -> String {
    let mut list = format!("deb {mirror} {RELEASE} main\n");
    for suffix in ["updates", "security"] {
        let suite = format!("{RELEASE}-{suffix}");
        let found = sources
            .iter()
            .find(|s| is_http(&s.uri) && s.suites.contains(&suite));
        if let Some(source) = found {
            let uri = source.uri.trim_end_matches('/');
            list.push_str(&format!("deb {uri} {suite} main\n"));
        }
    }
    list
}

/// Whether the Dockerfile in `context` builds `FROM` [`BASE_IMAGE`], so that building it
/// needs the base image (and, while that is missing, debootstrap).
pub fn builds_from_base(context: &Path) -> io::Result<bool> {
    let text = fs::read_to_string(context.join("Dockerfile"))?;
    Ok(from_images(&text).iter().any(|image| image == BASE_IMAGE))
}

/// The debootstrap program a base image build would run: on `PATH` or in the sbin
/// directories (see [`path_with_sbin`]).
pub fn find_debootstrap() -> Option<PathBuf> {
    std::env::split_paths(&path_with_sbin())
        .map(|dir| dir.join("debootstrap"))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `PATH` plus the sbin directories, which debootstrap (and its `chroot`) live in but
/// which non-login shells and CI runners often lack.
fn path_with_sbin() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        if !dirs.iter().any(|d| d == Path::new(extra)) {
            dirs.push(extra.into());
        }
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// The effective uid owns `/proc/self`; avoids `unsafe` libc calls.
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The bootstrap's scratch directory. debootstrap mounts /proc, /sys and (in containers)
/// a tmpfs with the host's device nodes bound into it; if it is killed those mounts stay,
/// and a plain `remove_dir_all` would delete through them into the host. So removal
/// first unmounts anything below the directory and refuses while mounts remain.
struct Scratch {
    path: PathBuf,
    removed: bool,
}

impl Scratch {
    fn new() -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("phalanx-base-").tempdir()?;
        // Canonical, so it compares equal to the mount points the kernel reports.
        let path = dir.keep().canonicalize()?;
        Ok(Scratch {
            path,
            removed: false,
        })
    }

    async fn remove(mut self) -> Result<(), String> {
        self.removed = true;
        let path = self.path.clone();
        blocking(move || remove_scratch(&path))
            .await
            .map_err(|e| format!("could not remove {}: {e}", self.path.display()))
    }
}

impl Drop for Scratch {
    /// Only reached when the bootstrap was cancelled mid-way.
    fn drop(&mut self) {
        if !self.removed {
            let _ = remove_scratch(&self.path);
        }
    }
}

fn remove_scratch(dir: &Path) -> io::Result<()> {
    let mut mounts = mounts_under(dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    for mount in &mounts {
        // Lazy: detaches even while a killed debootstrap's children still hold files.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(mount)
            .env("PATH", path_with_sbin())
            .status();
    }
    ensure_no_mounts(dir)?;
    fs::remove_dir_all(dir)
}

fn ensure_no_mounts(dir: &Path) -> io::Result<()> {
    match mounts_under(dir).first() {
        None => Ok(()),
        Some(m) => Err(io::Error::other(format!(
            "{} is still mounted; left in place",
            m.display()
        ))),
    }
}

/// Mount points at or below `dir`, from `/proc/self/mountinfo` (field 5, octal-escaped).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|raw| PathBuf::from(unescape_mountinfo(raw)))
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\040`-style octal escapes.
fn unescape_mountinfo(raw: &str) -> String {
    let (mut out, bytes) = (Vec::new(), raw.as_bytes());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok());
        match (bytes[i], octal.and_then(|d| u8::from_str_radix(d, 8).ok())) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs blocking file work off the async runtime's worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

fn open_log_std(log: &Path) -> io::Result<File> {
    if let Some(parent) = log.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    fs::OpenOptions::new().create(true).append(true).open(log)
}

async fn open_log(log: &Path) -> io::Result<tokio::fs::File> {
    let log = log.to_path_buf();
    blocking(move || open_log_std(&log))
        .await
        .map(tokio::fs::File::from_std)
}

/// Appends progress notes to the log; a log that cannot be written must not fail the build.
async fn append_log(log: &Path, text: &str) {
    if let Ok(mut file) = open_log(log).await {
        let _ = file.write_all(text.as_bytes()).await;
        let _ = file.flush().await;
    }
}

fn build_error(image: &str, message: impl Into<String>, log: &Path) -> EngineError {
    EngineError::Build {
        image: image.to_string(),
        message: message.into(),
        log: log.to_path_buf(),
    }
}

fn log_error(image: &str, log: &Path, e: io::Error) -> EngineError {
    build_error(image, format!("cannot write the build log: {e}"), log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_stage_base_and_skips_flags() {
        let dockerfile = "# comment FROM nope\nFROM --platform=linux/amd64 phalanx/base:bookworm AS a\n\
                          RUN echo \\\n  FROM not-this\nfrom scratch\n";
        assert_eq!(
            from_images(dockerfile),
            ["phalanx/base:bookworm", "scratch"]
        );
    }

    #[test]
    fn an_intermediate_image_is_built_from_the_folder_beside() {
        let dir = tempfile::tempdir().unwrap();
        for folder in ["python", "bandit", "empty"] {
            std::fs::create_dir(dir.path().join(folder)).unwrap();
        }
        std::fs::write(
            dir.path().join("python/Dockerfile"),
            "FROM phalanx/base:bookworm\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bandit/Dockerfile"),
            "FROM phalanx/python:1\n",
        )
        .unwrap();
        let bandit = dir.path().join("bandit");
        assert_eq!(
            parent_context(&bandit, "phalanx/python:1"),
            Some(dir.path().join("python"))
        );
        // The base is bootstrapped, other repositories are not ours, a folder without a
        // Dockerfile builds nothing, and a Dockerfile never builds itself first.
        assert_eq!(parent_context(&bandit, BASE_IMAGE), None);
        assert_eq!(parent_context(&bandit, "python:3"), None);
        assert_eq!(parent_context(&bandit, "phalanx/empty:1"), None);
        assert_eq!(parent_context(&bandit, "phalanx/bandit:2"), None);
        assert_eq!(parent_context(&bandit, "phalanx/../x:1"), None);
    }

    #[test]
    fn parses_one_line_sources() {
        let src = parse_one_line(
            "deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main",
        );
        assert_eq!(
            src,
            Some(AptSource {
                uri: "http://m.example/debian".into(),
                suites: vec!["bookworm".into()],
            })
        );
        assert_eq!(
            parse_one_line("deb-src http://m.example/debian bookworm main"),
            None
        );
        assert_eq!(
            parse_one_line("# deb http://m.example/debian bookworm main"),
            None
        );
    }

    #[test]
    fn parses_deb822_and_skips_disabled() {
        let text = "Types: deb deb-src\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\n\
                    Components: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n\n\
                    Types: deb\nURIs: http://s.example/debian-security\nSuites: bookworm-security\n\n\
                    Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: bookworm\n";
        let sources = parse_deb822(text);
        assert_eq!(sources.len(), 2);
        assert_eq!(
            pick_mirror(&sources).as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(
            sources_list(&sources, "http://m.example/debian"),
            "deb http://m.example/debian bookworm main\n\
             deb http://m.example/debian bookworm-updates main\n\
             deb http://s.example/debian-security bookworm-security main\n"
        );
    }

    #[test]
    fn mirror_falls_back_to_a_debian_archive_then_to_none() {
        let other = AptSource {
            uri: "https://repo.example/node".into(),
            suites: vec!["nodistro".into()],
        };
        let trixie = AptSource {
            uri: "http://m.example/debian/".into(),
            suites: vec!["trixie".into()],
        };
        assert_eq!(pick_mirror(std::slice::from_ref(&other)), None);
        assert_eq!(
            pick_mirror(&[other, trixie]).as_deref(),
            Some("http://m.example/debian")
        );
    }

    #[test]
    fn reads_the_hosts_apt_directory_layout() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("sources.list.d");
        fs::create_dir(&d).unwrap();
        fs::write(
            dir.path().join("sources.list"),
            "deb http://a.example/debian bookworm main\n",
        )
        .unwrap();
        fs::write(
            d.join("x.list.disabled"),
            "deb http://b.example/debian bookworm main\n",
        )
        .unwrap();
        fs::write(
            d.join("y.sources"),
            "Types: deb\nURIs: http://c.example/debian\nSuites: sid\n",
        )
        .unwrap();
        let uris: Vec<_> = apt_sources(dir.path()).into_iter().map(|s| s.uri).collect();
        assert_eq!(uris, ["http://a.example/debian", "http://c.example/debian"]);
    }

    #[test]
    fn quotes_the_last_real_line_of_build_output() {
        let text = "Step 3/4 : RUN false\n ---> Running in 1234\nE: no such package\n\n";
        assert_eq!(last_meaningful_line(text), Some("E: no such package"));
        assert_eq!(last_meaningful_line(" ---> abc\n"), None);
        assert_eq!(strip_ansi("\x1b[91mE: broken\x1b[0m"), "E: broken");
    }

    #[test]
    fn copies_only_local_ca_certificates() {
        let (host, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir_all(host.path().join("corp")).unwrap();
        fs::write(host.path().join("proxy.crt"), "PEM").unwrap();
        fs::write(host.path().join("corp/root.crt"), "PEM2").unwrap();
        fs::write(host.path().join("notes.txt"), "not a cert").unwrap();
        let to = root.path().join(LOCAL_CA_DIR);
        assert_eq!(copy_local_cas(host.path(), &to).unwrap(), 2);
        assert_eq!(
            fs::read_to_string(to.join("corp/root.crt")).unwrap(),
            "PEM2"
        );
        assert!(to.join("proxy.crt").is_file() && !to.join("notes.txt").exists());
        let missing = host.path().join("missing");
        assert_eq!(copy_local_cas(&missing, &to).unwrap(), 0);
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b\\"), r"/tmp/a b\\");
    }
}
