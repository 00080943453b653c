//! The REST API v1 of the simulated site against a plain HTTP client: every endpoint, the response
//! shapes of protocol §1.2–1.3, and every error case with the real envelope (§1.4).

#![allow(clippy::unwrap_used)]

mod common;

use common::{ARRAY_CT, HASH_CT, small};
use serde_json::{Value as Json, json};

fn assert_envelope(body: &Json, status: u16, code: u64) -> String {
    let e = &body["errors"][0];
    for k in ["id", "status", "code", "title", "source", "detail", "meta"] {
        assert!(e.get(k).is_some(), "error envelope lacks '{k}': {body}");
    }
    assert_eq!(e["status"], status, "{body}");
    assert_eq!(e["code"], code, "{body}");
    e["title"].as_str().unwrap_or("").to_owned()
}

/// Logging in with script credentials and refresh tokens, and each way it fails.
#[tokio::test]
async fn auth_grants_and_failures() {
    let h = small().await;
    let auth = h.url("/api/v1/auth/access_token");
    let ok: Json = h
        .http
        .post(&auth)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "cache"),
            ("client_secret", "secret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["token_type"], "Bearer");
    assert_eq!(ok["expires_in"], 600);
    assert_eq!(
        ok["access_token"].as_str().unwrap().split('.').count(),
        3,
        "JWT-shaped token"
    );
    let refresh = ok["refresh_token"].as_str().unwrap().to_owned();

    let r = h
        .http
        .post(&auth)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "cache"),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let title = assert_envelope(&r.json().await.unwrap(), 400, 102);
    assert_eq!(title, "Can't authenticate script 'cache'");

    let r = h
        .http
        .post(&auth)
        .form(&[("grant_type", "client_credentials"), ("client_id", "cache")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        assert_envelope(&r.json().await.unwrap(), 400, 102),
        "Missing or invalid authentication arguments"
    );

    let r = h
        .http
        .post(&auth)
        .form(&[("grant_type", "magic")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(assert_envelope(&r.json().await.unwrap(), 400, 103).contains("Unsupported grant_type"));

    let r = h
        .http
        .post(&auth)
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let r = h
        .http
        .post(&auth)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let again: Json = r.json().await.unwrap();
    assert!(again["access_token"].as_str().is_some());
    // A refresh token is used once.
    let r = h
        .http
        .post(&auth)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_envelope(&r.json().await.unwrap(), 401, 102);
}

/// Missing, invalid and expired bearer tokens get 401 with the envelope; a short TTL expires for real.
#[tokio::test]
async fn bearer_token_checks() {
    let h = small().await;
    let r = h
        .http
        .get(h.url("/api/v1/entity/shots"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_envelope(&r.json().await.unwrap(), 401, 102);
    let r = h
        .http
        .get(h.url("/api/v1/entity/shots"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    h.sim.set_token_ttl(std::time::Duration::from_secs(1));
    let t = common::login(&h.http, &h.base, "cache", "secret").await;
    let r = h
        .http
        .get(h.url("/api/v1/entity/shots?page[size]=1"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = h
        .http
        .get(h.url("/api/v1/entity/shots?page[size]=1"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let b: Json = r.json().await.unwrap();
    assert_envelope(&b, 401, 102);
    assert_eq!(b["errors"][0]["detail"], "The access token has expired");

    // The control API expires every token at once.
    h.control("/_sim/tokens/expire", json!({})).await;
    let (s, _) = h.get("/api/v1/entity/shots").await;
    assert_eq!(s, 401);

    // Vendor Accept types are refused.
    let t = common::login(&h.http, &h.base, "cache", "secret").await;
    let r = h
        .http
        .get(h.url("/api/v1/entity/shots"))
        .bearer_auth(&t)
        .header("accept", ARRAY_CT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
}

/// GET list paging: default 500, bounds 1..5000, `links.next` always present, pages cover every live row.
#[tokio::test]
async fn get_list_paging() {
    let h = small().await;
    let live = h.sim.site().counts()["Task"].0 as usize;
    assert!(live > 50, "generated tasks: {live}");
    let (s, b) = h.get("/api/v1/entity/tasks").await;
    assert_eq!(s, 200);
    assert_eq!(b["data"].as_array().unwrap().len(), live.min(500));

    let (s, b) = h.get("/api/v1/entity/tasks?page[size]=5001").await;
    assert_eq!(s, 400);
    assert_eq!(assert_envelope(&b, 400, 103), "size must be less than 5000");
    let (s, _) = h.get("/api/v1/entity/tasks?page[size]=0").await;
    assert_eq!(s, 400);
    let (s, _) = h.get("/api/v1/entity/tasks?page[size]=5000").await;
    assert_eq!(s, 200);

    let mut seen = Vec::new();
    let mut page = 1;
    loop {
        let (s, b) = h
            .get(&format!(
                "/api/v1/entity/tasks?page[size]=37&page[number]={page}&fields=content"
            ))
            .await;
        assert_eq!(s, 200);
        assert!(
            b["links"]["next"].is_string(),
            "next link always present: {}",
            b["links"]
        );
        if page > 1 {
            assert!(b["links"]["prev"].is_string());
        }
        let data = b["data"].as_array().unwrap();
        if data.is_empty() {
            break;
        }
        seen.extend(data.iter().map(|r| r["id"].as_i64().unwrap()));
        page += 1;
    }
    assert_eq!(seen.len(), live);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "unsorted order is id ascending"
    );

    // Query-string equality filters; a comma list reads as `in`.
    let (s, b) = h
        .get("/api/v1/entity/tasks?filter[sg_status_list]=fin,ip&fields=sg_status_list")
        .await;
    assert_eq!(s, 200);
    let rows = b["data"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| matches!(
        r["attributes"]["sg_status_list"].as_str(),
        Some("fin" | "ip")
    )));
}

/// `_search`: both vendor content types, 415 otherwise, keyset paging, sort, return_only, dotted fields.
#[tokio::test]
async fn search_shapes_and_options() {
    let h = small().await;
    let r = h
        .http
        .post(h.url("/api/v1/entity/shots/_search"))
        .bearer_auth(&h.token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let b: Json = r.json().await.unwrap();
    let detail = b["errors"][0]["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains(ARRAY_CT) && detail.contains(HASH_CT),
        "{detail}"
    );

    // Keyset paging over every shot equals the site's live shots.
    let live = h.sim.site().counts()["Shot"].0 as usize;
    let mut last = 0;
    let mut n = 0;
    loop {
        let (s, b) = h.search("shots", json!({"filters": [["id", "greater_than", last]], "fields": ["code"], "sort": "id", "page": {"size": 7}})).await;
        assert_eq!(s, 200, "{b}");
        let data = b["data"].as_array().unwrap();
        if data.is_empty() {
            assert!(b["links"]["next"].is_string());
            break;
        }
        n += data.len();
        last = data.last().unwrap()["id"].as_i64().unwrap();
    }
    assert_eq!(n, live);

    // Hash filters with or; sort descending; unknown return field silently dropped.
    let (s, b) = h
        .search_ct(
            "shots",
            HASH_CT,
            json!({"filters": {"logical_operator": "or", "conditions": [["sg_status_list", "is", "fin"], ["sg_status_list", "is", "ip"]]},
                   "fields": ["code", "sg_status_list", "no_such_field", "sg_sequence.Sequence.code", "assets.Asset.code"],
                   "sort": "-id", "page": {"size": 500}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let rows = b["data"].as_array().unwrap();
    assert!(rows.len() > 2);
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "sorted by -id");
    for r in rows {
        let a = &r["attributes"];
        assert!(matches!(a["sg_status_list"].as_str(), Some("fin" | "ip")));
        assert!(a.get("no_such_field").is_none());
        assert!(
            a.get("assets.Asset.code").is_none(),
            "dotted reads through multi_entity are absent"
        );
        assert!(
            a.get("sg_sequence.Sequence.code").is_some(),
            "dotted field flat under attributes"
        );
        assert_eq!(
            r["links"]["self"],
            format!("/api/v1/entity/shots/{}", r["id"])
        );
    }

    // The api3 wire object is refused over REST; so is an upper-case operator.
    let (s, b) = h
        .search_ct("shots", HASH_CT, json!({"filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "is", "values": [1]}]}}))
        .await;
    assert_eq!(s, 400);
    assert_eq!(assert_envelope(&b, 400, 103), "Missing logical operator");
    let (s, _) = h
        .search_ct(
            "shots",
            HASH_CT,
            json!({"filters": {"logical_operator": "AND", "conditions": []}}),
        )
        .await;
    assert_eq!(s, 400);

    // Unknown filter field and bad operator: 400 code 103.
    let (s, b) = h
        .search("shots", json!({"filters": [["sg_not_a_field", "is", 1]]}))
        .await;
    assert_eq!(s, 400);
    let title = assert_envelope(&b, 400, 103);
    assert!(title.contains("Shot.sg_not_a_field"), "{title}");
    assert!(
        b["errors"][0]["source"]
            .get("Shot.sg_not_a_field")
            .is_some(),
        "{b}"
    );
    let (s, b) = h
        .search("shots", json!({"filters": [["code", "greater_than", "a"]]}))
        .await;
    assert_eq!(s, 400);
    assert!(assert_envelope(&b, 400, 103).contains("Valid relations"));
    // `meta` on the event log is not filterable.
    let (s, _) = h
        .search(
            "event_log_entries",
            json!({"filters": [["meta", "is", "x"]]}),
        )
        .await;
    assert_eq!(s, 400);

    // Sort on an unknown field is a silent no-op; on a uuid field a 400 code 104; an object sort is 400.
    let (s, _) = h
        .search(
            "shots",
            json!({"sort": "no_such_field", "page": {"size": 3}}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = h
        .search("shots", json!({"sort": [{"field": "code"}]}))
        .await;
    assert_eq!(s, 400);
    assert_eq!(assert_envelope(&b, 400, 103), "sort array is not valid");

    // Sorting on fields other than id (through the shared reference find), with paging after sorting.
    let (s, b) = h
        .search(
            "shots",
            json!({"sort": "code", "fields": ["code"], "page": {"size": 5000}}),
        )
        .await;
    assert_eq!(s, 200);
    let codes: Vec<String> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attributes"]["code"].as_str().unwrap().to_lowercase())
        .collect();
    assert!(
        codes.len() > 10 && codes.windows(2).all(|w| w[0] <= w[1]),
        "sorted by code"
    );
    let (_, b2) = h
        .search(
            "shots",
            json!({"sort": "code", "fields": ["code"], "page": {"size": 5, "number": 2}}),
        )
        .await;
    let page2: Vec<String> = b2["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attributes"]["code"].as_str().unwrap().to_lowercase())
        .collect();
    assert_eq!(page2, codes[5..10].to_vec());
    let (s, b) = h.search("shots", json!({"sort": "-sg_sequence.Sequence.code,id", "fields": ["sg_sequence.Sequence.code"], "page": {"size": 5000}})).await;
    assert_eq!(s, 200);
    let seqs: Vec<String> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["attributes"]["sg_sequence.Sequence.code"]
                .as_str()
                .unwrap_or("")
                .to_lowercase()
        })
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] >= w[1]),
        "sorted by a dotted path, descending"
    );

    // Page bounds on _search.
    let (s, _) = h.search("shots", json!({"page": {"size": 5001}})).await;
    assert_eq!(s, 400);

    // return_only retired lists only tombstones.
    let retired = h.sim.site().counts()["Task"].1;
    let (s, b) = h.search("tasks", json!({"options": {"return_only": "retired"}, "fields": ["content"], "page": {"size": 5000}})).await;
    assert_eq!(s, 200);
    assert_eq!(b["data"].as_array().unwrap().len() as u64, retired);
}

/// Value rendering: floats as strings, datetimes `...Z`, links under relationships with live names,
/// links to retired rows dropped.
#[tokio::test]
async fn record_shapes_and_live_links() {
    let h = small().await;
    let (s, b) = h.search("versions", json!({"fields": ["code", "sg_uploaded_movie_frame_rate", "created_at", "entity", "playlists", "sg_task"], "page": {"size": 1}})).await;
    assert_eq!(s, 200);
    let r = &b["data"][0];
    assert!(
        r["attributes"]["sg_uploaded_movie_frame_rate"].is_string(),
        "float as string: {r}"
    );
    let created = r["attributes"]["created_at"].as_str().unwrap();
    assert_eq!(created.len(), 20);
    assert!(created.ends_with('Z') && created.as_bytes()[10] == b'T');
    let ent = &r["relationships"]["entity"]["data"];
    assert!(
        ent["name"].is_string() && ent["type"].is_string() && ent["id"].is_i64(),
        "{r}"
    );
    assert!(r["relationships"]["playlists"]["data"].is_array());
    assert!(r["relationships"]["entity"]["links"]["related"].is_string());

    // The relationship endpoint the links point at.
    let (s, rel) = h
        .get(
            r["relationships"]["entity"]["links"]["self"]
                .as_str()
                .unwrap(),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(rel["data"], *ent);

    // Rename the linked shot/asset: the link name changes; retire the task: the link reads null.
    let vid = r["id"].as_i64().unwrap();
    let (et, eid) = (
        ent["type"].as_str().unwrap().to_owned(),
        ent["id"].as_i64().unwrap(),
    );
    let task = r["relationships"]["sg_task"]["data"]["id"]
        .as_i64()
        .unwrap();
    h.control(
        "/_sim/update",
        json!({"entity_type": et, "id": eid, "fields": {"code": "renamed_target"}}),
    )
    .await;
    h.control("/_sim/delete", json!({"entity_type": "Task", "id": task}))
        .await;
    let (_, b) = h
        .get(&format!(
            "/api/v1/entity/versions/{vid}?fields=entity,sg_task"
        ))
        .await;
    assert_eq!(
        b["data"]["relationships"]["entity"]["data"]["name"],
        "renamed_target"
    );
    assert!(
        b["data"]["relationships"]["sg_task"]["data"].is_null(),
        "link to a retired row reads null: {b}"
    );
    h.control("/_sim/revive", json!({"entity_type": "Task", "id": task}))
        .await;
    let (_, b) = h
        .get(&format!("/api/v1/entity/versions/{vid}?fields=sg_task"))
        .await;
    assert_eq!(b["data"]["relationships"]["sg_task"]["data"]["id"], task);
}

/// Single-record GET, retired rows, unknown types; summarize; schema endpoints.
#[tokio::test]
async fn single_get_summarize_schema() {
    let h = small().await;
    let (s, b) = h.get("/api/v1/entity/Shot/1").await;
    assert_eq!(s, 200);
    let attrs = b["data"]["attributes"].as_object().unwrap().len()
        + b["data"]["relationships"].as_object().unwrap().len();
    assert!(attrs > 50, "all fields without ?fields: {attrs}");
    h.control("/_sim/delete", json!({"entity_type": "Shot", "id": 1}))
        .await;
    let (s, b) = h.get("/api/v1/entity/shots/1").await;
    assert_eq!(s, 404);
    assert_eq!(assert_envelope(&b, 404, 104), "Shot: 1 not found");
    let (s, _) = h
        .get("/api/v1/entity/shots/1?options[return_only]=retired")
        .await;
    assert_eq!(s, 200);
    let (s, b) = h.get("/api/v1/entity/not_a_type").await;
    assert_eq!(s, 404);
    assert_eq!(
        b["errors"][0]["title"],
        "Entity type 'not_a_type' does not exist."
    );

    let r = h
        .http
        .post(h.url("/api/v1/entity/tasks/_summarize"))
        .bearer_auth(&h.token)
        .header("content-type", ARRAY_CT)
        .body(json!({"filters": [], "summary_fields": [{"field": "id", "type": "count"}], "grouping": [{"field": "sg_status_list", "type": "exact", "direction": "asc"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Json = r.json().await.unwrap();
    let total = b["data"]["summaries"]["id"].as_u64().unwrap();
    assert_eq!(total, h.sim.site().counts()["Task"].0);
    let grouped: u64 = b["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["summaries"]["id"].as_u64().unwrap())
        .sum();
    assert_eq!(grouped, total);
    // Other summary types through the shared implementation: a sum checked against the truth.
    let r = h
        .http
        .post(h.url("/api/v1/entity/tasks/_summarize"))
        .bearer_auth(&h.token)
        .header("content-type", ARRAY_CT)
        .body(
            json!({"filters": [], "summary_fields": [{"field": "est_in_mins", "type": "sum"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Json = r.json().await.unwrap();
    let expected: i64 = h
        .sim
        .site()
        .truth(Some(&["Task".to_owned()]))
        .iter()
        .filter(|t| !t.retired)
        .filter_map(|t| match t.fields.get("est_in_mins") {
            Some(shotgun_cache_core::model::Value::Int(n)) => Some(*n),
            _ => None,
        })
        .sum();
    assert_eq!(
        b["data"]["summaries"]["est_in_mins"].as_f64().unwrap() as i64,
        expected,
        "{b}"
    );

    let (s, b) = h.get("/api/v1/schema").await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["Shot"]["name"]["value"], "Shot");
    let (s, b) = h.get("/api/v1/schema/Shot/fields").await;
    assert_eq!(s, 200);
    assert_eq!(
        b["data"]["sg_status_list"]["data_type"]["value"],
        "status_list"
    );
    assert_eq!(
        b["data"]["sg_status_list"]["properties"]["default_value"]["value"],
        "wtg"
    );
    let (s, b) = h.get("/api/v1/schema/shots/fields/code").await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["code"]["data_type"]["value"], "text");
    let (s, b) = h.get("/api/v1/schema/Shot/fields/nope").await;
    assert_eq!(s, 404);
    assert_eq!(b["errors"][0]["title"], "Field 'Shot.nope' does not exist.");
    let (s, b) = h.get("/api/v1/schema/Shot").await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["name"]["value"], "Shot");
}

/// REST writes: create (201, sent + server fields), update (whole record), delete (204), revive, batch.
#[tokio::test]
async fn rest_writes() {
    let h = small().await;
    let post = |path: &str, body: Json| {
        h.http
            .post(h.url(path))
            .bearer_auth(&h.token)
            .json(&body)
            .send()
    };
    let r = post(
        "/api/v1/entity/shots",
        json!({"code": "new_shot", "project": {"type": "Project", "id": 1}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let b: Json = r.json().await.unwrap();
    let id = b["data"]["id"].as_i64().unwrap();
    assert_eq!(b["data"]["attributes"]["code"], "new_shot");
    assert_eq!(
        b["data"]["attributes"]["sg_status_list"], "wtg",
        "server default returned"
    );

    let r = post(
        "/api/v1/entity/shots",
        json!({"code": "x", "sg_status_list": "bogus"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_envelope(&r.json().await.unwrap(), 400, 103);
    let r = post("/api/v1/entity/shots", json!({"not_a_field": 1}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        assert_envelope(&r.json().await.unwrap(), 400, 103),
        "API create() Shot.not_a_field doesn't exist."
    );

    let r = h
        .http
        .put(h.url(&format!("/api/v1/entity/shots/{id}")))
        .bearer_auth(&h.token)
        .json(&json!({"description": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Json = r.json().await.unwrap();
    assert_eq!(b["data"]["attributes"]["description"], "hello");
    assert!(
        b["data"]["attributes"].as_object().unwrap().len() > 20,
        "update returns the whole record"
    );

    let r = h
        .http
        .delete(h.url(&format!("/api/v1/entity/shots/{id}")))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = post(&format!("/api/v1/entity/shots/{id}?revive=true"), json!({}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = h.get(&format!("/api/v1/entity/shots/{id}")).await;
    assert_eq!(s, 200);

    // A batch is one transaction: the failing update rolls back the create before it.
    let before = h.sim.site().counts()["Shot"].0;
    let r = post(
        "/api/v1/entity/_batch",
        json!({"requests": [
            {"request_type": "create", "entity": "Shot", "data": {"code": "in_batch"}},
            {"request_type": "update", "entity": "Shot", "record_id": id, "data": {"sg_status_list": "nope"}}]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(h.sim.site().counts()["Shot"].0, before);
    let r = post(
        "/api/v1/entity/_batch",
        json!({"requests": [
            {"request_type": "create", "entity": "Shot", "data": {"code": "in_batch"}},
            {"request_type": "delete", "entity": "Shot", "record_id": id}]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let b: Json = r.json().await.unwrap();
    assert_eq!(b["data"][0]["attributes"]["code"], "in_batch");
    assert_eq!(b["data"][1], true);
}

/// `id in [...]` (how the syncer re-reads rows by id) visits only the listed rows: the answer is the
/// listed live rows in the requested order, other conditions still apply, and ids that do not exist
/// or are retired are left out.
#[tokio::test]
async fn search_by_listed_ids() {
    let h = small().await;
    let mut live: Vec<(i64, String)> = h
        .sim
        .site()
        .truth(Some(&["Shot".to_owned()]))
        .iter()
        .filter(|t| !t.retired)
        .map(|t| {
            let status = t.to_json()["sg_status_list"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            (t.id, status)
        })
        .collect();
    live.sort();
    assert!(live.len() > 20, "the small site has shots");
    let first = live[0].0;
    let last = live[live.len() - 1].0;
    let middle = live[live.len() / 2].0;
    // Unordered, with a duplicate and an id the site does not have.
    let listed = json!([last, first, middle, first, last + 1_000_000]);
    let ids = shot_ids(&h, json!({"filters": [["id", "in", listed]], "fields": ["code"], "sort": "id", "page": {"size": 500}})).await;
    assert_eq!(ids, vec![first, middle, last]);
    let ids = shot_ids(&h, json!({"filters": [["id", "in", listed]], "fields": ["code"], "sort": "-id", "page": {"size": 500}})).await;
    assert_eq!(ids, vec![last, middle, first]);
    // With another condition: only the listed rows that also match it.
    let status = live[0].1.clone();
    let expected: Vec<i64> = [first, middle, last]
        .into_iter()
        .filter(|id| live.iter().any(|(i, st)| i == id && *st == status))
        .collect();
    let ids = shot_ids(&h, json!({"filters": [["id", "in", listed], ["sg_status_list", "is", status]], "fields": ["code"], "sort": "id", "page": {"size": 500}})).await;
    assert_eq!(ids, expected);
    assert!(ids.contains(&first));
    // A retired row is not in the answer.
    let actor = h.sim.site().script_actor("cache").expect("actor");
    assert!(h.sim.site().delete(&actor, "Shot", middle).expect("retire"));
    let ids = shot_ids(&h, json!({"filters": [["id", "in", listed]], "fields": ["code"], "sort": "id", "page": {"size": 500}})).await;
    assert_eq!(ids, vec![first, last]);
}

/// The ids of the shots a `_search` with `body` answers.
async fn shot_ids(h: &common::Harness, body: Json) -> Vec<i64> {
    let (s, b) = h.search("shots", body).await;
    assert_eq!(s, 200, "{b}");
    b["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect()
}
