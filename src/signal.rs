//! A signal named in the config, parsed once ("TERM", "SIGTERM", "term" or "15") and turned into
//! the OS's type only where it is sent (`process`).

use std::fmt;
use std::str::FromStr;

/// The signals a service may be asked to stop with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Hup,
    Int,
    Quit,
    Kill,
    Usr1,
    Usr2,
    Term,
}

const TABLE: [(Signal, &str, i32); 7] = [
    (Signal::Hup, "HUP", 1),
    (Signal::Int, "INT", 2),
    (Signal::Quit, "QUIT", 3),
    (Signal::Kill, "KILL", 9),
    (Signal::Usr1, "USR1", 10),
    (Signal::Usr2, "USR2", 12),
    (Signal::Term, "TERM", 15),
];

impl Signal {
    #[must_use]
    pub fn name(self) -> &'static str {
        TABLE
            .iter()
            .find(|(s, _, _)| *s == self)
            .map_or("?", |(_, name, _)| name)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

impl FromStr for Signal {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let upper = text.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        // Numbers are only portable for the classic signals; USR1/USR2 differ on macOS.
        TABLE
            .iter()
            .find(|(_, name, number)| {
                *name == bare
                    || (matches!(number, 1 | 2 | 3 | 9 | 15) && number.to_string() == bare)
            })
            .map(|(signal, _, _)| *signal)
            .ok_or_else(|| {
                let names: Vec<&str> = TABLE.iter().map(|(_, n, _)| *n).collect();
                format!(
                    "unknown signal \"{text}\" (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_prefixes_case_and_numbers() {
        assert_eq!("TERM".parse(), Ok(Signal::Term));
        assert_eq!("SIGterm".parse(), Ok(Signal::Term));
        assert_eq!("int".parse(), Ok(Signal::Int));
        assert_eq!("15".parse(), Ok(Signal::Term));
        assert_eq!("9".parse(), Ok(Signal::Kill));
        assert_eq!("USR1".parse(), Ok(Signal::Usr1));
    }

    #[test]
    fn refuses_unknown() {
        for bad in ["", "TERMX", "SIG", "99", "10", "12", "-15", "STOP"] {
            assert!(bad.parse::<Signal>().is_err(), "{bad}");
        }
    }
}
