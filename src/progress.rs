//! Live progress on stderr, driven by the run's [`Event`] stream.
//!
//! - `Bar`: an indicatif overall bar plus one spinner per running suite (at most
//!   [`MAX_SPINNERS`]; more than the terminal has rows makes indicatif flicker and repeat
//!   lines), with each finished suite printed above the bars as a plain line.
//! - `Plain`: one line per event, for CI logs: `[ 3/12] PASS     bandit  4.2s`.
//! - `None`: nothing.
//!
//! Writing progress must never take the run down: output errors (a closed pipe, a full
//! disk) are ignored, and nothing here panics on them.

use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cause::Cause;
use crate::event::{BuildOutcome, Event, EventKind};
use crate::outcome::{Outcome, SuiteReport};
use crate::report::summary::{LABEL_WIDTH, short_reason, suite_duration};

/// Running suites shown as spinners; the others are counted in the overall bar's message.
pub const MAX_SPINNERS: usize = 8;

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars on an interactive terminal, plain lines otherwise (or when `CI` is set).
    #[default]
    Auto,
    Bar,
    /// One line per event. `counter` is accepted too, as nextest spells it.
    #[value(alias = "counter")]
    Plain,
    None,
}

impl ProgressMode {
    /// What `Auto` means here and now. Bars need a terminal on stderr; CI runners that
    /// provide a pty still get plain lines, because their logs keep every redraw.
    pub fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto if stderr_is_interactive() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Plain,
            other => other,
        }
    }
}

fn stderr_is_interactive() -> bool {
    io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// The progress display. `handle` is called for every event, sequentially, from one task.
pub struct Progress {
    display: Display,
}

enum Display {
    Silent,
    Plain(Mutex<Plain>),
    Bar(Bars),
}

impl Progress {
    pub fn new(mode: ProgressMode, total: usize) -> Self {
        let display = match mode.resolve() {
            ProgressMode::None => Display::Silent,
            ProgressMode::Bar => match Bars::new(ProgressDrawTarget::stderr(), total) {
                Some(bars) => Display::Bar(bars),
                // No drawable terminal (TERM=dumb, or stderr redirected despite `bar`):
                // lines are still better than silence.
                None => Display::Plain(Mutex::new(Plain::new(total, Box::new(io::stderr())))),
            },
            _ => Display::Plain(Mutex::new(Plain::new(total, Box::new(io::stderr())))),
        };
        Progress { display }
    }

    /// Plain lines to any writer (tests, or a log file).
    pub fn plain_to(total: usize, out: Box<dyn Write + Send>) -> Self {
        Progress {
            display: Display::Plain(Mutex::new(Plain::new(total, out))),
        }
    }

    /// Shows `event`; the run's last event clears the bars, so that whatever is printed
    /// after the run (warnings, the summary) is not drawn over.
    pub fn handle(&self, event: &Event) {
        match &self.display {
            Display::Silent => {}
            Display::Plain(plain) => lock(plain).handle(event),
            Display::Bar(bars) => bars.handle(event),
        }
        if matches!(event.kind, EventKind::RunFinished { .. }) {
            self.finish();
        }
    }

    /// Clears the bars (the summary follows) and flushes plain output.
    pub fn finish(&self) {
        match &self.display {
            Display::Silent => {}
            Display::Plain(plain) => {
                let _ = lock(plain).out.flush();
            }
            Display::Bar(bars) => bars.finish(),
        }
    }
}

/// A poisoned lock only means an earlier call panicked mid-update; the counters are still
/// usable for display, so carry on rather than panic again.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts finished suites and formats the `[ 3/12]` prefix.
#[derive(Debug, Clone, Copy)]
struct Counter {
    done: usize,
    total: usize,
}

impl Counter {
    /// `[ 3/12]` for a finished suite, `[  /12]` for anything else, same width.
    fn prefix(&self, finished: bool) -> String {
        let total = self.total.max(self.done);
        let width = total.to_string().len();
        let done = if finished {
            self.done.to_string()
        } else {
            String::new()
        };
        format!("[{done:>width$}/{total}]")
    }
}

/// The line an event prints, if any. The counter must already count a finished suite.
fn event_line(event: &Event, counter: Counter) -> Option<String> {
    let line = |word: &str, rest: String| {
        let text = format!("{} {word:<LABEL_WIDTH$} {rest}", counter.prefix(false));
        text.trim_end().to_string()
    };
    match &event.kind {
        EventKind::RunStarted {
            run_id,
            suites,
            jobs,
            ..
        } => Some(format!(
            "phalanx: running {} suite{} with {jobs} job slot{} (run {run_id})",
            suites.len(),
            plural(suites.len()),
            plural(*jobs)
        )),
        EventKind::ImageBuildStarted { image, suites } => {
            Some(line("IMAGE", format!("{image}  {}", building_text(suites))))
        }
        EventKind::ImageBuildFinished {
            image,
            outcome,
            duration,
            cause,
            ..
        } => Some(line(
            "IMAGE",
            format!(
                "{image}  {}",
                build_end_text(*outcome, *duration, cause.as_ref())
            ),
        )),
        EventKind::SuiteStarted { name, attempt } if *attempt > 1 => {
            Some(line("START", format!("{name}  attempt {attempt}")))
        }
        EventKind::SuiteStarted { name, .. } => Some(line("START", name.clone())),
        EventKind::SuiteRetrying {
            name,
            attempt,
            cause,
        } => Some(line(
            "RETRY",
            format!("{name}  {}", retry_text(*attempt, cause)),
        )),
        EventKind::SuiteFinished(report) => Some(finished_line(report, counter)),
        EventKind::ServiceStarted { name, image, .. } => {
            Some(line("SERVICE", format!("{name}  started ({image})")))
        }
        EventKind::ServiceReady { name, after } => Some(line(
            "SERVICE",
            format!("{name}  ready after {:.1}s", after.as_secs_f64()),
        )),
        EventKind::ServiceFinished { name, cause, .. } => Some(line(
            "SERVICE",
            match cause {
                None => format!("{name}  stopped"),
                Some(cause) => format!("{name}  failed: {}", one_line(&cause.to_string())),
            },
        )),
        EventKind::Stopping { reason } => Some(line("STOPPING", one_line(&reason.to_string()))),
        // The summary table that follows says it all.
        EventKind::RunFinished { .. } => None,
    }
}

/// `[ 3/12] FAIL     semgrep  12.0s  exit code 2 not in [0, 1]`
fn finished_line(report: &SuiteReport, counter: Counter) -> String {
    let mut text = format!(
        "{} {:<LABEL_WIDTH$} {}  {}",
        counter.prefix(true),
        report.outcome.label(),
        report.name,
        suite_duration(report)
    );
    if report.outcome != Outcome::Passed {
        let reason = short_reason(report);
        if !reason.is_empty() {
            text.push_str("  ");
            text.push_str(&reason);
        }
    }
    text
}

/// `building for bandit, bandit-strict`
fn building_text(suites: &[String]) -> String {
    format!("building for {}", suites.join(", "))
}

/// `built in 34.2s`, `build failed after 3.1s: …`
fn build_end_text(outcome: BuildOutcome, took: Duration, cause: Option<&Cause>) -> String {
    let took = format!("{:.1}s", took.as_secs_f64());
    match (outcome, cause) {
        (BuildOutcome::Built, _) => format!("built in {took}"),
        (BuildOutcome::Failed, Some(cause)) => {
            format!(
                "build failed after {took}: {}",
                one_line(&cause.to_string())
            )
        }
        (BuildOutcome::Failed, None) => format!("build failed after {took}"),
        (BuildOutcome::Cancelled, _) => format!("build cancelled after {took}"),
    }
}

/// `attempt` is the attempt that just ended; the event promises another one.
fn retry_text(attempt: u32, cause: &Cause) -> String {
    format!(
        "attempt {attempt} failed, retrying: {}",
        one_line(&cause.to_string())
    )
}

fn one_line(s: &str) -> String {
    crate::report::one_line(s, 120)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

struct Plain {
    counter: Counter,
    out: Box<dyn Write + Send>,
}

impl Plain {
    fn new(total: usize, out: Box<dyn Write + Send>) -> Self {
        Plain {
            counter: Counter { done: 0, total },
            out,
        }
    }

    fn handle(&mut self, event: &Event) {
        self.counter.observe(event);
        if let Some(line) = event_line(event, self.counter) {
            // Ignored on purpose: progress is best effort (see the module docs).
            let _ = writeln!(self.out, "{line}");
        }
    }
}

impl Counter {
    fn observe(&mut self, event: &Event) {
        match &event.kind {
            EventKind::RunStarted { suites, .. } => self.total = suites.len(),
            EventKind::SuiteFinished(_) => self.done += 1,
            _ => {}
        }
    }
}

struct Bars {
    mp: MultiProgress,
    overall: ProgressBar,
    state: Mutex<BarState>,
}

struct BarState {
    counter: Counter,
    /// Running suites in start order; the first [`MAX_SPINNERS`] have a spinner.
    running: Vec<Running>,
}

struct Running {
    name: String,
    started: Instant,
    message: String,
    spinner: Option<ProgressBar>,
}

impl Bars {
    /// `None` when the target cannot draw, so the caller can fall back to plain lines
    /// (indicatif hides itself on a non-terminal or `TERM=dumb`, and then `println` is a
    /// no-op: finished suites would vanish).
    fn new(target: ProgressDrawTarget, total: usize) -> Option<Self> {
        let mp = MultiProgress::with_draw_target(target);
        if mp.is_hidden() {
            return None;
        }
        Some(Self::with(mp, total))
    }

    fn with(mp: MultiProgress, total: usize) -> Self {
        let overall = mp.add(ProgressBar::new(total as u64));
        overall.set_style(style(
            "{elapsed_precise:.dim} [{bar:30.cyan/blue}] {pos}/{len} {msg}",
            ProgressStyle::default_bar,
        ));
        overall.enable_steady_tick(Duration::from_millis(200));
        let state = BarState {
            counter: Counter { done: 0, total },
            running: Vec::new(),
        };
        Bars {
            mp,
            overall,
            state: Mutex::new(state),
        }
    }

    fn handle(&self, event: &Event) {
        let mut state = lock(&self.state);
        state.counter.observe(event);
        let counter = state.counter;
        match &event.kind {
            EventKind::RunStarted { suites, .. } => self.overall.set_length(suites.len() as u64),
            // A build gets a row of its own while it runs, named by its image.
            EventKind::ImageBuildStarted { image, suites } => {
                state.start(image, building_text(suites));
            }
            EventKind::ImageBuildFinished { image, .. } => {
                state.finish(image, &self.mp);
                self.print(event, counter);
            }
            EventKind::SuiteStarted { name, attempt } => {
                let msg = if *attempt > 1 {
                    format!("attempt {attempt}")
                } else {
                    String::new()
                };
                state.start(name, msg);
            }
            EventKind::SuiteRetrying {
                name,
                attempt,
                cause,
            } => {
                self.print(event, counter);
                state.set_message(name, retry_text(*attempt, cause));
            }
            EventKind::SuiteFinished(report) => {
                state.finish(&report.name, &self.mp);
                self.print(event, counter);
                self.overall.inc(1);
            }
            EventKind::ServiceStarted { .. }
            | EventKind::ServiceReady { .. }
            | EventKind::ServiceFinished { .. }
            | EventKind::Stopping { .. } => self.print(event, counter),
            EventKind::RunFinished { .. } => {}
        }
        self.refresh(&mut state);
    }

    /// A plain line above the bars. `suspend` (not `println`) because it always runs.
    fn print(&self, event: &Event, counter: Counter) {
        if let Some(line) = event_line(event, counter) {
            self.mp.suspend(|| {
                let _ = writeln!(io::stderr(), "{line}");
            });
        }
    }

    /// Gives the oldest running suites spinners, and counts the rest in the overall bar.
    fn refresh(&self, state: &mut BarState) {
        for running in state.running.iter_mut().take(MAX_SPINNERS) {
            if running.spinner.is_none() {
                running.spinner = Some(self.spinner(running));
            }
        }
        let hidden = state.running.len().saturating_sub(MAX_SPINNERS);
        self.overall.set_message(if hidden > 0 {
            format!("(+{hidden} more running)")
        } else {
            String::new()
        });
    }

    fn spinner(&self, running: &Running) -> ProgressBar {
        // `with_elapsed` so a suite promoted from the hidden list shows its true age.
        let pb = ProgressBar::new_spinner().with_elapsed(running.started.elapsed());
        let pb = self.mp.insert_before(&self.overall, pb);
        pb.set_style(style(
            "{spinner:.green} {prefix:<24} {elapsed:>4} {wide_msg}",
            ProgressStyle::default_spinner,
        ));
        pb.set_prefix(running.name.clone());
        pb.set_message(running.message.clone());
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    }

    fn finish(&self) {
        let mut state = lock(&self.state);
        for running in state.running.drain(..) {
            if let Some(pb) = running.spinner {
                pb.finish_and_clear();
                self.mp.remove(&pb);
            }
        }
        self.overall.finish_and_clear();
        let _ = self.mp.clear();
    }
}

impl BarState {
    /// A retried suite starts again under the same name: reuse its row.
    fn start(&mut self, name: &str, message: String) {
        match self.running.iter_mut().find(|r| r.name == name) {
            Some(r) => r.set_message(message),
            None => self.running.push(Running {
                name: name.to_string(),
                started: Instant::now(),
                message,
                spinner: None,
            }),
        }
    }

    fn set_message(&mut self, name: &str, message: String) {
        if let Some(r) = self.running.iter_mut().find(|r| r.name == name) {
            r.set_message(message);
        }
    }

    fn finish(&mut self, name: &str, mp: &MultiProgress) {
        let Some(i) = self.running.iter().position(|r| r.name == name) else {
            return;
        };
        if let Some(pb) = self.running.remove(i).spinner {
            pb.finish_and_clear();
            mp.remove(&pb);
        }
    }

    #[cfg(test)]
    fn spinner_names(&self) -> Vec<&str> {
        let with_spinner = self.running.iter().filter(|r| r.spinner.is_some());
        with_spinner.map(|r| r.name.as_str()).collect()
    }
}

impl Running {
    fn set_message(&mut self, message: String) {
        if let Some(pb) = &self.spinner {
            pb.set_message(message.clone());
        }
        self.message = message;
    }
}

/// Templates are constants, so this cannot fail in practice; fall back to a default style
/// rather than panic if one is ever mistyped.
fn style(template: &str, fallback: fn() -> ProgressStyle) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| fallback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back after `Progress` took ownership of it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

    fn event(kind: EventKind) -> Event {
        Event {
            seq: 1,
            at: chrono::Utc::now(),
            kind,
        }
    }

    fn finished(name: &str, outcome: Outcome, secs: u64, cause: Option<Cause>) -> Event {
        let mut r = SuiteReport::not_run(name, "img", outcome, cause);
        r.started_at = Some(chrono::Utc::now());
        r.duration = Duration::from_millis(secs * 100);
        event(EventKind::SuiteFinished(Box::new(r)))
    }

    fn started(name: &str) -> Event {
        event(EventKind::SuiteStarted {
            name: name.into(),
            attempt: 1,
        })
    }

    #[test]
    fn plain_lines_are_aligned_and_counted() {
        let out = Shared::default();
        let p = Progress::plain_to(12, Box::new(out.clone()));
        let fail_fast = crate::stop::StopReason::FailFast {
            after: "semgrep".into(),
        };
        let events = [
            event(EventKind::RunStarted {
                run_id: "r-1".into(),
                suites: (0..12).map(|i| format!("s{i}")).collect(),
                jobs: 4,
                invalid_suites: Vec::new(),
                partition: None,
            }),
            started("bandit"),
            event(EventKind::SuiteRetrying {
                name: "bandit".into(),
                attempt: 1,
                cause: crate::engine::EngineError::api("create", "\nconflict").into(),
            }),
            event(EventKind::SuiteStarted {
                name: "bandit".into(),
                attempt: 2,
            }),
            finished("bandit", Outcome::Passed, 42, None),
            finished(
                "semgrep",
                Outcome::Failed,
                120,
                Some(Cause::ExitCode {
                    code: 2,
                    expected: vec![0],
                }),
            ),
            finished(
                "trivy",
                Outcome::Skipped,
                0,
                Some(Cause::NotStarted {
                    reason: fail_fast.clone(),
                }),
            ),
            event(EventKind::Stopping { reason: fail_fast }),
            event(EventKind::RunFinished {
                exit_code: 1,
                counts: Default::default(),
                interrupted: None,
            }),
        ];
        for e in &events {
            p.handle(e);
        }
        p.finish();
        let expected = "\
phalanx: running 12 suites with 4 job slots (run r-1)
[  /12] START    bandit
[  /12] RETRY    bandit  attempt 1 failed, retrying: Docker create failed: conflict
[  /12] START    bandit  attempt 2
[ 1/12] PASS     bandit  4.2s
[ 2/12] FAIL     semgrep  12.0s  exit code 2 (expected 0)
[ 3/12] SKIP     trivy  0.0s  not started: --fail-fast stopped the run after `semgrep` failed
[  /12] STOPPING --fail-fast: `semgrep` failed
";
        assert_eq!(out.text(), expected);
    }

    #[test]
    fn builds_show_their_image_suites_and_ending() {
        let out = Shared::default();
        let p = Progress::plain_to(2, Box::new(out.clone()));
        let suites = vec!["bandit".to_string(), "bandit-strict".to_string()];
        let failed = Cause::ImageBuildFailed {
            image: "phalanx/semgrep:2".into(),
            message: "pip failed".into(),
            log: "reports/logs/semgrep.build.log".into(),
        };
        let finished = |image: &str, outcome, cause| {
            event(EventKind::ImageBuildFinished {
                image: image.into(),
                suites: suites.clone(),
                outcome,
                duration: Duration::from_millis(34_250),
                cause,
            })
        };
        p.handle(&event(EventKind::ImageBuildStarted {
            image: "phalanx/bandit:1".into(),
            suites: suites.clone(),
        }));
        p.handle(&finished("phalanx/bandit:1", BuildOutcome::Built, None));
        p.handle(&finished(
            "phalanx/semgrep:2",
            BuildOutcome::Failed,
            Some(failed),
        ));
        let expected = "\
[ /2] IMAGE    phalanx/bandit:1  building for bandit, bandit-strict
[ /2] IMAGE    phalanx/bandit:1  built in 34.2s
[ /2] IMAGE    phalanx/semgrep:2  build failed after 34.2s: building image `phalanx/semgrep:2` failed: pip failed (build log: reports/logs/semgrep.build.log)
";
        assert_eq!(out.text(), expected);
    }

    #[test]
    fn never_started_suites_show_no_duration() {
        let interrupted = Cause::NotStarted {
            reason: crate::stop::StopReason::Interrupted {
                signal: crate::stop::Signal::Interrupt,
            },
        };
        let r = SuiteReport::not_run("gitleaks", "img", Outcome::Cancelled, Some(interrupted));
        let line = finished_line(&r, Counter { done: 5, total: 5 });
        assert_eq!(
            line,
            "[5/5] CANCEL   gitleaks  -  not started: the run was interrupted by SIGINT"
        );
    }

    #[test]
    fn counter_never_shows_more_done_than_total() {
        let c = Counter {
            done: 13,
            total: 12,
        };
        assert_eq!(c.prefix(true), "[13/13]");
    }

    #[test]
    fn none_mode_is_silent_and_plain_survives_broken_writers() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        let p = Progress::new(ProgressMode::None, 1);
        p.handle(&started("a"));
        p.finish();
        let p = Progress::plain_to(1, Box::new(Broken));
        p.handle(&started("a"));
        p.handle(&finished("a", Outcome::Passed, 1, None));
        p.finish();
    }

    #[test]
    fn bars_show_at_most_eight_spinners_and_count_the_rest() {
        let bars = Bars::with(
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            10,
        );
        for i in 0..10 {
            bars.handle(&started(&format!("s{i}")));
        }
        {
            let state = lock(&bars.state);
            assert_eq!(state.spinner_names().len(), MAX_SPINNERS);
        }
        assert_eq!(bars.overall.message(), "(+2 more running)");
        bars.handle(&finished("s0", Outcome::Passed, 1, None));
        {
            let state = lock(&bars.state);
            let names = state.spinner_names();
            assert_eq!(names.len(), MAX_SPINNERS);
            assert!(names.contains(&"s8") && !names.contains(&"s0"), "{names:?}");
        }
        assert_eq!(bars.overall.message(), "(+1 more running)");
        assert_eq!(bars.overall.position(), 1);
        bars.finish();
        assert!(lock(&bars.state).running.is_empty());
    }

    #[test]
    fn bar_mode_without_a_terminal_falls_back() {
        assert!(Bars::new(ProgressDrawTarget::hidden(), 1).is_none());
    }

    #[test]
    fn progress_can_move_into_a_task() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Progress>();
    }

    #[test]
    fn explicit_modes_resolve_to_themselves() {
        for m in [ProgressMode::Bar, ProgressMode::Plain, ProgressMode::None] {
            assert_eq!(m.resolve(), m);
        }
    }

    #[test]
    fn mode_parses_from_the_command_line() {
        use clap::ValueEnum;
        assert_eq!(
            ProgressMode::from_str("counter", true),
            Ok(ProgressMode::Plain)
        );
        assert_eq!(ProgressMode::from_str("bar", true), Ok(ProgressMode::Bar));
    }
}
