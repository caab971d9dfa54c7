//! A backend-neutral filter over chunk fields.
//!
//! Every adapter translates a [`Filter`] into its native form with bind
//! parameters (never by formatting values into a query string). The semantics
//! are defined here, by [`Filter::matches`], the reference evaluator every
//! backend is compared with:
//!
//! * Fields are the built-ins [`Field::DocumentId`] and [`Field::Source`]
//!   (strings) or a top-level metadata key ([`Field::Metadata`]). A key is
//!   taken literally: `"a.b"` is the key `a.b`, not a path.
//! * Values are scalars: strings, numbers and booleans. Types never coerce:
//!   the string `"2020"` does not equal the number `2020`. Numbers compare as
//!   `f64`, so `1` equals `1.0`.
//! * A metadata field holding an array is a set: a comparison matches when
//!   any element matches (`eq("tags", "rust")` matches `tags: ["go", "rust"]`).
//!   Objects and `null` never match a comparison.
//! * `gt`, `gte`, `lt`, `lte` compare numbers only.
//! * A missing field matches no comparison: `eq`, `in` and the range
//!   operators are false and `exists` is false. `ne` is `not(eq)` and
//!   `not_in` is `not(in)`, so both match documents that lack the field.
//! * `and([])` is true, `or([])` is false.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::types::Chunk;

/// Longest metadata key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Deepest nesting of `and`/`or`/`not` accepted.
pub const MAX_DEPTH: usize = 32;
/// Most nodes in one filter.
pub const MAX_NODES: usize = 1024;

/// A field a filter tests.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The chunk's document id.
    DocumentId,
    /// The chunk's document source.
    Source,
    /// A top-level key of the metadata.
    Metadata(String),
}

impl Field {
    /// A metadata key.
    pub fn metadata(key: impl Into<String>) -> Self {
        Self::Metadata(key.into())
    }
}

impl From<&str> for Field {
    fn from(key: &str) -> Self {
        Self::Metadata(key.to_owned())
    }
}

impl From<String> for Field {
    fn from(key: String) -> Self {
        Self::Metadata(key)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DocumentId => f.write_str("document_id"),
            Self::Source => f.write_str("source"),
            Self::Metadata(k) => write!(f, "metadata[{k:?}]"),
        }
    }
}

/// A scalar a filter compares with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A boolean.
    Bool(bool),
    /// A number (compared as `f64`).
    Number(f64),
    /// A string.
    String(String),
}

impl Scalar {
    /// The JSON form.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Bool(b) => Value::Bool(*b),
            Self::Number(n) => serde_json::Number::from_f64(*n)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Self::String(s) => Value::String(s.clone()),
        }
    }

    fn matches_json(&self, v: &Value) -> bool {
        match (self, v) {
            (Self::Bool(a), Value::Bool(b)) => a == b,
            (Self::Number(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Self::String(a), Value::String(b)) => a == b,
            _ => false,
        }
    }
}

macro_rules! scalar_from {
    ($($t:ty => $v:ident $(as $cast:ty)?),*) => {$(
        impl From<$t> for Scalar {
            fn from(x: $t) -> Self { Self::$v((x $(as $cast)?).into()) }
        }
    )*};
}
scalar_from!(bool => Bool, f64 => Number, f32 => Number, i32 => Number, u32 => Number,
    i64 => Number as f64, u64 => Number as f64, usize => Number as f64,
    String => String, &str => String);

/// A range comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeOp {
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
}

impl RangeOp {
    /// Whether `lhs op rhs` holds.
    pub fn holds(self, lhs: f64, rhs: f64) -> bool {
        match self {
            Self::Gt => lhs > rhs,
            Self::Gte => lhs >= rhs,
            Self::Lt => lhs < rhs,
            Self::Lte => lhs <= rhs,
        }
    }
}

/// The filter AST. Build it with the constructor functions.
///
/// ```
/// use rag_core::{Field, Filter};
///
/// let f = Filter::eq("team", "ops")
///     .and(Filter::gte("year", 2020).or(Filter::not(Filter::exists("draft"))))
///     .and(Filter::is_in(Field::Source, ["a.md", "b.md"]));
/// f.validate().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Filter {
    /// The field equals the value.
    Eq {
        /// Field.
        field: Field,
        /// Value.
        value: Scalar,
    },
    /// `not(eq)`.
    Ne {
        /// Field.
        field: Field,
        /// Value.
        value: Scalar,
    },
    /// A numeric range comparison.
    Range {
        /// Field.
        field: Field,
        /// Operator.
        op: RangeOp,
        /// A number.
        value: f64,
    },
    /// The field equals one of the values.
    In {
        /// Field.
        field: Field,
        /// Values.
        values: Vec<Scalar>,
    },
    /// `not(in)`.
    NotIn {
        /// Field.
        field: Field,
        /// Values.
        values: Vec<Scalar>,
    },
    /// The field is present and not `null`.
    Exists {
        /// Field.
        field: Field,
    },
    /// All hold.
    And(Vec<Filter>),
    /// At least one holds.
    Or(Vec<Filter>),
    /// Does not hold.
    Not(Box<Filter>),
}

/// The operators of the filter AST, for [`crate::Capabilities`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    /// `eq`
    Eq,
    /// `ne`
    Ne,
    /// `gt`, `gte`, `lt`, `lte`
    Range,
    /// `in`
    In,
    /// `not_in`
    NotIn,
    /// `exists`
    Exists,
    /// `and`, `or`, `not`
    Logic,
}

impl FilterOp {
    /// Every operator.
    pub const ALL: [FilterOp; 7] = [
        Self::Eq,
        Self::Ne,
        Self::Range,
        Self::In,
        Self::NotIn,
        Self::Exists,
        Self::Logic,
    ];
}

impl Filter {
    /// `field == value`.
    pub fn eq(field: impl Into<Field>, value: impl Into<Scalar>) -> Self {
        Self::Eq {
            field: field.into(),
            value: value.into(),
        }
    }
    /// `field != value` (also true where the field is missing).
    pub fn ne(field: impl Into<Field>, value: impl Into<Scalar>) -> Self {
        Self::Ne {
            field: field.into(),
            value: value.into(),
        }
    }
    /// `field > value`.
    pub fn gt(field: impl Into<Field>, value: impl Into<f64>) -> Self {
        Self::range(field, RangeOp::Gt, value)
    }
    /// `field >= value`.
    pub fn gte(field: impl Into<Field>, value: impl Into<f64>) -> Self {
        Self::range(field, RangeOp::Gte, value)
    }
    /// `field < value`.
    pub fn lt(field: impl Into<Field>, value: impl Into<f64>) -> Self {
        Self::range(field, RangeOp::Lt, value)
    }
    /// `field <= value`.
    pub fn lte(field: impl Into<Field>, value: impl Into<f64>) -> Self {
        Self::range(field, RangeOp::Lte, value)
    }
    fn range(field: impl Into<Field>, op: RangeOp, value: impl Into<f64>) -> Self {
        Self::Range {
            field: field.into(),
            op,
            value: value.into(),
        }
    }
    /// `field` equals one of `values`.
    pub fn is_in<V: Into<Scalar>>(
        field: impl Into<Field>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        Self::In {
            field: field.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }
    /// `field` equals none of `values` (also true where the field is missing).
    pub fn not_in<V: Into<Scalar>>(
        field: impl Into<Field>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        Self::NotIn {
            field: field.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }
    /// `field` is present and not `null`.
    pub fn exists(field: impl Into<Field>) -> Self {
        Self::Exists {
            field: field.into(),
        }
    }
    /// All of `filters`.
    pub fn all(filters: impl IntoIterator<Item = Filter>) -> Self {
        Self::And(filters.into_iter().collect())
    }
    /// Any of `filters`.
    pub fn any(filters: impl IntoIterator<Item = Filter>) -> Self {
        Self::Or(filters.into_iter().collect())
    }
    /// Negation.
    #[allow(clippy::should_implement_trait)]
    pub fn not(filter: Filter) -> Self {
        Self::Not(Box::new(filter))
    }
    /// `self and other`, flattening nested `and`s.
    pub fn and(self, other: Filter) -> Self {
        match self {
            Self::And(mut v) => {
                v.push(other);
                Self::And(v)
            }
            s => Self::And(vec![s, other]),
        }
    }
    /// `self or other`, flattening nested `or`s.
    pub fn or(self, other: Filter) -> Self {
        match self {
            Self::Or(mut v) => {
                v.push(other);
                Self::Or(v)
            }
            s => Self::Or(vec![s, other]),
        }
    }

    /// Checks keys, values, depth and size. Stores call this before
    /// translating, so a bad filter is `InvalidInput` on every backend.
    pub fn validate(&self) -> Result<()> {
        let mut nodes = 0;
        self.validate_at(0, &mut nodes)
    }

    fn validate_at(&self, depth: usize, nodes: &mut usize) -> Result<()> {
        *nodes += 1;
        if *nodes > MAX_NODES {
            return Err(Error::invalid_input(format!(
                "filter has more than {MAX_NODES} nodes"
            )));
        }
        if depth > MAX_DEPTH {
            return Err(Error::invalid_input(format!(
                "filter is nested deeper than {MAX_DEPTH}"
            )));
        }
        let check_scalar = |s: &Scalar| match s {
            Scalar::Number(n) if !n.is_finite() => Err(Error::invalid_input(
                "filter numbers must be finite".to_owned(),
            )),
            _ => Ok(()),
        };
        match self {
            Self::Eq { field, value } | Self::Ne { field, value } => {
                validate_field(field)?;
                check_scalar(value)
            }
            Self::Range { field, value, .. } => {
                validate_field(field)?;
                check_scalar(&Scalar::Number(*value))
            }
            Self::In { field, values } | Self::NotIn { field, values } => {
                validate_field(field)?;
                *nodes += values.len();
                if *nodes > MAX_NODES {
                    return Err(Error::invalid_input(format!(
                        "filter has more than {MAX_NODES} nodes"
                    )));
                }
                values.iter().try_for_each(check_scalar)
            }
            Self::Exists { field } => validate_field(field),
            Self::And(v) | Self::Or(v) => {
                v.iter().try_for_each(|f| f.validate_at(depth + 1, nodes))
            }
            Self::Not(f) => f.validate_at(depth + 1, nodes),
        }
    }

    /// The operators used, for checking against a store's capabilities.
    pub fn ops(&self) -> Vec<FilterOp> {
        let mut out = Vec::new();
        self.collect_ops(&mut out);
        out.sort_by_key(|o| *o as u8);
        out.dedup();
        out
    }

    fn collect_ops(&self, out: &mut Vec<FilterOp>) {
        match self {
            Self::Eq { .. } => out.push(FilterOp::Eq),
            Self::Ne { .. } => out.push(FilterOp::Ne),
            Self::Range { .. } => out.push(FilterOp::Range),
            Self::In { .. } => out.push(FilterOp::In),
            Self::NotIn { .. } => out.push(FilterOp::NotIn),
            Self::Exists { .. } => out.push(FilterOp::Exists),
            Self::And(v) | Self::Or(v) => {
                out.push(FilterOp::Logic);
                v.iter().for_each(|f| f.collect_ops(out));
            }
            Self::Not(f) => {
                out.push(FilterOp::Logic);
                f.collect_ops(out);
            }
        }
    }

    /// The reference evaluator: whether `chunk` passes.
    pub fn matches(&self, chunk: &Chunk) -> bool {
        self.eval(&|field| match field {
            Field::DocumentId => FieldValue::Str(chunk.document_id.as_str()),
            Field::Source => FieldValue::Str(&chunk.source),
            Field::Metadata(k) => match chunk.metadata.get(k) {
                Some(v) => FieldValue::Json(v),
                None => FieldValue::Missing,
            },
        })
    }

    /// Evaluates against any field lookup (used by stores that keep fields
    /// in their own layout).
    pub fn eval<'a>(&self, get: &dyn Fn(&Field) -> FieldValue<'a>) -> bool {
        match self {
            Self::Eq { field, value } => get(field).any(|v| value.matches_json_ref(v)),
            Self::Ne { field, value } => !get(field).any(|v| value.matches_json_ref(v)),
            Self::Range { field, op, value } => get(field).any(|v| match v {
                ValueRef::Json(Value::Number(n)) => n.as_f64().is_some_and(|n| op.holds(n, *value)),
                _ => false,
            }),
            Self::In { field, values } => {
                get(field).any(|v| values.iter().any(|s| s.matches_json_ref(v)))
            }
            Self::NotIn { field, values } => {
                !get(field).any(|v| values.iter().any(|s| s.matches_json_ref(v)))
            }
            Self::Exists { field } => match get(field) {
                FieldValue::Missing | FieldValue::Json(Value::Null) => false,
                FieldValue::Str(_) | FieldValue::Json(_) => true,
            },
            Self::And(v) => v.iter().all(|f| f.eval(get)),
            Self::Or(v) => v.iter().any(|f| f.eval(get)),
            Self::Not(f) => !f.eval(get),
        }
    }
}

/// A field's value as seen by [`Filter::eval`].
#[derive(Clone, Copy, Debug)]
pub enum FieldValue<'a> {
    /// The field is absent.
    Missing,
    /// A built-in string field.
    Str(&'a str),
    /// A metadata value.
    Json(&'a Value),
}

#[derive(Clone, Copy)]
enum ValueRef<'a> {
    Str(&'a str),
    Json(&'a Value),
}

impl<'a> FieldValue<'a> {
    /// Whether any of the field's scalar values (an array's elements, or the
    /// value itself) satisfies `pred`.
    fn any(self, pred: impl Fn(ValueRef<'a>) -> bool) -> bool {
        match self {
            Self::Missing => false,
            Self::Str(s) => pred(ValueRef::Str(s)),
            Self::Json(Value::Array(items)) => items.iter().any(|v| pred(ValueRef::Json(v))),
            Self::Json(v) => pred(ValueRef::Json(v)),
        }
    }
}

impl Scalar {
    fn matches_json_ref(&self, v: ValueRef<'_>) -> bool {
        match v {
            ValueRef::Str(s) => matches!(self, Self::String(a) if a == s),
            ValueRef::Json(j) => self.matches_json(j),
        }
    }
}

/// Checks a metadata key: 1 to 256 bytes, no control characters.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid_input(format!(
            "metadata keys must be 1 to {MAX_KEY_BYTES} bytes, got {}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid_input(
            "metadata keys must not contain control characters",
        ));
    }
    Ok(())
}

fn validate_field(field: &Field) -> Result<()> {
    match field {
        Field::Metadata(k) => validate_key(k),
        Field::DocumentId | Field::Source => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Document, Metadata};
    use serde_json::json;

    fn chunk(meta: Value) -> Chunk {
        let doc = Document::new("src.md", "text").with_metadata(meta);
        Chunk::from_document(&doc, 0, 0..4)
    }

    #[test]
    fn semantics_table() {
        let c = chunk(
            json!({"team": "ops", "year": 2021, "tags": ["a", "b"], "n": null, "draft": false}),
        );
        let t = |f: Filter| f.matches(&c);
        assert!(t(Filter::eq("team", "ops")));
        assert!(!t(Filter::eq("team", "dev")));
        assert!(!t(Filter::eq("year", "2021")), "no coercion");
        assert!(t(Filter::eq("year", 2021.0)));
        assert!(t(Filter::eq("tags", "b")), "array is a set");
        assert!(!t(Filter::eq("missing", "x")));
        assert!(t(Filter::ne("missing", "x")), "ne matches missing");
        assert!(!t(Filter::ne("tags", "a")));
        assert!(t(Filter::gt("year", 2020)));
        assert!(!t(Filter::gt("year", 2021)));
        assert!(t(Filter::gte("year", 2021)));
        assert!(t(Filter::lt("year", 2022)));
        assert!(t(Filter::lte("year", 2021)));
        assert!(!t(Filter::gt("team", 0)), "range on a string is false");
        assert!(!t(Filter::gt("missing", 0)));
        assert!(t(Filter::is_in("team", ["x", "ops"])));
        assert!(!t(Filter::is_in("team", Vec::<Scalar>::new())));
        assert!(t(Filter::not_in("team", ["x"])));
        assert!(t(Filter::not_in("missing", ["x"])));
        assert!(t(Filter::exists("team")));
        assert!(!t(Filter::exists("n")), "null does not exist");
        assert!(!t(Filter::exists("missing")));
        assert!(t(Filter::eq("draft", false)));
        assert!(t(Filter::eq(Field::Source, "src.md")));
        assert!(t(Filter::eq(Field::DocumentId, "src.md")));
        assert!(t(Filter::all([])));
        assert!(!t(Filter::any([])));
        assert!(t(Filter::not(Filter::eq("team", "dev"))));
    }

    #[test]
    fn validation() {
        assert!(Filter::eq("", 1).validate().is_err());
        assert!(Filter::eq("k", f64::NAN).validate().is_err());
        let mut deep = Filter::eq("a", 1);
        for _ in 0..40 {
            deep = Filter::not(deep);
        }
        assert!(deep.validate().is_err());
        let big = Filter::is_in("a", (0..2000).collect::<Vec<i32>>());
        assert!(big.validate().is_err());
        assert!(Filter::eq("it's \"quoted\"; DROP", "x").validate().is_ok());
    }

    #[test]
    fn serde_round_trip() {
        let f =
            Filter::eq("team", "ops").and(Filter::not(Filter::is_in(Field::Source, ["a", "b"])));
        let j = serde_json::to_value(&f).unwrap();
        assert_eq!(serde_json::from_value::<Filter>(j).unwrap(), f);
        let parsed: Filter =
            serde_json::from_value(json!({"eq": {"field": {"metadata": "team"}, "value": "ops"}}))
                .unwrap();
        assert_eq!(parsed, Filter::eq("team", "ops"));
        let _ = Metadata::new();
    }
}
