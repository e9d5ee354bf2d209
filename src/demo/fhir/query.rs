//! Query-string handling for the demo FHIR server: strict percent-decoding,
//! the supported search parameters, and re-encoding for `self`/`next` links.
//!
//! The server is deliberately stricter than FHIR requires (unknown parameters
//! are rejected, not ignored) so proxy tests notice when a query is mangled.

/// Default page size when `_count` is absent.
pub(super) const DEFAULT_COUNT: usize = 50;
/// Larger `_count` values are clamped to this, as FHIR servers may do.
pub(super) const MAX_COUNT: usize = 500;

/// A malformed request; always answered with 400 and an OperationOutcome.
/// Messages never quote parameter values, which may carry PHI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum BadRequest {
    #[error("malformed percent-encoding")]
    Encoding,
    #[error("percent-decoded text is not UTF-8")]
    Utf8,
    #[error("unsupported search parameter")]
    UnknownParameter,
    #[error("invalid value for search parameter {0}")]
    BadValue(&'static str),
}

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`, as in
/// `application/x-www-form-urlencoded` queries). Stray `%` is an error.
pub(super) fn percent_decode(input: &str, plus_is_space: bool) -> Result<String, BadRequest> {
    // In a path segment `+` is itself.
    let input = if plus_is_space {
        std::borrow::Cow::Borrowed(input)
    } else {
        std::borrow::Cow::Owned(input.replace('+', "%2B"))
    };
    crate::http::decode_component(&input)
        .map(|d| d.into_owned())
        .map_err(|e| match e {
            crate::http::FormError::Escape => BadRequest::Encoding,
            crate::http::FormError::Utf8 => BadRequest::Utf8,
        })
}

/// Splits and decodes a query string into `(name, value)` pairs, in order.
pub(super) fn parse_query(query: &str) -> Result<Vec<(String, String)>, BadRequest> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(name, true)?, percent_decode(value, true)?))
        })
        .collect()
}

/// Percent-encodes a query value for a link, keeping characters that are
/// legal in a query and common in FHIR values (`/`, `,`, `:`, `$`).
pub(super) fn encode_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/,:$".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Which filters a search may use; the router picks one per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Allowed {
    /// Organization, Practitioner, Patient: `_id` and paging only.
    Plain,
    /// Types in the Patient compartment: adds `patient`/`subject`.
    PatientLinked,
    /// CareTeam: adds `participant` as well.
    CareTeam,
    /// `$everything`: paging only.
    PagingOnly,
}

/// A validated search: every filter list is ANDed; `_id` values within one
/// parameter are ORed, as FHIR's comma syntax means.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Search {
    pub ids: Vec<Vec<String>>,
    /// Bare patient ids (`Patient/` stripped).
    pub patients: Vec<String>,
    /// Full references such as `Practitioner/prac-0003`.
    pub participants: Vec<String>,
    pub count: usize,
    pub offset: usize,
}

impl Search {
    pub fn parse(pairs: &[(String, String)], allowed: Allowed) -> Result<Search, BadRequest> {
        let mut search = Search {
            count: DEFAULT_COUNT,
            ..Search::default()
        };
        for (name, value) in pairs {
            search.apply(name, value, allowed)?;
        }
        Ok(search)
    }

    fn apply(&mut self, name: &str, value: &str, allowed: Allowed) -> Result<(), BadRequest> {
        let linked = matches!(allowed, Allowed::PatientLinked | Allowed::CareTeam);
        match name {
            "_count" => self.count = parse_number(value, "_count")?.min(MAX_COUNT),
            "_offset" => self.offset = parse_number(value, "_offset")?,
            "_id" if allowed != Allowed::PagingOnly => self.ids.push(id_list(value)?),
            "patient" | "subject" if linked => self.patients.push(patient_id(value)?),
            "participant" if allowed == Allowed::CareTeam => {
                self.participants.push(practitioner_ref(value)?)
            }
            _ => return Err(BadRequest::UnknownParameter),
        }
        Ok(())
    }

    /// The canonical query string for this search at another page offset.
    pub fn query_string(&self, offset: usize) -> String {
        let mut parts: Vec<String> = Vec::new();
        for ids in &self.ids {
            parts.push(format!("_id={}", encode_value(&ids.join(","))));
        }
        for patient in &self.patients {
            parts.push(format!("patient=Patient/{}", encode_value(patient)));
        }
        for participant in &self.participants {
            parts.push(format!("participant={}", encode_value(participant)));
        }
        parts.push(format!("_count={}", self.count));
        parts.push(format!("_offset={offset}"));
        parts.join("&")
    }
}

fn parse_number(value: &str, name: &'static str) -> Result<usize, BadRequest> {
    let valid = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    let number = if valid { value.parse().ok() } else { None };
    number.ok_or(BadRequest::BadValue(name))
}

fn id_list(value: &str) -> Result<Vec<String>, BadRequest> {
    let ids: Vec<String> = value.split(',').map(str::to_owned).collect();
    if ids.iter().all(|id| is_fhir_id(id)) {
        Ok(ids)
    } else {
        Err(BadRequest::BadValue("_id"))
    }
}

/// Accepts `Patient/pat-0001` or `pat-0001`.
fn patient_id(value: &str) -> Result<String, BadRequest> {
    let id = value.strip_prefix("Patient/").unwrap_or(value);
    if is_fhir_id(id) {
        Ok(id.to_owned())
    } else {
        Err(BadRequest::BadValue("patient"))
    }
}

/// Accepts `Practitioner/prac-0003` or `prac-0003`.
fn practitioner_ref(value: &str) -> Result<String, BadRequest> {
    let id = value.strip_prefix("Practitioner/").unwrap_or(value);
    if is_fhir_id(id) {
        Ok(format!("Practitioner/{id}"))
    } else {
        Err(BadRequest::BadValue("participant"))
    }
}

/// FHIR's id grammar: 1–64 of `[A-Za-z0-9\-\.]`.
pub(super) fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(query: &str, allowed: Allowed) -> Result<Search, BadRequest> {
        Search::parse(&parse_query(query)?, allowed)
    }

    #[test]
    fn decodes_percent_escapes_and_plus() {
        assert_eq!(
            percent_decode("Patient%2Fpat-0001", true).unwrap(),
            "Patient/pat-0001"
        );
        assert_eq!(percent_decode("a+b", true).unwrap(), "a b");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert_eq!(percent_decode("%e2%9c%93", true).unwrap(), "\u{2713}");
    }

    #[test]
    fn rejects_broken_escapes_and_invalid_utf8() {
        assert_eq!(percent_decode("%", true), Err(BadRequest::Encoding));
        assert_eq!(percent_decode("%4", true), Err(BadRequest::Encoding));
        assert_eq!(percent_decode("%zz", true), Err(BadRequest::Encoding));
        assert_eq!(percent_decode("%FF", true), Err(BadRequest::Utf8));
    }

    #[test]
    fn both_patient_reference_forms_mean_the_same() {
        let a = search("patient=Patient%2Fpat-0001", Allowed::PatientLinked).unwrap();
        let b = search("subject=pat-0001", Allowed::PatientLinked).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.patients, ["pat-0001"]);
    }

    #[test]
    fn unknown_or_misplaced_parameters_are_rejected() {
        assert_eq!(
            search("name=Alpha", Allowed::Plain),
            Err(BadRequest::UnknownParameter)
        );
        assert_eq!(
            search("patient=pat-1", Allowed::Plain),
            Err(BadRequest::UnknownParameter)
        );
        assert_eq!(
            search("participant=x", Allowed::PatientLinked),
            Err(BadRequest::UnknownParameter)
        );
        assert_eq!(
            search("_id=x", Allowed::PagingOnly),
            Err(BadRequest::UnknownParameter)
        );
        assert_eq!(
            search("patient:Patient=x", Allowed::CareTeam),
            Err(BadRequest::UnknownParameter)
        );
    }

    #[test]
    fn count_is_clamped_but_garbage_is_rejected() {
        assert_eq!(
            search("_count=100000", Allowed::Plain).unwrap().count,
            MAX_COUNT
        );
        assert_eq!(search("", Allowed::Plain).unwrap().count, DEFAULT_COUNT);
        for bad in [
            "_count=-1",
            "_count=1e3",
            "_count=",
            "_count=99999999999999999999999",
            "_offset=x",
        ] {
            assert!(
                matches!(search(bad, Allowed::Plain), Err(BadRequest::BadValue(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_ids_are_rejected() {
        assert!(search("_id=a,b", Allowed::Plain).is_ok());
        assert!(search("_id=a,", Allowed::Plain).is_err());
        assert!(search("patient=Patient/", Allowed::PatientLinked).is_err());
        assert!(search("patient=pat%200001", Allowed::PatientLinked).is_err());
    }

    #[test]
    fn query_string_round_trips() {
        let original = search(
            "_id=a,b&subject=pat-1&participant=prac-3&_count=7",
            Allowed::CareTeam,
        )
        .unwrap();
        let again = search(&original.query_string(14), Allowed::CareTeam).unwrap();
        assert_eq!(
            again,
            Search {
                offset: 14,
                ..original
            }
        );
    }
}
