//! Reading the trail for people: the accounting of disclosures of 45 CFR
//! 164.528 for one patient, searches, and one readable line per event.
//!
//! The accounting pairs each outcome record (what was actually shown) with
//! its access record (who asked, why). Disclosures for treatment, payment
//! and health-care operations are left out by their declared purpose of use
//! (HL7 v3 ActReason codes); a disclosure whose purpose was never declared
//! is kept, marked so — under-reporting is the failure that matters. An
//! access whose outcome never came (a crash mid-response) is listed as
//! "outcome unknown", with the patients its request named.

use super::event::{AuditEvent, EventKind};
use super::frame::Kind;
use super::segment::{Item, Reader};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

/// Purposes of use that are treatment, payment or operations (HL7 v3
/// ActReason), whose disclosures the accounting leaves out.
pub const TPO_PURPOSES: &[&str] = &[
    "TREAT",
    "ETREAT",
    "CAREMGT",
    "CLINTRCH",
    "POPHLTH",
    "HPAYMT",
    "CLMATTCH",
    "COVAUTH",
    "COVERAGE",
    "ELIGDTRM",
    "ELIGVER",
    "ENROLLM",
    "REMITADV",
    "HOPERAT",
    "HACCRED",
    "HCOMPL",
    "HOUTCOMS",
    "HPRGRP",
    "HQUALIMP",
    "HSYSADMIN",
    "PATADMIN",
    "PATSFTY",
    "PERFMSR",
    "RECORDMGT",
    "TRAIN",
];

/// Every event in the spool, in order, with its sequence number; damage
/// and unparseable records are reported through `on_damage`.
pub fn events(
    dir: &Path,
    mut f: impl FnMut(u64, AuditEvent),
    mut on_damage: impl FnMut(String),
) -> std::io::Result<()> {
    // A running spool may be mid-write at its end: not damage.
    let mut r = Reader::live(dir)?;
    while let Some(item) = r.next_item()? {
        match item {
            Item::Record(rec) if rec.kind == Kind::Event => match AuditEvent::from_json(&rec.payload) {
                Ok(e) => f(rec.seq, e),
                Err(_) => on_damage(format!("record {} is not an audit event", rec.seq)),
            },
            Item::Record(_) => {}
            Item::Damaged { segment, offset, damage, after_seq } => on_damage(format!(
                "damaged record after seq {after_seq:?} in {} at byte {offset} ({}): run `phigate audit verify`",
                segment.display(),
                damage.as_str()
            )),
            Item::BadSegment(p) => on_damage(format!("{} is not a spool segment", p.display())),
            Item::MisplacedSegment { segment, .. } => on_damage(format!(
                "{} does not start where its name says: run `phigate audit verify`",
                segment.display()
            )),
        }
    }
    Ok(())
}

/// One line of the accounting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disclosure {
    /// RFC 3339.
    pub date: String,
    pub recipient: String,
    pub organization: String,
    /// What was disclosed: operation, resource types, data classes left out.
    pub description: String,
    pub purpose: String,
    /// `success`, `outcome unknown`, or how the response ended.
    pub outcome: String,
    pub request_id: String,
}

/// The time window and whether TPO disclosures are kept.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Unix ms, inclusive.
    pub from: Option<i64>,
    /// Unix ms, exclusive.
    pub to: Option<i64>,
    pub include_all: bool,
}

impl Window {
    fn holds(&self, t: i64) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|to| t < to)
    }
}

/// The accounting of disclosures of `patient`'s PHI.
pub fn disclosures(
    dir: &Path,
    patient: &str,
    w: &Window,
) -> std::io::Result<(Vec<Disclosure>, Vec<String>)> {
    // Pass 1: outcomes that disclosed the patient, and accesses naming them.
    let mut outcomes: Vec<AuditEvent> = Vec::new();
    let mut named: HashMap<String, AuditEvent> = HashMap::new();
    let mut wanted: HashSet<String> = HashSet::new();
    let mut completed: HashSet<String> = HashSet::new();
    let mut damage = Vec::new();
    let mut first: Option<(u64, i64)> = None;
    events(
        dir,
        |seq, e| {
            first.get_or_insert((seq, e.time));
            match e.kind {
                EventKind::Outcome => {
                    if let Some(a) = &e.access_id {
                        completed.insert(a.clone());
                    }
                    // Whose records left is unknown: it may have been theirs.
                    if e.patients_undetermined || e.patients.iter().any(|p| p == patient) {
                        if let Some(a) = &e.access_id {
                            wanted.insert(a.clone());
                        }
                        outcomes.push(e);
                    }
                }
                // An access whose outcome may never come: it counts for the
                // patients it names, or for everyone when it names none.
                EventKind::Access
                    if e.outcome_follows
                        && (e.patients.is_empty() || e.patients.iter().any(|p| p == patient)) =>
                {
                    named.insert(e.id.clone(), e);
                }
                _ => {}
            }
        },
        |d| damage.push(d),
    )?;
    // Pass 2: the access records of those outcomes (who asked, why).
    let mut accesses: HashMap<String, AuditEvent> = HashMap::new();
    events(
        dir,
        |_, e| {
            if e.kind == EventKind::Access && wanted.contains(&e.id) {
                accesses.insert(e.id.clone(), e);
            }
        },
        |_| {},
    )?;
    let mut out = Vec::new();
    for o in &outcomes {
        let access = o.access_id.as_ref().and_then(|id| accesses.get(id));
        if let Some(d) = entry(access.unwrap_or(o), Some(o), w) {
            out.push(d);
        }
    }
    for (id, a) in &named {
        if !completed.contains(id) {
            if let Some(d) = entry(a, None, w) {
                out.push(d);
            }
        }
    }
    out.sort_by(|a, b| a.date.cmp(&b.date).then(a.request_id.cmp(&b.request_id)));
    // Retention may have removed the start of the period asked about.
    if let Some((seq, time)) = first {
        if seq > 0 && w.from.is_none_or(|f| f < time) {
            damage.push(format!(
                "the spool starts at record {seq} ({}): disclosures before it were removed by retention and are not in this accounting",
                jiff::Timestamp::from_millisecond(time).map(|t| t.to_string()).unwrap_or_default()
            ));
        }
    }
    Ok((out, damage))
}

fn entry(access: &AuditEvent, outcome: Option<&AuditEvent>, w: &Window) -> Option<Disclosure> {
    if !w.holds(access.time) {
        return None;
    }
    let purpose = access.purpose_of_use.clone();
    let tpo = purpose
        .as_deref()
        .is_some_and(|p| TPO_PURPOSES.iter().any(|t| t.eq_ignore_ascii_case(p)));
    if tpo && !w.include_all && !access.break_glass {
        return None;
    }
    let actor = access.actor.as_ref();
    let req = access.request.as_ref();
    let mut description = req
        .and_then(|r| r.operation.clone())
        .unwrap_or_else(|| req.map(|r| r.method.clone()).unwrap_or_default());
    let types: BTreeSet<&str> = req
        .map(|r| {
            r.resources
                .iter()
                .map(|x| x.split('/').next().unwrap_or(x))
                .collect()
        })
        .unwrap_or_default();
    if !types.is_empty() {
        description.push_str(" of ");
        description.push_str(&types.into_iter().collect::<Vec<_>>().join(", "));
    }
    if let Some(red) = outcome.and_then(|o| o.redaction.as_ref()) {
        if !red.values_redacted.is_empty() {
            let classes: Vec<&str> = red.values_redacted.keys().map(String::as_str).collect();
            description.push_str(&format!(" (withheld: {})", classes.join(", ")));
        }
    }
    if access.break_glass {
        description.push_str(" [break-glass]");
    }
    let undetermined = outcome.map_or(access.patients.is_empty(), |o| o.patients_undetermined);
    if undetermined {
        description.push_str(" [patients not determined: may include this patient]");
    }
    Some(Disclosure {
        date: jiff::Timestamp::from_millisecond(access.time)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        recipient: actor
            .map(|a| {
                a.name
                    .clone()
                    .map_or_else(|| a.user_id.clone(), |n| format!("{n} ({})", a.user_id))
            })
            .unwrap_or_else(|| "unknown".into()),
        organization: actor
            .and_then(|a| a.organization.clone())
            .unwrap_or_default(),
        description,
        purpose: purpose.unwrap_or_else(|| "not declared".into()),
        outcome: match outcome {
            None => "outcome unknown".into(),
            Some(o) => o.outcome.as_str().to_string(),
        },
        request_id: req.map(|r| r.request_id.clone()).unwrap_or_default(),
    })
}

/// What `audit search` selects.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user: Option<String>,
    pub patient: Option<String>,
    pub window: Window,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    pub outcome: Option<String>,
    pub request_id: Option<String>,
}

impl Filter {
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.window.holds(e.time)
            && self
                .user
                .as_ref()
                .is_none_or(|u| e.actor.as_ref().is_some_and(|a| &a.user_id == u))
            && self.patient.as_ref().is_none_or(|p| e.patients.contains(p))
            && self.decision.as_ref().is_none_or(|d| {
                e.decision
                    .as_ref()
                    .is_some_and(|x| (d == "allow") == x.allowed && (d == "allow" || d == "deny"))
            })
            && self
                .outcome
                .as_ref()
                .is_none_or(|o| e.outcome.as_str() == o)
            && self
                .request_id
                .as_ref()
                .is_none_or(|r| e.request_id() == Some(r.as_str()))
    }
}

/// One readable line: time, seq, kind, outcome, who, what, patients.
pub fn line(seq: u64, e: &AuditEvent) -> String {
    let time = jiff::Timestamp::from_millisecond(e.time)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default();
    let who = e.actor.as_ref().map_or("-", |a| a.user_id.as_str());
    let what = e.request.as_ref().map_or_else(String::new, |r| {
        format!("{} {}", r.method, r.path.as_deref().unwrap_or(""))
    });
    let mut s = format!(
        "{time} #{seq} {:<14} {:<21} {who} {what}",
        e.kind.as_str(),
        e.outcome.as_str()
    );
    if let Some(st) = e.status {
        s.push_str(&format!(" → {st}"));
    }
    if !e.patients.is_empty() {
        s.push_str(&format!(" patients={}", e.patients.join(",")));
    }
    if let Some(r) = &e.reason {
        s.push_str(&format!(" reason={r}"));
    }
    if let Some(p) = &e.purpose_of_use {
        s.push_str(&format!(" purpose={p}"));
    }
    if e.break_glass {
        s.push_str(" BREAK-GLASS");
    }
    if let Some(rid) = e.request_id() {
        s.push_str(&format!(" request={rid}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{Actor, Outcome, RequestInfo};
    use crate::audit::spool::{Spool, SpoolOptions, SyncPolicy};

    fn access(patients: &[&str], purpose: Option<&str>, user: &str) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Access, Outcome::Allowed);
        e.outcome_follows = true;
        e.patients = patients.iter().map(|p| p.to_string()).collect();
        e.purpose_of_use = purpose.map(str::to_string);
        e.actor = Some(Actor {
            user_id: user.into(),
            ..Default::default()
        });
        e.request = Some(RequestInfo {
            request_id: format!("r-{}", e.id),
            method: "GET".into(),
            operation: Some("read".into()),
            resources: vec!["Observation".into()],
            ..Default::default()
        });
        e
    }

    fn outcome(of: &AuditEvent, patients: &[&str]) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Outcome, Outcome::Success);
        e.access_id = Some(of.id.clone());
        e.patients = patients.iter().map(|p| p.to_string()).collect();
        e
    }

    #[test]
    fn the_accounting_leaves_out_tpo_keeps_undeclared_and_reports_unknown_outcomes() {
        let d = tempfile::tempdir().unwrap();
        let mut o = SpoolOptions::new(d.path());
        o.sync = SyncPolicy::Os;
        let (spool, _) = Spool::open(o).unwrap();
        let research = access(&[], Some("HRESCH"), "rita");
        let treat = access(&["p1"], Some("TREAT"), "carol");
        let undeclared = access(&["p1"], None, "bob");
        let crashed = access(&["p1"], Some("PUBHLTH"), "dora");
        for e in [
            &research,
            &outcome(&research, &["p1", "p2"]),
            &treat,
            &outcome(&treat, &["p1"]),
            &undeclared,
            &outcome(&undeclared, &["p1"]),
            &crashed,
        ] {
            spool.append(Kind::Event, e.to_json()).wait().unwrap();
        }
        spool.close();
        let (list, damage) = disclosures(d.path(), "p1", &Window::default()).unwrap();
        assert!(damage.is_empty());
        let who: Vec<(&str, &str, &str)> = list
            .iter()
            .map(|d| (d.recipient.as_str(), d.purpose.as_str(), d.outcome.as_str()))
            .collect();
        assert_eq!(
            who,
            vec![
                ("rita", "HRESCH", "success"),
                ("bob", "not declared", "success"),
                ("dora", "PUBHLTH", "outcome unknown"),
            ]
        );
        let all = Window {
            include_all: true,
            ..Default::default()
        };
        assert_eq!(disclosures(d.path(), "p1", &all).unwrap().0.len(), 4);
        assert!(
            disclosures(d.path(), "p2", &Window::default())
                .unwrap()
                .0
                .len()
                == 1
        );
    }
}
