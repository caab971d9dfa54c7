//! The API contract where utoipa's attributes cannot say it: string
//! patterns, byte limits, the filter grammar, the error statuses every route
//! shares, the events of the streams and the links between operations. The
//! handlers check input with the functions here, so what the document
//! rejects and what the server rejects are one rule written once.
//!
//! [`document`] is utoipa's [`ApiDoc`](crate::routes::ops::ApiDoc) with
//! these additions, served at `/openapi.json`; `scripts/contract` runs
//! schemathesis against it.

use serde_json::{Value, json};

/// A string holding at least one character that is not white space (the
/// characters [`str::trim`] removes: Unicode `White_Space`). A JSON Schema
/// `pattern` matches anywhere in the string.
pub const NON_BLANK: &str = "[^\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// No control character (Unicode `Cc`, what [`char::is_control`] tests).
pub const NO_CONTROL: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// ASCII only.
pub const ASCII: &str = "^[\\u0000-\\u007f]*$";

/// A namespace: 1 to 64 ASCII letters, digits, `_` or `-`.
pub const NAMESPACE: &str = "^[A-Za-z0-9_-]{1,64}$";

/// Longest document id, in bytes (`rag::DocumentId`).
pub const ID_BYTES: usize = 512;

/// Longest metadata key, in bytes (`rag::filter::MAX_KEY_BYTES`).
pub const KEY_BYTES: usize = rag::filter::MAX_KEY_BYTES;

/// The model `/v1/models` lists and `/v1/chat/completions` accepts.
pub const MODELS: [&str; 1] = [crate::openai_compat::MODEL];

/// Whether `s` is non-blank (see [`NON_BLANK`]).
pub fn non_blank(s: &str) -> bool {
    !s.trim().is_empty()
}

/// Whether `s` is a valid identifier of at most `max_bytes` UTF-8 bytes, as
/// the document can say it: JSON Schema counts characters, not bytes, so
/// it accepts up to `max_bytes / 4` characters of any kind (at most
/// `max_bytes` bytes) or up to `max_bytes` ASCII characters, never a
/// control character. [`bounded`] is its schema.
pub fn fits(s: &str, max_bytes: usize) -> bool {
    !s.is_empty()
        && !s.chars().any(char::is_control)
        && (s.chars().count() <= max_bytes / 4 || (s.is_ascii() && s.len() <= max_bytes))
}

/// The schema of [`fits`].
pub fn bounded(max_bytes: usize) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "pattern": NO_CONTROL,
        "anyOf": [
            {"maxLength": max_bytes / 4},
            {"maxLength": max_bytes, "pattern": ASCII}
        ]
    })
}

/// The keys of a metadata object that [`fits`] refuses, first one.
pub fn bad_key(metadata: &serde_json::Map<String, Value>) -> Option<&str> {
    metadata
        .keys()
        .find(|k| !fits(k, KEY_BYTES))
        .map(String::as_str)
}

/// The first metadata key of a filter that [`fits`] refuses.
pub fn bad_filter_key(f: &rag::Filter) -> Option<String> {
    use rag::{Field, Filter as F};
    let key = |field: &Field| match field {
        Field::Metadata(k) if !fits(k, KEY_BYTES) => Some(k.clone()),
        _ => None,
    };
    match f {
        F::Eq { field, .. }
        | F::Ne { field, .. }
        | F::Range { field, .. }
        | F::In { field, .. }
        | F::NotIn { field, .. }
        | F::Exists { field } => key(field),
        F::And(v) | F::Or(v) => v.iter().find_map(bad_filter_key),
        F::Not(inner) => bad_filter_key(inner),
        _ => None,
    }
}

// Deserializing as the document says: JSON Schema's `integer` is any number
// without a fraction (`3.0` too), and an `object` is never an array (serde's
// derived structs also take `[a, b]`).

fn integral<T: TryFrom<i64>, E: serde::de::Error>(x: f64) -> Result<T, E> {
    if !(x.is_finite() && x.fract() == 0.0) {
        return Err(E::custom(format!(
            "invalid value: {x}, expected an integer"
        )));
    }
    // Beyond i64 (and, below, beyond T) is out of range either way.
    if x.abs() > 9.0e18 {
        return Err(E::custom(format!("{x} is out of range")));
    }
    #[allow(clippy::cast_possible_truncation)] // integral and within i64
    T::try_from(x as i64).map_err(|_| E::custom(format!("{x} is out of range")))
}

/// An integer field that takes `3` and `3.0`, as JSON Schema's `integer`
/// does (`#[serde(deserialize_with = "crate::schema::int")]`).
pub fn int<'de, D: serde::Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    integral(<f64 as serde::Deserialize>::deserialize(d)?)
}

/// [`int`] for an optional field (with `#[serde(default)]`).
pub fn int_opt<'de, D: serde::Deserializer<'de>, T: TryFrom<i64>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    <Option<f64> as serde::Deserialize>::deserialize(d)?
        .map(integral)
        .transpose()
}

/// A struct read only from a JSON object, never from an array.
#[derive(Debug)]
pub struct Obj<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Obj<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// A list of objects ([`Obj`]) (`#[serde(deserialize_with = "crate::schema::objects")]`).
pub fn objects<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    <Vec<Obj<T>> as serde::Deserialize>::deserialize(d)
        .map(|v| v.into_iter().map(|o| o.0).collect())
}

fn nullable(schema: Value) -> Value {
    let mut out = json!({"anyOf": [{"type": "null"}]});
    if let Some(a) = out["anyOf"].as_array_mut() {
        a.insert(0, schema);
    }
    out
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema_ref("ErrorBody")}}
    })
}

fn retry_after() -> Value {
    json!({"Retry-After": {
        "description": "seconds to wait before retrying",
        "required": false,
        "schema": {"type": "integer", "minimum": 1}
    }})
}

/// The schemas the handlers' types do not derive.
fn extra_schemas() -> Value {
    let metadata_key = bounded(KEY_BYTES);
    let field = json!({
        "description": "`document_id`, `source` or `{\"metadata\": KEY}`",
        "oneOf": [
            {"type": "string", "enum": ["document_id", "source"]},
            {"type": "object", "required": ["metadata"], "additionalProperties": false,
             "properties": {"metadata": metadata_key}}
        ]
    });
    let scalar = json!({"type": ["string", "number", "boolean"]});
    let op = |name: &str, body: Value| {
        json!({"type": "object", "required": [name], "additionalProperties": false,
               "properties": {name: body}})
    };
    let cmp = json!({"type": "object", "required": ["field", "value"],
        "properties": {"field": field, "value": scalar}});
    let set = json!({"type": "object", "required": ["field", "values"],
        "properties": {"field": field, "values": {"type": "array", "items": scalar}}});
    let list = json!({"type": "array", "items": schema_ref("Filter")});
    let filter = json!({
        "description": "A filter over `document_id`, `source` and metadata keys: one operator \
            per object, e.g. `{\"eq\": {\"field\": {\"metadata\": \"team\"}, \"value\": \"ops\"}}`. \
            At most 32 levels of `and`/`or`/`not` and 1024 nodes.",
        "oneOf": [
            op("eq", cmp.clone()),
            op("ne", cmp),
            op("range", json!({"type": "object", "required": ["field", "op", "value"],
                "properties": {"field": field, "op": {"type": "string", "enum": ["gt", "gte", "lt", "lte"]},
                               "value": {"type": "number"}}})),
            op("in", set.clone()),
            op("not_in", set),
            op("exists", json!({"type": "object", "required": ["field"], "properties": {"field": field}})),
            op("and", list.clone()),
            op("or", list),
            op("not", schema_ref("Filter"))
        ]
    });
    let citations = json!({"type": "array", "items": schema_ref("CitationOut")});
    let finish = json!({"type": "string", "enum": ["stop", "length", "content_filter"]});
    let chat_completion = json!({
        "type": "object",
        "description": "OpenAI's `chat.completion`, with the answer's `citations`.",
        "required": ["id", "object", "created", "model", "choices", "usage", "citations"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "const": "chat.completion"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {
                "type": "object",
                "required": ["index", "message", "finish_reason"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "message": {"type": "object", "required": ["role", "content"], "properties": {
                        "role": {"type": "string", "const": "assistant"},
                        "content": {"type": "string"}
                    }},
                    "finish_reason": finish,
                    "logprobs": {"type": "null"}
                }
            }},
            "usage": {"type": "object",
                "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
                "properties": {
                    "prompt_tokens": {"type": "integer", "minimum": 0},
                    "completion_tokens": {"type": "integer", "minimum": 0},
                    "total_tokens": {"type": "integer", "minimum": 0}
                }},
            "citations": citations
        }
    });
    let chunk = json!({
        "type": "object",
        "description": "OpenAI's `chat.completion.chunk`; the last one carries `finish_reason` and the `citations`.",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "const": "chat.completion.chunk"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": {
                "type": "object",
                "required": ["index", "delta", "finish_reason"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "delta": {"type": "object", "properties": {
                        "role": {"type": "string", "const": "assistant"},
                        "content": {"type": "string"}
                    }},
                    "finish_reason": {"anyOf": [finish, {"type": "null"}]},
                    "logprobs": {"type": "null"}
                }
            }},
            "citations": citations
        }
    });
    // One server-sent event as schemathesis and OpenAPI 3.1 tooling read it:
    // `event` (`message` when the stream names none) and `data`, a string
    // whose JSON content is described by `contentSchema`.
    let event = |name: &str, content: Value| {
        json!({
            "if": {"properties": {"event": {"const": name}}},
            "then": {"properties": {"data": {
                "contentMediaType": "application/json",
                "contentSchema": content
            }}}
        })
    };
    let ask_event = json!({
        "type": "object",
        "description": "One event of `/v1/ask/stream`: `sources` (the sources given to the answerer), \
            `delta` (more answer text) as many times as needed, then `done` (the answer as `/v1/ask` \
            returns it) or `error`. `data` is JSON.",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": ["sources", "delta", "done", "error"]},
            "data": {"type": "string"}
        },
        "allOf": [
            event("sources", json!({"type": "array", "items": schema_ref("SourceOut")})),
            event("delta", schema_ref("DeltaOut")),
            event("done", schema_ref("AskResponse")),
            event("error", schema_ref("ErrorDetail"))
        ]
    });
    let chat_event = json!({
        "type": "object",
        "description": "One event of a streamed chat completion: unnamed (`message`), `data` a \
            `chat.completion.chunk` (or an `error` body if the answer fails midway), and the \
            literal `[DONE]` last.",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "const": "message"},
            "data": {"type": "string"}
        },
        "if": {"properties": {"data": {"const": "[DONE]"}}},
        "else": {"properties": {"data": {
            "contentMediaType": "application/json",
            "contentSchema": {"anyOf": [schema_ref("ChatCompletionChunk"), schema_ref("ErrorBody")]}
        }}}
    });
    json!({
        "Filter": filter,
        "Namespace": {"type": "string", "pattern": NAMESPACE,
            "description": "A tenant: 1 to 64 ASCII letters, digits, `_` or `-`."},
        "DocumentId": {"description": "A document id: 1 to 512 bytes of UTF-8 without control \
            characters (up to 128 characters of any kind, or 512 of ASCII).",
            "allOf": [bounded(ID_BYTES)]},
        "ChatCompletion": chat_completion,
        "ChatCompletionChunk": chunk,
        "AskStreamEvent": ask_event,
        "ChatCompletionEvent": chat_event
    })
}

/// Sets the JSON value at `pointer`, which must exist.
fn set(doc: &mut Value, pointer: &str, value: Value) {
    *doc.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("openapi: no {pointer}")) = value;
}

/// Merges the keys of `value` into the object at `pointer`.
fn merge(doc: &mut Value, pointer: &str, value: Value) {
    let target = doc
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("openapi: no object at {pointer}"));
    if let Value::Object(m) = value {
        target.extend(m);
    }
}

/// The pointer of a parameter of an operation, by name.
fn param(doc: &Value, path: &str, method: &str, name: &str) -> String {
    let base = format!("/paths/{}/{method}/parameters", path.replace('/', "~1"));
    let i = doc
        .pointer(&base)
        .and_then(Value::as_array)
        .and_then(|ps| ps.iter().position(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("openapi: no parameter {name} of {method} {path}"));
    format!("{base}/{i}/schema")
}

fn op(path: &str, method: &str) -> String {
    format!("/paths/{}/{method}", path.replace('/', "~1"))
}

/// Request fields: patterns, byte limits, the filter, the chat messages.
fn patch_requests(doc: &mut Value) {
    let ns = nullable(schema_ref("Namespace"));
    let s = "/components/schemas";
    let metadata = json!({"type": "object", "propertyNames": bounded(KEY_BYTES)});
    set(
        doc,
        &format!("{s}/IngestRequest/properties/namespace"),
        ns.clone(),
    );
    merge(
        doc,
        &format!("{s}/DocumentIn/properties/source"),
        json!({"pattern": NON_BLANK}),
    );
    merge(
        doc,
        &format!("{s}/DocumentIn/properties/text"),
        json!({"pattern": NON_BLANK}),
    );
    set(
        doc,
        &format!("{s}/DocumentIn/properties/id"),
        nullable(schema_ref("DocumentId")),
    );
    set(
        doc,
        &format!("{s}/DocumentIn/properties/metadata"),
        nullable(metadata),
    );
    set(
        doc,
        &format!("{s}/AskRequest/properties/namespace"),
        ns.clone(),
    );
    merge(
        doc,
        &format!("{s}/AskRequest/properties/question"),
        json!({"pattern": NON_BLANK}),
    );
    set(
        doc,
        &format!("{s}/AskRequest/properties/filter"),
        nullable(schema_ref("Filter")),
    );
    set(
        doc,
        &format!("{s}/AskRequest/properties/mode"),
        json!({"type": ["string", "null"], "enum": ["dense", "keyword", "hybrid", null],
               "description": "`dense`, `keyword` or `hybrid` (default)."}),
    );
    set(doc, &format!("{s}/CreateSession/properties/namespace"), ns);
    set(
        doc,
        &format!("{s}/CreateSession/properties/metadata"),
        json!({"type": ["object", "null"], "description": "Free-form data (a title, a user id)."}),
    );
    set(
        doc,
        &format!("{s}/FeedbackRequest/properties/rating"),
        json!({"type": "integer", "enum": [1, -1], "description": "`1` (helpful) or `-1` (not helpful)."}),
    );
    // Chat: a listed model, and a user message with text somewhere (the
    // last such message is the question).
    let models: Vec<Value> = MODELS
        .iter()
        .map(|m| json!(m))
        .chain([Value::Null])
        .collect();
    set(
        doc,
        &format!("{s}/ChatCompletionRequest/properties/model"),
        json!({"type": ["string", "null"], "enum": models,
               "description": "A model `/v1/models` lists (`404` `model_not_found` otherwise); `rag` when absent."}),
    );
    let text = json!({"type": "string", "pattern": NON_BLANK});
    merge(
        doc,
        &format!("{s}/ChatCompletionRequest/properties/messages"),
        json!({
            "minItems": 1,
            "contains": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"const": "user"},
                    "content": {"anyOf": [
                        text,
                        {"type": "array", "contains": {"type": "object", "required": ["text"],
                            "properties": {"text": text}}}
                    ]}
                }
            },
            "description": "The conversation; the last user message with text is the question \
                (at least one is needed)."
        }),
    );
    set(
        doc,
        &format!("{s}/ChatMessageIn/properties/content"),
        json!({
            "description": "The text, or `[{\"type\": \"text\", \"text\": …}]` (parts of other types are ignored).",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object", "required": ["type"],
                    "properties": {"type": {"type": "string"}, "text": {"type": "string"}}}},
                {"type": "null"}
            ]
        }),
    );
    // Exactly the fields serde requires (an `Option` with `value_type`
    // must not be listed).
    for (name, required) in [
        ("DocumentIn", &["source", "text"][..]),
        ("IngestRequest", &["documents"]),
        ("AskRequest", &["question"]),
        ("CreateSession", &[]),
        ("FeedbackRequest", &["answer_id", "rating"]),
        ("ChatCompletionRequest", &["messages"]),
        ("ChatMessageIn", &["role"]),
    ] {
        let o = doc
            .pointer_mut(&format!("{s}/{name}"))
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("openapi: no schema {name}"));
        if required.is_empty() {
            o.remove("required");
        } else {
            o.insert("required".into(), json!(required));
        }
    }
    // The upload's parts. A file is text, but OpenAPI can only call a file
    // part binary: the server refuses one that is not UTF-8 (`422`).
    set(
        doc,
        &format!("{}/requestBody/content", op("/v1/documents/upload", "post")),
        json!({"multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "additionalProperties": false,
                "properties": {
                    "file": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"},
                        "description": "UTF-8 text files with some text, each with a filename whose extension \
                            the server accepts (text, Markdown, code) and within its size limit."},
                    "namespace": schema_ref("Namespace"),
                    "metadata": {"type": "string", "contentMediaType": "application/json",
                        "contentSchema": {"type": "object", "propertyNames": bounded(KEY_BYTES)},
                        "description": "A JSON object of metadata for every file."}
                }
            },
            "encoding": {"file": {
                "contentType": "text/plain",
                "headers": {"Content-Disposition": {"schema": {"type": "string",
                    "example": "form-data; name=\"file\"; filename=\"notes.md\""}}}
            }}
        }}),
    );
    // Query and path parameters.
    for (path, method) in [
        ("/v1/documents", "get"),
        ("/v1/documents/{id}", "get"),
        ("/v1/documents/{id}", "delete"),
        ("/v1/admin/export", "get"),
        ("/v1/admin/import", "post"),
        ("/v1/sessions", "get"),
    ] {
        let p = param(doc, path, method, "namespace");
        set(doc, &p, nullable(schema_ref("Namespace")));
    }
    // A backup file is bytes (gzip-compressed JSON lines).
    let binary = json!({"type": "string", "contentMediaType": "application/gzip"});
    set(
        doc,
        &format!(
            "{}/responses/200/content/application~1gzip/schema",
            op("/v1/admin/export", "get")
        ),
        binary,
    );
    set(
        doc,
        &format!(
            "{}/requestBody/content/application~1octet-stream/schema",
            op("/v1/admin/import", "post")
        ),
        json!({"type": "string", "format": "binary"}),
    );
    // The chat page's assets (when the page is served).
    if doc.pointer(&op("/ui/{asset}", "get")).is_some() {
        let p = param(doc, "/ui/{asset}", "get", "asset");
        set(
            doc,
            &p,
            json!({"type": "string", "enum": crate::routes::ui::asset_names()}),
        );
    }
    if doc.pointer(&op("/docs/assets/{asset}", "get")).is_some() {
        let p = param(doc, "/docs/assets/{asset}", "get", "asset");
        set(
            doc,
            &p,
            json!({"type": "string", "enum": crate::routes::api_docs::asset_names()}),
        );
    }
    let p = param(doc, "/v1/documents", "get", "after");
    set(doc, &p, nullable(schema_ref("DocumentId")));
    for method in ["get", "delete"] {
        let p = param(doc, "/v1/documents/{id}", method, "id");
        set(doc, &p, schema_ref("DocumentId"));
    }
}

/// The statuses every `/v1` operation shares, by what it takes.
fn patch_errors(doc: &mut Value) {
    let asks = ["/v1/ask", "/v1/ask/stream", "/v1/chat/completions"];
    let paths: Vec<(String, String)> = doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.iter())
        .filter(|(p, _)| p.starts_with("/v1/"))
        .flat_map(|(p, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .map(move |m| (p.clone(), m.clone()))
        })
        .collect();
    for (path, method) in paths {
        let o = op(&path, &method);
        let operation = doc.pointer(&o).cloned().unwrap_or_default();
        let body_types: Vec<String> = operation["requestBody"]["content"]
            .as_object()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        let has_params = operation["parameters"]
            .as_array()
            .is_some_and(|p| !p.is_empty());
        let mut add: Vec<(&str, Value)> = vec![
            (
                "401",
                error_response("No API key, or an unknown one (`unauthorized`)."),
            ),
            (
                "403",
                error_response(
                    "The key lacks the scope, or may not use the namespace (`forbidden`).",
                ),
            ),
            (
                "504",
                error_response(
                    "The request took longer than the server's deadline (`timeout`, `upstream_timeout`).",
                ),
            ),
        ];
        let mut limited =
            error_response("A rate limit (`rate_limited`); wait `Retry-After` seconds.");
        limited["headers"] = retry_after();
        add.push(("429", limited));
        if body_types.iter().any(|t| t == "application/json") {
            add.push((
                "400",
                error_response(
                    "Malformed JSON (`malformed_json`) or an unreadable body (`bad_request`).",
                ),
            ));
            add.push((
                "413",
                error_response("The body is larger than the server accepts (`payload_too_large`)."),
            ));
            add.push((
                "415",
                error_response("The body is not `application/json` (`unsupported_media_type`)."),
            ));
        }
        if body_types.iter().any(|t| t == "multipart/form-data") {
            add.push((
                "400",
                error_response("An unreadable multipart body (`bad_multipart`)."),
            ));
            add.push(("413", error_response("The body or a file is larger than the server accepts (`payload_too_large`, `file_too_large`).")));
            add.push(("415", error_response("Not `multipart/form-data`, or a file of a type not accepted (`unsupported_media_type`, `unsupported_file_type`).")));
        }
        if !body_types.is_empty() || has_params {
            add.push((
                "422",
                error_response(
                    "A field or parameter is invalid (`invalid_input`, naming `field`).",
                ),
            ));
        }
        // Everything under /v1 reads or writes the store.
        add.push((
            "502",
            error_response(
                "The store or a model provider failed (`backend_error`, `upstream_unauthorized`).",
            ),
        ));
        if asks.contains(&path.as_str()) {
            let mut busy = error_response(
                "The local model is busy or the provider's circuit breaker is open (`model_busy`, `circuit_open`); wait `Retry-After` seconds.",
            );
            busy["headers"] = retry_after();
            add.push(("503", busy));
            add.push((
                "501",
                error_response(
                    "The store cannot search in this mode or with this filter (`unsupported`).",
                ),
            ));
        }
        // Every /v1 operation takes the key either way.
        let scopes = operation["security"][0]
            .as_object()
            .and_then(|m| m.values().next().cloned())
            .unwrap_or_else(|| json!([]));
        set(
            doc,
            &format!("{o}/security"),
            json!([{"api_key": scopes}, {"bearer": scopes}]),
        );
        let responses = doc
            .pointer_mut(&format!("{o}/responses"))
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("openapi: no responses of {method} {path}"));
        for (status, response) in add {
            responses.entry(status).or_insert(response);
        }
    }
}

/// The streams' events, and the JSON-or-stream answer of the chat endpoint.
fn patch_streams(doc: &mut Value) {
    set(
        doc,
        &format!("{}/responses/200/content", op("/v1/ask/stream", "post")),
        json!({"text/event-stream": {"schema": schema_ref("AskStreamEvent")}}),
    );
    set(
        doc,
        &format!(
            "{}/responses/200/content",
            op("/v1/chat/completions", "post")
        ),
        json!({
            "application/json": {"schema": schema_ref("ChatCompletion")},
            "text/event-stream": {"schema": schema_ref("ChatCompletionEvent")}
        }),
    );
}

/// Links from what creates a resource to what reads and deletes it, so a
/// client (and schemathesis's stateful phase) can follow them.
fn patch_links(doc: &mut Value) {
    let doc_links = json!({
        "GetDocument": {
            "operationId": "get_document",
            "description": "The first document of the request.",
            "parameters": {"path.id": "$response.body#/documents/0", "query.namespace": "$response.body#/namespace"}
        },
        "DeleteDocument": {
            "operationId": "delete_document",
            "description": "Deletes the first document of the request.",
            "parameters": {"path.id": "$response.body#/documents/0", "query.namespace": "$response.body#/namespace"}
        }
    });
    for path in ["/v1/documents", "/v1/documents/upload"] {
        merge(
            doc,
            &format!("{}/responses/200", op(path, "post")),
            json!({"links": doc_links}),
        );
    }
    merge(
        doc,
        &format!("{}/responses/201", op("/v1/sessions", "post")),
        json!({"links": {
            "GetSession": {"operationId": "get_session", "parameters": {"path.id": "$response.body#/id"}},
            "DeleteSession": {"operationId": "delete_session", "parameters": {"path.id": "$response.body#/id"}}
        }}),
    );
}

/// An example request body for the examples phase of a client's tests (and
/// for readers).
fn patch_examples(doc: &mut Value) {
    let question = "How often are API keys rotated?";
    for (path, example) in [
        (
            "/v1/documents",
            json!({"documents": [{"source": "ops/keys.md",
                "text": "Rotate API keys every 90 days. Old keys stay valid for one day.",
                "metadata": {"team": "ops"}}]}),
        ),
        (
            "/v1/ask",
            json!({"question": question, "top_k": 8, "mode": "hybrid",
                "filter": {"eq": {"field": {"metadata": "team"}, "value": "ops"}}}),
        ),
        ("/v1/ask/stream", json!({"question": question})),
        ("/v1/sessions", json!({"metadata": {"title": "keys"}})),
        (
            "/v1/feedback",
            json!({"answer_id": "6f1c2a50-6a43-4a55-9a43-0d4b0f3a2b11", "rating": 1,
                "comment": "cited the right page"}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "rag", "messages": [{"role": "user", "content": question}]}),
        ),
    ] {
        merge(
            doc,
            &format!("{}/requestBody/content/application~1json", op(path, "post")),
            json!({"example": example}),
        );
    }
}

/// Without keys the server is open: no operation needs a key, and none
/// answers `401` or `403` (the anonymous caller may do everything).
fn patch_open(doc: &mut Value) {
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in item.values_mut().filter_map(Value::as_object_mut) {
                operation.remove("security");
                if let Some(r) = operation
                    .get_mut("responses")
                    .and_then(Value::as_object_mut)
                {
                    r.remove("401");
                    r.remove("403");
                }
            }
        }
    }
}

/// The OpenAPI document served at `/openapi.json`; `keys` is whether the
/// server has API keys (without, it is open and the document says so).
pub fn document(keys: bool) -> Value {
    use utoipa::OpenApi;
    let mut doc =
        serde_json::to_value(crate::routes::ops::ApiDoc::openapi()).expect("serializable");
    merge(&mut doc, "/components/schemas", extra_schemas());
    patch_requests(&mut doc);
    patch_errors(&mut doc);
    patch_streams(&mut doc);
    patch_links(&mut doc);
    patch_examples(&mut doc);
    if !keys {
        patch_open(&mut doc);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_counts_bytes_as_the_schema_does() {
        assert!(fits("a", 512));
        assert!(!fits("", 512));
        assert!(!fits("a\u{7}b", 512));
        assert!(fits(&"a".repeat(512), 512));
        assert!(!fits(&"a".repeat(513), 512));
        assert!(fits(&"é".repeat(128), 512));
        assert!(!fits(&"é".repeat(129), 512));
    }

    #[test]
    fn non_blank_is_what_trim_keeps() {
        for s in [" ", "\t\n", "\u{3000}", "\u{2028} \u{85}"] {
            assert!(!non_blank(s), "{s:?}");
        }
        for s in ["a", " a ", "\u{1c}", "\u{200b}"] {
            assert!(non_blank(s), "{s:?}");
        }
    }

    #[test]
    fn the_document_is_patched() {
        let doc = document(true);
        assert_eq!(
            doc["components"]["schemas"]["Filter"]["oneOf"]
                .as_array()
                .unwrap()
                .len(),
            9
        );
        let ask = &doc["paths"]["/v1/ask"]["post"]["responses"];
        for status in [
            "400", "401", "403", "413", "415", "422", "429", "503", "504",
        ] {
            assert!(ask[status].is_object(), "{status}");
        }
        assert!(
            doc["paths"]["/v1/sessions"]["post"]["responses"]["201"]["links"]["GetSession"]
                .is_object()
        );
    }
}
