//! EdgeX Foundry: the gateway's sensors and actuators, leased to tenants
//! through the agent.
//!
//! - `client`: the v3 API of core-metadata, core-command and core-data,
//!   with the secure-mode login;
//! - `model`: the API's JSON as the real services send it;
//! - `value`: value types and the check every write a tenant asks for goes
//!   through, after how device-sdk-go parses them;
//! - `catalogue`: which devices and commands the gateway sells;
//! - `bridge`: the per-lease API inside a container, over `http`;
//! - `meter`: per-lease, per-device counts in sled.
//!
//! docs/edgex.md has the API, the quirks of the real services and the
//! refused tricks; tests/edgex/ the simulator the tests talk to.

pub mod bridge;
pub mod catalogue;
pub mod client;
pub mod grants;
pub mod http;
pub mod meter;
pub mod model;
pub mod value;

/// `time.UnixDate` (`Tue Nov 24 12:38:00 UTC 2026`) of a Unix time, as
/// EdgeX's ping reports it.
pub fn unix_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} UTC {year}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What can go wrong talking to EdgeX or checking a tenant's request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Value(String),
    /// The service answered with an error status (EdgeX's message kept).
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    /// The service could not be reached or did not answer in time.
    #[error("EdgeX unavailable: {0}")]
    Unavailable(String),
    #[error("EdgeX login: {0}")]
    Auth(String),
    #[error("EdgeX usage store: {0}")]
    Store(String),
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_date_is_gos() {
        assert_eq!(super::unix_date(0), "Thu Jan  1 00:00:00 UTC 1970");
        // date -u -d @1795523880
        assert_eq!(
            super::unix_date(1_795_523_880),
            "Tue Nov 24 12:38:00 UTC 2026"
        );
        assert_eq!(
            super::unix_date(951_782_400),
            "Tue Feb 29 00:00:00 UTC 2000"
        );
    }
}
