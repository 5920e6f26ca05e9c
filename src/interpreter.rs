//! Which program an interpreter runs, read from its command line.
//!
//! `python3 bot.py` runs bot.py; `python3 -m py_compile bot.py`, `python3 -c '…' bot.py` and
//! `python3 /usr/bin/pylint bot.py` only hand it over as an argument. The program is the first
//! operand after the interpreter's own options, so telling them apart needs to know, per
//! interpreter family, which options take a value (skipped with it) and which make it run
//! something else (a command string, a module, stdin).

use std::ffi::OsStr;

/// An interpreter family's options.
struct Family {
    /// File names of the interpreter, compared after a version suffix is dropped.
    names: &'static [&'static str],
    /// Options after which it runs something else than a file operand.
    runs_other: &'static [&'static str],
    /// Options whose value is the next word (when not attached).
    take_value: &'static [&'static str],
    /// Options whose value is the program itself (`php -f app.php`).
    names_program: &'static [&'static str],
}

const FAMILIES: [Family; 6] = [
    Family {
        names: &["python", "pypy"],
        runs_other: &["-c", "-m", "-"],
        take_value: &["-W", "-X", "--check-hash-based-pycs"],
        names_program: &[],
    },
    Family {
        names: &["node", "nodejs"],
        runs_other: &["-e", "--eval", "-p", "--print", "-", "-i", "--interactive"],
        take_value: &[
            "-r",
            "--require",
            "--import",
            "--loader",
            "--experimental-loader",
            "-C",
            "--conditions",
            "--title",
            "--env-file",
            "--input-type",
            "--inspect-port",
        ],
        names_program: &[],
    },
    Family {
        names: &["ruby"],
        runs_other: &["-e", "-"],
        take_value: &["-I", "-r", "-C", "-E", "--encoding"],
        names_program: &[],
    },
    Family {
        names: &["perl"],
        runs_other: &["-e", "-E", "-"],
        take_value: &["-I"],
        names_program: &[],
    },
    Family {
        names: &["php"],
        runs_other: &["-r", "-a", "-"],
        take_value: &["-c", "-d", "-z"],
        names_program: &["-f"],
    },
    Family {
        names: &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash"],
        runs_other: &["-c", "-s", "-"],
        take_value: &["-o", "+o", "-O", "+O"],
        names_program: &[],
    },
];

/// For an interpreter keepup knows nothing of: the commonest "run this instead" options.
const GENERIC: Family = Family {
    names: &[],
    runs_other: &["-c", "-e", "-m", "-"],
    take_value: &[],
    names_program: &[],
};

/// The program `interpreter` (the file name of a process's `argv[0]`) runs, from its other
/// words `args`: the first operand after its own options. `None` when its options say it runs
/// something else (`-c`, `-m`, `-e`, stdin) or there is no operand.
#[must_use]
pub fn program_operand<'a>(interpreter: &str, args: &[&'a OsStr]) -> Option<&'a OsStr> {
    let family = family(interpreter);
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let text = word.to_string_lossy();
        if text == "--" {
            return words.next().copied();
        }
        let is_option = (text.starts_with('-') && text.len() > 1) || text == "-";
        let is_plus_option = family.take_value.contains(&text.as_ref()) && text.starts_with('+');
        if !is_option && !is_plus_option {
            return Some(word);
        }
        let (name, attached) = match text.split_once('=') {
            Some((name, _)) if text.starts_with("--") => (name.to_owned(), true),
            _ => (text.clone().into_owned(), false),
        };
        if family.runs_other.contains(&name.as_str()) {
            return None;
        }
        if family.names_program.contains(&name.as_str()) {
            return if attached {
                None
            } else {
                words.next().copied()
            };
        }
        if family.take_value.contains(&name.as_str()) {
            if !attached {
                words.next();
            }
            continue;
        }
        if !text.starts_with("--") && cluster_runs_other(family, &text) {
            return None;
        }
    }
    None
}

/// A cluster of one-letter flags (`-uc`, `-Bm`): the first letter that runs something else or
/// takes a value ends it; the former means no program operand. (`-Wignore` carries its value.)
fn cluster_runs_other(family: &Family, cluster: &str) -> bool {
    for letter in cluster.chars().skip(1) {
        let option = format!("-{letter}");
        if family.runs_other.contains(&option.as_str()) {
            return true;
        }
        if family.take_value.contains(&option.as_str())
            || family.names_program.contains(&option.as_str())
        {
            return false;
        }
    }
    false
}

fn family(interpreter: &str) -> &'static Family {
    // python3.11, python2.7, pypy3: the family is the name without its version.
    let base = interpreter.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    FAMILIES
        .iter()
        .find(|f| f.names.contains(&base))
        .unwrap_or(&GENERIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operand<'a>(interpreter: &str, words: &'a [&'a str]) -> Option<&'a str> {
        let args: Vec<&OsStr> = words.iter().map(OsStr::new).collect();
        program_operand(interpreter, &args).map(|w| w.to_str().unwrap())
    }

    #[test]
    fn python_runs_its_first_operand() {
        assert_eq!(operand("python3", &["bot.py"]), Some("bot.py"));
        assert_eq!(operand("python3", &["-u", "./bot.py"]), Some("./bot.py"));
        assert_eq!(
            operand("python3", &["/abs/bot.py", "-x"]),
            Some("/abs/bot.py")
        );
        assert_eq!(
            operand("python3", &["-W", "ignore", "bot.py"]),
            Some("bot.py")
        );
        assert_eq!(operand("python3", &["-Wignore", "bot.py"]), Some("bot.py"));
        assert_eq!(operand("python3", &["-X", "dev", "bot.py"]), Some("bot.py"));
        assert_eq!(operand("python3", &["-uB", "bot.py"]), Some("bot.py"));
        assert_eq!(operand("python3.11", &["--", "bot.py"]), Some("bot.py"));
        assert_eq!(
            operand("python3", &["--check-hash-based-pycs", "always", "bot.py"]),
            Some("bot.py")
        );
    }

    #[test]
    fn python_tools_that_are_handed_the_entry_run_something_else() {
        assert_eq!(operand("python3", &["-m", "py_compile", "bot.py"]), None);
        assert_eq!(operand("python3", &["-c", "x", "bot.py"]), None);
        assert_eq!(operand("python3", &["-uc", "x", "bot.py"]), None);
        assert_eq!(operand("python3", &["-"]), None);
        assert_eq!(operand("python3", &[]), None);
        assert_eq!(
            operand("python3", &["/usr/bin/pylint", "bot.py"]),
            Some("/usr/bin/pylint")
        );
    }

    #[test]
    fn node_ruby_perl_php_and_shells() {
        assert_eq!(operand("node", &["bot.js"]), Some("bot.js"));
        assert_eq!(
            operand("node", &["--inspect=9229", "bot.js"]),
            Some("bot.js")
        );
        assert_eq!(
            operand("node", &["-r", "dotenv/config", "bot.js"]),
            Some("bot.js")
        );
        assert_eq!(
            operand("nodejs", &["--require=x", "bot.js"]),
            Some("bot.js")
        );
        assert_eq!(operand("node", &["eslint.js", "bot.js"]), Some("eslint.js"));
        assert_eq!(operand("node", &["-e", "1", "bot.js"]), None);
        assert_eq!(operand("node", &["--eval=1", "bot.js"]), None);
        assert_eq!(operand("ruby", &["-I", "lib", "app.rb"]), Some("app.rb"));
        assert_eq!(operand("perl", &["-w", "app.pl"]), Some("app.pl"));
        assert_eq!(operand("perl", &["-e", "print", "app.pl"]), None);
        assert_eq!(operand("php", &["-f", "app.php"]), Some("app.php"));
        assert_eq!(operand("php", &["-d", "x=1", "app.php"]), Some("app.php"));
        assert_eq!(operand("php", &["-r", "echo 1;", "app.php"]), None);
        assert_eq!(operand("bash", &["-c", "x", "s.sh"]), None);
        assert_eq!(operand("bash", &["-e", "s.sh"]), Some("s.sh"));
        assert_eq!(operand("bash", &["-o", "pipefail", "s.sh"]), Some("s.sh"));
        assert_eq!(operand("sh", &["s.sh"]), Some("s.sh"));
    }

    #[test]
    fn unknown_interpreters_skip_options() {
        assert_eq!(operand("foo", &["--flag", "bar.x"]), Some("bar.x"));
        assert_eq!(operand("foo", &["-e", "code", "bar.x"]), None);
    }
}
