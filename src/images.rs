//! `phalanx images`: builds the images of the selected suites ahead of a run, several at
//! once (`image_jobs`, as a run does), showing which step each build is at.
//!
//! A run builds the missing images itself as it starts, but then the first run of a fresh
//! machine spends minutes in builds before most results. Building ahead keeps
//! that out of the run: in a CI job's setup step, or before an air-gapped machine is cut
//! off. Builds run through the same phase as a run's ([`crate::builds`]).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::builds::{Builds, ImageState};
use crate::cause::Cause;
use crate::config::Suite;
use crate::engine::Engine;
use crate::event::{BuildOutcome, EventKind};
use crate::stop::StopSignal;

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
    Failed(Cause),
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

/// Adds the images of `services` to `jobs` (a service's build log is
/// `service-<name>.build.log`, as if it were a suite named `service-<name>`).
pub fn add_service_jobs(jobs: &mut Vec<ImageJob>, services: &[crate::config::Service]) {
    for service in services {
        let user = format!("service-{}", service.name);
        match jobs.iter_mut().find(|j| j.image == service.image) {
            Some(job) => {
                job.suites.push(user);
                if job.context.is_none() {
                    job.context.clone_from(&service.build);
                }
            }
            None => jobs.push(ImageJob {
                image: service.image.clone(),
                context: service.build.clone(),
                suites: vec![user],
            }),
        }
    }
}

/// The build log of `job`: the same file a run uses for its first suite.
pub fn build_log(reports_dir: &Path, job: &ImageJob) -> PathBuf {
    let suite = job.suites.first().map(String::as_str).unwrap_or("image");
    reports_dir.join("logs").join(format!("{suite}.build.log"))
}

/// Makes every image in `jobs` that is missing, `image_jobs` at a time, printing one line
/// per image to `out` as it settles (and, on a terminal, a spinner per running build with
/// the step it is at; elsewhere, a line when each build starts).
pub async fn build_all<E: Engine>(
    engine: Arc<E>,
    jobs: &[ImageJob],
    reports_dir: &Path,
    image_jobs: usize,
    out: &mut dyn Write,
) -> Vec<(ImageJob, ImageOutcome)> {
    let (events, mut inbox) = crate::event::channel();
    let builds = Builds::start_jobs(
        engine,
        jobs.to_vec(),
        reports_dir,
        image_jobs,
        StopSignal::default(),
        events,
    );
    let mut shown = Shown::new(jobs, out);
    // The inbox closes once every image has settled.
    while let Some(event) = inbox.recv().await {
        shown.event(&event, reports_dir);
    }
    let mut states = builds.finish().await;
    let mut done = Vec::with_capacity(jobs.len());
    for job in jobs {
        let outcome = match states.remove(&job.image) {
            Some(ImageState::Built { took }) => ImageOutcome::Built { took },
            Some(ImageState::Failed(cause)) => ImageOutcome::Failed(cause),
            // The engine could not say, or nothing settled it: only a build makes it sure.
            Some(ImageState::Unknown | ImageState::Pending | ImageState::Cancelled) | None => {
                ImageOutcome::Failed(Cause::ImageMissing {
                    image: job.image.clone(),
                })
            }
            Some(ImageState::Present) => ImageOutcome::Present,
        };
        // Built and failed builds were shown as they ended.
        if !shown.printed.contains(&job.image) {
            shown.line(&job.image, &outcome_text(&outcome));
        }
        done.push((job.clone(), outcome));
    }
    shown.finish();
    done
}

fn outcome_text(outcome: &ImageOutcome) -> String {
    match outcome {
        ImageOutcome::Present => "present".to_string(),
        ImageOutcome::Built { took } => format!("built in {}s", took.as_secs()),
        ImageOutcome::Failed(cause) => format!("FAILED: {cause}"),
    }
}

/// What `phalanx images` shows while the builds run.
struct Shown<'a> {
    out: &'a mut dyn Write,
    width: usize,
    total: usize,
    /// Images with their final line printed.
    printed: Vec<String>,
    /// On a terminal: the bars, and a spinner per running build.
    bars: Option<MultiProgress>,
    spinners: Vec<(String, Spinner)>,
}

impl<'a> Shown<'a> {
    fn new(jobs: &[ImageJob], out: &'a mut dyn Write) -> Self {
        let terminal = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        Shown {
            out,
            width: jobs.iter().map(|j| j.image.len()).max().unwrap_or(0),
            total: jobs.len(),
            printed: Vec::new(),
            bars: terminal.then(MultiProgress::new),
            spinners: Vec::new(),
        }
    }

    fn event(&mut self, event: &EventKind, reports_dir: &Path) {
        match event {
            EventKind::ImageBuildStarted { image, suites } => {
                let log = build_log(
                    reports_dir,
                    &ImageJob {
                        image: image.clone(),
                        context: None,
                        suites: suites.clone(),
                    },
                );
                match &self.bars {
                    Some(bars) => {
                        let spinner = Spinner::start(bars, format!("building {image}"), &log);
                        self.spinners.push((image.clone(), spinner));
                    }
                    None => {
                        let text =
                            format!("[ /{}] {image:w$}  building", self.total, w = self.width);
                        let _ = writeln!(self.out, "{text}");
                    }
                }
            }
            EventKind::ImageBuildFinished {
                image,
                outcome,
                duration,
                cause,
                ..
            } => {
                if let Some(at) = self.spinners.iter().position(|(i, _)| i == image) {
                    self.spinners.remove(at).1.stop();
                }
                let text = match (outcome, cause) {
                    (BuildOutcome::Failed, Some(cause)) => format!("FAILED: {cause}"),
                    (BuildOutcome::Built, _) => format!("built in {}s", duration.as_secs()),
                    (other, _) => format!("{other:?}").to_lowercase(),
                };
                self.line(image, &text);
            }
            _ => {}
        }
    }

    /// `[3/9] phalanx/bandit:1      built in 41s`, above any spinners.
    fn line(&mut self, image: &str, text: &str) {
        self.printed.push(image.to_string());
        let line = format!(
            "[{}/{}] {image:w$}  {text}",
            self.printed.len(),
            self.total,
            w = self.width
        );
        let out = &mut self.out;
        match &self.bars {
            Some(bars) => bars.suspend(|| writeln!(out, "{line}")),
            None => writeln!(out, "{line}"),
        }
        .ok();
    }

    fn finish(self) {
        for (_, spinner) in self.spinners {
            spinner.stop();
        }
        if let Some(bars) = self.bars {
            let _ = bars.clear();
        }
    }
}

/// A spinner whose message is the build's latest `Step N/M` line, read from the build log
/// as it grows.
struct Spinner {
    bar: ProgressBar,
    follow: tokio::task::JoinHandle<()>,
}

impl Spinner {
    fn start(bars: &MultiProgress, prefix: String, log: &Path) -> Spinner {
        let bar = bars.add(ProgressBar::new_spinner());
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
        Spinner { bar, follow }
    }

    fn stop(self) {
        self.follow.abort();
        self.bar.finish_and_clear();
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

    #[tokio::test(start_paused = true)]
    async fn builds_the_missing_images_concurrently_and_says_what_became_of_each() {
        use crate::engine::memory::MemoryEngine;
        let engine = Arc::new(MemoryEngine::default());
        let mut files = vec![("here", "image = \"mem:1\"\n".to_string())];
        let names: Vec<String> = (0..3).map(|i| format!("s{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            engine.needs_build(&format!("img{i}:1"), 1000 * (i as u64 + 1), i == 2);
            let body = format!("image = \"img{i}:1\"\nbuild = \"../ctx\"\n");
            files.push((name.as_str(), body));
        }
        let files: Vec<(&str, &str)> = files.iter().map(|(n, b)| (*n, b.as_str())).collect();
        let jobs = jobs(&suites(&files));
        let reports = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let done = build_all(engine.clone(), &jobs, reports.path(), 2, &mut out).await;
        assert_eq!(engine.max_running_builds(), 2);
        let counts = tally(&done);
        assert_eq!(
            (counts["built"], counts["present"], counts["failed"]),
            (2, 1, 1)
        );
        let text = String::from_utf8(out).unwrap();
        let last: Vec<&str> = text.lines().filter(|l| !l.ends_with("building")).collect();
        assert_eq!(last.len(), 4, "{text}");
        assert!(last[0].starts_with("[1/4] img0:1") && last[0].ends_with("built in 1s"));
        assert!(last[1].contains("img1:1") && last[1].ends_with("built in 2s"));
        assert!(last[2].contains("img2:1  FAILED: building image `img2:1` failed"));
        assert!(last[3].starts_with("[4/4] mem:1") && last[3].ends_with("present"));
    }

    #[test]
    fn shows_the_latest_build_step() {
        let log = "Step 1/3 : FROM phalanx/base:bookworm\n ---> abc\n\
                   Step 2/3 : RUN apt-get update\n ---> Running in 1\nGet:1 http://x\n";
        assert_eq!(current_step(log), Some("Step 2/3 : RUN apt-get update"));
        assert_eq!(current_step("nothing yet"), None);
    }
}
