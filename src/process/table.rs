//! One look at the process table, for a command that searches it for many services (`list`):
//! each process's owner, command line and executable are read at most once, however many
//! services ask. A search for one service reads a table of its own, and so sees the table as
//! it is then.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use super::os;

/// The processes there were when it was read, and what was asked of each so far.
pub struct Table {
    pids: Vec<i32>,
    seen: RefCell<HashMap<i32, Seen>>,
}

#[derive(Default)]
struct Seen {
    uid: OnceCell<Option<u32>>,
    cmdline: OnceCell<Rc<[u8]>>,
    exe: OnceCell<Option<Rc<PathBuf>>>,
}

impl Table {
    /// Lists the processes (their facts are read when first asked).
    pub fn read() -> std::io::Result<Table> {
        Ok(Table {
            pids: os::pids()?,
            seen: RefCell::default(),
        })
    }

    #[must_use]
    pub fn pids(&self) -> &[i32] {
        &self.pids
    }

    fn remembered<T: Clone>(
        &self,
        pid: i32,
        field: fn(&Seen) -> &OnceCell<T>,
        read: impl FnOnce() -> T,
    ) -> T {
        let mut seen = self.seen.borrow_mut();
        field(seen.entry(pid).or_default())
            .get_or_init(read)
            .clone()
    }

    /// Who it runs as.
    pub(super) fn uid(&self, pid: i32) -> Option<u32> {
        self.remembered(pid, |s| &s.uid, || os::uid(pid))
    }

    /// Its command line (empty when it cannot be read).
    pub(super) fn cmdline(&self, pid: i32) -> Rc<[u8]> {
        self.remembered(
            pid,
            |s| &s.cmdline,
            || os::cmdline(pid).unwrap_or_default().into(),
        )
    }

    /// The program it runs.
    pub(super) fn exe(&self, pid: i32) -> Option<Rc<PathBuf>> {
        self.remembered(pid, |s| &s.exe, || os::exe(pid).map(Rc::new))
    }
}
