//! The [`SessionStore`] conformance suite.
//!
//! Every session backend, and every wrapper around one, must pass
//! [`run_all`]; the rules are those of [`crate::MemorySessionStore`], the
//! reference. Each test is a plain async function taking `&dyn SessionStore`
//! that panics with a message naming the broken rule, and each uses a fresh
//! namespace, so runs never see each other's data.
//!
//! ```
//! use rag_core::MemorySessionStore;
//! use rag_core::testkit::session_store;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! session_store::run_all(&MemorySessionStore::default()).await;
//! # });
//! ```
//!
//! Requirements on the caller:
//! * a Tokio runtime with time enabled ([`list_order_and_limit`] waits a
//!   few milliseconds between updates so that backends whose timestamps have
//!   millisecond resolution order them unambiguously);
//! * no other caller of [`SessionStore::expire`] on the same backend while
//!   [`ttl_expiry`] runs (it expects its own expired session to be counted).

use std::fmt::Debug;
use std::time::Duration;

use chrono::TimeDelta;
use futures::future::join_all;
use serde_json::json;

use crate::chat::{Message, Role};
use crate::error::{Error, Result};
use crate::session::{NewSession, Session, SessionId, StoredMessage};
use crate::testkit::fresh_namespace;
use crate::traits::SessionStore;
use crate::types::Namespace;

const HOUR: Duration = Duration::from_secs(3600);

/// Runs every test of the suite, in turn.
pub async fn run_all(store: &dyn SessionStore) {
    create_get_round_trip(store).await;
    unknown_id_not_found(store).await;
    append_history_round_trip(store).await;
    history_window(store).await;
    list_order_and_limit(store).await;
    delete_removes(store).await;
    ttl_expiry(store).await;
    concurrent_appends(store).await;
    concurrent_batches_contiguous(store).await;
    unicode_round_trip(store).await;
}

/// Panics unless `result` is `Err(Error::NotFound)`.
fn assert_not_found<T: Debug>(result: Result<T>, rule: &str) {
    match result {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{rule}: expected Error::NotFound, got {other:?}"),
    }
}

/// Panics unless `expires_at - updated_at` is `ttl` (within a second, for
/// backends that round or compute the two apart).
fn assert_expiry_slides(s: &Session, ttl: Duration, rule: &str) {
    let Some(expires_at) = s.expires_at else {
        panic!("{rule}: a session with a {ttl:?} TTL must have expires_at, got None");
    };
    let ttl = TimeDelta::from_std(ttl).expect("suite TTLs are small");
    let slack = TimeDelta::seconds(1);
    let gap = expires_at - s.updated_at;
    assert!(
        gap >= ttl - slack && gap <= ttl + slack,
        "{rule}: expires_at must be updated_at + ttl ({ttl}), but it is updated_at + {gap}"
    );
}

async fn create(store: &dyn SessionStore, new: NewSession, what: &str) -> Session {
    match store.create(new).await {
        Ok(s) => s,
        Err(e) => panic!("create ({what}) failed: {e}"),
    }
}

async fn get(store: &dyn SessionStore, id: SessionId, what: &str) -> Session {
    match store.get(id).await {
        Ok(s) => s,
        Err(e) => panic!("get ({what}) failed: {e}"),
    }
}

async fn append(store: &dyn SessionStore, id: SessionId, messages: Vec<Message>, what: &str) {
    if let Err(e) = store.append(id, messages).await {
        panic!("append ({what}) failed: {e}");
    }
}

async fn history(
    store: &dyn SessionStore,
    id: SessionId,
    window: usize,
    what: &str,
) -> Vec<StoredMessage> {
    match store.history(id, window).await {
        Ok(h) => h,
        Err(e) => panic!("history ({what}, window {window}) failed: {e}"),
    }
}

async fn list_ids(
    store: &dyn SessionStore,
    ns: &Namespace,
    limit: usize,
    what: &str,
) -> Vec<SessionId> {
    match store.list(ns, limit).await {
        Ok(l) => {
            for s in &l {
                assert_eq!(
                    &s.namespace, ns,
                    "list returns only sessions of the namespace asked ({what})"
                );
            }
            l.into_iter().map(|s| s.id).collect()
        }
        Err(e) => panic!("list ({what}, limit {limit}) failed: {e}"),
    }
}

fn contents(h: &[StoredMessage]) -> Vec<&str> {
    h.iter().map(|m| m.message.content.as_str()).collect()
}

fn numbered(prefix: &str, n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| Message::user(format!("{prefix}{i}")))
        .collect()
}

/// `create` returns the header it stored, with fresh ids, and `get` returns
/// the same header: namespace, metadata, timestamps, expiry, zero messages.
pub async fn create_get_round_trip(store: &dyn SessionStore) {
    let ns = fresh_namespace("session_create_get");
    let metadata = json!({"title": "Key rotation", "user": 42, "tags": ["ops", "keys"],
        "nested": {"ok": true, "ratio": 0.5}});
    let created = create(
        store,
        NewSession::new(ns.clone())
            .with_metadata(metadata.clone())
            .with_ttl(HOUR),
        "with metadata",
    )
    .await;
    assert_eq!(created.namespace, ns, "create keeps the namespace");
    assert_eq!(created.metadata, metadata, "create keeps the metadata");
    assert_eq!(created.message_count, 0, "a new session has no messages");
    assert_eq!(
        created.updated_at, created.created_at,
        "a new session's updated_at is its created_at"
    );
    assert_expiry_slides(&created, HOUR, "create with a TTL");

    let got = get(store, created.id, "just created").await;
    assert_eq!(got, created, "get returns the header create returned");

    let plain = create(store, NewSession::new(ns.clone()), "default TTL").await;
    assert_ne!(plain.id, created.id, "create makes a new id each time");
    let got = get(store, plain.id, "default TTL").await;
    assert_eq!(
        got.metadata,
        serde_json::Value::Null,
        "null metadata round-trips"
    );
    assert_eq!(got.namespace, ns, "get keeps the namespace");
}

/// `get`, `append`, `history` and `delete` of an id never created are
/// `Error::NotFound`.
pub async fn unknown_id_not_found(store: &dyn SessionStore) {
    let id = SessionId::new_v4();
    assert_not_found(store.get(id).await, "get of an unknown id");
    assert_not_found(
        store.append(id, vec![Message::user("hello?")]).await,
        "append to an unknown id",
    );
    assert_not_found(
        store.append(id, vec![]).await,
        "empty append to an unknown id",
    );
    assert_not_found(store.history(id, 10).await, "history of an unknown id");
    assert_not_found(store.delete(id).await, "delete of an unknown id");
}

/// `append` stores messages in order with role, content and metadata intact,
/// keeps `message_count` accurate, and slides the expiry; an empty append is
/// accepted.
pub async fn append_history_round_trip(store: &dyn SessionStore) {
    let ns = fresh_namespace("session_append_history");
    let s = create(store, NewSession::new(ns).with_ttl(HOUR), "for append").await;
    let first = vec![
        Message::system("You answer from the handbook."),
        Message::user("How do I rotate keys?").with_metadata(json!({"client": "cli"})),
    ];
    let second = vec![
        Message::assistant("Monthly [1].")
            .with_metadata(json!({"citations": [{"chunk": "c1", "score": 0.9}]})),
    ];
    append(store, s.id, first.clone(), "first batch").await;
    let after_first = get(store, s.id, "after one append").await;
    assert_eq!(
        after_first.message_count, 2,
        "message_count counts appended messages"
    );
    assert!(
        after_first.updated_at >= s.updated_at,
        "append moves updated_at forward"
    );
    assert_expiry_slides(&after_first, HOUR, "append refreshes the sliding TTL");

    append(store, s.id, second.clone(), "second batch").await;
    let after_second = get(store, s.id, "after two appends").await;
    assert_eq!(
        after_second.message_count, 3,
        "message_count counts appended messages"
    );
    assert!(
        after_second.expires_at >= after_first.expires_at,
        "each append pushes expires_at forward, never back"
    );

    let h = history(store, s.id, 100, "after two appends").await;
    let expected: Vec<Message> = first.into_iter().chain(second).collect();
    let got: Vec<Message> = h.iter().map(|m| m.message.clone()).collect();
    assert_eq!(
        got, expected,
        "history returns appended messages oldest first with role, content and metadata"
    );
    assert_eq!(
        h.iter().map(|m| m.message.role).collect::<Vec<_>>(),
        [Role::System, Role::User, Role::Assistant],
        "roles round-trip"
    );
    assert!(
        h.windows(2).all(|w| w[0].at <= w[1].at),
        "sequential appends have non-decreasing `at`"
    );

    append(store, s.id, vec![], "empty").await;
    let after_empty = get(store, s.id, "after an empty append").await;
    assert_eq!(
        after_empty.message_count, 3,
        "an empty append adds no messages"
    );
    assert!(
        after_empty.updated_at >= after_second.updated_at,
        "an empty append does not move updated_at back"
    );
    assert_expiry_slides(&after_empty, HOUR, "an empty append refreshes the TTL");
    assert_eq!(
        history(store, s.id, 100, "after an empty append")
            .await
            .len(),
        3,
        "an empty append adds no messages"
    );
}

/// `history(id, window)` is the last `window` messages, oldest first.
pub async fn history_window(store: &dyn SessionStore) {
    let ns = fresh_namespace("session_history_window");
    let s = create(store, NewSession::new(ns).with_ttl(HOUR), "for history").await;
    append(store, s.id, numbered("m", 3), "first three").await;
    append(store, s.id, numbered("n", 2), "last two").await;
    let all = ["m0", "m1", "m2", "n0", "n1"];
    assert_eq!(
        contents(&history(store, s.id, 2, "window 2").await),
        ["n0", "n1"],
        "a window smaller than the count gives the latest messages, oldest first"
    );
    assert_eq!(
        contents(&history(store, s.id, 4, "window 4").await),
        ["m1", "m2", "n0", "n1"],
        "a window spanning two appends gives the latest messages, oldest first"
    );
    assert_eq!(
        contents(&history(store, s.id, 5, "window 5").await),
        all,
        "a window equal to the count gives every message"
    );
    assert_eq!(
        contents(&history(store, s.id, 6, "window 6").await),
        all,
        "a window larger than the count gives every message"
    );
    assert_eq!(
        contents(&history(store, s.id, usize::MAX, "window usize::MAX").await),
        all,
        "a window of usize::MAX gives every message"
    );
    assert!(
        history(store, s.id, 0, "window 0").await.is_empty(),
        "a window of 0 gives no messages"
    );
}

/// `list` returns the namespace's sessions only, most recently updated
/// first, at most `limit`.
pub async fn list_order_and_limit(store: &dyn SessionStore) {
    let ns = fresh_namespace("session_list");
    let other = fresh_namespace("session_list_other");
    let empty = fresh_namespace("session_list_empty");
    let pause = || tokio::time::sleep(Duration::from_millis(3));

    let mut ids = Vec::new();
    for i in 0..3 {
        let s = create(
            store,
            NewSession::new(ns.clone()).with_ttl(HOUR),
            &format!("listed {i}"),
        )
        .await;
        ids.push(s.id);
        pause().await;
    }
    let foreign = create(
        store,
        NewSession::new(other.clone()).with_ttl(HOUR),
        "other",
    )
    .await;
    pause().await;

    assert_eq!(
        list_ids(store, &ns, 10, "after creates").await,
        [ids[2], ids[1], ids[0]],
        "list orders sessions most recently updated first (creation counts as an update)"
    );
    append(
        store,
        ids[0],
        vec![Message::user("bump")],
        "bump the oldest",
    )
    .await;
    assert_eq!(
        list_ids(store, &ns, 10, "after an append").await,
        [ids[0], ids[2], ids[1]],
        "an append makes a session the most recently updated"
    );
    assert_eq!(
        list_ids(store, &ns, 2, "limit 2").await,
        [ids[0], ids[2]],
        "list honours limit, keeping the most recent"
    );
    assert_eq!(
        list_ids(store, &ns, usize::MAX, "limit usize::MAX")
            .await
            .len(),
        3,
        "a limit of usize::MAX lists every session"
    );
    assert!(
        list_ids(store, &ns, 0, "limit 0").await.is_empty(),
        "a limit of 0 lists nothing"
    );
    assert_eq!(
        list_ids(store, &other, 10, "other namespace").await,
        [foreign.id],
        "list returns only sessions of the namespace asked"
    );
    assert!(
        list_ids(store, &empty, 10, "empty namespace")
            .await
            .is_empty(),
        "list of a namespace without sessions is empty"
    );
    let listed = match store.list(&ns, 1).await {
        Ok(l) => l,
        Err(e) => panic!("list failed: {e}"),
    };
    assert_eq!(
        listed.first().map(|s| s.message_count),
        Some(1),
        "list reports an accurate message_count"
    );
    assert_eq!(
        listed.first(),
        Some(&get(store, ids[0], "listed").await),
        "list returns the same header as get"
    );
}

/// `delete` removes a session (it is then `NotFound` everywhere and absent
/// from `list`), leaves its neighbours alone, and a second delete is
/// `NotFound`.
pub async fn delete_removes(store: &dyn SessionStore) {
    let ns = fresh_namespace("session_delete");
    let gone = create(
        store,
        NewSession::new(ns.clone()).with_ttl(HOUR),
        "to delete",
    )
    .await;
    let kept = create(store, NewSession::new(ns.clone()).with_ttl(HOUR), "to keep").await;
    append(store, gone.id, numbered("g", 2), "to delete").await;
    append(store, kept.id, numbered("k", 2), "to keep").await;

    if let Err(e) = store.delete(gone.id).await {
        panic!("delete of an existing session failed: {e}");
    }
    assert_not_found(store.get(gone.id).await, "get after delete");
    assert_not_found(store.history(gone.id, 10).await, "history after delete");
    assert_not_found(
        store.append(gone.id, vec![Message::user("late")]).await,
        "append after delete",
    );
    assert_not_found(store.delete(gone.id).await, "second delete");
    assert_eq!(
        list_ids(store, &ns, 10, "after delete").await,
        [kept.id],
        "list omits a deleted session"
    );
    assert_eq!(
        contents(&history(store, kept.id, 10, "neighbour of a deleted session").await),
        ["k0", "k1"],
        "delete leaves other sessions' messages alone"
    );
}

/// A session created with a zero TTL is expired at once: `NotFound` from
/// every method, absent from `list`, removed by `expire()`; a session with a
/// one-hour TTL survives `expire()`.
pub async fn ttl_expiry(store: &dyn SessionStore) {
    let ns = fresh_namespace("session_ttl");
    let dead = create(
        store,
        NewSession::new(ns.clone()).with_ttl(Duration::ZERO),
        "zero TTL",
    )
    .await;
    let live = create(
        store,
        NewSession::new(ns.clone()).with_ttl(HOUR),
        "one-hour TTL",
    )
    .await;

    assert_not_found(
        store.get(dead.id).await,
        "get of a session whose TTL is zero (expired before expire() runs)",
    );
    assert_not_found(
        store.history(dead.id, 10).await,
        "history of an expired session",
    );
    assert_eq!(
        list_ids(store, &ns, 10, "with an expired session").await,
        [live.id],
        "list omits expired sessions before expire() runs"
    );

    let removed = match store.expire().await {
        Ok(n) => n,
        Err(e) => panic!("expire failed: {e}"),
    };
    assert!(
        removed >= 1,
        "expire() must remove the zero-TTL session and count it, returned {removed}"
    );
    assert_not_found(store.get(dead.id).await, "get after expire()");
    assert_not_found(
        store.append(dead.id, vec![Message::user("too late")]).await,
        "append to an expired session",
    );
    assert_not_found(store.delete(dead.id).await, "delete of an expired session");

    let survivor = get(store, live.id, "one-hour TTL after expire()").await;
    assert_eq!(
        survivor.id, live.id,
        "a session with a one-hour TTL survives expire()"
    );
    append(
        store,
        live.id,
        vec![Message::user("still here")],
        "survivor",
    )
    .await;
    assert_eq!(
        list_ids(store, &ns, 10, "after expire()").await,
        [live.id],
        "expire() keeps live sessions listed"
    );
}

/// 16 concurrent tasks each append 5 messages, one at a time, to one
/// session: all 80 land and each task's messages keep their order.
pub async fn concurrent_appends(store: &dyn SessionStore) {
    const TASKS: usize = 16;
    const EACH: usize = 5;
    let ns = fresh_namespace("session_concurrent");
    let s = create(store, NewSession::new(ns).with_ttl(HOUR), "for concurrency").await;
    let id = s.id;
    join_all((0..TASKS).map(|t| async move {
        for i in 0..EACH {
            append(
                store,
                id,
                vec![Message::user(format!("{t}:{i}"))],
                "concurrent",
            )
            .await;
        }
    }))
    .await;

    let got = get(store, id, "after concurrent appends").await;
    assert_eq!(
        got.message_count,
        TASKS * EACH,
        "every concurrent append lands (message_count)"
    );
    let h = history(store, id, usize::MAX, "after concurrent appends").await;
    assert_eq!(h.len(), TASKS * EACH, "every concurrent append lands");
    let mut next = [0usize; TASKS];
    for m in &h {
        let (t, i) = parse_pair(&m.message.content);
        assert_eq!(
            i, next[t],
            "task {t}'s appends must appear in the order they were made"
        );
        next[t] += 1;
    }
    assert!(
        next.iter().all(|&n| n == EACH),
        "every task's messages are there"
    );
}

/// 16 concurrent appends of 5 messages each to one session: every batch
/// lands whole, its messages contiguous and in order.
pub async fn concurrent_batches_contiguous(store: &dyn SessionStore) {
    const TASKS: usize = 16;
    const EACH: usize = 5;
    let ns = fresh_namespace("session_batches");
    let s = create(store, NewSession::new(ns).with_ttl(HOUR), "for batches").await;
    let id = s.id;
    join_all((0..TASKS).map(|t| async move {
        let batch = (0..EACH)
            .map(|i| Message::assistant(format!("{t}:{i}")))
            .collect();
        append(store, id, batch, "concurrent batch").await;
    }))
    .await;

    let h = history(store, id, usize::MAX, "after concurrent batches").await;
    assert_eq!(h.len(), TASKS * EACH, "every concurrent batch lands");
    let mut seen = [false; TASKS];
    for batch in h.chunks(EACH) {
        let (t, _) = parse_pair(&batch[0].message.content);
        for (i, m) in batch.iter().enumerate() {
            assert_eq!(
                parse_pair(&m.message.content),
                (t, i),
                "one append's messages must stay contiguous and in order"
            );
        }
        assert!(!seen[t], "batch {t} appears twice");
        seen[t] = true;
    }
}

fn parse_pair(content: &str) -> (usize, usize) {
    let parsed = content
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    match parsed {
        Some(p) => p,
        None => panic!("history returned a message the suite did not append: {content:?}"),
    }
}

/// Unicode in content and metadata (and a long message) round-trips byte
/// for byte.
pub async fn unicode_round_trip(store: &dyn SessionStore) {
    let ns = fresh_namespace("session_unicode");
    let metadata = json!({"título": "Schlüssel 🔑", "日本語": ["鍵", "回転"]});
    let s = create(
        store,
        NewSession::new(ns)
            .with_metadata(metadata.clone())
            .with_ttl(HOUR),
        "unicode metadata",
    )
    .await;
    assert_eq!(
        get(store, s.id, "unicode metadata").await.metadata,
        metadata,
        "unicode session metadata round-trips"
    );
    let messages = vec![
        Message::user("Wie rotiere ich Schlüssel? 鍵をどう回転しますか？ 🔑🔄"),
        Message::assistant(
            "مفتاح — ключ — 👩‍👩‍👧‍👦 — e\u{301} — \u{200d}\u{fe0f} — \"quoted\" \\ 'single'",
        )
        .with_metadata(json!({"émoji": "🧪", "rtl": "עברית"})),
        Message::user("長".repeat(10_000)),
    ];
    append(store, s.id, messages.clone(), "unicode").await;
    let got: Vec<Message> = history(store, s.id, 10, "unicode")
        .await
        .into_iter()
        .map(|m| m.message)
        .collect();
    assert_eq!(
        got, messages,
        "unicode content and metadata round-trip byte for byte"
    );
}
