//! Integration tests: the real `keepup` binary against real processes, signals, `/proc` and
//! `lsof`. One test binary, so cargo links once; see `testenv.rs` for the harness.

// First, so its `require!` macro is in scope in every test module.
#[macro_use]
mod testenv;

mod bad_input;
mod clean;
mod cli;
mod clock;
mod comfort;
mod concurrency;
mod cron;
mod export;
mod faults;
mod field;
mod harness;
mod health;
mod house;
mod identity;
mod keeper;
mod lifecycle;
mod listen;
mod memory;
mod notify;
mod ownership;
mod patience;
mod readme;
mod recipes;
mod reload;
mod search;
mod servers;
mod timer;
mod truth;
mod waits;
mod walkthrough;
mod watcher;
