//! Label and field selectors, parsed with the grammar of apimachinery's `labels.Parse` and
//! `fields.ParseSelector` (the subset clients send: equality, inequality, set, existence).

use serde_json::Value;

use crate::error::ApiError;
use crate::resource::ResourceType;

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelOp {
    Exists,
    NotExists,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<(String, LabelOp)>,
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(bad_label(text, "empty requirement"));
            }
            reqs.push(parse_requirement(part).map_err(|why| bad_label(part, why))?);
        }
        Ok(LabelSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        self.reqs.iter().all(|(key, op)| {
            let value = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
            match op {
                LabelOp::Exists => value.is_some(),
                LabelOp::NotExists => value.is_none(),
                LabelOp::Equals(v) => value == Some(v.as_str()),
                LabelOp::NotEquals(v) => value != Some(v.as_str()),
                LabelOp::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
                LabelOp::NotIn(vs) => value.is_none_or(|x| vs.iter().all(|v| v != x)),
                LabelOp::Gt(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x > *n),
                LabelOp::Lt(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x < *n),
            }
        })
    }

    /// Whether an object (its `metadata.labels`) matches.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.is_empty() || self.matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
    }
}

fn bad_label(part: &str, why: &str) -> ApiError {
    ApiError::BadRequest(format!("unable to parse requirement: {why}: \"{part}\""))
}

/// Splits at commas outside parentheses (`a in (x,y),b` is two requirements).
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && (v.is_empty()
            || (v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.ends_with(|c: char| c.is_ascii_alphanumeric())))
}

fn parse_requirement(part: &str) -> Result<(String, LabelOp), &'static str> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        if key.is_empty() || !key.chars().all(is_key_char) {
            return Err("invalid label key");
        }
        return Ok((key.to_string(), LabelOp::NotExists));
    }
    let key_end = part.find(|c: char| !is_key_char(c)).unwrap_or(part.len());
    let key = &part[..key_end];
    if key.is_empty() {
        return Err("invalid label key");
    }
    let rest = part[key_end..].trim_start();
    if rest.is_empty() {
        return Ok((key.to_string(), LabelOp::Exists));
    }
    let single = |v: &str| -> Result<String, &'static str> {
        let v = v.trim();
        if valid_value(v) {
            Ok(v.to_string())
        } else {
            Err("invalid label value")
        }
    };
    let number = |v: &str| {
        v.trim()
            .parse::<i64>()
            .map_err(|_| "for 'Gt', 'Lt' operators, the value must be an integer")
    };
    let op = if let Some(v) = rest.strip_prefix("!=") {
        LabelOp::NotEquals(single(v)?)
    } else if let Some(v) = rest.strip_prefix("==") {
        LabelOp::Equals(single(v)?)
    } else if let Some(v) = rest.strip_prefix('=') {
        LabelOp::Equals(single(v)?)
    } else if let Some(v) = rest.strip_prefix('>') {
        LabelOp::Gt(number(v)?)
    } else if let Some(v) = rest.strip_prefix('<') {
        LabelOp::Lt(number(v)?)
    } else if let Some(v) = rest.strip_prefix("notin") {
        LabelOp::NotIn(parse_set(v)?)
    } else if let Some(v) = rest.strip_prefix("in") {
        LabelOp::In(parse_set(v)?)
    } else {
        return Err("found unknown operator");
    };
    Ok((key.to_string(), op))
}

fn parse_set(text: &str) -> Result<Vec<String>, &'static str> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or("expected a set of values in parentheses")?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(|v| !valid_value(v)) {
        return Err("invalid label value");
    }
    Ok(values)
}

/// A parsed field selector: `key=value`, `key==value`, `key!=value`, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (field label, value, equal?)
    reqs: Vec<(String, String, bool)>,
}

impl FieldSelector {
    /// Parses and checks every field label against what `resource` supports.
    pub fn parse(text: &str, resource: &ResourceType) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_unescaped_commas(text) {
            if part.trim().is_empty() {
                continue;
            }
            let (key, value, eq) = if let Some((k, v)) = split_unescaped(&part, "!=") {
                (k, v, false)
            } else if let Some((k, v)) = split_unescaped(&part, "==") {
                (k, v, true)
            } else if let Some((k, v)) = split_unescaped(&part, "=") {
                (k, v, true)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                )));
            };
            let key = key.trim().to_string();
            if !resource.supports_field_label(&key) {
                return Err(ApiError::BadRequest(format!(
                    "field label not supported: {key}"
                )));
            }
            reqs.push((key, unescape(value.trim()), eq));
        }
        Ok(FieldSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The single `metadata.name=X` this selector pins, if any (a fast path for lookups).
    pub fn pinned_name(&self) -> Option<&str> {
        self.reqs
            .iter()
            .find(|(k, _, eq)| *eq && k == "metadata.name")
            .map(|(_, v, _)| v.as_str())
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(key, want, eq)| {
            let have = field_value(obj, key);
            (have == *want) == *eq
        })
    }
}

/// The value a field label has on an object, as the real field label conversion gives it.
fn field_value(obj: &Value, key: &str) -> String {
    let pointer = format!("/{}", key.replace('.', "/"));
    match obj.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        // Unset booleans read as false (spec.unschedulable), other unset fields as empty.
        None if key == "spec.unschedulable" => "false".to_string(),
        _ => String::new(),
    }
}

fn split_unescaped_commas(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                parts.last_mut().unwrap().push('\\');
                if let Some(n) = chars.next() {
                    parts.last_mut().unwrap().push(n);
                }
            }
            ',' => parts.push(String::new()),
            _ => parts.last_mut().unwrap().push(c),
        }
    }
    parts
}

/// Splits at the first `op` not preceded by a backslash.
fn split_unescaped<'a>(text: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let mut from = 0;
    while let Some(i) = text[from..].find(op) {
        let at = from + i;
        if at == 0 || !text[..at].ends_with('\\') {
            return Some((&text[..at], &text[at + op.len()..]));
        }
        from = at + op.len();
    }
    None
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}
