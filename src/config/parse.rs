//! From YAML text to the raw mirror: unknown fields collected as errors (every
//! typo in one run), `${ENV}` interpolation, durations.

use super::FieldError;
use super::RawConfig;
use std::time::Duration;

/// Deserializes the raw mirror. Unknown fields (typos) are collected rather than
/// fatal: each is removed and parsing repeated, so one run reports every typo and
/// then every semantic error. Any other structural error stops here.
pub(super) fn parse_raw(text: &str) -> Result<(RawConfig, Vec<FieldError>), Vec<FieldError>> {
    let mut unknown = Vec::new();
    let mut current = text.to_string();
    // Bounded: each round removes one key.
    for round in 0..64 {
        let err = match serde_yaml::from_str::<RawConfig>(&current) {
            Ok(raw) => return Ok((raw, unknown)),
            Err(e) => e,
        };
        let mut field = serde_error(&err);
        if round > 0 {
            // Positions after the first round refer to re-serialized text, not the file.
            if let Some(i) = field.message.find(" at line ") {
                field.message.truncate(i);
            }
        }
        let is_unknown = field.message.starts_with("unknown field `");
        unknown.push(field);
        if !is_unknown {
            return Err(unknown);
        }
        let removed = serde_yaml::from_str::<serde_yaml::Value>(&current)
            .ok()
            .and_then(|mut doc| {
                remove_at(&mut doc, &unknown[unknown.len() - 1].path).then_some(doc)
            })
            .and_then(|doc| serde_yaml::to_string(&doc).ok());
        match removed {
            Some(next) => current = next,
            None => return Err(unknown),
        }
    }
    Err(unknown)
}

/// Removes the mapping entry at a serde path such as `inbound.issuers[0].leeway_x`.
fn remove_at(doc: &mut serde_yaml::Value, path: &str) -> bool {
    let mut steps: Vec<PathStep> = Vec::new();
    for part in path.split('.') {
        let (name, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            steps.push(PathStep::Key(name.to_string()));
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            match idx.trim_end_matches(']').parse() {
                Ok(i) => steps.push(PathStep::Index(i)),
                Err(_) => return false,
            }
        }
    }
    let Some(PathStep::Key(last)) = steps.pop() else {
        return false;
    };
    let mut node = doc;
    for step in steps {
        let next = match step {
            PathStep::Key(k) => node.get_mut(k.as_str()),
            PathStep::Index(i) => node.get_mut(i),
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    node.as_mapping_mut()
        .and_then(|m| m.remove(last.as_str()))
        .is_some()
}

/// One step of a serde field path.
enum PathStep {
    Key(String),
    Index(usize),
}

/// serde_yaml reports `path: message at line L column C`; split off the path.
fn serde_error(e: &serde_yaml::Error) -> FieldError {
    let text = e.to_string();
    match text.split_once(": ") {
        Some((path, msg)) if !path.contains(' ') && path != "." => {
            // "unknown field `x`" is about the field itself: name it in the path.
            let field = msg
                .strip_prefix("unknown field `")
                .and_then(|m| m.split_once('`'))
                .map(|(f, _)| f);
            FieldError {
                path: field.map_or_else(|| path.to_string(), |f| format!("{path}.{f}")),
                message: msg.to_string(),
            }
        }
        _ => FieldError {
            path: String::new(),
            message: text,
        },
    }
}

/// Parses `250ms`, `30s`, `5m`, `1h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a duration such as 30s, 5m, 1h; got {text:?}"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "expected a duration such as 30s, 5m, 1h; got {text:?}"
            ))
        }
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Expands `${VAR}`; `$$` is a literal `$`.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${…} reference".to_string())?;
            let name = &body[..end];
            let value =
                env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}
