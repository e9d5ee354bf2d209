//! Every problem of a config file that does not deserialize, not just the
//! first.
//!
//! serde stops at the first unknown key or wrongly typed value. A team
//! fixing a file one error per run loses an afternoon, so each problem
//! found is reported and taken out (or, for a missing required key, stood
//! in for with a placeholder) and the rest is read again. Values are never
//! quoted back: a misplaced secret must not end up in a terminal or a log.

use super::Config;

/// One step of a path into the file: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A path as problems name it: `routes[1].auth.accept`.
fn dotted(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn steps(path: &serde_path_to_error::Path) -> Option<Vec<Step>> {
    use serde_path_to_error::Segment;
    path.iter()
        .map(|s| match s {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// Placeholders tried, in turn, for a missing required key.
fn placeholders() -> [toml::Value; 5] {
    [
        toml::Value::String(String::new()),
        toml::Value::Array(Vec::new()),
        toml::Value::Table(toml::Table::new()),
        toml::Value::Integer(0),
        toml::Value::Boolean(false),
    ]
}

/// Every key and value problem in a parsed file, as (dotted key, message),
/// and the config when only unknown keys and bad values had to be taken out
/// to read it (with a placeholder in it, the semantic checks would report
/// made-up problems).
pub(super) fn deserialize_all(mut table: toml::Table) -> (Vec<(String, String)>, Option<Config>) {
    let mut problems = Vec::new();
    let mut made_up = false;
    let mut removed: Vec<Vec<Step>> = Vec::new();
    // The placeholder being tried: where, and which one.
    let mut trying: Option<(Vec<Step>, usize)> = None;
    for _ in 0..500 {
        let value = toml::Value::Table(table.clone());
        let e = match serde_path_to_error::deserialize::<_, Config>(value) {
            Ok(config) => return (problems, (!made_up).then_some(config)),
            Err(e) => e,
        };
        let message = hide_values(e.inner().message().trim());
        let Some(at) = steps(e.path()) else {
            problems.push((dotted(&[]), message));
            break;
        };
        if let Some(field) = missing_field(&message) {
            made_up = true;
            let mut key = at.clone();
            key.push(Step::Key(field.to_string()));
            // A value taken out for its type is not missing as well.
            if !removed.contains(&key) {
                problems.push((dotted(&at), message.clone()));
            }
            if !set(&mut table, &key, placeholders()[0].clone()) {
                break;
            }
            trying = Some((key, 0));
            continue;
        }
        // The path names the unknown key itself, or the table holding it.
        let mut key = at.clone();
        if let Some(field) = unknown_field(&message) {
            if key.last() != Some(&Step::Key(field.to_string())) {
                key.push(Step::Key(field.to_string()));
            }
        }
        // Our own placeholder has the wrong type: try the next kind, and
        // when none fits, take out the table that needs it.
        if let Some((placed, kind)) = &trying {
            if *placed == key {
                let next = kind + 1;
                let parent = &placed[..placed.len().saturating_sub(1)];
                match placeholders().get(next) {
                    Some(value) if set(&mut table, placed, value.clone()) => {
                        trying = Some((placed.clone(), next));
                    }
                    _ if !parent.is_empty() && remove(&mut table, parent) => trying = None,
                    _ => break,
                }
                continue;
            }
        }
        problems.push((dotted(&key), message));
        if key.is_empty() || !remove(&mut table, &key) {
            break;
        }
        removed.push(key);
    }
    (problems, None)
}

/// The key serde names in "unknown field `x`, expected …".
fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")?
        .split_once('`')
        .map(|(field, _)| field)
}

/// The key serde names in "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split_once('`')
        .map(|(field, _)| field)
}

/// serde quotes a wrongly typed string back (`invalid type: string
/// "s3cr3t", expected a sequence`); the kind of value is enough to fix it,
/// and the value may be a secret put in the wrong place.
pub(super) fn hide_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("string \"") {
        out.push_str(&rest[..at]);
        out.push_str("a string");
        let quoted = &rest[at + "string \"".len()..];
        // The value is Debug-escaped: its end is the first unescaped quote.
        let mut escaped = false;
        let mut end = quoted.len();
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = i + 1;
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = &quoted[end.min(quoted.len())..];
    }
    out.push_str(rest);
    out
}

/// The value a path names.
fn value_at<'a>(table: &'a mut toml::Table, path: &[Step]) -> Option<&'a mut toml::Value> {
    let (first, rest) = path.split_first()?;
    let Step::Key(name) = first else { return None };
    let mut value = table.get_mut(name)?;
    for step in rest {
        value = match (step, value) {
            (Step::Key(k), toml::Value::Table(t)) => t.get_mut(k)?,
            (Step::Index(i), toml::Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The table holding the last step of `path`, and that step.
fn parent_of<'a>(
    table: &'a mut toml::Table,
    path: &'a [Step],
) -> Option<(&'a mut toml::Value, &'a Step)> {
    let (last, parent) = path.split_last()?;
    Some((value_at(table, parent)?, last))
}

/// Sets a key (the path's last step names it).
fn set(table: &mut toml::Table, path: &[Step], value: toml::Value) -> bool {
    if let [Step::Key(name)] = path {
        table.insert(name.clone(), value);
        return true;
    }
    match parent_of(table, path) {
        Some((toml::Value::Table(t), Step::Key(name))) => {
            t.insert(name.clone(), value);
            true
        }
        _ => false,
    }
}

/// Removes what a path names; false if it is not there.
fn remove(table: &mut toml::Table, path: &[Step]) -> bool {
    if let [Step::Key(name)] = path {
        return table.remove(name).is_some();
    }
    match parent_of(table, path) {
        Some((toml::Value::Table(t), Step::Key(name))) => t.remove(name).is_some(),
        Some((toml::Value::Array(a), Step::Index(i))) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// Problems with the keys and values of a fragment of `phigate.toml` (as
/// the docs show them): unknown keys and wrongly typed values. A required
/// key the fragment leaves out is not a problem here.
pub fn fragment_problems(text: &str) -> Vec<String> {
    let table = match text.parse::<toml::Table>() {
        Ok(t) => t,
        Err(e) => return vec![e.message().trim().to_string()],
    };
    deserialize_all(table)
        .0
        .into_iter()
        .filter(|(_, message)| missing_field(message).is_none())
        .map(|(key, message)| format!("`{key}`: {message}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_never_quoted_back() {
        assert_eq!(
            hide_values(r#"invalid type: string "s3cr3t", expected a sequence"#),
            "invalid type: a string, expected a sequence"
        );
        assert_eq!(
            hide_values(r#"invalid value: string "a\"b", expected x; string "c""#),
            "invalid value: a string, expected x; a string"
        );
        assert_eq!(hide_values("unknown field `x`"), "unknown field `x`");
    }

    #[test]
    fn keys_with_dots_are_found() {
        let table: toml::Table =
            toml::from_str("[upstreams.\"ehr.example\"]\norigins = \"http://x\"\nbogus = 1\n")
                .unwrap();
        let (problems, _) = deserialize_all(table);
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            keys.contains(&"upstreams.ehr.example.origins"),
            "{problems:?}"
        );
        assert!(
            keys.contains(&"upstreams.ehr.example.bogus"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_value_taken_out_is_not_also_missing() {
        let table: toml::Table =
            toml::from_str("[[routes]]\nname = \"r\"\npath_prefix = []\nupstream = \"u\"\n")
                .unwrap();
        let (problems, config) = deserialize_all(table);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "routes[0].path_prefix");
        assert!(config.is_none());
    }
}
