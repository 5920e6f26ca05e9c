//! Integration tests: the real `keepup` binary against real processes, signals, `/proc` and
//! `lsof`. One test binary, so cargo links once; see `testenv.rs` for the harness.

mod bad_input;
mod cli;
mod concurrency;
mod cron;
mod faults;
mod field;
mod identity;
mod lifecycle;
mod memory;
mod ownership;
mod search;
mod testenv;
mod timer;
mod walkthrough;
