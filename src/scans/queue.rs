//! Which triggered run starts next: one FIFO queue per project, served in turn so that a
//! busy project cannot starve the others, and never a run that shares a suite with a
//! running run of its project (a project has one target, so the same suite would scan
//! the same files twice at once). Plain data, no I/O: the service drives it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A queued run, as the queue needs to see it; `T` is what the service keeps with it.
#[derive(Debug)]
pub struct Waiting<T> {
    pub run_id: String,
    pub project: String,
    pub suites: BTreeSet<String>,
    pub item: T,
}

/// The queue, and the suites each running run holds.
#[derive(Debug)]
pub struct Queue<T> {
    waiting: BTreeMap<String, VecDeque<Waiting<T>>>,
    /// run id → (project, suites).
    running: BTreeMap<String, (String, BTreeSet<String>)>,
    /// The project served last: the next turn goes to the one after it.
    last_served: Option<String>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            waiting: BTreeMap::new(),
            running: BTreeMap::new(),
            last_served: None,
        }
    }
}

impl<T> Queue<T> {
    pub fn push(&mut self, run: Waiting<T>) {
        self.waiting
            .entry(run.project.clone())
            .or_default()
            .push_back(run);
    }

    /// Runs of `project` waiting.
    pub fn queued(&self, project: &str) -> usize {
        self.waiting.get(project).map_or(0, VecDeque::len)
    }

    /// Waiting runs per project (projects with none left out).
    pub fn depths(&self) -> BTreeMap<String, usize> {
        self.waiting
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(p, q)| (p.clone(), q.len()))
            .collect()
    }

    /// Takes a waiting run out of the queue (it was cancelled before it started).
    pub fn remove(&mut self, run_id: &str) -> Option<Waiting<T>> {
        for queue in self.waiting.values_mut() {
            if let Some(at) = queue.iter().position(|w| w.run_id == run_id) {
                return queue.remove(at);
            }
        }
        None
    }

    /// Every waiting run, emptying the queue (the server is stopping).
    pub fn drain(&mut self) -> Vec<Waiting<T>> {
        let all = std::mem::take(&mut self.waiting);
        all.into_values().flatten().collect()
    }

    /// The next run to start, marked running, when fewer than `max_running` run: the head
    /// of the first project's queue after the one served last whose head shares no suite
    /// with a running run of the same project.
    pub fn next(&mut self, max_running: usize) -> Option<Waiting<T>> {
        if self.running.len() >= max_running {
            return None;
        }
        let projects: Vec<String> = self.waiting.keys().cloned().collect();
        let start = match &self.last_served {
            Some(last) => projects.iter().position(|p| p > last).unwrap_or(0),
            None => 0,
        };
        let mut turn = projects[start..].iter().chain(&projects[..start]);
        let project = turn
            .find(|p| {
                self.waiting[*p]
                    .front()
                    .is_some_and(|head| !self.overlaps(head))
            })?
            .clone();
        let run = self.waiting.get_mut(&project)?.pop_front()?;
        self.running.insert(
            run.run_id.clone(),
            (run.project.clone(), run.suites.clone()),
        );
        self.last_served = Some(project);
        Some(run)
    }

    /// A running run ended: its suites are free again.
    pub fn finished(&mut self, run_id: &str) {
        self.running.remove(run_id);
    }

    fn overlaps(&self, head: &Waiting<T>) -> bool {
        self.running
            .values()
            .any(|(project, suites)| *project == head.project && !suites.is_disjoint(&head.suites))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(id: &str, project: &str, suites: &[&str]) -> Waiting<()> {
        Waiting {
            run_id: id.into(),
            project: project.into(),
            suites: suites.iter().map(|s| s.to_string()).collect(),
            item: (),
        }
    }

    fn next_id(queue: &mut Queue<()>, max: usize) -> Option<String> {
        queue.next(max).map(|w| w.run_id)
    }

    #[test]
    fn projects_take_turns_whatever_one_of_them_queued() {
        let mut queue = Queue::default();
        for i in 0..3 {
            queue.push(waiting(&format!("a{i}"), "a", &[&format!("s{i}")]));
        }
        queue.push(waiting("b0", "b", &["s0"]));
        let order: Vec<String> = std::iter::from_fn(|| next_id(&mut queue, 10)).collect();
        assert_eq!(order, ["a0", "b0", "a1", "a2"]);
    }

    #[test]
    fn a_suite_never_runs_twice_at_once_in_one_project() {
        let mut queue = Queue::default();
        queue.push(waiting("first", "shop", &["bandit", "semgrep"]));
        queue.push(waiting("second", "shop", &["semgrep"]));
        queue.push(waiting("other", "web", &["semgrep"]));
        assert_eq!(next_id(&mut queue, 10).as_deref(), Some("first"));
        // Another project's semgrep scans another target: it may run.
        assert_eq!(next_id(&mut queue, 10).as_deref(), Some("other"));
        assert_eq!(next_id(&mut queue, 10), None);
        queue.finished("first");
        assert_eq!(next_id(&mut queue, 10).as_deref(), Some("second"));
    }

    #[test]
    fn no_more_than_max_running_and_cancelled_runs_leave_the_queue() {
        let mut queue = Queue::default();
        queue.push(waiting("a", "p", &["x"]));
        queue.push(waiting("b", "p", &["y"]));
        queue.push(waiting("c", "p", &["z"]));
        assert_eq!(next_id(&mut queue, 1).as_deref(), Some("a"));
        assert_eq!(next_id(&mut queue, 1), None);
        assert!(queue.remove("b").is_some());
        assert_eq!(queue.queued("p"), 1);
        queue.finished("a");
        assert_eq!(next_id(&mut queue, 1).as_deref(), Some("c"));
    }
}
