//! The crash-loop guard: whether a revival may happen now, and if not, when.
//!
//! It keeps no state of its own: the verdict is a pure function of the event history, the
//! limits and the time, so `status`, `restart` and the watcher judge alike. Two rules:
//! - **Backoff.** A run shorter than `backoff_max` was short: the next launch waits `backoff`
//!   after it, doubled for each short run in a row, up to `backoff_max`. A run at least that
//!   long was healthy: its crash is revived at once, and the wait starts over.
//! - **Trip.** After `burst` revivals within `interval`, no revival until `cooldown` has
//!   passed; then one; if it does not hold for a whole `interval`, the guard trips again.
//!
//! A manual `start` clears both. A revival keepup could not launch for a reason of its own (no
//! space for its files, no process slot) was not the service's crash, and is not counted.

use std::time::{Duration, SystemTime};

use crate::config::RestartLimit;
use crate::events::{Event, Kind, Outcome};

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

/// Whether `event` launched the service (or adopted it): a manual start, or a revival keepup
/// itself carried out, whatever became of the service.
fn launched(event: &Event) -> bool {
    match event.event {
        Kind::Start => true,
        Kind::Revive => event.outcome != Outcome::NotLaunched,
        _ => false,
    }
}

/// The wait before the launch that follows `short` short runs in a row.
fn wait_after(limit: &RestartLimit, short: u32) -> Duration {
    if short == 0 {
        return Duration::ZERO;
    }
    limit
        .backoff
        .saturating_mul(1 << (short - 1).min(20))
        .min(limit.backoff_max)
}

/// The verdict at `now`. The wall clock may step (a Raspberry Pi without a real-time clock
/// boots in the past and NTP steps it forward; a laptop's clock can step back): an event later
/// than `now` counts as happening now, never as a negative age. A trip from the future trips
/// again now (so it is recorded at a time the clock has reached, and a step back delays a
/// revival by at most `cooldown`), and a launch from the future imposes no backoff.
#[must_use]
pub fn judge(events: &[Event], now: SystemTime, limit: &RestartLimit) -> Verdict {
    // The last manual start clears the guard, and is where the backoff counts from.
    let from = events
        .iter()
        .rposition(|e| e.event == Kind::Start)
        .unwrap_or(0);
    let recent = &events[from..];
    let at = |e: &Event| e.at().map(|t| t.min(now));
    let counted = |e: &&Event| e.event == Kind::Revive && launched(e);
    let revivals: Vec<SystemTime> = recent.iter().filter(counted).filter_map(at).collect();
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
            .filter(counted)
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
    backoff(recent, now, limit).map_or(Verdict::Revive, |until| Verdict::Backoff { until })
}

/// When the next launch may be, if not now: `recent` holds the launches since the last manual
/// start. How long each instance ran is read from the gaps between launches (the death itself
/// is not recorded): a gap shorter than `backoff_max` plus the wait it began with was a short
/// run. A crash seen at least `backoff_max` after its launch followed a healthy run, and since
/// no wait is longer, it is never held back.
fn backoff(recent: &[Event], now: SystemTime, limit: &RestartLimit) -> Option<SystemTime> {
    let launches: Vec<SystemTime> = recent
        .iter()
        .filter(|e| launched(e))
        .filter_map(Event::at)
        .collect();
    let last = *launches.last()?;
    // The clock stepped back past it: how long it ran is unknown, so it is not held against it.
    if last > now {
        return None;
    }
    let mut short: u32 = 0;
    for pair in launches.windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap_or_default();
        short = if gap < limit.backoff_max + wait_after(limit, short + 1) {
            short.saturating_add(1)
        } else {
            0
        };
    }
    let until = last + wait_after(limit, short + 1);
    (now < until).then_some(until)
}

/// The guard as `status` tells it: the same judgement as a revival's, of a service that may
/// be running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Ok,
    /// Dead, and the next revival waits until then.
    Backoff(SystemTime),
    /// No revival before then.
    Tripped(SystemTime),
    /// Running, and a crash now would trip the guard (`revivals` within `interval`, or the
    /// retry after a trip has not yet held for a whole `interval`).
    Armed {
        revivals: usize,
    },
}

#[must_use]
pub fn standing(
    events: &[Event],
    now: SystemTime,
    limit: &RestartLimit,
    running: bool,
) -> Standing {
    match judge(events, now, limit) {
        Verdict::Revive => Standing::Ok,
        // A wait before the next launch means nothing while this one runs.
        Verdict::Backoff { .. } if running => Standing::Ok,
        Verdict::Backoff { until } => Standing::Backoff(until),
        Verdict::Tripped {
            new: true,
            revivals,
            ..
        } if running => Standing::Armed { revivals },
        Verdict::Tripped { until, .. } => Standing::Tripped(until),
    }
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
        .filter(|e| e.event == Kind::Revive && launched(e))
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
        backoff_max: Duration::ZERO,
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
    fn backoff_doubles_between_short_runs() {
        let limit = RestartLimit {
            burst: 100,
            backoff: Duration::from_secs(10),
            backoff_max: Duration::from_secs(100),
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
        // A run of backoff_max or more was healthy: revived at once, and the wait starts over.
        let healthy = vec![event(Kind::Revive, 0), event(Kind::Revive, 10)];
        assert_eq!(judge(&healthy, at(110), &limit), Verdict::Revive);
        let after_healthy = vec![
            event(Kind::Revive, 0),
            event(Kind::Revive, 10),
            event(Kind::Revive, 200),
        ];
        assert_eq!(
            judge(&after_healthy, at(201), &limit),
            Verdict::Backoff { until: at(210) }
        );
    }

    #[test]
    fn a_launch_keepup_could_not_make_is_not_counted() {
        let limit = RestartLimit { burst: 2, ..LIMIT };
        let mut events = vec![event(Kind::Start, 0)];
        for second in 1..=50 {
            let mut e = event(Kind::Revive, second);
            e.outcome = Outcome::NotLaunched;
            events.push(e);
        }
        assert_eq!(judge(&events, at(51), &limit), Verdict::Revive);
        assert_eq!(
            revivals_within(&events, at(51), Duration::from_secs(600)),
            0
        );
    }

    /// Plays the watcher against a service that dies at once while `blocked(t)` holds, and
    /// otherwise stays up; returns the launch times (seconds since the first crash).
    fn watch(limit: &RestartLimit, blocked: impl Fn(u64) -> bool, until: u64) -> Vec<u64> {
        let mut events = vec![event(Kind::Start, 0)];
        // Up for an hour, then the first crash.
        let mut now = 3600;
        let mut launches = Vec::new();
        while now < 3600 + until {
            match judge(&events, at(now), limit) {
                Verdict::Revive => {
                    events.push(event(Kind::Revive, now));
                    launches.push(now - 3600);
                    if !blocked(now - 3600) {
                        break;
                    }
                }
                Verdict::Backoff { until } => {
                    now = until.duration_since(at(0)).unwrap().as_secs();
                }
                Verdict::Tripped { until, new, .. } => {
                    if new {
                        events.push(event(Kind::GuardTrip, now));
                    }
                    now = until.duration_since(at(0)).unwrap().as_secs();
                }
            }
        }
        launches
    }

    fn defaults() -> RestartLimit {
        crate::config::parse(
            std::path::Path::new("/srv/bot/keepup.toml"),
            "entry = \"bot.py\"\n",
        )
        .unwrap()
        .restart_limit
    }

    /// The README's timeline: at default settings, a crash after a healthy run is revived at
    /// once; a permanent loop costs 9 launches in its first minute and trips at the tenth,
    /// then costs one launch every cooldown, forever.
    #[test]
    fn a_permanent_crash_loop_at_default_settings() {
        let limit = defaults();
        let launches = watch(&limit, |_| true, 3600);
        assert_eq!(
            launches[..10],
            [0, 1, 3, 7, 15, 25, 35, 45, 55, 65],
            "{launches:?}"
        );
        assert_eq!(launches.iter().filter(|t| **t < 60).count(), 9);
        for pair in launches[10..].windows(2) {
            assert_eq!(pair[1] - pair[0], 300, "{launches:?}");
        }
        assert_eq!(launches[10], 365);
        assert_eq!(launches.len(), 21, "{launches:?}");
    }

    /// `watch = false`: the timer finds the service dead at each minute's check, and cannot
    /// tell how long it ran. At default settings it trips after ten revivals in ten minutes,
    /// then revives once every five.
    #[test]
    fn the_timer_alone_at_default_settings() {
        let story = play(&defaults(), 3600, 60);
        let revivals = |from: u64, to: u64| {
            story
                .iter()
                .filter(|(t, what)| *what == "revive" && (from..to).contains(t))
                .count()
        };
        assert_eq!(story.iter().position(|(_, w)| *w == "trip"), Some(10));
        assert_eq!(revivals(0, 660), 10);
        for hour_part in (900..3600).step_by(300) {
            assert!(revivals(hour_part, hour_part + 300) <= 1, "{story:?}");
        }
    }

    /// A port still held, a database down, no space: for up to 30 s every launch dies at once.
    /// The service is back within 10 s of the cause's end, whenever that is.
    #[test]
    fn a_passing_cause_of_up_to_thirty_seconds_is_outlived() {
        let limit = defaults();
        for ends in 0..=30 {
            let launches = watch(&limit, |t| t < ends, 3600);
            let back = *launches.last().unwrap();
            assert!(
                back >= ends && back < ends + 10,
                "cause ended at {ends} s, back at {back} s: {launches:?}"
            );
        }
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
            backoff_max: Duration::from_secs(100),
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
