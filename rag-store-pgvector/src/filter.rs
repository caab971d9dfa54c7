//! [`Filter`] → a SQL boolean expression over the chunks table, with every
//! key and value a bind parameter.
//!
//! The expression has exactly the semantics of [`Filter::matches`]:
//!
//! * A metadata field is read with `metadata -> $key` (SQL `NULL` when the
//!   key is missing) and seen as a set of values: an array's elements, or
//!   the value itself (`[null]` when missing, and JSON `null` matches no
//!   comparison). A comparison holds when
//!   `EXISTS (SELECT 1 FROM jsonb_array_elements(…) AS e(v) WHERE …)`.
//! * Each element is compared by its JSON type, inside a `CASE` so that
//!   PostgreSQL never evaluates a cast on an element of another type:
//!   strings with `text = ANY($strings)`, numbers as `float8` (what
//!   `Filter::matches` compares, so `1` equals `1.0`) with
//!   `= ANY($numbers)` or a range operator, booleans with
//!   `= ANY($bools)`. A string never equals a number: no coercion.
//! * `exists` is `metadata -> $key IS NOT NULL AND jsonb_typeof(…) <> 'null'`.
//! * `document_id` and `source` are text columns: only strings match them.
//! * `ne` is `NOT (eq)`, `not_in` is `NOT (in)`: every leaf is `true` or
//!   `false`, never SQL `NULL`, so negation is exact and both match rows
//!   lacking the field.
//! * `and([])` is `TRUE`, `or([])` is `FALSE`.
//!
//! PostgreSQL text cannot hold a NUL character and the store rejects one in
//! stored text and metadata, so a filter string containing one can match
//! nothing: it is dropped from the value list rather than sent.

use std::fmt::Write as _;

use rag_core::filter::{Field, Filter, RangeOp, Scalar};
use sqlx::Postgres;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;

/// A bind parameter of a translated filter.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    Float(f64),
    TextArray(Vec<String>),
    FloatArray(Vec<f64>),
    BoolArray(Vec<bool>),
}

/// A translated filter: SQL text with placeholders `$first…`, and their
/// values in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SqlFilter {
    pub(crate) sql: String,
    pub(crate) binds: Vec<Bind>,
}

/// Binds a filter's values to a query, in order.
pub(crate) fn bind_all<'q>(
    mut q: Query<'q, Postgres, PgArguments>,
    binds: &'q [Bind],
) -> Query<'q, Postgres, PgArguments> {
    for b in binds {
        q = match b {
            Bind::Text(s) => q.bind(s.as_str()),
            Bind::Float(f) => q.bind(*f),
            Bind::TextArray(v) => q.bind(v.as_slice()),
            Bind::FloatArray(v) => q.bind(v.as_slice()),
            Bind::BoolArray(v) => q.bind(v.as_slice()),
        };
    }
    q
}

/// Translates `filter`; placeholders start at `$first`. `None` is `TRUE`.
pub(crate) fn translate(filter: Option<&Filter>, first: usize) -> SqlFilter {
    let mut t = Translator {
        out: SqlFilter::default(),
        first,
    };
    match filter {
        Some(f) => t.node(f),
        None => t.out.sql.push_str("TRUE"),
    }
    t.out
}

struct Translator {
    out: SqlFilter,
    first: usize,
}

/// Values of an `eq`/`in`, split by JSON type.
#[derive(Default)]
struct ValueSet {
    strings: Vec<String>,
    numbers: Vec<f64>,
    bools: Vec<bool>,
}

impl ValueSet {
    fn new<'a>(values: impl IntoIterator<Item = &'a Scalar>) -> Self {
        let mut s = Self::default();
        for v in values {
            match v {
                Scalar::String(x) if x.contains('\0') => {}
                Scalar::String(x) => s.strings.push(x.clone()),
                Scalar::Number(n) => s.numbers.push(*n),
                Scalar::Bool(b) => s.bools.push(*b),
            }
        }
        s
    }
    fn is_empty(&self) -> bool {
        self.strings.is_empty() && self.numbers.is_empty() && self.bools.is_empty()
    }
}

impl Translator {
    /// Pushes a bind value; returns its placeholder number.
    fn bind(&mut self, b: Bind) -> usize {
        self.out.binds.push(b);
        self.first + self.out.binds.len() - 1
    }

    fn push(&mut self, s: &str) {
        self.out.sql.push_str(s);
    }

    fn node(&mut self, f: &Filter) {
        match f {
            Filter::Eq { field, value } => self.membership(field, ValueSet::new([value])),
            Filter::Ne { field, value } => {
                self.push("NOT ");
                self.membership(field, ValueSet::new([value]));
            }
            Filter::In { field, values } => self.membership(field, ValueSet::new(values)),
            Filter::NotIn { field, values } => {
                self.push("NOT ");
                self.membership(field, ValueSet::new(values));
            }
            Filter::Range { field, op, value } => self.range(field, *op, *value),
            Filter::Exists { field } => self.exists(field),
            Filter::And(v) => self.junction(v, " AND ", "TRUE"),
            Filter::Or(v) => self.junction(v, " OR ", "FALSE"),
            Filter::Not(inner) => {
                self.push("NOT ");
                self.node(inner);
            }
            // `Filter` is non-exhaustive; an operator added to the core
            // without a translation here must not silently match.
            _ => self.push("FALSE"),
        }
    }

    fn junction(&mut self, items: &[Filter], sep: &str, empty: &str) {
        if items.is_empty() {
            self.push(empty);
            return;
        }
        self.push("(");
        for (i, f) in items.iter().enumerate() {
            if i > 0 {
                self.push(sep);
            }
            self.node(f);
        }
        self.push(")");
    }

    fn column(field: &Field) -> Option<&'static str> {
        match field {
            Field::DocumentId => Some("document_id"),
            Field::Source => Some("source"),
            Field::Metadata(_) => None,
        }
    }

    /// `EXISTS (SELECT 1 FROM <elements of metadata -> key> AS e(v) WHERE `
    /// — the caller writes the predicate over `e.v` and closes with `)`.
    fn open_elements(&mut self, key: &str) {
        let k = self.bind(Bind::Text(key.to_owned()));
        let _ = write!(
            self.out.sql,
            "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE jsonb_typeof(metadata -> ${k}::text) \
             WHEN 'array' THEN metadata -> ${k}::text \
             ELSE jsonb_build_array(metadata -> ${k}::text) END) AS e(v) WHERE "
        );
    }

    fn membership(&mut self, field: &Field, set: ValueSet) {
        if let Some(col) = Self::column(field) {
            if set.strings.is_empty() {
                self.push("FALSE");
            } else {
                let p = self.bind(Bind::TextArray(set.strings));
                let _ = write!(self.out.sql, "({col} = ANY(${p}::text[]))");
            }
            return;
        }
        let Field::Metadata(key) = field else {
            unreachable!("built-in fields handled above")
        };
        if set.is_empty() {
            self.push("FALSE");
            return;
        }
        self.open_elements(key);
        self.push("CASE jsonb_typeof(e.v)");
        if !set.strings.is_empty() {
            let p = self.bind(Bind::TextArray(set.strings));
            let _ = write!(
                self.out.sql,
                " WHEN 'string' THEN (e.v #>> '{{}}') = ANY(${p}::text[])"
            );
        }
        if !set.numbers.is_empty() {
            let p = self.bind(Bind::FloatArray(set.numbers));
            let _ = write!(
                self.out.sql,
                " WHEN 'number' THEN (e.v #>> '{{}}')::float8 = ANY(${p}::float8[])"
            );
        }
        if !set.bools.is_empty() {
            let p = self.bind(Bind::BoolArray(set.bools));
            let _ = write!(
                self.out.sql,
                " WHEN 'boolean' THEN (e.v #>> '{{}}')::boolean = ANY(${p}::boolean[])"
            );
        }
        self.push(" ELSE FALSE END)");
    }

    fn range(&mut self, field: &Field, op: RangeOp, value: f64) {
        let Field::Metadata(key) = field else {
            // Built-in fields are strings: ranges compare numbers only.
            self.push("FALSE");
            return;
        };
        let sym = match op {
            RangeOp::Gt => ">",
            RangeOp::Gte => ">=",
            RangeOp::Lt => "<",
            RangeOp::Lte => "<=",
        };
        self.open_elements(key);
        let p = self.bind(Bind::Float(value));
        let _ = write!(
            self.out.sql,
            "CASE jsonb_typeof(e.v) WHEN 'number' THEN (e.v #>> '{{}}')::float8 {sym} ${p}::float8 \
             ELSE FALSE END)"
        );
    }

    fn exists(&mut self, field: &Field) {
        let Field::Metadata(key) = field else {
            // Built-in fields are always present.
            self.push("TRUE");
            return;
        };
        let k = self.bind(Bind::Text(key.clone()));
        let _ = write!(
            self.out.sql,
            "(metadata -> ${k}::text IS NOT NULL AND jsonb_typeof(metadata -> ${k}::text) <> 'null')"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_value_or_key_in_sql_text() {
        let hostile = "it's \"x\"; DROP TABLE rag_chunks; -- \\ 東京";
        let f = Filter::eq(hostile, hostile)
            .and(Filter::is_in(Field::Source, [hostile]))
            .and(Filter::gt(hostile, 1.5))
            .and(Filter::exists(hostile));
        let t = translate(Some(&f), 4);
        assert!(!t.sql.contains("DROP"), "{}", t.sql);
        assert!(!t.sql.contains("東京"));
        assert!(!t.sql.contains("1.5"));
        assert!(t.sql.starts_with("(EXISTS"));
        assert!(t.sql.contains("$4::text"), "placeholders start at $4");
        assert_eq!(t.binds.len(), 6);
        assert_eq!(t.binds[0], Bind::Text(hostile.to_owned()));
    }

    #[test]
    fn empty_junctions_and_nul() {
        assert_eq!(translate(Some(&Filter::all([])), 1).sql, "TRUE");
        assert_eq!(translate(Some(&Filter::any([])), 1).sql, "FALSE");
        assert_eq!(translate(None, 1).sql, "TRUE");
        let t = translate(Some(&Filter::eq("k", "a\0b")), 1);
        assert_eq!(t.sql, "FALSE");
        assert!(t.binds.is_empty());
        let t = translate(Some(&Filter::ne(Field::DocumentId, 3)), 1);
        assert_eq!(t.sql, "NOT FALSE");
    }
}
