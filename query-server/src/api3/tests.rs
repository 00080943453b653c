//! Unit tests of the api3 envelope, credentials, `info` and write bookkeeping.

use serde_json::json;

use super::forward::{Expect, Touched, touched};
use super::wire::{Auth, check_auth, parse_call};
use super::*;

#[test]
fn envelopes_parse_with_each_auth_shape() {
    let c = parse_call(br#"{"method_name":"read","params":[{"script_name":"s","script_key":"k"},{"type":"Shot"}]}"#).expect("valid");
    assert_eq!(c.method, "read");
    assert_eq!(
        c.auth,
        Auth::Script {
            name: "s".into(),
            key: "k".into()
        }
    );
    assert_eq!(c.params, json!({"type": "Shot"}));
    let c = parse_call(br#"{"method_name":"info","params":[]}"#).expect("valid");
    assert_eq!((c.auth, c.params), (Auth::None, Json::Null));
    let c = parse_call(
        br#"{"method_name":"read","params":[{"session_token":"t","reject_if_expired":true},{}]}"#,
    )
    .expect("valid");
    assert_eq!(c.auth, Auth::Other("session_token"));
    let f = parse_call(b"{nope").expect_err("not json");
    assert!(f.message.contains("not valid JSON"), "{f}");
    let f = parse_call(br#"{"params":[]}"#).expect_err("no method");
    assert!(f.message.contains("method_name"), "{f}");
}

#[test]
fn credentials_are_checked_against_the_client_list() {
    let clients = vec![
        ("tool".to_owned(), "k1".to_owned()),
        ("other".to_owned(), "k2".to_owned()),
    ];
    assert!(
        check_auth(
            &Auth::Script {
                name: "other".into(),
                key: "k2".into()
            },
            &clients
        )
        .is_ok()
    );
    let f = check_auth(
        &Auth::Script {
            name: "tool".into(),
            key: "k2".into(),
        },
        &clients,
    )
    .expect_err("wrong key");
    assert_eq!(f.code, 102);
    assert!(f.message.contains("'tool'"), "{f}");
    let f = check_auth(
        &Auth::Script {
            name: "tool".into(),
            key: "k1".into(),
        },
        &[],
    )
    .expect_err("no clients");
    assert!(f.message.contains("SHOTGUN_CACHE_API3__CLIENTS"), "{f}");
    let f =
        check_auth(&Auth::Other("user_login/user_password"), &clients).expect_err("not a script");
    assert_eq!(f.code, 102);
    assert_eq!(f.to_json()["exception"], json!(true));
}

#[test]
fn info_claims_a_modern_version_and_names_the_cache() {
    let snap = read::tests::snapshot();
    let old = info_answer(
        json!({"version": [7, 1, 0], "s3_uploads_enabled": true}),
        "http://site",
        &snap,
    );
    assert_eq!(old["version"], json!([8, 0, 0]));
    assert_eq!(old["s3_uploads_enabled"], json!(true));
    assert_eq!(old["api_max_entities_per_page"], json!(500));
    assert_eq!(old["shotgun_cache"]["site"], json!("http://site"));
    assert_eq!(
        old["shotgun_cache"]["cached_types"],
        json!(["Project", "Sequence", "Shot"])
    );
    let new = info_answer(
        json!({"version": [8, 89, 0], "full_version": [8, 89, 0, 0]}),
        "http://site",
        &snap,
    );
    assert_eq!(new["version"], json!([8, 89, 0]));
    assert_eq!(new["full_version"], json!([8, 89, 0, 0]));
}

fn live(fields: Json) -> Expect {
    Expect::Live {
        fields: fields.as_object().cloned().unwrap_or_default(),
    }
}

#[test]
fn writes_name_the_entities_they_touched() {
    let t = |ty: &str, id: i64, expect: Expect| Touched {
        entity_type: ty.into(),
        id,
        expect,
    };
    assert_eq!(
        touched(
            "create",
            &json!({"type": "Shot"}),
            &json!({"type": "Shot", "id": 9, "code": "x"})
        ),
        [t("Shot", 9, live(json!({"code": "x"})))]
    );
    assert_eq!(
        touched(
            "update",
            &json!({"type": "Shot", "id": 4}),
            &json!({"type": "Shot", "id": 4})
        ),
        [t("Shot", 4, live(json!({})))]
    );
    assert_eq!(
        touched("delete", &json!({"type": "Shot", "id": 4}), &json!(true)),
        [t("Shot", 4, Expect::Retired)]
    );
    assert_eq!(
        touched("revive", &json!({"type": "Shot", "id": 4}), &json!(true)),
        [t("Shot", 4, live(json!({})))]
    );
    assert!(touched("revive", &json!({"type": "Shot", "id": 4}), &json!(false)).is_empty());
    // The wire shape `shotgun_api3` sends: `type`, `id`, `fields` per request.
    let batch = touched(
        "batch",
        &json!([
            {"request_type": "create", "type": "Shot", "fields": [{"field_name": "code", "value": "a"}], "return_fields": ["id"]},
            {"request_type": "update", "type": "Asset", "id": 3, "fields": []},
            {"request_type": "delete", "type": "Shot", "id": 8},
        ]),
        &json!([{"type": "Shot", "id": 11}, {"type": "Asset", "id": 3, "code": "b"}, true]),
    );
    assert_eq!(
        batch,
        [
            t("Shot", 11, live(json!({}))),
            t("Asset", 3, live(json!({"code": "b"}))),
            t("Shot", 8, Expect::Retired)
        ]
    );
}

#[test]
fn cached_values_agree_with_the_sites_answer() {
    use shotgun_cache_core::model::{EntityRef, Value};

    use super::forward::agrees;
    let link = |t: &str, id: i64| EntityRef {
        entity_type: t.into(),
        id,
        name: Some("old name".into()),
    };
    assert!(agrees(
        &Value::Entity(link("Sequence", 2)),
        &json!({"type": "Sequence", "id": 2, "name": "new name"})
    ));
    assert!(!agrees(
        &Value::Entity(link("Sequence", 2)),
        &json!({"type": "Sequence", "id": 3, "name": "x"})
    ));
    assert!(agrees(
        &Value::MultiEntity(vec![link("Asset", 1), link("Asset", 2)]),
        &json!([{"type": "Asset", "id": 2}, {"type": "Asset", "id": 1}])
    ));
    assert!(!agrees(
        &Value::MultiEntity(vec![link("Asset", 1)]),
        &json!([{"type": "Asset", "id": 2}])
    ));
    assert!(agrees(&Value::Text("ip".into()), &json!("ip")));
    assert!(!agrees(&Value::Text("ip".into()), &json!("fin")));
    assert!(agrees(&Value::Null, &json!(null)));
    assert!(agrees(&Value::Float(1.5), &json!(1.5000001)));
    assert!(agrees(&Value::Int(77), &json!("https://signed/url")));
}
