//! Data classes: named kinds of data ("contact", "ssn", "notes") and where
//! they live — FHIR element paths per resource type and JSON paths for
//! legacy APIs — with what is done to them when a person may not see them.
//!
//! Classes are part of the policy set (`data-classes.toml` beside the
//! schema) so they are loaded, validated and swapped with the policies that
//! decide them: whether a class is shown is the Cedar action `disclose`
//! with `context.data_class`. Three names are reserved for classes without
//! paths: `unclassified` (every element no class names: withholding it
//! turns the classes into an allow-list), `count` (`Bundle.total` and count
//! queries) and `identifiable` (withholding it applies the Safe Harbor
//! profile).

use super::mask::Mask;
use serde::Deserialize;

/// The policy directory's data-class file.
pub const CLASSES_FILE: &str = "data-classes.toml";

/// Elements of no class: withheld, only classed elements remain.
pub const UNCLASSIFIED: &str = "unclassified";
/// Counts of records (`Bundle.total`, `_summary=count`, `_total`).
pub const COUNT: &str = "count";
/// Identifiable data: withheld, the Safe Harbor profile applies.
pub const IDENTIFIABLE: &str = "identifiable";
const RESERVED: [&str; 3] = [UNCLASSIFIED, COUNT, IDENTIFIABLE];

/// `data-classes.toml` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassesFile {
    #[serde(default, rename = "class")]
    pub classes: Vec<ClassConfig>,
}

/// One `[[class]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// The `Phigate::DataClass` id policies name (`[a-z0-9_-]+`).
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// FHIR element paths: `Patient.telecom`, `Patient.contact.telecom`,
    /// `*.text` (every type), `Observation.value[x]` (a choice type),
    /// `Patient.identifier[system=http://hl7.org/fhir/sid/us-ssn]`,
    /// `Patient.extension[url=http://…]`, or a whole type: `Claim`.
    #[serde(default)]
    pub fhir: Vec<String>,
    /// JSON paths for legacy JSON APIs: `$.patient.ssn`, `$.notes[*].body`.
    #[serde(default)]
    pub json: Vec<String>,
    /// What is done to it when withheld. Default `"remove"`.
    #[serde(default)]
    pub mask: Mask,
}

/// A step's filter on the elements it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `identifier[system=…]`, `coding[system=…]`.
    System(String),
    /// `extension[url=…]`.
    Url(String),
}

/// One step of an element path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStep {
    pub name: String,
    /// `value[x]`: any member `value` followed by a type name.
    pub choice: bool,
    pub filter: Option<Filter>,
}

impl PathStep {
    /// Whether member `key` is this step's element (or its primitive
    /// extension sibling, `_birthDate` for `birthDate`).
    pub fn matches(&self, key: &str) -> bool {
        let key = key.strip_prefix('_').unwrap_or(key);
        if self.choice {
            key.strip_prefix(self.name.as_str())
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
        } else {
            key == self.name
        }
    }
}

/// Where a class lives in records of one type, or in a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementPath {
    /// `None`: every resource type (`*.text`), or a JSON path.
    pub resource_type: Option<String>,
    /// Empty: the whole record.
    pub steps: Vec<PathStep>,
}

/// A loaded class.
#[derive(Debug, Clone)]
pub struct DataClass {
    pub name: String,
    pub description: String,
    pub fhir: Vec<ElementPath>,
    pub json: Vec<ElementPath>,
    pub mask: Mask,
}

/// The classes of one policy set.
#[derive(Debug, Clone, Default)]
pub struct DataClasses {
    pub classes: Vec<DataClass>,
}

impl DataClasses {
    /// Parses and checks `data-classes.toml`; every problem is reported.
    pub fn parse(text: &str) -> Result<DataClasses, Vec<String>> {
        let file: ClassesFile = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        DataClasses::from_file(file)
    }

    pub fn from_file(file: ClassesFile) -> Result<DataClasses, Vec<String>> {
        let mut problems = Vec::new();
        let mut classes: Vec<DataClass> = Vec::new();
        for (i, c) in file.classes.into_iter().enumerate() {
            let at = format!("class[{i}] `{}`", c.name);
            let valid_name = !c.name.is_empty()
                && c.name.len() <= 64
                && c.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !valid_name {
                problems.push(format!("{at}: a class name is 1-64 of a-z, 0-9, `-`, `_`"));
            }
            if classes.iter().any(|k| k.name == c.name) {
                problems.push(format!("{at}: defined twice"));
            }
            let reserved = RESERVED.contains(&c.name.as_str());
            if reserved && (!c.fhir.is_empty() || !c.json.is_empty()) {
                problems.push(format!(
                    "{at}: `{}` is reserved and has no paths (it means what no path can say)",
                    c.name
                ));
            }
            if !reserved && c.fhir.is_empty() && c.json.is_empty() {
                problems.push(format!("{at}: names no `fhir` or `json` path"));
            }
            let mut fhir = Vec::new();
            for p in &c.fhir {
                match parse_fhir_path(p) {
                    Ok(path) => fhir.push(path),
                    Err(e) => problems.push(format!("{at}: fhir path {p:?}: {e}")),
                }
            }
            let mut json = Vec::new();
            for p in &c.json {
                match parse_json_path(p) {
                    Ok(path) => json.push(path),
                    Err(e) => problems.push(format!("{at}: json path {p:?}: {e}")),
                }
            }
            if let Err(e) = c.mask.check() {
                problems.push(format!("{at}: mask: {e}"));
            }
            classes.push(DataClass {
                name: c.name,
                description: c.description.unwrap_or_default(),
                fhir,
                json,
                mask: c.mask,
            });
        }
        if problems.is_empty() {
            Ok(DataClasses { classes })
        } else {
            Err(problems)
        }
    }

    /// The class named `name`.
    pub fn get(&self, name: &str) -> Option<&DataClass> {
        self.classes.iter().find(|c| c.name == name)
    }

    /// Names of the classes that say something about `resource_type` (a
    /// path on it or on every type), in file order.
    pub fn for_type<'a>(&'a self, resource_type: &'a str) -> impl Iterator<Item = &'a DataClass> {
        self.classes.iter().filter(move |c| {
            c.fhir.iter().any(|p| {
                p.resource_type
                    .as_deref()
                    .is_none_or(|t| t == resource_type)
            })
        })
    }
}

/// `Type.a.b`, `*.text`, `Observation.value[x]`,
/// `Patient.identifier[system=URI]`, `Patient.extension[url=URI]`, `Claim`.
pub fn parse_fhir_path(p: &str) -> Result<ElementPath, String> {
    let (ty, rest) = match p.split_once('.') {
        Some((t, r)) => (t, Some(r)),
        None => (p, None),
    };
    let resource_type = if ty == "*" {
        if rest.is_none() {
            return Err("`*` needs an element (`*.text`)".into());
        }
        None
    } else {
        let known = crate::authz::mapping::resource_type(ty)
            .ok_or_else(|| format!("`{ty}` is not an R4 resource type"))?;
        Some(known.to_string())
    };
    let steps = match rest {
        None => Vec::new(),
        Some(rest) => parse_steps(rest, true)?,
    };
    Ok(ElementPath {
        resource_type,
        steps,
    })
}

/// `$.patient.ssn`, `$.notes[*].body`, `$[*].ssn`.
pub fn parse_json_path(p: &str) -> Result<ElementPath, String> {
    let rest = p.strip_prefix('$').ok_or("a JSON path starts with `$`")?;
    let mut steps = Vec::new();
    let mut s = rest;
    while !s.is_empty() {
        if let Some(r) = s.strip_prefix("[*]") {
            s = r;
        } else if let Some(r) = s.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            if name.is_empty() || name == "*" {
                return Err("an empty or `*` member name (use `[*]` for array elements)".into());
            }
            steps.push(PathStep {
                name: name.to_string(),
                choice: false,
                filter: None,
            });
            s = &r[end..];
        } else {
            return Err("expected `.name` or `[*]`".into());
        }
    }
    if steps.is_empty() {
        return Err("names no member".into());
    }
    Ok(ElementPath {
        resource_type: None,
        steps,
    })
}

fn parse_steps(rest: &str, fhir: bool) -> Result<Vec<PathStep>, String> {
    let mut steps = Vec::new();
    let mut s = rest;
    loop {
        // A name, then an optional `[x]` or `[key=value]` (whose value may
        // hold dots), then `.` or the end.
        let end = s.find(['.', '[']).unwrap_or(s.len());
        let name = &s[..end];
        let valid = !name.is_empty()
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric());
        if !valid {
            return Err(format!("`{name}` is not an element name"));
        }
        let mut step = PathStep {
            name: name.to_string(),
            choice: false,
            filter: None,
        };
        s = &s[end..];
        if let Some(r) = s.strip_prefix('[') {
            let close = r.find(']').ok_or("an unclosed `[`")?;
            let inside = &r[..close];
            s = &r[close + 1..];
            match inside.split_once('=') {
                None if inside == "x" && fhir => step.choice = true,
                Some(("system", v)) if !v.is_empty() => {
                    step.filter = Some(Filter::System(v.into()))
                }
                Some(("url", v)) if !v.is_empty() => step.filter = Some(Filter::Url(v.into())),
                _ => {
                    return Err(format!(
                        "`[{inside}]`: expected `[x]`, `[system=…]` or `[url=…]`"
                    ))
                }
            }
        }
        steps.push(step);
        if s.is_empty() {
            break;
        }
        s = s.strip_prefix('.').ok_or("expected `.` after `]`")?;
        if steps.last().is_some_and(|st| st.filter.is_some()) {
            return Err("a filter (`[system=…]`, `[url=…]`) goes on the last step".into());
        }
    }
    Ok(steps)
}

/// The CCM example classes, shipped with the example policy set.
pub const EXAMPLE: &str = include_str!("../../policies/data-classes.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_paths_parse_with_choices_and_filters() {
        let p =
            parse_fhir_path("Patient.identifier[system=http://hl7.org/fhir/sid/us-ssn]").unwrap();
        assert_eq!(p.resource_type.as_deref(), Some("Patient"));
        assert_eq!(
            p.steps[0].filter,
            Some(Filter::System("http://hl7.org/fhir/sid/us-ssn".into()))
        );
        let p = parse_fhir_path("Observation.value[x]").unwrap();
        assert!(p.steps[0].choice);
        assert!(p.steps[0].matches("valueQuantity"));
        assert!(p.steps[0].matches("_valueString"));
        assert!(!p.steps[0].matches("value"));
        assert!(!p.steps[0].matches("valueset"));
        let p = parse_fhir_path("*.text").unwrap();
        assert_eq!(p.resource_type, None);
        assert!(parse_fhir_path("Claim").unwrap().steps.is_empty());
        let birth = parse_fhir_path("Patient.birthDate").unwrap();
        assert!(birth.steps[0].matches("_birthDate"));
        for bad in [
            "Patiant.name",
            "*",
            "Patient.",
            "Patient.identifier[system=]",
            "Patient.identifier[system=a].value",
            "Patient.name[0]",
            "Patient.na-me",
        ] {
            assert!(parse_fhir_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_paths_parse() {
        let p = parse_json_path("$.notes[*].body").unwrap();
        let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["notes", "body"]);
        assert_eq!(parse_json_path("$[*].ssn").unwrap().steps.len(), 1);
        for bad in ["patient.ssn", "$", "$.", "$.a..b", "$.a[0]"] {
            assert!(parse_json_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_example_classes_load_and_problems_are_all_reported() {
        let c = DataClasses::parse(EXAMPLE).unwrap();
        assert!(c.get("contact").is_some());
        assert!(c.get(UNCLASSIFIED).is_some());
        let bad = r#"
            [[class]]
            name = "Contact"
            fhir = ["Patient.telecom"]
            [[class]]
            name = "count"
            fhir = ["Patient.telecom"]
            [[class]]
            name = "x"
        "#;
        let problems = DataClasses::parse(bad).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
