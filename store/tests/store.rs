//! The store on both backends, with the same queries: a real SQLite file and a real
//! PostgreSQL server started in a temp dir (`sluice_tests::Postgres`). Migrations, counters,
//! the executor lease protocol and transaction rollback.
//!
//! Every case runs once per backend (`common::every_backend!`).

#[macro_use]
mod common;

use common::Db;
use serde_json::json;
use sluice_store::{
    now_ms, BuildDependency, ChangeRow, LeaseState, NewBuild, NewReport, TimerFire,
};

every_backend!(
    reopening_keeps_data_and_migrations_run_once,
    a_dropped_transaction_writes_nothing,
    claim_renew_complete_and_expire,
    an_unclaimed_request_is_canceled_at_once,
    changes_are_numbered_per_project_and_move_to_new_patchsets,
    a_waiting_build_is_requested_only_when_released,
    processes_opening_a_new_database_at_once_all_succeed,
    reports_queue_and_record_their_tries,
    a_paused_build_is_seen_once_and_resumed,
    semaphore_holders_are_per_tenant_and_released_by_holder,
    semaphores_are_taken_all_or_nothing_up_to_max,
    node_slots_are_taken_once_renewed_released_and_expire,
    approvals_and_commit_statuses_are_replaced_not_added,
    timer_fires_are_replaced_per_timer,
    builds_of_many_buildsets_come_in_one_statement,
);

fn new_build(uuid: &str, precedence: i64) -> NewBuild {
    NewBuild {
        uuid: uuid.into(),
        buildset_uuid: "bs".into(),
        item_uuid: "item".into(),
        tenant: "t".into(),
        pipeline: "check".into(),
        job_name: "job".into(),
        voting: true,
        attempt: 1,
        nodeset: String::new(),
        precedence,
        request: json!({"uuid": uuid}),
        dependencies: vec![],
        ready: true,
    }
}

async fn reopening_keeps_data_and_migrations_run_once(db: &Db) {
    {
        let store = db.open().await;
        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.next_id("x").await.unwrap(), 1);
        assert_eq!(tx.next_id("x").await.unwrap(), 2);
        tx.insert_event("git", "patchset-created", &json!({"a": 1}))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let store = db.open().await;
    let events = store.pending_events(10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload, json!({"a": 1}));
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.next_id("x").await.unwrap(), 3);
    tx.mark_event_processed(events[0].id).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.pending_events(10).await.unwrap().is_empty());
}

async fn a_dropped_transaction_writes_nothing(db: &Db) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_build(&new_build("b1", 200)).await.unwrap();
    drop(tx);
    assert!(store.build("b1").await.unwrap().is_none());
    assert!(store.open_requests(10).await.unwrap().is_empty());
}

async fn claim_renew_complete_and_expire(db: &Db) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_build(&new_build("low", 300)).await.unwrap();
    tx.insert_build(&new_build("high", 100)).await.unwrap();
    tx.commit().await.unwrap();

    // Precedence first.
    let open_requests = store.open_requests(10).await.unwrap();
    assert_eq!(open_requests[0].uuid, "high");

    // One claim wins.
    let until = now_ms() + 60_000;
    assert!(store.claim("high", "e1", until).await.unwrap().is_some());
    assert!(store.claim("high", "e2", until).await.unwrap().is_none());
    assert_eq!(
        store.renew("high", "e1", until).await.unwrap(),
        LeaseState::Held
    );
    assert_eq!(
        store.renew("high", "e2", until).await.unwrap(),
        LeaseState::Lost
    );

    // A cancel reaches the holder at its next renewal.
    let mut tx = store.begin().await.unwrap();
    tx.cancel_request("high").await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.renew("high", "e1", until).await.unwrap(),
        LeaseState::CancelRequested
    );
    assert!(store
        .complete("high", "e1", &json!({"result": "ABORTED"}))
        .await
        .unwrap());

    // An expired lease hands the request back without a result; the late result is dropped.
    assert!(store
        .claim("low", "e1", now_ms() - 1)
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.expire_leases(now_ms()).await.unwrap(), 1);
    assert!(!store
        .complete("low", "e1", &json!({"result": "SUCCESS"}))
        .await
        .unwrap());
    let finished = store.finished_requests().await.unwrap();
    assert_eq!(finished.len(), 2);
    let low = finished.iter().find(|r| r.uuid == "low").unwrap();
    assert_eq!(low.result, None);
    let high = finished.iter().find(|r| r.uuid == "high").unwrap();
    assert!(high.cancel);
    assert_eq!(high.result, Some(json!({"result": "ABORTED"})));

    let mut tx = store.begin().await.unwrap();
    tx.mark_request_processed("low").await.unwrap();
    tx.mark_request_processed("high").await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.finished_requests().await.unwrap().is_empty());
}

async fn an_unclaimed_request_is_canceled_at_once(db: &Db) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_build(&new_build("b", 200)).await.unwrap();
    tx.cancel_request("b").await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.open_requests(10).await.unwrap().is_empty());
    assert!(store
        .claim("b", "e1", now_ms() + 1000)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.finished_requests().await.unwrap()[0].state,
        "canceled"
    );
}

async fn changes_are_numbered_per_project_and_move_to_new_patchsets(db: &Db) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    let a1 = tx
        .upsert_change(
            "git",
            "org/a",
            "refs/heads/review/main/x",
            "main",
            "x",
            "s1",
            "m",
        )
        .await
        .unwrap();
    let b1 = tx
        .upsert_change(
            "git",
            "org/b",
            "refs/heads/review/main/x",
            "main",
            "x",
            "s2",
            "m",
        )
        .await
        .unwrap();
    let a2 = tx
        .upsert_change(
            "git",
            "org/a",
            "refs/heads/review/main/y",
            "main",
            "y",
            "s3",
            "m",
        )
        .await
        .unwrap();
    let a1again = tx
        .upsert_change(
            "git",
            "org/a",
            "refs/heads/review/main/x",
            "main",
            "x",
            "s4",
            "m2",
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!((a1.number, b1.number, a2.number), (1, 1, 2));
    assert_eq!(a1again.number, 1);
    let stored = store
        .change_by_ref("git", "org/a", "refs/heads/review/main/x")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.patchset.as_str(), stored.message.as_str()),
        ("s4", "m2")
    );
}

async fn a_waiting_build_is_requested_only_when_released(db: &Db) {
    let store = db.open().await;
    let mut waiting = new_build("child", 200);
    waiting.ready = false;
    waiting.dependencies = vec![BuildDependency {
        name: "parent".into(),
        soft: false,
    }];
    let mut tx = store.begin().await.unwrap();
    tx.insert_build(&waiting).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.open_requests(10).await.unwrap().is_empty());
    let row = store.build("child").await.unwrap().unwrap();
    assert_eq!(row.dependencies, waiting.dependencies);
    assert_eq!(row.pending_request, Some(json!({"uuid": "child"})));

    let mut tx = store.begin().await.unwrap();
    tx.release_build(
        &row,
        100,
        &json!({"uuid": "child", "parent_data": {"a": 1}}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let open_requests = store.open_requests(10).await.unwrap();
    assert_eq!(open_requests.len(), 1);
    assert_eq!(open_requests[0].precedence, 100);
    assert_eq!(open_requests[0].request["parent_data"], json!({"a": 1}));
    assert_eq!(
        store.build("child").await.unwrap().unwrap().pending_request,
        None
    );
}

async fn processes_opening_a_new_database_at_once_all_succeed(db: &Db) {
    let (a, b, c) = tokio::join!(db.open(), db.open(), db.open());
    for store in [a, b, c] {
        assert!(store.pending_events(1).await.unwrap().is_empty());
    }
}

async fn a_paused_build_is_seen_once_and_resumed(db: &Db) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_build(&new_build("p", 200)).await.unwrap();
    tx.commit().await.unwrap();
    let until = now_ms() + 60_000;
    assert!(store.claim("p", "e1", until).await.unwrap().is_some());
    assert!(!store.pause("p", "e2", &json!({"x": 1})).await.unwrap());
    assert!(store.pause("p", "e1", &json!({"x": 1})).await.unwrap());
    let paused = store.newly_paused().await.unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].data, json!({"x": 1}));
    let mut tx = store.begin().await.unwrap();
    tx.mark_build_paused("p", &paused[0].data).await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.newly_paused().await.unwrap().is_empty());
    let build = store.build("p").await.unwrap().unwrap();
    assert!(build.paused);
    assert_eq!(build.data, Some(json!({"x": 1})));
    assert!(!store.resume_wanted("p").await.unwrap());
    let mut tx = store.begin().await.unwrap();
    tx.resume_build("p").await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.resume_wanted("p").await.unwrap());
    assert!(!store.build("p").await.unwrap().unwrap().paused);
}

async fn semaphore_holders_are_per_tenant_and_released_by_holder(db: &Db) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.acquire_semaphore("t", "s", "b1").await.unwrap();
    tx.acquire_semaphore("t", "s", "b2").await.unwrap();
    tx.acquire_semaphore("other", "s", "b3").await.unwrap();
    assert_eq!(tx.semaphore_holders("t", "s").await.unwrap(), ["b1", "b2"]);
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.release_semaphores("b1").await.unwrap();
    assert_eq!(tx.semaphore_holders("t", "s").await.unwrap(), ["b2"]);
    assert_eq!(tx.semaphore_holders("other", "s").await.unwrap(), ["b3"]);
    tx.commit().await.unwrap();
}

async fn semaphores_are_taken_all_or_nothing_up_to_max(db: &Db) {
    let store = db.open().await;
    let sems = |list: &[(&str, u64)]| -> Vec<(String, u64)> {
        list.iter().map(|(n, m)| (n.to_string(), *m)).collect()
    };
    let mut tx = store.begin().await.unwrap();
    assert!(tx
        .take_semaphores("t", "b1", &sems(&[("a", 1)]))
        .await
        .unwrap());
    // Taken again by its holder: still one holder.
    assert!(tx
        .take_semaphores("t", "b1", &sems(&[("a", 1)]))
        .await
        .unwrap());
    // `a` is full: `b` is not taken either.
    assert!(!tx
        .take_semaphores("t", "b2", &sems(&[("b", 2), ("a", 1)]))
        .await
        .unwrap());
    assert!(tx.semaphore_holders("t", "b").await.unwrap().is_empty());
    tx.release_semaphores_named("t", "b1", &["a".to_string()])
        .await
        .unwrap();
    assert!(tx
        .take_semaphores("t", "b2", &sems(&[("b", 2), ("a", 1)]))
        .await
        .unwrap());
    assert_eq!(tx.semaphore_holders("t", "a").await.unwrap(), ["b2"]);
    assert_eq!(tx.semaphore_holders("t", "b").await.unwrap(), ["b2"]);
    tx.commit().await.unwrap();
    // Processes racing for the last place: exactly one gets it.
    let taker = |i: u32| async move {
        let store = db.open().await;
        let mut tx = store.begin().await.unwrap();
        let took = tx
            .take_semaphores("t", &format!("racer{i}"), &[("race".to_string(), 1)])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        took
    };
    let took = tokio::join!(taker(0), taker(1), taker(2), taker(3));
    let took = [took.0, took.1, took.2, took.3];
    assert_eq!(took.iter().filter(|t| **t).count(), 1, "{took:?}");
}

async fn node_slots_are_taken_once_renewed_released_and_expire(db: &Db) {
    let store = db.open().await;
    let now = now_ms();
    let mut tx = store.begin().await.unwrap();
    tx.lock_node("n", 0, "b1", now + 60_000).await.unwrap();
    tx.lock_node("n", 1, "b2", now - 1).await.unwrap();
    tx.commit().await.unwrap();
    // A taken slot is refused (the transaction is then dropped, as the provider does).
    let mut tx = store.begin().await.unwrap();
    assert!(tx.lock_node("n", 0, "b3", now + 60_000).await.is_err());
    drop(tx);
    assert_eq!(store.node_locks_in_use(now).await.unwrap(), 1);
    store.renew_node_locks("b2", now + 60_000).await.unwrap();
    assert_eq!(store.node_locks_in_use(now).await.unwrap(), 2);
    store.release_node_locks("b1").await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.expire_node_locks(now + 120_000).await.unwrap();
    assert!(tx.node_locks().await.unwrap().is_empty());
    tx.commit().await.unwrap();
}

async fn approvals_and_commit_statuses_are_replaced_not_added(db: &Db) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.approve_change("git", "org/a", 1, "sha1").await.unwrap();
    tx.approve_change("git", "org/a", 1, "sha2").await.unwrap();
    tx.set_commit_status("git", "org/a", "sha2", "t/check", "pending")
        .await
        .unwrap();
    tx.set_commit_status("git", "org/a", "sha2", "t/check", "success")
        .await
        .unwrap();
    tx.set_commit_status("git", "org/a", "sha2", "t/gate", "failure")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.approved_patchset("git", "org/a", 1).await.unwrap(),
        Some("sha2".into())
    );
    assert_eq!(
        store.approved_patchset("git", "org/a", 2).await.unwrap(),
        None
    );
    assert_eq!(
        store.commit_statuses("git", "org/a", "sha2").await.unwrap(),
        [
            ("t/check".to_string(), "success".to_string()),
            ("t/gate".to_string(), "failure".to_string())
        ]
    );
}

async fn reports_queue_and_record_their_tries(db: &Db) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    let report = |action: &str| NewReport {
        connection: "github".into(),
        item_uuid: "item".into(),
        action: action.into(),
        op: json!({"status": action}),
    };
    let first = tx.insert_report(&report("start")).await.unwrap();
    let second = tx.insert_report(&report("success")).await.unwrap();
    tx.put_change(&ChangeRow {
        connection: "github".into(),
        project: "org/a".into(),
        number: 42,
        refname: "refs/pull/42/head".into(),
        branch: "main".into(),
        topic: String::new(),
        patchset: "abc".into(),
        message: "m".into(),
        status: "open".into(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(first < second);
    store
        .update_report(first, "sent", 0, None, Some(&json!({"id": 7})))
        .await
        .unwrap();
    store
        .update_report(second, "pending", now_ms() + 1000, Some("HTTP 502"), None)
        .await
        .unwrap();
    let pending = store.pending_reports("github").await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].id,
            pending[0].attempts,
            pending[0].last_error.as_deref()
        ),
        (second, 1, Some("HTTP 502"))
    );
    let all = store.reports_of_item("item").await.unwrap();
    assert_eq!(all[0].result, Some(json!({"id": 7})));
    assert_eq!(all[1].op, json!({"status": "success"}));
    assert_eq!(
        (all[1].state.as_str(), all[1].result.as_ref()),
        ("pending", None)
    );

    // A permanent refusal leaves the queue but stays readable with GitHub's (long) message;
    // another connection's reports are not this one's.
    let long_error = format!("HTTP 422: {}", "Validation Failed; ".repeat(200));
    store
        .update_report(second, "failed", now_ms(), Some(&long_error), None)
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    let other = tx
        .insert_report(&NewReport {
            connection: "github-enterprise".into(),
            ..report("start")
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(store.pending_reports("github").await.unwrap().is_empty());
    let pending = store.pending_reports("github-enterprise").await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|r| (r.id, r.attempts))
            .collect::<Vec<_>>(),
        [(other, 0)]
    );
    let all = store.reports_of_item("item").await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        (
            all[1].state.as_str(),
            all[1].attempts,
            all[1].last_error.as_deref()
        ),
        ("failed", 2, Some(long_error.as_str()))
    );
    let change = store
        .change_by_ref("github", "org/a", "refs/pull/42/head")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((change.number, change.patchset.as_str()), (42, "abc"));
}

async fn timer_fires_are_replaced_per_timer(db: &Db) {
    let store = db.open().await;
    let fire = |branch: &str, fired_at: i64| TimerFire {
        tenant: "t".into(),
        pipeline: "periodic".into(),
        timespec: "0 * * * *".into(),
        project: "localhost/org/a".into(),
        branch: branch.into(),
        fired_at,
    };
    let mut tx = store.begin().await.unwrap();
    tx.set_timer_fire(&fire("main", 1000)).await.unwrap();
    tx.set_timer_fire(&fire("main", 2000)).await.unwrap();
    tx.set_timer_fire(&fire("stable", 1500)).await.unwrap();
    tx.commit().await.unwrap();
    let mut fires = store.timer_fires().await.unwrap();
    fires.sort_by(|a, b| a.branch.cmp(&b.branch));
    assert_eq!(fires, [fire("main", 2000), fire("stable", 1500)]);
}

async fn builds_of_many_buildsets_come_in_one_statement(db: &Db) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    for (uuid, buildset) in [("b1", "bs1"), ("b2", "bs2"), ("b3", "bs1"), ("b4", "bs3")] {
        tx.insert_build(&NewBuild {
            buildset_uuid: buildset.into(),
            ..new_build(uuid, 200)
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let before = store.statements();
    let builds = store
        .builds_of_buildsets(&["bs1".to_string(), "bs3".to_string(), "nope".to_string()])
        .await
        .unwrap();
    assert_eq!(store.statements() - before, 1);
    let uuids: Vec<&str> = builds.iter().map(|b| b.uuid.as_str()).collect();
    assert_eq!(uuids, ["b1", "b3", "b4"]);
    assert!(store.builds_of_buildsets(&[]).await.unwrap().is_empty());
    // Clones count into the same total.
    let clone = store.clone();
    clone.build("b1").await.unwrap();
    assert_eq!(store.statements() - before, 2);
}
