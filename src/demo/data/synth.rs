//! The generator core: one seeded RNG stream, the administrative resources
//! (Organization, Practitioner, Patient, CareTeam, Coverage) and the helpers
//! every builder shares. Clinical and billing resources live in `clinical.rs`.
//!
//! Everything is drawn from a single `ChaCha8Rng` in a fixed order, so the
//! same seed and patient count always give the same resources, byte for byte.
//! Privacy-relevant markers (confidentiality labels, VIP/staff tags, sensitive
//! diagnoses) are placed by patient number instead, so tests can rely on them
//! whatever the seed; see [`super::DemoData`] for the exact rules.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

pub(super) const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
pub(super) const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const PATIENT_IMPORTANCE: &str = "http://terminology.hl7.org/CodeSystem/v3-PatientImportance";
const BIRTH_SEX: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex";
const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
const MRN: &str = "http://hospital.example.org/fhir/sid/mrn";
pub(super) const SNOMED: &str = "http://snomed.info/sct";
pub(super) const CPT: &str = "http://www.ama-assn.org/go/cpt";

/// Given names: the NATO alphabet, so nobody mistakes a record for a person.
const GIVEN: [&str; 16] = [
    "Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliett",
    "Kilo", "Lima", "Mike", "November", "Oscar", "Papa",
];
const FAMILY: [&str; 10] = [
    "Sampleton",
    "Testwell",
    "Fakerson",
    "Demoulin",
    "Mockridge",
    "Synthwood",
    "Placeholder",
    "Dummington",
    "Examplar",
    "Fixtureson",
];
const STREETS: [&str; 5] = [
    "Example Ave",
    "Sample St",
    "Test Blvd",
    "Fixture Ln",
    "Synthetic Way",
];
const CITIES: [(&str, &str); 4] = [
    ("Springfield", "MA"),
    ("Anytown", "OH"),
    ("Faketon", "TX"),
    ("Demoville", "WA"),
];

/// Days from 1970-01-01 to 2024-01-01, the origin of every generated date.
const EPOCH_2024: i64 = 19_723;

/// The team roles, in the order a team's own practitioners are numbered.
const ROLES: [Role; 3] = [
    Role {
        snomed: "224535009",
        display: "Registered nurse",
        suffix: "RN",
    },
    Role {
        snomed: "446050000",
        display: "Primary care physician",
        suffix: "MD",
    },
    Role {
        snomed: "46255001",
        display: "Pharmacist",
        suffix: "PharmD",
    },
];
/// The medical director (prac-0001) supervises every team.
const DIRECTOR: Role = Role {
    snomed: "309343006",
    display: "Physician",
    suffix: "MD",
};

#[derive(Clone, Copy)]
pub(super) struct Role {
    snomed: &'static str,
    display: &'static str,
    suffix: &'static str,
}

/// A patient's fixed facts, shared by every resource built for them.
pub(super) struct PatientCtx {
    pub n: usize,
    pub id: String,
    pub reference: String,
    pub given: &'static str,
    pub team: usize,
    pub chronic: Vec<usize>,
}

impl PatientCtx {
    /// A stable per-patient id such as `obs-0001-03`.
    pub fn child_id(&self, prefix: &str, k: usize) -> String {
        format!("{prefix}-{:04}-{k:02}", self.n)
    }

    pub fn single_id(&self, prefix: &str) -> String {
        format!("{prefix}-{:04}", self.n)
    }
}

/// The seeded generator; `build` produces the whole data set.
pub(super) struct Synth {
    rng: ChaCha8Rng,
    teams: usize,
}

impl Synth {
    pub fn new(seed: u64, patients: usize) -> Self {
        Synth {
            rng: ChaCha8Rng::seed_from_u64(seed),
            teams: team_count(patients),
        }
    }

    pub fn build(mut self, patients: usize) -> Vec<Value> {
        let mut out = vec![self.clinic(), self.payer()];
        out.push(self.practitioner(1, DIRECTOR));
        for team in 0..self.teams {
            for (k, role) in ROLES.iter().enumerate() {
                out.push(self.practitioner(2 + team * ROLES.len() + k, *role));
            }
        }
        for n in 1..=patients {
            self.patient_resources(n, &mut out);
        }
        out
    }

    fn patient_resources(&mut self, n: usize, out: &mut Vec<Value>) {
        let ctx = self.patient_ctx(n);
        out.push(self.patient(&ctx));
        out.push(self.care_team(&ctx));
        out.push(self.coverage(&ctx));
        self.clinical_resources(&ctx, out);
    }

    fn patient_ctx(&mut self, n: usize) -> PatientCtx {
        let id = format!("pat-{n:04}");
        let first = self.below(4);
        let second = (first + 1 + self.below(3)) % 4;
        PatientCtx {
            n,
            reference: format!("Patient/{id}"),
            id,
            given: self.pick(&GIVEN),
            team: (n - 1) % self.teams,
            chronic: vec![first, second],
        }
    }

    // ---- shared helpers ---------------------------------------------------

    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n as u32) as usize
    }

    pub fn between(&mut self, lo: u32, hi: u32) -> u32 {
        self.rng.random_range(lo..=hi)
    }

    pub fn pick<T: Copy>(&mut self, list: &[T]) -> T {
        list[self.below(list.len())]
    }

    fn digits(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    /// A ten-digit NPI with a valid Luhn check digit, as real NPIs have.
    fn npi(&mut self) -> String {
        let body = format!("1{}", self.digits(8));
        format!("{body}{}", npi_check_digit(&body))
    }

    /// `(555) 555-01xx`: the 555-0100..0199 block is reserved for fiction.
    fn phone(&mut self) -> String {
        format!("({}) 555-01{:02}", self.between(201, 989), self.below(100))
    }

    /// The reference of a team's practitioner by role index (0 = care manager).
    pub fn team_member(&self, team: usize, role: usize) -> String {
        practitioner_ref(2 + team * ROLES.len() + role)
    }

    // ---- administrative resources ----------------------------------------

    fn clinic(&mut self) -> Value {
        let npi = self.npi();
        let phone = self.phone();
        json!({
            "resourceType": "Organization", "id": "org-0001", "meta": meta(0),
            "active": true, "name": "Synthetic Valley Care Clinic",
            "identifier": [{"system": NPI, "value": npi}],
            "type": [org_type("prov", "Healthcare Provider")],
            "telecom": [{"system": "phone", "value": phone, "use": "work"}],
            "address": [{"line": ["1 Example Plaza"], "city": "Springfield", "state": "MA",
                         "postalCode": "01101", "country": "US"}]
        })
    }

    fn payer(&mut self) -> Value {
        let phone = self.phone();
        json!({
            "resourceType": "Organization", "id": "org-0002", "meta": meta(0),
            "active": true, "name": "Example Health Plan",
            "type": [org_type("pay", "Payer")],
            "telecom": [{"system": "phone", "value": phone, "use": "work"}]
        })
    }

    fn practitioner(&mut self, n: usize, role: Role) -> Value {
        let (given, family) = (self.pick(&GIVEN), self.pick(&FAMILY));
        let npi = self.npi();
        let phone = self.phone();
        json!({
            "resourceType": "Practitioner", "id": format!("prac-{n:04}"), "meta": meta(0),
            "active": true,
            "identifier": [{"system": NPI, "value": npi}],
            "name": [practitioner_name(given, family, role)],
            "telecom": [
                {"system": "phone", "value": phone, "use": "work"},
                {"system": "email", "value": format!("{}.{}@clinic.example.org",
                    given.to_lowercase(), family.to_lowercase()), "use": "work"}
            ],
            "qualification": [{"code": {"text": role.suffix}}]
        })
    }

    fn patient(&mut self, ctx: &PatientCtx) -> Value {
        let family = self.pick(&FAMILY);
        let middle = self.pick(&GIVEN);
        let gender = if self.rng.random_bool(0.5) {
            "female"
        } else {
            "male"
        };
        let birth = date(-i64::from(self.between(55 * 365, 90 * 365)));
        let (city, state) = self.pick(&CITIES);
        let line = format!("{} {}", self.between(1, 9999), self.pick(&STREETS));
        let (mrn, zip, phone) = (self.digits(8), self.digits(5), self.phone());
        let email = format!(
            "{}.{}{}@example.com",
            ctx.given.to_lowercase(),
            family.to_lowercase(),
            ctx.n
        );
        let narrative = format!("{} {family}, {gender}, born {birth} (synthetic)", ctx.given);
        let mut patient = json!({
            "resourceType": "Patient", "id": ctx.id, "meta": meta(self.below(30) as i64),
            "text": {"status": "generated", "div": xhtml(&narrative)},
            "extension": [{"url": BIRTH_SEX, "valueCode": &gender[..1].to_uppercase()}],
            "identifier": [{"use": "usual",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                     "code": "MR", "display": "Medical record number"}]},
                "system": MRN, "value": format!("MRN{mrn}")}],
            "active": true,
            "name": [{"use": "official", "family": family, "given": [ctx.given, middle]}],
            "telecom": [{"system": "phone", "value": phone, "use": "home"},
                        {"system": "email", "value": email}],
            "gender": gender, "birthDate": birth,
            "address": [{"use": "home", "line": [line], "city": city, "state": state,
                         "postalCode": zip, "country": "US"}],
            "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47",
                               "code": "en-US", "display": "English (United States)"}]},
                               "preferred": true}],
            "generalPractitioner": [{"reference": self.team_member(ctx.team, 1)}],
            "managingOrganization": {"reference": "Organization/org-0001"}
        });
        label_patient(&mut patient, ctx.n);
        patient
    }

    fn care_team(&mut self, ctx: &PatientCtx) -> Value {
        let mut participants: Vec<Value> = (0..ROLES.len())
            .map(|r| participant(ROLES[r], self.team_member(ctx.team, r)))
            .collect();
        participants.push(participant(DIRECTOR, practitioner_ref(1)));
        json!({
            "resourceType": "CareTeam", "id": ctx.single_id("ct"), "meta": meta(0),
            "identifier": [{"system": "http://hospital.example.org/fhir/sid/care-team",
                            "value": format!("team-{:02}", ctx.team + 1)}],
            "status": "active", "name": format!("CCM Team {}", ctx.team + 1),
            "category": [{"coding": [{"system": "http://loinc.org", "code": "LA28865-6",
                "display": "Longitudinal care-coordination focused care team"}]}],
            "subject": {"reference": ctx.reference},
            "period": {"start": date(self.below(60) as i64)},
            "participant": participants,
            "managingOrganization": [{"reference": "Organization/org-0001"}]
        })
    }

    fn coverage(&mut self, ctx: &PatientCtx) -> Value {
        let member = format!("{}EG{}", self.between(1, 9), self.digits(7));
        json!({
            "resourceType": "Coverage", "id": ctx.single_id("cov"), "meta": meta(0),
            "status": "active",
            "type": {"coding": [{"system": ACT_CODE, "code": "PUBLICPOL",
                                 "display": "public healthcare"}]},
            "subscriberId": member,
            "beneficiary": {"reference": ctx.reference},
            "relationship": {"coding": [{"system":
                "http://terminology.hl7.org/CodeSystem/subscriber-relationship", "code": "self"}]},
            "period": {"start": "2024-01-01", "end": "2024-12-31"},
            "payor": [{"reference": "Organization/org-0002"}],
            "class": [{"type": {"coding": [{"system":
                "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "plan"}]},
                "value": "CCM-PLAN-A", "name": "Example Medicare Advantage"}]
        })
    }
}

/// About one care team per twenty patients, and never fewer than one.
fn team_count(patients: usize) -> usize {
    patients.div_ceil(20).max(1)
}

fn practitioner_ref(n: usize) -> String {
    format!("Practitioner/prac-{n:04}")
}

fn participant(role: Role, reference: String) -> Value {
    json!({"role": [{"coding": [{"system": SNOMED, "code": role.snomed, "display": role.display}]}],
           "member": {"reference": reference}})
}

/// FHIR JSON forbids empty arrays, so only physicians get a `prefix`.
fn practitioner_name(given: &str, family: &str, role: Role) -> Value {
    let mut name = json!({"use": "official", "family": family, "given": [given],
                          "suffix": [role.suffix]});
    if role.suffix == "MD" {
        name["prefix"] = json!(["Dr."]);
    }
    name
}

fn org_type(code: &str, display: &str) -> Value {
    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type",
                       "code": code, "display": display}]})
}

/// Confidentiality labels and VIP/staff tags, placed by patient number so the
/// proxy's tests can name them: every 10th from pat-0002 is `R`, every 25th
/// from pat-0004 is `V`, every 20th from pat-0007 is a VIP, every 15th from
/// pat-0009 is a staff member.
fn label_patient(patient: &mut Value, n: usize) {
    let confidentiality = match (n % 25, n % 10) {
        (4, _) => Some(("V", "very restricted")),
        (_, 2) => Some(("R", "restricted")),
        _ => None,
    };
    if let Some((code, display)) = confidentiality {
        patient["meta"]["security"] =
            json!([{"system": CONFIDENTIALITY, "code": code, "display": display}]);
    }
    let mut tags = Vec::new();
    if n % 20 == 7 {
        tags.push(importance("VIP", "very important person"));
    }
    if n % 15 == 9 {
        tags.push(importance("STF", "staff member"));
    }
    if !tags.is_empty() {
        patient["meta"]["tag"] = Value::Array(tags);
    }
}

fn importance(code: &str, display: &str) -> Value {
    json!({"system": PATIENT_IMPORTANCE, "code": code, "display": display})
}

/// A narrative `div`; the text is generated, never user input, so no escaping.
fn xhtml(text: &str) -> String {
    format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{text}</div>")
}

/// Resource metadata; `day` offsets `lastUpdated` from 2024-03-01.
pub(super) fn meta(day: i64) -> Value {
    json!({"versionId": "1", "lastUpdated": date_time(60 + day, 9 * 60)})
}

/// Luhn check digit over the NPI with its `80840` card-issuer prefix.
fn npi_check_digit(body: &str) -> u32 {
    let digits = format!("80840{body}");
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let twice = d * 2;
                twice / 10 + twice % 10
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// `YYYY-MM-DD` for a day offset from 2024-01-01 (negative = earlier).
pub(super) fn date(day: i64) -> String {
    let (y, m, d) = civil_from_days(EPOCH_2024 + day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// An instant in UTC: a day offset from 2024-01-01 plus minutes after midnight.
pub(super) fn date_time(day: i64, minute: u32) -> String {
    format!(
        "{}T{:02}:{:02}:00Z",
        date(day),
        minute / 60 % 24,
        minute % 60
    )
}

/// Gregorian date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(date(0), "2024-01-01");
        assert_eq!(date(59), "2024-02-29");
        assert_eq!(date(366), "2025-01-01");
        assert_eq!(date(-1), "2023-12-31");
        assert_eq!(date_time(1, 8 * 60 + 5), "2024-01-02T08:05:00Z");
    }

    #[test]
    fn npi_check_digit_matches_cms_example() {
        // CMS's published example: 123456789 has check digit 3.
        assert_eq!(npi_check_digit("123456789"), 3);
    }

    #[test]
    fn team_count_is_about_one_per_twenty() {
        assert_eq!(team_count(0), 1);
        assert_eq!(team_count(20), 1);
        assert_eq!(team_count(21), 2);
        assert_eq!(team_count(100), 5);
    }
}
