//! The full scan done through sysinfo instead of keepup's own `/proc` reading, for `bench/run`
//! to time next to `keepup status`: it refreshes every process with its argv, cwd and
//! executable (what the search rules need) and counts those whose argv names `NAME`.
//!
//! Usage: `sysinfo_scan NAME`

use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

fn main() {
    let name = std::env::args().nth(1).expect("usage: sysinfo_scan NAME");
    let mut system = System::new().expect("sysinfo cannot read processes here");
    let kind = ProcessRefreshKind::nothing()
        .with_cmd(UpdateKind::Always)
        .with_cwd(UpdateKind::Always)
        .with_exe(UpdateKind::Always)
        .with_user(UpdateKind::Always);
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    let found = system
        .processes()
        .values()
        .filter(|p| p.cmd().iter().any(|w| w.to_string_lossy().ends_with(&name)))
        .count();
    println!("{found}");
}
