//! Timestamps in the shapes Zuul writes them: Python's `str(datetime)` for job-output.txt lines
//! and `isoformat() + 'Z'` (UTC) for job-output.json durations.

use chrono::{DateTime, Local, Timelike, Utc};

/// `YYYY-MM-DD HH:MM:SS.ffffff`, the fraction omitted when the microseconds are 0.
pub fn format_local(ts: &DateTime<Local>) -> String {
    let micros = ts.nanosecond() % 1_000_000_000 / 1_000;
    if micros == 0 {
        ts.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        format!("{}.{micros:06}", ts.format("%Y-%m-%d %H:%M:%S"))
    }
}

/// The current local time as a job-output.txt timestamp.
pub fn now_local() -> String {
    format_local(&Local::now())
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), the fraction omitted when the microseconds are 0.
pub fn format_utc_iso(ts: &DateTime<Utc>) -> String {
    let micros = ts.nanosecond() % 1_000_000_000 / 1_000;
    if micros == 0 {
        ts.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        format!("{}.{micros:06}Z", ts.format("%Y-%m-%dT%H:%M:%S"))
    }
}

/// The current UTC time as a job-output.json timestamp.
pub fn now_utc_iso() -> String {
    format_utc_iso(&Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn local_fraction_is_omitted_when_zero() {
        let t = Local.with_ymd_and_hms(2026, 11, 26, 4, 37, 15).single();
        let Some(t) = t else { return };
        assert_eq!(format_local(&t), "2026-11-26 04:37:15");
        let t = t + chrono::Duration::microseconds(236_249);
        assert_eq!(format_local(&t), "2026-11-26 04:37:15.236249");
        let t = t + chrono::Duration::nanoseconds(999);
        assert_eq!(format_local(&t), "2026-11-26 04:37:15.236249");
    }

    #[test]
    fn utc_iso_matches_sample() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 4, 37, 10).unwrap()
            + chrono::Duration::microseconds(837_874);
        assert_eq!(format_utc_iso(&t), "2026-11-26T04:37:10.837874Z");
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 4, 37, 10).unwrap();
        assert_eq!(format_utc_iso(&t), "2026-11-26T04:37:10Z");
    }
}
