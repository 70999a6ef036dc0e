//! The times `portwatch history` accepts: RFC 3339, a local date and
//! time, a local time of day (the last one that has passed), or a span
//! ago. Pure: the caller gives the time zone and the present.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

const FORMS: &str = "e.g. 2026-12-04T03:12:00Z, 2026-12-04 03:12, 2026-12-04, 03:12, 2h ago, now";

/// `text` as an instant, read in `tz` where it names no zone.
pub fn parse<Tz: TimeZone>(text: &str, now: DateTime<Tz>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "`{}` is no time ({FORMS})",
            crate::safe_text::safe_str(&t.chars().take(64).collect::<String>())
        )
    };
    if t == "now" {
        return Ok(now.with_timezone(&Utc));
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Some(span) = t.strip_suffix(" ago").or_else(|| t.strip_prefix('-')) {
        let span = span.trim();
        let (digits, unit) =
            span.split_at(span.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
        let n: i64 = digits.parse().map_err(|_| bad())?;
        let d = match unit.trim() {
            "s" => Duration::try_seconds(n),
            "m" | "min" => Duration::try_minutes(n),
            "h" => Duration::try_hours(n),
            "d" => Duration::try_days(n),
            _ => None,
        }
        .ok_or_else(bad)?;
        return now
            .with_timezone(&Utc)
            .checked_sub_signed(d)
            .ok_or_else(bad);
    }
    let tz = now.timezone();
    let local = |naive: NaiveDateTime| {
        tz.from_local_datetime(&naive)
            .earliest()
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| format!("{t} does not exist in the local time zone (a clock change)"))
    };
    for form in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, form) {
            return local(naive);
        }
    }
    if let Ok(day) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return local(day.and_time(NaiveTime::MIN));
    }
    for form in ["%H:%M:%S%.f", "%H:%M"] {
        if let Ok(time) = NaiveTime::parse_from_str(t, form) {
            let today = now.date_naive().and_time(time);
            let at = local(today)?;
            // The last such time that has passed: 03:12 at noon is today's,
            // 23:00 at noon is yesterday's.
            return if at > now.with_timezone(&Utc) {
                local(today - Duration::days(1))
            } else {
                Ok(at)
            };
        }
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use chrono::FixedOffset;

    use super::*;

    fn now() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-12-04T12:00:00+01:00").unwrap()
    }

    fn at(text: &str) -> String {
        parse(text, now()).map_or_else(|e| e, |t| crate::wire::format_ts(&t))
    }

    #[test]
    fn every_form_reads() {
        assert_eq!(at("2026-12-04T03:12:00Z"), "2026-12-04T03:12:00.000000Z");
        assert_eq!(at("2026-12-04 03:12"), "2026-12-04T02:12:00.000000Z");
        assert_eq!(at("2026-12-04T03:12:30.5"), "2026-12-04T02:12:30.500000Z");
        assert_eq!(at("2026-12-03"), "2026-12-02T23:00:00.000000Z");
        assert_eq!(at("03:12"), "2026-12-04T02:12:00.000000Z");
        assert_eq!(
            at("23:00"),
            "2026-12-03T22:00:00.000000Z",
            "the last one past"
        );
        assert_eq!(at("2h ago"), "2026-12-04T09:00:00.000000Z");
        assert_eq!(at("-30m"), "2026-12-04T10:30:00.000000Z");
        assert_eq!(at("now"), "2026-12-04T11:00:00.000000Z");
    }

    #[test]
    fn what_is_no_time_says_so() {
        for bad in [
            "",
            "yesterday",
            "25:00",
            "2026-13-01",
            "5 parsecs ago",
            "100000000d ago",
            "99999999999999999d ago",
            "\u{1b}[31m",
        ] {
            let e = at(bad);
            assert!(e.contains("is no time"), "{bad}: {e}");
            assert!(!e.contains('\u{1b}'));
        }
    }
}
