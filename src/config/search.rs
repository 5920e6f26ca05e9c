//! `search`: how the running process is recognised, and which ways this platform has.

/// How the running process is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// `proc_exe` or `proc_cwd` where `/proc` exists; the OS process API, then `lsof`, on macOS.
    Auto,
    /// One argv word, resolved against the process's cwd from `/proc`, is the entry.
    ProcCwd,
    /// The process's executable (`/proc/<pid>/exe`) is the entry.
    ProcExe,
    /// As `proc_cwd`, with the working directory read from `lsof`.
    LsofCwd,
}

impl Search {
    const NAMES: [(Search, &'static str); 4] = [
        (Search::Auto, "auto"),
        (Search::ProcCwd, "proc_cwd"),
        (Search::ProcExe, "proc_exe"),
        (Search::LsofCwd, "lsof_cwd"),
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("?", |(_, n)| n)
    }

    /// The `search` key's value (`auto` when it is not set).
    pub(super) fn from_key(text: Option<&str>) -> Result<Search, String> {
        let Some(text) = text else {
            return Ok(Search::Auto);
        };
        Search::parse(text).ok_or_else(|| {
            let names: Vec<&str> = Search::NAMES.iter().map(|(_, n)| *n).collect();
            format!(
                "key `search`: unknown value \"{text}\" (expected one of {})",
                names.join(", ")
            )
        })
    }

    fn parse(text: &str) -> Option<Search> {
        Self::NAMES
            .iter()
            .find(|(_, n)| *n == text)
            .map(|(s, _)| *s)
    }
}

// Same signature as on macOS, where some modes are refused.
#[cfg(target_os = "linux")]
#[allow(clippy::unnecessary_wraps)]
pub(super) fn platform_supports(_: Search) -> Result<(), String> {
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(super) fn platform_supports(search: Search) -> Result<(), String> {
    match search {
        Search::ProcCwd | Search::ProcExe => Err(format!(
            "key `search`: \"{}\" needs /proc, which this system lacks; use \"auto\" or \"lsof_cwd\"",
            search.name()
        )),
        Search::Auto | Search::LsofCwd => Ok(()),
    }
}
