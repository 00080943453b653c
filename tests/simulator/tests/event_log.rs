//! The event log each mutation produces, read back over REST exactly as the syncer polls it, compared
//! with the shapes of protocol §5.3 and the sequences of §5.4.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Harness, kinds, small, start};
use serde_json::{Value as Json, json};
use shotgun_sim::SimConfig;

fn meta(e: &Json) -> &Json {
    &e["attributes"]["meta"]
}

fn keys(v: &Json) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

async fn shot_with_project(h: &Harness) -> (i64, i64) {
    let (_, b) = h
        .search("shots", json!({"fields": ["project"], "page": {"size": 1}}))
        .await;
    let shot = b["data"][0]["id"].as_i64().unwrap();
    let project = b["data"][0]["relationships"]["project"]["data"]["id"]
        .as_i64()
        .unwrap();
    (shot, project)
}

/// create: `_New` (meta without values), then one in_create `_Change` per populated field including
/// server defaults, the reverse link logged on the other entity, and no rows for project/created_*/updated_*.
#[tokio::test]
async fn create_logs_new_then_in_create_changes() {
    let h = small().await;
    let (shot, project) = shot_with_project(&h).await;
    let start = h.sim.site().last_event_id();
    let created = h
        .control(
            "/_sim/create",
            json!({"entity_type": "Task", "fields": {"content": "Comp", "entity": {"type": "Shot", "id": shot}, "project": {"type": "Project", "id": project}}}),
        )
        .await;
    let task = created["id"].as_i64().unwrap();
    let ev = h.events_after(start).await;
    let k = kinds(&ev);
    assert_eq!(k[0], ("Shotgun_Task_New".into(), None));
    assert_eq!(keys(meta(&ev[0])), vec!["entity_id", "entity_type", "type"]);
    assert_eq!(
        *meta(&ev[0]),
        json!({"type": "new_entity", "entity_type": "Task", "entity_id": task})
    );
    let attrs: Vec<&str> = k.iter().filter_map(|(_, a)| a.as_deref()).collect();
    for expected in ["content", "entity", "sg_status_list", "tasks"] {
        assert!(
            attrs.contains(&expected),
            "missing a row for {expected}: {k:?}"
        );
    }
    for never in [
        "project",
        "created_at",
        "created_by",
        "updated_at",
        "updated_by",
        "cached_display_name",
        "id",
    ] {
        assert!(
            !attrs.contains(&never),
            "{never} must not be logged on create: {k:?}"
        );
    }
    for e in &ev[1..] {
        assert_eq!(meta(e)["in_create"], true, "{e}");
        assert_eq!(meta(e)["type"], "attribute_change");
    }
    let status = ev
        .iter()
        .find(|e| e["attributes"]["attribute_name"] == "sg_status_list")
        .unwrap();
    assert_eq!(meta(status)["old_value"], Json::Null);
    assert_eq!(meta(status)["new_value"], "wtg", "server default logged");
    assert_eq!(meta(status)["field_data_type"], "status_list");
    let link = ev
        .iter()
        .find(|e| e["attributes"]["attribute_name"] == "entity")
        .unwrap();
    let nv = &meta(link)["new_value"];
    assert_eq!(
        keys(nv),
        vec!["id", "name", "status", "type", "uuid", "valid"]
    );
    assert_eq!(nv["id"], shot);
    assert_eq!(nv["valid"], "valid");
    let reverse = ev
        .iter()
        .find(|e| e["attributes"]["event_type"] == "Shotgun_Shot_Change")
        .unwrap();
    assert_eq!(reverse["attributes"]["attribute_name"], "tasks");
    assert_eq!(meta(reverse)["added"][0]["id"], task);
    assert_eq!(meta(reverse)["removed"], json!([]));
    assert!(meta(reverse).get("old_value").is_none() && meta(reverse).get("new_value").is_none());
    assert_eq!(meta(reverse)["actual_attribute_changed"], "Task.entity");
    assert_eq!(reverse["relationships"]["entity"]["data"]["id"], shot);
    // Every row names the script and the project; script writes have no session uuid.
    for e in &ev {
        assert_eq!(e["relationships"]["user"]["data"]["type"], "ApiUser");
        assert_eq!(e["relationships"]["user"]["data"]["name"], "cache");
        assert!(e["attributes"]["session_uuid"].is_null());
        assert_eq!(e["attributes"]["created_at"].as_str().unwrap().len(), 20);
    }
    assert_eq!(ev[0]["relationships"]["project"]["data"]["id"], project);

    // The log is searchable by event_type, entity and created_at (and not by meta).
    let (s, b) = h.search("event_log_entries", json!({"filters": [["event_type", "is", "Shotgun_Task_New"], ["id", "greater_than", start]]})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"].as_array().unwrap().len(), 1);
    let (_, b) = h
        .search(
            "event_log_entries",
            json!({"filters": [["entity", "is", {"type": "Task", "id": task}]]}),
        )
        .await;
    assert_eq!(
        b["data"].as_array().unwrap().len(),
        ev.len() - 1,
        "every row but the Shot's reverse row"
    );
    let created = ev[0]["attributes"]["created_at"].as_str().unwrap();
    let (_, b) = h
        .search(
            "event_log_entries",
            json!({"filters": [["created_at", "less_than", created]], "fields": ["id"]}),
        )
        .await;
    assert!(
        b["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["id"].as_i64().unwrap() <= start)
    );
}

/// update: one `_Change` per changed field with old/new and no `in_create`; unchanged fields and
/// `updated_at` leave no row; both ends of a re-pointed link are logged.
#[tokio::test]
async fn update_logs_each_changed_field_and_both_link_ends() {
    let h = small().await;
    let (_, b) = h.search("tasks", json!({"filters": [["entity", "type_is", "Shot"]], "fields": ["sg_status_list", "entity", "content"], "page": {"size": 1}})).await;
    let t = &b["data"][0];
    let task = t["id"].as_i64().unwrap();
    let old_status = t["attributes"]["sg_status_list"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_status = if old_status == "ip" { "fin" } else { "ip" };
    let old_shot = t["relationships"]["entity"]["data"]["id"].as_i64().unwrap();
    let (_, b) = h.search("shots", json!({"filters": [["id", "is_not", old_shot]], "page": {"size": 1}, "fields": ["code"]})).await;
    let new_shot = b["data"][0]["id"].as_i64().unwrap();

    let start = h.sim.site().last_event_id();
    let content = t["attributes"]["content"].clone();
    h.control(
        "/_sim/update",
        json!({"entity_type": "Task", "id": task, "fields": {"sg_status_list": new_status, "content": content, "entity": {"type": "Shot", "id": new_shot}}}),
    )
    .await;
    let ev = h.events_after(start).await;
    assert_eq!(
        kinds(&ev),
        vec![
            ("Shotgun_Task_Change".into(), Some("sg_status_list".into())),
            ("Shotgun_Task_Change".into(), Some("entity".into())),
            ("Shotgun_Shot_Change".into(), Some("tasks".into())),
            ("Shotgun_Shot_Change".into(), Some("tasks".into())),
        ]
    );
    let m = meta(&ev[0]);
    assert_eq!(m["old_value"], old_status);
    assert_eq!(m["new_value"], new_status);
    assert!(m.get("in_create").is_none(), "no in_create on updates: {m}");
    assert_eq!(meta(&ev[1])["old_value"]["id"], old_shot);
    assert_eq!(meta(&ev[1])["new_value"]["id"], new_shot);
    assert_eq!(ev[2]["relationships"]["entity"]["data"]["id"], old_shot);
    assert_eq!(meta(&ev[2])["removed"][0]["id"], task);
    assert_eq!(ev[3]["relationships"]["entity"]["data"]["id"], new_shot);
    assert_eq!(meta(&ev[3])["added"][0]["id"], task);
    // The same value again: no row.
    let start = h.sim.site().last_event_id();
    h.control(
        "/_sim/update",
        json!({"entity_type": "Task", "id": task, "fields": {"sg_status_list": new_status}}),
    )
    .await;
    assert!(h.events_after(start).await.is_empty());
}

/// multi_entity changes are logged as `added`/`removed` only, on both sides.
#[tokio::test]
async fn multi_entity_changes_are_added_removed() {
    let h = small().await;
    let (_, b) = h
        .search(
            "playlists",
            json!({"fields": ["versions"], "page": {"size": 1}}),
        )
        .await;
    let pl = b["data"][0]["id"].as_i64().unwrap();
    let (_, b) = h.search("versions", json!({"filters": [["playlists", "is_not", {"type": "Playlist", "id": pl}]], "fields": ["code"], "page": {"size": 2}})).await;
    let v1 = b["data"][0]["id"].as_i64().unwrap();
    let v2 = b["data"][1]["id"].as_i64().unwrap();
    let start = h.sim.site().last_event_id();
    h.control("/_sim/link", json!({"entity_type": "Playlist", "id": pl, "field": "versions", "add": [{"type": "Version", "id": v1}, {"type": "Version", "id": v2}]})).await;
    h.control("/_sim/link", json!({"entity_type": "Playlist", "id": pl, "field": "versions", "remove": [{"type": "Version", "id": v1}]})).await;
    let ev = h.events_after(start).await;
    let k = kinds(&ev);
    assert_eq!(
        k[0],
        ("Shotgun_Playlist_Change".into(), Some("versions".into()))
    );
    let m = meta(&ev[0]);
    assert_eq!(m["field_data_type"], "multi_entity");
    assert_eq!(m["added"].as_array().unwrap().len(), 2);
    assert_eq!(m["removed"], json!([]));
    assert!(m.get("old_value").is_none() && m.get("new_value").is_none());
    assert_eq!(
        keys(&m["added"][0]),
        vec!["id", "name", "status", "type", "uuid"]
    );
    let reverse: Vec<&Json> = ev
        .iter()
        .filter(|e| e["attributes"]["event_type"] == "Shotgun_Version_Change")
        .collect();
    assert_eq!(reverse.len(), 3, "{k:?}");
    assert_eq!(meta(reverse[0])["attribute_name"], "playlists");
    assert_eq!(meta(reverse[0])["added"][0]["id"], pl);
    let last = ev.last().unwrap();
    assert_eq!(meta(last)["removed"][0]["id"], pl);
    assert_eq!(last["relationships"]["entity"]["data"]["id"], v1);
    let removal = ev
        .iter()
        .find(|e| {
            e["attributes"]["event_type"] == "Shotgun_Playlist_Change"
                && meta(e)["removed"].as_array().is_some_and(|r| !r.is_empty())
        })
        .unwrap();
    assert_eq!(meta(removal)["removed"][0]["id"], v1);
    assert_eq!(meta(removal)["added"], json!([]));
}

/// delete: `_Change` on retirement_date then `_Retirement`; every earlier event of the entity then reads
/// `entity: null` and cannot be found by `entity is`. revive: retirement_date back to null, then `_Revival`.
#[tokio::test]
async fn delete_and_revive() {
    let h = small().await;
    let (shot, _) = shot_with_project(&h).await;
    let start = h.sim.site().last_event_id();
    let v = h.control("/_sim/create", json!({"entity_type": "Version", "fields": {"code": "v_del", "entity": {"type": "Shot", "id": shot}}})).await["id"]
        .as_i64()
        .unwrap();
    h.control(
        "/_sim/update",
        json!({"entity_type": "Version", "id": v, "fields": {"description": "before delete"}}),
    )
    .await;
    let mid = h.sim.site().last_event_id();
    h.control("/_sim/delete", json!({"entity_type": "Version", "id": v}))
        .await;
    let ev = h.events_after(mid).await;
    assert_eq!(
        kinds(&ev),
        vec![
            (
                "Shotgun_Version_Change".into(),
                Some("retirement_date".into())
            ),
            ("Shotgun_Version_Retirement".into(), None)
        ]
    );
    let rd = meta(&ev[0]);
    assert_eq!(rd["old_value"], Json::Null);
    let date = rd["new_value"].as_str().unwrap();
    assert!(
        date.ends_with(" UTC") && date.len() == 23,
        "meta date form: {date}"
    );
    let r = meta(&ev[1]);
    assert_eq!(r["type"], "entity_retirement");
    assert_eq!(r["entity_type"], "Version");
    assert_eq!(r["entity_id"], v);
    assert_eq!(r["class_name"], "Version");
    assert_eq!(r["display_name"], "v_del");
    assert_eq!(r["retirement_date"], date);

    let all = h.events_after(start).await;
    let of_v: Vec<&Json> = all
        .iter()
        .filter(|e| meta(e)["entity_type"] == "Version" && meta(e)["entity_id"] == v)
        .collect();
    assert!(of_v.len() >= 4);
    for e in &of_v {
        assert!(
            e["relationships"]["entity"]["data"].is_null(),
            "entity reads null after retirement: {e}"
        );
    }
    let (s, b) = h
        .search(
            "event_log_entries",
            json!({"filters": [["entity", "is", {"type": "Version", "id": v}]]}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["data"].as_array().unwrap().len(), 0);

    let mid = h.sim.site().last_event_id();
    h.control("/_sim/revive", json!({"entity_type": "Version", "id": v}))
        .await;
    let ev = h.events_after(mid).await;
    assert_eq!(
        kinds(&ev),
        vec![
            (
                "Shotgun_Version_Change".into(),
                Some("retirement_date".into())
            ),
            ("Shotgun_Version_Revival".into(), None)
        ]
    );
    assert_eq!(meta(&ev[0])["old_value"], date);
    assert_eq!(meta(&ev[0])["new_value"], Json::Null);
    assert_eq!(meta(&ev[1])["type"], "entity_revival");
    let (_, b) = h
        .search(
            "event_log_entries",
            json!({"filters": [["entity", "is", {"type": "Version", "id": v}]]}),
        )
        .await;
    assert!(
        b["data"].as_array().unwrap().len() >= 6,
        "links come back with the revival"
    );
}

/// Deleting a Shot retires its Versions and Tasks too (unlogged by default); with cascade events on,
/// reviving the Shot logs the children's rows before the Shot's `_Revival`.
#[tokio::test]
async fn cascaded_retirement_and_revival_order() {
    let h = start(SimConfig {
        scale: 300,
        seed: 5,
        cascade_events: true,
        ..SimConfig::default()
    })
    .await;
    let (_, b) = h.search("versions", json!({"filters": [["entity", "type_is", "Shot"]], "fields": ["entity"], "page": {"size": 1}})).await;
    let shot = b["data"][0]["relationships"]["entity"]["data"]["id"]
        .as_i64()
        .unwrap();
    let (_, b) = h.search("versions", json!({"filters": [["entity", "is", {"type": "Shot", "id": shot}]], "fields": ["code"], "page": {"size": 500}})).await;
    let versions = b["data"].as_array().unwrap().len();
    assert!(versions >= 1);
    let start = h.sim.site().last_event_id();
    h.control("/_sim/delete", json!({"entity_type": "Shot", "id": shot}))
        .await;
    // The retired shot's link is dropped at read time, so find its versions by id.
    let ids: Vec<i64> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    let (_, b) = h.search("versions", json!({"filters": [["id", "in", ids]], "options": {"return_only": "retired"}, "fields": ["entity"], "page": {"size": 500}})).await;
    assert_eq!(
        b["data"].as_array().unwrap().len(),
        versions,
        "versions retired with their shot"
    );
    assert!(b["data"][0]["relationships"]["entity"]["data"].is_null());
    let ev = h.events_after(start).await;
    assert_eq!(
        kinds(&ev)[..2],
        [
            ("Shotgun_Shot_Change".into(), Some("retirement_date".into())),
            ("Shotgun_Shot_Retirement".into(), None)
        ]
    );
    assert!(
        ev.iter()
            .any(|e| e["attributes"]["event_type"] == "Shotgun_Version_Retirement")
    );

    let mid = h.sim.site().last_event_id();
    h.control("/_sim/revive", json!({"entity_type": "Shot", "id": shot}))
        .await;
    let ev = h.events_after(mid).await;
    let k = kinds(&ev);
    assert_eq!(
        k.first().unwrap(),
        &("Shotgun_Shot_Change".into(), Some("retirement_date".into()))
    );
    assert_eq!(k.last().unwrap(), &("Shotgun_Shot_Revival".into(), None));
    let child_revival = k
        .iter()
        .position(|(t, _)| t == "Shotgun_Version_Revival" || t == "Shotgun_Task_Revival")
        .unwrap();
    assert!(
        child_revival < k.len() - 1,
        "children's rows precede the parent's revival: {k:?}"
    );
    let (_, b) = h.search("versions", json!({"filters": [["entity", "is", {"type": "Shot", "id": shot}]], "page": {"size": 500}})).await;
    assert_eq!(b["data"].as_array().unwrap().len(), versions);

    // Default: cascaded retirements leave no rows of their own.
    let h = small().await;
    let (_, b) = h.search("versions", json!({"filters": [["entity", "type_is", "Shot"]], "fields": ["entity"], "page": {"size": 1}})).await;
    let shot = b["data"][0]["relationships"]["entity"]["data"]["id"]
        .as_i64()
        .unwrap();
    let start = h.sim.site().last_event_id();
    h.control("/_sim/delete", json!({"entity_type": "Shot", "id": shot}))
        .await;
    let k = kinds(&h.events_after(start).await);
    assert_eq!(
        k,
        vec![
            ("Shotgun_Shot_Change".into(), Some("retirement_date".into())),
            ("Shotgun_Shot_Retirement".into(), None)
        ]
    );
}

/// A script logged in with `scope=sudo_as_login:<login>` writes as that user: events name the user and
/// carry `meta.sudo_actual_user`; a plain `sudo_as_login` form field is ignored; an unknown login is 400.
#[tokio::test]
async fn sudo_writes_are_logged_as_the_user() {
    let h = small().await;
    let (_, b) = h.search("human_users", json!({"filters": [["sg_status_list", "is", "act"]], "fields": ["login", "name"], "page": {"size": 1}})).await;
    let user = b["data"][0]["id"].as_i64().unwrap();
    let login = b["data"][0]["attributes"]["login"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = h.url("/api/v1/auth/access_token");
    let form = |extra: (&'static str, String)| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", "cache".to_owned()),
            ("client_secret", "secret".to_owned()),
            extra,
        ]
    };
    let r = h
        .http
        .post(&auth)
        .form(&form(("scope", format!("sudo_as_login:{login}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tok: Json = r.json().await.unwrap();
    let sudo_token = tok["access_token"].as_str().unwrap().to_owned();
    let r = h
        .http
        .post(&auth)
        .form(&form(("scope", "sudo_as_login:nobody".to_owned())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: Json = r.json().await.unwrap();
    assert_eq!(b["errors"][0]["code"], 102);

    let (shot, _) = shot_with_project(&h).await;
    let start = h.sim.site().last_event_id();
    let r = h
        .http
        .put(h.url(&format!("/api/v1/entity/shots/{shot}")))
        .bearer_auth(&sudo_token)
        .json(&json!({"description": "as a user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A plain sudo_as_login field does nothing.
    let r = h
        .http
        .post(&auth)
        .form(&form(("sudo_as_login", login.clone())))
        .send()
        .await
        .unwrap();
    let plain: Json = r.json().await.unwrap();
    let r = h
        .http
        .put(h.url(&format!("/api/v1/entity/shots/{shot}")))
        .bearer_auth(plain["access_token"].as_str().unwrap())
        .json(&json!({"description": "as the script"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ev = h.events_after(start).await;
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0]["relationships"]["user"]["data"]["type"], "HumanUser");
    assert_eq!(ev[0]["relationships"]["user"]["data"]["id"], user);
    assert_eq!(meta(&ev[0])["sudo_actual_user"]["type"], "ApiUser");
    assert_eq!(meta(&ev[0])["sudo_actual_user"]["name"], "cache");
    assert_eq!(ev[1]["relationships"]["user"]["data"]["type"], "ApiUser");
    assert!(meta(&ev[1]).get("sudo_actual_user").is_none());
}

/// A thumbnail: a `_Change` with the attachment id and `is_transient: true`, then the final row.
#[tokio::test]
async fn image_changes_log_attachment_ids() {
    let h = small().await;
    let (shot, _) = shot_with_project(&h).await;
    let start = h.sim.site().last_event_id();
    let a = h
        .control(
            "/_sim/image",
            json!({"entity_type": "Shot", "id": shot, "field": "image", "finish": false}),
        )
        .await["attachment_id"]
        .as_i64()
        .unwrap();
    let (_, b) = h
        .get(&format!("/api/v1/entity/shots/{shot}?fields=image"))
        .await;
    assert!(
        b["data"]["attributes"]["image"]
            .as_str()
            .unwrap()
            .contains("thumbnail_pending"),
        "{b}"
    );
    h.control(
        "/_sim/image",
        json!({"entity_type": "Shot", "id": shot, "field": "image", "finish_only": true}),
    )
    .await;
    let ev = h.events_after(start).await;
    assert_eq!(ev.len(), 2);
    assert_eq!(
        *meta(&ev[0]),
        json!({"type": "attribute_change", "attribute_name": "image", "entity_type": "Shot", "entity_id": shot,
        "field_data_type": "image", "old_value": null, "new_value": a, "is_transient": true})
    );
    assert_eq!(meta(&ev[1])["is_transient"], false);
    assert_eq!(meta(&ev[1])["new_value"], a);
    let (_, b) = h
        .get(&format!("/api/v1/entity/shots/{shot}?fields=image"))
        .await;
    let url = b["data"]["attributes"]["image"].as_str().unwrap();
    assert!(url.contains("X-Amz-Expires=900"), "signed URL: {url}");
}

/// A script with `generate_event_log_entries` off writes without leaving events; a failed batch burns its
/// reserved ids (a permanent gap); schema edits log `Shotgun_DisplayColumn_*`.
#[tokio::test]
async fn silent_scripts_failed_batches_and_schema_edits() {
    let h = small().await;
    let (shot, _) = shot_with_project(&h).await;
    let start = h.sim.site().last_event_id();
    h.control("/_sim/update", json!({"as": "silent", "entity_type": "Shot", "id": shot, "fields": {"description": "quiet"}})).await;
    // The silent script over REST too.
    let silent = common::login(&h.http, &h.base, "silent", "silent-secret").await;
    let r = h
        .http
        .put(h.url(&format!("/api/v1/entity/shots/{shot}")))
        .bearer_auth(&silent)
        .json(&json!({"description": "quieter"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(h.events_after(start).await.is_empty());
    assert_eq!(h.sim.site().last_event_id(), start, "no ids reserved");
    // Switch the main script off and on.
    let r = h
        .http
        .put(h.url("/_sim/scripts/cache/events"))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    h.control(
        "/_sim/update",
        json!({"entity_type": "Shot", "id": shot, "fields": {"description": "off"}}),
    )
    .await;
    assert!(h.events_after(start).await.is_empty());
    h.http
        .put(h.url("/_sim/scripts/cache/events"))
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();

    let r = h
        .http
        .post(h.url("/_sim/batch"))
        .json(&json!({"ops": [{"op": "update", "entity_type": "Shot", "id": shot, "fields": {"description": "in batch"}},
                              {"op": "update", "entity_type": "Shot", "id": shot, "fields": {"sg_status_list": "bogus"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let burned = h.sim.site().last_event_id();
    assert_eq!(burned, start + 1, "the rolled-back update reserved one id");
    let (_, b) = h
        .get(&format!("/api/v1/entity/shots/{shot}?fields=description"))
        .await;
    assert_eq!(
        b["data"]["attributes"]["description"], "off",
        "batch rolled back"
    );

    h.control("/_sim/schema/fields", json!({"entity_type": "Shot", "field": "sg_rating", "data_type": "list", "properties": {"valid_values": ["a", "b"]}})).await;
    let r = h
        .http
        .put(h.url("/_sim/schema/fields/Shot/sg_rating/valid_values"))
        .json(&json!({"values": ["a", "b", "c"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    h.control(
        "/_sim/update",
        json!({"entity_type": "Shot", "id": shot, "fields": {"sg_rating": "c"}}),
    )
    .await;
    let r = h
        .http
        .delete(h.url("/_sim/schema/fields/Shot/sg_rating"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ev = h.events_after(burned).await;
    let k = kinds(&ev);
    assert_eq!(
        k,
        vec![
            ("Shotgun_DisplayColumn_New".into(), None),
            (
                "Shotgun_DisplayColumn_Change".into(),
                Some("properties".into())
            ),
            ("Shotgun_Shot_Change".into(), Some("sg_rating".into())),
            ("Shotgun_DisplayColumn_Retirement".into(), None),
        ]
    );
    assert_eq!(
        ev[0]["relationships"]["entity"]["data"]["type"],
        "DisplayColumn"
    );
    assert_eq!(
        ev[0]["relationships"]["entity"]["data"]["name"],
        "sg_rating"
    );
    assert!(ev[0]["relationships"]["project"]["data"].is_null());
    assert_eq!(
        meta(&ev[1])["new_value"]["valid_values"]["value"],
        json!(["a", "b", "c"])
    );
    let (s, _) = h.get("/api/v1/schema/Shot/fields/sg_rating").await;
    assert_eq!(s, 404);
}
