// keepup's own `main`, not std's: std's start-up reads and parses `/proc/self/maps` to place a
// stack-overflow guard, a seventh of what the every-minute check costs, for a message keepup
// does not need. It also leaves SIGPIPE at its default, so `keepup logs | head` ends quietly.
#![no_main]

use std::ffi::{c_char, c_int};
use std::io::Write;

use keepup::cli::Cli;

#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    // std reads the arguments itself (glibc hands them over at load time).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The watcher's waiting state lasts for days: it is kept apart from the parser (and the
    // rest of keepup), so that it stays small.
    if let Some(code) = keepup::commands::watch::waiting(&args) {
        return c_int::from(code);
    }
    let cli = Cli::parse_args(args);
    if let Some(text) = cli.verb.text() {
        let _ = std::io::stdout().write_all(text.as_bytes());
        let _ = std::io::stdout().flush();
        return 0;
    }
    let code = match keepup::commands::run(cli.request(), &cli.config) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("keepup: {error}");
            error.exit_code()
        }
    };
    // std's own exit path would flush stdout; this one must.
    let _ = std::io::stdout().flush();
    c_int::from(code)
}
