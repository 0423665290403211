//! Whether a person is told about an event, from their preferences: pure functions, no I/O, so
//! every rule is tested in milliseconds.
//!
//! The level comes from the most specific scope that sets one (conversation, then workspace,
//! then organization, then the account); a mute anywhere in that chain holds everything back;
//! quiet hours (in the profile's time zone) hold back pushes. `mentions` lets through mentions,
//! calls and every message of a direct conversation.

use chrono::{DateTime, NaiveTime, Timelike, Utc};
use conclave_protocol::notifications::NotificationLevel;

/// Minutes after local midnight, from `HH:MM`.
pub fn parse_hhmm(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

pub fn format_hhmm(minutes: i16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// One scope's say: its level (None inherits) and its mute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scoped {
    pub level: Option<NotificationLevel>,
    pub muted_until: Option<DateTime<Utc>>,
}

/// Everything that decides for one recipient in one conversation.
#[derive(Debug, Clone, Default)]
pub struct Preferences {
    /// The account row (None: the defaults, everything on).
    pub account: Scoped,
    pub push_enabled: bool,
    /// Minutes after local midnight.
    pub quiet_hours: Option<(i16, i16)>,
    pub time_zone: Option<String>,
    /// Organization, workspace, conversation: any may be absent.
    pub overrides: Vec<Scoped>,
}

/// What happened, as far as notification rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The recipient was mentioned, or it is a call (both pass `mentions`).
    pub addressed: bool,
    pub direct_conversation: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Push,
    /// Not pushed, with the reason (a metric label).
    Skip(&'static str),
}

/// The level that applies: the most specific that is set.
pub fn effective_level(prefs: &Preferences) -> NotificationLevel {
    prefs.overrides.iter().rev().find_map(|s| s.level).or(prefs.account.level).unwrap_or(NotificationLevel::All)
}

/// Whether `now` falls in quiet hours `(start, end)` (minutes, local), spanning midnight when
/// start > end.
pub fn in_quiet_hours(quiet: (i16, i16), time_zone: Option<&str>, now: DateTime<Utc>) -> bool {
    let local: NaiveTime = match time_zone.and_then(|tz| tz.parse::<chrono_tz::Tz>().ok()) {
        Some(tz) => now.with_timezone(&tz).time(),
        None => now.time(),
    };
    let minute = (local.hour() * 60 + local.minute()) as i16;
    let (start, end) = quiet;
    if start < end { minute >= start && minute < end } else { minute >= start || minute < end }
}

pub fn decide(prefs: &Preferences, event: Event, now: DateTime<Utc>) -> Verdict {
    if !prefs.push_enabled {
        return Verdict::Skip("push_disabled");
    }
    let muted = std::iter::once(&prefs.account).chain(&prefs.overrides).any(|s| s.muted_until.is_some_and(|t| t > now));
    if muted {
        return Verdict::Skip("muted");
    }
    match effective_level(prefs) {
        NotificationLevel::None => return Verdict::Skip("level_none"),
        NotificationLevel::Mentions if !event.addressed && !event.direct_conversation => {
            return Verdict::Skip("level_mentions");
        }
        _ => {}
    }
    if let Some(quiet) = prefs.quiet_hours
        && in_quiet_hours(quiet, prefs.time_zone.as_deref(), now)
    {
        return Verdict::Skip("quiet_hours");
    }
    Verdict::Push
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn mk_prefs() -> Preferences {
        Preferences { push_enabled: true, ..Default::default() }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, h, m, 0).single().expect("time")
    }

    const MESSAGE: Event = Event { addressed: false, direct_conversation: false };
    const MENTION: Event = Event { addressed: true, direct_conversation: false };

    #[test]
    fn times_parse_as_two_digit_hours_and_minutes() {
        assert_eq!(parse_hhmm("00:00"), Some(0));
        assert_eq!(parse_hhmm("22:30"), Some(1350));
        assert_eq!(parse_hhmm("24:00"), None);
        assert_eq!(parse_hhmm("7:00"), None);
        assert_eq!(parse_hhmm("07:60"), None);
        assert_eq!(format_hhmm(1350), "22:30");
    }

    #[test]
    fn the_most_specific_level_wins_and_unset_ones_inherit() {
        let mut prefs = mk_prefs();
        prefs.account.level = Some(NotificationLevel::None);
        assert_eq!(decide(&prefs, MESSAGE, at(12, 0)), Verdict::Skip("level_none"));
        prefs.overrides = vec![
            Scoped { level: Some(NotificationLevel::All), muted_until: None },
            Scoped { level: None, muted_until: None },
        ];
        assert_eq!(decide(&prefs, MESSAGE, at(12, 0)), Verdict::Push);
        prefs.overrides.push(Scoped { level: Some(NotificationLevel::Mentions), muted_until: None });
        assert_eq!(decide(&prefs, MESSAGE, at(12, 0)), Verdict::Skip("level_mentions"));
        assert_eq!(decide(&prefs, MENTION, at(12, 0)), Verdict::Push);
        let direct = Event { addressed: false, direct_conversation: true };
        assert_eq!(decide(&prefs, direct, at(12, 0)), Verdict::Push);
    }

    #[test]
    fn a_mute_anywhere_in_the_chain_holds_pushes_until_it_ends() {
        let mut prefs = mk_prefs();
        prefs.overrides = vec![Scoped { level: None, muted_until: Some(at(13, 0)) }];
        assert_eq!(decide(&prefs, MENTION, at(12, 0)), Verdict::Skip("muted"));
        assert_eq!(decide(&prefs, MENTION, at(13, 1)), Verdict::Push);
    }

    #[test]
    fn quiet_hours_span_midnight_in_the_profiles_time_zone() {
        let mut prefs = mk_prefs();
        prefs.quiet_hours = Some((22 * 60, 7 * 60));
        assert_eq!(decide(&prefs, MESSAGE, at(23, 0)), Verdict::Skip("quiet_hours"));
        assert_eq!(decide(&prefs, MESSAGE, at(6, 59)), Verdict::Skip("quiet_hours"));
        assert_eq!(decide(&prefs, MESSAGE, at(7, 0)), Verdict::Push);
        // 20:00 UTC is 05:00 in Tokyo: inside.
        prefs.time_zone = Some("Asia/Tokyo".to_owned());
        assert_eq!(decide(&prefs, MESSAGE, at(20, 0)), Verdict::Skip("quiet_hours"));
        assert_eq!(decide(&prefs, MESSAGE, at(23, 0)), Verdict::Push);
        // A span inside one day.
        prefs.time_zone = None;
        prefs.quiet_hours = Some((12 * 60, 13 * 60));
        assert_eq!(decide(&prefs, MESSAGE, at(12, 30)), Verdict::Skip("quiet_hours"));
        assert_eq!(decide(&prefs, MESSAGE, at(13, 0)), Verdict::Push);
    }

    #[test]
    fn push_off_sends_nothing() {
        let prefs = Preferences { push_enabled: false, ..Default::default() };
        assert_eq!(decide(&prefs, MENTION, at(12, 0)), Verdict::Skip("push_disabled"));
    }
}
