//! `events`: the history, newest last.

use super::note;
use crate::error::{Error, Result};
use crate::events;
use crate::exit_code;
use crate::service::Service;
use crate::text::count_text;

pub fn run(service: &Service, lines: usize, json: bool) -> Result<u8> {
    let history = events::read_counting(&service.events_file())?;
    let all = &history.events;
    let shown = &all[all.len().saturating_sub(lines)..];
    // On stderr in both forms: `--json`'s stdout stays the array of events it always was.
    if history.unreadable > 0 {
        note(&format!(
            "{} of {} could not be read (cut short, as by a full disk, or not an event) and {} \
             left out",
            count_text(history.unreadable, "line"),
            service.events_file().display(),
            if history.unreadable == 1 { "is" } else { "are" }
        ));
    }
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
