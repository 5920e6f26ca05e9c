//! `events`: the history, newest last.

use crate::error::{Error, Result};
use crate::events;
use crate::exit_code;
use crate::service::Service;

pub fn run(service: &Service, lines: usize, json: bool) -> Result<u8> {
    let all = events::read(&service.events_file())?;
    let shown = &all[all.len().saturating_sub(lines)..];
    if json {
        let text = serde_json::to_string(shown)
            .map_err(|e| Error::Failed(format!("encoding events: {e}")))?;
        println!("{text}");
    } else if shown.is_empty() {
        eprintln!(
            "keepup: no events yet for {} ({})",
            service.config.name,
            service.events_file().display()
        );
    } else {
        for event in shown {
            println!("{}", event.render());
        }
    }
    Ok(exit_code::OK)
}
