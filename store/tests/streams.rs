//! Live-log routing in the store, on SQLite and PostgreSQL: a build's stage as streams see it
//! (waiting, claimed with the executor's finger address, finished), and zone gateways.

#[macro_use]
mod common;

use common::Db;
use serde_json::json;
use sluice_store::{now_ms, BuildStage, GatewayRow, NewBuild, WorkerInfo};

every_backend!(
    a_claim_records_where_the_log_is_streamed,
    gateways_register_refresh_expire_and_leave,
);

fn new_build(uuid: &str, ready: bool) -> NewBuild {
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
        precedence: 200,
        request: json!({"uuid": uuid}),
        dependencies: vec![],
        ready,
    }
}

async fn a_claim_records_where_the_log_is_streamed(db: &Db) {
    let store = db.open().await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_build(&new_build("b1", true)).await.unwrap();
    tx.insert_build(&new_build("b2", true)).await.unwrap();
    tx.commit().await.unwrap();
    let waiting = BuildStage::Waiting { tenant: "t".into() };
    assert_eq!(store.build_stage("b1").await.unwrap(), waiting);
    assert_eq!(
        store.build_stage("nope").await.unwrap(),
        BuildStage::Unknown
    );

    let worker = WorkerInfo {
        hostname: "ze01".into(),
        finger_port: 7900,
        zone: Some("east".into()),
    };
    let lease = now_ms() + 30_000;
    assert!(store
        .claim_streaming("b1", "ze01:p:0", lease, &worker)
        .await
        .unwrap()
        .is_some());
    // Claimed once only, like `claim`.
    assert!(store
        .claim_streaming("b1", "ze02:p:0", lease, &worker)
        .await
        .unwrap()
        .is_none());
    let claimed = |running| BuildStage::Claimed {
        tenant: "t".into(),
        executor: "ze01:p:0".into(),
        worker: Some(worker.clone()),
        running,
    };
    assert_eq!(store.build_stage("b1").await.unwrap(), claimed(true));
    store
        .complete("b1", "ze01:p:0", &json!({"result": "SUCCESS"}))
        .await
        .unwrap();
    assert_eq!(store.build_stage("b1").await.unwrap(), claimed(false));
    // A plain claim records no stream.
    store.claim("b2", "ze03:p:0", lease).await.unwrap();
    assert!(matches!(
        store.build_stage("b2").await.unwrap(),
        BuildStage::Claimed {
            worker: None,
            running: true,
            ..
        }
    ));
}

async fn gateways_register_refresh_expire_and_leave(db: &Db) {
    let store = db.open().await;
    let gw = |id: &str, zone: &str| GatewayRow {
        id: id.into(),
        host: format!("{id}.example"),
        port: 79,
        zone: zone.into(),
    };
    store
        .register_gateway(&gw("a", "east"), 1_000)
        .await
        .unwrap();
    store
        .register_gateway(&gw("b", "east"), 5_000)
        .await
        .unwrap();
    store
        .register_gateway(&gw("c", "west"), 5_000)
        .await
        .unwrap();
    let ids = |rows: Vec<GatewayRow>| rows.into_iter().map(|g| g.id).collect::<Vec<_>>();
    assert_eq!(ids(store.gateways("east", 0).await.unwrap()), ["a", "b"]);
    // A stale registration is left out; refreshing brings it back.
    assert_eq!(ids(store.gateways("east", 2_000).await.unwrap()), ["b"]);
    store
        .register_gateway(&gw("a", "east"), 6_000)
        .await
        .unwrap();
    assert_eq!(
        store.gateways("east", 2_000).await.unwrap()[0],
        gw("a", "east")
    );
    store.remove_gateway("a").await.unwrap();
    assert_eq!(ids(store.gateways("east", 0).await.unwrap()), ["b"]);
}
