//! Redaction without the proxy, for the people who write policies:
//! `phigate policy explain --response FILE` shows the plan and every
//! record's decision; `phigate redact FILE` prints what a person would
//! receive. Both run exactly the engine the proxy runs, over a policy set,
//! an entities file and a principal's claims — or over a plan given by
//! hand (`--withhold contact,ssn`).

use super::body::{BodyKind, BodyRedactor, Context, Progress};
use super::classes::{DataClasses, UNCLASSIFIED};
use super::links::Links;
use super::mask::MaskContext;
use super::record::{Disclosure, Judge, RecordSettings};
use super::rules::Rules;
use crate::authn::principal::Principal;
use crate::authz::engine::{Categories, Engine, RequestFacts, Subject};
use crate::authz::entities::{EntityStore, PrincipalEntity};
use crate::authz::mapping::AccessRequest;
use crate::authz::store::PolicyBundle;
use serde::Serialize;
use std::sync::Arc;

/// Who decides, offline.
pub enum Decider<'a> {
    /// The policies, as the proxy would decide for this principal.
    Cedar {
        bundle: &'a PolicyBundle,
        store: &'a EntityStore,
        principal: &'a Principal,
        entity: &'a PrincipalEntity,
        facts: &'a RequestFacts,
        engine: &'a Engine,
    },
    /// A plan given by hand: these classes withheld, every record shown.
    Plan {
        classes: &'a DataClasses,
        withheld: Vec<String>,
    },
}

/// One record's decision, for the explanation.
#[derive(Debug, Clone, Serialize)]
pub struct RecordVerdict {
    pub resource: String,
    pub patients: Vec<String>,
    pub labels: Vec<String>,
    pub shown: bool,
    pub determining: Vec<String>,
    pub reason: Option<String>,
}

/// A class's fate in records of one type.
#[derive(Debug, Clone, Serialize)]
pub struct ClassVerdict {
    pub resource_type: String,
    pub class: String,
    pub shown: bool,
    pub mask: String,
}

/// A [`Judge`] over a [`Decider`], remembering what it decided.
pub struct OfflineJudge<'a> {
    decider: Decider<'a>,
    pub records: Vec<RecordVerdict>,
    pub classes: Vec<ClassVerdict>,
    /// Keep every record's verdict (for the explanation).
    keep: bool,
    /// Rules by resource type, built once.
    rules: std::collections::HashMap<String, Arc<Rules>>,
}

impl<'a> OfflineJudge<'a> {
    pub fn new(decider: Decider<'a>) -> Self {
        OfflineJudge {
            decider,
            records: Vec::new(),
            classes: Vec::new(),
            keep: true,
            rules: std::collections::HashMap::new(),
        }
    }

    /// A judge that keeps no verdicts (for long streams).
    pub fn quiet(mut self) -> Self {
        self.keep = false;
        self
    }

    fn data_classes(&self) -> &DataClasses {
        match &self.decider {
            Decider::Cedar { bundle, .. } => &bundle.classes,
            Decider::Plan { classes, .. } => classes,
        }
    }

    /// Whether `class` is shown in records of `resource_type`.
    pub fn discloses(&self, class: &str, resource_type: &str) -> bool {
        match &self.decider {
            Decider::Cedar {
                bundle,
                store,
                principal,
                entity,
                facts,
                engine,
            } => {
                engine
                    .disclose_decision(
                        bundle,
                        *store,
                        &Subject { principal, entity },
                        class,
                        resource_type,
                        facts,
                        &Categories::default(),
                    )
                    .allowed
            }
            Decider::Plan { withheld, .. } => !withheld.iter().any(|w| w == class),
        }
    }

    /// The classes' fates for `resource_type` (recorded for the
    /// explanation), as rules.
    pub fn plan_for(&mut self, resource_type: &str) -> Rules {
        let names: Vec<(String, String)> = self
            .data_classes()
            .classes
            .iter()
            .filter(|c| {
                [
                    UNCLASSIFIED,
                    super::classes::IDENTIFIABLE,
                    super::classes::COUNT,
                ]
                .contains(&c.name.as_str())
                    || c.fhir.iter().any(|p| {
                        p.resource_type
                            .as_deref()
                            .is_none_or(|t| t == resource_type)
                    })
            })
            .map(|c| (c.name.clone(), c.mask.describe()))
            .collect();
        for (class, mask) in names {
            if self
                .classes
                .iter()
                .any(|v| v.class == class && v.resource_type == resource_type)
            {
                continue;
            }
            let shown = self.discloses(&class, resource_type);
            self.classes.push(ClassVerdict {
                resource_type: resource_type.to_string(),
                class,
                shown,
                mask,
            });
        }
        let mut withheld = |c: &str| !self.discloses(c, resource_type);
        let mut rules = Rules::for_type(self.data_classes(), resource_type, &mut withheld);
        if withheld(super::classes::IDENTIFIABLE) {
            rules.add_withheld(super::safe_harbor::classes(), resource_type);
        }
        rules
    }
}

impl Judge for OfflineJudge<'_> {
    fn may_read(&mut self, accesses: &[AccessRequest], labels: &[String]) -> bool {
        let resource = accesses
            .first()
            .map(|a| match &a.resource.id {
                Some(id) => format!("{}/{id}", a.resource.resource_type),
                None => a.resource.resource_type.clone(),
            })
            .unwrap_or_default();
        let patients = accesses.iter().filter_map(|a| a.patient.clone()).collect();
        let (shown, determining, reason) = match &self.decider {
            Decider::Cedar {
                bundle,
                store,
                principal,
                entity,
                facts,
                engine,
            } => {
                let d = engine.decide_labelled(
                    bundle,
                    *store,
                    &Subject { principal, entity },
                    accesses,
                    facts,
                    &Categories::default(),
                    labels,
                );
                let reason = d.reason().map(|r| r.as_str().to_string());
                let fan = accesses.iter().find_map(|a| a.fan_out);
                let reason = match (reason, fan) {
                    (Some(r), Some(f)) => Some(format!("{r}; fan-out: {f}")),
                    (r, _) => r,
                };
                (
                    d.allowed,
                    d.determining().iter().map(|s| s.to_string()).collect(),
                    reason,
                )
            }
            Decider::Plan { .. } => (true, Vec::new(), None),
        };
        if self.keep {
            self.records.push(RecordVerdict {
                resource,
                patients,
                labels: labels.to_vec(),
                shown,
                determining,
                reason,
            });
        }
        shown
    }

    fn rules(&mut self, resource_type: &str) -> Arc<Rules> {
        if let Some(r) = self.rules.get(resource_type) {
            return r.clone();
        }
        let rules = Arc::new(self.plan_for(resource_type));
        self.rules.insert(resource_type.to_string(), rules.clone());
        rules
    }
}

/// What an offline run produced.
pub struct Redacted {
    /// The body a client would receive (`None`: the one record in it is
    /// withheld, and the client gets 404 or 403).
    pub body: Option<Vec<u8>>,
    pub disclosure: Disclosure,
}

/// Runs `input` through the redactor as the proxy would, in one piece.
pub fn redact(
    judge: &mut OfflineJudge<'_>,
    kind: BodyKind,
    resource_type: &str,
    key: Option<Arc<[u8]>>,
    input: &[u8],
) -> Result<Redacted, String> {
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date();
    let mut out = Vec::new();
    match kind {
        BodyKind::Fhir => {
            let counts = judge.discloses(super::classes::COUNT, resource_type);
            let mut r = BodyRedactor::fhir(Context {
                judge: &mut *judge as &mut (dyn Judge + '_),
                settings: RecordSettings {
                    bases: Vec::new(),
                    key,
                    today,
                    max_record: super::record::DEFAULT_MAX_RECORD,
                },
                links: Links::default(),
                counts,
                disclosure: Disclosure::default(),
            });
            let progress = r.feed(input, true, &mut out).map_err(|e| e.to_string())?;
            let disclosure = r.disclosure().cloned().unwrap_or_default();
            Ok(Redacted {
                body: (progress != Progress::Denied).then_some(out),
                disclosure,
            })
        }
        BodyKind::Json => {
            let rules = {
                let mut withheld = |c: &str| !judge.discloses(c, resource_type);
                Rules::for_json(judge.data_classes(), &mut withheld)
            };
            let mask = MaskContext {
                key,
                patient: None,
                today,
            };
            let mut r = BodyRedactor::<OfflineJudge<'_>>::json(
                Arc::new(rules),
                mask,
                super::record::DEFAULT_MAX_RECORD,
            );
            r.feed(input, true, &mut out).map_err(|e| e.to_string())?;
            Ok(Redacted {
                body: Some(out),
                disclosure: Disclosure::default(),
            })
        }
    }
}

/// The plan and record decisions as text.
pub fn render(judge: &OfflineJudge<'_>, redacted: Option<&Redacted>) -> String {
    let mut out = String::new();
    let mut types: Vec<&str> = judge
        .classes
        .iter()
        .map(|c| c.resource_type.as_str())
        .collect();
    types.dedup();
    for ty in types {
        let of_type = judge.classes.iter().filter(|c| c.resource_type == ty);
        let (shown, withheld): (Vec<&ClassVerdict>, Vec<&ClassVerdict>) =
            of_type.partition(|c| c.shown);
        let names = |v: &[&ClassVerdict], masks: bool| {
            v.iter()
                .map(|c| {
                    if masks && c.mask != "remove" {
                        format!("{} ({})", c.class, c.mask)
                    } else {
                        c.class.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "classes    {ty}: shown [{}]; withheld [{}]\n",
            names(&shown, false),
            names(&withheld, true)
        ));
    }
    for r in &judge.records {
        out.push_str(&format!(
            "record     {}{}{}  {}{}\n",
            r.resource,
            if r.patients.is_empty() {
                String::new()
            } else {
                format!(" of patient {}", r.patients.join(", "))
            },
            if r.labels.is_empty() {
                String::new()
            } else {
                format!(" [labels {}]", r.labels.join(", "))
            },
            if r.shown { "shown" } else { "REMOVED" },
            match (&r.reason, r.determining.is_empty()) {
                (Some(reason), true) => format!(" ({reason})"),
                (Some(reason), false) => format!(" ({reason} by {})", r.determining.join(", ")),
                (None, false) if !r.shown => format!(" (by {})", r.determining.join(", ")),
                _ => String::new(),
            }
        ));
    }
    if let Some(r) = redacted {
        let d = &r.disclosure;
        let removed: Vec<String> = d.removed.iter().map(|(t, n)| format!("{n} {t}")).collect();
        let classes: Vec<String> = d
            .redacted
            .by_class
            .iter()
            .map(|(c, n)| format!("{c} ×{n}"))
            .collect();
        out.push_str(&format!(
            "response   {}; {} record(s) shown, removed [{}], redacted [{}], {} patient(s) disclosed\n",
            if r.body.is_some() {
                "sent"
            } else {
                "withheld (404/403 per route)"
            },
            d.records,
            removed.join(", "),
            classes.join(", "),
            d.patients.len()
        ));
    }
    out
}
