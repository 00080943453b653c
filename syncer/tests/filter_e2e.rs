//! A per-type cache filter is maintained through events: an entity that stops matching leaves the
//! cache, one that starts matching is fetched.

mod support;

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_enter_and_leave_the_cache_with_the_filter() {
    let sim = start_sim(200).await;
    let (_dir, db) = temp_db();
    let text = format!(
        "{}[types.Shot]\nfields = [\"code\", \"sg_status_list\"]\nfilter = [[\"sg_status_list\", \"is_not\", \"omt\"]]\n",
        config_text(&sim.base_url(), &db, &[], "")
    );
    let syncer = RunningSyncer::start(load_config(&text)).await;
    syncer.wait_ready(Duration::from_secs(60)).await;
    let store = open_store(&db);
    let actor = sim.site().script_actor("cache").expect("actor");
    let site = sim.site().clone();
    let live: Vec<i64> = site
        .truth(Some(&["Shot".to_owned()]))
        .iter()
        .filter(|r| !r.retired)
        .map(|r| r.id)
        .take(3)
        .collect();
    let cached = |id: i64| {
        let store = store.clone();
        async move { store.get("Shot", id).await.expect("get").is_some() }
    };
    let set = |id: i64, status: &str| {
        site.update(
            &actor,
            "Shot",
            id,
            serde_json::json!({"sg_status_list": status})
                .as_object()
                .expect("obj"),
        )
        .expect("update");
    };
    set(live[0], "omt");
    set(live[1], "omt");
    wait_for(
        "omitted shots to leave the cache",
        Duration::from_secs(10),
        || async { !cached(live[0]).await && !cached(live[1]).await },
    )
    .await;
    assert!(cached(live[2]).await, "a matching shot stays");
    set(live[0], "ip");
    wait_for(
        "a shot that matches again to be fetched",
        Duration::from_secs(10),
        || async { cached(live[0]).await },
    )
    .await;
    // A change of another field on a shot outside the filter does not bring it in.
    site.update(
        &actor,
        "Shot",
        live[1],
        serde_json::json!({"code": "still omitted"})
            .as_object()
            .expect("obj"),
    )
    .expect("update");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!cached(live[1]).await);
    // The cache holds exactly the matching shots.
    let truth = site.truth(Some(&["Shot".to_owned()]));
    let want: Vec<i64> = truth
        .iter()
        .filter(|r| !matches!(r.fields.get("sg_status_list"), Some(shotgun_cache_core::model::Value::Text(s)) if s == "omt"))
        .map(|r| r.id)
        .collect();
    let have: Vec<i64> = store
        .ids("Shot", 0, 100_000)
        .await
        .expect("ids")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(have, want);
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_field_of_a_cached_type_is_backfilled_after_a_schema_event() {
    let sim = start_sim(100).await;
    let (_dir, db) = temp_db();
    let syncer = RunningSyncer::start(load_config(&config_text(
        &sim.base_url(),
        &db,
        &["Shot"],
        "",
    )))
    .await;
    syncer.wait_ready(Duration::from_secs(60)).await;
    let actor = sim.site().script_actor("cache").expect("actor");
    sim.site()
        .schema_add_field(
            &actor,
            "Shot",
            "sg_vendor",
            shotgun_cache_core::model::DataType::Text,
            "Vendor",
            &serde_json::json!({}),
        )
        .expect("add a field");
    let id = sim
        .site()
        .truth(Some(&["Shot".to_owned()]))
        .iter()
        .find(|r| !r.retired)
        .map(|r| r.id)
        .expect("a live shot");
    sim.site()
        .update(
            &actor,
            "Shot",
            id,
            serde_json::json!({"sg_vendor": "ACME"})
                .as_object()
                .expect("obj"),
        )
        .expect("update");
    let store = open_store(&db);
    wait_for(
        "the new field to be cached and backfilled",
        Duration::from_secs(30),
        || {
            let store = store.clone();
            async move {
                store
                    .get("Shot", id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|e| e.fields.get("sg_vendor").cloned())
                    == Some(shotgun_cache_core::model::Value::Text("ACME".into()))
            }
        },
    )
    .await;
    wait_equal(store.as_ref(), &sim, &["Shot"], Duration::from_secs(20)).await;
    syncer.stop().await;
}
