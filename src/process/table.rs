//! One look at the process table, for a command that searches it for many services (`list`):
//! each process's owner, command line, executable and where it runs are read at most once,
//! however many services ask. A search for one service reads a table of its own, and so sees
//! the table as it is then.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use super::{Link, Look, os};
use crate::files::FileId;

/// The processes there were when it was read, and what was asked of each so far.
pub struct Table {
    pids: Vec<i32>,
    seen: RefCell<HashMap<i32, Seen>>,
    /// Every process by its working directory, and by its executable: read through at the
    /// first search that asks, with one cheap look at each process.
    cwds: OnceCell<Index>,
    exes: OnceCell<Index>,
}

/// The processes of the table by the file one of their links leads to.
struct Index {
    at: HashMap<FileId, Vec<i32>>,
    /// Those whose link was not told: any of them may be anywhere.
    unknown: Vec<i32>,
}

/// Processes a helper thread takes at least, in a table split over the cores: fewer would not
/// repay the thread's start (tens of µs, against about 4 µs a look).
const PER_HELPER: usize = 500;

/// Helpers at most, whatever the cores: the looks are path walks in `/proc`, and more threads
/// than this gain little on them.
const MAX_HELPERS: usize = 3;

impl Index {
    /// Each look is a path walk in the kernel, the most of a scan's time: a table of thousands
    /// is split over the cores (the same work, done sooner). A helper that cannot start leaves
    /// its part to this thread.
    fn read(pids: &[i32], link: Link) -> Index {
        let helpers = (pids.len() / PER_HELPER).min(MAX_HELPERS);
        let helpers = if helpers == 0 {
            0
        } else {
            std::thread::available_parallelism()
                .map_or(1, std::num::NonZero::get)
                .saturating_sub(1)
                .min(helpers)
        };
        if helpers == 0 {
            return Index::read_part(pids, link);
        }
        let mut parts = pids.chunks(pids.len().div_ceil(helpers + 1));
        let mine = parts.next().unwrap_or_default();
        std::thread::scope(|scope| {
            let helpers: Vec<_> = parts
                .map(|part| {
                    let helper =
                        super::spawn::spawn_deaf_in(scope, move || Index::read_part(part, link));
                    (part, helper.ok())
                })
                .collect();
            let mut index = Index::read_part(mine, link);
            for (part, helper) in helpers {
                let read = helper.and_then(|h| h.join().ok());
                index.merge(read.unwrap_or_else(|| Index::read_part(part, link)));
            }
            index
        })
    }

    fn read_part(pids: &[i32], link: Link) -> Index {
        let mut index = Index {
            at: HashMap::new(),
            unknown: Vec::new(),
        };
        for &pid in pids {
            match os::link_file(pid, link) {
                Look::At(file) => index.at.entry(file).or_default().push(pid),
                Look::Unknown => index.unknown.push(pid),
                Look::Gone => {}
            }
        }
        index
    }

    fn merge(&mut self, other: Index) {
        for (file, pids) in other.at {
            self.at.entry(file).or_default().extend(pids);
        }
        self.unknown.extend(other.unknown);
    }
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
            cwds: OnceCell::new(),
            exes: OnceCell::new(),
        })
    }

    /// The processes whose `link` leads to one of `files`, and those whose link could not be
    /// told, by pid: all that a search for a process found there must judge.
    pub(super) fn at(&self, link: Link, files: &[FileId]) -> Vec<i32> {
        let index = match link {
            Link::Cwd => &self.cwds,
            Link::Exe => &self.exes,
        }
        .get_or_init(|| Index::read(&self.pids, link));
        let mut found: Vec<i32> = files
            .iter()
            .filter_map(|file| index.at.get(file))
            .flatten()
            .chain(&index.unknown)
            .copied()
            .collect();
        found.sort_unstable();
        found.dedup();
        found
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A table split over helper threads finds each process as one thread does: this process
    /// (at its folder) as often as it is listed, an ended one nowhere.
    #[test]
    fn a_table_split_over_threads_is_read_whole() {
        let me = i32::try_from(std::process::id()).unwrap();
        let ended = i32::MAX;
        let pids: Vec<i32> = [me, ended]
            .into_iter()
            .cycle()
            .take(2 * (MAX_HELPERS + 1) * PER_HELPER + 3)
            .collect();
        let here = FileId::of(&std::env::current_dir().unwrap()).unwrap();
        for index in [
            Index::read(&pids, Link::Cwd),
            Index::read_part(&pids, Link::Cwd),
        ] {
            assert_eq!(index.at.len(), 1);
            assert_eq!(
                index.at.get(&here).map(Vec::len),
                Some(pids.iter().filter(|p| **p == me).count())
            );
            assert!(index.unknown.is_empty());
        }
    }
}
