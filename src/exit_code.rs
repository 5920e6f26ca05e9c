//! Exit codes: what scripts and cron can rely on.

pub const OK: u8 = 0;
/// An action failed (start, stop, revival, crontab edit).
pub const FAILED: u8 = 1;
/// Bad command-line usage (clap's own code).
pub const USAGE: u8 = 2;
/// The config is unreadable or invalid (sysexits' `EX_CONFIG`).
pub const CONFIG: u8 = 78;

/// `status` follows the LSB init-script codes.
pub mod status {
    pub const RUNNING: u8 = 0;
    /// The pid lock exists but the service is not running.
    pub const DEAD: u8 = 1;
    pub const STOPPED: u8 = 3;
    pub const UNKNOWN: u8 = 4;
}
