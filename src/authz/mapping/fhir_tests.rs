//! Table tests for [`FhirMapper`]: each row is a request and the mapping it
//! must produce, rendered compactly as
//! `action Type[/id] [p=patient] [op=name] [fan=reason] (interaction)`, one
//! per request joined by ` | `, a `batch: `/`transaction: ` prefix for
//! Bundles, or `unmapped:slug` / `bad` for errors.

use super::{BundleKind, FhirMapper, Mapping, MappingError, RequestView};

const BASE: &str = "https://phigate.example/fhir";

pub(super) fn render(result: &Result<Mapping, MappingError>) -> String {
    let mapping = match result {
        Err(MappingError::Unmapped { reason }) => return format!("unmapped:{reason}"),
        Err(MappingError::BadRequest { .. }) => return "bad".to_owned(),
        Ok(mapping) => mapping,
    };
    let prefix = match mapping.bundle {
        None => "",
        Some(BundleKind::Batch) => "batch: ",
        Some(BundleKind::Transaction) => "transaction: ",
    };
    let requests: Vec<String> = mapping
        .requests
        .iter()
        .map(|r| {
            let mut s = format!("{} {}", r.action, r.resource.resource_type);
            if let Some(id) = &r.resource.id {
                s.push('/');
                s.push_str(id);
            }
            if let Some(p) = &r.patient {
                s.push_str(&format!(" p={p}"));
            }
            if let Some(op) = &r.operation {
                s.push_str(&format!(" op={op}"));
            }
            if let Some(f) = r.fan_out {
                s.push_str(&format!(" fan={f}"));
            }
            s.push_str(&format!(" ({})", r.interaction));
            s
        })
        .collect();
    format!("{prefix}{}", requests.join(" | "))
}

fn run(
    mapper: &FhirMapper,
    method: &str,
    path: &str,
    query: Option<&str>,
    body: Option<&str>,
) -> String {
    let content_type = body.map(|b| {
        if b.starts_with('{') {
            "application/fhir+json"
        } else if b.starts_with('[') {
            "application/json-patch+json"
        } else {
            "application/x-www-form-urlencoded"
        }
    });
    let req = RequestView {
        method,
        path,
        query,
        content_type,
        body: body.map(str::as_bytes),
        if_none_exist: None,
        stored: None,
    };
    render(&mapper.map(&req))
}

type Row = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

const OBS_FOR_1: &str = r#"{"resourceType":"Observation","subject":{"reference":"Patient/1"}}"#;

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // Reads and history.
    ("GET", "/Patient/123", None, None, "read Patient/123 p=123 (read)"),
    ("HEAD", "/Patient/123", None, None, "read Patient/123 p=123 (read)"),
    ("GET", "/Observation/9", None, None, "read Observation/9 (read)"),
    ("GET", "/Observation/9", Some("_elements=code"), None, "read Observation/9 (read)"),
    ("GET", "/Patient/123/_history/2", None, None, "read Patient/123 p=123 (vread)"),
    ("GET", "/Observation/9/_history/2", None, None, "read Observation/9 (vread)"),
    ("GET", "/Observation/9/_history/a_b", None, None, "bad"),
    ("GET", "/Patient/123/_history", None, None, "read Patient/123 p=123 (history-instance)"),
    ("GET", "/Observation/_history", None, None, "search Observation (history-type)"),
    ("GET", "/_history", None, None, "search System (history-system)"),
    ("GET", "/Patients/1", None, None, "unmapped:unknown-resource-type"),
    ("GET", "/patient/1", None, None, "unmapped:unknown-resource-type"),
    ("GET", "/Patient/1%2F2", None, None, "bad"),
    ("GET", "/Patient/a_b", None, None, "bad"),
    ("GET", "/Patient/a b", None, None, "bad"),
    ("GET", "/Patient/1/", None, None, "bad"),
    ("GET", "/Patient/1/_history/2/x", None, None, "unmapped:unsupported-path"),
    ("OPTIONS", "/Patient/1", None, None, "unmapped:method-not-supported"),
    ("POST", "/Patient/1", None, None, "unmapped:method-not-supported"),
    ("GET", "/metadata", None, None, "read CapabilityStatement (capabilities)"),
    ("GET", "/.well-known/smart-configuration", None, None, "read CapabilityStatement (capabilities)"),
    ("DELETE", "/metadata", None, None, "unmapped:method-not-supported"),
    // Writes.
    ("PUT", "/Patient/5", None, Some(r#"{"resourceType":"Patient","id":"5"}"#), "update Patient/5 p=5 fan=stored-record-unread (update)"),
    ("PUT", "/Patient/5", None, Some(r#"{"resourceType":"Patient","id":"6"}"#), "bad"),
    ("PUT", "/Patient/5", None, Some(r#"{"resourceType":"Observation","id":"5"}"#), "bad"),
    ("PUT", "/Observation/9", None, Some(r#"{"resourceType":"Observation","id":"9","subject":{"reference":"Patient/7"}}"#), "update Observation/9 p=7 fan=stored-record-unread (update)"),
    ("PUT", "/Observation/9", None, None, "update Observation/9 fan=stored-record-unread (update)"),
    ("PATCH", "/Patient/5", None, Some(r#"{"op":"x"}"#), "update Patient/5 p=5 fan=stored-record-unread (patch)"),
    ("DELETE", "/Patient/5", Some("_format=json&_pretty=true"), None, "delete Patient/5 p=5 fan=stored-record-unread (delete)"),
    ("PATCH", "/Patient/5", Some("_method=merge-patch"), Some(r#"[{"op":"add","path":"/active","value":true}]"#), "bad"),
    ("DELETE", "/Patient/5", Some("_cascade=delete"), None, "bad"),
    ("DELETE", "/Observation", Some("patient=5&_cascade=delete"), None, "bad"),
    ("PATCH", "/Patient/5", None, Some(r#"[{"op":"add","path":"/active","value":true}]"#), "update Patient/5 p=5 fan=stored-record-unread (patch)"),
    ("PATCH", "/Observation/9", None, None, "update Observation/9 fan=stored-record-unread (patch)"),
    ("DELETE", "/Patient/5", None, None, "delete Patient/5 p=5 fan=stored-record-unread (delete)"),
    ("DELETE", "/Observation/9", None, None, "delete Observation/9 fan=stored-record-unread (delete)"),
    ("POST", "/Observation", None, Some(OBS_FOR_1), "create Observation p=1 (create)"),
    ("POST", "/Observation", None, Some(r#"{"resourceType":"Observation","subject":{"reference":"Group/1"}}"#), "create Observation fan=subject-not-patient (create)"),
    ("POST", "/Observation", None, Some(r#"{"resourceType":"Observation","subject":{"reference":"https://evil.example/fhir/Patient/1"}}"#), "create Observation fan=foreign-reference (create)"),
    ("POST", "/Observation", None, Some(r#"{"resourceType":"Observation","subject":{"reference":"https://phigate.example/fhir/Patient/1"}}"#), "create Observation p=1 (create)"),
    ("POST", "/Observation", None, Some(r#"{"resourceType":"Observation","subject":{"reference":"Patient/1"},"subject":{"reference":"Patient/2"}}"#), "bad"),
    ("POST", "/Observation", None, Some(r#"{"resourceType":"Patient"}"#), "bad"),
    ("POST", "/Observation", None, Some("not json"), "bad"),
    ("POST", "/Observation", None, None, "bad"),
    ("POST", "/Coverage", None, Some(r#"{"resourceType":"Coverage","beneficiary":{"reference":"Patient/3"}}"#), "create Coverage p=3 (create)"),
    ("POST", "/Consent", None, Some(r#"{"resourceType":"Consent","patient":{"reference":"Patient/3/_history/1"}}"#), "create Consent p=3 (create)"),
    ("POST", "/Patient", None, Some(r#"{"resourceType":"Patient","name":[{"family":"X"}]}"#), "create Patient (create)"),
    ("POST", "/Practitioner", None, Some(r#"{"resourceType":"Practitioner"}"#), "create Practitioner (create)"),
    // Conditional writes.
    ("PUT", "/Observation", Some("patient=4&code=x"), Some(OBS_FOR_1), "update Observation p=4 (conditional-update) | update Observation p=1 (conditional-update)"),
    ("PUT", "/Observation", Some("code=x"), None, "update Observation fan=conditional-unscoped (conditional-update)"),
    ("DELETE", "/Observation", Some("patient=Patient/4"), None, "delete Observation p=4 (conditional-delete)"),
    ("DELETE", "/Observation", None, None, "delete Observation fan=conditional-unscoped (conditional-delete)"),
    ("DELETE", "/Patient", Some("_id=8"), None, "delete Patient p=8 (conditional-delete)"),
    ("PATCH", "/Observation", Some("subject=Group/1"), Some(r#"[{"op":"add","path":"/status","value":"final"}]"#), "update Observation fan=multiple (conditional-patch)"),
    // A conditional patch cannot be applied to a record phigate has not
    // read: one that writes a compartment element fans out.
    ("PATCH", "/Observation", Some("patient=4"), Some(r#"[{"op":"add","path":"/status","value":"final"}]"#), "update Observation p=4 (conditional-patch)"),
    ("PATCH", "/Observation", Some("patient=4"), Some(r#"[{"op":"replace","path":"/subject/reference","value":"Patient/5"}]"#), "update Observation p=4 fan=patch-compartment (conditional-patch)"),
    ("PATCH", "/Observation", Some("patient=4"), Some(r#"[{"op":"move","from":"/performer/0","path":"/note/0"}]"#), "update Observation p=4 fan=patch-compartment (conditional-patch)"),
    ("PATCH", "/Observation", Some("patient=4"), None, "bad"),
    // Searches naming patients.
    ("GET", "/Observation", Some("patient=1234"), None, "search Observation p=1234 (search-type)"),
    ("GET", "/Observation", Some("patient=12345"), None, "search Observation p=12345 (search-type)"),
    ("GET", "/Observation", Some("patient=Patient/123"), None, "search Observation p=123 (search-type)"),
    ("GET", "/Observation", Some("patient=Patient%2F123"), None, "search Observation p=123 (search-type)"),
    ("GET", "/Observation", Some("patient=Patient/1,Patient/2"), None, "search Observation p=1 (search-type) | search Observation p=2 (search-type)"),
    ("GET", "/Observation", Some("patient=1,2,1"), None, "search Observation p=1 (search-type) | search Observation p=2 (search-type)"),
    // A patient-scoping parameter repeated, or spelled in another case, is
    // read differently by different servers: refused, never guessed.
    ("GET", "/Observation", Some("patient=1&patient=2"), None, "bad"),
    ("GET", "/Observation", Some("patient=1&patient:Patient=2"), None, "bad"),
    ("GET", "/Observation", Some("Patient=1"), None, "bad"),
    ("GET", "/Observation", Some("patient=1&Patient=2"), None, "bad"),
    ("GET", "/Observation", Some("patient=1&SUBJECT=Patient/2"), None, "bad"),
    ("GET", "/Patient", Some("_ID=1"), None, "bad"),
    ("GET", "/Patient", Some("_id=1&_id=2"), None, "bad"),
    ("GET", "/Observation", Some("patient=1&subject=Patient/1"), None, "search Observation p=1 (search-type)"),
    ("GET", "/Observation", Some("patient=https%3A%2F%2Fphigate.example%2Ffhir%2FPatient%2F1"), None, "search Observation p=1 (search-type)"),
    ("GET", "/Observation", Some("patient=https://phigate.example/fhir/Patient/1"), None, "search Observation p=1 (search-type)"),
    ("GET", "/Observation", Some("patient=https://evil.example/fhir/Patient/1"), None, "search Observation fan=foreign-reference (search-type)"),
    ("GET", "/Observation", Some("patient=Patient/1/_history/2"), None, "search Observation p=1 (search-type)"),
    ("GET", "/Observation", Some("patient=Group/1"), None, "search Observation fan=reference-not-patient (search-type)"),
    ("GET", "/Observation", Some("patient=patient/1"), None, "bad"),
    ("GET", "/Observation", Some("patient=1%202"), None, "bad"),
    ("GET", "/Observation", Some("patient=1%00"), None, "bad"),
    ("GET", "/Observation", Some("patient=%zz"), None, "bad"),
    ("GET", "/Observation", Some("patient="), None, "bad"),
    ("GET", "/Observation", Some("patient"), None, "bad"),
    ("GET", "/Observation", Some("patient=1,"), None, "bad"),
    ("GET", "/Observation", Some("patient=urn:uuid:1"), None, "bad"),
    ("GET", "/Observation", Some("subject=Patient/1"), None, "search Observation p=1 (search-type)"),
    ("GET", "/Observation", Some("subject=123"), None, "search Observation fan=subject-not-patient (search-type)"),
    ("GET", "/Observation", Some("subject=Group/1"), None, "search Observation fan=subject-not-patient (search-type)"),
    ("GET", "/Observation", Some("subject:Patient=123"), None, "search Observation p=123 (search-type)"),
    ("GET", "/Observation", Some("patient:Patient=123"), None, "search Observation p=123 (search-type)"),
    ("GET", "/Observation", Some("subject:Group=5"), None, "search Observation fan=subject-not-patient (search-type)"),
    ("GET", "/Observation", Some("patient:identifier=urn:mrn|1"), None, "search Observation fan=identifier-reference (search-type)"),
    ("GET", "/Observation", Some("patient:missing=true"), None, "search Observation fan=missing (search-type)"),
    ("GET", "/Observation", Some("patient:not=1"), None, "search Observation fan=modifier (search-type)"),
    ("GET", "/Observation", Some("patient%3Anot=1"), None, "search Observation fan=modifier (search-type)"),
    ("GET", "/Patient", Some("_id=123"), None, "search Patient p=123 (search-type)"),
    ("GET", "/Patient", Some("_id=1,2"), None, "search Patient p=1 (search-type) | search Patient p=2 (search-type)"),
    ("GET", "/Patient", Some("_id=Patient/1"), None, "bad"),
    ("GET", "/Observation", Some("_id=123"), None, "search Observation (search-type)"),
    ("GET", "/Patient", Some("name=smith"), None, "search Patient (search-type)"),
    ("GET", "/Observation", Some("code=1234&performer=Patient/1"), None, "search Observation (search-type)"),
    ("GET", "/Observation/_search", Some("patient=1"), None, "search Observation p=1 (search-type)"),
    ("POST", "/Observation/_search", None, Some("patient=Patient%2F42&code=x"), "search Observation p=42 (search-type)"),
    // The patient named in both the query and the form body: refused.
    ("POST", "/Observation/_search", Some("patient=1"), Some("patient=2"), "bad"),
    ("POST", "/Observation/_search", None, Some("_has:Observation:patient:code=x"), "search Observation fan=_has (search-type)"),
    ("POST", "/Observation/_search", None, Some(OBS_FOR_1), "bad"),
    // Traps.
    ("GET", "/Patient", Some("_has:Observation:patient:code=x"), None, "search Patient fan=_has (search-type)"),
    ("GET", "/Patient", Some("_id=1&_has:Observation:patient:code=x"), None, "search Patient p=1 fan=_has (search-type)"),
    ("GET", "/Observation", Some("patient.name=x"), None, "search Observation fan=chained (search-type)"),
    ("GET", "/Observation", Some("subject:Patient.name=x"), None, "search Observation fan=chained (search-type)"),
    ("GET", "/Observation", Some("patient=1&performer.name=x"), None, "search Observation p=1 fan=chained (search-type)"),
    ("GET", "/Patient", Some("_id=1&_HAS:Observation:patient:code=x"), None, "search Patient p=1 fan=_has (search-type)"),
    ("GET", "/Observation", Some("patient=1&_Include=Observation:patient"), None, "search Observation p=1 fan=_include (search-type)"),
    ("GET", "/Observation", Some("patient=1&%20_include=Observation:performer"), None, "bad"),
    ("GET", "/Observation", Some("PATIENT=1"), None, "bad"),
    ("GET", "/Observation", Some("_filter=patient eq 1"), None, "search Observation fan=_filter (search-type)"),
    ("GET", "/Observation", Some("_query=special"), None, "search Observation fan=_query (search-type)"),
    ("GET", "/Observation", Some("_contained=true"), None, "search Observation fan=_contained (search-type)"),
    ("GET", "/Observation", Some("patient=1&_contained=false"), None, "search Observation p=1 (search-type)"),
    ("GET", "/", Some("_getpages=abc&_getpagesoffset=20"), None, "search System fan=paging (search-system)"),
    // Included records are decided as a search of their own type.
    ("GET", "/Observation", Some("patient=1&_include=Observation:patient"), None, "search Observation p=1 (search-type) | search Patient p=1 (include)"),
    ("GET", "/Observation", Some("patient=1&_include=Observation:subject:Patient"), None, "search Observation p=1 (search-type) | search Patient p=1 (include)"),
    ("GET", "/Observation", Some("patient=1&_include=Observation:performer"), None, "search Observation p=1 fan=_include (search-type)"),
    ("GET", "/Observation", Some("patient=1&_include=*"), None, "search Observation p=1 fan=_include (search-type)"),
    ("GET", "/Observation", Some("patient=1&_include:iterate=Observation:patient"), None, "search Observation p=1 fan=_include (search-type)"),
    ("GET", "/Observation", Some("_include=Observation:patient"), None, "search Observation fan=_include (search-type)"),
    ("GET", "/Patient", Some("_id=1&_revinclude=Provenance:target"), None, "search Patient p=1 fan=_revinclude (search-type)"),
    ("GET", "/Patient", Some("_id=1&_revinclude=Observation:subject"), None, "search Patient p=1 (search-type) | search Observation p=1 (revinclude)"),
    ("GET", "/Patient", Some("_id=1,2&_revinclude=Observation:subject&_revinclude=Claim:patient"), None, "search Patient p=1 (search-type) | search Patient p=2 (search-type) | search Observation p=1 (revinclude) | search Observation p=2 (revinclude) | search Claim p=1 (revinclude) | search Claim p=2 (revinclude)"),
    ("GET", "/Observation", Some("code=x&_count=10&_sort=-date&unknown-param=y"), None, "search Observation (search-type)"),
    // System search.
    ("GET", "/", None, None, "search System (search-system)"),
    // A system search has no type whose `patient` parameter phigate could
    // vouch for: it scopes nothing.
    ("GET", "/", Some("_type=Observation&patient=5"), None, "search System (search-system)"),
    ("POST", "/_search", None, Some("patient=5"), "search System (search-system)"),
    // Nor does `patient` or `subject` on a type without it (a lenient
    // server ignores it and returns every record).
    ("GET", "/Group", Some("patient=5"), None, "search Group (search-type)"),
    ("GET", "/Patient", Some("patient=5"), None, "search Patient (search-type)"),
    ("GET", "/Claim", Some("subject=Patient/5"), None, "search Claim (search-type)"),
    ("GET", "/AdverseEvent", Some("subject=Patient/5"), None, "search AdverseEvent p=5 (search-type)"),
    // Compartments.
    ("GET", "/Patient/7/Observation", None, None, "search Observation p=7 (search-compartment)"),
    // A compartment search matches through every compartment reference, so
    // its includes are not provably the named patient's.
    ("GET", "/Patient/7/Observation", Some("code=x&_include=Observation:patient"), None, "search Observation p=7 fan=_include (search-compartment)"),
    ("GET", "/Patient/7/Communication", Some("_include=Communication:subject:Patient"), None, "search Communication p=7 fan=_include (search-compartment)"),
    // References that can name several patients, or not a patient at all.
    ("GET", "/Appointment", Some("patient=1&_include=Appointment:patient"), None, "search Appointment p=1 fan=_include (search-type)"),
    ("GET", "/Provenance", Some("patient=1&_include=Provenance:patient"), None, "search Provenance p=1 fan=_include (search-type)"),
    ("GET", "/Patient", Some("_id=1&_revinclude=Provenance:patient"), None, "search Patient p=1 fan=_revinclude (search-type)"),
    ("GET", "/Observation", Some("patient=1&_include=Observation:subject"), None, "search Observation p=1 fan=_include (search-type)"),
    ("PUT", "/Observation", Some("patient=1&_include=Observation:patient"), None, "update Observation p=1 fan=_include (conditional-update)"),
    ("GET", "/Patient/7/Observation", Some("_has:Observation:patient:code=x"), None, "search Observation p=7 fan=_has (search-compartment)"),
    ("POST", "/Patient/7/Observation/_search", None, Some("code=x"), "search Observation p=7 (search-compartment)"),
    ("GET", "/Patient/7/*", None, None, "everything Patient/7 p=7 (search-compartment)"),
    ("GET", "/Patient/7/Observations", None, None, "unmapped:unknown-resource-type"),
    ("GET", "/Practitioner/3/Observation", None, None, "search Observation fan=compartment (search-compartment)"),
    ("GET", "/Encounter/3/Observation", None, None, "search Observation fan=compartment (search-compartment)"),
    // A compartment search's own parameters count too: a policy that
    // permits compartment fan-out does not let a trap through beside it.
    ("GET", "/Encounter/3/Observation", Some("_has:Provenance:target:agent=x"), None, "search Observation fan=multiple (search-compartment)"),
    ("GET", "/Encounter/3/Observation", Some("_revinclude=Provenance:target"), None, "search Observation fan=multiple (search-compartment)"),
    ("GET", "/Encounter/3/*", None, None, "everything Encounter/3 fan=compartment (search-compartment)"),
    ("GET", "/Patient/3/*", Some("_has:Observation:patient:code=1"), None, "everything Patient/3 p=3 fan=_has (search-compartment)"),
    ("GET", "/Patient/3/*", Some("_type=Observation"), None, "everything Patient/3 p=3 (search-compartment)"),
    ("GET", "/Observation/3/Patient", None, None, "unmapped:not-a-compartment"),
    // Operations.
    ("GET", "/Patient/7/$everything", None, None, "everything Patient/7 p=7 (everything)"),
    ("POST", "/Patient/7/$everything", Some("_since=2020"), None, "everything Patient/7 p=7 (everything)"),
    ("GET", "/Patient/$everything", None, None, "everything Patient fan=everything-unscoped (everything)"),
    ("GET", "/Encounter/4/$everything", None, None, "everything Encounter/4 fan=everything-unscoped (everything)"),
    ("GET", "/$export", None, None, "export System (export)"),
    ("GET", "/Patient/$export", Some("_type=Observation"), None, "export Patient (export)"),
    ("GET", "/Group/g1/$export", None, None, "export Group/g1 (export)"),
    ("GET", "/Observation/$export", None, None, "unmapped:export-not-supported"),
    ("POST", "/$graphql", None, None, "operation System op=graphql fan=graphql (operation)"),
    ("GET", "/Patient/$graphql", Some("query={PatientList{id}}"), None, "operation Patient op=graphql fan=graphql (operation)"),
    ("GET", "/Patient/7/$graphql", None, None, "operation Patient/7 p=7 op=graphql fan=graphql (operation)"),
    ("POST", "/Observation/$validate", None, None, "operation Observation op=validate (operation)"),
    ("GET", "/Patient/7/$summary", None, None, "operation Patient/7 p=7 op=summary (operation)"),
    ("GET", "/Observation/9/$meta", None, None, "operation Observation/9 op=meta (operation)"),
    ("POST", "/$process-message", None, None, "operation System op=process-message (operation)"),
    ("DELETE", "/Observation/$validate", None, None, "unmapped:method-not-supported"),
    ("GET", "/Observation/$", None, None, "bad"),
    // Non-ASCII names that Unicode case folding turns into real ones.
    ("GET", "/Patient", Some("_id=1&_%C4%B0nclude=Patient:link"), None, "bad"),
    ("GET", "/Observation", Some("patient=1&%C5%BFubject=Patient/2"), None, "bad"),
    ("GET", "/$a%20b", None, None, "bad"),
];

#[test]
fn fhir_table() {
    let mapper = FhirMapper::new(vec![format!("{BASE}/")]);
    let mut failures = Vec::new();
    for (method, path, query, body, expected) in ROWS {
        let got = run(&mapper, method, path, *query, *body);
        if got != *expected {
            failures.push(format!(
                "{method} {path}{}{}\n    expected: {expected}\n    got:      {got}",
                query.map(|q| format!("?{q}")).unwrap_or_default(),
                body.map(|b| format!(" body={b}")).unwrap_or_default(),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n")
    );
}

/// Bundle rows: (body, expected).
#[rustfmt::skip]
const BUNDLE_ROWS: &[(&str, &str)] = &[
    (r#"{"resourceType":"Bundle","type":"batch","entry":[
        {"request":{"method":"GET","url":"Patient/1"}},
        {"request":{"method":"GET","url":"Observation?patient=2&code=x"}}]}"#,
     "batch: read Patient/1 p=1 (batch-entry) | search Observation p=2 (batch-entry)"),
    (r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Observation","subject":{"reference":"Patient/1"}},"request":{"method":"POST","url":"Observation"}},
        {"resource":{"resourceType":"Condition","subject":{"reference":"Patient/2"}},"request":{"method":"POST","url":"/Condition"}},
        {"request":{"method":"DELETE","url":"https://phigate.example/fhir/Observation/3"}}]}"#,
     "transaction: create Observation p=1 (batch-entry) | create Condition p=2 (batch-entry) | delete Observation/3 fan=stored-record-unread (batch-entry)"),
    (r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
        {"resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:a"}},"request":{"method":"POST","url":"Observation"}}]}"#,
     "transaction: create Patient (batch-entry) | create Observation fan=unresolved-reference (batch-entry)"),
    (r#"{"resourceType":"Bundle","type":"batch","entry":[
        {"request":{"method":"GET","url":"Patient/1"}},
        {"request":{"method":"GET","url":"Patient/1%2F2"}}]}"#, "bad"),
    (r#"{"resourceType":"Bundle","type":"batch","entry":[
        {"request":{"method":"GET","url":"Patient/1"}},
        {"request":{"method":"GET","url":"Patients/2"}}]}"#, "unmapped:unknown-resource-type"),
    (r#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/../Group/1"}}]}"#, "bad"),
    (r#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"https://evil.example/fhir/Patient/1"}}]}"#, "bad"),
    (r#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation?patient.name=x"}}]}"#,
     "batch: search Observation fan=chained (batch-entry)"),
    (r#"{"resourceType":"Bundle","type":"batch","entry":[
        {"resource":{"resourceType":"Bundle","type":"batch","entry":[]},"request":{"method":"POST","url":"Bundle"}}]}"#, "bad"),
    (r#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST","url":"/"}}]}"#, "bad"),
    // An entry's ifNoneExist is a search the server runs: decided too.
    (r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Observation","subject":{"reference":"Patient/1"}},"request":{"method":"POST","url":"Observation","ifNoneExist":"patient=2&code=x"}}]}"#,
     "transaction: create Observation p=1 (batch-entry) | search Observation p=2 (batch-entry)"),
    (r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Observation","subject":{"reference":"Patient/1"}},"request":{"method":"POST","url":"Observation","ifNoneExist":"identifier=abc"}}]}"#,
     "transaction: create Observation p=1 (batch-entry) | search Observation fan=conditional-unscoped (batch-entry)"),
    (r#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/1","ifNoneExist":"patient=2"}}]}"#, "bad"),
    (r#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST","url":""}}]}"#, "bad"),
    (r#"{"resourceType":"Bundle","type":"batch","entry":[
        {"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Observation"}}]}"#, "bad"),
    (r#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET"}}]}"#, "bad"),
    (r#"{"resourceType":"Bundle","type":"batch","entry":[]}"#, "bad"),
    (r#"{"resourceType":"Bundle","type":"batch"}"#, "bad"),
    (r#"{"resourceType":"Bundle","type":"document","entry":[{"request":{"method":"GET","url":"Patient/1"}}]}"#, "bad"),
    (r#"{"resourceType":"Bundle","type":"batch","type":"transaction","entry":[]}"#, "bad"),
    (r#"{"resourceType":"Patient"}"#, "bad"),
];

#[test]
fn bundle_table() {
    let mapper = FhirMapper::new(vec![BASE.to_owned()]);
    for (body, expected) in BUNDLE_ROWS {
        assert_eq!(
            run(&mapper, "POST", "/", None, Some(body)),
            *expected,
            "bundle {body}"
        );
    }
}

#[test]
fn bundle_entry_limit() {
    let entry = r#"{"request":{"method":"GET","url":"Patient/1"}}"#;
    let body = |n: usize| {
        format!(
            r#"{{"resourceType":"Bundle","type":"batch","entry":[{}]}}"#,
            vec![entry; n].join(",")
        )
    };
    let mapper = FhirMapper::new(vec![BASE.to_owned()]).with_max_bundle_entries(3);
    assert!(run(&mapper, "POST", "/", None, Some(&body(3))).starts_with("batch: "));
    assert_eq!(run(&mapper, "POST", "/", None, Some(&body(4))), "bad");
    let default = FhirMapper::new(vec![]);
    assert!(run(&default, "POST", "/", None, Some(&body(100))).starts_with("batch: "));
    assert_eq!(run(&default, "POST", "/", None, Some(&body(101))), "bad");
}

#[test]
fn content_types() {
    let mapper = FhirMapper::new(vec![]);
    let map = |ct: &str, path: &str, body: &str| {
        render(&mapper.map(&RequestView {
            method: "POST",
            path,
            query: None,
            content_type: Some(ct),
            body: Some(body.as_bytes()),
            if_none_exist: None,
            stored: None,
        }))
    };
    assert_eq!(
        map("application/json; charset=utf-8", "/Observation", OBS_FOR_1),
        "create Observation p=1 (create)"
    );
    assert_eq!(
        map("application/fhir+xml", "/Observation", "<Observation/>"),
        "bad"
    );
    assert_eq!(
        map("application/json", "/Observation/_search", "patient=1"),
        "bad"
    );
    assert_eq!(
        map(
            "Application/X-WWW-Form-Urlencoded;charset=UTF-8",
            "/Observation/_search",
            "patient=1"
        ),
        "search Observation p=1 (search-type)"
    );
}

#[test]
fn output_serializes_as_json() {
    let mapper = FhirMapper::new(vec![]);
    let req = RequestView {
        method: "GET",
        path: "/Patient/1",
        query: None,
        content_type: None,
        body: None,
        if_none_exist: None,
        stored: None,
    };
    let json = serde_json::to_value(mapper.map(&req).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"requests":[{"action":"read","resource":{"resource_type":"Patient","id":"1"},
            "patient":"1","fan_out":null,"interaction":"read","operation":null}],"bundle":null})
    );
}

#[test]
fn a_conditional_create_is_also_the_search_it_runs() {
    let mapper = FhirMapper::new(vec![]);
    let create = |criteria: &str| {
        render(&mapper.map(&RequestView {
            method: "POST",
            path: "/Observation",
            query: None,
            content_type: Some("application/fhir+json"),
            body: Some(OBS_FOR_1.as_bytes()),
            if_none_exist: Some(criteria),
            stored: None,
        }))
    };
    // The server searches before it creates: that search is decided too.
    assert_eq!(
        create("patient=2&code=x"),
        "create Observation p=1 (create) | search Observation p=2 (conditional-create)"
    );
    assert_eq!(
        create("identifier=abc"),
        "create Observation p=1 (create) | search Observation fan=conditional-unscoped (conditional-create)"
    );
    assert_eq!(create("Patient=2"), "bad");
}

#[test]
fn writes_by_id_are_decided_on_the_stored_record() {
    let mapper = FhirMapper::new(vec![]);
    let mut stored = super::StoredRecords::default();
    stored.insert(
        "Observation",
        "9",
        Some(serde_json::json!({"resourceType": "Observation", "id": "9", "subject": {"reference": "Patient/2"}})),
    );
    stored.insert("Observation", "new", None);
    stored.insert(
        "Patient",
        "5",
        Some(serde_json::json!({"resourceType": "Patient", "id": "5"})),
    );
    stored.insert(
        "Patient",
        "7",
        Some(serde_json::json!({"resourceType": "Patient", "id": "7", "link": [{"other": {"reference": "Patient/8"}, "type": "replaced-by"}]})),
    );
    let write = |method: &str, path: &str, ct: Option<&str>, body: Option<&str>| {
        render(&mapper.map(&RequestView {
            method,
            path,
            query: None,
            content_type: ct,
            body: body.map(str::as_bytes),
            if_none_exist: None,
            stored: Some(&stored),
        }))
    };
    let new_body = r#"{"resourceType":"Observation","id":"9","subject":{"reference":"Patient/1"}}"#;
    // Overwriting patient 2's record with a body naming patient 1 is a
    // change to both.
    assert_eq!(
        write(
            "PUT",
            "/Observation/9",
            Some("application/fhir+json"),
            Some(new_body)
        ),
        "update Observation/9 p=1 (update) | update Observation/9 p=2 (update)"
    );
    assert_eq!(
        write("DELETE", "/Observation/9", None, None),
        "delete Observation/9 p=2 (delete)"
    );
    let patch = r#"[{"op":"replace","path":"/subject/reference","value":"Patient/3"}]"#;
    assert_eq!(
        write(
            "PATCH",
            "/Observation/9",
            Some("application/json-patch+json"),
            Some(patch)
        ),
        "update Observation/9 p=2 (patch) | update Observation/9 p=3 (patch)"
    );
    // Nothing stored: an update creates it, decided on its body alone.
    let created =
        r#"{"resourceType":"Observation","id":"new","subject":{"reference":"Patient/1"}}"#;
    assert_eq!(
        write(
            "PUT",
            "/Observation/new",
            Some("application/fhir+json"),
            Some(created)
        ),
        "update Observation/new p=1 (update)"
    );
    // A Patient is read too: a stored link to another patient (a merge)
    // makes replacing or deleting it a change to that patient as well.
    assert_eq!(
        write("DELETE", "/Patient/5", None, None),
        "delete Patient/5 p=5 (delete)"
    );
    assert_eq!(
        write("DELETE", "/Patient/7", None, None),
        "delete Patient/7 p=7 (delete) | delete Patient/7 p=8 (delete)"
    );
    let linked = r#"{"resourceType":"Patient","id":"5","link":[{"other":{"reference":"Patient/6"},"type":"replaces"}]}"#;
    assert_eq!(
        write(
            "PUT",
            "/Patient/5",
            Some("application/fhir+json"),
            Some(linked)
        ),
        "update Patient/5 p=5 (update) | update Patient/5 p=6 (update)"
    );
    let link = r#"[{"op":"add","path":"/link","value":[{"other":{"reference":"Patient/6"},"type":"replaces"}]}]"#;
    assert_eq!(
        write(
            "PATCH",
            "/Patient/5",
            Some("application/json-patch+json"),
            Some(link)
        ),
        "update Patient/5 p=5 (patch) | update Patient/5 p=6 (patch)"
    );
    let name = r#"[{"op":"add","path":"/name","value":[{"family":"X"}]}]"#;
    assert_eq!(
        write(
            "PATCH",
            "/Patient/5",
            Some("application/json-patch+json"),
            Some(name)
        ),
        "update Patient/5 p=5 (patch)"
    );
    // A Bundle entry's write by id is decided on its stored record as well.
    let bundle = r#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"DELETE","url":"Observation/9"}}]}"#;
    assert_eq!(
        write("POST", "/", Some("application/fhir+json"), Some(bundle)),
        "batch: delete Observation/9 p=2 (batch-entry)"
    );
    // Two writes to one record: the second would land on what the first
    // made of it, which nothing decided.
    let twice = r#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"DELETE","url":"Observation/9"}},{"request":{"method":"PUT","url":"Observation/9"},"resource":{"resourceType":"Observation","id":"9"}}]}"#;
    assert_eq!(
        write("POST", "/", Some("application/fhir+json"), Some(twice)),
        "bad"
    );
    let twice = r#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"DELETE","url":"Observation/ab"}},{"request":{"method":"DELETE","url":"Observation/AB"}}]}"#;
    assert_eq!(
        write("POST", "/", Some("application/fhir+json"), Some(twice)),
        "bad"
    );
    // By criteria and by id: the criteria may pick the same record.
    let twice = r#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"PUT","url":"Observation?_id=9&patient=2"},"resource":{"resourceType":"Observation","subject":{"reference":"Patient/2"}}},{"request":{"method":"DELETE","url":"Observation/9"}}]}"#;
    assert_eq!(
        write("POST", "/", Some("application/fhir+json"), Some(twice)),
        "bad"
    );
}

#[test]
fn conditional_references_are_the_searches_they_run() {
    let mapper = FhirMapper::new(vec![]);
    let create = |subject: &str| {
        let body =
            format!(r#"{{"resourceType":"Observation","subject":{{"reference":"{subject}"}}}}"#);
        render(&mapper.map(&RequestView {
            method: "POST",
            path: "/Observation",
            query: None,
            content_type: Some("application/fhir+json"),
            body: Some(body.as_bytes()),
            if_none_exist: None,
            stored: None,
        }))
    };
    assert_eq!(create("Patient?_id=4"), "create Observation p=4 (create)");
    assert_eq!(
        create("https://phigate.example/fhir/Patient?_id=4"),
        "create Observation fan=foreign-reference (create)",
        "no base configured in this mapper"
    );
    // A URL in the criteria is not where the reference points.
    assert_eq!(
        create("Patient?identifier=http://hosp.example/mrn%7C7"),
        "create Observation fan=conditional-reference (create)"
    );
    assert_eq!(
        create("Patient?identifier=mrn%7C7"),
        "create Observation fan=conditional-reference (create)"
    );
    assert_eq!(
        create("Group?name=x"),
        "create Observation fan=subject-not-patient (create)"
    );
    assert_eq!(create("Patient?_id=1&_ID=2"), "bad");
    assert_eq!(create("Patients?_id=1"), "bad");
    assert_eq!(create("Patient?"), "bad");
}
