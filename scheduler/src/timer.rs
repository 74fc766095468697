//! The timer trigger's time specs: Zuul's `time: '<minute> <hour> <day> <month> <day-of-week>
//! [<second>] [<jitter>]'`, which Zuul hands to APScheduler's cron trigger, so the field
//! grammar and meaning are APScheduler's: `*`, `*/n`, `a`, `a-b`, `a-b/n`, `a/n` and lists of
//! these; month names (`jan`..`dec`); day-of-week numbers count from Monday (`0`..`6`, or
//! `mon`..`sun`); the day field also takes `last`. Every field must match (day and day-of-week
//! are ANDed, unlike classic cron). Without a seconds field the spec fires at second 0. Times
//! are the scheduler's local time. The jitter delays each project-branch's fire time by a fixed
//! amount in `[0, jitter)` seconds derived from tenant, project and branch.

use chrono::{
    DateTime, Datelike, Duration, Local, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike,
};

/// One parsed `time` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSpec {
    /// The text as configured (timer events carry it to match their filter).
    pub text: String,
    seconds: Vec<bool>,
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    last_day: bool,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    /// Upper bound of the per-project-branch delay, in seconds.
    pub jitter: Option<u64>,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A field's allowed values (`min..=max`) and names (index 0 is `min`).
struct FieldRule {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

fn value(rule: &FieldRule, text: &str) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = rule.names.iter().position(|n| *n == lower) {
        return Ok(rule.min + i as u32);
    }
    let v: u32 = text
        .parse()
        .map_err(|_| format!("{} field: {text:?} is not a number", rule.name))?;
    if v < rule.min || v > rule.max {
        return Err(format!(
            "{} field: {v} is outside {}-{}",
            rule.name, rule.min, rule.max
        ));
    }
    Ok(v)
}

/// Parses one field into a table indexed by value (`max + 1` entries).
fn field(rule: &FieldRule, text: &str) -> Result<Vec<bool>, String> {
    let mut set = vec![false; rule.max as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{} field: bad step in {part:?}", rule.name))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (first, last) = if range == "*" {
            (rule.min, rule.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(rule, a)?, value(rule, b)?)
        } else {
            let a = value(rule, range)?;
            // `a/n` runs from a to the end; a bare `a` is just a.
            (a, if part.contains('/') { rule.max } else { a })
        };
        if first > last {
            return Err(format!("{} field: empty range {part:?}", rule.name));
        }
        let mut v = first;
        while v <= last {
            set[v as usize] = true;
            v += step;
        }
    }
    Ok(set)
}

impl CronSpec {
    /// Parses a `time` value; the error says which field is wrong.
    pub fn parse(text: &str) -> Result<CronSpec, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() < 5 || parts.len() > 7 {
            return Err(format!(
                "time {text:?}: expected 5 to 7 fields (minute hour day month day-of-week [second] [jitter])"
            ));
        }
        let err = |e: String| format!("time {text:?}: {e}");
        let rule = |name, min, max, names| FieldRule {
            name,
            min,
            max,
            names,
        };
        let (days, last_day) = if parts[2].eq_ignore_ascii_case("last") {
            (vec![false; 32], true)
        } else {
            (
                field(&rule("day", 1, 31, &[]), parts[2]).map_err(err)?,
                false,
            )
        };
        let seconds = match parts.get(5) {
            Some(s) => field(&rule("second", 0, 59, &[]), s).map_err(err)?,
            None => {
                let mut only_zero = vec![false; 60];
                only_zero[0] = true;
                only_zero
            }
        };
        let jitter = match parts.get(6) {
            Some(j) => Some(
                j.parse::<u64>()
                    .map_err(|_| err(format!("jitter {j:?} is not a number of seconds")))?,
            ),
            None => None,
        };
        Ok(CronSpec {
            text: text.to_string(),
            seconds,
            minutes: field(&rule("minute", 0, 59, &[]), parts[0]).map_err(err)?,
            hours: field(&rule("hour", 0, 23, &[]), parts[1]).map_err(err)?,
            days,
            last_day,
            months: field(&rule("month", 1, 12, &MONTHS), parts[3]).map_err(err)?,
            weekdays: field(&rule("day-of-week", 0, 6, &WEEKDAYS), parts[4]).map_err(err)?,
            jitter: jitter.filter(|j| *j > 0),
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let day_ok = if self.last_day {
            date.succ_opt()
                .is_none_or(|next| next.month() != date.month())
        } else {
            self.days[date.day() as usize]
        };
        day_ok && self.weekdays[date.weekday().num_days_from_monday() as usize]
    }

    /// The first fire time strictly after `after` (local time), without jitter; `None` if the
    /// spec never fires (e.g. February 31st) within the next eight years.
    pub fn next_after(&self, after: DateTime<Local>) -> Option<DateTime<Local>> {
        let start = after.naive_local().with_nanosecond(0)? + Duration::seconds(1);
        let limit = start + Duration::days(366 * 8);
        let mut t = start;
        while t < limit {
            if !self.months[t.month() as usize] {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.hours[t.hour() as usize] {
                t = next_unit(t, 3600);
                continue;
            }
            if !self.minutes[t.minute() as usize] {
                t = next_unit(t, 60);
                continue;
            }
            if !self.seconds[t.second() as usize] {
                t += Duration::seconds(1);
                continue;
            }
            match Local.from_local_datetime(&t) {
                LocalResult::Single(d) => return Some(d),
                LocalResult::Ambiguous(d, _) => return Some(d),
                // A time skipped by a daylight-saving change: try the next one.
                LocalResult::None => t += Duration::seconds(1),
            }
        }
        None
    }

    /// This spec's delay for one project-branch: stable across restarts and schedulers.
    pub fn jitter_for(&self, tenant: &str, project: &str, branch: &str) -> Duration {
        let Some(jitter) = self.jitter else {
            return Duration::zero();
        };
        // FNV-1a over the key: a stable, evenly spread fraction of the jitter.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in format!("{tenant}\0{project}\0{branch}").bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let millis = (hash % 1_000_000) * jitter * 1000 / 1_000_000;
        Duration::milliseconds(millis as i64)
    }
}

/// The start of the next hour (`unit` 3600) or minute (`unit` 60) after `t`.
fn next_unit(t: NaiveDateTime, unit: i64) -> NaiveDateTime {
    let secs = i64::from(t.num_seconds_from_midnight());
    let next = (secs / unit + 1) * unit;
    t.date().and_hms_opt(0, 0, 0).unwrap_or(t) + Duration::seconds(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Local> {
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        Local.from_local_datetime(&naive).earliest().unwrap()
    }

    fn next(spec: &str, from: &str) -> String {
        CronSpec::parse(spec)
            .unwrap()
            .next_after(at(from))
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    #[test]
    fn five_fields_fire_at_second_zero() {
        assert_eq!(
            next("0 0 * * *", "2024-03-10 12:00:00"),
            "2024-03-11 00:00:00"
        );
        assert_eq!(
            next("*/15 * * * *", "2024-03-10 12:07:30"),
            "2024-03-10 12:15:00"
        );
        assert_eq!(
            next("0 6 * * *", "2024-12-31 23:59:59"),
            "2025-01-01 06:00:00"
        );
    }

    #[test]
    fn seconds_field_and_ranges() {
        assert_eq!(
            next("* * * * * */2", "2024-03-10 12:00:01"),
            "2024-03-10 12:00:02"
        );
        assert_eq!(
            next("* * * * * */2", "2024-03-10 12:00:02"),
            "2024-03-10 12:00:04"
        );
        assert_eq!(
            next("30 9-17/4 * * *", "2024-03-10 14:00:00"),
            "2024-03-10 17:30:00"
        );
        assert_eq!(
            next("0 0 1,15 * *", "2024-03-02 00:00:00"),
            "2024-03-15 00:00:00"
        );
    }

    #[test]
    fn names_weekdays_from_monday_and_last_day() {
        // 2024-03-10 is a Sunday; APScheduler's 0 is Monday.
        assert_eq!(
            next("0 8 * * 0", "2024-03-10 12:00:00"),
            "2024-03-11 08:00:00"
        );
        assert_eq!(
            next("0 8 * * sat-sun", "2024-03-11 12:00:00"),
            "2024-03-16 08:00:00"
        );
        assert_eq!(
            next("0 0 * feb *", "2024-03-10 00:00:00"),
            "2025-02-01 00:00:00"
        );
        assert_eq!(
            next("0 0 last * *", "2024-02-10 00:00:00"),
            "2024-02-29 00:00:00"
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, wanted) in [
            ("* * * *", "expected 5 to 7 fields"),
            ("61 * * * *", "minute field: 61 is outside 0-59"),
            ("* * * * mon-xyz", "day-of-week field"),
            ("* * * * * */0", "second field: bad step"),
            ("* * * * * * soon", "jitter"),
        ] {
            let e = CronSpec::parse(spec).unwrap_err();
            assert!(e.contains(wanted), "{spec}: {e}");
        }
        assert_eq!(
            CronSpec::parse("0 0 31 2 *")
                .unwrap()
                .next_after(at("2024-01-01 00:00:00")),
            None
        );
    }

    #[test]
    fn jitter_is_stable_and_bounded() {
        let spec = CronSpec::parse("0 0 * * * 0 600").unwrap();
        let a = spec.jitter_for("t", "org/a", "main");
        assert_eq!(a, spec.jitter_for("t", "org/a", "main"));
        assert!(a >= Duration::zero() && a < Duration::seconds(600));
        assert_ne!(a, spec.jitter_for("t", "org/b", "main"));
        assert_eq!(
            CronSpec::parse("0 0 * * *")
                .unwrap()
                .jitter_for("t", "x", "y"),
            Duration::zero()
        );
    }
}
