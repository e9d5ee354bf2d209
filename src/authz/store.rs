//! The policy store: the schema and policies phigate decides with.
//!
//! A [`PolicyBundle`] is loaded as a whole — schema, every `*.cedar` file,
//! strict validation, unique `@id`s — or not at all, and reports every
//! problem with file, line and policy. The runtime's `Snapshot` holds a
//! bundle together with the entities, swapped as one, so a request is decided
//! entirely by one version and a failed reload leaves the last good set.

use cedar_policy::{Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The schema's file name inside a policy directory.
pub const SCHEMA_FILE: &str = "phigate.cedarschema";

/// The example CCM policy set shipped in `policies/`, compiled in: the
/// default when no policy directory is configured, and what `phigate demo`
/// runs.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        SCHEMA_FILE,
        include_str!("../../policies/phigate.cedarschema"),
    ),
    (
        "ccm/common.cedar",
        include_str!("../../policies/ccm/common.cedar"),
    ),
    (
        "ccm/care-team.cedar",
        include_str!("../../policies/ccm/care-team.cedar"),
    ),
    (
        "ccm/break-glass.cedar",
        include_str!("../../policies/ccm/break-glass.cedar"),
    ),
    (
        "ccm/billing.cedar",
        include_str!("../../policies/ccm/billing.cedar"),
    ),
    (
        "ccm/support.cedar",
        include_str!("../../policies/ccm/support.cedar"),
    ),
    (
        "ccm/patients.cedar",
        include_str!("../../policies/ccm/patients.cedar"),
    ),
    (
        "ccm/devices.cedar",
        include_str!("../../policies/ccm/devices.cedar"),
    ),
    (
        "ccm/guardrails.cedar",
        include_str!("../../policies/ccm/guardrails.cedar"),
    ),
    (
        "ccm/research.cedar",
        include_str!("../../policies/ccm/research.cedar"),
    ),
    (
        "ccm/disclose.cedar",
        include_str!("../../policies/ccm/disclose.cedar"),
    ),
    (
        crate::redact::classes::CLASSES_FILE,
        crate::redact::classes::EXAMPLE,
    ),
];

/// One problem found while loading policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    pub file: String,
    pub line: Option<usize>,
    pub policy: Option<String>,
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(policy) = &self.policy {
            write!(f, ": policy `{policy}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything wrong with a policy set, all at once.
#[derive(Debug, Clone, thiserror::Error)]
pub struct PolicyLoadError(pub Vec<PolicyProblem>);

impl fmt::Display for PolicyLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the policies:", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}

/// Where the policies come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// The example set compiled into the binary (an explicit opt-in).
    Embedded,
    /// No policies configured: the schema alone, so every request is
    /// denied (no permit can apply).
    Nothing,
    /// A directory with `phigate.cedarschema` and `*.cedar` files (searched
    /// recursively; `tests/` holds policy tests).
    Dir(PathBuf),
}

impl PolicySource {
    /// The source's files as (relative name, text), sorted by name.
    pub fn read(&self) -> Result<Vec<(String, String)>, PolicyLoadError> {
        match self {
            PolicySource::Embedded => {
                let mut files: Vec<(String, String)> = EMBEDDED
                    .iter()
                    .map(|(name, text)| (name.to_string(), text.to_string()))
                    .collect();
                files.sort();
                Ok(files)
            }
            PolicySource::Nothing => Ok(EMBEDDED
                .iter()
                .filter(|(name, _)| is_schema(name))
                .map(|(name, text)| (name.to_string(), text.to_string()))
                .collect()),
            PolicySource::Dir(dir) => read_dir(dir),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            PolicySource::Embedded => "the EXAMPLE policies compiled into phigate".into(),
            PolicySource::Nothing => "no policies (every request denied)".into(),
            PolicySource::Dir(dir) => dir.display().to_string(),
        }
    }
}

fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, PolicyLoadError> {
    let problem = |file: &Path, message: String| PolicyProblem {
        file: file.display().to_string(),
        line: None,
        policy: None,
        message,
    };
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries = std::fs::read_dir(&current)
            .map_err(|e| PolicyLoadError(vec![problem(&current, format!("cannot read: {e}"))]))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let is_policy = path.extension().is_some_and(|e| e == "cedar");
            let is_schema = path.file_name().is_some_and(|n| n == SCHEMA_FILE);
            let is_classes = path.parent() == Some(dir)
                && path
                    .file_name()
                    .is_some_and(|n| n == crate::redact::classes::CLASSES_FILE);
            if !(is_policy || is_schema || is_classes) {
                continue;
            }
            let name = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| PolicyLoadError(vec![problem(&path, format!("cannot read: {e}"))]))?;
            files.insert(name, text);
        }
    }
    Ok(files.into_iter().collect())
}

/// A validated schema and policy set, with its version.
#[derive(Debug)]
pub struct PolicyBundle {
    pub policies: PolicySet,
    pub schema: Schema,
    /// Content hash of the schema and policies: every decision carries it.
    pub version: String,
    /// Where each policy came from: id → (file, line).
    pub origins: BTreeMap<String, (String, usize)>,
    /// Policies annotated `@break_glass`: decisions they determine are
    /// flagged for review.
    pub break_glass: HashSet<PolicyId>,
    /// `@refusal("…")` texts by policy id: what a denial that policy
    /// determined tells the client (policy authors choose the words).
    pub refusals: BTreeMap<String, String>,
    pub source: String,
    /// Which policies can apply to a request, by scope.
    pub index: super::index::ScopeIndex,
    /// Whether any policy reads `context.mfa` / `context.auth_age`: if not,
    /// no sign-in could change a decision and step-up is never probed.
    pub mentions_mfa: bool,
    pub mentions_auth_age: bool,
    /// Whether a policy that can apply to `disclose` reads `context.now`
    /// or `context.auth_age`: such decisions change from second to second,
    /// so field rules are not shared across requests.
    pub disclose_reads_time: bool,
    /// The data classes (`data-classes.toml` beside the schema; none
    /// without one) that `disclose` decides.
    pub classes: std::sync::Arc<crate::redact::classes::DataClasses>,
}

impl PolicyBundle {
    /// Loads and strictly validates a policy source.
    pub fn load(source: &PolicySource) -> Result<PolicyBundle, PolicyLoadError> {
        let files = source.read()?;
        let mut bundle = PolicyBundle::from_files(&files)?;
        bundle.source = source.describe();
        // Decisions made by the example set say so wherever a version shows.
        if matches!(source, PolicySource::Embedded) {
            bundle.version = format!("example-{}", bundle.version);
        }
        Ok(bundle)
    }

    /// Builds a bundle from (file name, text) pairs: exactly one
    /// `phigate.cedarschema` and any number of `.cedar` files.
    pub fn from_files(files: &[(String, String)]) -> Result<PolicyBundle, PolicyLoadError> {
        let mut problems = Vec::new();
        let mut hasher = Sha256::new();
        for (name, text) in files {
            hasher.update((name.len() as u64).to_be_bytes());
            hasher.update(name.as_bytes());
            hasher.update((text.len() as u64).to_be_bytes());
            hasher.update(text.as_bytes());
        }
        let version = hex_prefix(&hasher.finalize(), 16);

        let schema = match files.iter().find(|(name, _)| is_schema(name)) {
            None => {
                problems.push(PolicyProblem {
                    file: SCHEMA_FILE.into(),
                    line: None,
                    policy: None,
                    message: "no schema: every policy set is validated against one".into(),
                });
                None
            }
            Some((name, text)) => match Schema::from_cedarschema_str(text) {
                // Decisions carry no action entities, so an action is `in`
                // a list only by being on it (the scope index relies on
                // it). A group would silently never match, and a `forbid`
                // on a group would never apply: refuse the schema instead.
                Ok((schema, _warnings)) if schema.action_groups().next().is_some() => {
                    let groups: Vec<String> =
                        schema.action_groups().map(|g| g.to_string()).collect();
                    problems.push(PolicyProblem {
                        file: name.clone(),
                        line: None,
                        policy: None,
                        message: format!(
                            "action groups are not supported ({}): name the actions a policy covers in a list instead",
                            groups.join(", ")
                        ),
                    });
                    None
                }
                Ok((schema, _warnings)) => Some(schema),
                Err(e) => {
                    problems.push(diagnostic_problem(name, text, None, &e));
                    None
                }
            },
        };

        let mut policies = PolicySet::new();
        let mut origins = BTreeMap::new();
        let mut break_glass = HashSet::new();
        let mut refusals = BTreeMap::new();
        let mut disclose_reads_time = false;
        // Policy ids are the `@id` annotations, so decisions, tests and
        // logs name policies the way their authors did.
        for (name, text) in files.iter().filter(|(name, _)| name.ends_with(".cedar")) {
            let parsed: Vec<Policy> = match text.parse::<PolicySet>() {
                Ok(set) => set.policies().cloned().collect(),
                Err(e) => {
                    problems.push(diagnostic_problem(name, text, None, &e));
                    continue;
                }
            };
            for policy in parsed {
                let Some(id) = policy.annotation("id").map(str::to_owned) else {
                    problems.push(PolicyProblem {
                        file: name.clone(),
                        line: unannotated_line(text, &policy),
                        policy: None,
                        message: "policy has no @id(\"...\") annotation".into(),
                    });
                    continue;
                };
                let line = text
                    .find(&format!("@id(\"{id}\")"))
                    .map(|at| line_of(text, at))
                    .unwrap_or(1);
                if let Some((other, other_line)) = origins.get(&id) {
                    problems.push(PolicyProblem {
                        file: name.clone(),
                        line: Some(line),
                        policy: Some(id.clone()),
                        message: format!("duplicate @id (also at {other}:{other_line})"),
                    });
                    continue;
                }
                let policy_id = PolicyId::new(&id);
                if policy.annotation("break_glass").is_some() {
                    break_glass.insert(policy_id.clone());
                }
                if let Some(text) = policy.annotation("refusal") {
                    refusals.insert(id.clone(), text.to_string());
                }
                // `disclose` is decided once per class and type, without a
                // patient: a condition on the record's patient never holds
                // there, so a rule that reads one would silently not apply.
                let (discloses, any_action) = match policy.action_constraint() {
                    cedar_policy::ActionConstraint::Eq(a) => {
                        (a.id().unescaped() == "disclose", false)
                    }
                    cedar_policy::ActionConstraint::In(list) => {
                        (list.iter().any(|a| a.id().unescaped() == "disclose"), false)
                    }
                    cedar_policy::ActionConstraint::Any => (false, true),
                };
                let text = policy.to_string();
                if (discloses || any_action)
                    && (text.contains("context.now") || text.contains("context.auth_age"))
                {
                    disclose_reads_time = true;
                }
                if discloses
                    && (text.contains("resource.patient") || text.contains("resource has patient"))
                {
                    problems.push(PolicyProblem {
                        file: name.clone(),
                        line: Some(line),
                        policy: Some(id.clone()),
                        message: "`disclose` is decided per data class and resource type, without a patient (docs/redaction.md §4): a condition on `resource.patient` never holds there; decide patients with `read`".into(),
                    });
                    continue;
                }
                let renamed: Policy = policy.new_id(policy_id);
                if let Err(e) = policies.add(renamed) {
                    problems.push(PolicyProblem {
                        file: name.clone(),
                        line: Some(line),
                        policy: Some(id.clone()),
                        message: e.to_string(),
                    });
                    continue;
                }
                origins.insert(id, (name.clone(), line));
            }
        }

        let classes = match files
            .iter()
            .find(|(name, _)| name == crate::redact::classes::CLASSES_FILE)
        {
            None => crate::redact::classes::DataClasses::default(),
            Some((name, text)) => match crate::redact::classes::DataClasses::parse(text) {
                Ok(c) => c,
                Err(list) => {
                    for message in list {
                        problems.push(PolicyProblem {
                            file: name.clone(),
                            line: None,
                            policy: None,
                            message,
                        });
                    }
                    crate::redact::classes::DataClasses::default()
                }
            },
        };

        if let Some(schema) = &schema {
            let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
            for error in result.validation_errors() {
                let id = error.policy_id().to_string();
                let (file, text) = origins
                    .get(&id)
                    .and_then(|(file, _)| files.iter().find(|(n, _)| n == file))
                    .map(|(n, t)| (n.clone(), t.as_str()))
                    .unwrap_or_else(|| ("?".into(), ""));
                problems.push(diagnostic_problem(&file, text, Some(id), error));
            }
            problems = say_once(problems);
        }

        match schema {
            Some(schema) if problems.is_empty() => {
                let text: String = policies.policies().map(|p| p.to_string()).collect();
                Ok(PolicyBundle {
                    index: super::index::ScopeIndex::new(&policies),
                    mentions_mfa: text.contains("context.mfa"),
                    mentions_auth_age: text.contains("context.auth_age"),
                    disclose_reads_time,
                    classes: std::sync::Arc::new(classes),
                    policies,
                    schema,
                    version,
                    origins,
                    break_glass,
                    refusals,
                    source: String::new(),
                })
            }
            _ => Err(PolicyLoadError(problems)),
        }
    }

    /// The number of policies.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }
}

/// Where an unannotated policy starts: the first line of its text.
fn unannotated_line(text: &str, policy: &Policy) -> Option<usize> {
    let source = policy.to_string();
    let head = source.lines().next()?.trim();
    text.find(head).map(|at| line_of(text, at))
}

fn is_schema(name: &str) -> bool {
    name == SCHEMA_FILE || name.ends_with(&format!("/{SCHEMA_FILE}"))
}

/// Turns a Cedar diagnostic into a problem with the line of its first label.
fn diagnostic_problem(
    file: &str,
    text: &str,
    policy: Option<String>,
    error: &dyn Diagnostic,
) -> PolicyProblem {
    let line = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| line_of(text, label.offset()));
    let mut message = error.to_string();
    // Cedar names the policy in its message; the problem already does.
    if let Some(id) = &policy {
        if let Some(rest) = message.strip_prefix(&format!("for policy `{id}`, ")) {
            message = rest.to_string();
        }
    }
    if let Some(help) = error.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    let mut related = error.related().into_iter().flatten().peekable();
    if related.peek().is_some() {
        for r in related {
            message.push_str(&format!("; {r}"));
        }
    }
    PolicyProblem {
        file: file.to_string(),
        line,
        policy,
        message,
    }
}

/// Each thing once: identical problems collapse, and one missing attribute
/// reported for every entity type a policy's principal could be becomes
/// one problem naming those types.
fn say_once(problems: Vec<PolicyProblem>) -> Vec<PolicyProblem> {
    let mut out: Vec<PolicyProblem> = Vec::with_capacity(problems.len());
    // (index in `out`, attribute) → entity types and suggestions so far.
    let mut merged: Vec<(usize, String, Vec<String>, Vec<String>)> = Vec::new();
    for p in problems {
        if let Some((attribute, entity_type, help)) = missing_attribute(&p.message) {
            let same = merged.iter_mut().find(|(i, a, _, _)| {
                let o = &out[*i];
                *a == attribute && o.file == p.file && o.line == p.line && o.policy == p.policy
            });
            match same {
                Some((i, _, types, helps)) => {
                    if !types.contains(&entity_type) {
                        types.push(entity_type);
                    }
                    if let Some(h) = help.filter(|h| !helps.contains(h)) {
                        helps.push(h);
                    }
                    let types_text = types.join("`, `");
                    let mut message = format!(
                        "attribute `{attribute}` not found on entity type(s) `{types_text}`"
                    );
                    if !helps.is_empty() {
                        message.push_str(&format!(" (help: did you mean {}?)", helps.join(" or ")));
                    }
                    out[*i].message = message;
                }
                None => {
                    merged.push((
                        out.len(),
                        attribute,
                        vec![entity_type],
                        help.into_iter().collect(),
                    ));
                    out.push(p);
                }
            }
            continue;
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Cedar's "attribute `a` on entity type `T` not found (help: did you mean
/// `b`?)": the attribute, the type and the suggestion.
fn missing_attribute(message: &str) -> Option<(String, String, Option<String>)> {
    let rest = message.strip_prefix("attribute `")?;
    let (attribute, rest) = rest.split_once("` on entity type `")?;
    let (entity_type, rest) = rest.split_once("` not found")?;
    let help = rest
        .split_once("did you mean ")
        .map(|(_, h)| h.trim_end_matches([')', '?']).to_string());
    Some((attribute.to_string(), entity_type.to_string(), help))
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes
        .iter()
        .take(n / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded_with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = EMBEDDED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        files.extend(extra.iter().map(|(n, t)| (n.to_string(), t.to_string())));
        files
    }

    #[test]
    fn validation_says_each_thing_once() {
        let files = embedded_with(&[(
            "x.cedar",
            "@id(\"typo\")\npermit (principal, action == Phigate::Action::\"read\", resource is Phigate::Record)\nwhen { principal.nosuch && resource.categry == \"clinical\" };\n",
        )]);
        let e = PolicyBundle::from_files(&files).err().unwrap();
        let text = e.to_string();
        assert_eq!(e.0.len(), 2, "{text}");
        // The policy is named once per line, not again by Cedar.
        assert!(!text.contains("for policy"), "{text}");
        // One missing attribute, whatever principal types it is missing on.
        assert_eq!(text.matches("`nosuch`").count(), 1, "{text}");
        assert!(
            text.contains("Phigate::User") && text.contains("Phigate::ServiceAccount"),
            "{text}"
        );
        assert!(text.contains("did you mean `category`"), "{text}");
    }

    #[test]
    fn the_embedded_example_set_validates_strictly() {
        let bundle = PolicyBundle::load(&PolicySource::Embedded).unwrap();
        assert!(bundle.len() >= 12, "{} policies", bundle.len());
        assert!(bundle
            .break_glass
            .contains(&PolicyId::new("break-glass-emergency-treatment")));
        assert_eq!(bundle.version.len(), "example-".len() + 16);
        assert!(
            bundle.version.starts_with("example-"),
            "named as the example"
        );
    }

    #[test]
    fn the_shipped_directory_matches_the_embedded_set() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let from_dir = PolicyBundle::load(&PolicySource::Dir(dir)).unwrap();
        let embedded = PolicyBundle::load(&PolicySource::Embedded).unwrap();
        assert_eq!(
            format!("example-{}", from_dir.version),
            embedded.version,
            "EMBEDDED lists every file"
        );
    }

    #[test]
    fn problems_name_file_line_and_policy() {
        let files = embedded_with(&[(
            "extra.cedar",
            "\n\n@id(\"typo\")\npermit(principal, action == Phigate::Action::\"read\", resource is Phigate::Record)\nwhen { resource.categry == \"x\" };\n",
        )]);
        let err = PolicyBundle::from_files(&files).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        let p = &err.0[0];
        assert_eq!(p.file, "extra.cedar");
        assert_eq!(p.policy.as_deref(), Some("typo"));
        assert_eq!(p.line, Some(5), "{p}");
        assert!(p.message.contains("categry"), "{p}");
    }

    #[test]
    fn syntax_errors_missing_ids_and_duplicates_are_all_reported() {
        let files = embedded_with(&[
            ("a.cedar", "permit(principal, action, resource);"),
            (
                "b.cedar",
                "@id(\"writes-need-mfa\")\npermit(principal, action, resource);",
            ),
            ("c.cedar", "\npermit(principal, action resource);"),
        ]);
        let err = PolicyBundle::from_files(&files).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 3, "{text}");
        assert!(text.contains("a.cedar:1: policy has no @id"), "{text}");
        assert!(
            text.contains(
                "b.cedar:1: policy `writes-need-mfa`: duplicate @id (also at ccm/guardrails.cedar:"
            ),
            "{text}"
        );
        assert!(text.contains("c.cedar:2"), "{text}");
    }

    #[test]
    fn a_set_without_schema_is_refused() {
        let files = vec![(
            "a.cedar".to_string(),
            "@id(\"x\") permit(principal, action, resource);".to_string(),
        )];
        let err = PolicyBundle::from_files(&files).unwrap_err();
        assert!(err.to_string().contains("no schema"), "{err}");
    }

    #[test]
    fn a_schema_with_action_groups_is_refused() {
        // A forbid on a group would never apply (decisions carry no action
        // hierarchy): refused rather than silently ineffective.
        let schema = EMBEDDED
            .iter()
            .find(|(n, _)| is_schema(n))
            .unwrap()
            .1
            .replace(
                "  action fan_out\n",
                "  action writes;\n  action fan_out in [writes]\n",
            );
        assert!(schema.contains("in [writes]"));
        let mut files = embedded_with(&[]);
        for (name, text) in files.iter_mut() {
            if is_schema(name) {
                *text = schema.clone();
            }
        }
        let err = PolicyBundle::from_files(&files).unwrap_err();
        assert!(
            err.to_string()
                .contains("action groups are not supported (Phigate::Action::\"writes\")"),
            "{err}"
        );
    }

    #[test]
    fn a_disclose_rule_on_the_records_patient_is_refused() {
        let mut files = embedded_with(&[]);
        files.push((
            "ccm/vip-disclose.cedar".into(),
            r#"@id("vip-contact")
forbid (principal, action == Phigate::Action::"disclose", resource)
when { resource has patient && resource.patient.flags.contains("vip") };"#
                .into(),
        ));
        let err = PolicyBundle::from_files(&files).unwrap_err().to_string();
        assert!(
            err.contains("vip-contact") && err.contains("without a patient"),
            "{err}"
        );
    }

    #[test]
    fn the_version_follows_the_content() {
        let a = PolicyBundle::from_files(&embedded_with(&[])).unwrap();
        let b = PolicyBundle::from_files(&embedded_with(&[(
            "x.cedar",
            "@id(\"x\") forbid(principal, action, resource) when { context.hour == 99 };",
        )]))
        .unwrap();
        assert_ne!(a.version, b.version);
    }
}
