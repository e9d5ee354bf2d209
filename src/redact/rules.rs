//! Field rules: the data classes of one resource type (or of a legacy JSON
//! document) compiled into a tree of element names, each node saying which
//! classes there are withheld or disclosed — and the [`FieldPlan`] that
//! walks a record with it.
//!
//! The most restrictive class wins: an element of a withheld class is
//! removed or masked even when another class covering it is disclosed.
//! Inside a disclosed element, everything is shown unless a withheld class
//! names a part of it. An element no class names is `unclassified`, shown
//! or removed as that reserved class is decided — the allow-list switch.

use super::classes::{DataClasses, Filter, PathStep};
use super::mask::{apply, Mask, MaskContext};
use super::stream::{Action, Captured, Plan, Step};
use serde_json::Value;
use std::sync::Arc;

/// A class's rule at one node.
#[derive(Debug, Clone)]
struct Rule {
    class: usize,
    filter: Option<Filter>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: Vec<(PathStep, Node)>,
    withheld: Vec<Rule>,
    disclosed: Vec<Rule>,
}

impl Node {
    fn child(&self, key: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|(s, _)| s.matches(key))
            .map(|(_, n)| n)
    }

    fn child_mut(&mut self, step: &PathStep) -> &mut Node {
        let at = self
            .children
            .iter()
            .position(|(s, _)| s.name == step.name && s.choice == step.choice);
        let at = match at {
            Some(i) => i,
            None => {
                let bare = PathStep {
                    filter: None,
                    ..step.clone()
                };
                self.children.push((bare, Node::default()));
                self.children.len() - 1
            }
        };
        &mut self.children[at].1
    }

    fn withholds_all(&self) -> bool {
        self.withheld.iter().any(|r| r.filter.is_none())
    }

    fn covers_all(&self) -> bool {
        self.disclosed.iter().any(|r| r.filter.is_none())
    }

    fn filtered(&self) -> bool {
        self.withheld
            .iter()
            .chain(&self.disclosed)
            .any(|r| r.filter.is_some())
    }
}

/// Members every FHIR resource keeps whatever the classes say: what it is
/// and its metadata (where the `REDACTED` label goes).
const STRUCTURAL: [&str; 5] = ["resourceType", "id", "meta", "implicitRules", "language"];

/// The compiled rules for one resource type or JSON document.
#[derive(Debug, Clone)]
pub struct Rules {
    root: Node,
    unclassified_withheld: bool,
    /// FHIR rules (structural members, contained resources) or JSON ones.
    fhir: bool,
    /// Class names, indexed by rule.
    names: Vec<String>,
    masks: Vec<Mask>,
    /// The Safe Harbor profile applies: ids and references pseudonymized.
    pseudonymize_ids: bool,
}

impl Rules {
    /// Rules for records of `resource_type`, given which classes are
    /// withheld (`withheld(name)`).
    pub fn for_type(
        classes: &DataClasses,
        resource_type: &str,
        withheld: &mut dyn FnMut(&str) -> bool,
    ) -> Rules {
        let mut rules = Rules::empty(true, withheld(super::classes::UNCLASSIFIED));
        for class in classes.for_type(resource_type) {
            let paths = class.fhir.iter().filter(|p| {
                p.resource_type
                    .as_deref()
                    .is_none_or(|t| t == resource_type)
            });
            let steps: Vec<&[PathStep]> = paths.map(|p| p.steps.as_slice()).collect();
            rules.add(&class.name, &class.mask, &steps, withheld(&class.name));
        }
        rules
    }

    /// Rules for a legacy JSON document, from the classes' JSON paths.
    pub fn for_json(classes: &DataClasses, withheld: &mut dyn FnMut(&str) -> bool) -> Rules {
        let mut rules = Rules::empty(false, withheld(super::classes::UNCLASSIFIED));
        for class in classes.classes.iter().filter(|c| !c.json.is_empty()) {
            let steps: Vec<&[PathStep]> = class.json.iter().map(|p| p.steps.as_slice()).collect();
            rules.add(&class.name, &class.mask, &steps, withheld(&class.name));
        }
        rules
    }

    fn empty(fhir: bool, unclassified_withheld: bool) -> Rules {
        Rules {
            root: Node::default(),
            unclassified_withheld,
            fhir,
            names: Vec::new(),
            masks: Vec::new(),
            pseudonymize_ids: false,
        }
    }

    /// Adds every class of `classes` that names `resource_type`, withheld,
    /// and pseudonymizes ids and references (the Safe Harbor profile).
    pub fn add_withheld(&mut self, classes: &DataClasses, resource_type: &str) {
        for class in classes.for_type(resource_type) {
            let steps: Vec<&[PathStep]> = class
                .fhir
                .iter()
                .filter(|p| {
                    p.resource_type
                        .as_deref()
                        .is_none_or(|t| t == resource_type)
                })
                .map(|p| p.steps.as_slice())
                .collect();
            self.add(&class.name, &class.mask, &steps, true);
        }
        self.pseudonymize_ids = true;
    }

    /// Whether ids and references are pseudonymized.
    pub fn pseudonymizes_ids(&self) -> bool {
        self.pseudonymize_ids
    }

    fn add(&mut self, name: &str, mask: &Mask, paths: &[&[PathStep]], withheld: bool) {
        let class = self.names.len();
        self.names.push(name.to_string());
        self.masks.push(mask.clone());
        for steps in paths {
            let mut node = &mut self.root;
            for step in *steps {
                node = node.child_mut(step);
            }
            let rule = Rule {
                class,
                filter: steps.last().and_then(|s| s.filter.clone()),
            };
            if withheld {
                node.withheld.push(rule);
            } else {
                node.disclosed.push(rule);
            }
        }
    }

    /// Nothing would ever be removed or masked: records pass as they are.
    pub fn passes_everything(&self) -> bool {
        fn clean(n: &Node) -> bool {
            n.withheld.is_empty() && n.children.iter().all(|(_, c)| clean(c))
        }
        !self.unclassified_withheld && !self.pseudonymize_ids && clean(&self.root)
    }

    /// Names of the classes withheld anywhere in these rules.
    pub fn withheld_names(&self) -> Vec<&str> {
        fn walk<'a>(n: &Node, names: &'a [String], out: &mut Vec<&'a str>) {
            for r in &n.withheld {
                let name = names[r.class].as_str();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            for (_, c) in &n.children {
                walk(c, names, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.names, &mut out);
        if self.unclassified_withheld {
            out.push(super::classes::UNCLASSIFIED);
        }
        out
    }

    /// The node at `path` (keys only; indices pass), and whether a
    /// disclosed class covers it. `None`: below where the rules reach.
    fn at(&self, path: &[Step]) -> Option<(&Node, bool)> {
        let mut node = &self.root;
        let mut covered = node.covers_all();
        for step in path {
            if let Step::Key(k) = step {
                node = node.child(k)?;
                covered |= node.covers_all();
            }
        }
        Some((node, covered))
    }
}

/// What one record's pass removed or masked, by class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redacted {
    pub by_class: Vec<(String, u32)>,
}

impl Redacted {
    pub fn add(&mut self, class: &str, n: u32) {
        match self.by_class.iter_mut().find(|(c, _)| c == class) {
            Some((_, count)) => *count += n,
            None => self.by_class.push((class.to_string(), n)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_class.is_empty()
    }

    pub fn absorb(&mut self, other: &Redacted) {
        for (c, n) in &other.by_class {
            self.add(c, *n);
        }
    }
}

/// Contained resources are records of their own: the plan hands them back.
pub type ContainedFn<'a> = dyn FnMut(&[u8], &mut Vec<u8>) -> Result<Captured, String> + Send + 'a;

/// The [`Plan`] for one record (or JSON document) under [`Rules`].
pub struct FieldPlan<'a> {
    rules: Arc<Rules>,
    mask: MaskContext,
    contained: Option<&'a mut ContainedFn<'a>>,
    /// The record is contained: its id is a local anchor (`#med1`), not
    /// pseudonymized.
    local_id: bool,
    pub redacted: Redacted,
    /// Where the record's `meta` went in the output (start, end): the
    /// `REDACTED` label is spliced in there once the record is done.
    pub meta_span: Option<(usize, usize)>,
}

impl<'a> FieldPlan<'a> {
    pub fn new(
        rules: Arc<Rules>,
        mask: MaskContext,
        contained: Option<&'a mut ContainedFn<'a>>,
    ) -> Self {
        FieldPlan {
            rules,
            mask,
            contained,
            local_id: false,
            redacted: Redacted::default(),
            meta_span: None,
        }
    }

    /// For a contained resource.
    pub fn local_id(mut self, local: bool) -> Self {
        self.local_id = local;
        self
    }

    fn withheld_mask(rules: &Rules, node: &Node) -> (usize, Mask) {
        // Remove wins over any mask; else the first withheld class's mask.
        let unfiltered = node.withheld.iter().filter(|r| r.filter.is_none());
        let mut first = None;
        for r in unfiltered {
            let m = &rules.masks[r.class];
            if *m == Mask::Remove {
                return (r.class, Mask::Remove);
            }
            first.get_or_insert((r.class, m.clone()));
        }
        first.unwrap_or((usize::MAX, Mask::Remove))
    }

    fn count(&mut self, class: usize) {
        let name = self
            .rules
            .names
            .get(class)
            .map_or(super::classes::UNCLASSIFIED, String::as_str);
        self.redacted.add(name, 1);
    }

    /// One element of a filtered member: kept as is, masked, or gone.
    fn judge_element(&mut self, node: &Node, covered: bool, mut item: Value) -> Option<Value> {
        let matches = |r: &&Rule| match &r.filter {
            Some(Filter::System(s)) => item.get("system").and_then(Value::as_str) == Some(s),
            Some(Filter::Url(u)) => item.get("url").and_then(Value::as_str) == Some(u),
            None => false,
        };
        let withheld: Vec<usize> = node
            .withheld
            .iter()
            .filter(matches)
            .map(|r| r.class)
            .collect();
        let disclosed = node.disclosed.iter().any(|r| matches(&r));
        if let Some(&class) = withheld
            .iter()
            .find(|c| self.rules.masks[**c] == Mask::Remove)
            .or(withheld.first())
        {
            self.count(class);
            let mask = self.rules.masks[class].clone();
            let kept = mask != Mask::Remove && apply(&mask, &mut item, &self.mask);
            return kept.then_some(item);
        }
        if disclosed || covered || !self.rules.unclassified_withheld {
            return Some(item);
        }
        self.count(usize::MAX);
        None
    }
}

impl FieldPlan<'_> {
    /// A resource id or reference under the Safe Harbor profile: its id
    /// pseudonymized with the key, or removed without one.
    fn pseudonymize(
        &mut self,
        key: &str,
        value: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Captured, String> {
        let v: Value = serde_json::from_slice(value).map_err(|_| "malformed captured value")?;
        let Value::String(s) = v else {
            // Not a string: not an id this profile knows how to keep.
            self.redacted.add(super::classes::IDENTIFIABLE, 1);
            return Ok(Captured::Remove);
        };
        let replaced = match (self.mask.key.as_deref(), key) {
            (None, _) => None,
            (Some(k), "id") => Some(super::mask::pseudonym(k, &s)),
            (Some(k), _) => match super::safe_harbor::pseudonymize_reference(k, &s) {
                Some(r) => Some(r),
                // Contained and bundle-internal references name no one.
                None if s.starts_with('#') || s.starts_with("urn:uuid:") => {
                    out.extend_from_slice(value);
                    return Ok(Captured::Written);
                }
                None => None,
            },
        };
        self.redacted.add(super::classes::IDENTIFIABLE, 1);
        match replaced {
            Some(r) => {
                serde_json::to_writer(&mut *out, &r).map_err(|e| e.to_string())?;
                Ok(Captured::Written)
            }
            None => Ok(Captured::Remove),
        }
    }
}

impl Plan for FieldPlan<'_> {
    fn member(&mut self, path: &[Step], key: &str) -> Action {
        let rules = self.rules.clone();
        if rules.fhir
            && self.contained.is_some()
            && matches!(path, [Step::Key(k)] if k == "contained")
        {
            // `contained` is an object, not an array of resources: refused
            // when captured (it would be neither decided nor redacted).
            return Action::Capture;
        }
        let own_id = path.is_empty() && key == "id" && !self.local_id;
        if rules.pseudonymize_ids && (own_id || key == "reference") {
            return Action::Capture;
        }
        if rules.fhir && path.is_empty() && key == "meta" {
            // Written as it is; where it went is remembered for the label.
            return Action::Capture;
        }
        if rules.fhir && path.is_empty() {
            if STRUCTURAL.contains(&key) {
                return Action::Keep;
            }
            if key == "contained" && self.contained.is_some() {
                if let Some(child) = rules.root.child(key).filter(|c| c.withholds_all()) {
                    let (class, _) = Self::withheld_mask(&rules, child);
                    self.count(class);
                    return Action::Remove;
                }
                return Action::Keep;
            }
        }
        let Some((node, covered)) = rules.at(path) else {
            return Action::Keep;
        };
        match node.child(key) {
            Some(child) if child.withholds_all() => {
                let (class, mask) = Self::withheld_mask(&rules, child);
                if mask == Mask::Remove {
                    self.count(class);
                    Action::Remove
                } else {
                    Action::Capture
                }
            }
            Some(child) if child.filtered() => Action::Capture,
            Some(_) => Action::Keep,
            None if !covered && self.rules.unclassified_withheld => {
                self.count(usize::MAX);
                Action::Remove
            }
            None => Action::Keep,
        }
    }

    fn element(&mut self, path: &[Step], _index: usize) -> Action {
        let contained = self.rules.fhir
            && self.contained.is_some()
            && matches!(path, [Step::Key(k)] if k == "contained");
        if contained {
            Action::Capture
        } else {
            Action::Keep
        }
    }

    fn captured(
        &mut self,
        path: &[Step],
        value: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Captured, String> {
        match path {
            [Step::Key(k)] if k == "meta" && self.rules.fhir => {
                let start = out.len();
                out.extend_from_slice(value);
                self.meta_span = Some((start, out.len()));
                return Ok(Captured::Written);
            }
            [Step::Key(k), Step::Index(_)] if k == "contained" => {
                if let Some(f) = self.contained.as_mut() {
                    return f(value, out);
                }
            }
            [Step::Key(k), Step::Key(_)] if k == "contained" && self.contained.is_some() => {
                return Err("contained is not an array of resources".into());
            }
            _ => {}
        }
        let (Some(Step::Key(key)), parent) = (path.last(), &path[..path.len() - 1]) else {
            return Err("a captured value outside an object".into());
        };
        let own_id = parent.is_empty() && key == "id" && !self.local_id;
        if self.rules.pseudonymize_ids && (key == "reference" || own_id) {
            return self.pseudonymize(key, value, out);
        }
        let rules = self.rules.clone();
        let (node, covered) = rules.at(parent).ok_or("no rule for a captured value")?;
        let node = node.child(key).ok_or("no rule for a captured value")?;
        let mut v: Value = serde_json::from_slice(value).map_err(|_| "malformed captured value")?;
        if node.withholds_all() {
            let (class, mask) = Self::withheld_mask(&rules, node);
            self.count(class);
            if !apply(&mask, &mut v, &self.mask) {
                return Ok(Captured::Remove);
            }
        } else {
            let covered = covered || node.covers_all();
            v = match v {
                Value::Array(items) if items.is_empty() => Value::Array(items),
                Value::Array(items) => {
                    let kept: Vec<Value> = items
                        .into_iter()
                        .filter_map(|item| self.judge_element(node, covered, item))
                        .collect();
                    if kept.is_empty() {
                        return Ok(Captured::Remove);
                    }
                    Value::Array(kept)
                }
                item => match self.judge_element(node, covered, item) {
                    Some(item) => item,
                    None => return Ok(Captured::Remove),
                },
            };
        }
        serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())?;
        Ok(Captured::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::classes::EXAMPLE;
    use crate::redact::stream::Transformer;
    use serde_json::json;

    fn run(rules: &Rules, input: &Value) -> (Value, Redacted) {
        let bytes = serde_json::to_vec(input).unwrap();
        let mask = MaskContext {
            key: Some(Arc::from(&b"k"[..])),
            patient: Some("p1".into()),
            today: jiff::civil::date(2026, 12, 5),
        };
        let mut t = Transformer::new(FieldPlan::new(Arc::new(rules.clone()), mask, None), 1 << 20);
        let mut out = Vec::new();
        t.feed(&bytes, true, &mut out).unwrap();
        let redacted = t.plan().redacted.clone();
        (serde_json::from_slice(&out).unwrap(), redacted)
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient", "id": "p1", "meta": {"versionId": "1"},
            "text": {"status": "generated", "div": "<div>Ann Smith</div>"},
            "identifier": [
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"},
                {"system": "http://hospital.example.org/fhir/sid/mrn", "value": "MRN1"},
                {"system": "urn:other", "value": "X1"}
            ],
            "name": [{"family": "Smith", "given": ["Ann"]}],
            "telecom": [{"system": "phone", "value": "617-555-0101"}],
            "birthDate": "1950-01-02", "_birthDate": {"extension": []},
            "address": [{"city": "Boston", "postalCode": "02139"}],
            "maritalStatus": {"text": "M"},
            "contact": [{"name": {"family": "Kin"}, "telecom": [{"value": "555"}]}],
            "futureField": true
        })
    }

    #[test]
    fn a_deny_list_removes_and_masks_only_withheld_classes() {
        let classes = DataClasses::parse(EXAMPLE).unwrap();
        let withheld = ["contact", "address", "narrative", "ssn"];
        let rules = Rules::for_type(&classes, "Patient", &mut |c| withheld.contains(&c));
        let (out, redacted) = run(&rules, &patient());
        assert!(out.get("telecom").is_none() && out.get("address").is_none());
        assert!(out.get("text").is_none());
        assert_eq!(out["identifier"][0]["value"], "***6789");
        assert_eq!(out["identifier"][1]["value"], "MRN1");
        assert_eq!(out["identifier"][2]["value"], "X1");
        // Inside a disclosed element, a withheld part still goes.
        assert_eq!(out["contact"], json!([{"name": {"family": "Kin"}}]));
        assert_eq!(out["futureField"], true);
        assert!(out.get("_birthDate").is_some());
        let names: Vec<&str> = redacted.by_class.iter().map(|(c, _)| c.as_str()).collect();
        for c in withheld {
            assert!(names.contains(&c), "{c} in {names:?}");
        }
    }

    #[test]
    fn an_allow_list_keeps_only_disclosed_classes() {
        let classes = DataClasses::parse(EXAMPLE).unwrap();
        let allowed = ["demographics-minimum", "mrn", "financial"];
        let rules = Rules::for_type(&classes, "Patient", &mut |c| !allowed.contains(&c));
        let (out, _) = run(&rules, &patient());
        let mut keys: Vec<&str> = out
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "_birthDate",
                "birthDate",
                "id",
                "identifier",
                "meta",
                "name",
                "resourceType"
            ]
        );
        // The SSN's class masks rather than removes; the unclassified
        // identifier goes.
        assert_eq!(
            out["identifier"],
            json!([
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "***6789"},
                {"system": "http://hospital.example.org/fhir/sid/mrn", "value": "MRN1"}
            ])
        );
        // A whole type disclosed: everything but its own withheld parts.
        let claim = json!({"resourceType": "Claim", "id": "c", "text": {"div": "x"}, "total": {"value": 1.50}});
        let rules = Rules::for_type(&classes, "Claim", &mut |c| !allowed.contains(&c));
        let (out, _) = run(&rules, &claim);
        assert_eq!(
            out,
            json!({"resourceType": "Claim", "id": "c", "total": {"value": 1.50}})
        );
        assert!(!rules.passes_everything());
        let rules = Rules::for_type(&classes, "Claim", &mut |_| false);
        assert!(rules.passes_everything());
    }

    #[test]
    fn choice_types_and_json_paths() {
        let text = r#"
            [[class]]
            name = "values"
            fhir = ["Observation.value[x]"]
            [[class]]
            name = "ssn"
            json = ["$.patients[*].ssn", "$.notes[*].body"]
        "#;
        let classes = DataClasses::parse(text).unwrap();
        let rules = Rules::for_type(&classes, "Observation", &mut |c| c == "values");
        let obs = json!({"resourceType": "Observation", "valueQuantity": {"value": 1}, "valueset": 2, "_valueString": {}});
        let (out, _) = run(&rules, &obs);
        assert_eq!(out, json!({"resourceType": "Observation", "valueset": 2}));
        let rules = Rules::for_json(&classes, &mut |c| c == "ssn");
        let doc = json!({"patients": [{"ssn": "1", "n": 2}], "notes": [{"body": "b", "at": 1}]});
        let (out, _) = run(&rules, &doc);
        assert_eq!(out, json!({"patients": [{"n": 2}], "notes": [{"at": 1}]}));
    }
}
