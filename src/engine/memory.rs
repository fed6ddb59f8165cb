//! An in-memory engine for unit-testing the scheduler and runner without Docker.
//!
//! A suite's `command` is its script: `["<millis>", "<exit code>"]`, optionally followed by
//! `"fail-create:<n>"` (the first n creates fail with an API error) or `"oom"`. An image
//! named `missing` does not exist; images given to [`MemoryEngine::needs_build`] are
//! missing until a build (which takes the given time, and may fail) makes them. Each
//! container and build records when it ran, in tokio's clock, so tests can run with
//! paused time.
//!
//! A service's `command` is `["<millis>", "<exit code>"]` too (how long it runs before it
//! exits by itself; no command: until stopped), optionally followed by `"ready-after:<ms>"`
//! (the readiness check passes that long after the start; default at once).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::time::Instant;

use super::{
    ContainerSpec, Engine, EngineError, ExitStatus, ImageInfo, LogChunk, ProbeFile, Readiness,
    ReadyProbe, ServiceSpec, TargetView,
};
use crate::config::Suite;

#[derive(Debug, Clone)]
pub struct Interval {
    pub suite: String,
    pub start: Instant,
    pub end: Instant,
}

#[derive(Default)]
pub struct MemoryEngine {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    containers: HashMap<String, Container>,
    create_failures: HashMap<String, u32>,
    next_id: u64,
    running_weight: u32,
    pub max_running_weight: u32,
    intervals: Vec<Interval>,
    /// Names of the containers the scheduler asked to prepare, in order.
    prepared: Vec<String>,
    /// Images that exist only once built, by name.
    buildable: HashMap<String, Buildable>,
    running_builds: u32,
    max_running_builds: u32,
    /// How long looking up an image takes, by name (none: no time).
    inspect_millis: HashMap<String, u64>,
    /// Bytes of tar received per target volume.
    target_copies: HashMap<String, u64>,
    /// Aliases of the services started, in order.
    services_started: Vec<String>,
    /// When each service passes its readiness check, by alias.
    ready_at: HashMap<String, Instant>,
}

struct Buildable {
    millis: u64,
    fails: bool,
    built: bool,
    /// How many builds were started.
    builds: u32,
}

struct Container {
    suite: String,
    millis: u64,
    exit: i64,
    oom: bool,
    started: Option<Instant>,
    stopped: bool,
    /// A service's container: not a suite, so no interval and no weight.
    service: bool,
}

impl MemoryEngine {
    /// Start/stop intervals of every container that ran.
    pub fn intervals(&self) -> Vec<Interval> {
        self.state.lock().unwrap().intervals.clone()
    }

    /// How many containers have not been removed.
    pub fn leftover(&self) -> usize {
        self.state.lock().unwrap().containers.len()
    }

    /// Names of the containers the scheduler asked to prepare ahead of time, in order.
    pub fn prepared(&self) -> Vec<String> {
        self.state.lock().unwrap().prepared.clone()
    }

    /// The largest number of containers that ran at the same time.
    pub fn max_running(&self) -> u32 {
        self.state.lock().unwrap().max_running_weight
    }

    /// Makes `image` missing until a build of `millis` makes it (or fails, when `fails`).
    pub fn needs_build(&self, image: &str, millis: u64, fails: bool) {
        let plan = Buildable {
            millis,
            fails,
            built: false,
            builds: 0,
        };
        self.state
            .lock()
            .unwrap()
            .buildable
            .insert(image.to_string(), plan);
    }

    /// Makes looking up `image` take `millis`.
    pub fn inspect_takes(&self, image: &str, millis: u64) {
        let mut state = self.state.lock().unwrap();
        state.inspect_millis.insert(image.to_string(), millis);
    }

    /// How many builds of `image` were started.
    pub fn builds_of(&self, image: &str) -> u32 {
        let state = self.state.lock().unwrap();
        state.buildable.get(image).map_or(0, |b| b.builds)
    }

    /// Aliases of the services started, in order.
    pub fn services_started(&self) -> Vec<String> {
        self.state.lock().unwrap().services_started.clone()
    }

    /// The largest number of image builds that ran at the same time.
    pub fn max_running_builds(&self) -> u32 {
        self.state.lock().unwrap().max_running_builds
    }

    /// Whether `image` is missing because it was given to [`MemoryEngine::needs_build`] and
    /// no build made it yet.
    fn unbuilt(&self, image: &str) -> bool {
        let state = self.state.lock().unwrap();
        state.buildable.get(image).is_some_and(|b| !b.built)
    }

    /// Runs the planned build of `image`: its time passes, then it exists or fails.
    async fn simulate_build(&self, image: &str, log: &Path) -> Result<(), EngineError> {
        let (millis, fails) = {
            let mut state = self.state.lock().unwrap();
            let plan = state.buildable.get_mut(image).expect("planned");
            plan.builds += 1;
            let planned = (plan.millis, plan.fails);
            state.running_builds += 1;
            state.max_running_builds = state.max_running_builds.max(state.running_builds);
            planned
        };
        tokio::time::sleep(Duration::from_millis(millis)).await;
        let mut state = self.state.lock().unwrap();
        state.running_builds -= 1;
        if fails {
            return Err(EngineError::Build {
                image: image.to_string(),
                message: "simulated build failure".into(),
                log: log.to_path_buf(),
            });
        }
        state.buildable.get_mut(image).expect("planned").built = true;
        Ok(())
    }

    fn suite_of(spec: &ContainerSpec) -> String {
        spec.labels
            .get(crate::runner::SUITE_LABEL)
            .cloned()
            .unwrap_or_default()
    }
}

fn parse_script(command: &[String]) -> (u64, i64, Option<u32>, bool) {
    let millis = command.first().and_then(|s| s.parse().ok()).unwrap_or(0);
    let exit = command.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut fail_create = None;
    let mut oom = false;
    for word in command.iter().skip(2) {
        if let Some(n) = word.strip_prefix("fail-create:") {
            fail_create = n.parse().ok();
        }
        oom |= word == "oom";
    }
    (millis, exit, fail_create, oom)
}

impl Engine for MemoryEngine {
    async fn ensure_image(
        &self,
        suite: &Suite,
        build_log: &Path,
    ) -> Result<ImageInfo, EngineError> {
        if self.unbuilt(&suite.image) && suite.build.is_some() {
            self.simulate_build(&suite.image, build_log).await?;
        }
        if suite.image == "missing" || self.unbuilt(&suite.image) {
            return Err(EngineError::ImageMissing {
                image: suite.image.clone(),
            });
        }
        Ok(ImageInfo {
            id: format!("sha256:{}", suite.image),
            digest: None,
        })
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let suite = Self::suite_of(spec);
        let command = spec.command.clone().unwrap_or_default();
        let (millis, exit, fail_create, oom) = parse_script(&command);
        let mut state = self.state.lock().unwrap();
        if let Some(n) = fail_create {
            let failed = state.create_failures.entry(suite.clone()).or_insert(0);
            if *failed < n {
                *failed += 1;
                return Err(EngineError::api(
                    "container create",
                    "simulated engine failure",
                ));
            }
        }
        state.next_id += 1;
        let id = format!("mem-{}", state.next_id);
        state.containers.insert(
            id.clone(),
            Container {
                suite,
                millis,
                exit,
                oom,
                started: None,
                stopped: false,
                service: false,
            },
        );
        Ok(id)
    }

    async fn prepare(&self, spec: &ContainerSpec) -> bool {
        self.state.lock().unwrap().prepared.push(spec.name.clone());
        false
    }

    async fn start(&self, id: &str) -> Result<(), EngineError> {
        let mut state = self.state.lock().unwrap();
        let container = state.containers.get_mut(id).expect("created");
        container.started = Some(Instant::now());
        state.running_weight += 1;
        state.max_running_weight = state.max_running_weight.max(state.running_weight);
        Ok(())
    }

    fn logs(&self, _id: &str) -> BoxStream<'static, Result<LogChunk, EngineError>> {
        stream::iter([Ok(LogChunk::Stdout(Bytes::from_static(b"hello\n")))]).boxed()
    }

    async fn wait(&self, id: &str) -> Result<ExitStatus, EngineError> {
        let (deadline, code, oom) = {
            let state = self.state.lock().unwrap();
            let c = &state.containers[id];
            (
                c.started.expect("started") + Duration::from_millis(c.millis),
                c.exit,
                c.oom,
            )
        };
        loop {
            if self.state.lock().unwrap().containers[id].stopped {
                return Ok(ExitStatus {
                    code: 137,
                    oom_killed: false,
                });
            }
            if Instant::now() >= deadline {
                self.end(id);
                return Ok(ExitStatus {
                    code,
                    oom_killed: oom,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(&self, id: &str, _grace: Duration) -> Result<(), EngineError> {
        self.end(id);
        Ok(())
    }

    async fn download(
        &self,
        _id: &str,
        _path: &str,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, EngineError>>>, EngineError> {
        Ok(None)
    }

    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        self.end(id);
        self.state.lock().unwrap().containers.remove(id);
        Ok(())
    }

    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        let millis = self
            .state
            .lock()
            .unwrap()
            .inspect_millis
            .get(image)
            .copied();
        if let Some(millis) = millis {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
        Ok(image != "missing" && !self.unbuilt(image))
    }

    /// A planned build ([`MemoryEngine::needs_build`]) runs as planned; any other build
    /// "succeeds" unless the context folder has no Dockerfile, as Docker's would.
    async fn build_image(
        &self,
        context: &Path,
        image: &str,
        log: &Path,
    ) -> Result<(), EngineError> {
        if self.state.lock().unwrap().buildable.contains_key(image) {
            return self.simulate_build(image, log).await;
        }
        if context.join("Dockerfile").is_file() {
            return Ok(());
        }
        Err(EngineError::Build {
            image: image.to_string(),
            message: format!("{} has no Dockerfile", context.display()),
            log: log.to_path_buf(),
        })
    }

    /// The engine lives in this process: it sees this filesystem.
    async fn probe_target(
        &self,
        _target: &Path,
        _probe: &[ProbeFile],
        _labels: &HashMap<String, String>,
    ) -> Result<TargetView, EngineError> {
        Ok(TargetView::Same)
    }

    /// Reads the whole tar and remembers its size.
    async fn copy_target(
        &self,
        volume: &str,
        _labels: &HashMap<String, String>,
        mut tar: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<(), EngineError> {
        let mut bytes = 0;
        while let Some(chunk) = tar.next().await {
            bytes += chunk.map_err(|e| EngineError::api("target copy", e))?.len() as u64;
        }
        self.state
            .lock()
            .unwrap()
            .target_copies
            .insert(volume.to_string(), bytes);
        Ok(())
    }

    /// No other process shares this engine, so nothing is ever orphaned.
    async fn remove_orphans(&self) -> Result<usize, EngineError> {
        Ok(0)
    }

    async fn start_service(&self, spec: &ServiceSpec) -> Result<String, EngineError> {
        let command = spec.command.clone().unwrap_or_default();
        let (millis, exit, _, _) = parse_script(&command);
        // No command: it runs until stopped (a day is forever here).
        let millis = if command.is_empty() {
            86_400_000
        } else {
            millis
        };
        let ready_after = command
            .iter()
            .find_map(|w| w.strip_prefix("ready-after:")?.parse().ok())
            .unwrap_or(0);
        let mut state = self.state.lock().unwrap();
        state.next_id += 1;
        let id = format!("mem-service-{}", state.next_id);
        let now = Instant::now();
        state.containers.insert(
            id.clone(),
            Container {
                suite: spec.alias.clone(),
                millis,
                exit,
                oom: false,
                started: Some(now),
                stopped: false,
                service: true,
            },
        );
        state.services_started.push(spec.alias.clone());
        let ready = now + Duration::from_millis(ready_after);
        state.ready_at.insert(spec.alias.clone(), ready);
        Ok(id)
    }

    async fn await_ready(&self, probe: &ReadyProbe) -> Result<Readiness, EngineError> {
        let ready_at = self
            .state
            .lock()
            .unwrap()
            .ready_at
            .get(&probe.host)
            .copied();
        let Some(ready_at) = ready_at else {
            return Ok(Readiness::NotReady {
                last_failure: format!("{}: Name or service not known", probe.host),
            });
        };
        let deadline = Instant::now() + probe.timeout;
        if ready_at <= deadline {
            tokio::time::sleep_until(ready_at).await;
            return Ok(Readiness::Ready);
        }
        tokio::time::sleep_until(deadline).await;
        Ok(Readiness::NotReady {
            last_failure: "connect: Connection refused".into(),
        })
    }

    async fn remove_labelled(&self, _run_id: Option<&str>) -> Result<usize, EngineError> {
        let mut state = self.state.lock().unwrap();
        let n = state.containers.len();
        state.containers.clear();
        Ok(n)
    }
}

impl MemoryEngine {
    /// Bytes of tar received for the target volume `volume`, if it was copied.
    pub fn target_copy(&self, volume: &str) -> Option<u64> {
        self.state
            .lock()
            .unwrap()
            .target_copies
            .get(volume)
            .copied()
    }

    /// Marks a running container as ended, once.
    fn end(&self, id: &str) {
        let mut state = self.state.lock().unwrap();
        let Some(c) = state.containers.get_mut(id) else {
            return;
        };
        if c.stopped || c.started.is_none() || c.service {
            c.stopped = true;
            return;
        }
        c.stopped = true;
        let interval = Interval {
            suite: c.suite.clone(),
            start: c.started.unwrap(),
            end: Instant::now(),
        };
        state.running_weight -= 1;
        state.intervals.push(interval);
    }
}
