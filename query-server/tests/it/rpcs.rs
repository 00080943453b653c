//! Every unary rpc, every bad-input class, auth, limits and the partial-import rule.

use std::time::Duration;

use shotgun_cache_core::model::Value;
use shotgun_cache_core::store::{EntityWrite, FieldChange, Store, TypePhase, TypeState};
use shotgun_cache_proto::v1 as pb;
use tonic::Code;

use crate::support::*;

/// Shot ids of the fixture matching a predicate on the id.
fn shots_where(p: impl Fn(i64) -> bool) -> Vec<i64> {
    (1..=SHOTS).filter(|i| p(*i)).collect()
}

/// A plain filter, sort and return fields: ids, order and values are the fixture's.
#[tokio::test]
async fn find_filters_sorts_and_projects() {
    let fx = Fixture::new().await;
    let srv = Server::start(&fx).await;
    let mut c = srv.client().await;
    let mut req = find(
        "Shot",
        Some(cond("sg_status_list", pb::Operator::Is, vec![s("ip")])),
        &["code", "sg_status_list", "sg_cut_in", "sg_sequence"],
    );
    req.sorts = vec![pb::Sort {
        field: "code".into(),
        direction: pb::SortDirection::Desc as i32,
    }];
    let r = c.find(req).await.expect("find").into_inner();
    let mut want = shots_where(|i| i % 4 == 0);
    want.reverse();
    assert_eq!(ids(&r.records), want);
    let first = &r.records[0];
    assert_eq!(first.r#type, "Shot");
    assert_eq!(text(first, "code").as_deref(), Some("sh0200"));
    assert_eq!(text(first, "sg_status_list").as_deref(), Some("ip"));
    assert_eq!(
        first.fields["sg_cut_in"].kind,
        Some(pb::value::Kind::IntValue(2000))
    );
    match &first.fields["sg_sequence"].kind {
        Some(pb::value::Kind::EntityValue(e)) => {
            assert_eq!(
                (e.r#type.as_str(), e.id, e.name.as_deref()),
                ("Sequence", 1, Some("SEQ_01"))
            )
        }
        other => panic!("sg_sequence is not an entity link: {other:?}"),
    }
    // The page was not full, so there is no next cursor.
    assert!(r.next_cursor.is_empty());
    srv.stop().await;
}

/// Deep-link filters and return fields; multi_entity deep fields are absent, as in Shotgun.
#[tokio::test]
async fn deep_link_find() {
    let fx = Fixture::new().await;
    let srv = Server::start(&fx).await;
    let mut c = srv.client().await;
    let req = find(
        "Shot",
        Some(cond(
            "sg_sequence.Sequence.code",
            pb::Operator::Is,
            vec![s("SEQ_02")],
        )),
        &[
            "code",
            "sg_sequence.Sequence.code",
            "sg_sequence.Sequence.project",
            "assets.Asset.code",
        ],
    );
    let r = c.find(req).await.expect("deep find").into_inner();
    assert_eq!(ids(&r.records), shots_where(|i| i % SEQUENCES == 1));
    for rec in &r.records {
        assert_eq!(
            text(rec, "sg_sequence.Sequence.code").as_deref(),
            Some("SEQ_02")
        );
        assert!(rec.fields.contains_key("sg_sequence.Sequence.project"));
        assert!(
            !rec.fields.contains_key("assets.Asset.code"),
            "multi_entity deep field must be absent"
        );
    }
    // Two hops: Shot → Sequence → Project.
    let req = find(
        "Shot",
        Some(cond(
            "sg_sequence.Sequence.project.Project.name",
            pb::Operator::Is,
            vec![s("alpha")],
        )),
        &[],
    );
    let r = c
        .find(pb::FindRequest { limit: 5000, ..req })
        .await
        .expect("two-hop find")
        .into_inner();
    assert_eq!(
        r.records.len() as i64,
        SHOTS,
        "every shot's sequence is in project Alpha (case-insensitive)"
    );
    srv.stop().await;
}

/// Groups, `in`, `between`, links and dates through the typed values.
#[tokio::test]
async fn groups_and_typed_values() {
    let fx = Fixture::new().await;
    let srv = Server::start(&fx).await;
    let mut c = srv.client().await;
    let filter = group(
        pb::LogicalOperator::Or,
        vec![
            cond("sg_cut_in", pb::Operator::Between, vec![i(100), i(150)]),
            group(
                pb::LogicalOperator::And,
                vec![
                    cond("sg_status_list", pb::Operator::In, vec![s("fin"), s("wtg")]),
                    cond("sg_sequence", pb::Operator::Is, vec![ent("Sequence", 3)]),
                ],
            ),
        ],
    );
    let r = c
        .find(find("Shot", Some(filter), &[]))
        .await
        .expect("find")
        .into_inner();
    let want = shots_where(|i| {
        (10..=15).contains(&i) || ((i % 4 == 1 || i % 4 == 2) && i % SEQUENCES == 2)
    });
    assert_eq!(ids(&r.records), want);

    let date = pb::Value {
        kind: Some(pb::value::Kind::DateValue(pb::Date {
            year: 2026,
            month: 1,
            day: 3,
        })),
    };
    let r = c
        .count(pb::CountRequest {
            entity_type: "Shot".into(),
            filter: Some(cond("sg_due", pb::Operator::Is, vec![date])),
            retired_only: false,
        })
        .await
        .expect("count by date")
        .into_inner();
    assert_eq!(r.count as usize, shots_where(|i| i % 28 == 2).len());
    srv.stop().await;
}

/// A server whose store has a result cache answers exactly as one without: the same records, values
/// of every type, deep-link fields and cursors, on a miss, on the miss that keeps the answer, on
/// hits (which send the records' encoding kept from the first time), and after a commit.
#[tokio::test]
async fn cached_finds_answer_as_uncached_ones() {
    let fx = Fixture::new().await;
    let plain = Server::start(&fx).await;
    let (cached, store) = Server::start_cached(&fx, 16).await;
    let (mut p, mut c) = (plain.client().await, cached.client().await);
    // Every cached field, a deep link through a single link and one through a multi_entity link
    // (absent from records, as in Shotgun).
    let fields: Vec<&str> = SHOT_FIELDS
        .into_iter()
        .chain(["sg_sequence.Sequence.code", "assets.Asset.code"])
        .collect();
    let requests = [
        pb::FindRequest {
            limit: 30,
            ..find("Shot", None, &fields)
        },
        pb::FindRequest {
            limit: 30,
            page: 2,
            ..find("Shot", None, &fields)
        },
        find(
            "Shot",
            Some(cond("sg_status_list", pb::Operator::Is, vec![s("wtg")])),
            &fields,
        ),
    ];
    let mut asked = 0;
    for round in 0..2 {
        for req in &requests {
            let want = p
                .find(req.clone())
                .await
                .expect("uncached find")
                .into_inner();
            assert!(!want.records.is_empty());
            assert!(
                want.records
                    .iter()
                    .all(|r| r.fields.len() == fields.len() - 1)
            );
            for n in 0..4 {
                let got = c.find(req.clone()).await.expect("cached find").into_inner();
                assert_eq!(got, want, "round {round}, request {req:?}, repeat {n}");
                asked += 1;
            }
        }
        if round == 0 {
            // Shot 2 is in the first answer and the third (status "wtg"), not in the second.
            fx.journaled(vec![Fixture::patch(
                2,
                900,
                vec![FieldChange::Set(
                    "code".into(),
                    Value::Text("renamed".into()),
                )],
            )])
            .await;
        }
    }
    let stats = store.result_cache_stats().expect("the cache is on");
    assert_eq!(
        (stats.hits, stats.misses),
        (
            (asked - 2 * 2 * requests.len()) as u64,
            (2 * 2 * requests.len()) as u64
        ),
        "two misses per answer (the second keeps it), then hits"
    );
    plain.stop().await;
    cached.stop().await;
}

/// Long `in` lists and wide groups (a script asking for thousands of shots by id) are answered, not
/// failed: SQLite refuses expressions nested deeper than 1,000 and more than 32,766 parameters.
#[tokio::test]
async fn long_in_lists_and_wide_groups() {
    let fx = Fixture::new().await;
    let srv = Server::start(&fx).await;
    let mut c = srv.client().await;
    let ids_in: Vec<pb::Value> = (1..=40_000).filter(|n| n % 3 == 0).map(i).collect();
    let r = c
        .find(find(
            "Shot",
            Some(cond("id", pb::Operator::In, ids_in)),
            &["code"],
        ))
        .await
        .expect("a 13,333-id find")
        .into_inner();
    assert_eq!(ids(&r.records), shots_where(|i| i % 3 == 0));
    let wide = group(
        pb::LogicalOperator::Or,
        (1..=1_500)
            .map(|n| cond("sg_cut_in", pb::Operator::Is, vec![i(n * 10)]))
            .collect(),
    );
    let r = c
        .count(pb::CountRequest {
            entity_type: "Shot".into(),
            filter: Some(wide),
            retired_only: false,
        })
        .await
        .expect("a 1,500-condition group")
        .into_inner();
    // The fixture's sg_cut_in is ten times the id.
    assert_eq!(r.count as usize, shots_where(|i| i <= 1_500).len());
    srv.stop().await;
}

/// Pages by number and by cursor cover every row once, in order; cursors are bound to their query.
#[tokio::test]
async fn paging_by_page_and_cursor() {
    let fx = Fixture::new().await;
    let srv = Server::start(&fx).await;
    let mut c = srv.client().await;
    let base = pb::FindRequest {
        limit: 30,
        ..find("Shot", None, &["code"])
    };
    let mut by_page = Vec::new();
    for page in 1..=8 {
        let r = c
            .find(pb::FindRequest {
                page,
                ..base.clone()
            })
            .await
            .expect("page")
            .into_inner();
        by_page.extend(ids(&r.records));
    }
    assert_eq!(by_page, (1..=SHOTS).collect::<Vec<_>>());

    let mut by_cursor = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = c
            .find(pb::FindRequest {
                cursor: cursor.clone(),
                ..base.clone()
            })
            .await
            .expect("cursor page");
        let r = r.into_inner();
        by_cursor.extend(ids(&r.records));
        if r.next_cursor.is_empty() {
            break;
        }
        cursor = r.next_cursor;
    }
    assert_eq!(by_cursor, (1..=SHOTS).collect::<Vec<_>>());

    let first = c.find(base.clone()).await.expect("first").into_inner();
    let err = c
        .find(pb::FindRequest {
            cursor: first.next_cursor.clone(),
            page: 2,
            ..base.clone()
        })
        .await
        .expect_err("page and cursor");
    assert_eq!(err.code(), Code::InvalidArgument);
    let other = pb::FindRequest {
        cursor: first.next_cursor.clone(),
        filter: Some(cond("code", pb::Operator::StartsWith, vec![s("sh")])),
        ..base.clone()
    };
    let err = c.find(other).await.expect_err("cursor of another query");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("different query"),
        "{}",
        err.message()
    );
    let err = c
        .find(pb::FindRequest {
            cursor: "garbage!".into(),
            ..base
        })
        .await
        .expect_err("garbage");
    assert_eq!(err.code(), Code::InvalidArgument);
    srv.stop().await;
}

/// FindOne returns the first by sort, or nothing; Count and retired_only follow retirement.
#[tokio::test]
async fn find_one_count_and_retired() {
    let fx = Fixture::new().await;
    let srv = Server::start(&fx).await;
    let mut c = srv.client().await;
    let r = c
        .find_one(pb::FindOneRequest {
            entity_type: "Shot".into(),
            filter: Some(cond("sg_status_list", pb::Operator::Is, vec![s("fin")])),
            fields: vec!["code".into()],
            sorts: vec![pb::Sort {
                field: "sg_cut_in".into(),
                direction: pb::SortDirection::Desc as i32,
            }],
            retired_only: false,
        })
        .await
        .expect("find_one")
        .into_inner();
    let rec = r.record.expect("a record");
    assert_eq!(
        (rec.id, text(&rec, "code").as_deref()),
        (197, Some("sh0197"))
    );
    let none = c
        .find_one(pb::FindOneRequest {
            entity_type: "Shot".into(),
            filter: Some(cond("code", pb::Operator::Is, vec![s("nope")])),
            ..Default::default()
        })
        .await
        .expect("find_one none")
        .into_inner();
    assert!(none.record.is_none());

    let count = |retired_only| pb::CountRequest {
        entity_type: "Shot".into(),
        filter: None,
        retired_only,
    };
    assert_eq!(
        c.count(count(false))
            .await
            .expect("count")
            .into_inner()
            .count as i64,
        SHOTS
    );
    assert_eq!(
        c.count(count(true))
            .await
            .expect("count retired")
            .into_inner()
            .count,
        0
    );
    fx.journaled(vec![EntityWrite::Retire {
        entity_type: "Shot".into(),
        id: 7,
        event_id: 9000,
    }])
    .await;
    assert_eq!(
        c.count(count(false))
            .await
            .expect("count")
            .into_inner()
            .count as i64,
        SHOTS - 1
    );
    assert_eq!(
        c.count(count(true))
            .await
            .expect("count retired")
            .into_inner()
            .count,
        1
    );
    let retired = c
        .find(pb::FindRequest {
            retired_only: true,
            ..find("Shot", None, &["code"])
        })
        .await
        .expect("find retired")
        .into_inner();
    assert_eq!(ids(&retired.records), vec![7]);
    srv.stop().await;
}

/// GetSchema says what is cached and each cached type's state; SyncStatus reports the cursor.
#[tokio::test]
async fn schema_and_sync_status() {
    let fx = Fixture::new().await;
    let srv = Server::start(&fx).await;
    let mut c = srv.client().await;
    let all = c
        .get_schema(pb::GetSchemaRequest::default())
        .await
        .expect("schema")
        .into_inner();
    let names: Vec<&str> = all.types.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["Asset", "Note", "Project", "Sequence", "Shot", "Version"]
    );
    let shot = all.types.iter().find(|t| t.name == "Shot").expect("Shot");
    assert!(shot.cached);
    let st = shot.status.as_ref().expect("Shot status");
    assert_eq!(
        (st.phase, st.live_count, st.retired_count),
        (pb::TypePhase::Ready as i32, SHOTS as u64, 0)
    );
    let field = |n: &str| shot.fields.iter().find(|f| f.name == n).expect("field");
    assert!(field("code").cached && field("code").indexed);
    assert!(!field("description").cached);
    assert_eq!(field("sg_sequence").data_type, "entity");
    assert_eq!(field("sg_sequence").valid_types, vec!["Sequence"]);
    assert_eq!(
        field("sg_status_list").valid_values,
        vec!["ip", "fin", "wtg", "omt"]
    );
    let note = all.types.iter().find(|t| t.name == "Note").expect("Note");
    assert!(!note.cached && note.status.is_none());

    let only = c
        .get_schema(pb::GetSchemaRequest {
            entity_types: vec!["Version".into()],
        })
        .await
        .expect("schema Version")
        .into_inner();
    assert_eq!(only.types.len(), 1);
    let vs = only.types[0].status.as_ref().expect("Version status");
    assert_eq!(
        (vs.phase, vs.done, vs.total),
        (pb::TypePhase::Importing as i32, 120, 500)
    );
    let err = c
        .get_schema(pb::GetSchemaRequest {
            entity_types: vec!["Nope".into()],
        })
        .await
        .expect_err("unknown type");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("Nope"), "{}", err.message());

    let seqs = fx
        .journaled(vec![Fixture::patch(
            3,
            5000,
            vec![shotgun_cache_core::store::FieldChange::Set(
                "code".into(),
                shotgun_cache_core::model::Value::Text("renamed".into()),
            )],
        )])
        .await;
    let status = c
        .sync_status(pb::SyncStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.last_event_id, 4242);
    assert_eq!(status.journal_head, *seqs.last().expect("one entry"));
    assert!(status.last_applied_at.is_some());
    let shot = status
        .types
        .iter()
        .find(|t| t.entity_type == "Shot")
        .expect("Shot");
    assert_eq!(shot.live_count as i64, SHOTS);
    srv.stop().await;
}

async fn expect_invalid(
    c: &mut pb::query_service_client::QueryServiceClient<tonic::transport::Channel>,
    req: pb::FindRequest,
    needles: &[&str],
) {
    let err = c.find(req.clone()).await.expect_err("bad input is refused");
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "{req:?}: {}",
        err.message()
    );
    for n in needles {
        assert!(
            err.message().contains(n),
            "message {:?} should name {n:?}",
            err.message()
        );
    }
}

/// Every class of bad input gets INVALID_ARGUMENT naming what is at fault.
#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_fault() {
    let fx = Fixture::new().await;
    let srv = Server::start(&fx).await;
    let mut c = srv.client().await;
    expect_invalid(&mut c, find("Nope", None, &[]), &["Nope"]).await;
    expect_invalid(&mut c, find("", None, &[]), &["entity_type"]).await;
    expect_invalid(&mut c, find("Note", None, &[]), &["Note", "not cached"]).await;
    expect_invalid(
        &mut c,
        find(
            "Shot",
            Some(cond("nope", pb::Operator::Is, vec![s("x")])),
            &[],
        ),
        &["Shot.nope"],
    )
    .await;
    expect_invalid(&mut c, find("Shot", None, &["nope"]), &["Shot.nope"]).await;
    expect_invalid(
        &mut c,
        find("Shot", None, &["description"]),
        &["Shot.description", "not cached"],
    )
    .await;
    expect_invalid(
        &mut c,
        find(
            "Shot",
            Some(cond("description", pb::Operator::Is, vec![s("x")])),
            &[],
        ),
        &["Shot.description", "not cached"],
    )
    .await;
    expect_invalid(
        &mut c,
        find(
            "Shot",
            Some(cond("sg_flag", pb::Operator::GreaterThan, vec![i(1)])),
            &[],
        ),
        &["greater_than", "sg_flag"],
    )
    .await;
    expect_invalid(
        &mut c,
        find(
            "Shot",
            Some(cond("sg_cut_in", pb::Operator::Is, vec![s("ten")])),
            &[],
        ),
        &["ten", "sg_cut_in"],
    )
    .await;
    expect_invalid(
        &mut c,
        find(
            "Shot",
            Some(cond("code", pb::Operator::Unspecified, vec![s("x")])),
            &[],
        ),
        &["code", "OPERATOR_UNSPECIFIED"],
    )
    .await;
    expect_invalid(
        &mut c,
        find(
            "Shot",
            Some(cond("sg_cut_in", pb::Operator::Between, vec![i(1)])),
            &["sg_cut_in"],
        ),
        &["between"],
    )
    .await;
    expect_invalid(
        &mut c,
        find(
            "Shot",
            Some(cond(
                "code",
                pb::Operator::Is,
                vec![pb::Value { kind: None }],
            )),
            &[],
        ),
        &["code", "no member"],
    )
    .await;
    expect_invalid(
        &mut c,
        find(
            "Shot",
            Some(cond(
                "sg_sequence.Nope.code",
                pb::Operator::Is,
                vec![s("x")],
            )),
            &[],
        ),
        &["Nope"],
    )
    .await;
    expect_invalid(
        &mut c,
        pb::FindRequest {
            limit: 5001,
            ..find("Shot", None, &[])
        },
        &["5001", "5000"],
    )
    .await;
    let mut sort_req = find("Shot", None, &[]);
    sort_req.sorts = vec![pb::Sort {
        field: "nope".into(),
        direction: 0,
    }];
    expect_invalid(&mut c, sort_req, &["Shot.nope"]).await;
    // A deep-link path around a cycle of links may be valid at any length: it is bounded (a
    // path of hundreds of hops aborted the process on a stack overflow).
    let long_path = format!("{}code", "sg_sequence.Sequence.".repeat(13));
    expect_invalid(
        &mut c,
        find(
            "Shot",
            Some(cond(&long_path, pb::Operator::Is, vec![s("x")])),
            &[],
        ),
        &["follows 13 links", "at most 12"],
    )
    .await;
    expect_invalid(
        &mut c,
        find("Shot", None, &[long_path.as_str()]),
        &["follows 13 links"],
    )
    .await;
    // Counts of return fields and sort keys are bounded (an answer's memory is rows x fields).
    let many: Vec<String> = (0..1001).map(|n| format!("code{n}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    expect_invalid(&mut c, find("Shot", None, &many), &["1001 fields", "1000"]).await;
    let mut sort_req = find("Shot", None, &[]);
    sort_req.sorts = (0..65)
        .map(|_| pb::Sort {
            field: "code".into(),
            direction: 0,
        })
        .collect();
    expect_invalid(&mut c, sort_req, &["65 sorts", "64"]).await;
    // The same path many times is one return field, within the bound.
    let same = vec!["code"; 1000];
    let r = c
        .find(find("Shot", None, &same))
        .await
        .expect("1,000 copies of one field")
        .into_inner();
    assert!(r.records.iter().all(|rec| rec.fields.len() == 1));
    // Filter depth over the shared limit.
    let mut deep = cond("code", pb::Operator::Is, vec![s("x")]);
    for _ in 0..70 {
        deep = group(pb::LogicalOperator::And, vec![deep]);
    }
    expect_invalid(
        &mut c,
        find("Shot", Some(deep), &[]),
        &["nested too deeply"],
    )
    .await;
    // Within the decoder's limit, the shared validation's depth limit applies with its message.
    let mut deep = cond("code", pb::Operator::Is, vec![s("x")]);
    for _ in 0..40 {
        deep = group(pb::LogicalOperator::And, vec![deep]);
    }
    let r = c.find(find("Shot", Some(deep), &[])).await;
    assert_eq!(
        r.expect("40 nested groups are fine")
            .into_inner()
            .records
            .len(),
        0
    );
    srv.stop().await;
}

/// Request size and deadlines give RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED, never a hang.
#[tokio::test]
async fn limits_size_and_deadline() {
    let fx = Fixture::new().await;
    let mut opts = fast_options();
    opts.max_request_bytes = 64 * 1024;
    let srv = Server::start_with(&fx, config(&fx.path, "", &[]), opts).await;
    let mut c = srv.client().await;
    let big: Vec<pb::Value> = (0..20_000).map(|n| s(&format!("code-{n:08}"))).collect();
    let err = c
        .find(find("Shot", Some(cond("code", pb::Operator::In, big)), &[]))
        .await
        .expect_err("too large");
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    // The server still serves afterwards.
    c.count(pb::CountRequest {
        entity_type: "Shot".into(),
        ..Default::default()
    })
    .await
    .expect("still serving");
    srv.stop().await;

    let mut opts = fast_options();
    opts.call_cap = Duration::from_nanos(1);
    let srv = Server::start_with(&fx, config(&fx.path, "", &[]), opts).await;
    let mut c = srv.client().await;
    let err = c
        .find(find("Shot", None, &["code"]))
        .await
        .expect_err("deadline");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{}", err.message());
    srv.stop().await;
}

/// A type in its first import is refused with its progress; re-importing types stay served.
#[tokio::test]
async fn partial_import_is_never_served() {
    let fx = Fixture::new().await;
    let srv = Server::start(&fx).await;
    let mut c = srv.client().await;
    let err = c
        .find(find("Version", None, &["code"]))
        .await
        .expect_err("importing");
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        err.message(),
        "type Version is still being imported: 120/500 (24%)"
    );
    let err = c
        .count(pb::CountRequest {
            entity_type: "Version".into(),
            ..Default::default()
        })
        .await
        .expect_err("importing count");
    assert_eq!(err.code(), Code::Unavailable);

    fx.set_state(TypeState {
        entity_type: "Version".into(),
        phase: TypePhase::Ready,
        done: 1,
        total: 1,
        config_hash: "fixture".into(),
        ready_at: None,
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let r = loop {
        match c
            .find(find("Version", None, &["code", "entity.Shot.code"]))
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(e) if e.code() == Code::Unavailable && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("Version never became servable: {e}"),
        }
    };
    assert_eq!(ids(&r.records), vec![1]);
    assert_eq!(
        text(&r.records[0], "entity.Shot.code").as_deref(),
        Some("sh0001")
    );

    // Shot goes into a re-import: still served from the live copy.
    fx.set_state(TypeState {
        phase: TypePhase::Reimporting,
        done: 3,
        total: 200,
        ..ready("Shot", 200)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = c
        .count(pb::CountRequest {
            entity_type: "Shot".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        r.expect("reimporting is served").into_inner().count as i64,
        SHOTS
    );
    // A deep link into an importing type is refused too.
    fx.set_state(TypeState {
        phase: TypePhase::Importing,
        done: 2,
        total: 5,
        ..ready("Sequence", 5)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = c
        .find(find(
            "Shot",
            Some(cond(
                "sg_sequence.Sequence.code",
                pb::Operator::Is,
                vec![s("SEQ_01")],
            )),
            &[],
        ))
        .await
        .expect_err("deep link into importing type");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message()
            .contains("type Sequence is still being imported: 2/5 (40%)"),
        "{}",
        err.message()
    );
    srv.stop().await;
}

/// Bearer tokens guard QueryService; health and reflection stay open.
#[tokio::test]
async fn auth_tokens() {
    let fx = Fixture::new().await;
    let cfg = config(
        &fx.path,
        "[auth]\nrequired = true\n",
        &[("SHOTGUN_CACHE_AUTH__TOKENS", "tok-one,tok-two")],
    );
    let srv = Server::start_with(&fx, cfg, fast_options()).await;
    let ch = srv.channel().await;
    let mut plain = pb::query_service_client::QueryServiceClient::new(ch.clone());
    let err = plain
        .count(pb::CountRequest {
            entity_type: "Shot".into(),
            ..Default::default()
        })
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    for (token, ok) in [
        ("tok-two", true),
        ("tok-one", true),
        ("tok-on", false),
        ("tok-one ", false),
        ("", false),
    ] {
        let value: tonic::metadata::MetadataValue<_> =
            format!("Bearer {token}").parse().expect("ascii");
        let mut c = pb::query_service_client::QueryServiceClient::with_interceptor(
            ch.clone(),
            move |mut req: tonic::Request<()>| {
                req.metadata_mut().insert("authorization", value.clone());
                Ok(req)
            },
        );
        let r = c
            .count(pb::CountRequest {
                entity_type: "Shot".into(),
                ..Default::default()
            })
            .await;
        match (r, ok) {
            (Ok(r), true) => assert_eq!(r.into_inner().count as i64, SHOTS),
            (Err(e), false) => assert_eq!(e.code(), Code::Unauthenticated, "token {token:?}"),
            (r, _) => panic!("token {token:?}: unexpected {r:?}"),
        }
    }
    // Health (no token) — wait_serving used it already; reflection too.
    let mut refl =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(ch.clone());
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut stream = refl
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    let resp = stream
        .message()
        .await
        .expect("reflection answer")
        .expect("one message");
    let listed = format!("{:?}", resp.message_response);
    assert!(listed.contains("shotgun_cache.v1.QueryService"), "{listed}");
    srv.stop().await;
}

/// gzip both ways, the admin port (metrics, health, readiness), and v1alpha reflection.
#[tokio::test]
async fn gzip_admin_and_reflection_v1alpha() {
    let fx = Fixture::new().await;
    let srv = Server::start(&fx).await;
    let mut c = srv
        .client()
        .await
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let r = c
        .find(pb::FindRequest {
            limit: 5000,
            ..find("Shot", None, &["code"])
        })
        .await
        .expect("gzip find");
    assert_eq!(r.into_inner().records.len() as i64, SHOTS);

    let mut refl =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(
            srv.channel().await,
        );
    let req = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut stream = refl
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .expect("v1alpha")
        .into_inner();
    let listed = format!(
        "{:?}",
        stream
            .message()
            .await
            .expect("answer")
            .expect("one")
            .message_response
    );
    assert!(
        listed.contains("shotgun_cache.v1.QueryService")
            && listed.contains("grpc.health.v1.Health"),
        "{listed}"
    );

    let metrics = http_get(srv.admin, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("grpc_server_handled_total"), "{metrics}");
    assert!(metrics.contains("method=\"Find\""), "{metrics}");
    assert!(metrics.contains("store_query_seconds"), "{metrics}");
    assert!(
        http_get(srv.admin, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        http_get(srv.admin, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    srv.stop().await;
}

/// A minimal HTTP/1.1 GET (the admin port speaks plain HTTP).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

/// Graceful shutdown: health turns NOT_SERVING at once, calls are still answered while draining,
/// then the server stops.
#[tokio::test]
async fn graceful_shutdown_drains_as_not_serving() {
    let fx = Fixture::new().await;
    let cfg = config(&fx.path, "", &[]);
    let mut cfg2 = cfg.clone();
    cfg2.query_server.drain_secs = 2;
    let mut srv = Server::start_with(&fx, cfg2, fast_options()).await;
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    assert_eq!(srv.health().await, serving);
    let mut c = srv.client().await;
    srv.signal_stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(srv.health().await, not_serving);
    let n = c
        .count(pb::CountRequest {
            entity_type: "Shot".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        n.expect("served while draining").into_inner().count as i64,
        SHOTS
    );
    let t = std::time::Instant::now();
    srv.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stopped soon after the drain"
    );
    let _ = cfg;
}

/// TLS from a cert and key file: a TLS client with the CA gets answers; a plaintext one does not.
#[tokio::test]
async fn tls_from_cert_and_key_files() {
    let fx = Fixture::new().await;
    let dir = fx.dir.path();
    let (cert, key, ca) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    // A test CA and a server certificate it signs (webpki refuses a CA used as the end entity).
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    let script = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem \
                  && openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout key.pem -out leaf.csr \
                  && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
                     -extfile ext.cnf -out cert.pem";
    let st = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl to make test certificates");
    assert!(st.success(), "openssl failed");
    let extra = format!(
        "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    // `extra` lands inside the [query_server] table of the test config.
    let srv = Server::start_unchecked(&fx, config(&fx.path, &extra, &[]), fast_options()).await;
    let pem = std::fs::read(&ca).expect("ca cert");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pem))
        .domain_name("localhost");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let count = loop {
        let ch = tonic::transport::Channel::from_shared(format!("https://{}", srv.grpc))
            .expect("url")
            .tls_config(tls.clone())
            .expect("tls config");
        if let Ok(ch) = ch.connect().await {
            let mut c = pb::query_service_client::QueryServiceClient::new(ch);
            match c
                .count(pb::CountRequest {
                    entity_type: "Shot".into(),
                    ..Default::default()
                })
                .await
            {
                Ok(r) => break r.into_inner().count,
                Err(e)
                    if e.code() == Code::Unavailable && tokio::time::Instant::now() < deadline => {}
                Err(e) => panic!("TLS count failed: {e}"),
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no TLS answer within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(count as i64, SHOTS);
    let mut plain = pb::query_service_client::QueryServiceClient::new(
        tonic::transport::Channel::from_shared(srv.url())
            .expect("url")
            .connect_lazy(),
    );
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        plain.count(pb::CountRequest {
            entity_type: "Shot".into(),
            ..Default::default()
        }),
    )
    .await
    .expect("a plaintext call fails quickly")
    .expect_err("plaintext is refused");
    assert_ne!(err.code(), Code::Ok);
    srv.stop().await;
}
