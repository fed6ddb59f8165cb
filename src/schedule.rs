//! Runs the planned suites concurrently: at most `jobs` weight units at once, in the order
//! given (a suite whose image is still being built lets the next ready one go first), with
//! fail-fast and cancellation. While suites wait for a slot, the engine is
//! asked to prepare the containers of the next few, so that a freed slot goes straight to
//! starting one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::builds::{Builds, ImageState};
use crate::cause::Cause;
use crate::config::{Service, Suite};
use crate::engine::Engine;
use crate::event::{EventKind, EventSender};
use crate::outcome::{Outcome, SuiteReport};
use crate::runner::{self, RunContext};
use crate::services::{self, Services};
use crate::stop::{StopReason, StopSignal};

#[derive(Debug, Clone)]
pub struct ScheduleOptions {
    /// Weight units that may run at once (at least 1).
    pub jobs: usize,
    /// Image builds at once (at least 1), apart from `jobs`.
    pub image_jobs: usize,
    pub fail_fast: bool,
    /// The engine's slots when several runs share them (`phalanx serve`); `None`: the run
    /// has `jobs` slots of its own.
    pub shared_slots: Option<Arc<Semaphore>>,
}

/// Runs `suites`; every suite's report goes out as one [`EventKind::SuiteFinished`],
/// whether it ran or not. Missing images start building at once ([`Builds`]), and a free
/// slot goes to the first queued suite whose image is ready, so that slots never wait for
/// builds while another suite could run.
pub async fn run_all<E: Engine>(
    engine: Arc<E>,
    suites: Vec<Suite>,
    ctx: Arc<RunContext>,
    options: ScheduleOptions,
    stop: StopSignal,
    events: EventSender,
) {
    run_with_services(engine, suites, Vec::new(), ctx, options, stop, events).await
}

/// [`run_all`] for suites that may need services: those of `services` that the suites
/// need start as their images are ready ([`Services`]), a suite that needs one takes a
/// slot only once it is ready, and one that needs a failed one ends as an error with its
/// cause, without a slot.
pub async fn run_with_services<E: Engine>(
    engine: Arc<E>,
    mut suites: Vec<Suite>,
    services: Vec<Service>,
    ctx: Arc<RunContext>,
    options: ScheduleOptions,
    stop: StopSignal,
    events: EventSender,
) {
    let jobs = options.jobs.max(1);
    let shared_slots = options.shared_slots.clone();
    let needed = services::needed(&suites, &services);
    for suite in suites.iter_mut().filter(|s| !s.needs.is_empty()) {
        suite.env.extend(services::target_env(suite, &needed));
    }
    let mut images = crate::images::jobs(&suites);
    crate::images::add_service_jobs(&mut images, &needed);
    let mut builds = Builds::start_jobs(
        engine.clone(),
        images,
        &ctx.reports_dir,
        options.image_jobs,
        stop.clone(),
        events.clone(),
    );
    let mut dynamic = Services::start(
        engine.clone(),
        needed,
        &suites,
        ctx.clone(),
        builds.watch(),
        stop.clone(),
        events.clone(),
    );
    let mut scheduler = Scheduler {
        names: suites
            .iter()
            .map(|s| (s.name.clone(), s.image.clone()))
            .collect(),
        needs: suites.iter().map(|s| s.needs.clone()).collect(),
        running: JoinSet::new(),
        task_index: HashMap::new(),
        options,
        stop: stop.clone(),
        events: events.clone(),
    };
    let slots = shared_slots.unwrap_or_else(|| Arc::new(Semaphore::new(jobs)));
    let mut queue: VecDeque<(usize, Suite)> = suites.into_iter().enumerate().collect();
    let mut lookahead = Lookahead::default();
    loop {
        builds.mark_seen();
        dynamic.mark_seen();
        scheduler.fail_unbuilt(&mut queue, &builds, &mut dynamic);
        scheduler.fail_unserved(&mut queue, &mut dynamic);
        if queue.is_empty() || stop.is_stopped() {
            break;
        }
        let (next, weight) = {
            let ready: Vec<&(usize, Suite)> = queue
                .iter()
                .filter(|(_, s)| builds.state(&s.image).is_ready() && dynamic.ready_for(&s.needs))
                .collect();
            lookahead.hint(&engine, &ctx, &ready, jobs, slots.available_permits());
            // A suite heavier than the whole budget still runs, alone.
            let first = ready.first();
            let weight = first.map_or(1, |(_, s)| s.weight.clamp(1, jobs as u32));
            (first.map(|(index, _)| *index), weight)
        };
        tokio::select! {
            biased;
            () = stop.stopped() => break,
            Some(joined) = scheduler.running.join_next_with_id(), if !scheduler.running.is_empty() => {
                scheduler.record(joined, &mut dynamic);
            }
            // A build ended: a suite earlier in the queue may be ready now.
            () = builds.changed() => {}
            // A service got ready (or failed).
            () = dynamic.changed() => {}
            permit = slots.clone().acquire_many_owned(weight), if next.is_some() => {
                let permit = permit.expect("the semaphore is never closed");
                let at = queue.iter().position(|(i, _)| Some(*i) == next).expect("queued");
                let (index, suite) = queue.remove(at).expect("queued");
                let (engine, ctx, stop, events) = (engine.clone(), ctx.clone(), stop.clone(), events.clone());
                // The slots go back only once the report is recorded, so that a failure
                // stops the run (fail-fast) before anything else can take them.
                let handle = scheduler.running.spawn(async move {
                    let report = runner::run_suite(&*engine, &suite, &ctx, &stop, &events).await;
                    (report, permit)
                });
                scheduler.task_index.insert(handle.id(), index);
            }
        }
    }
    while let Some(joined) = scheduler.running.join_next_with_id().await {
        scheduler.record(joined, &mut dynamic);
    }
    // The services go (their logs written) before the run's final sweep removes the
    // network; what is being prepared or built finishes before that sweep too.
    dynamic.finish().await;
    lookahead.finish().await;
    builds.finish().await;
    scheduler.finish_unstarted(queue.into_iter().map(|(i, _)| i))
}

/// Asks the engine to prepare the first attempt of the next queued suites: as many as
/// there are slots, so that at most about twice `jobs` containers exist at once. A hint the
/// engine could not act on yet (its image is not ready) is given again at the next event.
#[derive(Default)]
struct Lookahead {
    /// Plan indices hinted (and not to be hinted again).
    hinted: std::collections::HashSet<usize>,
    /// Each hint's plan index, and whether to give it again.
    preparing: JoinSet<(usize, bool)>,
}

impl Lookahead {
    /// `queue`: the queued suites whose images are ready, in queue order.
    fn hint<E: Engine>(
        &mut self,
        engine: &Arc<E>,
        ctx: &Arc<RunContext>,
        queue: &[&(usize, Suite)],
        jobs: usize,
        free: usize,
    ) {
        while let Some(done) = self.preparing.try_join_next() {
            if let Ok((index, true)) = done {
                self.hinted.remove(&index);
            }
        }
        // The suites that get their slots at once would only race their own creation.
        let mut left = free;
        let skip = queue
            .iter()
            .take_while(|(_, s)| {
                let weight = s.weight.clamp(1, jobs as u32) as usize;
                let fits = weight <= left;
                left = left.saturating_sub(weight);
                fits
            })
            .count();
        for (index, suite) in queue.iter().skip(skip).take(jobs).copied() {
            if self.hinted.insert(*index) {
                let spec = runner::container_spec(suite, ctx, 1);
                let (engine, index) = (engine.clone(), *index);
                self.preparing
                    .spawn(async move { (index, engine.prepare(&spec).await) });
            }
        }
    }

    async fn finish(self) {
        self.preparing.join_all().await;
    }
}

struct Scheduler {
    /// Name and image of each planned suite, for suites that never start.
    names: Vec<(String, String)>,
    /// The services each planned suite needs.
    needs: Vec<Vec<String>>,
    running: JoinSet<(SuiteReport, OwnedSemaphorePermit)>,
    task_index: HashMap<tokio::task::Id, usize>,
    options: ScheduleOptions,
    stop: StopSignal,
    events: EventSender,
}

impl Scheduler {
    fn record(
        &mut self,
        joined: Result<
            (tokio::task::Id, (SuiteReport, OwnedSemaphorePermit)),
            tokio::task::JoinError,
        >,
        services: &mut Services,
    ) {
        let (index, report, permit) = match joined {
            Ok((id, (report, permit))) => (self.task_index[&id], report, Some(permit)),
            Err(e) => {
                let index = self.task_index[&e.id()];
                let (name, image) = &self.names[index];
                let cause = Cause::internal(format!("internal error while running the suite: {e}"));
                let report = SuiteReport::not_run(name, image, Outcome::Error, Some(cause));
                (index, report, None)
            }
        };
        let mut report = report;
        services.suite_done(&self.needs[index], &mut report);
        self.conclude(report);
        drop(permit);
    }

    /// Takes the suites that need a service that failed out of `queue` and reports each as
    /// an error with the service's cause.
    fn fail_unserved(&mut self, queue: &mut VecDeque<(usize, Suite)>, services: &mut Services) {
        queue.retain(|(index, suite)| {
            let Some(cause) = services.blocked(&suite.needs) else {
                return true;
            };
            let report =
                SuiteReport::not_run(&suite.name, &suite.image, Outcome::Error, Some(cause));
            services.release(&self.needs[*index]);
            self.conclude(report);
            false
        });
    }

    /// Sends a finished suite's report, stopping the run first if it fails it (fail-fast).
    fn conclude(&self, report: SuiteReport) {
        if self.options.fail_fast && report.outcome.is_failure() {
            self.stop.stop(StopReason::FailFast {
                after: report.name.clone(),
            });
        }
        self.events.send(EventKind::SuiteFinished(Box::new(report)));
    }

    /// Takes the suites whose image could not be made out of `queue` and reports each as
    /// an error with the image's cause: they need no slot to fail.
    fn fail_unbuilt(
        &mut self,
        queue: &mut VecDeque<(usize, Suite)>,
        builds: &Builds,
        services: &mut Services,
    ) {
        queue.retain(|(index, suite)| {
            let ImageState::Failed(cause) = builds.state(&suite.image) else {
                return true;
            };
            let report =
                SuiteReport::not_run(&suite.name, &suite.image, Outcome::Error, Some(cause));
            services.release(&self.needs[*index]);
            self.conclude(report);
            false
        });
    }

    /// Reports the suites that never got a slot as skipped (fail-fast) or cancelled.
    fn finish_unstarted(self, unstarted: impl Iterator<Item = usize>) {
        let (outcome, cause) = match self.stop.reason() {
            Some(reason @ StopReason::FailFast { .. }) => {
                (Outcome::Skipped, Cause::NotStarted { reason })
            }
            Some(reason @ (StopReason::Interrupted { .. } | StopReason::Cancelled { .. })) => {
                (Outcome::Cancelled, Cause::NotStarted { reason })
            }
            None => (Outcome::Error, Cause::internal("not started")),
        };
        for index in unstarted {
            let (name, image) = &self.names[index];
            let report = SuiteReport::not_run(name, image, outcome, Some(cause.clone()));
            self.events.send(EventKind::SuiteFinished(Box::new(report)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::memory::MemoryEngine;

    fn suite(name: &str, script: &[&str]) -> Suite {
        let mut suite = crate::config::tests_support::suite(name);
        suite.command = Some(script.iter().map(|s| s.to_string()).collect());
        suite.timeout = Duration::from_secs(60);
        suite
    }

    async fn run(
        engine: Arc<MemoryEngine>,
        suites: Vec<Suite>,
        jobs: usize,
        fail_fast: bool,
        stop: StopSignal,
    ) -> Vec<SuiteReport> {
        let options = ScheduleOptions {
            jobs,
            image_jobs: 2,
            fail_fast,
            shared_slots: None,
        };
        run_with(engine, suites, options, stop, Vec::new()).await
    }

    async fn run_with(
        engine: Arc<MemoryEngine>,
        suites: Vec<Suite>,
        options: ScheduleOptions,
        stop: StopSignal,
        subscribers: Vec<Box<dyn crate::event::Subscriber>>,
    ) -> Vec<SuiteReport> {
        run_services(engine, suites, Vec::new(), options, stop, subscribers).await
    }

    async fn run_services(
        engine: Arc<MemoryEngine>,
        suites: Vec<Suite>,
        services: Vec<Service>,
        options: ScheduleOptions,
        stop: StopSignal,
        subscribers: Vec<Box<dyn crate::event::Subscriber>>,
    ) -> Vec<SuiteReport> {
        let jobs = options.jobs;
        let reports_dir = tempfile::tempdir().unwrap().keep();
        let ctx = RunContext {
            run_id: "test".into(),
            target: "/".into(),
            target_volume: None,
            reports_dir,
            suppressions: Default::default(),
            baseline: None,
            placement: Vec::new(),
        };
        let (events, inbox) = crate::event::channel();
        events.send(crate::event::EventKind::RunStarted {
            run_id: "test".into(),
            suites: suites.iter().map(|s| s.name.clone()).collect(),
            jobs,
            invalid_suites: Vec::new(),
            partition: None,
        });
        let mut hub = crate::event::Hub::new(subscribers);
        let schedule = run_with_services(
            engine,
            suites,
            services,
            Arc::new(ctx),
            options,
            stop,
            events,
        );
        tokio::join!(schedule, hub.follow(inbox));
        hub.finish().suites
    }

    /// A service whose script is `script` (see the memory engine), ready within `ready`.
    fn service(name: &str, script: &[&str], ready: u64) -> Service {
        Service {
            name: name.into(),
            description: String::new(),
            image: "img".into(),
            build: None,
            command: (!script.is_empty()).then(|| script.iter().map(|s| s.to_string()).collect()),
            env: Default::default(),
            secret_env: Default::default(),
            port: 8080,
            ready: crate::config::ReadyCheck::Tcp,
            ready_timeout: Duration::from_millis(ready),
            endpoints: vec!["/a?b=c".into()],
            policy: Default::default(),
            tmpfs: Vec::new(),
            source: "services/test.toml".into(),
        }
    }

    fn needing(name: &str, millis: u64, services: &[&str]) -> Suite {
        let mut suite = suite(name, &[&millis.to_string(), "0"]);
        suite.needs = services.iter().map(|s| s.to_string()).collect();
        suite.policy.network = crate::config::NetworkMode::Target;
        suite
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_starts_once_and_its_suites_wait_until_it_is_ready() {
        let engine = Arc::new(MemoryEngine::default());
        let app = service("app", &["86400000", "0", "ready-after:3000"], 10_000);
        let suites = vec![
            needing("a", 1000, &["app"]),
            needing("b", 1000, &["app"]),
            suite("plain", &["1000", "0"]),
        ];
        let (names, subscriber) = event_names();
        let reports = run_services(
            engine.clone(),
            suites,
            vec![app],
            options(3, 1),
            StopSignal::default(),
            vec![subscriber],
        )
        .await;
        assert!(
            reports.iter().all(|r| r.outcome == Outcome::Passed),
            "{reports:?}"
        );
        assert_eq!(engine.services_started(), ["app"]);
        let intervals = engine.intervals();
        let start = |name: &str| intervals.iter().find(|i| i.suite == name).unwrap().start;
        assert_eq!(start("a") - start("plain"), Duration::from_secs(3));
        assert_eq!(start("b"), start("a"));
        assert_eq!(engine.leftover(), 0, "the service was stopped and removed");
        let names = names.lock().unwrap();
        let at = |name: &str| names.iter().position(|n| n == name).unwrap();
        assert!(at("service-ready") < at("suite-finished a"));
        assert!(at("suite-finished b") < at("service-finished"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_suites_get_the_service_in_their_environment() {
        let app = service("notes-db", &[], 1000);
        let suite = needing("a", 10, &["notes-db"]);
        let env: std::collections::BTreeMap<String, String> =
            services::target_env(&suite, &[app]).into_iter().collect();
        assert_eq!(env["PHALANX_TARGET_URL"], "http://notes-db:8080");
        assert_eq!(env["PHALANX_TARGET_HOST"], "notes-db");
        assert_eq!(env["PHALANX_TARGET_PORT"], "8080");
        assert_eq!(
            env["PHALANX_TARGET_ENDPOINTS"],
            "http://notes-db:8080/\nhttp://notes-db:8080/a?b=c"
        );
        assert_eq!(env["PHALANX_SERVICE_NOTES_DB_URL"], "http://notes-db:8080");
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_is_not_ready_or_exits_fails_only_its_suites() {
        let engine = Arc::new(MemoryEngine::default());
        let sleepy = service("sleepy", &["86400000", "0", "ready-after:100000"], 5000);
        let dies = service("dies", &["10", "3", "ready-after:1000"], 5000);
        let suites = vec![
            needing("on-sleepy", 10, &["sleepy"]),
            needing("on-dies", 10, &["dies"]),
            suite("plain", &["10", "0"]),
        ];
        let reports = run_services(
            engine.clone(),
            suites,
            vec![sleepy, dies],
            options(2, 1),
            StopSignal::default(),
            vec![],
        )
        .await;
        assert_eq!(
            outcomes(&reports),
            [
                ("on-sleepy", Outcome::Error),
                ("on-dies", Outcome::Error),
                ("plain", Outcome::Passed)
            ]
        );
        assert!(matches!(
            &reports[0].cause,
            Some(Cause::ServiceNotReady { service, last_failure, .. })
                if service == "sleepy" && last_failure.contains("refused")
        ));
        assert!(matches!(
            &reports[1].cause,
            Some(Cause::ServiceExited { service, exit_code: Some(3), .. }) if service == "dies"
        ));
        let started: Vec<String> = engine.intervals().into_iter().map(|i| i.suite).collect();
        assert_eq!(started, ["plain"]);
        assert_eq!(engine.leftover(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_dies_while_its_suite_runs_makes_that_suite_an_error() {
        let engine = Arc::new(MemoryEngine::default());
        // Ready at once, gone after two seconds; the suite runs for five.
        let brief = service("brief", &["2000", "137"], 1000);
        let reports = run_services(
            engine.clone(),
            vec![needing("long", 5000, &["brief"])],
            vec![brief],
            options(1, 1),
            StopSignal::default(),
            vec![],
        )
        .await;
        assert_eq!(reports[0].outcome, Outcome::Error);
        assert!(matches!(
            &reports[0].cause,
            Some(Cause::ServiceExited {
                exit_code: Some(137),
                ..
            })
        ));
    }

    /// A suite whose image `image` is built from a (pretend) context when missing.
    fn built_suite(name: &str, image: &str, millis: u64) -> Suite {
        let mut suite = suite(name, &[&millis.to_string(), "0"]);
        suite.image = image.into();
        suite.build = Some("/ctx".into());
        suite
    }

    fn options(jobs: usize, image_jobs: usize) -> ScheduleOptions {
        ScheduleOptions {
            jobs,
            image_jobs,
            fail_fast: false,
            shared_slots: None,
        }
    }

    /// A subscriber that keeps each event's name (and image or suite), in order.
    fn event_names() -> (
        Arc<std::sync::Mutex<Vec<String>>>,
        Box<dyn crate::event::Subscriber>,
    ) {
        let names = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = names.clone();
        let subscriber = move |event: &crate::event::Event| {
            let what = match &event.kind {
                EventKind::ImageBuildStarted { image, .. } => image.clone(),
                EventKind::ImageBuildFinished { image, outcome, .. } => {
                    format!("{image} {outcome:?}")
                }
                EventKind::SuiteFinished(report) => report.name.clone(),
                EventKind::ServiceStarted { .. }
                | EventKind::ServiceReady { .. }
                | EventKind::ServiceFinished { .. } => String::new(),
                _ => String::new(),
            };
            kept.lock()
                .unwrap()
                .push(format!("{} {what}", event.kind.name()).trim().to_string());
        };
        (names, Box::new(subscriber))
    }

    fn reason(report: &SuiteReport) -> String {
        report.cause.as_ref().unwrap().to_string()
    }

    fn outcomes(reports: &[SuiteReport]) -> Vec<(&str, Outcome)> {
        reports
            .iter()
            .map(|r| (r.name.as_str(), r.outcome))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn never_runs_more_than_jobs_at_once_and_keeps_plan_order() {
        let engine = Arc::new(MemoryEngine::default());
        let suites = (0..7)
            .map(|i| suite(&format!("s{i}"), &["1000", "0"]))
            .collect();
        let reports = run(engine.clone(), suites, 3, false, StopSignal::default()).await;
        assert_eq!(engine.max_running(), 3);
        let names: Vec<_> = reports.iter().map(|r| r.name.clone()).collect();
        assert_eq!(names, ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]);
        assert!(reports.iter().all(|r| r.outcome == Outcome::Passed));
        assert_eq!(engine.leftover(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn builds_run_at_image_jobs_whatever_the_slots() {
        for (jobs, image_jobs) in [(1, 3), (4, 2)] {
            let engine = Arc::new(MemoryEngine::default());
            let suites = (0..6)
                .map(|i| {
                    engine.needs_build(&format!("img{i}"), 1000, false);
                    built_suite(&format!("s{i}"), &format!("img{i}"), 10)
                })
                .collect();
            let options = options(jobs, image_jobs);
            let reports = run_with(
                engine.clone(),
                suites,
                options,
                StopSignal::default(),
                vec![],
            )
            .await;
            assert_eq!(engine.max_running_builds(), image_jobs as u32, "-j {jobs}");
            assert!(reports.iter().all(|r| r.outcome == Outcome::Passed));
            assert!((0..6).all(|i| engine.builds_of(&format!("img{i}")) == 1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn builds_start_in_plan_order_however_long_the_lookups_take() {
        let engine = Arc::new(MemoryEngine::default());
        let suites = ["a", "b", "c"]
            .iter()
            .zip([30, 10, 0])
            .map(|(name, inspect)| {
                engine.needs_build(&format!("img-{name}"), 100, false);
                engine.inspect_takes(&format!("img-{name}"), inspect);
                built_suite(name, &format!("img-{name}"), 10)
            })
            .collect();
        let (names, subscriber) = event_names();
        run_with(
            engine,
            suites,
            options(1, 1),
            StopSignal::default(),
            vec![subscriber],
        )
        .await;
        let started: Vec<String> = names
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n.starts_with("image-build-started"))
            .cloned()
            .collect();
        assert_eq!(
            started,
            [
                "image-build-started img-a",
                "image-build-started img-b",
                "image-build-started img-c"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_free_slot_goes_to_a_suite_whose_image_is_ready() {
        let engine = Arc::new(MemoryEngine::default());
        engine.needs_build("slow-image", 5000, false);
        let suites = vec![
            built_suite("waits", "slow-image", 1000),
            suite("quick1", &["1000", "0"]),
            suite("quick2", &["1000", "0"]),
        ];
        let reports = run(engine.clone(), suites, 1, false, StopSignal::default()).await;
        assert!(reports.iter().all(|r| r.outcome == Outcome::Passed));
        let intervals = engine.intervals();
        let order: Vec<&str> = intervals.iter().map(|i| i.suite.as_str()).collect();
        assert_eq!(order, ["quick1", "quick2", "waits"]);
        // The quick suites ran during the build, not after it.
        assert!(intervals[1].end <= intervals[2].start);
        assert_eq!(
            intervals[2].start - intervals[0].start,
            Duration::from_secs(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_build_fails_its_suites_once_without_a_slot() {
        let engine = Arc::new(MemoryEngine::default());
        engine.needs_build("broken", 100, true);
        let suites = vec![
            built_suite("a", "broken", 10),
            built_suite("b", "broken", 10),
            suite("c", &["1000", "0"]),
        ];
        let (names, subscriber) = event_names();
        let reports = run_with(
            engine.clone(),
            suites,
            options(1, 2),
            StopSignal::default(),
            vec![subscriber],
        )
        .await;
        assert_eq!(
            outcomes(&reports),
            [
                ("a", Outcome::Error),
                ("b", Outcome::Error),
                ("c", Outcome::Passed)
            ]
        );
        for report in &reports[..2] {
            assert!(matches!(
                &report.cause,
                Some(Cause::ImageBuildFailed { image, .. }) if image == "broken"
            ));
        }
        assert_eq!(engine.builds_of("broken"), 1);
        let started: Vec<String> = engine.intervals().into_iter().map(|i| i.suite).collect();
        assert_eq!(started, ["c"]);
        let names = names.lock().unwrap();
        let at = |name: &str| names.iter().position(|n| n == name).unwrap();
        assert!(at("image-build-started broken") < at("image-build-finished broken Failed"));
        assert!(at("image-build-finished broken Failed") < at("suite-finished a"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupt_cancels_a_build_and_its_suites() {
        let engine = Arc::new(MemoryEngine::default());
        engine.needs_build("slow-image", 100_000, false);
        let stop = StopSignal::default();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopper.stop(StopReason::Interrupted {
                signal: crate::stop::Signal::Interrupt,
            });
        });
        let (names, subscriber) = event_names();
        let suites = vec![built_suite("waits", "slow-image", 10)];
        let reports = run_with(engine, suites, options(2, 2), stop, vec![subscriber]).await;
        assert_eq!(outcomes(&reports), [("waits", Outcome::Cancelled)]);
        let names = names.lock().unwrap();
        assert!(names.contains(&"image-build-finished slow-image Cancelled".to_string()));
    }

    #[tokio::test(start_paused = true)]
    async fn queued_suites_are_prepared_once_each_in_order() {
        let engine = Arc::new(MemoryEngine::default());
        let suites = (0..6)
            .map(|i| suite(&format!("s{i}"), &["1000", "0"]))
            .collect();
        run(engine.clone(), suites, 2, false, StopSignal::default()).await;
        // Not s0 and s1: they got their slots at once.
        let names: Vec<String> = (2..6).map(|i| format!("phalanx-test-s{i}-1")).collect();
        assert_eq!(engine.prepared(), names);
    }

    #[tokio::test(start_paused = true)]
    async fn a_heavy_suite_takes_several_slots() {
        let engine = Arc::new(MemoryEngine::default());
        let mut heavy = suite("heavy", &["1000", "0"]);
        heavy.weight = 4;
        let suites = vec![
            suite("a", &["1000", "0"]),
            heavy,
            suite("b", &["1000", "0"]),
        ];
        run(engine.clone(), suites, 4, false, StopSignal::default()).await;
        let intervals = engine.intervals();
        let heavy = intervals.iter().find(|i| i.suite == "heavy").unwrap();
        for other in intervals.iter().filter(|i| i.suite != "heavy") {
            let overlaps = other.start < heavy.end && heavy.start < other.end;
            assert!(!overlaps, "{} overlapped the heavy suite", other.suite);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_follow_exit_codes_and_missing_images() {
        let engine = Arc::new(MemoryEngine::default());
        let mut missing = suite("missing", &["10", "0"]);
        missing.image = "missing".into();
        let mut allowed = suite("allowed", &["10", "1"]);
        allowed.results.ok_exit_codes = vec![0, 1];
        let mut slow = suite("slow", &["100000", "0"]);
        slow.timeout = Duration::from_secs(5);
        let suites = vec![
            suite("ok", &["10", "0"]),
            suite("bad", &["10", "3"]),
            allowed,
            missing,
            slow,
        ];
        let reports = run(engine, suites, 2, false, StopSignal::default()).await;
        assert_eq!(
            outcomes(&reports),
            [
                ("ok", Outcome::Passed),
                ("bad", Outcome::Failed),
                ("allowed", Outcome::Passed),
                ("missing", Outcome::Error),
                ("slow", Outcome::TimedOut),
            ]
        );
        assert!(reason(&reports[1]).contains("exit code 3"));
        assert!(matches!(
            reports[3].cause,
            Some(Cause::ImageMissing { ref image }) if image == "missing"
        ));
        assert!(reason(&reports[3]).contains("`missing`"));
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_memory_is_an_error_with_that_reason() {
        let engine = Arc::new(MemoryEngine::default());
        let reports = run(
            engine,
            vec![suite("hog", &["10", "137", "oom"])],
            1,
            false,
            StopSignal::default(),
        )
        .await;
        assert_eq!(reports[0].outcome, Outcome::Error);
        assert!(matches!(
            reports[0].cause,
            Some(Cause::OutOfMemory { exit_code: 137, .. })
        ));
        assert!(reason(&reports[0]).contains("out of memory"));
    }

    #[tokio::test(start_paused = true)]
    async fn fail_fast_skips_the_rest() {
        let engine = Arc::new(MemoryEngine::default());
        let suites = vec![
            suite("fails", &["10", "1"]),
            suite("running", &["100000", "0"]),
            suite("queued", &["10", "0"]),
        ];
        let reports = run(engine.clone(), suites, 2, true, StopSignal::default()).await;
        assert_eq!(
            outcomes(&reports),
            [
                ("fails", Outcome::Failed),
                ("running", Outcome::Skipped),
                ("queued", Outcome::Skipped)
            ]
        );
        assert_eq!(engine.leftover(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failure_with_fail_fast_nothing_more_starts() {
        let engine = Arc::new(MemoryEngine::default());
        let suites = vec![
            suite("fails", &["10", "1"]),
            suite("next", &["10", "0"]),
            suite("later", &["10", "0"]),
        ];
        let reports = run(engine.clone(), suites, 1, true, StopSignal::default()).await;
        let started: Vec<String> = engine.intervals().into_iter().map(|i| i.suite).collect();
        assert_eq!(started, ["fails"]);
        assert_eq!(reports[1].outcome, Outcome::Skipped);
        assert_eq!(reports[2].outcome, Outcome::Skipped);
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupt_cancels_running_and_queued_suites() {
        let engine = Arc::new(MemoryEngine::default());
        let stop = StopSignal::default();
        let suites = vec![
            suite("quick", &["10", "0"]),
            suite("long", &["100000", "0"]),
            suite("long2", &["100000", "0"]),
            suite("queued", &["10", "0"]),
        ];
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopper.stop(StopReason::Interrupted {
                signal: crate::stop::Signal::Interrupt,
            });
        });
        let reports = run(engine.clone(), suites, 2, false, stop).await;
        assert_eq!(
            outcomes(&reports),
            [
                ("quick", Outcome::Passed),
                ("long", Outcome::Cancelled),
                ("long2", Outcome::Cancelled),
                ("queued", Outcome::Cancelled),
            ]
        );
        assert_eq!(engine.leftover(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_after_infrastructure_errors() {
        let engine = Arc::new(MemoryEngine::default());
        let mut flaky = suite("flaky", &["10", "0", "fail-create:1"]);
        flaky.retries = 2;
        let mut failing = suite("failing", &["10", "1"]);
        failing.retries = 2;
        let mut broken = suite("broken", &["10", "0", "fail-create:5"]);
        broken.retries = 1;
        let reports = run(
            engine,
            vec![flaky, failing, broken],
            1,
            false,
            StopSignal::default(),
        )
        .await;
        assert_eq!(
            outcomes(&reports),
            [
                ("flaky", Outcome::Passed),
                ("failing", Outcome::Failed),
                ("broken", Outcome::Error)
            ]
        );
        let attempts: Vec<u32> = reports.iter().map(|r| r.attempts).collect();
        assert_eq!(attempts, [2, 1, 2]);
    }
}
