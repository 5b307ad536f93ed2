//! Human-written quantities: byte sizes, durations and EDG amounts.
//!
//! Board files and the buyer CLI take these as text. Parsing is strict on
//! purpose: a unit that could mean two things (`M`: MB or MiB?) and a float
//! that would lose precision (`0.1` EDG) are refused with the fix in the message.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Why a quantity did not parse; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl Error {
    fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

/// Splits `"1.5 GiB"` into (`"1.5"`, `"GiB"`), allowing one optional space.
fn split_number_unit(s: &str) -> (&str, &str) {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    (num, unit.trim_start())
}

/// Parses a non-negative decimal `int[.frac]` and scales it by `10^scale_digits
/// * multiplier`, refusing results that are not whole or overflow u128.
fn scaled_decimal(num: &str, multiplier: u128, what: &str) -> Result<u128, Error> {
    let clean: String = num.chars().filter(|&c| c != '_').collect();
    let (int_part, frac_part) = match clean.split_once('.') {
        Some((i, f)) => (i, f),
        None => (clean.as_str(), ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(Error::new(format!("{what}: missing number")));
    }
    if !int_part.chars().all(|c| c.is_ascii_digit())
        || !frac_part.chars().all(|c| c.is_ascii_digit())
    {
        return Err(Error::new(format!(
            "{what}: `{num}` is not a decimal number"
        )));
    }
    let overflow = || Error::new(format!("{what}: `{num}` is too large"));
    let int: u128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| overflow())?
    };
    let mut total = int.checked_mul(multiplier).ok_or_else(overflow)?;
    if !frac_part.is_empty() {
        let digits = u32::try_from(frac_part.len()).map_err(|_| overflow())?;
        let denom = 10u128.checked_pow(digits).ok_or_else(overflow)?;
        let frac: u128 = frac_part.parse().map_err(|_| overflow())?;
        let scaled = frac.checked_mul(multiplier).ok_or_else(overflow)?;
        if scaled % denom != 0 {
            return Err(Error::new(format!(
                "{what}: `{num}` has more decimals than the unit can hold"
            )));
        }
        total = total.checked_add(scaled / denom).ok_or_else(overflow)?;
    }
    Ok(total)
}

/// A number of bytes, written with an explicit unit: `512 MiB`, `4GiB`, `100 MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct ByteSize(pub(crate) u64);

const BYTE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (num, unit) = split_number_unit(s);
        if unit.is_empty() {
            return Err(Error::new(format!(
                "size `{s}` has no unit: write e.g. \"{num} MiB\" (or \"{num} B\" for bytes)"
            )));
        }
        let Some(&(_, mult)) = BYTE_UNITS.iter().find(|(u, _)| *u == unit) else {
            let hint = match unit {
                "K" | "k" | "Ki" => " (write KiB for 1024 bytes or kB for 1000)",
                "M" | "m" | "Mi" => " (write MiB for 2^20 bytes or MB for 10^6)",
                "G" | "g" | "Gi" => " (write GiB for 2^30 bytes or GB for 10^9)",
                "T" | "t" | "Ti" => " (write TiB for 2^40 bytes or TB for 10^12)",
                _ => "",
            };
            return Err(Error::new(format!(
                "size `{s}`: unknown unit `{unit}`{hint}; units are B, KiB, MiB, GiB, TiB, kB, MB, GB, TB"
            )));
        };
        let total = scaled_decimal(num, u128::from(mult), &format!("size `{s}`"))?;
        u64::try_from(total)
            .map(ByteSize)
            .map_err(|_| Error::new(format!("size `{s}` is too large")))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Largest binary unit that divides exactly, so the text parses back to
        // the same value.
        for &(unit, mult) in BYTE_UNITS[..5].iter().rev() {
            if self.0 >= mult && self.0 % mult == 0 {
                return write!(f, "{} {unit}", self.0 / mult);
            }
        }
        write!(f, "{} B", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor::<ByteSize>::new("a size such as \"512 MiB\""))
    }
}

/// A span of time written with units: `500ms`, `30s`, `5m`, `1h30m`, `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct HumanDuration(pub(crate) Duration);

const DURATION_UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

impl HumanDuration {
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let text = s.trim();
        if text.is_empty() {
            return Err(Error::new("duration is empty: write e.g. \"30s\""));
        }
        let mut rest = text;
        let mut total_ms: u64 = 0;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(Error::new(format!(
                    "duration `{s}`: expected a number at `{rest}`; write e.g. \"90s\" or \"1h30m\""
                )));
            }
            let (num, after) = rest.split_at(digits);
            let unit_len = after
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(after.len());
            let (unit, next) = after.split_at(unit_len);
            if unit.is_empty() {
                return Err(Error::new(format!(
                    "duration `{s}` has no unit after `{num}`: write e.g. \"{num}s\" (units: ms, s, m, h, d)"
                )));
            }
            let Some(&(_, ms)) = DURATION_UNITS.iter().find(|(u, _)| *u == unit) else {
                return Err(Error::new(format!(
                    "duration `{s}`: unknown unit `{unit}`; units are ms, s, m, h, d"
                )));
            };
            let n: u64 = num
                .parse()
                .map_err(|_| Error::new(format!("duration `{s}` is too large")))?;
            total_ms = n
                .checked_mul(ms)
                .and_then(|v| total_ms.checked_add(v))
                .ok_or_else(|| Error::new(format!("duration `{s}` is too large")))?;
            rest = next;
        }
        Ok(HumanDuration(Duration::from_millis(total_ms)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return f.write_str("0s");
        }
        for &(unit, size) in DURATION_UNITS.iter().rev() {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor::<HumanDuration>::new(
            "a duration such as \"30s\" or \"1h30m\"",
        ))
    }
}

/// An amount of EDG, held in its smallest unit (1 EDG = 10^18 units, like
/// wei). Written as a decimal string, `"0.00002"` or `"0.00002 EDG"`, or in
/// base units as `"20000000000000 wei"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Edg(pub u128);

const EDG_DECIMALS: u32 = 18;
const WEI_PER_EDG: u128 = 10u128.pow(EDG_DECIMALS);

impl Edg {
    pub const ZERO: Edg = Edg(0);

    pub const fn wei(self) -> u128 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub const fn saturating_sub(self, other: Edg) -> Edg {
        Edg(self.0.saturating_sub(other.0))
    }

    pub const fn saturating_add(self, other: Edg) -> Edg {
        Edg(self.0.saturating_add(other.0))
    }

    /// A price per second times a number of seconds.
    pub(crate) const fn per_second_for(self, secs: u64) -> Edg {
        Edg(self.0.saturating_mul(secs as u128))
    }
}

/// An [`Edg`] in a binary record: its base units as a number (records are
/// postcard; the text forms are for people). `#[serde(with = "wei")]`.
pub mod wei {
    use super::Edg;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(e: &Edg, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u128(e.0)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Edg, D::Error> {
        u128::deserialize(d).map(Edg)
    }
}

impl FromStr for Edg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (num, unit) = split_number_unit(s);
        let mult = match unit {
            "" | "EDG" => WEI_PER_EDG,
            "wei" => 1,
            other => {
                return Err(Error::new(format!(
                    "EDG amount `{s}`: unknown unit `{other}`; write \"0.5\", \"0.5 EDG\" or \"500000000000000000 wei\""
                )));
            }
        };
        scaled_decimal(num, mult, &format!("EDG amount `{s}`")).map(Edg)
    }
}

impl fmt::Display for Edg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.0 / WEI_PER_EDG;
        let frac = self.0 % WEI_PER_EDG;
        if frac == 0 {
            return write!(f, "{int} EDG");
        }
        let frac = format!("{frac:018}");
        write!(f, "{int}.{} EDG", frac.trim_end_matches('0'))
    }
}

impl<'de> serde::Deserialize<'de> for Edg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor::<Edg>::new(
            "an EDG amount as a string such as \"0.00002\"",
        ))
    }
}

/// Which quantity a [`TextVisitor`] builds, and how it treats bare TOML
/// numbers: those carry no unit, so each type says what to write instead.
trait FromText: FromStr<Err = Error> {
    fn from_integer(n: i64) -> Result<Self, String>;
    fn float_hint(f: f64) -> String;
}

impl FromText for ByteSize {
    fn from_integer(n: i64) -> Result<Self, String> {
        Err(format!(
            "a bare number is ambiguous for a size: write \"{n} B\", \"{n} MiB\" or similar"
        ))
    }
    fn float_hint(f: f64) -> String {
        format!("write sizes as strings with a unit, e.g. \"{f} GiB\"")
    }
}

impl FromText for HumanDuration {
    fn from_integer(n: i64) -> Result<Self, String> {
        Err(format!(
            "a bare number is ambiguous for a duration: write \"{n}s\", \"{n}m\" or similar"
        ))
    }
    fn float_hint(_: f64) -> String {
        "write durations as strings with units, e.g. \"1m30s\"".to_string()
    }
}

impl FromText for Edg {
    fn from_integer(n: i64) -> Result<Self, String> {
        Err(format!(
            "write EDG amounts as strings, e.g. \"{n}\" for {n} EDG or \"{n} wei\" for base units"
        ))
    }
    fn float_hint(f: f64) -> String {
        format!("write EDG amounts as strings (\"{f}\"): a TOML float loses precision")
    }
}

struct TextVisitor<T> {
    expecting: &'static str,
    _t: std::marker::PhantomData<T>,
}

impl<T> TextVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        TextVisitor {
            expecting,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: FromText> Visitor<'_> for TextVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::from_integer(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        i64::try_from(v)
            .map_err(|_| E::custom("number too large"))
            .and_then(|v| self.visit_i64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        Err(E::custom(T::float_hint(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!("512 MiB".parse(), Ok(ByteSize(512 << 20)));
        assert_eq!("4GiB".parse(), Ok(ByteSize(4 << 30)));
        assert_eq!("1.5 GiB".parse(), Ok(ByteSize(3 << 29)));
        assert_eq!("100 MB".parse(), Ok(ByteSize(100_000_000)));
        assert_eq!("1_024 B".parse(), Ok(ByteSize(1024)));
        assert_eq!("0 B".parse(), Ok(ByteSize(0)));
    }

    #[test]
    fn sizes_refuse_ambiguity_and_garbage() {
        let err = "64M".parse::<ByteSize>().unwrap_err().to_string();
        assert!(err.contains("MiB") && err.contains("MB"), "{err}");
        assert!("64".parse::<ByteSize>().unwrap_err().0.contains("no unit"));
        assert!("1.1 B".parse::<ByteSize>().is_err());
        assert!("x MiB".parse::<ByteSize>().is_err());
        assert!("1.2.3 MiB".parse::<ByteSize>().is_err());
        assert!("99999999999 TiB".parse::<ByteSize>().is_err());
        assert!("-1 MiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn sizes_display_round_trips() {
        for s in ["3 GiB", "512 MiB", "1 B", "1536 KiB", "7 B"] {
            let v: ByteSize = s.parse().unwrap();
            assert_eq!(v.to_string(), s);
            assert_eq!(v.to_string().parse::<ByteSize>().unwrap(), v);
        }
    }

    #[test]
    fn durations_parse_compound_forms() {
        assert_eq!("30s".parse(), Ok(HumanDuration(Duration::from_secs(30))));
        assert_eq!(
            "1h30m".parse(),
            Ok(HumanDuration(Duration::from_secs(5400)))
        );
        assert_eq!(
            "250ms".parse(),
            Ok(HumanDuration(Duration::from_millis(250)))
        );
        assert_eq!(
            "2d".parse(),
            Ok(HumanDuration(Duration::from_secs(172_800)))
        );
        assert_eq!(
            "1h30m".parse::<HumanDuration>().unwrap().to_string(),
            "1h30m"
        );
    }

    #[test]
    fn durations_refuse_missing_or_unknown_units() {
        assert!(
            "30".parse::<HumanDuration>()
                .unwrap_err()
                .0
                .contains("no unit")
        );
        assert!(
            "3w".parse::<HumanDuration>()
                .unwrap_err()
                .0
                .contains("unknown unit")
        );
        assert!("".parse::<HumanDuration>().is_err());
        assert!("s".parse::<HumanDuration>().is_err());
        assert!("1.5h".parse::<HumanDuration>().is_err());
        assert!("99999999999999999999s".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn edg_amounts_are_exact() {
        assert_eq!("1".parse(), Ok(Edg(WEI_PER_EDG)));
        assert_eq!("0.00002".parse(), Ok(Edg(20_000_000_000_000)));
        assert_eq!("0.00002 EDG".parse(), Ok(Edg(20_000_000_000_000)));
        assert_eq!("7 wei".parse(), Ok(Edg(7)));
        assert_eq!(
            "0.000000000000000001".parse::<Edg>().unwrap().to_string(),
            "0.000000000000000001 EDG"
        );
        assert_eq!("2.5".parse::<Edg>().unwrap().to_string(), "2.5 EDG");
        assert!("0.0000000000000000001".parse::<Edg>().is_err());
        assert!("1.5 wei".parse::<Edg>().is_err());
        assert!("1 ETH".parse::<Edg>().is_err());
    }

    #[derive(serde::Deserialize, Debug)]
    struct Probe {
        size: Option<ByteSize>,
        price: Option<Edg>,
        every: Option<HumanDuration>,
    }

    #[test]
    fn bare_toml_numbers_are_refused_with_the_fix() {
        let e = toml::from_str::<Probe>("size = 64")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"64 B\""), "{e}");
        let e = toml::from_str::<Probe>("price = 0.1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("loses precision"), "{e}");
        let e = toml::from_str::<Probe>("every = 30")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"30s\""), "{e}");
        let ok: Probe = toml::from_str("size = \"1 KiB\"\nprice = \"1\"\nevery = \"1s\"").unwrap();
        assert_eq!(ok.size, Some(ByteSize(1024)));
        assert_eq!(ok.price, Some(Edg(WEI_PER_EDG)));
        assert_eq!(ok.every, Some(HumanDuration(Duration::from_secs(1))));
    }
}
