//! Human units in config: durations as `"30s"`, sizes as `"10MiB"`.
//!
//! Operators write these by hand; a typo must fail validation with the value
//! quoted, never silently become zero.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration written as a string such as `"250ms"`, `"30s"`, `"5m"`, `"12h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} ({e}); write it like \"500ms\", \"30s\" or \"5m\""
                ))
            })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A byte size written as `"512"`, `"64KiB"`, `"10MiB"`, `"1GiB"` (or KB/MB/GB, powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }
    pub fn bytes(self) -> u64 {
        self.0
    }
}

/// Parses a size string; the error names the accepted units.
pub fn parse_byte_size(s: &str) -> Result<ByteSize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}; write it like \"64KiB\" or \"10MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?}; use B, KiB, MiB, GiB, KB, MB or GB"
            ))
        }
    };
    n.checked_mul(mult)
        .map(ByteSize)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, not an untagged enum: a wrong value is then told what
        // a size looks like, not "did not match any variant".
        struct Size;
        impl serde::de::Visitor<'_> for Size {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"64KiB\" or \"10MiB\", or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ByteSize, E> {
                parse_byte_size(s).map_err(E::custom)
            }
        }
        d.deserialize_any(Size)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_size_says_what_a_size_looks_like() {
        #[derive(Deserialize, Debug)]
        struct C {
            #[allow(dead_code)]
            size: ByteSize,
        }
        let e = toml::from_str::<C>("size = []").unwrap_err().to_string();
        assert!(e.contains("a size such as"), "{e}");
        let e = toml::from_str::<C>("size = -1").unwrap_err().to_string();
        assert!(e.contains("negative"), "{e}");
        assert_eq!(toml::from_str::<C>("size = 5").unwrap().size, ByteSize(5));
        assert_eq!(
            toml::from_str::<C>("size = \"1KiB\"").unwrap().size,
            ByteSize(1024)
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_byte_size("512").unwrap(), ByteSize(512));
        assert_eq!(parse_byte_size("64KiB").unwrap(), ByteSize(65536));
        assert_eq!(parse_byte_size("10MiB").unwrap(), ByteSize(10 << 20));
        assert_eq!(parse_byte_size("2MB").unwrap(), ByteSize(2_000_000));
        assert!(parse_byte_size("ten").is_err());
        assert!(parse_byte_size("10XB")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_byte_size("99999999999999GiB").is_err());
    }

    #[test]
    fn durations() {
        #[derive(Deserialize)]
        struct T {
            d: HumanDuration,
        }
        let t: T = toml::from_str("d = \"250ms\"").unwrap();
        assert_eq!(t.d.get(), Duration::from_millis(250));
        let e = toml::from_str::<T>("d = \"soon\"")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("invalid duration"), "{e}");
    }
}
