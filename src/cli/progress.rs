//! A one-line progress display on stderr, shown only on a terminal: piped
//! or logged output stays clean.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub(crate) struct Progress {
    label: String,
    total: Option<u64>,
    shown: bool,
    last: Option<Instant>,
    tty: bool,
}

const EVERY: Duration = Duration::from_millis(100);

impl Progress {
    pub(crate) fn new(label: &str, total: Option<u64>) -> Progress {
        Progress {
            label: label.to_string(),
            total,
            shown: false,
            last: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// `done` bytes so far; redrawn at most ten times a second.
    pub(crate) fn update(&mut self, done: u64) {
        if !self.tty || self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        let line = match self.total {
            Some(t) if t > 0 => format!(
                "{} {:.1} / {:.1} MiB ({:.0}%)",
                self.label,
                mib(done),
                mib(t),
                done as f64 * 100.0 / t as f64
            ),
            _ => format!("{} {:.1} MiB", self.label, mib(done)),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        self.shown = true;
    }
}

impl Drop for Progress {
    /// Clears the line, so what follows starts clean.
    fn drop(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
