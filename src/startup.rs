//! The `startup` command line, and the pattern its process will show.
//!
//! keepup runs `startup` without a shell, so it refuses shell syntax that would silently become
//! literal arguments. From the same words it derives how the started process will look in the
//! process table (which program is its `argv[0]`, and that one of its words is the entry), which
//! is what tells the service apart from `tail -f runserver.py` run in the same folder.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

const SHELLS: [&str; 5] = ["sh", "bash", "dash", "zsh", "ksh"];

/// Splits `raw` like a shell would, refusing shell operators, and substitutes `{entry}` and
/// `{dir}` in each word (so paths with spaces stay one word).
pub fn split(raw: &str, entry: &Path, dir: &Path) -> Result<Vec<String>, String> {
    check_shell_syntax(raw)?;
    let words = shell_words::split(raw).map_err(|e| format!("cannot be split into words: {e}"))?;
    if words.is_empty() {
        return Err("is empty".into());
    }
    if let Some(word) = words.iter().find(|w| *w == "nohup" || *w == "setsid") {
        return Err(no_shell_message(word));
    }
    let (entry, dir) = (entry.to_string_lossy(), dir.to_string_lossy());
    Ok(words
        .into_iter()
        .map(|w| w.replace("{entry}", &entry).replace("{dir}", &dir))
        .collect())
}

fn no_shell_message(what: &str) -> String {
    format!(
        "contains shell syntax `{what}`: keepup runs the command without a shell, detaches it \
         and logs its output by itself; for a shell, write sh -c '…'"
    )
}

/// Refuses unquoted `& | ; < >`, backticks and `$(`: without a shell they would be passed to
/// the program as arguments, which is never what the writer meant.
fn check_shell_syntax(raw: &str) -> Result<(), String> {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut quote = Quote::None;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match (&quote, c) {
            (Quote::Single, '\'') | (Quote::Double, '"') => quote = Quote::None,
            (Quote::None | Quote::Double, '\\') => {
                chars.next();
            }
            (Quote::None, '\'') => quote = Quote::Single,
            (Quote::None, '"') => quote = Quote::Double,
            (Quote::None, '&' | '|' | ';' | '<' | '>' | '`') => {
                let mut op = c.to_string();
                if chars.peek() == Some(&c) {
                    op.push(c);
                }
                return Err(no_shell_message(&op));
            }
            (Quote::None | Quote::Double, '$') if chars.peek() == Some(&'(') => {
                return Err(no_shell_message("$("));
            }
            (Quote::Double, '`') => return Err(no_shell_message("`")),
            _ => {}
        }
    }
    Ok(())
}

/// How a process started by `startup` shows in the process table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// The entry's absolute path as written.
    pub entry: PathBuf,
    /// Where the entry resolved when the config was loaded, if it exists.
    pub resolved: Option<PathBuf>,
    /// The program expected as `argv[0]` (compared by file name), running the entry as its
    /// program (its first operand); `None` when the entry itself is the program.
    pub interpreter: Option<String>,
    /// For an entry that is a shared program (`/usr/bin/python3`, `/usr/bin/redis-server`):
    /// the words after it, exactly, since every user of that program has the same `argv[0]`
    /// and executable.
    pub args: Option<Vec<String>>,
    /// For a startup that never names the entry (`gunicorn app:app`): its command line.
    pub command: Option<CommandLine>,
}

/// The startup command line as a whole: a process running it in the entry's folder is the
/// service, when startup does not name the entry itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    /// The program, resolved on PATH when it can be.
    pub program: PathBuf,
    /// The interpreter named by the program's `#!` line, when it is a script (gunicorn is).
    pub interpreter: Option<String>,
    /// The words after the program, exactly.
    pub args: Vec<String>,
    /// The folder it runs in: the entry's, resolved.
    pub dir: PathBuf,
}

/// Folders whose programs any user and config may run: an entry there is a shared program.
const SHARED_FOLDERS: [&str; 6] = [
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
];

impl Pattern {
    /// Derives the pattern from the startup words. `shebang` reads the interpreter named by a
    /// script's `#!` line; `resolved`: where the entry resolves, if it exists.
    pub fn derive(
        argv: &[String],
        entry: &Path,
        resolved: Option<&Path>,
        dir: &Path,
        shebang: impl Fn(&Path) -> Option<String>,
    ) -> Option<Pattern> {
        let words = unwrap_shell(argv);
        let (program, arguments) = words.split_first()?;
        let names_entry = |word: &String| {
            // `{entry}` became exactly the entry: no need to build a path.
            if Path::new(word) == entry {
                return true;
            }
            let full = clean(&dir.join(word));
            full == entry || (resolved.is_some() && full.canonicalize().ok().as_deref() == resolved)
        };
        let mut pattern = Pattern {
            entry: entry.to_path_buf(),
            resolved: resolved.map(Path::to_path_buf),
            interpreter: None,
            args: None,
            command: None,
        };
        if names_entry(program) {
            pattern.interpreter = shebang(entry);
            if pattern.interpreter.is_none() && resolved.is_some_and(is_shared) {
                pattern.args = Some(arguments.to_vec());
            }
            return Some(pattern);
        }
        let rest: Vec<&OsStr> = arguments.iter().map(OsStr::new).collect();
        let name = file_name(program);
        let operand = crate::interpreter::program_operand(name, &rest);
        if operand.is_some_and(|o| names_entry(&o.to_string_lossy().into_owned())) {
            pattern.interpreter = Some(name.to_owned());
            return Some(pattern);
        }
        let program = resolve_program(program, dir);
        pattern.command = Some(CommandLine {
            interpreter: shebang(&program),
            program,
            args: arguments.to_vec(),
            dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
        });
        Some(pattern)
    }

    /// Whether the executable alone may tell the service: not when startup never runs the
    /// entry, and for a shared program only with the same words after it.
    #[must_use]
    pub fn accepts_exe(&self, argv: &[&OsStr]) -> bool {
        self.command.is_none()
            && self.args.as_ref().is_none_or(|args| {
                argv.split_first()
                    .is_some_and(|(_, rest)| same_words(rest, args))
            })
    }

    /// Whether the process's command line must be read to judge it by its executable.
    #[must_use]
    pub fn needs_argv(&self) -> bool {
        self.args.is_some()
    }

    /// Whether a command line may be the service at all: cheap enough to run on every process.
    /// `also` is where the entry resolved when the running instance started.
    #[must_use]
    pub fn may_match(&self, cmdline: &[u8], also: Option<&Path>) -> bool {
        let found = |name: &OsStr| {
            let name = name.as_encoded_bytes();
            !name.is_empty() && memchr::memmem::find(cmdline, name).is_some()
        };
        if let Some(command) = &self.command {
            return command.program.file_name().is_some_and(found);
        }
        let written = self.entry.file_name();
        // Usually all three have one name: search the command line for it once.
        written.is_some_and(found)
            || [self.resolved.as_deref(), also]
                .into_iter()
                .flatten()
                .filter_map(Path::file_name)
                .any(|name| Some(name) != written && found(name))
    }

    /// Whether `path` (absolute) is the entry: as written, as it resolves now, or as it resolved
    /// when the running instance started (`also`), so a switched `current -> releases/vN`
    /// symlink never hides the instance that runs the old release.
    #[must_use]
    pub fn is_entry(&self, path: &Path, also: Option<&Path>) -> bool {
        if clean(path) == self.entry {
            return true;
        }
        let known = [self.resolved.as_deref(), also];
        let names = known.iter().flatten().filter_map(|p| p.file_name());
        if !names
            .chain(self.entry.file_name())
            .any(|n| Some(n) == path.file_name())
        {
            return false;
        }
        path.canonicalize()
            .is_ok_and(|p| known.iter().flatten().any(|k| *k == p))
    }

    /// The `proc_cwd` rule: `argv[0]` is the expected program, and the program it runs (the
    /// entry itself, or the interpreter's first operand), resolved against the process's working
    /// directory when relative, is the entry. `cwd` is asked only when needed.
    pub fn matches_argv(
        &self,
        argv: &[&OsStr],
        cwd: &mut dyn FnMut() -> Option<PathBuf>,
        also: Option<&Path>,
    ) -> bool {
        if let Some(command) = &self.command {
            return command.matches(argv, cwd);
        }
        let Some((first, rest)) = argv.split_first() else {
            return false;
        };
        let mut names_entry = |word: &OsStr| {
            let path = Path::new(word);
            if path.is_absolute() {
                return self.is_entry(path, also);
            }
            cwd().is_some_and(|dir| self.is_entry(&dir.join(path), also))
        };
        match &self.interpreter {
            None => {
                names_entry(first) && self.args.as_ref().is_none_or(|args| same_words(rest, args))
            }
            Some(program) => {
                let name = file_name(&first.to_string_lossy()).to_owned();
                name == *program
                    && crate::interpreter::program_operand(&name, rest)
                        .is_some_and(&mut names_entry)
            }
        }
    }
}

impl CommandLine {
    /// `argv` runs this command line (a script through its interpreter, with the
    /// interpreter's own options allowed), in the entry's folder.
    fn matches(&self, argv: &[&OsStr], cwd: &mut dyn FnMut() -> Option<PathBuf>) -> bool {
        let Some((first, rest)) = argv.split_first() else {
            return false;
        };
        let is_program = |word: &OsStr, cwd: &mut dyn FnMut() -> Option<PathBuf>| {
            let path = Path::new(word);
            if path.is_absolute() {
                return clean(path) == self.program
                    || path.canonicalize().ok() == self.program.canonicalize().ok();
            }
            if word.as_encoded_bytes().contains(&b'/') {
                return cwd().is_some_and(|dir| {
                    dir.join(path).canonicalize().ok() == self.program.canonicalize().ok()
                });
            }
            path.file_name() == self.program.file_name()
        };
        let words = match &self.interpreter {
            // A script that runs, in its place, the program it is named after: a version
            // manager's shim (pyenv's `python3`, rbenv's `ruby`) execs the real one, whose
            // `argv[0]` carries that name.
            Some(_) if Path::new(first).file_name() == self.program.file_name() => rest,
            Some(interpreter) => {
                let name = file_name(&first.to_string_lossy()).to_owned();
                if name != *interpreter {
                    return false;
                }
                let Some(operand) = crate::interpreter::program_operand(&name, rest) else {
                    return false;
                };
                let Some(at) = rest.iter().position(|w| std::ptr::eq(*w, operand)) else {
                    return false;
                };
                if !is_program(operand, cwd) {
                    return false;
                }
                &rest[at + 1..]
            }
            None if is_program(first, cwd) => rest,
            None => return false,
        };
        same_words(words, &self.args) && cwd().is_some_and(|dir| dir == self.dir)
    }
}

fn same_words(words: &[&OsStr], expected: &[String]) -> bool {
    words.len() == expected.len()
        && words
            .iter()
            .zip(expected)
            .all(|(word, want)| *word == OsStr::new(want))
}

/// Whether `program` lives where other users and configs run programs: a system program
/// folder, or any folder the acting user does not own.
#[must_use]
pub fn is_shared(program: &Path) -> bool {
    program.parent().is_some_and(is_shared_folder)
}

/// A system program folder, or one the acting user does not own.
#[must_use]
pub fn is_shared_folder(folder: &Path) -> bool {
    shared_folder(folder, std::fs::metadata(folder).ok().as_ref())
}

/// As [`is_shared_folder`], with the folder's metadata already at hand.
#[must_use]
pub fn shared_folder(folder: &Path, meta: Option<&std::fs::Metadata>) -> bool {
    use std::os::unix::fs::MetadataExt;
    SHARED_FOLDERS.iter().any(|f| Path::new(f) == folder)
        || meta.is_some_and(|m| m.uid() != crate::ownership::euid())
}

/// The program a startup word names, as the spawn will find it: a path (relative to the
/// entry's folder, where it runs), or a name looked up on PATH.
fn resolve_program(word: &str, dir: &Path) -> PathBuf {
    if word.contains('/') {
        return clean(&dir.join(word));
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(word))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(word))
}

/// `path` without `.` components. `..` stays: resolving it by hand would be wrong across a
/// symlink, and resolving it through the filesystem would resolve the symlinks too.
#[must_use]
pub fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// `sh -c 'exec prog args'` runs `prog args` in the end: look through the shell for the pattern.
fn unwrap_shell(argv: &[String]) -> Vec<String> {
    match argv {
        [shell, flag, script, ..] if SHELLS.contains(&file_name(shell)) && flag == "-c" => {
            let words = shell_words::split(script).unwrap_or_default();
            words
                .into_iter()
                .skip_while(|w| w == "exec" || is_assignment(w))
                .collect()
        }
        _ => argv.to_vec(),
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn file_name(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// What a `#!` line runs: a program by its path, or one that `env` looks up on PATH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shebang {
    Program(String),
    Env(String),
}

impl std::fmt::Display for Shebang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shebang::Program(path) => f.write_str(path),
            Shebang::Env(name) => write!(f, "/usr/bin/env {name}"),
        }
    }
}

/// The `#!` line at the start of `head`, if it has one.
#[must_use]
pub fn shebang(head: &[u8]) -> Option<Shebang> {
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let program = words.next()?;
    if file_name(program) == "env" {
        words
            .find(|w| !w.starts_with('-') && !is_assignment(w))
            .map(|w| Shebang::Env(w.to_owned()))
    } else {
        Some(Shebang::Program(program.to_owned()))
    }
}

/// The program a `#!` line runs, by file name; through `env`, the program env looks up.
#[must_use]
pub fn parse_shebang(head: &[u8]) -> Option<String> {
    Some(match shebang(head)? {
        Shebang::Program(path) => file_name(&path).to_owned(),
        Shebang::Env(name) => file_name(&name).to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn a_scripts_command_line_matches_through_its_interpreter_or_as_a_shims_target() {
        let os = |words: &[&'static str]| -> Vec<&'static OsStr> {
            words.iter().map(|w| OsStr::new(*w)).collect()
        };
        // A shim named python3 whose `#!` runs bash; the real python3 it execs, elsewhere.
        let shim = CommandLine {
            program: PathBuf::from("/home/u/.pyenv/shims/python3"),
            interpreter: Some("bash".to_owned()),
            args: vec!["-m".to_owned(), "http.server".to_owned()],
            dir: PathBuf::from("/srv/site"),
        };
        let mut here = || Some(PathBuf::from("/srv/site"));
        let real = os(&[
            "/home/u/.pyenv/versions/3.11/bin/python3",
            "-m",
            "http.server",
        ]);
        assert!(shim.matches(&real, &mut here));
        assert!(shim.matches(
            &os(&["bash", "/home/u/.pyenv/shims/python3", "-m", "http.server"]),
            &mut here
        ));
        // Not: other words, another folder, another program's name.
        let other = os(&["/usr/bin/python3", "-m", "http.server", "8001"]);
        assert!(!shim.matches(&other, &mut here));
        assert!(!shim.matches(&real, &mut || Some(PathBuf::from("/srv/other"))));
        let python = os(&["/usr/bin/python", "-m", "http.server"]);
        assert!(!shim.matches(&python, &mut here));
        let bash = os(&["/bin/bash", "-m", "http.server"]);
        assert!(!shim.matches(&bash, &mut here));
    }

    #[test]
    fn refuses_shell_syntax_outside_quotes() {
        for raw in [
            "python3 x.py &",
            "python3 x.py > out.log",
            "python3 x.py 2>&1",
            "a | b",
            "a && b",
            "a; b",
            "a < in",
            "echo `date`",
            "echo $(date)",
            "echo \"$(date)\"",
            "nohup python3 x.py",
            "python3 x.py>log",
        ] {
            let err = split(raw, Path::new("/e"), Path::new("/")).unwrap_err();
            assert!(err.contains("without a shell"), "{raw}: {err}");
            assert!(err.contains("sh -c"), "{raw}: {err}");
        }
    }

    #[test]
    fn allows_operators_inside_quotes() {
        let words = split(
            "sh -c 'a && b > c' \"x|y\" z\\&",
            Path::new("/e"),
            Path::new("/"),
        );
        assert_eq!(words.unwrap(), ["sh", "-c", "a && b > c", "x|y", "z&"]);
    }

    #[test]
    fn substitutes_entry_and_dir_within_words() {
        let words = split(
            "python3 -u {entry} --root={dir}/static",
            Path::new("/srv/my bot/bot.py"),
            Path::new("/srv/my bot"),
        );
        assert_eq!(
            words.unwrap(),
            [
                "python3",
                "-u",
                "/srv/my bot/bot.py",
                "--root=/srv/my bot/static"
            ]
        );
    }

    #[test]
    fn refuses_empty_and_unbalanced() {
        assert!(split("  ", Path::new("/e"), Path::new("/")).is_err());
        assert!(split("python3 'x", Path::new("/e"), Path::new("/")).is_err());
    }

    #[test]
    fn shebang_names_the_program() {
        assert_eq!(
            parse_shebang(b"#!/usr/bin/python3\nx"),
            Some("python3".into())
        );
        assert_eq!(
            parse_shebang(b"#! /usr/bin/env python3\n"),
            Some("python3".into())
        );
        assert_eq!(
            parse_shebang(b"#!/usr/bin/env -S python3 -u\n"),
            Some("python3".into())
        );
        assert_eq!(parse_shebang(b"#!/bin/sh -e\n"), Some("sh".into()));
        assert_eq!(parse_shebang(b"\x7fELF\x02\x01"), None);
        assert_eq!(parse_shebang(b"#!\n"), None);
    }

    fn pattern(interpreter: Option<&str>) -> (tempfile::TempDir, Pattern) {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("bot.py");
        std::fs::write(&entry, "#!/usr/bin/env python3\n").unwrap();
        let entry = entry.canonicalize().unwrap();
        let pattern = Pattern {
            resolved: Some(entry.clone()),
            args: None,
            command: None,
            entry,
            interpreter: interpreter.map(str::to_owned),
        };
        (dir, pattern)
    }

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn matches(pattern: &Pattern, argv: &[&str], cwd: &Path) -> bool {
        let argv = os(argv);
        let argv: Vec<&OsStr> = argv.iter().map(OsString::as_os_str).collect();
        pattern.matches_argv(&argv, &mut || Some(cwd.to_path_buf()), None)
    }

    #[test]
    fn derives_interpreter_from_shebang_or_first_word() {
        let (dir, p) = pattern(None);
        let d = p.entry.parent().unwrap();
        let shebang = |_: &Path| Some("python3".to_owned());
        let words = |s: &str| split(s, &p.entry, d).unwrap();
        let derived = |s: &str| Pattern::derive(&words(s), &p.entry, Some(&p.entry), d, shebang);
        assert_eq!(
            derived("{entry}").unwrap().interpreter.as_deref(),
            Some("python3")
        );
        assert_eq!(
            derived("./bot.py --x").unwrap().interpreter.as_deref(),
            Some("python3")
        );
        let via_path = derived("/usr/bin/python3.11 -u bot.py").unwrap();
        assert_eq!(via_path.interpreter.as_deref(), Some("python3.11"));
        let via_sh = derived("sh -c 'exec FOO=1 python3 {entry}'").unwrap();
        assert_eq!(via_sh.interpreter.as_deref(), Some("python3"));
        // Startups that never name the entry are recognised by their whole command line.
        for line in ["python3 -m http.server", "python3 other.py"] {
            let command = derived(line).unwrap().command.unwrap();
            assert_eq!(command.program.file_name().unwrap(), "python3");
        }
        let native = Pattern::derive(
            &words("{entry} --port 1"),
            &p.entry,
            Some(&p.entry),
            d,
            |_| None,
        )
        .unwrap();
        assert_eq!(native.interpreter, None);
        drop(dir);
    }

    #[test]
    fn tail_or_editor_naming_the_entry_is_not_the_service() {
        let (dir, p) = pattern(Some("python3"));
        let d = dir.path();
        assert!(!matches(&p, &["tail", "-f", "bot.py"], d));
        assert!(!matches(&p, &["less", "bot.py"], d));
        assert!(!matches(&p, &["vim", "bot.py"], d));
        assert!(!matches(
            &p,
            &["/usr/bin/tail", "-f", p.entry.to_str().unwrap()],
            d
        ));
    }

    #[test]
    fn interpreter_running_the_entry_is_the_service() {
        let (dir, p) = pattern(Some("python3"));
        let d = dir.path();
        assert!(matches(&p, &["python3", "bot.py"], d));
        assert!(matches(&p, &["/usr/bin/python3", "./bot.py"], d));
        assert!(matches(
            &p,
            &["python3", p.entry.to_str().unwrap()],
            Path::new("/")
        ));
        // Relative from another folder: another file of the same name, not the entry.
        assert!(!matches(&p, &["python3", "bot.py"], Path::new("/")));
        assert!(!matches(&p, &["python3.11", "bot.py"], d));
        assert!(!matches(&p, &[], d));
    }

    #[test]
    fn native_entry_must_be_argv0() {
        let (dir, p) = pattern(None);
        let d = dir.path();
        assert!(matches(&p, &["./bot.py", "--port"], d));
        assert!(!matches(&p, &["cat", "bot.py"], d));
    }

    #[test]
    fn quick_filter_looks_for_the_file_name() {
        let (_dir, p) = pattern(None);
        assert!(p.may_match(b"python3\0/x/bot.py\0", None));
        assert!(!p.may_match(b"python3\0/x/other.py\0", None));
    }
}
