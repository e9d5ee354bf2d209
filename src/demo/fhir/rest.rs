//! The FHIR REST routes under `/fhir`, as a pure function from request line
//! to [`Reply`] so they can be tested without sockets.

use super::query::{parse_query, percent_decode, Allowed, BadRequest, Search};
use super::store::{json_bytes, Page, Store};
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;

pub(super) const FHIR_JSON: &str = "application/fhir+json";

/// A finished response, independent of the HTTP library.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Reply {
    fn fhir(body: Bytes) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type: FHIR_JSON,
            body,
        }
    }

    /// An OperationOutcome; `diagnostics` must never quote request data.
    pub fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Reply {
        let outcome = json!({"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]});
        Reply {
            status,
            content_type: FHIR_JSON,
            body: json_bytes(&outcome),
        }
    }

    fn not_found(what: &str) -> Reply {
        Reply::outcome(StatusCode::NOT_FOUND, "not-found", what)
    }
}

impl From<BadRequest> for Reply {
    fn from(e: BadRequest) -> Reply {
        Reply::outcome(StatusCode::BAD_REQUEST, "invalid", &e.to_string())
    }
}

/// A request under `/fhir`: `path` is everything after `/fhir`, `base` the
/// absolute base URL used in `fullUrl` and links.
pub(super) fn route(
    store: &Store,
    method: &Method,
    path: &str,
    query: Option<&str>,
    base: &str,
) -> Reply {
    if method != Method::GET {
        return Reply::outcome(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            "this server is read-only",
        );
    }
    match dispatch(store, path, query.unwrap_or(""), base) {
        Ok(reply) => reply,
        Err(bad) => bad.into(),
    }
}

fn dispatch(store: &Store, path: &str, query: &str, base: &str) -> Result<Reply, BadRequest> {
    let segments = segments(path)?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["metadata"] => Ok(Reply::fhir(store.capability())),
        [rtype] if store.is_known_type(rtype) => type_search(store, rtype, None, query, base),
        [rtype, id] if store.is_known_type(rtype) => Ok(read(store, rtype, id)),
        ["Patient", id, "$everything"] => everything(store, id, query, base),
        ["Patient", id, rtype] if store.is_known_type(rtype) => {
            compartment_search(store, id, rtype, query, base)
        }
        _ => Ok(Reply::not_found("no such resource type or route")),
    }
}

/// Percent-decoded path segments; a single trailing slash is ignored.
fn segments(path: &str) -> Result<Vec<String>, BadRequest> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    trimmed
        .split('/')
        .map(|s| percent_decode(s, false))
        .collect()
}

fn read(store: &Store, rtype: &str, id: &str) -> Reply {
    match store.read(rtype, id) {
        Some(body) => Reply::fhir(body),
        None => Reply::not_found("resource not found"),
    }
}

/// `GET /fhir/{Type}?...`, or the compartment form when `patient` is given.
fn type_search(
    store: &Store,
    rtype: &str,
    patient: Option<&str>,
    query: &str,
    base: &str,
) -> Result<Reply, BadRequest> {
    let allowed = match rtype {
        "CareTeam" => Allowed::CareTeam,
        "Patient" | "Practitioner" | "Organization" => Allowed::Plain,
        _ => Allowed::PatientLinked,
    };
    let mut search = Search::parse(&parse_query(query)?, allowed)?;
    if let Some(p) = patient {
        search.patients.insert(0, p.to_owned());
    }
    let matches = store.search(rtype, &search);
    let page = Page {
        matches: &matches,
        search: &search,
        endpoint: format!("{base}/{rtype}"),
        base,
    };
    Ok(Reply::fhir(store.searchset(&page)))
}

/// `GET /fhir/Patient/{id}/{Type}`: the same as `{Type}?patient={id}`.
fn compartment_search(
    store: &Store,
    id: &str,
    rtype: &str,
    query: &str,
    base: &str,
) -> Result<Reply, BadRequest> {
    if matches!(rtype, "Patient" | "Practitioner" | "Organization") {
        return Ok(Reply::not_found("type is not in the Patient compartment"));
    }
    if store.everything(id).is_none() {
        return Ok(Reply::not_found("patient not found"));
    }
    type_search(store, rtype, Some(id), query, base)
}

/// `GET /fhir/Patient/{id}/$everything`: the patient and its compartment.
fn everything(store: &Store, id: &str, query: &str, base: &str) -> Result<Reply, BadRequest> {
    let search = Search::parse(&parse_query(query)?, Allowed::PagingOnly)?;
    let Some(matches) = store.everything(id) else {
        return Ok(Reply::not_found("patient not found"));
    };
    let endpoint = format!("{base}/Patient/{id}/$everything");
    Ok(Reply::fhir(store.searchset(&Page {
        matches,
        search: &search,
        endpoint,
        base,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::DemoData;
    use serde_json::Value;

    const BASE: &str = "http://upstream/fhir";

    fn store() -> Store {
        Store::new(&DemoData::generate(42, 30))
    }

    fn get(store: &Store, target: &str) -> (StatusCode, Value) {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let reply = route(store, &Method::GET, path, query, BASE);
        assert_eq!(reply.content_type, FHIR_JSON);
        (reply.status, serde_json::from_slice(&reply.body).unwrap())
    }

    fn ids(bundle: &Value) -> Vec<String> {
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        entries
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn reads_a_resource_and_404s_unknown_ones() {
        let s = store();
        let (status, patient) = get(&s, "/Patient/pat-0003");
        assert_eq!(
            (status, patient["id"].as_str()),
            (StatusCode::OK, Some("pat-0003"))
        );
        let (status, outcome) = get(&s, "/Patient/pat-9999");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(get(&s, "/Medication/x").0, StatusCode::NOT_FOUND);
        assert_eq!(
            get(&s, "/Patient/pat-0001/Observation/extra").0,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn metadata_is_a_capability_statement() {
        let (status, cap) = get(&store(), "/metadata");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cap["fhirVersion"], "4.0.1");
    }

    #[test]
    fn patient_search_accepts_both_reference_forms() {
        let s = store();
        let (status, a) = get(&s, "/Observation?patient=Patient/pat-0002");
        assert_eq!(status, StatusCode::OK);
        let (_, b) = get(&s, "/Observation?subject=pat-0002");
        assert_eq!(ids(&a), ids(&b));
        assert!(ids(&a).len() >= 6);
        assert!(ids(&a).iter().all(|id| id.starts_with("obs-0002-")));
        assert_eq!(a["type"], "searchset");
        assert_eq!(a["entry"][0]["search"]["mode"], "match");
        assert_eq!(
            a["entry"][0]["fullUrl"],
            format!("{BASE}/Observation/{}", ids(&a)[0])
        );
        let (_, claim) = get(&s, "/Claim?patient=Patient%2Fpat-0002");
        assert_eq!(ids(&claim), ["claim-0002"]);
        let (_, coverage) = get(&s, "/Coverage?patient=pat-0002");
        assert_eq!(ids(&coverage), ["cov-0002"]);
    }

    #[test]
    fn search_by_id_and_participant() {
        let s = store();
        let (_, by_id) = get(&s, "/Patient?_id=pat-0001,pat-0004,nope");
        assert_eq!(ids(&by_id), ["pat-0001", "pat-0004"]);
        let (_, teams) = get(&s, "/CareTeam?participant=Practitioner/prac-0001");
        assert_eq!(teams["total"], 30);
        let (_, teams) = get(&s, "/CareTeam?participant=prac-0002&patient=pat-0001");
        assert_eq!(ids(&teams), ["ct-0001"]);
    }

    #[test]
    fn pages_with_next_and_previous_links() {
        let s = store();
        let (_, first) = get(&s, "/Patient?_count=12");
        assert_eq!((first["total"].as_u64(), ids(&first).len()), (Some(30), 12));
        let next = first["link"][1]["url"].as_str().unwrap();
        assert_eq!(first["link"][1]["relation"], "next");
        let (_, second) = get(&s, next.strip_prefix(BASE).unwrap());
        assert_eq!(ids(&second)[0], "pat-0013");
        let (_, last) = get(&s, "/Patient?_count=12&_offset=24");
        assert_eq!(ids(&last).len(), 6);
        assert!(last["link"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["relation"] != "next"));
        let (_, empty) = get(&s, "/Patient?_count=0");
        assert_eq!(
            (empty["total"].as_u64(), empty.get("entry")),
            (Some(30), None)
        );
    }

    #[test]
    fn bad_searches_are_400() {
        let s = store();
        for bad in [
            "/Patient?family=Sampleton",
            "/Observation?patient=%FF",
            "/Patient?_count=1%",
            "/Observation?code=8867-4",
            "/Patient?_count=999999999999999999999999",
        ] {
            let (status, outcome) = get(&s, bad);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(outcome["issue"][0]["code"], "invalid");
        }
        assert_eq!(get(&s, "/Patient/%C3%28").0, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn everything_returns_the_patient_and_its_compartment() {
        let s = store();
        let (status, all) = get(&s, "/Patient/pat-0005/%24everything?_count=500");
        assert_eq!(status, StatusCode::OK);
        let ids = ids(&all);
        assert_eq!(ids[0], "pat-0005");
        assert!(ids.iter().any(|id| id == "claim-0005") && ids.iter().any(|id| id == "ct-0005"));
        assert!(ids.iter().all(|id| id.contains("0005")));
        assert_eq!(
            get(&s, "/Patient/pat-0999/$everything").0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&s, "/Patient/pat-0005/$everything?patient=x").0,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn compartment_search_equals_patient_search() {
        let s = store();
        let (_, compartment) = get(&s, "/Patient/pat-0007/Condition");
        let (_, search) = get(&s, "/Condition?patient=pat-0007");
        assert_eq!(compartment, search);
        assert_eq!(
            get(&s, "/Patient/pat-0999/Condition").0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&s, "/Patient/pat-0007/Practitioner").0,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn writes_are_405() {
        let reply = route(&store(), &Method::POST, "/Patient", None, BASE);
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
