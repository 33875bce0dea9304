//! The event store's tests: batches, statements and the typed path.

use hookplane_convert::encode_trace;

use super::*;

async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("events.db").display());
    Store::connect(&url).await.unwrap()
}

fn refs(events: &[Event<EncodedTrace>]) -> Vec<&Event<EncodedTrace>> {
    events.iter().collect()
}

/// Fresh events `ids` of one organization, connector and node.
pub(crate) fn events(ids: std::ops::RangeInclusive<i64>) -> Vec<Event<EncodedTrace>> {
    ids.map(|id| Event {
        id,
        organization_id: "org_1".into(),
        connector_id: "con_1".into(),
        status: EventStatus::Completed,
        response_code: Some(200),
        error: String::new(),
        node_id: "node-a".into(),
        create_time: hookplane_model::now(),
        duration_ms: 1,
        trace: encode_trace(EventTrace { payload: format!("{{\"n\":{id}}}"), ..Default::default() }),
    })
    .collect()
}

/// Small batches get statements of their exact size; larger ones a
/// step at most a quarter above, never below, up to a whole chunk.
#[test]
fn statements_fit_their_batch_closely() {
    for events in 1..=INSERT_CHUNK {
        let rows = STATEMENT_ROWS[statement_size(events)];
        assert!(rows >= events, "{events} events in a statement of {rows}");
        if events <= 32 {
            assert_eq!(rows, events);
        }
        assert!(4 * rows <= 5 * events + 4, "{events} events padded to {rows}");
    }
    assert!(STATEMENT_ROWS.is_sorted());
}

/// The padding (repeats of a chunk's last event) must neither be
/// stored nor counted as new.
#[tokio::test]
async fn batches_of_every_size_store_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let ids = |range: std::ops::RangeInclusive<i64>| range.collect::<Vec<_>>();
    assert!(store.insert_events(&[]).await.unwrap().is_empty());
    assert_eq!(store.insert_events(&events(1..=1)).await.unwrap(), [1]);
    assert_eq!(store.insert_events(&events(2..=8)).await.unwrap(), ids(2..=8), "7 rows, exactly");
    // A failed event sends its batch through the transaction, which pads.
    let mut padded = events(9..=141);
    padded[132].status = EventStatus::Failed;
    assert_eq!(store.insert_events(&padded).await.unwrap(), ids(9..=141), "100 rows, then 33 padded to 40");
    let mut overlapping = store.insert_events(&events(120..=150)).await.unwrap();
    overlapping.sort_unstable();
    assert_eq!(overlapping, ids(142..=150), "only the new part of an overlapping batch");
    assert!(store.insert_events(&events(1..=150)).await.unwrap().is_empty(), "a resent batch adds nothing");
    let stored: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(&store.pool).await.unwrap();
    assert_eq!(stored, ids(1..=150));
    let last = store.get_event("org_1", 141).await.unwrap();
    assert_eq!(last.trace.payload, r#"{"n":141}"#, "the padded chunk's last event is stored as sent");
}

/// A batch stored in one statement is all new; one that meets a stored
/// event stores nothing there and goes through the transaction, which
/// stores and reports only the new ones. A failed event, whose platform
/// event needs the transaction, never takes the one statement.
#[tokio::test]
async fn one_statement_stores_fresh_batches_and_leaves_overlaps_to_the_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let fresh = events(1..=10);
    assert_eq!(store.insert_new_events(&refs(&fresh)).await, Some((1..=10).collect()));
    assert_eq!(store.insert_new_events(&refs(&events(8..=12))).await, None, "two of the five are stored");
    assert_eq!(store.insert_events(&events(8..=12)).await.unwrap(), [11, 12]);
    let mut failed = events(13..=14);
    failed[1].status = EventStatus::Failed;
    assert_eq!(store.insert_new_events(&refs(&failed)).await, None);
    assert_eq!(store.insert_events(&failed).await.unwrap(), [13, 14]);
    let stored: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(&store.pool).await.unwrap();
    assert_eq!(stored, (1..=14).collect::<Vec<_>>());
    assert_eq!(store.get_event("org_1", 14).await.unwrap().status, EventStatus::Failed);
}

/// Statements of exact sizes cover any batch, in order, the largest
/// first: two at most per hundred events.
#[test]
fn exact_statements_cover_a_batch_in_order() {
    let all = events(1..=250);
    for size in [1, 32, 33, 47, 99, 100, 101, 250] {
        let batch = refs(&all[..size]);
        let statements: Vec<_> = exact_statements(Backend::Sqlite, &batch).collect();
        let sizes: Vec<usize> = statements.iter().map(|(_, events)| events.len()).collect();
        let ids: Vec<i64> = statements.iter().flat_map(|(_, events)| events.iter().map(|e| e.id)).collect();
        assert_eq!(ids, (1..=size as i64).collect::<Vec<_>>(), "{size} events, in order, each once");
        assert!(sizes.is_sorted_by(|a, b| a >= b), "{size} events as {sizes:?}");
        assert!(sizes.len() <= 2 * size.div_ceil(INSERT_CHUNK), "{size} events as {sizes:?}");
        for (statement, events) in &statements {
            let rows = statement.matches('(').count() - 1;
            assert_eq!(rows, events.len(), "a statement of exactly its rows");
            assert!(!statement.contains("ON CONFLICT"), "a stored event fails the statement");
        }
    }
}

/// On SQLite a fresh batch of any size takes the typed statements,
/// however many, and is stored whole or not at all: one meeting a stored
/// event in its last statement leaves nothing of the statements before,
/// and the transaction then stores and reports all that is new.
#[tokio::test]
async fn fresh_batches_of_any_size_are_stored_whole_on_the_typed_connection() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let count = || async { sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM events").fetch_one(&store.pool).await };
    assert_eq!(store.insert_new_events(&refs(&events(1..=33))).await, Some((1..=33).collect()), "32 and 1");
    assert_eq!(store.insert_new_events(&refs(&events(34..=283))).await, Some((34..=283).collect()), "100, 100, 48, 2");
    store.insert_events(&events(450..=450)).await.unwrap();
    assert_eq!(count().await.unwrap(), 284);
    assert_eq!(store.insert_new_events(&refs(&events(301..=500))).await, None, "the second hundred holds 450");
    assert_eq!(count().await.unwrap(), 284, "the first hundred rolled back with it");
    let mut inserted = store.insert_events(&events(284..=500)).await.unwrap();
    inserted.sort_unstable();
    let expected: Vec<i64> = (284..=449).chain(451..=500).collect();
    assert_eq!(inserted, expected, "the transaction reports all it stored");
    let stored: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(&store.pool).await.unwrap();
    assert_eq!(stored, (1..=500).collect::<Vec<_>>());
}

/// A batch of several statements dropped while its transaction waits for
/// another process's lock stores nothing and keeps the writer's turn
/// until SQLite's thread undid it; sent again, all of it is stored and
/// reported new.
#[tokio::test]
async fn a_batch_of_several_statements_dropped_while_waiting_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let batch = events(1..=150);
    drop_an_insert_waiting_on_the_lock(&store, &dir, batch.clone()).await;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&store.pool).await.unwrap();
    assert_eq!(stored, 0, "nothing of the dropped batch was kept");
    assert_eq!(store.insert_events(&batch).await.unwrap(), (1..=150).collect::<Vec<_>>());
}

/// Starts storing `batch` as a fresh batch while another process holds
/// SQLite's write lock, drops the insert once it holds the typed
/// connection, checks that the writer's turn stays the dropped insert's,
/// then lets the lock go and waits for the turn.
async fn drop_an_insert_waiting_on_the_lock(store: &Store, dir: &tempfile::TempDir, batch: Vec<Event<EncodedTrace>>) {
    use sqlx::{Connection as _, Executor as _};
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    other.execute("BEGIN IMMEDIATE").await.unwrap();
    let insert = tokio::spawn({
        let store = store.clone();
        async move { store.insert_new_events(&refs(&batch)).await }
    });
    // On this one-thread runtime the insert runs until it waits for its
    // first command to SQLite, which it has then sent.
    let typed = store.sqlite_events.as_ref().expect("SQLite has the typed connection");
    while typed.is_idle() {
        tokio::task::yield_now().await;
    }
    insert.abort();
    assert!(insert.await.unwrap_err().is_cancelled());
    let waiting = tokio::time::timeout(std::time::Duration::from_millis(200), store.writer.turn()).await;
    assert!(waiting.is_err(), "the turn is still the dropped insert's");
    other.execute("COMMIT").await.unwrap();
    drop(store.writer.turn().await.unwrap());
}

/// The typed statement of a fresh batch on SQLite stores each column
/// as the transaction's `Any` statement does, whether a row's texts
/// repeat the row above's or not.
#[tokio::test]
async fn a_fresh_batch_reads_back_as_the_transaction_stores_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let vary = |mut batch: Vec<Event<EncodedTrace>>| {
        for (i, event) in batch.iter_mut().enumerate() {
            event.organization_id = format!("org_{}", i / 3);
            event.connector_id = format!("con_{}", i % 2);
            if i % 4 == 1 {
                event.status = EventStatus::Skipped;
                event.response_code = None;
            }
            if i == 2 {
                event.error = "target answered 503: naïve ünïcode".into();
            }
            event.node_id = if i < 5 { "node-a" } else { "node-b" }.into();
            event.duration_ms = u64::MAX;
        }
        batch
    };
    let (typed, transacted) = (vary(events(1..=8)), vary(events(101..=108)));
    assert_eq!(store.insert_new_events(&refs(&typed)).await, Some((1..=8).collect()));
    assert_eq!(store.try_insert_events(&refs(&transacted), OnStored::Skip).await.unwrap(), Some((101..=108).collect()));
    // What reading an event back gives: its trace decoded, its
    // duration capped at what a signed column holds.
    let read_back = |e: &Event<EncodedTrace>| Event {
        duration_ms: i64::MAX as u64,
        ..e.clone().map_trace(|t| hookplane_convert::decode_trace(t.as_bytes()).unwrap())
    };
    for (sent, twin) in typed.iter().zip(&transacted) {
        assert_eq!(store.get_event(&sent.organization_id, sent.id).await.unwrap(), read_back(sent));
        assert_eq!(store.get_event(&twin.organization_id, twin.id).await.unwrap(), read_back(twin));
    }
}

/// A fresh batch waits for the writer's turn, before its
/// typed connection starts a write that SQLite would make sleep.
#[tokio::test]
async fn a_fresh_batch_waits_for_the_writer_before_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let writing = store.write_tx().await.unwrap();
    let batch = events(1..=3);
    let insert = tokio::spawn({
        let store = store.clone();
        async move { store.insert_new_events(&refs(&batch)).await }
    });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!insert.is_finished());
    let typed = store.sqlite_events.as_ref().expect("SQLite has the typed connection");
    assert!(typed.is_idle(), "the typed connection waits, unused, while the writer writes");
    writing.commit().await.unwrap();
    assert_eq!(insert.await.unwrap(), Some(vec![1, 2, 3]));
}

/// An insert dropped while SQLite runs its statement keeps the writer's
/// turn until the statement finished: the next writer never meets it in
/// SQLite's busy handler.
#[tokio::test]
async fn a_fresh_batch_dropped_mid_statement_keeps_the_turn_until_it_finished() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    drop_an_insert_waiting_on_the_lock(&store, &dir, events(1..=3)).await;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&store.pool).await.unwrap();
    assert_eq!(stored, 3, "the statement ran, and had finished when the turn came back");
}

/// The writer's turn is not its pool's connection: a fresh batch stores
/// while that connection is taken, and never returns it to the pool,
/// which sqlx does with a round trip to SQLite's thread.
#[tokio::test]
async fn a_fresh_batch_takes_the_turn_not_the_writers_connection() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let held = store.writer.pool().acquire().await.unwrap();
    let batch = events(1..=3);
    let batch = refs(&batch);
    let stored = tokio::time::timeout(std::time::Duration::from_secs(5), store.insert_new_events(&batch)).await;
    assert_eq!(stored.expect("stored without the pool's connection"), Some(vec![1, 2, 3]));
    drop(held);
}

/// A typed connection that failed is opened again for the next batch.
#[tokio::test]
async fn the_typed_connection_is_opened_again_after_it_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let typed = store.sqlite_events.as_ref().expect("SQLite has the typed connection");
    let writer = store.writer.clone();
    let batch = events(1..=2);
    let batch_refs = refs(&batch);
    let broken = typed.insert_fresh(&writer, &[("INSERT INTO no_such_table VALUES (1)", &batch_refs[..])]).await;
    assert!(broken.is_err());
    assert!(!typed.is_open(), "a connection that failed is dropped");
    assert_eq!(store.insert_new_events(&refs(&batch)).await, Some(vec![1, 2]));
    assert!(typed.is_open());
    assert!(store.insert_new_events(&refs(&batch)).await.is_none(), "a batch sent again fails whole");
    assert!(typed.is_open(), "and that is the database's answer, not the connection's failure");
}

/// Fresh batches (the typed connection) and batches that need the
/// transaction (failed events, resends) and config writes, all at
/// once: every write succeeds and every event is stored once.
#[tokio::test]
async fn typed_batches_and_the_writer_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let writers = (0..6i64).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            for batch in 0..10 {
                let first = w * 1_000 + batch * 10 + 1;
                let mut events = events(first..=first + 9);
                if w % 2 == 1 {
                    events[3].status = EventStatus::Failed;
                }
                assert_eq!(store.insert_events(&events).await.unwrap().len(), 10);
                if w == 0 {
                    let now = hookplane_model::now();
                    let organization = hookplane_model::Organization {
                        id: format!("org_w{batch}"),
                        display_name: "Writers".into(),
                        plan: String::new(),
                        admin_emails: Vec::new(),
                        create_time: now,
                        update_time: now,
                        revision: 1,
                    };
                    store.create_organization(&organization, None).await.unwrap();
                    assert!(store.insert_events(&events).await.unwrap().is_empty(), "a resend");
                }
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&store.pool).await.unwrap();
    assert_eq!(stored, 6 * 10 * 10);
    let failed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE status = 'failed'").fetch_one(&store.pool).await.unwrap();
    assert_eq!(failed, 3 * 10);
}

/// Handlers finish out of the order of their ids; a batch is stored,
/// and its new ids returned, in id order either way.
#[tokio::test]
async fn batches_out_of_id_order_are_stored_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let mut shuffled = events(1..=20);
    shuffled.reverse();
    shuffled.swap(3, 11);
    assert_eq!(store.insert_events(&shuffled).await.unwrap(), (1..=20).collect::<Vec<_>>());
    let mut overlapping = events(15..=40);
    overlapping.reverse();
    assert_eq!(store.insert_events(&overlapping).await.unwrap(), (21..=40).collect::<Vec<_>>());
    let stored: Vec<i64> = sqlx::query_scalar("SELECT id FROM events").fetch_all(&store.pool).await.unwrap();
    assert_eq!(stored, (1..=40).collect::<Vec<_>>());
}

/// Writers queue on the one writer connection instead of failing on
/// SQLite's lock, and what one commits is read at once through the
/// read pool's other connections.
#[tokio::test]
async fn concurrent_writers_queue_and_their_commits_are_read_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let writers = (0..8i64).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            for batch in 0..5 {
                let first = w * 1_000 + batch * 10 + 1;
                let inserted = store.insert_events(&events(first..=first + 9)).await.unwrap();
                assert_eq!(inserted.len(), 10);
                let read = store.get_event("org_1", first + 9).await.unwrap();
                assert_eq!(read.trace.payload, format!("{{\"n\":{}}}", first + 9));
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&store.pool).await.unwrap();
    assert_eq!(stored, 8 * 5 * 10);
}

/// Every event goes into both indexes, so each must serve its listing:
/// a plan that filters instead of searching reads a whole
/// organization's events to list one connector's.
#[tokio::test]
async fn each_listing_searches_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    for (statement, index) in [(LIST_EVENTS, "events_org "), (LIST_CONNECTOR_EVENTS, "events_org_connector ")] {
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {statement}")))
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get::<String, _>("detail").unwrap())
            .collect();
        assert!(
            plan.iter().any(|step| step.starts_with("SEARCH events USING INDEX ") && step.contains(index)),
            "{statement}: {plan:?}"
        );
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "sorted by the index: {plan:?}");
    }
}
