//! A small `log` backend: one line per record on stderr, as text for people
//! or JSON for log shippers. Written here rather than pulled in because the
//! agent needs nothing more and every dependency costs bytes on the gateway.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};
use serde::Deserialize;

struct StderrLogger {
    format: LogFormat,
}

/// Installs the logger; `DEDGE_LOG` (error|warn|info|debug|trace) overrides
/// `level` so an operator can turn up detail without editing the board file.
pub fn init(level: LevelFilter, format: LogFormat) {
    let level = std::env::var("DEDGE_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(level);
    // Only fails if a logger is already set (tests, repeated init): keep it.
    if log::set_boxed_logger(Box::new(StderrLogger { format })).is_ok() {
        log::set_max_level(level);
    }
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        admits(metadata.target(), metadata.level(), log::max_level())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_record(self.format, unix_now(), record);
        // A closed stderr must not take the agent down with it.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Whether a record of `target` at `level` is written under `max`. Our
/// dependencies (sled, ureq, rustls) say at debug level what only their
/// own developers want, at every request: info at most for them.
fn admits(target: &str, level: log::Level, max: LevelFilter) -> bool {
    let ours = target == "dedge" || target.starts_with("dedge::");
    level <= max && (ours || level <= log::Level::Info)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn format_record(format: LogFormat, unix_secs: u64, record: &Record<'_>) -> String {
    let ts = rfc3339(unix_secs);
    match format {
        LogFormat::Text => format!(
            "{ts} {:<5} {}: {}\n",
            record.level(),
            record.target(),
            record.args()
        ),
        LogFormat::Json => {
            let obj = serde_json::json!({
                "ts": ts,
                "level": record.level().as_str(),
                "target": record.target(),
                "msg": record.args().to_string(),
            });
            format!("{obj}\n")
        }
    }
}

/// `2026-11-24T10:20:00Z` from Unix seconds (UTC), by the days-from-civil
/// algorithm, so no date crate is needed.
fn rfc3339(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

/// An error and its causes on one line, `outer: cause: root`: how errors
/// become text where they leave the program (a log line, an answer to a
/// peer, the CLI's message).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Text from outside (a buyer's reason, a peer's message) made safe to
/// keep and log: at most `max` characters, control characters and quotes
/// escaped, so it cannot forge log lines or terminal sequences.
pub(crate) fn untrusted(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Text from outside shown to a person (a gateway's report on chain, read
/// by the operator's CLI): at most `max` characters, anything but
/// printable ASCII escaped (control characters, and the invisible or
/// direction-changing ones that would make a line read other than it is),
/// quotes kept (it is not put inside quotes).
pub(crate) fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().take(max) {
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per record.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[cfg(test)]
mod tests {
    #[test]
    fn dependencies_stay_at_info_while_the_agent_says_more() {
        use log::{Level, LevelFilter};
        assert!(super::admits(
            "dedge::agent::control",
            Level::Debug,
            LevelFilter::Debug
        ));
        assert!(!super::admits(
            "sled::pagecache",
            Level::Debug,
            LevelFilter::Debug
        ));
        assert!(!super::admits("dedgex", Level::Debug, LevelFilter::Trace));
        assert!(super::admits("ureq::run", Level::Info, LevelFilter::Debug));
        assert!(!super::admits("dedge::cli", Level::Info, LevelFilter::Warn));
    }

    use super::*;

    #[test]
    fn timestamps_match_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_515_600), "2026-11-24T10:20:00Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn records_render_as_text_and_json() {
        let args = format_args!("lease {} \"frozen\"", 7);
        let record = Record::builder()
            .level(log::Level::Warn)
            .target("dedge::agent")
            .args(args)
            .build();
        let text = format_record(LogFormat::Text, 0, &record);
        assert_eq!(
            text,
            "1970-01-01T00:00:00Z WARN  dedge::agent: lease 7 \"frozen\"\n"
        );
        let json = format_record(LogFormat::Json, 0, &record);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["msg"], "lease 7 \"frozen\"");
        assert_eq!(v["ts"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn outside_text_is_capped_and_cannot_forge_a_log_line() {
        let forged = "done\n2026-01-01T00:00:00Z ERROR dedge: \u{1b}[31mfake";
        let kept = untrusted(forged, 200);
        assert!(!kept.contains('\n') && !kept.contains('\u{1b}'), "{kept}");
        assert!(kept.starts_with("done\\n"), "{kept}");
        assert_eq!(untrusted("abcdef", 3), "abc…");
        assert_eq!(untrusted("abc", 3), "abc");
    }
}
