//! Calendar dates without a date library: the one conversion from a day count to a proleptic
//! Gregorian civil date (Howard Hinnant's `civil_from_days`), used for the simulated MAPS headers'
//! observation dates and the time stamps of the explorer's labels.

/// Days between the Unix epoch (1970-01-01) and MJD 0 (1858-11-17).
const MJD_OF_UNIX_EPOCH: i64 = 40_587;

/// The civil date `(year, month, day)` of a count of days since 1970-01-01 (negative before).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31 by construction.
    (year, month as u32, day as u32)
}

/// Civil date (`YYYY-MM-DD`) of a modified Julian date.
pub fn mjd_to_date(mjd: u32) -> String {
    let (year, month, day) = civil_from_days(i64::from(mjd) - MJD_OF_UNIX_EPOCH);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Seconds since the Unix epoch as ISO 8601 UTC (`2026-11-28T14:30:00Z`).
pub fn iso8601(secs: u64) -> String {
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The current time as ISO 8601 UTC; the epoch itself if the clock reads before 1970.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    iso8601(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(mjd_to_date(40_587), "1970-01-01");
        assert_eq!(mjd_to_date(56_842), "2014-07-04");
        assert_eq!(mjd_to_date(51_544), "2000-01-01");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_876_200), "2026-11-28T14:30:00Z");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // Walking 1600–2400 day by day: the date advances by one day, months and years roll over
        // at their real lengths (leap years included), so the conversion has no gaps or repeats.
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let length = |y: i64, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let start = -135_140; // 1600-01-01
        let mut previous = civil_from_days(start);
        assert_eq!(previous, (1600, 1, 1));
        for days in start + 1..start + 292_000 {
            let (y, m, d) = previous;
            let expected = if d < length(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            let now = civil_from_days(days);
            assert_eq!(now, expected, "day {days}");
            previous = now;
        }
    }
}
