//! keepup keeps one long-running program alive: a pid lock says "keep it up", every command
//! recognises the running process exactly before touching it, and a timer revives it.

pub mod cli;
pub mod commands;
pub mod config;
pub mod environment;
pub mod error;
pub mod events;
pub mod exit_code;
pub mod export;
pub mod files;
pub mod fingerprint;
pub mod guard;
pub mod health;
pub mod interpreter;
pub mod keeper;
pub mod listen;
pub mod logfile;
pub mod manual;
pub mod notify;
pub mod oplock;
pub mod output;
pub mod ownership;
pub mod pid;
pub mod pidfile;
pub mod process;
pub mod ready;
pub mod record;
pub mod registry;
pub mod reloading;
pub mod service;
pub mod signal;
pub mod startup;
pub mod text;
pub mod timer;
pub mod waiting;
pub mod watcher;
