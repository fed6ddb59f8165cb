//! The image build phase: as soon as a run (or `phalanx images`) knows its suites, every
//! distinct image is looked up on the engine and the missing ones are built, at most
//! `image_jobs` at a time and independently of the suites' job slots. Builds wait on the
//! network and the disk far more than on the CPU, so rationing them by `-j` only left
//! slots idle while suites waited for their images.
//!
//! The scheduler reads each image's [`ImageState`] to start first the suites whose images
//! are ready; a failed build fails its suites once, with the build's cause, and is never
//! tried again in the same run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
// tokio's clock, so build durations follow paused time in tests.
use tokio::time::Instant;

use crate::cause::Cause;
use crate::config::Suite;
use crate::engine::{Engine, EngineError};
use crate::event::{BuildOutcome, EventKind, EventSender};
use crate::images::{self, ImageJob};
use crate::stop::StopSignal;

/// Image builds at once when neither `--image-jobs` nor `image_jobs` says: builds are
/// network- and disk-bound, and the engine takes several without slowing each much (see
/// README "Images").
pub const DEFAULT_IMAGE_JOBS: usize = 4;

/// Where one image stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageState {
    /// Being looked up, or waiting for or in its build.
    Pending,
    /// It was on the engine already.
    Present,
    Built {
        took: Duration,
    },
    /// The engine could not say whether it exists (an API hiccup): the suite's own attempt
    /// asks again, and may be retried.
    Unknown,
    /// The suites that need it end as errors with this cause.
    Failed(Cause),
    /// The run stopped before it was made.
    Cancelled,
}

impl ImageState {
    /// Whether its suites may take a slot now.
    pub fn is_ready(&self) -> bool {
        matches!(
            self,
            ImageState::Present | ImageState::Built { .. } | ImageState::Unknown
        )
    }
}

/// The images of one run, settling in the background.
pub struct Builds {
    board: watch::Receiver<HashMap<String, ImageState>>,
    tasks: JoinSet<()>,
}

/// What a build task needs besides its job.
struct Shared<E> {
    engine: Arc<E>,
    permits: Arc<Semaphore>,
    stop: StopSignal,
    events: EventSender,
    board: watch::Sender<HashMap<String, ImageState>>,
}

impl Builds {
    /// Looks up the image of every suite in `suites` and starts building the missing ones
    /// (in the order their suites come), `image_jobs` at a time. Build logs go to
    /// `<reports_dir>/logs/<first suite>.build.log`.
    pub fn start<E: Engine>(
        engine: Arc<E>,
        suites: &[Suite],
        reports_dir: &Path,
        image_jobs: usize,
        stop: StopSignal,
        events: EventSender,
    ) -> Builds {
        Builds::start_jobs(
            engine,
            images::jobs(suites),
            reports_dir,
            image_jobs,
            stop,
            events,
        )
    }

    /// [`Builds::start`] for images already grouped (`phalanx images`).
    pub fn start_jobs<E: Engine>(
        engine: Arc<E>,
        jobs: Vec<ImageJob>,
        reports_dir: &Path,
        image_jobs: usize,
        stop: StopSignal,
        events: EventSender,
    ) -> Builds {
        let pending = jobs
            .iter()
            .map(|j| (j.image.clone(), ImageState::Pending))
            .collect();
        let (board, watching) = watch::channel(pending);
        let shared = Arc::new(Shared {
            engine,
            permits: Arc::new(Semaphore::new(image_jobs.max(1))),
            stop,
            events,
            board,
        });
        let mut tasks = JoinSet::new();
        let reports_dir = reports_dir.to_path_buf();
        tasks.spawn(async move { coordinate(shared, jobs, &reports_dir).await });
        Builds {
            board: watching,
            tasks,
        }
    }

    /// Where `image` stands; an image this phase was not given is left to the suites.
    pub fn state(&self, image: &str) -> ImageState {
        let board = self.board.borrow();
        board.get(image).cloned().unwrap_or(ImageState::Unknown)
    }

    /// A receiver of every image's state, for those who wait on images outside the
    /// scheduler's loop (services).
    pub fn watch(&self) -> watch::Receiver<HashMap<String, ImageState>> {
        self.board.clone()
    }

    /// Marks the current states as seen: [`Builds::changed`] then waits for a newer one.
    pub fn mark_seen(&mut self) {
        self.board.borrow_and_update();
    }

    /// Waits until some image's state changes after [`Builds::mark_seen`]; never returns
    /// once every image has settled.
    pub async fn changed(&mut self) {
        if self.board.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits for every image to settle (a stopped run cancels what is left) and returns
    /// each one's state.
    pub async fn finish(mut self) -> HashMap<String, ImageState> {
        while self.tasks.join_next().await.is_some() {}
        self.board.borrow().clone()
    }
}

impl<E> Shared<E> {
    fn settled(&self, image: &str, state: ImageState) {
        self.board.send_modify(|board| {
            board.insert(image.to_string(), state);
        });
    }
}

/// Looks every image up at once, then starts the builds in the order of `jobs` (the order
/// their suites run in), so the first free build permit goes to the first suite's image.
async fn coordinate<E: Engine>(shared: Arc<Shared<E>>, jobs: Vec<ImageJob>, reports_dir: &Path) {
    let lookups = jobs
        .iter()
        .map(|job| shared.engine.image_exists(&job.image));
    let found = futures::future::join_all(lookups).await;
    let mut missing = Vec::new();
    for (job, found) in jobs.into_iter().zip(found) {
        let state = match (found, &job.context) {
            (Ok(true), _) => ImageState::Present,
            (Err(_), _) => ImageState::Unknown,
            (Ok(false), Some(_)) => {
                missing.push(job);
                continue;
            }
            (Ok(false), None) => ImageState::Failed(Cause::from(EngineError::ImageMissing {
                image: job.image.clone(),
            })),
        };
        shared.settled(&job.image, state);
    }
    let mut building = JoinSet::new();
    let mut missing = missing.into_iter();
    while let Some(job) = missing.next() {
        let permit = tokio::select! {
            permit = shared.permits.clone().acquire_owned() => permit.expect("never closed"),
            () = shared.stop.stopped() => {
                for job in std::iter::once(job).chain(missing.by_ref()) {
                    shared.settled(&job.image, ImageState::Cancelled);
                }
                break;
            }
        };
        let log = images::build_log(reports_dir, &job);
        let shared = Arc::clone(&shared);
        building.spawn(async move {
            let state = build_one(&shared, &job, &log).await;
            drop(permit);
            shared.settled(&job.image, state);
        });
    }
    building.join_all().await;
}

/// Builds one missing image, telling the run when it starts and how it ended.
async fn build_one<E: Engine>(shared: &Shared<E>, job: &ImageJob, log: &Path) -> ImageState {
    let image = &job.image;
    let context = job
        .context
        .as_deref()
        .expect("only jobs with a context are built");
    shared.events.send(EventKind::ImageBuildStarted {
        image: image.clone(),
        suites: job.suites.clone(),
    });
    let clock = Instant::now();
    let built = tokio::select! {
        built = build(&*shared.engine, context, image, log) => Some(built),
        // Dropping the build stream aborts the build on the engine.
        () = shared.stop.stopped() => None,
    };
    let took = clock.elapsed();
    let (outcome, state) = match built {
        Some(Ok(())) => (BuildOutcome::Built, ImageState::Built { took }),
        Some(Err(e)) => (BuildOutcome::Failed, ImageState::Failed(Cause::from(e))),
        None => (BuildOutcome::Cancelled, ImageState::Cancelled),
    };
    let cause = match &state {
        ImageState::Failed(cause) => Some(cause.clone()),
        _ => None,
    };
    shared.events.send(EventKind::ImageBuildFinished {
        image: image.clone(),
        suites: job.suites.clone(),
        outcome,
        duration: took,
        cause,
    });
    state
}

async fn build<E: Engine>(
    engine: &E,
    context: &Path,
    image: &str,
    log: &Path,
) -> Result<(), EngineError> {
    // A build appends to its log; a log from an earlier run would only confuse.
    let _ = tokio::fs::remove_file(log).await;
    engine.build_image(context, image, log).await?;
    match engine.image_exists(image).await {
        Ok(false) => Err(EngineError::Build {
            image: image.to_string(),
            message: "the build finished but the image is not there".into(),
            log: log.to_path_buf(),
        }),
        // An engine that cannot say now leaves it to the suite's own attempt.
        Ok(true) | Err(_) => Ok(()),
    }
}
