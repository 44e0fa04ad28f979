//! Progress of bounded work (a `--once` run's tables, a backfill, maintenance) for a display
//! the binary may put on a terminal. One registry per process, like the metrics: the work
//! counts into atomics of its [`Progress`], the display reads them on its own clock, so
//! counting costs an atomic add, and nothing at all while no display is shown.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a task counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Kafka records consumed.
    Records,
    /// Table rows read.
    Rows,
    /// Tables maintained.
    Tables,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Records => "records",
            Self::Rows => "rows",
            Self::Tables => "tables",
        }
    }
}

/// How a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    /// Finished its work.
    Done,
    /// Given up before finishing (an error).
    Stopped,
}

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const STOPPED: u8 = 2;

/// No total known: the display shows a count and a rate instead of a bar.
const NO_TOTAL: u64 = u64::MAX;

/// One task's counters, as the display reads them.
#[derive(Debug)]
pub struct Task {
    pub name: String,
    pub unit: Unit,
    started: Instant,
    done: AtomicU64,
    total: AtomicU64,
    state: AtomicU8,
}

impl Task {
    /// Since the task started (the display picks it up later).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// The expected count when known (an estimate: the count may end above or below it).
    pub fn total(&self) -> Option<u64> {
        Some(self.total.load(Ordering::Relaxed)).filter(|t| *t != NO_TOTAL)
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            RUNNING => State::Running,
            DONE => State::Done,
            _ => State::Stopped,
        }
    }
}

static SHOWN: AtomicBool = AtomicBool::new(false);
/// Tasks started since the display last took them.
static STARTED: Mutex<Vec<Arc<Task>>> = Mutex::new(Vec::new());

/// Called by the binary when it shows progress: from now on [`start`] registers tasks.
pub fn show() {
    SHOWN.store(true, Ordering::Relaxed);
}

/// The tasks started since the last call, for the display to add.
pub fn take_started() -> Vec<Arc<Task>> {
    // A panic while holding the lock leaves a plain list behind: still usable.
    std::mem::take(&mut *STARTED.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Starts counting a task; a handle that does nothing unless [`show`] was called.
pub fn start(name: impl Into<String>, unit: Unit, total: Option<u64>) -> Progress {
    if !SHOWN.load(Ordering::Relaxed) {
        return Progress(None);
    }
    let task = Arc::new(Task {
        name: name.into(),
        unit,
        started: Instant::now(),
        done: AtomicU64::new(0),
        total: AtomicU64::new(total.unwrap_or(NO_TOTAL)),
        state: AtomicU8::new(RUNNING),
    });
    STARTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(task.clone());
    Progress(Some(task))
}

/// The counting side of a task. Dropped before [`Progress::finish`] (an error returned), the
/// task shows as stopped where it was.
#[derive(Debug)]
pub struct Progress(Option<Arc<Task>>);

impl Progress {
    pub fn advance(&self, by: u64) {
        if let Some(t) = &self.0 {
            t.done.fetch_add(by, Ordering::Relaxed);
        }
    }

    pub fn done(&self) -> u64 {
        self.0.as_ref().map_or(0, |t| t.done())
    }

    pub fn set_total(&self, total: u64) {
        if let Some(t) = &self.0 {
            t.total.store(total, Ordering::Relaxed);
        }
    }

    pub fn finish(&self) {
        if let Some(t) = &self.0 {
            t.state.store(DONE, Ordering::Release);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = t
                .state
                .compare_exchange(RUNNING, STOPPED, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_once_shown_and_a_dropped_task_is_stopped() {
        let hidden = start("t.hidden", Unit::Rows, Some(3));
        hidden.advance(2);
        assert_eq!(hidden.done(), 0);
        show();
        let done = start("t.done", Unit::Records, None);
        done.advance(2);
        done.advance(3);
        done.set_total(5);
        done.finish();
        let stopped = start("t.stopped", Unit::Tables, Some(2));
        drop(stopped);
        // Other tests of the crate may start tasks meanwhile.
        let tasks: Vec<_> = take_started()
            .into_iter()
            .filter(|t| t.name.starts_with("t."))
            .collect();
        let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["t.done", "t.stopped"]);
        assert_eq!((tasks[0].done(), tasks[0].total()), (5, Some(5)));
        assert_eq!(tasks[0].state(), State::Done);
        assert_eq!(
            (tasks[1].total(), tasks[1].state()),
            (Some(2), State::Stopped)
        );
    }
}
