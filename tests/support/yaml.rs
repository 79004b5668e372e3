//! YAML templates edited through serde, never by text replacement: every edit
//! names a path that must be there, so a template that changed fails the test
//! that edits it instead of silently changing nothing.

use serde_yaml::Value;

/// A YAML document being edited. Paths are dotted keys with `[n]` indexes:
/// `inbound.rules[2].scopes`.
pub struct Yaml(Value);

impl Yaml {
    pub fn parse(text: &str) -> Yaml {
        Yaml(serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}")))
    }

    /// Sets the value at `path` to `value` (YAML text). The parent must
    /// exist; the last key may be new.
    pub fn set(mut self, path: &str, value: &str) -> Yaml {
        let (parent, last) = split(path);
        let value = value_of(value);
        match (self.at(parent), last) {
            (Value::Mapping(map), Step::Key(key)) => {
                map.insert(Value::from(key), value);
            }
            (Value::Sequence(items), Step::Index(i)) if i < items.len() => items[i] = value,
            (found, _) => panic!("cannot set {path}: its parent is {found:?}"),
        }
        self
    }

    /// Inserts `value` (YAML text) into the sequence at `path`, at `index`.
    pub fn insert(mut self, path: &str, index: usize, value: &str) -> Yaml {
        let value = value_of(value);
        match self.at(path) {
            Value::Sequence(items) if index <= items.len() => items.insert(index, value),
            found => panic!("cannot insert into {path}: it is {found:?}"),
        }
        self
    }

    /// Removes the key at `path` (which must be there).
    pub fn remove(mut self, path: &str) -> Yaml {
        let (parent, last) = split(path);
        match (self.at(parent), last) {
            (Value::Mapping(map), Step::Key(key)) => {
                map.remove(key)
                    .unwrap_or_else(|| panic!("cannot remove {path}: not there"));
            }
            (found, _) => panic!("cannot remove {path}: its parent is {found:?}"),
        }
        self
    }

    /// Renames the key at `path` to `to`, keeping its value (a typo, say).
    pub fn rename(self, path: &str, to: &str) -> Yaml {
        let value = serde_yaml::to_string(self.get(path)).unwrap();
        let (parent, _) = split(path);
        let to = if parent.is_empty() {
            to.to_string()
        } else {
            format!("{parent}.{to}")
        };
        self.remove(path).set(&to, &value)
    }

    pub fn text(&self) -> String {
        serde_yaml::to_string(&self.0).unwrap()
    }

    pub fn get(&self, path: &str) -> &Value {
        steps(path).fold(&self.0, |value, step| {
            match (value, step) {
                (Value::Mapping(map), Step::Key(key)) => map.get(key),
                (Value::Sequence(items), Step::Index(i)) => items.get(i),
                _ => None,
            }
            .unwrap_or_else(|| panic!("the template has no {path}"))
        })
    }

    fn at(&mut self, path: &str) -> &mut Value {
        steps(path).fold(&mut self.0, |value, step| {
            match (value, step) {
                (Value::Mapping(map), Step::Key(key)) => map.get_mut(key),
                (Value::Sequence(items), Step::Index(i)) => items.get_mut(i),
                _ => None,
            }
            .unwrap_or_else(|| panic!("the template has no {path}"))
        })
    }
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` → a, b, 2, c (the empty path: the document).
fn steps(path: &str) -> impl Iterator<Item = Step<'_>> {
    path.split('.')
        .filter(|part| !part.is_empty())
        .flat_map(|part| {
            let (key, indexes) = part
                .split_once('[')
                .map_or((part, ""), |(k, rest)| (k, rest));
            let key = (!key.is_empty()).then_some(Step::Key(key));
            let indexes = indexes
                .split('[')
                .filter(|i| !i.is_empty())
                .map(|i| Step::Index(i.trim_end_matches(']').parse().expect("an index")));
            key.into_iter().chain(indexes).collect::<Vec<_>>()
        })
}

/// `path` without its last step, and that step.
fn split(path: &str) -> (&str, Step<'_>) {
    let last = steps(path).last().expect("a non-empty path");
    let cut = match last {
        Step::Key(key) => path.len() - key.len(),
        Step::Index(_) => path.rfind('[').unwrap_or(0),
    };
    (path[..cut].trim_end_matches('.'), last)
}

fn value_of(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not YAML: {text:?}: {e}"))
}
