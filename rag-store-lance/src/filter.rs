//! [`Filter`] → Lance SQL filter strings, and the derived filter columns.
//!
//! Lance filters are SQL strings parsed by Lance (sqlparser + DataFusion).
//! Every key and value a user supplies reaches that string only through
//! [`sql_string`], which single-quotes and doubles embedded quotes — Lance's
//! dialect has no backslash escapes, so nothing else is special inside a
//! quoted literal. Column names are this crate's own constants.
//!
//! Metadata is arbitrary JSON, so it is not queried in place. At write time
//! each chunk's top-level metadata is projected onto four list columns that
//! express the reference semantics of [`Filter::matches`] exactly:
//!
//! * `meta_terms`: one term per scalar value (or array element) of each key,
//!   typed (`s`, `n`, `b`) so `"2021"` never equals `2021`, numbers in
//!   canonical `f64` form so `2021` equals `2021.0`. `eq`/`in` are
//!   `array_has` on it; `ne`/`not_in` are its negation.
//! * `meta_present`: keys whose value is not `null` (`exists`).
//! * `num_keys`, `num_min`, `num_max`: per key with numeric values, their
//!   minimum and maximum; "some element > x" is "max > x", and so on.
//!
//! Every leaf is a non-null boolean, so `NOT` is two-valued as in the
//! reference (a missing field makes `eq` false and `ne` true).

use rag_core::{Field, Filter, Scalar, filter::RangeOp};
use serde_json::Value;

/// A SQL string literal holding exactly `s`: single quotes around it, and
/// each `'` inside doubled. The only way user text enters a filter.
pub fn sql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A SQL float literal for `x` (finite), parenthesised so a sign is safe.
fn sql_number(x: f64) -> String {
    // `{:?}` is the shortest representation that round-trips.
    format!("({:?})", if x == 0.0 { 0.0 } else { x })
}

/// Canonical text of a number: equal `f64`s, equal text.
fn canonical_number(x: f64) -> String {
    format!("{:?}", if x == 0.0 { 0.0 } else { x })
}

/// The term for `key` having the scalar `value`. Keys are length-prefixed so
/// no key/value pair can spell another's term.
pub(crate) fn term(key: &str, value: &Scalar) -> String {
    let (tag, text) = match value {
        Scalar::Bool(b) => ('b', b.to_string()),
        Scalar::Number(n) => ('n', canonical_number(*n)),
        Scalar::String(s) => ('s', s.clone()),
    };
    format!("{}:{key}{tag}{text}", key.len())
}

fn json_scalar(v: &Value) -> Option<Scalar> {
    match v {
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Number(n) => n.as_f64().map(Scalar::Number),
        Value::String(s) => Some(Scalar::String(s.clone())),
        _ => None,
    }
}

/// The derived filter columns of one chunk's metadata.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct MetaColumns {
    pub terms: Vec<String>,
    pub present: Vec<String>,
    pub num_keys: Vec<String>,
    pub num_min: Vec<f64>,
    pub num_max: Vec<f64>,
}

impl MetaColumns {
    pub(crate) fn of(metadata: &serde_json::Map<String, Value>) -> Self {
        let mut out = Self::default();
        for (key, value) in metadata {
            if value.is_null() {
                continue;
            }
            out.present.push(key.clone());
            let items: &[Value] = match value {
                Value::Array(items) => items,
                other => std::slice::from_ref(other),
            };
            let mut range: Option<(f64, f64)> = None;
            for item in items {
                let Some(s) = json_scalar(item) else { continue };
                if let Scalar::Number(n) = s {
                    range = Some(match range {
                        Some((lo, hi)) => (lo.min(n), hi.max(n)),
                        None => (n, n),
                    });
                }
                out.terms.push(term(key, &s));
            }
            if let Some((lo, hi)) = range {
                out.num_keys.push(key.clone());
                out.num_min.push(lo);
                out.num_max.push(hi);
            }
        }
        out.terms.sort_unstable();
        out.terms.dedup();
        out
    }
}

/// The SQL filter for `filter` (already validated).
pub fn to_sql(filter: &Filter) -> String {
    let mut out = String::new();
    write(filter, &mut out);
    out
}

fn eq_sql(field: &Field, value: &Scalar) -> String {
    match field {
        Field::Metadata(key) => {
            format!("array_has(meta_terms, {})", sql_string(&term(key, value)))
        }
        Field::DocumentId => builtin_eq("document_id", value),
        Field::Source => builtin_eq("source", value),
    }
}

fn builtin_eq(column: &str, value: &Scalar) -> String {
    match value {
        Scalar::String(s) => format!("({column} = {})", sql_string(s)),
        // A built-in field is a string; it equals no number or bool.
        Scalar::Number(_) | Scalar::Bool(_) => "false".to_owned(),
    }
}

fn in_sql(field: &Field, values: &[Scalar]) -> String {
    if values.is_empty() {
        return "false".to_owned();
    }
    let parts: Vec<String> = values.iter().map(|v| eq_sql(field, v)).collect();
    format!("({})", parts.join(" OR "))
}

fn write(filter: &Filter, out: &mut String) {
    match filter {
        Filter::Eq { field, value } => out.push_str(&eq_sql(field, value)),
        Filter::Ne { field, value } => {
            out.push_str(&format!("(NOT {})", eq_sql(field, value)));
        }
        Filter::In { field, values } => out.push_str(&in_sql(field, values)),
        Filter::NotIn { field, values } => {
            out.push_str(&format!("(NOT {})", in_sql(field, values)));
        }
        Filter::Range {
            field: Field::Metadata(key),
            op,
            value,
        } => {
            let (list, sym) = match op {
                RangeOp::Gt => ("num_max", ">"),
                RangeOp::Gte => ("num_max", ">="),
                RangeOp::Lt => ("num_min", "<"),
                RangeOp::Lte => ("num_min", "<="),
            };
            out.push_str(&format!(
                "coalesce(array_element({list}, CAST(array_position(num_keys, {}) AS BIGINT)) {sym} {}, false)",
                sql_string(key),
                sql_number(*value)
            ));
        }
        // Built-in fields are strings, never numbers.
        Filter::Range { .. } => out.push_str("false"),
        Filter::Exists {
            field: Field::Metadata(key),
        } => {
            out.push_str(&format!("array_has(meta_present, {})", sql_string(key)));
        }
        // Built-in fields are always present.
        Filter::Exists { .. } => out.push_str("true"),
        Filter::And(parts) | Filter::Or(parts) if parts.is_empty() => {
            out.push_str(if matches!(filter, Filter::And(_)) {
                "true"
            } else {
                "false"
            });
        }
        Filter::And(parts) | Filter::Or(parts) => {
            let op = if matches!(filter, Filter::And(_)) {
                " AND "
            } else {
                " OR "
            };
            out.push('(');
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push_str(op);
                }
                write(p, out);
            }
            out.push(')');
        }
        Filter::Not(inner) => {
            out.push_str("(NOT ");
            write(inner, out);
            out.push(')');
        }
        // `Filter` is non_exhaustive; an operator this crate does not know is
        // refused by `Capabilities::filter_ops` before it gets here.
        _ => out.push_str("false"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literal_doubles_quotes_and_keeps_everything_else() {
        assert_eq!(sql_string(""), "''");
        assert_eq!(sql_string("ops"), "'ops'");
        assert_eq!(sql_string("it's"), "'it''s'");
        assert_eq!(sql_string("''"), "''''''");
        assert_eq!(sql_string("' OR 1=1 --"), "''' OR 1=1 --'");
        assert_eq!(sql_string("`x` \"y\" \\z"), "'`x` \"y\" \\z'");
        assert_eq!(sql_string("a\nb\r\tc"), "'a\nb\r\tc'");
        assert_eq!(sql_string("東京 🚀"), "'東京 🚀'");
    }

    #[test]
    fn literal_round_trips_by_the_sql_rule() {
        // Undo the escaping the way a SQL tokenizer does: inside quotes, ''
        // is one quote; a lone quote ends the literal.
        fn unquote(lit: &str) -> Option<String> {
            let inner = lit.strip_prefix('\'')?.strip_suffix('\'')?;
            let mut out = String::new();
            let mut chars = inner.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '\'' && chars.next() != Some('\'') {
                    return None; // the literal would end early
                }
                out.push(c);
            }
            Some(out)
        }
        for s in [
            "",
            "'",
            "a'b",
            "'''",
            "' OR '1'='1",
            "x'); DROP TABLE t; --",
        ] {
            assert_eq!(unquote(&sql_string(s)).as_deref(), Some(s), "{s:?}");
        }
    }

    #[test]
    fn terms_are_typed_and_unambiguous() {
        assert_ne!(
            term("year", &Scalar::Number(2021.0)),
            term("year", &Scalar::String("2021".into()))
        );
        assert_eq!(
            term("n", &Scalar::Number(0.0)),
            term("n", &Scalar::Number(-0.0))
        );
        // "a" + "sb..." cannot collide with "as" + "b...".
        assert_ne!(
            term("a", &Scalar::String("sbx".into())),
            term("as", &Scalar::String("bx".into()))
        );
    }

    #[test]
    fn meta_columns_follow_the_reference_shapes() {
        let meta = json!({
            "team": "ops", "year": 2021, "tags": ["rust", 3, [1], {"a": 1}, 7.5],
            "note": null, "empty": [], "obj": {"x": 1}
        });
        let m = MetaColumns::of(meta.as_object().unwrap());
        let mut present = m.present.clone();
        present.sort();
        assert_eq!(present, ["empty", "obj", "tags", "team", "year"]);
        assert!(
            m.terms
                .contains(&term("tags", &Scalar::String("rust".into())))
        );
        assert!(m.terms.contains(&term("tags", &Scalar::Number(3.0))));
        assert_eq!(m.terms.len(), 5); // team, year, rust, 3, 7.5
        let i = m.num_keys.iter().position(|k| k == "tags").unwrap();
        assert_eq!((m.num_min[i], m.num_max[i]), (3.0, 7.5));
    }

    #[test]
    fn sql_shapes() {
        assert_eq!(to_sql(&Filter::all([])), "true");
        assert_eq!(to_sql(&Filter::any([])), "false");
        assert_eq!(
            to_sql(&Filter::eq(Field::DocumentId, "a'b")),
            "(document_id = 'a''b')"
        );
        assert_eq!(to_sql(&Filter::eq(Field::Source, 3)), "false");
        assert_eq!(
            to_sql(&Filter::gt("year", -2)),
            "coalesce(array_element(num_max, CAST(array_position(num_keys, 'year') AS BIGINT)) > (-2.0), false)"
        );
        assert_eq!(to_sql(&Filter::exists(Field::Source)), "true");
    }
}
