//! Clinical and billing resources for one patient: Condition, CarePlan,
//! Observation (remote patient monitoring vitals), Communication, Encounter
//! and Claim. They all hang off the patient context built in `synth.rs`.

use super::synth::{date, date_time, meta, PatientCtx, Synth, ACT_CODE, CPT, SNOMED};
use serde_json::{json, Value};

const ICD10: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

/// A diagnosis with its SNOMED CT and ICD-10-CM codes; sensitive ones carry
/// the v3 ActCode information-sensitivity label a consent engine keys on.
struct Diagnosis {
    snomed: &'static str,
    icd10: &'static str,
    text: &'static str,
    sensitivity: Option<(&'static str, &'static str)>,
}

/// CCM eligibility needs two or more chronic conditions; each patient gets two.
const CHRONIC: [Diagnosis; 4] = [
    dx("44054006", "E11.9", "Type 2 diabetes mellitus", None),
    dx("38341003", "I10", "Essential hypertension", None),
    dx("42343007", "I50.9", "Congestive heart failure", None),
    dx(
        "13645005",
        "J44.9",
        "Chronic obstructive pulmonary disease",
        None,
    ),
];
const DIABETES: usize = 0;
const CHF: usize = 2;
const COPD: usize = 3;

const DEPRESSION: Diagnosis = dx(
    "35489007",
    "F32.9",
    "Depressive disorder",
    Some(("PSY", "psychiatry disorder information sensitivity")),
);
const HIV: Diagnosis = dx(
    "86406008",
    "B20",
    "Human immunodeficiency virus infection",
    Some(("HIV", "HIV/AIDS information sensitivity")),
);
const OPIOID_USE: Diagnosis = dx(
    "5602001",
    "F11.20",
    "Opioid use disorder",
    Some(("SUD", "substance abuse disorder information sensitivity")),
);

const fn dx(
    snomed: &'static str,
    icd10: &'static str,
    text: &'static str,
    sensitivity: Option<(&'static str, &'static str)>,
) -> Diagnosis {
    Diagnosis {
        snomed,
        icd10,
        text,
        sensitivity,
    }
}

/// Sensitive diagnoses by patient number, so tests can find them for any
/// seed: PSY every 8th from pat-0005, HIV every 12th from pat-0006, SUD every
/// 9th from pat-0003.
fn sensitive_diagnoses(n: usize) -> Vec<&'static Diagnosis> {
    let rules: [(usize, usize, &'static Diagnosis); 3] =
        [(8, 5, &DEPRESSION), (12, 6, &HIV), (9, 3, &OPIOID_USE)];
    rules
        .into_iter()
        .filter(|(every, at, _)| n % every == *at)
        .map(|(_, _, d)| d)
        .collect()
}

/// A remote-monitoring vital sign kind.
#[derive(Clone, Copy)]
enum Vital {
    BloodPressure,
    HeartRate,
    Weight,
    Glucose,
    SpO2,
}

impl Synth {
    /// Every clinical and billing resource for one patient, in a fixed order.
    pub(super) fn clinical_resources(&mut self, ctx: &PatientCtx, out: &mut Vec<Value>) {
        let mut diagnoses: Vec<&Diagnosis> = ctx.chronic.iter().map(|&i| &CHRONIC[i]).collect();
        diagnoses.extend(sensitive_diagnoses(ctx.n));
        let conditions: Vec<String> = (1..=diagnoses.len())
            .map(|k| ctx.child_id("cond", k))
            .collect();
        for (k, d) in diagnoses.iter().enumerate() {
            out.push(self.condition(ctx, &conditions[k], d));
        }
        out.push(self.care_plan(ctx, &conditions));
        for (k, vital) in self.vitals_for(ctx).into_iter().enumerate() {
            out.push(self.observation(ctx, k + 1, vital));
        }
        out.extend(self.communications(ctx));
        let encounters = 1 + self.below(2);
        for k in 1..=encounters {
            out.push(self.encounter(ctx, k, &conditions));
        }
        out.push(self.claim(ctx, &conditions));
    }

    fn condition(&mut self, ctx: &PatientCtx, id: &str, d: &Diagnosis) -> Value {
        let onset = date(-i64::from(self.between(200, 3000)));
        let mut meta = meta(self.below(30) as i64);
        if let Some((code, display)) = d.sensitivity {
            meta["security"] = json!([{"system": ACT_CODE, "code": code, "display": display}]);
        }
        json!({
            "resourceType": "Condition", "id": id, "meta": meta,
            "clinicalStatus": hl7_coding("condition-clinical", "active"),
            "verificationStatus": hl7_coding("condition-ver-status", "confirmed"),
            "category": [hl7_coding("condition-category", "problem-list-item")],
            "code": {"coding": [{"system": SNOMED, "code": d.snomed, "display": d.text},
                                {"system": ICD10, "code": d.icd10, "display": d.text}],
                     "text": d.text},
            "subject": {"reference": ctx.reference},
            "onsetDateTime": onset, "recordedDate": onset
        })
    }

    fn care_plan(&mut self, ctx: &PatientCtx, conditions: &[String]) -> Value {
        let addresses: Vec<Value> = conditions
            .iter()
            .map(|c| json!({"reference": format!("Condition/{c}")}))
            .collect();
        json!({
            "resourceType": "CarePlan", "id": ctx.single_id("cp"), "meta": meta(0),
            "status": "active", "intent": "plan",
            "category": [{"text": "Chronic care management",
                "coding": [{"system": SNOMED, "code": "734163000", "display": "Care plan"}]}],
            "title": "Chronic care management plan",
            "description": "Monthly care-manager outreach with remote physiologic monitoring.",
            "subject": {"reference": ctx.reference},
            "period": {"start": date(self.below(30) as i64)},
            "author": {"reference": self.team_member(ctx.team, 0)},
            "careTeam": [{"reference": format!("CareTeam/{}", ctx.single_id("ct"))}],
            "addresses": addresses,
            "activity": [plan_activity("99490", "Chronic care management, first 20 minutes"),
                         plan_activity("99454", "Remote monitoring device supply, 30 days")]
        })
    }

    /// Which devices a patient has depends on their conditions; everyone
    /// has a blood-pressure cuff. Readings are 6 to 9, cycling the devices.
    fn vitals_for(&mut self, ctx: &PatientCtx) -> Vec<Vital> {
        let mut kinds = vec![Vital::BloodPressure, Vital::HeartRate];
        let conditional = [
            (DIABETES, Vital::Glucose),
            (CHF, Vital::Weight),
            (COPD, Vital::SpO2),
        ];
        kinds.extend(
            conditional
                .iter()
                .filter(|(c, _)| ctx.chronic.contains(c))
                .map(|(_, v)| *v),
        );
        let (count, start) = (6 + self.below(4), self.below(kinds.len()));
        (0..count)
            .map(|i| kinds[(start + i) % kinds.len()])
            .collect()
    }

    fn observation(&mut self, ctx: &PatientCtx, k: usize, vital: Vital) -> Value {
        let day = 60 + 3 * k as i64 + self.below(3) as i64;
        let at = date_time(day, self.between(6 * 60, 21 * 60));
        let (code, display, device, category) = vital_meta(vital);
        let mut obs = json!({
            "resourceType": "Observation", "id": ctx.child_id("obs", k), "meta": meta(day - 60),
            "status": "final",
            "category": [hl7_coding("observation-category", category)],
            "code": {"text": display,
                     "coding": [{"system": LOINC, "code": code, "display": display}]},
            "subject": {"reference": ctx.reference},
            "effectiveDateTime": at, "issued": at,
            "device": {"display": device}
        });
        match vital {
            Vital::BloodPressure => {
                let (sys, dia) = (self.between(110, 172), self.between(64, 102));
                obs["component"] = json!([
                    component("8480-6", "Systolic blood pressure", sys, "mm[Hg]"),
                    component("8462-4", "Diastolic blood pressure", dia, "mm[Hg]")
                ]);
            }
            Vital::HeartRate => obs["valueQuantity"] = quantity(self.between(52, 108), "/min"),
            Vital::Glucose => obs["valueQuantity"] = quantity(self.between(78, 265), "mg/dL"),
            Vital::SpO2 => obs["valueQuantity"] = quantity(self.between(86, 99), "%"),
            Vital::Weight => {
                let kg = f64::from(self.between(550, 1350)) / 10.0;
                obs["valueQuantity"] =
                    json!({"value": kg, "unit": "kg", "system": UCUM, "code": "kg"});
            }
        }
        obs
    }

    /// An outreach message from the care manager and the patient's reply.
    fn communications(&mut self, ctx: &PatientCtx) -> Vec<Value> {
        let manager = self.team_member(ctx.team, 0);
        let (sys, dia) = (self.between(128, 168), self.between(78, 98));
        let day = 75 + self.below(10) as i64;
        let outreach = format!(
            "Hi {}, this is your care manager. Your home blood pressure averaged {sys}/{dia} \
             this week. Are you taking your medication every morning? Reply here or call us.",
            ctx.given
        );
        let reply = "Thanks. I missed two doses when I was travelling. Back on track now. \
                     Could we move next month's call to a Thursday?";
        vec![
            self.message(
                ctx,
                1,
                (&manager, &ctx.reference),
                date_time(day, 10 * 60),
                &outreach,
            ),
            self.message(
                ctx,
                2,
                (&ctx.reference, &manager),
                date_time(day + 1, 19 * 60),
                reply,
            ),
        ]
    }

    fn message(
        &mut self,
        ctx: &PatientCtx,
        k: usize,
        from_to: (&str, &str),
        sent: String,
        text: &str,
    ) -> Value {
        json!({
            "resourceType": "Communication", "id": ctx.child_id("comm", k),
            "meta": meta(15 + k as i64),
            "status": "completed",
            "category": [hl7_coding("communication-category", "notification")],
            "medium": [hl7_coding("v3-ParticipationMode", "WRITTEN")],
            "subject": {"reference": ctx.reference},
            "sent": sent, "received": sent,
            "sender": {"reference": from_to.0},
            "recipient": [{"reference": from_to.1}],
            "payload": [{"contentString": text}]
        })
    }

    /// A monthly, non-face-to-face CCM service encounter.
    fn encounter(&mut self, ctx: &PatientCtx, k: usize, conditions: &[String]) -> Value {
        let day = 30 * k as i64 + self.below(20) as i64;
        let start = self.between(9 * 60, 16 * 60);
        json!({
            "resourceType": "Encounter", "id": ctx.child_id("enc", k), "meta": meta(day - 30),
            "status": "finished",
            "class": {"system": ACT_CODE, "code": "VR", "display": "virtual"},
            "type": [{"coding": [{"system": CPT, "code": "99490",
                "display": "Chronic care management services, first 20 minutes"}]}],
            "subject": {"reference": ctx.reference},
            "participant": [{"individual": {"reference": self.team_member(ctx.team, 0)}}],
            "period": {"start": date_time(day, start), "end": date_time(day, start + 25)},
            "reasonReference": [{"reference": format!("Condition/{}", conditions[0])}],
            "serviceProvider": {"reference": "Organization/org-0001"}
        })
    }

    fn claim(&mut self, ctx: &PatientCtx, conditions: &[String]) -> Value {
        let served = date(88 + self.below(3) as i64);
        let diagnosis: Vec<Value> = conditions
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let reference = format!("Condition/{c}");
                json!({"sequence": i + 1, "diagnosisReference": {"reference": reference}})
            })
            .collect();
        let lines = [
            ("99490", "Chronic care management, first 20 minutes", 6269),
            (
                "99457",
                "Remote physiologic monitoring treatment, first 20 minutes",
                4814,
            ),
        ];
        let items: Vec<Value> = lines.iter().enumerate().map(|(i, (code, text, price))| json!({
            "sequence": i + 1, "diagnosisSequence": [1],
            "productOrService": {"coding": [{"system": CPT, "code": code, "display": text}]},
            "servicedDate": served, "unitPrice": usd(*price), "net": usd(*price)
        })).collect();
        json!({
            "resourceType": "Claim", "id": ctx.single_id("claim"), "meta": meta(31),
            "status": "active",
            "type": hl7_coding("claim-type", "professional"),
            "use": "claim",
            "patient": {"reference": ctx.reference},
            "billablePeriod": {"start": "2024-03-01", "end": "2024-03-31"},
            "created": date_time(91, 8 * 60),
            "insurer": {"reference": "Organization/org-0002"},
            "provider": {"reference": "Organization/org-0001"},
            "priority": hl7_coding("processpriority", "normal"),
            "diagnosis": diagnosis,
            "insurance": [{"sequence": 1, "focal": true,
                "coverage": {"reference": format!("Coverage/{}", ctx.single_id("cov"))}}],
            "item": items,
            "total": usd(lines.iter().map(|l| l.2).sum())
        })
    }
}

fn vital_meta(vital: Vital) -> (&'static str, &'static str, &'static str, &'static str) {
    match vital {
        Vital::BloodPressure => ("85354-9", "Blood pressure panel", "RPM cuff", "vital-signs"),
        Vital::HeartRate => ("8867-4", "Heart rate", "RPM cuff", "vital-signs"),
        Vital::Weight => ("29463-7", "Body weight", "RPM scale", "vital-signs"),
        Vital::Glucose => (
            "2339-0",
            "Glucose [Mass/volume] in Blood",
            "RPM glucometer",
            "laboratory",
        ),
        Vital::SpO2 => (
            "59408-5",
            "Oxygen saturation by pulse oximetry",
            "RPM pulse oximeter",
            "vital-signs",
        ),
    }
}

/// A CodeableConcept from one of HL7's `terminology.hl7.org` code systems.
fn hl7_coding(code_system: &str, code: &str) -> Value {
    let system = format!("http://terminology.hl7.org/CodeSystem/{code_system}");
    json!({"coding": [{"system": system, "code": code}]})
}

fn quantity(value: u32, unit: &str) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": unit})
}

fn component(code: &str, display: &str, value: u32, unit: &str) -> Value {
    json!({"code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
           "valueQuantity": quantity(value, unit)})
}

fn plan_activity(cpt: &str, text: &str) -> Value {
    json!({"detail": {"kind": "ServiceRequest",
                      "code": {"coding": [{"system": CPT, "code": cpt, "display": text}]},
                      "status": "in-progress", "description": text}})
}

/// Money from whole cents, so totals never show binary-float residue.
fn usd(cents: u32) -> Value {
    json!({"value": f64::from(cents) / 100.0, "currency": "USD"})
}
