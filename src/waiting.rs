//! Saying what a command waits for, once the wait has lasted long enough to be noticed: the
//! operation lock another keepup holds, a ready check. Most waits end sooner and say nothing.
//! On a terminal it is one line that counts the seconds; in a pipe or cron's mail, one line.
//!
//! It is said from a thread of its own, since the command is blocked in the wait itself (a
//! `flock`, a pipe read); interrupts never reach that thread.

use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a wait goes unsaid.
pub const UNSAID: Duration = Duration::from_secs(1);

/// Between updates of the line on a terminal.
const TICK: Duration = Duration::from_secs(1);

/// A wait under way; dropping it ends it (and finishes its line, if one was said).
pub struct Waiting {
    done: Option<mpsc::Sender<()>>,
    sayer: Option<JoinHandle<()>>,
}

impl Waiting {
    /// Says `what` ("the ready check …", told when it is said) once the wait has lasted
    /// [`UNSAID`]: `keepup: waiting for WHAT`.
    pub fn begin(what: impl FnOnce() -> String + Send + 'static) -> Waiting {
        let (done, ended) = mpsc::channel();
        let terminal = std::io::stderr().is_terminal();
        let sayer = crate::process::spawn_deaf(move || say(&ended, what, terminal)).ok();
        Waiting {
            done: Some(done),
            sayer,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // Hung up: the sayer stops at once, and its line is finished before anything else is
        // written.
        drop(self.done.take());
        if let Some(sayer) = self.sayer.take() {
            let _ = sayer.join();
        }
    }
}

fn say(ended: &mpsc::Receiver<()>, what: impl FnOnce() -> String, terminal: bool) {
    let began = Instant::now();
    if ended.recv_timeout(UNSAID) != Err(RecvTimeoutError::Timeout) {
        return;
    }
    let line = format!("keepup: waiting for {}", what());
    if !terminal {
        write(&format!("{line}\n"));
        return;
    }
    loop {
        // Back to the line's start, and clear it: one line, rewritten.
        write(&format!("\r\x1b[K{line} ({} s)", began.elapsed().as_secs()));
        if ended.recv_timeout(TICK) != Err(RecvTimeoutError::Timeout) {
            break;
        }
    }
    write("\n");
}

/// One `write(2)` to stderr, so the line is never split among others' (a launcher's notes).
fn write(text: &str) {
    let _ = nix::unistd::write(std::io::stderr(), text.as_bytes());
}
