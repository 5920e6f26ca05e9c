//! `list` (`ls`): every service this user keeps, one row each: those keepup's record of what it
//! keeps names (with or without a timer), those the crontab's timer lines name, and any
//! configs given. A config that no longer loads is a row that says so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::note;
use super::status::Shared;
use crate::config;
use crate::error::{Error, Result};
use crate::exit_code;
use crate::output::{State, Status};
use crate::process::Table;
use crate::registry::Registry;
use crate::service::Service;
use crate::text;
use crate::timer::{self, Crontab};

/// One service, as far as it could be known.
enum Row {
    Known(Box<Status>),
    Broken { config: PathBuf, reason: String },
}

impl Row {
    fn config(&self) -> &Path {
        match self {
            Row::Known(status) => &status.config,
            Row::Broken { config, .. } => config,
        }
    }

    /// Dead, or not known at all: something to see to.
    fn needs_care(&self) -> bool {
        match self {
            Row::Known(status) => !matches!(status.state, State::Running | State::Stopped),
            Row::Broken { .. } => true,
        }
    }
}

pub fn run(given: &[PathBuf], json: bool) -> Result<u8> {
    let crontab = Crontab::from_env().read().map_err(|e| e.to_string());
    let mut configs = match &crontab {
        Ok(crontab) => timer::configs(crontab),
        Err(e) => {
            note(&format!("{e}: listing only the configs given"));
            Vec::new()
        }
    };
    configs.extend(
        Registry::of_this_user()
            .all()
            .into_iter()
            .map(|keeping| keeping.config),
    );
    configs.extend(
        given
            .iter()
            .map(|c| std::path::absolute(c).unwrap_or_else(|_| c.clone())),
    );
    let mut seen = std::collections::HashSet::new();
    configs.retain(|c| seen.insert(c.canonicalize().unwrap_or_else(|_| c.clone())));
    // One look at the process table for all of them: each process is read once, not once per
    // service that must be searched for.
    let processes = Table::read().ok();
    let shared = Shared {
        table: processes.as_ref(),
        crontab: Some(&crontab),
    };
    let mut rows: Vec<Row> = configs.into_iter().map(|c| row(&c, &shared)).collect();
    rows.sort_by(|a, b| a.config().cmp(b.config()));
    if json {
        let values: Vec<serde_json::Value> = rows.iter().map(row_json).collect();
        let text = serde_json::to_string(&values)
            .map_err(|e| Error::Failed(format!("encoding the list: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", table(&rows));
    }
    Ok(if rows.iter().any(Row::needs_care) {
        exit_code::FAILED
    } else {
        exit_code::OK
    })
}

fn row(config: &Path, shared: &Shared<'_>) -> Row {
    let broken = |e: Error| Row::Broken {
        config: config.to_path_buf(),
        reason: e.to_string(),
    };
    match config::load(config) {
        Ok(loaded) => match super::status::of_in(&Service::open(loaded), shared) {
            Ok(status) => Row::Known(Box::new(status)),
            Err(e) => broken(e),
        },
        Err(e) => broken(e),
    }
}

fn row_json(row: &Row) -> serde_json::Value {
    match row {
        Row::Known(status) => serde_json::to_value(status).unwrap_or_default(),
        Row::Broken { config, reason } => serde_json::json!({
            "name": null,
            "state": "broken",
            "config": config,
            "reason": reason,
        }),
    }
}

/// The table's columns; the last (the config) is not padded.
const COLUMNS: usize = 9;

/// The rows aligned, under a header, as `pm2 ls` and `supervisorctl status` show them.
fn table(rows: &[Row]) -> String {
    let mut lines = vec![
        [
            "NAME",
            "STATE",
            "PID",
            "UPTIME",
            "MEMORY",
            "REVIVALS 24H",
            "WATCHER",
            "HEALTH",
            "CONFIG",
        ]
        .map(str::to_owned),
    ];
    for row in rows {
        lines.push(match row {
            Row::Known(s) => [
                s.name.clone(),
                s.state.name().to_owned(),
                s.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                s.uptime_seconds.map_or_else(
                    || "-".to_owned(),
                    |u| text::duration_text(Duration::from_secs(u)),
                ),
                s.memory_bytes
                    .map_or_else(|| "-".to_owned(), text::format_bytes),
                s.revivals_24h.to_string(),
                match (&s.watcher, s.watch, s.kept_up) {
                    (Some(w), _, _) => format!("pid {}", w.pid),
                    (None, false, _) => "off".to_owned(),
                    (None, true, true) => "not running".to_owned(),
                    (None, true, false) => "-".to_owned(),
                },
                s.health_word(),
                s.config.display().to_string(),
            ],
            Row::Broken { config, reason } => [
                "?".to_owned(),
                "broken".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                format!("{} ({reason})", config.display()),
            ],
        });
    }
    let widths: Vec<usize> = (0..COLUMNS)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i == COLUMNS - 1 {
                    cell.clone()
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
