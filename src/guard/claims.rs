//! A JWT payload's claims, each value kept as raw JSON until a check reads it.

use super::reject::Reject;
use crate::config::ClaimName;
use hyper::header::HeaderValue;
use serde::{Deserialize, Deserializer as _};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;

/// A JSON string, borrowed from the input unless it has escapes.
#[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct JsonStr<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Borrow<str> for JsonStr<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// `raw` parsed as a `T`, or `None` when it is not one.
pub fn parse<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    serde_json::from_str(raw.get()).ok()
}

/// Reads a JSON object's members, and whether a name came twice.
struct NamesOnce;

impl<'de> serde::de::Visitor<'de> for NamesOnce {
    type Value = (BTreeMap<JsonStr<'de>, &'de RawValue>, bool);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let (mut members, mut named_twice) = (BTreeMap::new(), false);
        while let Some((name, value)) = map.next_entry::<JsonStr<'de>, &'de RawValue>()? {
            named_twice |= members.insert(name, value).is_some();
        }
        Ok((members, named_twice))
    }
}

/// A claim value as the checks tell them apart: a string, a list (members
/// still raw), or anything else.
pub enum Claim<'a> {
    String(Cow<'a, str>),
    List(Vec<&'a RawValue>),
    Other,
}

/// The payload's claims, each value still raw JSON: a check parses only the
/// claim it reads, and strings borrow from the payload, so a token's claims cost
/// one allocation rather than one per name and value.
///
/// A payload naming a claim twice is refused. RFC 7519 §4 lets a parser
/// either refuse it or keep the last value, but the app behind us may read
/// the token too, with a parser keeping the first: the claims we checked
/// must be the only reading there is.
pub struct Claims<'a>(BTreeMap<JsonStr<'a>, &'a RawValue>);

impl<'a> Claims<'a> {
    pub fn parse(payload: &'a [u8]) -> Result<Self, Reject> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let (claims, named_twice) = de
            .deserialize_map(NamesOnce)
            .and_then(|read| de.end().map(|()| read))
            .map_err(|_| Reject::Malformed("payload is not a JSON object"))?;
        match named_twice {
            false => Ok(Claims(claims)),
            true => Err(Reject::Malformed("a claim is named twice")),
        }
    }

    pub fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.0.get(name).copied()
    }

    /// The value `name` reads: a top-level claim as is, or the value a JSON
    /// pointer finds inside one (parsing only that claim). `None` when absent.
    pub fn resolve(&self, name: &ClaimName) -> Option<ClaimValue<'a>> {
        let raw = self.raw(name.top())?;
        match name.below() {
            None => Some(ClaimValue::Raw(raw)),
            Some(pointer) => {
                let mut value = parse::<Value>(raw)?;
                value
                    .pointer_mut(pointer)
                    .map(Value::take)
                    .map(ClaimValue::Nested)
            }
        }
    }

    /// `name`'s value, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Claim<'a>> {
        let raw = self.raw(name)?;
        Some(match raw.get().as_bytes().first() {
            Some(b'"') => parse::<JsonStr>(raw).map_or(Claim::Other, |s| Claim::String(s.0)),
            Some(b'[') => parse(raw).map_or(Claim::Other, Claim::List),
            _ => Claim::Other,
        })
    }

    /// NumericDate claim as whole seconds (fractions truncated); negative or
    /// non-numeric is malformed.
    pub fn numeric_date(&self, name: &'static str) -> Result<Option<u64>, Reject> {
        let Some(raw) = self.raw(name) else {
            return Ok(None);
        };
        parse::<serde_json::Number>(raw)
            .and_then(|n| {
                n.as_u64().or_else(|| {
                    n.as_f64()
                        .filter(|f| *f >= 0.0 && f.is_finite())
                        .map(|f| f as u64)
                })
            })
            .map(Some)
            .ok_or_else(|| Reject::BadClaim(name.into(), "NumericDate"))
    }

    /// Scopes from a space-separated string (`scope`) or an array of strings
    /// (`scp`, `permissions`).
    pub fn scopes(&self, claim: &str) -> Result<Box<[Box<str>]>, Reject> {
        let bad = || Reject::BadClaim(claim.into(), "scope list");
        match self.get(claim) {
            None => Ok(Box::new([])),
            Some(Claim::String(s)) => Ok(s.split_ascii_whitespace().map(Into::into).collect()),
            Some(Claim::List(items)) => items
                .iter()
                .map(|v| parse::<JsonStr>(v).map(|s| s.0.into()).ok_or_else(bad))
                .collect(),
            Some(Claim::Other) => Err(bad()),
        }
    }
}

/// A claim's value as [`Claims::resolve`] finds it.
pub enum ClaimValue<'a> {
    /// A top-level claim, still raw JSON.
    Raw(&'a RawValue),
    /// A value inside a claim, found by a JSON pointer.
    Nested(Value),
}

impl ClaimValue<'_> {
    pub fn parse(self) -> Option<Value> {
        match self {
            ClaimValue::Raw(raw) => parse(raw),
            ClaimValue::Nested(value) => Some(value),
        }
    }
}

/// Claim → header value: strings as-is, arrays joined with `,`, anything else compact JSON.
pub fn header_value(value: &ClaimValue<'_>) -> Option<HeaderValue> {
    let parsed;
    let value = match value {
        ClaimValue::Raw(raw) => {
            // The common case, a string, is read without building a `Value`.
            if let Some(s) = parse::<JsonStr>(raw) {
                return HeaderValue::from_str(&s.0).ok();
            }
            parsed = parse::<Value>(raw)?;
            &parsed
        }
        ClaimValue::Nested(value) => value,
    };
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    HeaderValue::from_str(&text).ok()
}
