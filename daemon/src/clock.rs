//! Time as the domain logic sees it: whole seconds since the Unix epoch, and the time since
//! the host booted (which nobody can set back), from a clock that tests can set.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send {
    fn now(&self) -> i64;
    /// Where this boot of the host is (see [`Boot`]).
    fn boot(&self) -> Boot;
}

/// Seconds since the host booted, suspended time included (CLOCK_BOOTTIME: it only moves
/// forward, whatever is done to the wall clock), and which boot that is (the kernel's boot
/// id; empty when it cannot be read). Two of them compare only under the same id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Boot {
    pub id: String,
    pub secs: i64,
}

/// The real clock.
pub struct SystemClock;

/// The kernel's id of this boot.
pub const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    fn boot(&self) -> Boot {
        // The id cannot change while this process lives; one that could not be read is
        // read again next time.
        static ID: OnceLock<String> = OnceLock::new();
        let id = match ID.get() {
            Some(id) => id.clone(),
            None => match std::fs::read_to_string(BOOT_ID) {
                Ok(id) if !id.trim().is_empty() => ID.get_or_init(|| id.trim().to_string()).clone(),
                _ => String::new(),
            },
        };
        match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
            Ok(t) => Boot {
                id,
                secs: t.tv_sec(),
            },
            // No boot time: no id either, so that nothing compares as fresh.
            Err(_) => Boot::default(),
        }
    }
}

#[cfg(test)]
pub mod fake {
    use super::{Boot, Clock};
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use std::sync::Arc;

    /// A clock that only moves when told to; clones share the same time. Time passing moves
    /// the wall clock and the boot time alike; the wall clock can also be set on its own, and
    /// the host rebooted.
    #[derive(Clone)]
    pub struct FakeClock(Arc<Times>);

    struct Times {
        wall: AtomicI64,
        boot_secs: AtomicI64,
        boots: AtomicI64,
        boot_id_lost: AtomicBool,
    }

    impl FakeClock {
        pub fn at(now: i64) -> Self {
            FakeClock(Arc::new(Times {
                wall: AtomicI64::new(now),
                boot_secs: AtomicI64::new(1000),
                boots: AtomicI64::new(1),
                boot_id_lost: AtomicBool::new(false),
            }))
        }
        pub fn advance(&self, secs: i64) {
            self.0.wall.fetch_add(secs, Ordering::SeqCst);
            self.0.boot_secs.fetch_add(secs, Ordering::SeqCst);
        }
        /// Sets the wall clock `secs` on (back when negative); no time passes.
        pub fn step_wall(&self, secs: i64) {
            self.0.wall.fetch_add(secs, Ordering::SeqCst);
        }
        /// The boot id cannot be read from now on (as when /proc is not mounted).
        pub fn lose_boot_id(&self) {
            self.0.boot_id_lost.store(true, Ordering::SeqCst);
        }
        /// A new boot, just started (the wall clock goes on).
        pub fn reboot(&self) {
            self.0.boots.fetch_add(1, Ordering::SeqCst);
            self.0.boot_secs.store(0, Ordering::SeqCst);
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> i64 {
            self.0.wall.load(Ordering::SeqCst)
        }
        fn boot(&self) -> Boot {
            let id = if self.0.boot_id_lost.load(Ordering::SeqCst) {
                String::new()
            } else {
                format!("boot-{}", self.0.boots.load(Ordering::SeqCst))
            };
            Boot {
                id,
                secs: self.0.boot_secs.load(Ordering::SeqCst),
            }
        }
    }
}

/// `HH:MM UTC` on the day, or the full date when it is not today; for one-line messages.
pub fn describe(at: i64, now: i64) -> String {
    let (days, secs) = (at.div_euclid(86400), at.rem_euclid(86400));
    let clock = format!("{:02}:{:02} UTC", secs / 3600, secs % 3600 / 60);
    if days == now.div_euclid(86400) {
        clock
    } else {
        let (y, m, d) = civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02} {clock}")
    }
}

/// Gregorian date of a day number (days since 1970-01-01), after Howard Hinnant's algorithm.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_same_day_then_only_the_time_is_shown() {
        // 2026-11-21 14:02:00 UTC
        assert_eq!(describe(1_795_269_720, 1_795_269_600), "14:02 UTC");
    }

    #[test]
    fn given_another_day_then_the_date_is_shown() {
        assert_eq!(
            describe(1_795_269_720, 1_795_269_720 + 86400),
            "2026-11-21 14:02 UTC"
        );
        assert_eq!(describe(0, 86400 * 3), "1970-01-01 00:00 UTC");
        assert_eq!(describe(951_782_400, 0), "2000-02-29 00:00 UTC");
    }
}
