//! The progress display on a terminal: a line per task that `pipelines::progress` counts (a
//! bar with ETA when its total is known, else a count), redrawn from the task's counters on a
//! clock of its own, with log lines printed above the bars instead of through them.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipelines::progress::{State, Task, Unit};

const TICK: Duration = Duration::from_millis(100);

struct Shown {
    task: Arc<Task>,
    bar: ProgressBar,
    /// Whether the bar has the style with a total.
    bounded: bool,
    /// Whether the task is over: its last line stays as drawn.
    over: bool,
}

struct Display {
    multi: MultiProgress,
    /// Every task's line, those over included: a dropped bar would be wiped by the next log
    /// line.
    shown: Mutex<Vec<Shown>>,
    closed: AtomicBool,
}

static DISPLAY: OnceLock<Display> = OnceLock::new();

/// Shows the progress of the tasks started from now on. For a terminal only: the caller checks.
pub fn show() {
    pipelines::progress::show();
    let display = Display {
        multi: MultiProgress::new(),
        shown: Mutex::new(Vec::new()),
        closed: AtomicBool::new(false),
    };
    if DISPLAY.set(display).is_ok() {
        // Not joined: the process ends when `main` does.
        std::thread::spawn(|| loop {
            std::thread::sleep(TICK);
            sync();
        });
    }
}

/// Brings the lines up to date with their tasks' counters.
fn sync() {
    let Some(display) = DISPLAY.get() else {
        return;
    };
    if display.closed.load(Ordering::Acquire) {
        return;
    }
    let mut shown = display.shown.lock().unwrap_or_else(|e| e.into_inner());
    for task in pipelines::progress::take_started() {
        let bar = display
            .multi
            .add(ProgressBar::no_length().with_elapsed(task.elapsed()));
        bar.set_style(style(task.unit, Look::Count));
        bar.set_prefix(task.name.clone());
        shown.push(Shown {
            task,
            bar,
            bounded: false,
            over: false,
        });
    }
    for s in shown.iter_mut().filter(|s| !s.over) {
        // The state first: a task done has counted everything by then.
        let state = s.task.state();
        let done = s.task.done();
        if let Some(total) = s.task.total() {
            if !s.bounded {
                s.bar.set_style(style(s.task.unit, Look::Bar));
                s.bounded = true;
            }
            s.bar.set_length(total.max(done));
        }
        s.bar.set_position(done);
        match state {
            // Turns the spinner: a count without a total may stand still for a while.
            State::Running if !s.bounded => s.bar.tick(),
            State::Running => {}
            State::Done => {
                s.bar.set_length(done);
                s.bar.set_style(style(s.task.unit, Look::Done));
                s.bar.finish();
                s.over = true;
            }
            State::Stopped => {
                s.bar.abandon();
                s.over = true;
            }
        }
    }
}

/// Draws the tasks' last counts and leaves them on the terminal: what is printed after goes
/// below them.
pub fn close() {
    sync();
    if let Some(display) = DISPLAY.get() {
        display.closed.store(true, Ordering::Release);
        display.multi.set_draw_target(ProgressDrawTarget::hidden());
    }
}

/// Runs `f`, which prints, with the lines of the display lifted out of its way.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match DISPLAY.get() {
        Some(display) => display.multi.suspend(f),
        None => f(),
    }
}

/// Where log lines go: stderr, above the progress lines while they are shown.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The whole line at once, so the lines are not redrawn in the middle of it.
        suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

enum Look {
    /// No total yet: the count and the rate.
    Count,
    /// A bar towards the total, with the ETA.
    Bar,
    /// Finished: the count, the mean rate and the time taken.
    Done,
}

fn style(unit: Unit, look: Look) -> ProgressStyle {
    let unit = unit.as_str();
    let template = match look {
        Look::Count => format!("{{spinner}} {{prefix}} {{human_pos}} {unit} · {{rate}}"),
        Look::Bar => format!(
            "  {{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} · {{rate}} · ETA {{eta}}"
        ),
        Look::Done => format!("✓ {{prefix}} {{human_pos}} {unit} · {{rate}} · {{elapsed}}"),
    };
    // The templates are fixed above; the plain bar stands in should indicatif refuse one.
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
        .with_key(
            "rate",
            move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let secs = state.elapsed().as_secs_f64();
                let rate = match secs > 0.0 {
                    true => state.pos() as f64 / secs,
                    false => 0.0,
                };
                let _ = match rate >= 10.0 {
                    true => write!(w, "{} {unit}/s", HumanCount(rate as u64)),
                    false => write!(w, "{rate:.1} {unit}/s"),
                };
            },
        )
}
