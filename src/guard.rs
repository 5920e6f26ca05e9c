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

/// The verdict at `now`. The wall clock may step (a Raspberry Pi without a real-time clock
/// boots in the past and NTP steps it forward; a laptop's clock can step back): an event later
/// than `now` counts as happening now, never as a negative age. A trip from the future trips
/// again now (so it is recorded at a time the clock has reached, and a step back delays a
/// revival by at most `cooldown`), and a revival from the future imposes no backoff.
#[must_use]
pub fn judge(events: &[Event], now: SystemTime, limit: &RestartLimit) -> Verdict {
    let cleared = events
        .iter()
        .rposition(|e| e.event == Kind::Start)
        .map_or(0, |i| i + 1);
    let recent = &events[cleared..];
    let at = |e: &Event| e.at().map(|t| t.min(now));
    let revivals: Vec<SystemTime> = recent
        .iter()
        .filter(|e| e.event == Kind::Revive)
        .filter_map(at)
        .collect();
    let trip = recent
        .iter()
        .rposition(|e| e.event == Kind::GuardTrip)
        .and_then(|i| Some((i, recent[i].at()?)));
    let in_window = |t: &&SystemTime| now.duration_since(**t).unwrap_or_default() < limit.interval;
    let count = revivals.iter().filter(in_window).count();
    let trip_again = Verdict::Tripped {
        until: now + limit.cooldown,
        new: true,
        revivals: count,
    };

    if let Some((index, trip)) = trip {
        if trip > now {
            return trip_again;
        }
        // The revival after the trip, by its place in the history (times may have stepped).
        let retry = recent[index + 1..]
            .iter()
            .filter(|e| e.event == Kind::Revive)
            .filter_map(at)
            .next_back();
        match retry {
            None if now >= trip + limit.cooldown => return Verdict::Revive,
            None => {
                return Verdict::Tripped {
                    until: trip + limit.cooldown,
                    new: false,
                    revivals: count,
                };
            }
            // The one revival after the cool-down did not hold: trip again.
            Some(retry) if now < retry + limit.interval => return trip_again,
            // It held for a whole interval: the loop is over, count afresh.
            Some(_) => {}
        }
    }
    if count >= usize::try_from(limit.burst).unwrap_or(usize::MAX) {
        return trip_again;
    }
    let last_from_the_future = recent
        .iter()
        .rfind(|e| e.event == Kind::Revive)
        .and_then(Event::at)
        .is_some_and(|t| t > now);
    if count > 0 && !limit.backoff.is_zero() && !last_from_the_future {
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

/// The latest event time later than `now`, if the history holds any (the clock stepped back).
#[must_use]
pub fn from_the_future(events: &[Event], now: SystemTime) -> Option<SystemTime> {
    events
        .iter()
        .filter_map(Event::at)
        .filter(|t| *t > now)
        .max()
}

/// How many revivals happened in the `period` before `now`.
#[must_use]
pub fn revivals_within(events: &[Event], now: SystemTime, period: Duration) -> usize {
    events
        .iter()
        .filter(|e| e.event == Kind::Revive)
        .filter_map(Event::at)
        .filter(|t| now.duration_since(*t).unwrap_or_default() < period)
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

    /// A Pi whose clock ran ahead, then was stepped back 900 s: the history is "from the
    /// future". The guard re-trips at once (recorded now) and releases after one cooldown,
    /// not after the step plus the cooldown.
    #[test]
    fn a_step_back_delays_a_revival_by_at_most_the_cooldown() {
        let mut events = vec![
            event(Kind::Start, 995),
            event(Kind::Revive, 1000),
            event(Kind::Revive, 1001),
            event(Kind::Revive, 1002),
            event(Kind::GuardTrip, 1003),
        ];
        assert_eq!(from_the_future(&events, at(100)), Some(at(1003)));
        assert!(matches!(
            judge(&events, at(100), &LIMIT),
            Verdict::Tripped { new: true, until, .. } if until == at(220)
        ));
        events.push(event(Kind::GuardTrip, 100));
        assert!(matches!(
            judge(&events, at(150), &LIMIT),
            Verdict::Tripped { new: false, until, .. } if until == at(220)
        ));
        assert_eq!(judge(&events, at(220), &LIMIT), Verdict::Revive);
    }

    #[test]
    fn revivals_from_the_future_count_as_now_and_impose_no_backoff() {
        let limit = RestartLimit {
            backoff: Duration::from_secs(10),
            ..LIMIT
        };
        let two = vec![event(Kind::Revive, 1000), event(Kind::Revive, 1001)];
        assert_eq!(revivals_within(&two, at(100), Duration::from_secs(600)), 2);
        assert_eq!(judge(&two, at(100), &limit), Verdict::Revive);
        let three = vec![
            event(Kind::Revive, 1000),
            event(Kind::Revive, 1001),
            event(Kind::Revive, 1002),
        ];
        assert!(matches!(
            judge(&three, at(100), &LIMIT),
            Verdict::Tripped { new: true, .. }
        ));
    }

    /// Booted in 1970-ish, stepped forward by NTP: old trips and revivals are long past.
    #[test]
    fn a_step_forward_releases_at_once() {
        let events = vec![
            event(Kind::Revive, 1),
            event(Kind::Revive, 2),
            event(Kind::Revive, 3),
            event(Kind::GuardTrip, 4),
        ];
        assert_eq!(judge(&events, at(100_000), &LIMIT), Verdict::Revive);
        assert_eq!(from_the_future(&events, at(100_000)), None);
    }
}
