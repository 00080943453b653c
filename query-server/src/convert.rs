//! Wire ↔ domain conversion: the only place that knows both the generated `shotgun_cache.v1`
//! types and the domain types of `shotgun-cache-core`.
//!
//! Inbound, a proto filter becomes a [`RawFilter`] whose values are the api3 JSON forms, so the
//! shared validation (`filter::validate`) does all the checking and its error messages are the
//! ones every other entry point gives. Only what cannot be expressed as JSON is rejected here
//! (an unspecified operator, a value with no member set, a non-finite double, bad JSON text).
//!
//! Outbound, domain records, values, schema and journal entries become proto messages.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use shotgun_cache_core::filter::{LogicalOp, Operator, RawCondition, RawFilter};
use shotgun_cache_core::model::{Date, DateTime, EntityRef, Value};
use shotgun_cache_core::query::{Direction, Record};
use shotgun_cache_core::store::{JournalOp, TypePhase, TypeState};
use shotgun_cache_proto::v1 as pb;

use crate::error::{QueryError, invalid};
use crate::service::{
    CountParams, FindParams, SortParam, SyncStatus, TypeInfo, TypeStatusInfo, WatchChange,
    WatchItem, WatchParams, WatchStart,
};

/// The deepest proto filter nesting converted (deeper trees are refused before recursing further).
/// The shared validation applies its own, smaller, depth limit with its own message.
const MAX_WIRE_DEPTH: usize = 256;

// ---------------------------------------------------------------------------------------------
// Inbound: proto → domain.

pub(crate) fn operator_from_pb(op: i32, path: &str) -> Result<Operator, QueryError> {
    use pb::Operator as P;
    let p = P::try_from(op).map_err(|_| {
        invalid(format!(
            "filter condition on '{path}': unknown operator number {op}"
        ))
    })?;
    Ok(match p {
        P::Unspecified => {
            return Err(invalid(format!(
                "filter condition on '{path}': operator is OPERATOR_UNSPECIFIED (set one)"
            )));
        }
        P::Is => Operator::Is,
        P::IsNot => Operator::IsNot,
        P::LessThan => Operator::LessThan,
        P::GreaterThan => Operator::GreaterThan,
        P::Contains => Operator::Contains,
        P::NotContains => Operator::NotContains,
        P::StartsWith => Operator::StartsWith,
        P::EndsWith => Operator::EndsWith,
        P::Between => Operator::Between,
        P::NotBetween => Operator::NotBetween,
        P::In => Operator::In,
        P::NotIn => Operator::NotIn,
        P::InLast => Operator::InLast,
        P::NotInLast => Operator::NotInLast,
        P::InNext => Operator::InNext,
        P::NotInNext => Operator::NotInNext,
        P::InCalendarDay => Operator::InCalendarDay,
        P::InCalendarWeek => Operator::InCalendarWeek,
        P::InCalendarMonth => Operator::InCalendarMonth,
        P::InCalendarYear => Operator::InCalendarYear,
        P::TypeIs => Operator::TypeIs,
        P::TypeIsNot => Operator::TypeIsNot,
        P::NameIs => Operator::NameIs,
        P::NameContains => Operator::NameContains,
        P::NameNotContains => Operator::NameNotContains,
        P::NameStartsWith => Operator::NameStartsWith,
        P::NameEndsWith => Operator::NameEndsWith,
    })
}

/// The proto operator for a domain operator (every domain operator has one).
pub fn operator_to_pb(op: Operator) -> pb::Operator {
    use pb::Operator as P;
    match op {
        Operator::Is => P::Is,
        Operator::IsNot => P::IsNot,
        Operator::LessThan => P::LessThan,
        Operator::GreaterThan => P::GreaterThan,
        Operator::Contains => P::Contains,
        Operator::NotContains => P::NotContains,
        Operator::StartsWith => P::StartsWith,
        Operator::EndsWith => P::EndsWith,
        Operator::Between => P::Between,
        Operator::NotBetween => P::NotBetween,
        Operator::In => P::In,
        Operator::NotIn => P::NotIn,
        Operator::InLast => P::InLast,
        Operator::NotInLast => P::NotInLast,
        Operator::InNext => P::InNext,
        Operator::NotInNext => P::NotInNext,
        Operator::InCalendarDay => P::InCalendarDay,
        Operator::InCalendarWeek => P::InCalendarWeek,
        Operator::InCalendarMonth => P::InCalendarMonth,
        Operator::InCalendarYear => P::InCalendarYear,
        Operator::TypeIs => P::TypeIs,
        Operator::TypeIsNot => P::TypeIsNot,
        Operator::NameIs => P::NameIs,
        Operator::NameContains => P::NameContains,
        Operator::NameNotContains => P::NameNotContains,
        Operator::NameStartsWith => P::NameStartsWith,
        Operator::NameEndsWith => P::NameEndsWith,
    }
}

fn entity_ref_json(r: &pb::EntityRef) -> Json {
    serde_json::json!({"type": r.r#type, "id": r.id, "name": r.name})
}

/// A proto value as its api3 JSON form (what the shared validation parses).
pub(crate) fn value_to_json(v: &pb::Value, path: &str) -> Result<Json, QueryError> {
    use pb::value::Kind;
    let Some(kind) = &v.kind else {
        return Err(invalid(format!(
            "filter condition on '{path}': a value has no member set (use null_value for null)"
        )));
    };
    Ok(match kind {
        Kind::NullValue(_) => Json::Null,
        Kind::BoolValue(b) => Json::Bool(*b),
        Kind::IntValue(i) => Json::from(*i),
        Kind::DoubleValue(d) => serde_json::Number::from_f64(*d)
            .map(Json::Number)
            .ok_or_else(|| {
                invalid(format!(
                    "filter condition on '{path}': double value {d} is not finite"
                ))
            })?,
        Kind::StringValue(s) => Json::String(s.clone()),
        Kind::DateValue(d) => Json::String(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)),
        Kind::TimestampValue(t) => {
            let dt = DateTime(t.seconds);
            Json::String(dt.to_string())
        }
        Kind::EntityValue(r) => entity_ref_json(r),
        Kind::EntitiesValue(list) => Json::Array(list.refs.iter().map(entity_ref_json).collect()),
        Kind::JsonValue(text) => serde_json::from_str(text).map_err(|e| {
            invalid(format!(
                "filter condition on '{path}': json_value is not valid JSON: {e}"
            ))
        })?,
    })
}

/// A proto filter tree as a [`RawFilter`]. `None` (no filter, or a Filter with no node) matches all.
pub(crate) fn filter_from_pb(f: Option<&pb::Filter>) -> Result<Option<RawFilter>, QueryError> {
    match f {
        None => Ok(None),
        Some(f) if f.node.is_none() => Ok(None),
        Some(f) => filter_node(f, 1).map(Some),
    }
}

fn filter_node(f: &pb::Filter, depth: usize) -> Result<RawFilter, QueryError> {
    use pb::filter::Node;
    if depth > MAX_WIRE_DEPTH {
        return Err(QueryError::ResourceExhausted(format!(
            "filter nesting is deeper than {MAX_WIRE_DEPTH} levels"
        )));
    }
    match &f.node {
        None => Ok(RawFilter::Group {
            op: LogicalOp::And,
            children: Vec::new(),
        }),
        Some(Node::Condition(c)) => {
            let op = operator_from_pb(c.operator, &c.path)?;
            let values = c
                .values
                .iter()
                .map(|v| value_to_json(v, &c.path))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RawFilter::Condition(RawCondition {
                path: c.path.clone(),
                relation: op.as_str().to_owned(),
                values,
            }))
        }
        Some(Node::Group(g)) => {
            let op = match pb::LogicalOperator::try_from(g.op) {
                Ok(pb::LogicalOperator::Unspecified | pb::LogicalOperator::And) => LogicalOp::And,
                Ok(pb::LogicalOperator::Or) => LogicalOp::Or,
                Err(_) => {
                    return Err(invalid(format!(
                        "filter group: unknown logical operator number {}",
                        g.op
                    )));
                }
            };
            let children = g
                .children
                .iter()
                .map(|c| filter_node(c, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RawFilter::Group { op, children })
        }
    }
}

fn sorts_from_pb(sorts: &[pb::Sort]) -> Result<Vec<SortParam>, QueryError> {
    sorts
        .iter()
        .map(|s| {
            let direction = match pb::SortDirection::try_from(s.direction) {
                Ok(pb::SortDirection::Unspecified | pb::SortDirection::Asc) => Direction::Asc,
                Ok(pb::SortDirection::Desc) => Direction::Desc,
                Err(_) => {
                    return Err(invalid(format!(
                        "sort on '{}': unknown direction number {}",
                        s.field, s.direction
                    )));
                }
            };
            Ok(SortParam {
                path: s.field.clone(),
                direction,
            })
        })
        .collect()
}

pub(crate) fn find_from_pb(r: &pb::FindRequest) -> Result<FindParams, QueryError> {
    Ok(FindParams {
        entity_type: r.entity_type.clone(),
        filter: filter_from_pb(r.filter.as_ref())?,
        fields: r.fields.clone(),
        sorts: sorts_from_pb(&r.sorts)?,
        limit: r.limit,
        page: r.page,
        cursor: r.cursor.clone(),
        retired_only: r.retired_only,
    })
}

pub(crate) fn find_one_from_pb(r: &pb::FindOneRequest) -> Result<FindParams, QueryError> {
    Ok(FindParams {
        entity_type: r.entity_type.clone(),
        filter: filter_from_pb(r.filter.as_ref())?,
        fields: r.fields.clone(),
        sorts: sorts_from_pb(&r.sorts)?,
        limit: 1,
        page: 0,
        cursor: String::new(),
        retired_only: r.retired_only,
    })
}

pub(crate) fn count_from_pb(r: &pb::CountRequest) -> Result<CountParams, QueryError> {
    Ok(CountParams {
        entity_type: r.entity_type.clone(),
        filter: filter_from_pb(r.filter.as_ref())?,
        retired_only: r.retired_only,
    })
}

pub(crate) fn watch_from_pb(r: &pb::WatchRequest) -> Result<WatchParams, QueryError> {
    use pb::watch_request::Start;
    let start = match r.start {
        Some(Start::AfterSeq(s)) => WatchStart::After(s),
        Some(Start::FromNow(_)) | None => WatchStart::Now,
    };
    Ok(WatchParams {
        entity_types: r.entity_types.clone(),
        filter: filter_from_pb(r.filter.as_ref())?,
        start,
        fields: r.fields.clone(),
        heartbeat_secs: r.heartbeat_secs,
    })
}

// ---------------------------------------------------------------------------------------------
// Outbound: domain → proto.

fn entity_ref_to_pb(r: EntityRef) -> pb::EntityRef {
    pb::EntityRef {
        r#type: r.entity_type,
        id: r.id,
        name: r.name,
    }
}

pub(crate) fn timestamp(dt: DateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: dt.0,
        nanos: 0,
    }
}

fn date_to_pb(d: Date) -> pb::Date {
    pb::Date {
        year: d.0.year(),
        month: i32::from(u8::from(d.0.month())),
        day: i32::from(d.0.day()),
    }
}

/// A domain value as a proto value.
pub fn value_to_pb(v: &Value) -> pb::Value {
    value_into_pb(v.clone())
}

/// A value on the wire, moving its strings rather than copying them.
pub fn value_into_pb(v: Value) -> pb::Value {
    use pb::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(prost_types::NullValue::NullValue as i32),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Int(i) => Kind::IntValue(i),
        Value::Float(f) => Kind::DoubleValue(f),
        Value::Text(s) => Kind::StringValue(s),
        Value::Date(d) => Kind::DateValue(date_to_pb(d)),
        Value::DateTime(t) => Kind::TimestampValue(timestamp(t)),
        Value::Entity(r) => Kind::EntityValue(entity_ref_to_pb(r)),
        Value::MultiEntity(list) => Kind::EntitiesValue(pb::EntityRefList {
            refs: list.into_iter().map(entity_ref_to_pb).collect(),
        }),
        Value::Json(j) => Kind::JsonValue(j.to_string()),
    };
    pb::Value { kind: Some(kind) }
}

/// A record on the wire. Records are shared (a result cache's answer is the cache's own list), so
/// each value is copied once, into the wire type.
pub(crate) fn record_to_pb(r: &Record) -> pb::Record {
    pb::Record {
        r#type: r.entity_type.clone(),
        id: r.id,
        fields: r
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), value_into_pb(v.clone())))
            .collect(),
    }
}

fn phase_to_pb(p: TypePhase) -> pb::TypePhase {
    match p {
        TypePhase::Importing => pb::TypePhase::Importing,
        TypePhase::Ready => pb::TypePhase::Ready,
        TypePhase::Reimporting => pb::TypePhase::Reimporting,
    }
}

pub(crate) fn type_status_to_pb(
    entity_type: &str,
    state: Option<&TypeState>,
    counts: (u64, u64),
) -> pb::TypeStatus {
    pb::TypeStatus {
        entity_type: entity_type.to_owned(),
        phase: state.map_or(pb::TypePhase::Unspecified, |s| phase_to_pb(s.phase)) as i32,
        done: state.map_or(0, |s| s.done),
        total: state.map_or(0, |s| s.total),
        live_count: counts.0,
        retired_count: counts.1,
        ready_at: state.and_then(|s| s.ready_at).map(timestamp),
    }
}

fn type_status_info_to_pb(t: &TypeStatusInfo) -> pb::TypeStatus {
    type_status_to_pb(&t.entity_type, t.state.as_ref(), t.counts)
}

pub(crate) fn schema_to_pb(types: Vec<TypeInfo>) -> pb::GetSchemaResponse {
    pb::GetSchemaResponse {
        types: types
            .into_iter()
            .map(|t| pb::EntityTypeInfo {
                name: t.schema.name.clone(),
                display_name: t.schema.display_name.clone(),
                cached: t.cached,
                status: t.status.as_ref().map(type_status_info_to_pb),
                fields: t
                    .schema
                    .fields
                    .values()
                    .map(|f| pb::FieldInfo {
                        name: f.name.clone(),
                        display_name: f.display_name.clone(),
                        data_type: f.data_type.as_str().to_owned(),
                        valid_types: f.valid_types.clone(),
                        valid_values: f.valid_values.clone(),
                        cached: t.cached_fields.contains(&f.name),
                        indexed: t.indexed_fields.contains(&f.name),
                        raw_json: f.raw.to_string(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub(crate) fn sync_status_to_pb(s: SyncStatus) -> pb::SyncStatusResponse {
    pb::SyncStatusResponse {
        lag_seconds: s.lag_seconds,
        last_event_id: s.last_event_id,
        last_applied_at: s.last_applied_at.map(timestamp),
        journal_head: s.journal_head,
        types: s.types.iter().map(type_status_info_to_pb).collect(),
    }
}

fn op_to_pb(op: JournalOp) -> pb::ChangeOp {
    match op {
        JournalOp::Create => pb::ChangeOp::Create,
        JournalOp::Update => pb::ChangeOp::Update,
        JournalOp::Retire => pb::ChangeOp::Retire,
        JournalOp::Revive => pb::ChangeOp::Revive,
        JournalOp::Remove => pb::ChangeOp::Remove,
        JournalOp::Reload => pb::ChangeOp::Reload,
    }
}

pub(crate) fn change_to_pb(c: &WatchChange) -> pb::Change {
    let e = &c.entry;
    let entity = e.entity.as_ref().map(|ent| {
        let fields: BTreeMap<String, pb::Value> = ent
            .fields
            .iter()
            .filter(|(k, _)| {
                c.fields
                    .as_ref()
                    .is_none_or(|only| only.iter().any(|f| f == *k))
            })
            .map(|(k, v)| (k.clone(), value_to_pb(v)))
            .collect();
        pb::Record {
            r#type: ent.entity_type.clone(),
            id: ent.id,
            fields: fields.into_iter().collect(),
        }
    });
    pb::Change {
        seq: e.seq,
        event_id: e.event_id,
        entity_type: e.entity_type.clone(),
        entity_id: e.entity_id,
        op: op_to_pb(e.op) as i32,
        changed_fields: e.fields.clone(),
        applied_at: Some(timestamp(e.at)),
        retired: e.entity.as_ref().is_some_and(|ent| ent.retired),
        entity,
    }
}

pub(crate) fn watch_item_to_pb(item: &WatchItem) -> pb::WatchEvent {
    use pb::watch_event::Kind;
    let kind = match item {
        WatchItem::Change(c) => Kind::Change(change_to_pb(c)),
        WatchItem::Heartbeat {
            head_seq,
            resume_after_seq,
            at,
        } => Kind::Heartbeat(pb::Heartbeat {
            head_seq: *head_seq,
            resume_after_seq: *resume_after_seq,
            at: Some(timestamp(*at)),
        }),
    };
    pb::WatchEvent { kind: Some(kind) }
}

#[cfg(test)]
mod tests;
