//! The crash-loop guard: whether `restart` may revive the service now.
//!
//! It keeps no state of its own: the verdict is a pure function of the event history, the
//! limits and the time. Revivals are counted since the last manual `start` (which clears the
//! guard). After `burst` revivals within `interval` it trips; after `cooldown` it allows one
//! more revival; if that one does not hold for a whole `interval`, it trips again.

use std::time::{Duration, SystemTime};

use crate::config::RestartLimit;
use crate::events::{Event, Kind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Revive now.
    Revive,
    /// Revive, but not before `until` (backoff between revivals).
    Backoff { until: SystemTime },
    /// No revival before `until`. `new`: this call trips the guard (record it).
    Tripped {
        until: SystemTime,
        new: bool,
        revivals: usize,
    },
}

#[must_use]
pub fn judge(events: &[Event], now: SystemTime, limit: &RestartLimit) -> Verdict {
    let cleared = events
        .iter()
        .rposition(|e| e.event == Kind::Start)
        .map_or(0, |i| i + 1);
    let recent = &events[cleared..];
    let revivals: Vec<SystemTime> = recent
        .iter()
        .filter(|e| e.event == Kind::Revive)
        .filter_map(Event::at)
        .collect();
    let trip = recent
        .iter()
        .rev()
        .find(|e| e.event == Kind::GuardTrip)
        .and_then(Event::at);
    let in_window = |t: &&SystemTime| {
        now.duration_since(**t)
            .is_ok_and(|age| age < limit.interval)
    };
    let count = revivals.iter().filter(in_window).count();

    if let Some(trip) = trip {
        match revivals.iter().rev().find(|t| **t > trip) {
            None if now >= trip + limit.cooldown => return Verdict::Revive,
            None => {
                return Verdict::Tripped {
                    until: trip + limit.cooldown,
                    new: false,
                    revivals: count,
                };
            }
            // The one revival after the cool-down did not hold: trip again.
            Some(retry) if now < *retry + limit.interval => {
                return Verdict::Tripped {
                    until: now + limit.cooldown,
                    new: true,
                    revivals: count,
                };
            }
            // It held for a whole interval: the loop is over, count afresh.
            Some(_) => {}
        }
    }
    if count >= usize::try_from(limit.burst).unwrap_or(usize::MAX) {
        return Verdict::Tripped {
            until: now + limit.cooldown,
            new: true,
            revivals: count,
        };
    }
    if count > 0 && !limit.backoff.is_zero() {
        let doublings = u32::try_from(count - 1).unwrap_or(u32::MAX).min(20);
        let wait = limit
            .backoff
            .saturating_mul(1 << doublings)
            .min(limit.interval);
        if let Some(last) = revivals.last()
            && now < *last + wait
        {
            return Verdict::Backoff {
                until: *last + wait,
            };
        }
    }
    Verdict::Revive
}

/// How many revivals happened in the `period` before `now`.
#[must_use]
pub fn revivals_within(events: &[Event], now: SystemTime, period: Duration) -> usize {
    events
        .iter()
        .filter(|e| e.event == Kind::Revive)
        .filter_map(Event::at)
        .filter(|t| now.duration_since(*t).is_ok_and(|age| age < period))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Outcome, Who};
    use std::time::UNIX_EPOCH;

    const LIMIT: RestartLimit = RestartLimit {
        burst: 3,
        interval: Duration::from_secs(600),
        cooldown: Duration::from_secs(120),
        backoff: Duration::ZERO,
    };

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn event(kind: Kind, seconds: u64) -> Event {
        Event {
            time: humantime::format_rfc3339_millis(at(seconds)).to_string(),
            event: kind,
            pid: None,
            by: Who::Timer,
            outcome: Outcome::Failed,
            detail: None,
        }
    }

    /// Plays the timer every `step` seconds against a service that never stays up.
    fn play(limit: &RestartLimit, until: u64, step: u64) -> Vec<(u64, &'static str)> {
        let mut events = vec![event(Kind::Start, 0)];
        let mut story = Vec::new();
        for now in (step..=until).step_by(usize::try_from(step).unwrap()) {
            match judge(&events, at(now), limit) {
                Verdict::Revive => {
                    events.push(event(Kind::Revive, now));
                    story.push((now, "revive"));
                }
                Verdict::Tripped { new: true, .. } => {
                    events.push(event(Kind::GuardTrip, now));
                    story.push((now, "trip"));
                }
                Verdict::Tripped { new: false, .. } | Verdict::Backoff { .. } => {}
            }
        }
        story
    }

    #[test]
    fn burst_then_cooldown_then_once() {
        let story = play(&LIMIT, 600, 60);
        assert_eq!(
            story,
            [
                (60, "revive"),
                (120, "revive"),
                (180, "revive"),
                (240, "trip"),
                (360, "revive"),
                (420, "trip"),
                (540, "revive"),
                (600, "trip")
            ]
        );
    }

    #[test]
    fn start_clears_the_guard() {
        let mut events = vec![
            event(Kind::Revive, 1),
            event(Kind::Revive, 2),
            event(Kind::Revive, 3),
            event(Kind::GuardTrip, 4),
        ];
        assert!(matches!(
            judge(&events, at(5), &LIMIT),
            Verdict::Tripped { new: false, .. }
        ));
        events.push(event(Kind::Start, 6));
        assert_eq!(judge(&events, at(7), &LIMIT), Verdict::Revive);
    }

    #[test]
    fn revivals_older_than_the_interval_do_not_count() {
        let events = vec![
            event(Kind::Revive, 0),
            event(Kind::Revive, 10),
            event(Kind::Revive, 700),
        ];
        assert_eq!(judge(&events, at(710), &LIMIT), Verdict::Revive);
        assert_eq!(
            revivals_within(&events, at(710), Duration::from_secs(600)),
            1
        );
    }

    #[test]
    fn a_retry_that_holds_for_an_interval_ends_the_loop() {
        let events = vec![
            event(Kind::Revive, 1),
            event(Kind::Revive, 2),
            event(Kind::Revive, 3),
            event(Kind::GuardTrip, 4),
            event(Kind::Revive, 130),
        ];
        assert!(matches!(
            judge(&events, at(200), &LIMIT),
            Verdict::Tripped { new: true, .. }
        ));
        assert_eq!(judge(&events, at(800), &LIMIT), Verdict::Revive);
    }

    #[test]
    fn backoff_doubles_between_revivals() {
        let limit = RestartLimit {
            backoff: Duration::from_secs(10),
            ..LIMIT
        };
        let one = vec![event(Kind::Revive, 0)];
        assert_eq!(
            judge(&one, at(5), &limit),
            Verdict::Backoff { until: at(10) }
        );
        assert_eq!(judge(&one, at(10), &limit), Verdict::Revive);
        let two = vec![event(Kind::Revive, 0), event(Kind::Revive, 10)];
        assert_eq!(
            judge(&two, at(25), &limit),
            Verdict::Backoff { until: at(30) }
        );
        assert_eq!(judge(&[], at(0), &limit), Verdict::Revive);
    }
}
