//! [`rag_core::Filter`] → Qdrant's typed filter.
//!
//! Values travel as typed protobuf fields, never inside a query string.
//! The translation keeps [`rag_core::Filter::matches`]' semantics exactly:
//!
//! | rag | Qdrant |
//! |---|---|
//! | `eq` string / bool | `match` keyword / boolean (arrays match any element; other types never match) |
//! | `eq` number | `range { gte: n, lte: n }` (Qdrant's integer `match` would miss `2020.5`, and `1` must equal `1.0`) |
//! | `gt`, `gte`, `lt`, `lte` | `range` (numbers only; strings and booleans never match) |
//! | `in` | `match any` for the strings, one condition per number or boolean, under `should` |
//! | `ne`, `not_in`, `not` | `must_not` (so a missing field matches, as in the reference) |
//! | `exists` | `match` on the derived `metadata_keys` list (keys whose value is not `null`): Qdrant's `is_empty` is also true for `[]`, which `exists` must match |
//! | `and`, `or` | `must`, `should`; `or([])` is a condition that never holds (an empty `should` means "true" in Qdrant) |
//!
//! Metadata keys are taken literally: `a.b` becomes the quoted path
//! `metadata."a.b"`. Qdrant's paths cannot quote `"` or `\`, so a filter on
//! such a key is `Unsupported` rather than a different key.

use qdrant_client::qdrant::{self, Condition, FieldCondition, Match, Range, r#match::MatchValue};
use rag_core::filter::{Field, Filter, RangeOp, Scalar};
use rag_core::{Error, Result};

use crate::error::BACKEND;
use crate::schema::key;

/// The Qdrant payload path of a metadata key.
pub fn metadata_path(k: &str) -> Result<String> {
    let raw = !k.is_empty()
        && k.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    if raw {
        Ok(format!("{}.{k}", key::METADATA))
    } else if k.contains(['"', '\\']) {
        Err(Error::unsupported(
            BACKEND,
            format!(
                "a filter or index on the metadata key {k:?} (Qdrant paths cannot quote '\"' or '\\')"
            ),
        ))
    } else {
        Ok(format!("{}.\"{k}\"", key::METADATA))
    }
}

fn field_condition(key: String, m: Option<MatchValue>, range: Option<Range>) -> Condition {
    Condition::from(FieldCondition {
        key,
        r#match: m.map(|m| Match {
            match_value: Some(m),
        }),
        range,
        ..Default::default()
    })
}

/// A condition that always holds.
pub(crate) fn always() -> Condition {
    Condition::from(qdrant::Filter::default())
}

/// A condition that never holds: `not(empty filter)`.
pub(crate) fn never() -> Condition {
    Condition::from(qdrant::Filter {
        must_not: vec![always()],
        ..Default::default()
    })
}

fn not(c: Condition) -> Condition {
    Condition::from(qdrant::Filter {
        must_not: vec![c],
        ..Default::default()
    })
}

fn any_of(mut conds: Vec<Condition>) -> Condition {
    match conds.len() {
        0 => never(),
        1 => conds.pop().unwrap_or_else(never),
        _ => Condition::from(qdrant::Filter {
            should: conds,
            ..Default::default()
        }),
    }
}

fn number_eq(path: &str, n: f64) -> Condition {
    field_condition(
        path.to_owned(),
        None,
        Some(Range {
            gte: Some(n),
            lte: Some(n),
            ..Default::default()
        }),
    )
}

/// `field == value`, as a condition.
fn eq(field: &Field, value: &Scalar) -> Result<Condition> {
    Ok(match (field, value) {
        (Field::DocumentId, Scalar::String(s)) => keyword(key::DOCUMENT_ID, s),
        (Field::Source, Scalar::String(s)) => keyword(key::SOURCE, s),
        // Built-in fields are strings: other types never match.
        (Field::DocumentId | Field::Source, _) => never(),
        (Field::Metadata(k), Scalar::String(s)) => keyword(&metadata_path(k)?, s),
        (Field::Metadata(k), Scalar::Bool(b)) => {
            field_condition(metadata_path(k)?, Some(MatchValue::Boolean(*b)), None)
        }
        (Field::Metadata(k), Scalar::Number(n)) => number_eq(&metadata_path(k)?, *n),
    })
}

fn keyword(path: &str, s: &str) -> Condition {
    // Explicitly a keyword: the client's `From<String>` turns strings with
    // spaces into full-text matches.
    field_condition(
        path.to_owned(),
        Some(MatchValue::Keyword(s.to_owned())),
        None,
    )
}

fn is_in(field: &Field, values: &[Scalar]) -> Result<Condition> {
    let strings: Vec<String> = values
        .iter()
        .filter_map(|v| match v {
            Scalar::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let mut conds = Vec::new();
    if !strings.is_empty() {
        let path = match field {
            Field::DocumentId => key::DOCUMENT_ID.to_owned(),
            Field::Source => key::SOURCE.to_owned(),
            Field::Metadata(k) => metadata_path(k)?,
        };
        conds.push(field_condition(
            path,
            Some(MatchValue::Keywords(qdrant::RepeatedStrings { strings })),
            None,
        ));
    }
    for v in values {
        if !matches!(v, Scalar::String(_)) {
            conds.push(eq(field, v)?);
        }
    }
    Ok(any_of(conds))
}

fn range(field: &Field, op: RangeOp, value: f64) -> Result<Condition> {
    let Field::Metadata(k) = field else {
        // Built-in fields are strings, and ranges compare numbers only.
        return Ok(never());
    };
    let mut r = Range::default();
    match op {
        RangeOp::Gt => r.gt = Some(value),
        RangeOp::Gte => r.gte = Some(value),
        RangeOp::Lt => r.lt = Some(value),
        RangeOp::Lte => r.lte = Some(value),
    }
    Ok(field_condition(metadata_path(k)?, None, Some(r)))
}

/// Translates a (validated) filter into one Qdrant condition.
pub fn translate(filter: &Filter) -> Result<Condition> {
    Ok(match filter {
        Filter::Eq { field, value } => eq(field, value)?,
        Filter::Ne { field, value } => not(eq(field, value)?),
        Filter::Range { field, op, value } => range(field, *op, *value)?,
        Filter::In { field, values } => is_in(field, values)?,
        Filter::NotIn { field, values } => not(is_in(field, values)?),
        Filter::Exists { field } => match field {
            Field::DocumentId | Field::Source => always(),
            Field::Metadata(k) => {
                metadata_path(k)?;
                keyword(key::METADATA_KEYS, k)
            }
        },
        Filter::And(items) => Condition::from(qdrant::Filter {
            must: items.iter().map(translate).collect::<Result<_>>()?,
            ..Default::default()
        }),
        Filter::Or(items) => any_of(items.iter().map(translate).collect::<Result<_>>()?),
        Filter::Not(inner) => not(translate(inner)?),
        other => {
            return Err(Error::unsupported(
                BACKEND,
                format!("filter node {other:?}"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_literal_paths() {
        assert_eq!(metadata_path("team").unwrap(), "metadata.team");
        assert_eq!(metadata_path("城市").unwrap(), "metadata.城市");
        assert_eq!(metadata_path("a.b").unwrap(), "metadata.\"a.b\"");
        assert_eq!(metadata_path("x y[0]").unwrap(), "metadata.\"x y[0]\"");
        assert!(matches!(
            metadata_path("say \"hi\""),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn strings_with_spaces_stay_keywords() {
        let c = translate(&Filter::eq("team", "ops team")).unwrap();
        let dbg = format!("{c:?}");
        assert!(dbg.contains("Keyword(\"ops team\")"), "{dbg}");
        assert!(!dbg.contains("Text("), "{dbg}");
    }

    #[test]
    fn empty_or_never_holds_and_empty_and_always_does() {
        assert_eq!(translate(&Filter::any([])).unwrap(), never());
        assert_eq!(
            translate(&Filter::all([])).unwrap(),
            Condition::from(qdrant::Filter::default())
        );
    }
}
