//! Properties of the mapper over arbitrary input: it never panics, and
//! whatever patient it reports is a well-formed FHIR id that occurs in the
//! request (it never invents one).

use super::*;
use proptest::prelude::*;

fn methods() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("PUT".to_string()),
        Just("PATCH".to_string()),
        Just("DELETE".to_string()),
        Just("HEAD".to_string()),
        "[A-Z]{1,8}",
    ]
}

/// Paths built from FHIR-looking segments and noise.
fn paths() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("Patient".to_string()),
        Just("Observation".to_string()),
        Just("_history".to_string()),
        Just("_search".to_string()),
        Just("$everything".to_string()),
        Just("$export".to_string()),
        Just("metadata".to_string()),
        Just("*".to_string()),
        "[A-Za-z0-9.\\-]{1,12}",
        "[^/?#]{0,6}",
    ];
    prop::collection::vec(segment, 0..5).prop_map(|s| format!("/{}", s.join("/")))
}

fn queries() -> impl Strategy<Value = Option<String>> {
    let param = prop_oneof![
        "patient=[A-Za-z0-9%/:.,\\-]{0,24}",
        "subject(:Patient)?=[A-Za-z0-9%/:.,\\-]{0,24}",
        "_id=[A-Za-z0-9,\\-]{0,12}",
        "_(has|include|revinclude|filter|query|type)(:[a-z]+)?=[A-Za-z:.]{0,16}",
        "[a-z_.:]{1,10}=[^&#]{0,10}",
        "[^&=#]{0,8}",
    ];
    prop::option::of(prop::collection::vec(param, 0..5).prop_map(|p| p.join("&")))
}

fn bodies() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop_oneof![
        Just(br#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}"#.to_vec()),
        Just(br#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/p2"}}]}"#.to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
        "[{}\\[\\]\":,a-z0-9 ]{0,64}".prop_map(String::into_bytes),
    ])
}

/// Percent-decoding, to find ids that arrived encoded.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn fhir_mapping_never_panics_and_never_invents_patients(
        method in methods(), path in paths(), query in queries(), body in bodies(),
    ) {
        let mapper = FhirMapper::new(vec!["https://ehr.example/fhir".into()]);
        let view = RequestView {
            method: &method,
            path: &path,
            query: query.as_deref(),
            content_type: body.as_ref().map(|_| "application/fhir+json"),
            body: body.as_deref(),
            if_none_exist: None,
            stored: None,
        };
        if let Ok(mapping) = mapper.map(&view) {
            let haystack = format!(
                "{path}?{} {}",
                decode(query.as_deref().unwrap_or_default()),
                String::from_utf8_lossy(body.as_deref().unwrap_or_default())
            );
            // Whole ids as written in the request: a reported `1` must be
            // a token `1`, not the 1 inside `pat-0001`.
            let tokens: std::collections::HashSet<&str> = haystack
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
                .filter(|t| !t.is_empty())
                .collect();
            for r in &mapping.requests {
                if let Some(p) = &r.patient {
                    prop_assert!(is_fhir_id(p), "patient {p:?} is not a FHIR id");
                    prop_assert!(tokens.contains(p.as_str()), "patient {p:?} is not a whole id in the request");
                }
            }
        }
    }

    #[test]
    fn template_mapping_never_panics(method in methods(), path in paths(), query in queries()) {
        let templates = vec![
            RouteTemplate {
                name: None,
                path: "/api/patients/{patient}/notes/{id}".into(),
                methods: vec!["GET".into()],
                action: None,
                resource_type: "DocumentReference".into(),
                patient_query: None,
            },
            RouteTemplate {
                name: None,
                path: "/schedule/{*rest}".into(),
                methods: vec![],
                action: Some("read".into()),
                resource_type: "Appointment".into(),
                patient_query: Some("pid".into()),
            },
        ];
        let mapper = TemplateMapper::new(templates).expect("valid templates");
        let view = RequestView { method: &method, path: &path, query: query.as_deref(), content_type: None, body: None, if_none_exist: None, stored: None };
        let _ = mapper.map(&view);
    }
}
