//! `keepup man`: the man page. `clap_mangen` writes the synopsis, options and verbs from the
//! command-line definition; the config keys, files, environment and exit codes, which clap
//! does not know, are written here.

use std::fmt::Write as _;

use roff::{Roff, bold, italic, roman};

/// Every config key: name, default, meaning (README's table, shortened).
const KEYS: [(&str, &str, &str); 28] = [
    (
        "entry",
        "required",
        "the service's entry program (script or binary), relative to the config's folder",
    ),
    (
        "startup",
        "\"{entry}\"",
        "the command line, split like a shell splits words and run without one; {entry} and {dir} are substituted",
    ),
    (
        "search",
        "\"auto\"",
        "how the running process is recognised: auto, proc_cwd, proc_exe, lsof_cwd",
    ),
    (
        "log",
        "\"<name>.log\" in state_dir",
        "the service's stdout and stderr, appended",
    ),
    (
        "state_dir",
        "the entry's folder",
        "where keepup's own files go",
    ),
    (
        "env",
        "empty",
        "a table of variables added to the service's environment",
    ),
    (
        "env_file",
        "none",
        "a dotenv file (KEY=VALUE lines) read at every launch; env wins over it",
    ),
    (
        "stop_signal",
        "\"TERM\"",
        "the first signal stop sends: any the system defines (kill -l), by name (TERM, SIGTERM, QUIT, WINCH…) or number; never STOP",
    ),
    (
        "stop_mode",
        "\"leader\"",
        "leader: stop_signal (then SIGCONT) to the main process first, to the rest of the service (its group, the watcher's orphans) once it has exited; group: to all of it at once",
    ),
    (
        "stop_timeout",
        "\"10s\"",
        "measured from the first signal: whatever of the service still runs then gets SIGKILL",
    ),
    (
        "start_timeout",
        "\"5s\"",
        "how long start (and a revival) waits for the service to be recognised and ready",
    ),
    (
        "ready",
        "none",
        "a check that says the service is up: tcp:HOST:PORT, http://HOST:PORT/PATH, cmd:COMMAND \
         or notify (the service sends READY=1 on NOTIFY_SOCKET, as sd_notify does)",
    ),
    (
        "log_max_size",
        "\"10MB\"",
        "past this size the log is rotated",
    ),
    ("log_keep", "3", "how many rotated copies are kept"),
    (
        "watch",
        "true",
        "a watcher revives the service the moment it dies; false: the timer alone revives it",
    ),
    (
        "health",
        "none",
        "a check as for ready, run by the watcher while the service runs; after health_failures \
         failures in a row it ends the service as stop does and revives it (unhealthy event)",
    ),
    (
        "health_interval",
        "\"30s\"",
        "how often the health check (and max_memory) runs; also the most one probe may take",
    ),
    (
        "max_memory",
        "none",
        "the service's processes (PSS, as status counts them) above this size at two checks in a \
         row, every health_interval: a graceful restart (memory event)",
    ),
    (
        "watchdog",
        "none",
        "with ready = notify: a service that sends no WATCHDOG=1 for this long (WATCHDOG_USEC) is \
         sent SIGABRT, ended as stop does and revived (unhealthy event)",
    ),
    (
        "health_failures",
        "3",
        "failed health checks in a row that make the service unhealthy",
    ),
    (
        "listen",
        "none",
        "sockets the watcher binds once and hands to every launch (fds 3…, LISTEN_FDS, \
         LISTEN_PID, LISTEN_FDNAMES; {fd} or {fd:NAME} in startup): [\"tcp:HOST:PORT\", \
         \"unix:PATH\"], each optionally NAME= first",
    ),
    (
        "[restart_limit] burst",
        "10",
        "the crash-loop guard trips after this many revivals within interval",
    ),
    (
        "[restart_limit] interval",
        "\"15m\"",
        "the window in which revivals are counted; the try after a trip must hold this long",
    ),
    (
        "[restart_limit] cooldown",
        "\"5m\"",
        "after a trip, how long until one more revival is tried",
    ),
    (
        "[restart_limit] backoff",
        "\"1s\"",
        "the wait before a revival after a short run, doubled for each short run in a row",
    ),
    (
        "[restart_limit] backoff_max",
        "\"10s\"",
        "the longest such wait; a run at least this long was healthy (revived at once)",
    ),
    (
        "durations",
        "",
        "are written \"500ms\", \"10s\", \"2m\", \"1h\"",
    ),
    (
        "sizes",
        "",
        "are written \"512KB\", \"10MB\", \"1GB\" (powers of 1024)",
    ),
];

const EXIT_CODES: [(&str, &str); 6] = [
    ("0", "done; status: running"),
    (
        "1",
        "failed (a start, a revival, a stop); status: dead (kept up, not running); list: a service is dead or broken; doctor: a check failed",
    ),
    ("2", "usage error"),
    ("3", "status: stopped (not kept up)"),
    ("4", "status: unknown (it could not tell)"),
    (
        "78",
        "config error: nothing was started, stopped, written or removed",
    ),
];

const FILES: [(&str, &str); 9] = [
    ("<name>.pid", "the pid lock: exists = keep this service up"),
    (
        "<name>.instance",
        "the identity of the instance keepup started or adopted",
    ),
    (
        "~/.local/state/keepup",
        "the record of what keepup keeps: which config keeps which entry, where its state is, and its operation lock (locks/ID.lock)",
    ),
    ("<name>.watcher", "the running watcher's identity"),
    (
        "<name>.env",
        "the environment of the last manual start, which every launch starts from (mode 0600; env_file and env go on top)",
    ),
    ("<name>.events", "the event history (events)"),
    (
        "<name>.log",
        "the service's log, and <name>.log.1 ... its rotated copies",
    ),
    (
        "<name>.timer.log",
        "what the timer and the watcher did, rotated as the service log is (<name>.timer.log.1 ...)",
    ),
    (
        "crontab",
        "install-timer's line: * * * * * ... keepup restart --timer --config CFG ... # keepup-timer CFG",
    ),
];

const ENVIRONMENT: [(&str, &str); 4] = [
    (
        "HOME",
        "where the record of what keepup keeps is (HOME/.local/state/keepup; /var/tmp/keepup-UID when HOME is not the user's)",
    ),
    (
        "KEEPUP_CONFIG",
        "the config when --config is not given (else ./cfg.toml)",
    ),
    (
        "KEEPUP_CRONTAB",
        "the program that edits the crontab (default: crontab on PATH)",
    ),
    (
        "KEEPUP_WATCH_POLL",
        "1: the watcher looks every 100 ms instead of waiting on a pidfd",
    ),
];

/// Every verb, on this one page: its usage, what it does, and its own arguments, each as clap
/// defines it (so the page cannot drift from the parser).
fn verbs(roff: &mut Roff, command: &clap::Command) {
    roff.control("SH", ["COMMANDS"]);
    for verb in visible(command) {
        verb_entry(roff, verb);
    }
}

/// The subcommands a person uses: not the hidden (the watcher's), not clap's own `help`.
fn visible(command: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    command
        .get_subcommands()
        .filter(|v| !v.is_hide_set() && v.get_name() != "help")
}

/// One verb (or one of its own verbs, as `export systemd`), then those below it.
fn verb_entry(roff: &mut Roff, verb: &clap::Command) {
    let usage = verb
        .clone()
        .render_usage()
        .to_string()
        .replace("Usage: ", "")
        .replace("keepup ", "keepup [-c CONFIG] ");
    roff.control("TP", [] as [&str; 0]).text([bold(usage)]);
    let mut about = verb
        .get_about()
        .map(ToString::to_string)
        .unwrap_or_default();
    let aliases: Vec<&str> = verb.get_visible_aliases().collect();
    if !aliases.is_empty() {
        let _ = write!(about, " (also: {})", aliases.join(", "));
    }
    roff.text([roman(about)]);
    for arg in verb
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set() && a.get_id() != "help")
    {
        roff.control("br", [] as [&str; 0])
            .text([italic(flag(arg)), roman(format!(": {}", arg_help(arg)))]);
    }
    for sub in visible(verb) {
        verb_entry(roff, sub);
    }
}

/// How an argument is written: `-n, --lines <LINES>`, `--json`, `CONFIGS...`.
fn flag(arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map_or_else(
            || arg.get_id().to_string().to_uppercase(),
            ToString::to_string,
        );
    if arg.is_positional() {
        let many = matches!(arg.get_action(), clap::ArgAction::Append);
        return format!("{value}{}", if many { "..." } else { "" });
    }
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("-{short}"));
    }
    if let Some(long) = arg.get_long() {
        names.push(format!("--{long}"));
    }
    let mut text = names.join(", ");
    if arg.get_action().takes_values() {
        let _ = write!(text, " <{value}>");
    }
    text
}

/// An argument's help, with its choices and default as clap knows them.
fn arg_help(arg: &clap::Arg) -> String {
    let mut help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    let choices: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_owned())
        .collect();
    if !choices.is_empty() && arg.get_action().takes_values() {
        let _ = write!(help, " (one of: {})", choices.join(", "));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && arg.get_action().takes_values() {
        let _ = write!(help, " (default: {})", defaults.join(", "));
    }
    help
}

/// The whole page, in roff.
#[must_use]
pub fn page(mut command: clap::Command) -> String {
    command.build();
    let man = clap_mangen::Man::new(command.clone())
        .section("1")
        .manual("keepup");
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let _ = man.render_description_section(&mut out);
    let _ = man.render_options_section(&mut out);
    let mut roff = Roff::new();
    verbs(&mut roff, &command);
    roff.control("SH", ["CONFIG"]).text([roman(
        "A TOML file; paths are relative to its folder. Every key:",
    )]);
    for (key, default, meaning) in KEYS {
        roff.control("TP", [] as [&str; 0]).text([bold(key)]);
        if default.is_empty() {
            roff.text([roman(meaning)]);
        } else {
            roff.text([
                roman(meaning),
                roman(" (default: "),
                italic(default),
                roman(")"),
            ]);
        }
    }
    for (title, items) in [
        ("FILES", &FILES[..]),
        ("ENVIRONMENT", &ENVIRONMENT[..]),
        ("EXIT STATUS", &EXIT_CODES[..]),
    ] {
        roff.control("SH", [title]);
        for (name, meaning) in items {
            roff.control("TP", [] as [&str; 0])
                .text([bold(*name)])
                .text([roman(*meaning)]);
        }
    }
    out.extend_from_slice(roff.render().as_bytes());
    let _ = man.render_version_section(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
