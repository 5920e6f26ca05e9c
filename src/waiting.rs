//! Saying what a command waits for, once the wait has lasted long enough to be noticed: the
//! operation lock another keepup holds, a ready check. Most waits end sooner and say nothing.
//! On a terminal it is one line that counts the seconds; in a pipe or cron's mail, one line.
//!
//! A wait that looks at the clock itself (a `poll` with a timeout) tells a [`Note`] how long it
//! has waited. One that cannot (a blocking `flock`) has a [`Waiting`]: a thread that tells it.

use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a wait goes unsaid.
pub const UNSAID: Duration = Duration::from_secs(1);

/// Between updates of the line on a terminal, and between looks at the clock.
pub const TICK: Duration = Duration::from_secs(1);

/// What a wait is for, said once it has lasted [`UNSAID`]; dropping it ends the wait (and
/// finishes a terminal's line).
pub struct Note {
    what: Option<Box<dyn FnOnce() -> String + Send>>,
    line: Option<String>,
    terminal: bool,
}

impl Note {
    /// `what` ("the ready check …") is told when it is said: `keepup: waiting for WHAT`.
    #[must_use]
    pub fn new(what: impl FnOnce() -> String + Send + 'static) -> Note {
        Note {
            what: Some(Box::new(what)),
            line: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// The wait has lasted `waited`: said the first time it is past [`UNSAID`]; on a terminal,
    /// the line is rewritten with the seconds at every call after.
    pub fn waited(&mut self, waited: Duration) {
        if waited < UNSAID {
            return;
        }
        let first = self.line.is_none();
        if let Some(what) = self.what.take() {
            self.line = Some(format!("keepup: waiting for {}", what()));
        }
        let Some(line) = &self.line else { return };
        if !self.terminal {
            if first {
                write(&format!("{line}\n"));
            }
            return;
        }
        // Back to the line's start, and clear it: one line, rewritten.
        write(&format!("\r\x1b[K{line} ({} s)", waited.as_secs()));
    }
}

impl Drop for Note {
    fn drop(&mut self) {
        if self.terminal && self.line.is_some() {
            write("\n");
        }
    }
}

/// A [`Note`] told the time by a thread of its own, for a wait that blocks (a `flock`).
pub struct Waiting {
    done: Option<mpsc::Sender<()>>,
    sayer: Option<JoinHandle<()>>,
}

impl Waiting {
    /// Begins the wait that `what` is for: the thread sleeps until [`UNSAID`], says it unless
    /// the wait has ended, and is joined when it ends. Never around a fork: a thread takes a
    /// process slot (`RLIMIT_NPROC` counts threads) that the fork may need.
    pub fn begin(what: impl FnOnce() -> String + Send + 'static) -> Waiting {
        let (done, ended) = mpsc::channel::<()>();
        let mut note = Note::new(what);
        // Interrupts never reach it: they stay with the main thread, which may hold them back.
        let sayer = crate::process::spawn_deaf(move || {
            let began = Instant::now();
            let mut pause = UNSAID;
            while ended.recv_timeout(pause) == Err(RecvTimeoutError::Timeout) {
                note.waited(began.elapsed());
                pause = TICK;
            }
        })
        .ok();
        Waiting {
            done: Some(done),
            sayer,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // Hung up: the thread stops at once, and its line is finished before anything else is
        // written.
        drop(self.done.take());
        if let Some(sayer) = self.sayer.take() {
            let _ = sayer.join();
        }
    }
}

/// One `write(2)` to stderr, so the line is never split among others' (a launcher's notes).
fn write(text: &str) {
    let _ = nix::unistd::write(std::io::stderr(), text.as_bytes());
}
