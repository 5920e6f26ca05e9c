//! A signal named in the config, parsed once ("TERM", "SIGTERM", "term" or "15") and turned into
//! the OS's type only where it is sent (`process`).
//!
//! Every standard signal the platform defines is accepted: a graceful stop is whatever the
//! service says it is (Apache's is WINCH, nginx's QUIT). Their numbers differ between
//! platforms (and between Linux's architectures), so they are the C library's, and the few
//! signals one platform has and another lacks are told apart here, in [`TABLE`], and nowhere
//! else. Real-time signals are not offered: no service documents one as its stop.

use std::fmt;
use std::str::FromStr;

use nix::libc;

/// A signal this platform defines; never 0 (which only asks whether a process exists).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal {
    /// Without the `SIG` prefix: "TERM".
    name: &'static str,
    number: i32,
}

impl Signal {
    pub const TERM: Signal = Signal::of("TERM", libc::SIGTERM);
    pub const KILL: Signal = Signal::of("KILL", libc::SIGKILL);
    /// Resumes a stopped process, so that it can act on the signal just sent.
    pub const CONT: Signal = Signal::of("CONT", libc::SIGCONT);
    /// Pauses a process: as `stop_signal` it would stop nothing.
    pub const STOP: Signal = Signal::of("STOP", libc::SIGSTOP);
    /// What a watchdog that ran out sends first, as systemd does: a core dump shows where the
    /// service hung.
    pub const ABRT: Signal = Signal::of("ABRT", libc::SIGABRT);

    const fn of(name: &'static str, number: i32) -> Signal {
        Signal { name, number }
    }

    /// The name without `SIG`: "TERM".
    #[must_use]
    pub fn name(self) -> &'static str {
        self.name
    }

    /// The platform's number for it.
    #[must_use]
    pub fn number(self) -> i32 {
        self.number
    }

    /// Every signal this platform defines, in the platform's order.
    pub fn all() -> impl Iterator<Item = Signal> {
        TABLE.iter().copied()
    }
}

/// The standard signals (POSIX's, and what Linux or macOS add), with the C library's numbers.
const TABLE: &[Signal] = &[
    Signal::of("HUP", libc::SIGHUP),
    Signal::of("INT", libc::SIGINT),
    Signal::of("QUIT", libc::SIGQUIT),
    Signal::of("ILL", libc::SIGILL),
    Signal::of("TRAP", libc::SIGTRAP),
    Signal::of("ABRT", libc::SIGABRT),
    Signal::of("BUS", libc::SIGBUS),
    Signal::of("FPE", libc::SIGFPE),
    Signal::KILL,
    Signal::of("USR1", libc::SIGUSR1),
    Signal::of("SEGV", libc::SIGSEGV),
    Signal::of("USR2", libc::SIGUSR2),
    Signal::of("PIPE", libc::SIGPIPE),
    Signal::of("ALRM", libc::SIGALRM),
    Signal::TERM,
    // Linux has no stack fault signal on mips and sparc.
    #[cfg(all(
        target_os = "linux",
        not(any(
            target_arch = "mips",
            target_arch = "mips32r6",
            target_arch = "mips64",
            target_arch = "mips64r6",
            target_arch = "sparc",
            target_arch = "sparc64"
        ))
    ))]
    Signal::of("STKFLT", libc::SIGSTKFLT),
    Signal::of("CHLD", libc::SIGCHLD),
    Signal::CONT,
    Signal::STOP,
    Signal::of("TSTP", libc::SIGTSTP),
    Signal::of("TTIN", libc::SIGTTIN),
    Signal::of("TTOU", libc::SIGTTOU),
    Signal::of("URG", libc::SIGURG),
    Signal::of("XCPU", libc::SIGXCPU),
    Signal::of("XFSZ", libc::SIGXFSZ),
    Signal::of("VTALRM", libc::SIGVTALRM),
    Signal::of("PROF", libc::SIGPROF),
    Signal::of("WINCH", libc::SIGWINCH),
    Signal::of("IO", libc::SIGIO),
    #[cfg(target_os = "linux")]
    Signal::of("PWR", libc::SIGPWR),
    Signal::of("SYS", libc::SIGSYS),
    #[cfg(target_os = "macos")]
    Signal::of("EMT", libc::SIGEMT),
    #[cfg(target_os = "macos")]
    Signal::of("INFO", libc::SIGINFO),
];

/// Other names for the same signals, as `kill -l` and signal(7) give them.
const ALIASES: &[(&str, &str)] = &[
    ("IOT", "ABRT"),
    #[cfg(target_os = "linux")]
    ("POLL", "IO"),
    #[cfg(target_os = "linux")]
    ("CLD", "CHLD"),
];

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name)
    }
}

impl FromStr for Signal {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let upper = text.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        let name = ALIASES
            .iter()
            .find(|(alias, _)| *alias == bare)
            .map_or(bare, |(_, name)| name);
        // Digits only: "+15" or "015" are not how anyone writes a signal.
        let number = (!bare.is_empty()
            && bare.bytes().all(|b| b.is_ascii_digit())
            && !bare.starts_with('0'))
        .then(|| bare.parse::<i32>().ok())
        .flatten();
        TABLE
            .iter()
            .find(|s| s.name == name || Some(s.number) == number)
            .copied()
            .ok_or_else(|| {
                format!(
                    "\"{text}\" is not a signal this system defines (write its name, e.g. \
                     \"TERM\", \"QUIT\", \"WINCH\", or its number; `kill -l` lists them)"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Option<&'static str> {
        text.parse::<Signal>().ok().map(Signal::name)
    }

    #[test]
    fn parses_names_prefixes_case_and_numbers() {
        assert_eq!("TERM".parse(), Ok(Signal::TERM));
        assert_eq!("SIGterm".parse(), Ok(Signal::TERM));
        assert_eq!(" term ".parse(), Ok(Signal::TERM));
        assert_eq!("15".parse(), Ok(Signal::TERM));
        assert_eq!("9".parse(), Ok(Signal::KILL));
        assert_eq!(parsed("int"), Some("INT"));
        assert_eq!(parsed("USR1"), Some("USR1"));
        assert_eq!(parsed("SIGUSR2"), Some("USR2"));
    }

    #[test]
    fn accepts_every_standard_signal() {
        for name in [
            "WINCH", "ALRM", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ",
            "VTALRM", "PROF", "IO", "SYS", "PIPE", "CHLD", "ILL", "TRAP", "ABRT", "BUS", "FPE",
            "SEGV",
        ] {
            assert_eq!(parsed(name), Some(name));
            assert_eq!(parsed(&format!("sig{name}")), Some(name));
        }
        assert_eq!(parsed("IOT"), Some("ABRT"));
        assert_eq!(
            parsed("28"),
            Some("WINCH"),
            "28 is WINCH on Linux and macOS"
        );
        assert_eq!(parsed("14"), Some("ALRM"));
        #[cfg(target_os = "linux")]
        {
            assert_eq!(parsed("PWR"), Some("PWR"));
            assert_eq!(parsed("SIGPOLL"), Some("IO"));
            assert_eq!(parsed("CLD"), Some("CHLD"));
        }
        #[cfg(target_os = "macos")]
        assert_eq!(parsed("INFO"), Some("INFO"));
    }

    #[test]
    fn every_signal_reads_back_by_name_and_number() {
        let mut numbers = std::collections::HashSet::new();
        for signal in Signal::all() {
            assert!(signal.number() > 0, "{signal}");
            assert!(numbers.insert(signal.number()), "{signal} twice");
            assert_eq!(signal.name().parse(), Ok(signal));
            assert_eq!(signal.number().to_string().parse(), Ok(signal));
            assert_eq!(signal.to_string().parse(), Ok(signal));
        }
    }

    #[test]
    fn refuses_unknown_and_zero() {
        for bad in [
            "",
            " ",
            "0",
            "00",
            "TERMX",
            "SIG",
            "SIGSIGTERM",
            "99",
            "65",
            "-15",
            "+15",
            "015",
            "1.5",
            "0x0f",
            "RTMIN",
            "SIGRTMIN+1",
            "TERM;",
            "T ERM",
            "2147483648",
        ] {
            assert!(bad.parse::<Signal>().is_err(), "{bad:?} was accepted");
        }
        #[cfg(target_os = "linux")]
        for bad in ["EMT", "INFO"] {
            assert!(bad.parse::<Signal>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_error_names_the_value() {
        let message = "WINCHH".parse::<Signal>().unwrap_err();
        assert!(
            message.starts_with("\"WINCHH\" is not a signal"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }
}
