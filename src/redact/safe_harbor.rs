//! The Safe Harbor de-identification profile of 45 CFR 164.514(b)(2): a
//! built-in set of classes, all withheld, applied to a request whose
//! `identifiable` class is withheld; resource ids and references are
//! pseudonymized with the route's key so records still link to each other.

use super::classes::DataClasses;
use once_cell::sync::Lazy;

const PROFILE: &str = include_str!("safe_harbor.toml");

/// The profile's classes.
pub fn classes() -> &'static DataClasses {
    static CLASSES: Lazy<DataClasses> =
        Lazy::new(|| DataClasses::parse(PROFILE).expect("the built-in Safe Harbor profile parses"));
    &CLASSES
}

/// `Type/id`, `Type/id/_history/v` or an absolute URL ending so, with the
/// id pseudonymized; `None` for what names no record by id (contained
/// `#x`, `urn:uuid:`, conditional or empty references).
pub fn pseudonymize_reference(key: &[u8], reference: &str) -> Option<String> {
    if reference.starts_with('#') || reference.starts_with("urn:") || reference.contains('?') {
        return None;
    }
    let segments: Vec<&str> = reference.split('/').collect();
    // The last resource type followed by an id.
    let at = (0..segments.len().saturating_sub(1))
        .rev()
        .find(|&i| crate::authz::mapping::resource_type(segments[i]).is_some())?;
    let mut out: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
    out[at + 1] = super::mask::pseudonym(key, segments[at + 1]);
    Some(out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_loads_and_references_keep_their_shape() {
        assert!(classes().get("identifiable-zip").is_some());
        let p = pseudonymize_reference(b"k", "Patient/a").unwrap();
        assert!(p.starts_with("Patient/") && p.len() == 8 + 32, "{p}");
        assert_eq!(
            pseudonymize_reference(b"k", "https://gw/fhir/Patient/a/_history/2").unwrap(),
            format!("https://gw/fhir/{p}/_history/2")
        );
        assert_eq!(pseudonymize_reference(b"k", "#med1"), None);
        assert_eq!(pseudonymize_reference(b"k", "urn:uuid:1"), None);
        assert_eq!(pseudonymize_reference(b"k", "Patient?identifier=x"), None);
    }
}
