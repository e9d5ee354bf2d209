//! Masking strategies: what a withheld class's values become when they are
//! not simply removed.
//!
//! A mask acts on the string values inside the selected element — not on
//! `system`, `use` or `url`, which say what a value is rather than being
//! it — and, for `age`, on numbers. A value a mask cannot handle (a
//! "date" that is not one) is removed, never passed through.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// What is done to a withheld class's values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mask {
    /// The element goes, key and all.
    #[default]
    Remove,
    /// Every value becomes this text.
    Fixed(String),
    /// Only the last N characters remain, after `***`.
    KeepLast(usize),
    /// HMAC-SHA256 under the configured key: the same value gives the same
    /// pseudonym in every response, so records still link up.
    Pseudonym,
    /// Dates keep only their year or year and month.
    Generalize(Precision),
    /// Dates move by a per-patient keyed shift of up to 50 days either way
    /// (intervals within one patient's record are kept).
    DateShift,
    /// US ZIP codes keep their first three digits; the Safe Harbor
    /// restricted ZIP3s (populations of 20,000 or fewer) become `000`.
    Zip3,
    /// Dates keep their year, and numbers over 89 become 90; a birth date
    /// of someone over 89 becomes the year they turned 90 ("90 or older").
    Age,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    Year,
    Month,
}

impl Mask {
    pub fn check(&self) -> Result<(), String> {
        match self {
            Mask::KeepLast(0) => Err("keep_last of 0 is `fixed`".into()),
            Mask::KeepLast(n) if *n > 8 => Err("keep_last keeps at most 8 characters".into()),
            _ => Ok(()),
        }
    }

    /// What the mask does, in a few words.
    pub fn describe(&self) -> String {
        match self {
            Mask::Remove => "remove".into(),
            Mask::Fixed(_) => "fixed text".into(),
            Mask::KeepLast(n) => format!("last {n} kept"),
            Mask::Pseudonym => "pseudonym".into(),
            Mask::Generalize(Precision::Year) => "year only".into(),
            Mask::Generalize(Precision::Month) => "month only".into(),
            Mask::DateShift => "date shift".into(),
            Mask::Zip3 => "ZIP3".into(),
            Mask::Age => "90+ ages".into(),
        }
    }

    /// Whether the mask needs the pseudonym key.
    pub fn keyed(&self) -> bool {
        matches!(self, Mask::Pseudonym | Mask::DateShift)
    }
}

/// What a mask may need besides the value.
#[derive(Debug, Clone)]
pub struct MaskContext {
    /// The pseudonym and date-shift key; keyed masks remove without one.
    pub key: Option<std::sync::Arc<[u8]>>,
    /// The record's first patient (date shifts are per patient).
    pub patient: Option<String>,
    /// Today, for ages.
    pub today: jiff::civil::Date,
}

/// Members that say what a value is, left as they are (and an extension's
/// `url`).
const DESCRIPTORS: [&str; 2] = ["system", "use"];

/// Applies `mask` to `value` in place; `false` when nothing usable
/// remains (the element is then removed).
pub fn apply(mask: &Mask, value: &mut Value, cx: &MaskContext) -> bool {
    match value {
        Value::String(s) => match one(mask, s, cx) {
            Some(masked) => {
                *s = masked;
                true
            }
            None => false,
        },
        Value::Number(n) if *mask == Mask::Age => {
            if n.as_f64().is_some_and(|v| v > 89.0) {
                *value = Value::from(90);
            }
            true
        }
        Value::Array(items) => {
            items.retain_mut(|v| apply(mask, v, cx));
            !items.is_empty()
        }
        // A datatype with a `value` (Identifier, ContactPoint): the value
        // is what is masked; its type and period say what it is.
        Value::Object(members) if members.contains_key("value") => {
            let kept = members.get_mut("value").is_some_and(|v| apply(mask, v, cx));
            members.remove("_value");
            if !kept {
                members.remove("value");
            }
            kept
        }
        Value::Object(members) => {
            // An extension's `url` says what it is; any other (an
            // Attachment's) is a value like the rest.
            let extension =
                members.contains_key("url") && members.keys().any(|k| k.starts_with("value"));
            let describes = |k: &str| DESCRIPTORS.contains(&k) || (extension && k == "url");
            members.retain(|k, v| describes(k) || apply(mask, v, cx));
            members.keys().any(|k| !describes(k))
        }
        // Booleans, nulls and (other than for ages) numbers carry no text
        // a mask could keep: they go.
        _ => false,
    }
}

fn one(mask: &Mask, s: &str, cx: &MaskContext) -> Option<String> {
    match mask {
        Mask::Remove => None,
        Mask::Fixed(text) => Some(text.clone()),
        Mask::KeepLast(n) => {
            let chars: Vec<char> = s.chars().collect();
            let tail: String = chars[chars.len().saturating_sub(*n)..].iter().collect();
            // Short values are hidden whole: keeping "all but nothing"
            // would disclose them.
            (chars.len() > 2 * n).then(|| format!("***{tail}"))
        }
        Mask::Pseudonym => cx.key.as_deref().map(|k| pseudonym(k, s)),
        Mask::Generalize(p) => {
            let d = date_prefix(s)?;
            Some(match p {
                Precision::Year => d[..4].to_string(),
                Precision::Month if d.len() >= 7 => d[..7].to_string(),
                Precision::Month => d[..4].to_string(),
            })
        }
        Mask::DateShift => {
            let key = cx.key.as_deref()?;
            let days = shift_days(key, cx.patient.as_deref()?);
            shift(s, days)
        }
        Mask::Zip3 => zip3(s),
        Mask::Age => {
            let d = date_prefix(s)?;
            let year: i16 = d[..4].parse().ok()?;
            let today = cx.today;
            // Over 89 unless born after this day 90 years ago.
            let ninety_ago = today.year() - 90;
            let full = s
                .get(..10)
                .and_then(|d| jiff::civil::Date::strptime("%Y-%m-%d", d).ok());
            let over_89 = match full {
                Some(born) => born.checked_add(jiff::Span::new().years(90)).ok()? <= today,
                // Year (or year-month) only: judged on the year.
                None => year < ninety_ago,
            };
            Some(if over_89 {
                ninety_ago.to_string()
            } else {
                year.to_string()
            })
        }
    }
}

/// The keyed pseudonym of `value`: 32 hex digits (a valid FHIR id).
pub fn pseudonym(key: &[u8], value: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(value.as_bytes());
    let tag = mac.finalize().into_bytes();
    tag[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Days (−50..=50, never 0) one patient's dates move.
fn shift_days(key: &[u8], patient: &str) -> i64 {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"date-shift\0");
    mac.update(patient.as_bytes());
    let tag = mac.finalize().into_bytes();
    let n = u16::from_be_bytes([tag[0], tag[1]]) as i64 % 100;
    if n < 50 {
        n - 50
    } else {
        n - 49
    }
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD…` with digits where they belong.
fn date_prefix(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !digits(0..4) {
        return None;
    }
    match b.len() {
        4 => Some(s),
        7 if b[4] == b'-' && digits(5..7) => Some(s),
        n if n >= 10 && b[4] == b'-' && b[7] == b'-' && digits(5..7) && digits(8..10) => Some(s),
        _ => None,
    }
}

/// A full date (or the date of a dateTime, time kept) moved by `days`;
/// partial dates keep their year only.
fn shift(s: &str, days: i64) -> Option<String> {
    let d = date_prefix(s)?;
    if d.len() < 10 {
        return Some(d[..4].to_string());
    }
    let date = jiff::civil::Date::strptime("%Y-%m-%d", &d[..10]).ok()?;
    let moved = date.checked_add(jiff::Span::new().days(days)).ok()?;
    Some(format!("{}{}", moved.strftime("%Y-%m-%d"), &s[10..]))
}

/// Three-digit ZIP codes of 20,000 or fewer people (2000 Census), which
/// Safe Harbor requires to become `000`.
pub const RESTRICTED_ZIP3: [&str; 17] = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

fn zip3(s: &str) -> Option<String> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    if digits.len() < 3 {
        return None;
    }
    let three = &digits[..3];
    Some(if RESTRICTED_ZIP3.contains(&three) {
        "000".into()
    } else {
        three.into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cx(key: Option<&[u8]>) -> MaskContext {
        MaskContext {
            key: key.map(std::sync::Arc::from),
            patient: Some("p1".into()),
            today: jiff::civil::date(2026, 12, 5),
        }
    }

    fn masked(mask: Mask, v: Value, key: Option<&[u8]>) -> Option<Value> {
        let mut v = v;
        apply(&mask, &mut v, &cx(key)).then_some(v)
    }

    #[test]
    fn masks_act_on_values_not_on_what_describes_them() {
        let phone = json!({"system": "phone", "value": "617-555-0101", "use": "home"});
        assert_eq!(
            masked(Mask::KeepLast(4), phone.clone(), None),
            Some(json!({"system": "phone", "value": "***0101", "use": "home"}))
        );
        assert_eq!(
            masked(Mask::Fixed("REDACTED".into()), phone, None).unwrap()["value"],
            "REDACTED"
        );
        // Too short to keep a tail without disclosing it all.
        assert_eq!(masked(Mask::KeepLast(4), json!("12345"), None), None);
        assert_eq!(masked(Mask::Remove, json!("x"), None), None);
    }

    #[test]
    fn pseudonyms_are_keyed_and_stable() {
        let a = masked(Mask::Pseudonym, json!("123-45-6789"), Some(b"k1")).unwrap();
        let b = masked(Mask::Pseudonym, json!("123-45-6789"), Some(b"k1")).unwrap();
        let c = masked(Mask::Pseudonym, json!("123-45-6789"), Some(b"k2")).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.as_str().unwrap().len(), 32);
        // Without a key nothing is kept.
        assert_eq!(masked(Mask::Pseudonym, json!("x"), None), None);
    }

    #[test]
    fn dates_are_generalized_shifted_or_removed() {
        let y = Mask::Generalize(Precision::Year);
        assert_eq!(
            masked(y.clone(), json!("1950-04-03"), None),
            Some(json!("1950"))
        );
        assert_eq!(
            masked(
                Mask::Generalize(Precision::Month),
                json!("1950-04-03T10:00:00Z"),
                None
            ),
            Some(json!("1950-04"))
        );
        assert_eq!(masked(y, json!("not a date"), None), None);
        let shifted = masked(Mask::DateShift, json!("2026-01-31T08:00:00Z"), Some(b"k"));
        let s = shifted.unwrap();
        let s = s.as_str().unwrap();
        assert!(
            s.ends_with("T08:00:00Z") && s != "2026-01-31T08:00:00Z",
            "{s}"
        );
        // The same patient moves by the same days.
        let d1 = shift_days(b"k", "p1");
        assert_eq!(d1, shift_days(b"k", "p1"));
        assert!((-50..=50).contains(&d1) && d1 != 0);
    }

    #[test]
    fn zip_codes_keep_three_digits_and_small_areas_become_000() {
        assert_eq!(
            masked(Mask::Zip3, json!("02139-4307"), None),
            Some(json!("021"))
        );
        assert_eq!(masked(Mask::Zip3, json!("03601"), None), Some(json!("000")));
        assert_eq!(masked(Mask::Zip3, json!("AB1"), None), None);
    }

    #[test]
    fn ages_over_89_become_90() {
        assert_eq!(
            masked(Mask::Age, json!("1930-06-01"), None),
            Some(json!("1936"))
        );
        assert_eq!(
            masked(Mask::Age, json!("1950-06-01"), None),
            Some(json!("1950"))
        );
        // 90 yesterday / tomorrow.
        assert_eq!(
            masked(Mask::Age, json!("1936-12-04"), None),
            Some(json!("1936"))
        );
        assert_eq!(
            masked(Mask::Age, json!("1936-12-06"), None),
            Some(json!("1936"))
        );
        assert_eq!(
            masked(Mask::Age, json!("1935-12-06"), None),
            Some(json!("1936"))
        );
        assert_eq!(masked(Mask::Age, json!("1930"), None), Some(json!("1936")));
        assert_eq!(
            masked(Mask::Age, json!("1960-05"), None),
            Some(json!("1960"))
        );
        assert_eq!(masked(Mask::Age, json!(93), None), Some(json!(90)));
        assert_eq!(masked(Mask::Age, json!(42), None), Some(json!(42)));
    }
}
