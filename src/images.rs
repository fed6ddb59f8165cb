//! `phalanx images`: builds the images of the selected suites ahead of a run, one after
//! another, showing which step each build is at.
//!
//! A run builds a missing image by itself (the engine's `ensure_image`), but then the first
//! run of a fresh machine spends minutes in builds before any result. Building ahead keeps
//! that out of the run: in a CI job's setup step, or before an air-gapped machine is cut
//! off. Builds run one at a time: they compete for the same CPU and network, and a later
//! Dockerfile that starts with the same steps as an earlier one then reuses its layers.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Suite;
use crate::engine::{Engine, EngineError};

/// One image to make, and the suites that run it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageJob {
    pub image: String,
    /// Build context (the first suite's `build`); `None` when no suite says how to build it.
    pub context: Option<PathBuf>,
    pub suites: Vec<String>,
}

/// What became of one image.
#[derive(Debug)]
pub enum ImageOutcome {
    /// It was there already (images are never rebuilt; bump the tag to change one).
    Present,
    Built {
        took: Duration,
    },
    Failed(EngineError),
}

/// The distinct images `suites` need, in the order first needed, each with its build
/// context and the suites that use it.
pub fn jobs(suites: &[Suite]) -> Vec<ImageJob> {
    let mut jobs: Vec<ImageJob> = Vec::new();
    for suite in suites {
        match jobs.iter_mut().find(|j| j.image == suite.image) {
            Some(job) => {
                job.suites.push(suite.name.clone());
                if job.context.is_none() {
                    job.context.clone_from(&suite.build);
                }
            }
            None => jobs.push(ImageJob {
                image: suite.image.clone(),
                context: suite.build.clone(),
                suites: vec![suite.name.clone()],
            }),
        }
    }
    jobs
}

/// The build log of `job`: the same file a run uses for its first suite.
pub fn build_log(reports_dir: &Path, job: &ImageJob) -> PathBuf {
    let suite = job.suites.first().map(String::as_str).unwrap_or("image");
    reports_dir.join("logs").join(format!("{suite}.build.log"))
}

/// Makes every image in `jobs` that is missing, one at a time, printing one line per
/// image to `out` (and, on a terminal, a spinner with the build's current step).
pub async fn build_all<E: Engine>(
    engine: &E,
    jobs: &[ImageJob],
    reports_dir: &Path,
    out: &mut dyn Write,
) -> Vec<(ImageJob, ImageOutcome)> {
    let mut done = Vec::with_capacity(jobs.len());
    let width = jobs.iter().map(|j| j.image.len()).max().unwrap_or(0);
    for (i, job) in jobs.iter().enumerate() {
        let counter = format!("[{}/{}]", i + 1, jobs.len());
        let log = build_log(reports_dir, job);
        let outcome = make(engine, job, &log, &counter).await;
        let line = match &outcome {
            ImageOutcome::Present => "present".to_string(),
            ImageOutcome::Built { took } => format!("built in {}s", took.as_secs()),
            ImageOutcome::Failed(e) => format!("FAILED: {e}"),
        };
        let _ = writeln!(out, "{counter} {:width$}  {line}", job.image);
        done.push((job.clone(), outcome));
    }
    done
}

async fn make<E: Engine>(engine: &E, job: &ImageJob, log: &Path, counter: &str) -> ImageOutcome {
    match engine.image_exists(&job.image).await {
        Ok(true) => return ImageOutcome::Present,
        Ok(false) => {}
        Err(e) => return ImageOutcome::Failed(e),
    }
    let Some(context) = &job.context else {
        return ImageOutcome::Failed(EngineError::ImageMissing {
            image: job.image.clone(),
        });
    };
    // A build appends to its log; a log from an earlier attempt would only confuse.
    let _ = tokio::fs::remove_file(log).await;
    let started = Instant::now();
    let spinner = Spinner::start(format!("{counter} building {}", job.image), log);
    let result = engine.build_image(context, &job.image, log).await;
    spinner.stop();
    match result {
        Ok(()) => ImageOutcome::Built {
            took: started.elapsed(),
        },
        Err(e) => ImageOutcome::Failed(e),
    }
}

/// On a terminal: a spinner whose message is the build's latest `Step N/M` line, read from
/// the build log as it grows. Elsewhere (CI logs) nothing: the final line per image says it.
struct Spinner {
    bar: Option<ProgressBar>,
    follow: Option<tokio::task::JoinHandle<()>>,
}

impl Spinner {
    fn start(prefix: String, log: &Path) -> Spinner {
        if !std::io::stderr().is_terminal() || std::env::var_os("CI").is_some() {
            return Spinner {
                bar: None,
                follow: None,
            };
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(prefix);
        bar.enable_steady_tick(Duration::from_millis(120));
        let (shown, log) = (bar.clone(), log.to_path_buf());
        let follow = tokio::spawn(async move {
            loop {
                if let Ok(text) = tokio::fs::read_to_string(&log).await
                    && let Some(step) = current_step(&text)
                {
                    shown.set_message(step.to_string());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Spinner {
            bar: Some(bar),
            follow: Some(follow),
        }
    }

    fn stop(self) {
        if let Some(follow) = self.follow {
            follow.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The build's latest `Step N/M : INSTRUCTION` line (classic builder), cut to one line, or
/// what the base image bootstrap says it is doing.
fn current_step(log: &str) -> Option<&str> {
    log.lines().rev().map(str::trim).find_map(|line| {
        (line.starts_with("Step ") || line.starts_with("phalanx: bootstrapping"))
            .then(|| line.get(..100).unwrap_or(line))
    })
}

/// Counts of what happened, for the closing line and the exit code.
pub fn tally(done: &[(ImageJob, ImageOutcome)]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::from([("present", 0), ("built", 0), ("failed", 0)]);
    for (_, outcome) in done {
        let key = match outcome {
            ImageOutcome::Present => "present",
            ImageOutcome::Built { .. } => "built",
            ImageOutcome::Failed(_) => "failed",
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProjectConfig, load_suites};

    fn suites(files: &[(&str, &str)]) -> Vec<Suite> {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            std::fs::write(dir.path().join(format!("{name}.toml")), body).unwrap();
        }
        let loaded = load_suites(dir.path(), &ProjectConfig::default()).unwrap();
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        loaded.suites
    }

    #[test]
    fn one_job_per_image_with_the_first_build_context() {
        let suites = suites(&[
            ("a", "image = \"x:1\"\n"),
            ("b", "image = \"x:1\"\nbuild = \"../ctx\"\n"),
            ("c", "image = \"y:2\"\nbuild = \"../y\"\n"),
        ]);
        let jobs = jobs(&suites);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].image, "x:1");
        assert_eq!(jobs[0].suites, ["a", "b"]);
        assert!(jobs[0].context.as_ref().unwrap().ends_with("ctx"));
        assert_eq!(jobs[1].suites, ["c"]);
        assert_eq!(
            build_log(Path::new("r"), &jobs[1]),
            Path::new("r/logs/c.build.log")
        );
    }

    #[test]
    fn shows_the_latest_build_step() {
        let log = "Step 1/3 : FROM phalanx/base:bookworm\n ---> abc\n\
                   Step 2/3 : RUN apt-get update\n ---> Running in 1\nGet:1 http://x\n";
        assert_eq!(current_step(log), Some("Step 2/3 : RUN apt-get update"));
        assert_eq!(current_step("nothing yet"), None);
    }
}
