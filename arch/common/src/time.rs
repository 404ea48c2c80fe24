//! The clocks: a counter every CPU can read, converted to nanoseconds; and
//! the machine's real-time clock (the date), which the kernel reads once
//! at boot and advances with the counter.

/// The clocks an arch provides.
pub trait Time {
    /// Nanoseconds since an arbitrary point (boot). Monotonic on one CPU.
    fn now_ns() -> u64;

    /// The clock's name and rate in Hz, printed once at boot.
    fn describe_clock() -> (&'static str, u64);

    /// The real-time clock, read from the device now: seconds since the
    /// Unix epoch (UTC), and the device's name. `None` when the machine
    /// has none (or none was found) or it reads a date that is not one.
    /// A device access (slow, port or MMIO); the kernel calls it once.
    fn rtc_unix_secs() -> Option<(u64, &'static str)>;
}

/// A calendar date and time of day (UTC) as a real-time clock keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    /// The full year (e.g. 2026).
    pub year: u32,
    /// 1..=12.
    pub month: u32,
    /// 1..=31 (checked against the month's length).
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl CivilTime {
    /// Seconds since 1970-01-01 00:00:00 UTC, or `None` for a date before
    /// 1970 or a field out of range (a clock that reads garbage).
    pub fn unix_secs(&self) -> Option<u64> {
        let leap = |y: u32| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let month_days = |y: u32, m: u32| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if self.year < 1970
            || self.year > 9999
            || !(1..=12).contains(&self.month)
            || self.day == 0
            || self.day > month_days(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 59
        {
            return None;
        }
        let days_before_year: u64 = (1970..self.year).map(|y| if leap(y) { 366 } else { 365 }).sum();
        let days_before_month: u64 = (1..self.month).map(|m| month_days(self.year, m) as u64).sum();
        let days = days_before_year + days_before_month + (self.day - 1) as u64;
        Some(((days * 24 + self.hour as u64) * 60 + self.minute as u64) * 60 + self.second as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::CivilTime;

    fn t(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<u64> {
        CivilTime { year, month, day, hour, minute, second }.unix_secs()
    }

    #[test]
    fn known_dates() {
        assert_eq!(t(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(t(1970, 1, 2, 0, 0, 1), Some(86_401));
        // `date -u -d 2000-02-29T12:34:56 +%s`
        assert_eq!(t(2000, 2, 29, 12, 34, 56), Some(951_827_696));
        assert_eq!(t(2024, 1, 1, 0, 0, 0), Some(1_704_067_200));
        assert_eq!(t(2038, 1, 19, 3, 14, 8), Some(1 << 31));
        assert_eq!(t(2100, 3, 1, 0, 0, 0), Some(4_107_542_400));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(t(1969, 12, 31, 23, 59, 59), None);
        assert_eq!(t(2023, 2, 29, 0, 0, 0), None);
        assert_eq!(t(2100, 2, 29, 0, 0, 0), None);
        assert_eq!(t(2024, 13, 1, 0, 0, 0), None);
        assert_eq!(t(2024, 4, 31, 0, 0, 0), None);
        assert_eq!(t(2024, 1, 0, 0, 0, 0), None);
        assert_eq!(t(2024, 1, 1, 24, 0, 0), None);
        assert_eq!(t(2024, 1, 1, 0, 60, 0), None);
        assert_eq!(t(2024, 1, 1, 0, 0, 60), None);
    }
}
