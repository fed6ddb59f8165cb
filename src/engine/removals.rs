//! Removals that run in the background: an engine's `remove` returns at once, so the
//! suite's slot is free for the next one, and `remove_labelled` waits for all of them
//! before its sweep.

use std::future::Future;
use std::sync::Mutex;

use tokio::task::JoinSet;

#[derive(Default)]
pub struct Removals {
    running: Mutex<JoinSet<()>>,
}

impl Removals {
    /// Starts `removal` in a task of its own.
    pub fn spawn(&self, removal: impl Future<Output = ()> + Send + 'static) {
        let mut running = self.running.lock().unwrap();
        // Reap what has finished, so a long run does not keep every finished task.
        while running.try_join_next().is_some() {}
        running.spawn(removal);
    }

    /// Waits for every removal started so far.
    pub async fn finish(&self) {
        let pending = std::mem::take(&mut *self.running.lock().unwrap());
        pending.join_all().await;
    }
}
