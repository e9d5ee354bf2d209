//! The demo's Cedar entities, derived from the synthetic FHIR data: each
//! patient with its care team, flags (restricted, VIP, employee) and
//! programs, the teams and the clinic, and a just-in-time elevation for the
//! support persona — so the example policies decide the demo's requests the
//! way they would a hospital's.

use super::data::{patient_reference, resource_id, DemoData};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The elevation ticket the demo grants the support persona for `pat-0003`.
pub const DEMO_TICKET: &str = "INC-1001";

fn entity(kind: &str, id: &str, attrs: Value, parents: &[(&str, &str)]) -> Value {
    json!({
        "uid": {"type": format!("Phigate::{kind}"), "id": id},
        "attrs": attrs,
        "parents": parents.iter().map(|(t, i)| json!({"type": format!("Phigate::{t}"), "id": i})).collect::<Vec<_>>(),
    })
}

fn reference(kind: &str, id: &str) -> Value {
    json!({"__entity": {"type": format!("Phigate::{kind}"), "id": id}})
}

fn datetime(t: jiff::Timestamp) -> Value {
    json!({"__extn": {"fn": "datetime", "arg": t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}})
}

/// Cedar JSON entities for `data`; the elevation runs from an hour before
/// `now` to eight hours after.
pub fn cedar_entities(data: &DemoData, now: jiff::Timestamp) -> Value {
    let org = "org-0001";
    let mut out = vec![
        entity("Organization", org, json!({}), &[]),
        entity("Organization", "org-vendor", json!({}), &[]),
    ];
    // Patient id → team identifier, from the CareTeam resources.
    let mut team_of: BTreeMap<String, String> = BTreeMap::new();
    for team in data.of_type("CareTeam") {
        let Some(patient) = patient_reference(team).and_then(|r| r.strip_prefix("Patient/")) else {
            continue;
        };
        if let Some(name) = team["identifier"][0]["value"].as_str() {
            team_of.insert(patient.to_string(), name.to_string());
        }
    }
    let mut teams: Vec<&String> = team_of.values().collect();
    teams.sort();
    teams.dedup();
    for team in teams {
        out.push(entity(
            "CareTeam",
            team,
            json!({"name": team}),
            &[("Organization", org)],
        ));
    }
    for (n, patient) in data.of_type("Patient").enumerate() {
        let id = resource_id(patient);
        let mut flags = Vec::new();
        for code in patient["meta"]["security"].as_array().into_iter().flatten() {
            if matches!(code["code"].as_str(), Some("R" | "V")) {
                flags.push("restricted");
            }
        }
        for tag in patient["meta"]["tag"].as_array().into_iter().flatten() {
            match tag["code"].as_str() {
                Some("VIP") => flags.push("vip"),
                Some("STF") => flags.push("employee"),
                _ => {}
            }
        }
        // Three in four patients are enrolled in remote monitoring.
        let mut enrolled = vec!["ccm"];
        if (n + 1) % 4 != 3 {
            enrolled.push("rpm");
        }
        let mut parents = vec![("Organization", org)];
        let mut care_teams = Vec::new();
        if let Some(team) = team_of.get(id) {
            parents.push(("CareTeam", team.as_str()));
            care_teams.push(reference("CareTeam", team));
        }
        out.push(entity(
            "Patient",
            id,
            json!({"care_teams": care_teams, "organization": reference("Organization", org),
                   "flags": flags, "enrolled": enrolled}),
            &parents,
        ));
    }
    let hour = jiff::SignedDuration::from_hours(1);
    out.push(entity(
        "Elevation",
        DEMO_TICKET,
        json!({"grantee": reference("User", "sam"), "patient": reference("Patient", "pat-0003"),
               "not_before": datetime(now - hour), "expires": datetime(now + hour * 8)}),
        &[],
    ));
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_entities_validate_and_match_the_example_flags() {
        let data = DemoData::generate(7, 40);
        let value = cedar_entities(&data, jiff::Timestamp::now());
        let schema = cedar_policy::Schema::from_cedarschema_str(include_str!(
            "../../policies/phigate.cedarschema"
        ))
        .unwrap()
        .0;
        let store =
            crate::authz::entities::EntityStore::from_json(&value.to_string(), Some(&schema))
                .unwrap();
        assert!(store.len() > 40);
        let text = value.to_string();
        let patient = |id: &str| {
            value
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["uid"]["id"] == id && e["uid"]["type"] == "Phigate::Patient")
                .cloned()
                .unwrap()
        };
        assert_eq!(patient("pat-0002")["attrs"]["flags"], json!(["restricted"]));
        assert_eq!(patient("pat-0007")["attrs"]["flags"], json!(["vip"]));
        assert_eq!(patient("pat-0009")["attrs"]["flags"], json!(["employee"]));
        assert_eq!(patient("pat-0003")["attrs"]["enrolled"], json!(["ccm"]));
        assert_eq!(patient("pat-0001")["parents"][1]["id"], "team-01");
        assert!(text.contains(DEMO_TICKET));
    }
}
