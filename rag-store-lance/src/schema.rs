//! The table schema, and conversions between chunks and Arrow batches.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, ListBuilder, StringBuilder};
use arrow_array::types::Float32Type;
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, LargeStringArray, ListArray, RecordBatch, StringArray,
    StringViewArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rag_core::{Chunk, ChunkId, DocumentId, EmbeddedChunk, Error, Result};

use crate::filter::MetaColumns;

/// Written into the schema metadata; a table without it (or with another
/// value) was not written by this crate's current layout.
pub(crate) const LAYOUT_KEY: &str = "rag.layout";
pub(crate) const LAYOUT: &str = "rag-lance-v1";

pub(crate) const VECTOR: &str = "vector";
pub(crate) const TEXT: &str = "text";

/// The columns read back for a chunk (everything but the vector and the
/// derived filter columns).
pub const CHUNK_COLUMNS: &[&str] = &[
    "id",
    "document_id",
    "source",
    "text",
    "byte_start",
    "byte_end",
    "position",
    "token_count",
    "metadata",
    "content_hash",
];

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// The table schema for vectors of `dims`.
pub(crate) fn schema(dims: usize) -> SchemaRef {
    let dims = i32::try_from(dims).unwrap_or(i32::MAX);
    let fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("document_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new(TEXT, DataType::Utf8, false),
        Field::new("byte_start", DataType::UInt64, false),
        Field::new("byte_end", DataType::UInt64, false),
        Field::new("position", DataType::UInt32, false),
        Field::new("token_count", DataType::UInt32, true),
        Field::new("metadata", DataType::Utf8, false),
        Field::new("content_hash", DataType::Utf8, false),
        Field::new("meta_terms", list_of(DataType::Utf8), false),
        Field::new("meta_present", list_of(DataType::Utf8), false),
        Field::new("num_keys", list_of(DataType::Utf8), false),
        Field::new("num_min", list_of(DataType::Float64), false),
        Field::new("num_max", list_of(DataType::Float64), false),
        Field::new(
            VECTOR,
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dims),
            false,
        ),
    ];
    let metadata = [(LAYOUT_KEY.to_owned(), LAYOUT.to_owned())].into();
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// Checks that an existing table has this crate's layout and `dims`; the
/// error names what differs.
pub(crate) fn check_compatible(found: &Schema, dims: usize, table: &str) -> Result<()> {
    let expected = schema(dims);
    let corrupt = |message: String| Error::Corrupt {
        location: format!("lance table {table}"),
        message,
    };
    for want in expected.fields() {
        let Ok(have) = found.field_with_name(want.name()) else {
            return Err(corrupt(format!(
                "column {:?} is missing: not a rag table, or written by an incompatible version",
                want.name()
            )));
        };
        if have.data_type() != want.data_type() {
            if want.name() == VECTOR
                && let DataType::FixedSizeList(_, n) = have.data_type()
            {
                return Err(corrupt(format!(
                    "the table holds {n}-dimensional vectors, the store is configured for {dims}"
                )));
            }
            return Err(corrupt(format!(
                "column {:?} has type {}, expected {}",
                want.name(),
                have.data_type(),
                want.data_type()
            )));
        }
    }
    if let Some(layout) = found.metadata().get(LAYOUT_KEY)
        && layout != LAYOUT
    {
        return Err(corrupt(format!(
            "layout {layout:?}, this version reads {LAYOUT:?}"
        )));
    }
    Ok(())
}

fn string_list<'a>(rows: impl Iterator<Item = &'a [String]>) -> ListArray {
    let mut b = ListBuilder::new(StringBuilder::new());
    for row in rows {
        for s in row {
            b.values().append_value(s);
        }
        b.append(true);
    }
    b.finish()
}

fn f64_list<'a>(rows: impl Iterator<Item = &'a [f64]>) -> ListArray {
    let mut b = ListBuilder::new(Float64Builder::new());
    for row in rows {
        for x in row {
            b.values().append_value(*x);
        }
        b.append(true);
    }
    b.finish()
}

/// One batch holding `chunks` (already validated).
pub(crate) fn to_batch(chunks: &[EmbeddedChunk], dims: usize) -> Result<RecordBatch> {
    let meta: Vec<MetaColumns> = chunks
        .iter()
        .map(|c| MetaColumns::of(&c.chunk.metadata))
        .collect();
    let strings = |f: &dyn Fn(&Chunk) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            chunks.iter().map(|c| f(&c.chunk)),
        ))
    };
    let metadata_json: Vec<String> = chunks
        .iter()
        .map(|c| serde_json::to_string(&c.chunk.metadata))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::invalid_input(format!("metadata is not serialisable: {e}")))?;
    let columns: Vec<ArrayRef> = vec![
        strings(&|c| c.id.as_str()),
        strings(&|c| c.document_id.as_str()),
        strings(&|c| &c.source),
        strings(&|c| &c.text),
        Arc::new(UInt64Array::from_iter_values(
            chunks.iter().map(|c| c.chunk.byte_range.start as u64),
        )),
        Arc::new(UInt64Array::from_iter_values(
            chunks.iter().map(|c| c.chunk.byte_range.end as u64),
        )),
        Arc::new(UInt32Array::from_iter_values(
            chunks.iter().map(|c| c.chunk.position),
        )),
        Arc::new(UInt32Array::from_iter(
            chunks.iter().map(|c| c.chunk.token_count),
        )),
        Arc::new(StringArray::from_iter_values(metadata_json)),
        strings(&|c| &c.document_hash),
        Arc::new(string_list(meta.iter().map(|m| m.terms.as_slice()))),
        Arc::new(string_list(meta.iter().map(|m| m.present.as_slice()))),
        Arc::new(string_list(meta.iter().map(|m| m.num_keys.as_slice()))),
        Arc::new(f64_list(meta.iter().map(|m| m.num_min.as_slice()))),
        Arc::new(f64_list(meta.iter().map(|m| m.num_max.as_slice()))),
        Arc::new(
            FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
                chunks
                    .iter()
                    .map(|c| Some(c.vector.iter().copied().map(Some))),
                i32::try_from(dims).unwrap_or(i32::MAX),
            ),
        ),
    ];
    RecordBatch::try_new(schema(dims), columns)
        .map_err(|e| Error::invalid_input(format!("lance: cannot build the batch: {e}")))
}

/// A string column by name, whatever string layout the reader produced.
pub(crate) struct Strings<'a>(StringsInner<'a>);

enum StringsInner<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl Strings<'_> {
    pub(crate) fn value(&self, i: usize) -> &str {
        match &self.0 {
            StringsInner::Utf8(a) => a.value(i),
            StringsInner::Large(a) => a.value(i),
            StringsInner::View(a) => a.value(i),
        }
    }
}

fn bad_column(name: &str) -> Error {
    Error::backend(
        crate::BACKEND,
        false,
        format!("lance returned no usable column {name:?}"),
    )
}

pub(crate) fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<Strings<'a>> {
    let col = batch.column_by_name(name).ok_or_else(|| bad_column(name))?;
    let any = col.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return Ok(Strings(StringsInner::Utf8(a)));
    }
    if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        return Ok(Strings(StringsInner::Large(a)));
    }
    if let Some(a) = any.downcast_ref::<StringViewArray>() {
        return Ok(Strings(StringsInner::View(a)));
    }
    Err(bad_column(name))
}

fn typed<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| bad_column(name))
}

/// A float column (`_distance`, `_score`).
pub(crate) fn floats(batch: &RecordBatch, name: &str) -> Result<Vec<f32>> {
    let col = batch.column_by_name(name).ok_or_else(|| bad_column(name))?;
    let cast = arrow_cast::cast(col, &DataType::Float32).map_err(|_| bad_column(name))?;
    let arr = cast
        .as_any()
        .downcast_ref::<arrow_array::Float32Array>()
        .ok_or_else(|| bad_column(name))?;
    Ok((0..arr.len())
        .map(|i| {
            if arr.is_null(i) {
                f32::NAN
            } else {
                arr.value(i)
            }
        })
        .collect())
}

/// The vectors of a batch read with the [`VECTOR`] column, one per row.
pub(crate) fn vectors_of(batch: &RecordBatch) -> Result<Vec<Vec<f32>>> {
    let list = typed::<FixedSizeListArray>(batch, VECTOR)?;
    let values = list
        .values()
        .as_any()
        .downcast_ref::<arrow_array::Float32Array>()
        .ok_or_else(|| bad_column(VECTOR))?;
    let d = usize::try_from(list.value_length()).map_err(|_| bad_column(VECTOR))?;
    let all = values.values();
    Ok((0..list.len())
        .map(|i| {
            let start = list.value_offset(i) as usize;
            all[start..start + d].to_vec()
        })
        .collect())
}

/// The chunks of a batch read with [`CHUNK_COLUMNS`].
pub(crate) fn chunks_of(batch: &RecordBatch) -> Result<Vec<Chunk>> {
    let id = strings(batch, "id")?;
    let doc = strings(batch, "document_id")?;
    let source = strings(batch, "source")?;
    let text = strings(batch, TEXT)?;
    let start = typed::<UInt64Array>(batch, "byte_start")?;
    let end = typed::<UInt64Array>(batch, "byte_end")?;
    let position = typed::<UInt32Array>(batch, "position")?;
    let tokens = typed::<UInt32Array>(batch, "token_count")?;
    let metadata = strings(batch, "metadata")?;
    let hash = strings(batch, "content_hash")?;
    let corrupt = |what: String| Error::Corrupt {
        location: "lance table".to_owned(),
        message: what,
    };
    (0..batch.num_rows())
        .map(|i| {
            let meta: serde_json::Value = serde_json::from_str(metadata.value(i))
                .map_err(|e| corrupt(format!("row metadata is not JSON: {e}")))?;
            let serde_json::Value::Object(meta) = meta else {
                return Err(corrupt("row metadata is not a JSON object".to_owned()));
            };
            Ok(Chunk {
                id: ChunkId::from_string(id.value(i).to_owned()),
                document_id: DocumentId::new(doc.value(i)).map_err(|e| corrupt(e.to_string()))?,
                source: source.value(i).to_owned(),
                text: text.value(i).to_owned(),
                byte_range: usize::try_from(start.value(i)).unwrap_or(usize::MAX)
                    ..usize::try_from(end.value(i)).unwrap_or(usize::MAX),
                position: position.value(i),
                token_count: (!tokens.is_null(i)).then(|| tokens.value(i)),
                metadata: meta,
                document_hash: hash.value(i).to_owned(),
            })
        })
        .collect()
}
