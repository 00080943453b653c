//! api3 `read` and `summarize` (protocol §2.3, §2.7): deciding whether the cache can answer a call
//! exactly, translating it into a store query, and shaping the answer as the site shapes it.
//!
//! A call is answered from the cache only when every type, field, filter, sort and option in it is
//! cached and understood; otherwise the planner returns [`NotAnswerable`] with the reason, and the
//! endpoint forwards the call to the site (or refuses it, per `api3.forward`). Bad requests (unknown
//! fields, wrong operators) are not answerable either: the site words its own faults.

use serde_json::{Map, Value as Json, json};
use shotgun_cache_core::filter::{
    Condition, FieldPath, Filter, LogicalOp, Operand, Operator, parse::parse_any, validate,
    validate_path,
};
use shotgun_cache_core::model::{DataType, Value};
use shotgun_cache_core::query::{Direction, FindQuery, Record, Sort};
use shotgun_cache_core::summarize::{self, SummarizeRequest};

use crate::catalog::CatalogSnapshot;

/// Why the cache cannot answer a call itself (phrased to follow "cannot be answered from the cache: ").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotAnswerable(pub(crate) String);

impl std::fmt::Display for NotAnswerable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn na(msg: impl Into<String>) -> NotAnswerable {
    NotAnswerable(msg.into())
}

/// The largest page the cache serves (the client asks for `api_max_entities_per_page`, 500).
pub(crate) const MAX_PAGE: u64 = 5000;

/// A `read` the cache will answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReadPlan {
    /// The store query; `limit` is one more than the page size, to learn `has_next_page`.
    pub(crate) query: FindQuery,
    pub(crate) per_page: u64,
    pub(crate) page: u64,
    /// The return fields as requested (in order, duplicates dropped), for shaping.
    pub(crate) return_fields: Vec<String>,
    /// The client asked for `paging_info` with counts (`return_paging_info`, servers before 7.4).
    pub(crate) want_count: bool,
}

/// A `summarize` the cache will answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SummarizePlan {
    pub(crate) query: FindQuery,
    pub(crate) request: SummarizeRequest,
    /// The data type of every summary and grouping field (for [`summarize::summarize`]).
    pub(crate) data_types: Vec<(String, DataType)>,
}

fn str_param<'a>(p: &'a Json, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Json::as_str)
}

/// Resolves `path` on `entity_type` and checks that everything it reads is cached.
fn cached_path(
    snap: &CatalogSnapshot,
    entity_type: &str,
    path: &str,
    usage: &str,
) -> Result<FieldPath, NotAnswerable> {
    let schema = snap.schema().map_err(|e| na(e.to_string()))?;
    let fp = validate_path(schema, entity_type, path)
        .map_err(|e| na(format!("{usage} '{path}': {e}")))?;
    snap.check_path_cached(entity_type, &fp, usage)
        .map_err(|e| na(e.to_string()))?;
    Ok(fp)
}

/// The validated filter of a call (`filters` absent or null matches every row), with every path
/// it reads checked against the cache.
fn cached_filter(
    snap: &CatalogSnapshot,
    entity_type: &str,
    p: &Json,
) -> Result<Filter, NotAnswerable> {
    let schema = snap.schema().map_err(|e| na(e.to_string()))?;
    let filter = match p.get("filters") {
        None | Some(Json::Null) => Filter::all(),
        Some(f) => {
            let raw = parse_any(f).map_err(|e| na(format!("filters: {e}")))?;
            validate(schema, entity_type, &raw).map_err(|e| na(format!("filters: {e}")))?
        }
    };
    let mut paths = Vec::new();
    collect_paths(&filter, &mut paths);
    for path in paths {
        snap.check_path_cached(entity_type, path, "filter")
            .map_err(|e| na(e.to_string()))?;
    }
    let filter = with_archived_rule(snap, entity_type, p, filter)?;
    Ok(filter)
}

fn collect_paths<'a>(f: &'a Filter, out: &mut Vec<&'a FieldPath>) {
    match f {
        Filter::Condition(c) => out.push(&c.path),
        Filter::Group { children, .. } => children.iter().for_each(|c| collect_paths(c, out)),
    }
}

/// `include_archived_projects: false` (sent only when false; the server default is true) drops rows
/// whose project is archived: answered by `project.Project.archived is_not true` when both are cached.
fn with_archived_rule(
    snap: &CatalogSnapshot,
    entity_type: &str,
    p: &Json,
    filter: Filter,
) -> Result<Filter, NotAnswerable> {
    if p.get("include_archived_projects") != Some(&Json::Bool(false)) {
        return Ok(filter);
    }
    let path = cached_path(
        snap,
        entity_type,
        "project.Project.archived",
        "include_archived_projects",
    )
    .map_err(|e| {
        na(format!(
            "include_archived_projects=false needs project.Project.archived cached ({e})"
        ))
    })?;
    let rule = Filter::Condition(Condition {
        path,
        operator: Operator::IsNot,
        operand: Operand::One(Value::Bool(true)),
    });
    Ok(Filter::Group {
        op: LogicalOp::And,
        children: vec![filter, rule],
    })
}

/// Rejects the options the cache does not implement.
fn check_options(p: &Json) -> Result<(), NotAnswerable> {
    match p.get("additional_filter_presets") {
        None | Some(Json::Null) => {}
        Some(Json::Array(a)) if a.is_empty() => {}
        Some(_) => {
            return Err(na(
                "additional_filter_presets are evaluated by the site only",
            ));
        }
    }
    Ok(())
}

fn served_type<'a>(snap: &CatalogSnapshot, p: &'a Json) -> Result<&'a str, NotAnswerable> {
    let entity_type = str_param(p, "type").ok_or_else(|| na("the call names no entity type"))?;
    snap.check_served_type(entity_type)
        .map_err(|e| na(e.to_string()))?;
    Ok(entity_type)
}

/// Plans a `read`.
pub(crate) fn plan_read(snap: &CatalogSnapshot, p: &Json) -> Result<ReadPlan, NotAnswerable> {
    let entity_type = served_type(snap, p)?;
    check_options(p)?;
    let filter = cached_filter(snap, entity_type, p)?;

    let requested: Vec<String> = match p.get("return_fields") {
        None | Some(Json::Null) => vec!["id".to_owned()],
        Some(Json::Array(a)) => a
            .iter()
            .map(|f| {
                f.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| na(format!("return field {f} is not a string")))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(na(format!("return_fields must be a list, got {other}"))),
    };
    if requested.len() > crate::service::MAX_FIELDS {
        return Err(na(format!(
            "{} return fields requested; the cache answers at most {}",
            requested.len(),
            crate::service::MAX_FIELDS
        )));
    }
    let mut return_fields: Vec<String> = Vec::new();
    let mut fields = Vec::new();
    let mut seen = std::collections::HashSet::with_capacity(requested.len());
    for f in requested {
        if !seen.insert(f.clone()) {
            continue;
        }
        if f != "id" && f != "type" {
            let fp = cached_path(snap, entity_type, &f, "return field")?;
            if matches!(fp.leaf_type, DataType::Image | DataType::Url) {
                // The cache keeps attachment ids; the site answers with signed URLs it alone can make.
                return Err(na(format!(
                    "return field '{f}' is a {} field: the site signs its URLs",
                    fp.leaf_type.as_str()
                )));
            }
            fields.push(fp);
        }
        return_fields.push(f);
    }

    let mut sorts = Vec::new();
    match p.get("sorts") {
        None | Some(Json::Null) => {}
        Some(Json::Array(a)) => {
            for s in a {
                let field = str_param(s, "field_name")
                    .ok_or_else(|| na(format!("sort {s} has no field_name")))?;
                let direction = match str_param(s, "direction").unwrap_or("asc") {
                    "asc" => Direction::Asc,
                    "desc" => Direction::Desc,
                    other => {
                        return Err(na(format!("sort direction '{other}' is not asc or desc")));
                    }
                };
                let path = cached_path(snap, entity_type, field, "sort")?;
                if matches!(
                    path.leaf_type,
                    DataType::Image | DataType::Url | DataType::Uuid
                ) {
                    return Err(na(format!(
                        "sorting on the {} field '{field}'",
                        path.leaf_type.as_str()
                    )));
                }
                sorts.push(Sort { path, direction });
            }
        }
        Some(other) => return Err(na(format!("sorts must be a list, got {other}"))),
    }

    let paging = p.get("paging").cloned().unwrap_or(Json::Null);
    let per_page = paging
        .get("entities_per_page")
        .and_then(Json::as_u64)
        .unwrap_or(500);
    let page = paging
        .get("current_page")
        .and_then(Json::as_u64)
        .unwrap_or(1);
    if per_page == 0 || per_page > MAX_PAGE || page == 0 {
        return Err(na(format!(
            "paging {paging} is outside what the cache serves (1..={MAX_PAGE} per page, pages from 1)"
        )));
    }
    let retired_only = match str_param(p, "return_only").unwrap_or("active") {
        "active" => false,
        "retired" => true,
        other => {
            return Err(na(format!(
                "return_only '{other}' is not active or retired"
            )));
        }
    };
    let want_count = p
        .get("return_paging_info")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let query = FindQuery {
        entity_type: entity_type.to_owned(),
        filter,
        fields,
        sorts,
        offset: (page - 1).saturating_mul(per_page),
        limit: Some(per_page + 1),
        retired_only,
    };
    Ok(ReadPlan {
        query,
        per_page,
        page,
        return_fields,
        want_count,
    })
}

/// Shapes one record as the site does: `type` and `id` always, then every requested field that the
/// record has (a deep link through a multi_entity hop is absent, as on the site).
pub(crate) fn shape_record(r: &Record, return_fields: &[String]) -> Json {
    let mut m = Map::new();
    m.insert("type".into(), Json::String(r.entity_type.clone()));
    m.insert("id".into(), Json::from(r.id));
    for f in return_fields {
        if f == "id" || f == "type" {
            continue;
        }
        if let Some(v) = r.fields.get(f) {
            m.insert(f.clone(), v.to_json());
        }
    }
    Json::Object(m)
}

/// The `read` answer for one page of rows fetched with `limit = per_page + 1`.
pub(crate) fn read_answer(
    plan: &ReadPlan,
    mut rows: Vec<Record>,
    entity_count: Option<u64>,
) -> Json {
    let per_page = usize::try_from(plan.per_page).unwrap_or(usize::MAX);
    let has_next_page = rows.len() > per_page;
    rows.truncate(per_page);
    let entities: Vec<Json> = rows
        .iter()
        .map(|r| shape_record(r, &plan.return_fields))
        .collect();
    let mut paging_info = json!({ "has_next_page": has_next_page });
    if let Some(n) = entity_count {
        paging_info["entity_count"] = json!(n);
        paging_info["current_page"] = json!(plan.page);
        paging_info["entities_per_page"] = json!(plan.per_page);
        paging_info["page_count"] = json!(n.div_ceil(plan.per_page));
    }
    json!({ "entities": entities, "paging_info": paging_info })
}

/// Plans a `summarize`.
pub(crate) fn plan_summarize(
    snap: &CatalogSnapshot,
    p: &Json,
) -> Result<SummarizePlan, NotAnswerable> {
    let entity_type = served_type(snap, p)?;
    check_options(p)?;
    let filter = cached_filter(snap, entity_type, p)?;
    let request =
        summarize::parse_wire(p.get("summaries").unwrap_or(&Json::Null), p.get("grouping"))
            .map_err(|e| na(e.to_string()))?;
    let mut data_types = Vec::new();
    let mut fields = Vec::new();
    for f in request
        .summaries
        .iter()
        .map(|s| &s.field)
        .chain(request.grouping.iter().map(|g| &g.field))
    {
        if data_types.iter().any(|(k, _)| k == f) {
            continue;
        }
        if f == "id" {
            data_types.push((f.clone(), DataType::Number));
            continue;
        }
        let fp = cached_path(snap, entity_type, f, "summary field")?;
        data_types.push((f.clone(), fp.leaf_type));
        fields.push(fp);
    }
    let lookup = |f: &str| data_types.iter().find(|(k, _)| k == f).map(|(_, t)| *t);
    summarize::check_supported(&request, &lookup).map_err(|e| na(e.to_string()))?;
    let query = FindQuery {
        entity_type: entity_type.to_owned(),
        filter,
        fields,
        sorts: Vec::new(),
        offset: 0,
        limit: None,
        retired_only: false,
    };
    Ok(SummarizePlan {
        query,
        request,
        data_types,
    })
}

/// `schema_read`, `schema_entity_read` and `schema_field_read` from the persisted site schema.
/// Per-project schemas (`project` given) are the site's to answer.
pub(crate) fn schema_answer(
    snap: &CatalogSnapshot,
    method: &str,
    p: &Json,
) -> Result<Json, NotAnswerable> {
    if p.get("project").is_some_and(|v| !v.is_null()) {
        return Err(na("per-project schemas are answered by the site"));
    }
    let schema = snap.schema().map_err(|e| na(e.to_string()))?;
    match method {
        "schema_read" => Ok(schema.to_schema_read_json(None)),
        "schema_entity_read" => Ok(Json::Object(
            schema
                .types
                .iter()
                .map(|(name, t)| (name.clone(), t.raw.clone()))
                .collect(),
        )),
        "schema_field_read" => {
            let entity_type =
                str_param(p, "type").ok_or_else(|| na("schema_field_read names no type"))?;
            let t = schema.entity(entity_type).ok_or_else(|| {
                na(format!(
                    "entity type '{entity_type}' is not in the cached schema"
                ))
            })?;
            match str_param(p, "field_name") {
                Some(f) => {
                    let field = t.field(f).ok_or_else(|| {
                        na(format!(
                            "field {entity_type}.{f} is not in the cached schema"
                        ))
                    })?;
                    Ok(json!({ f: field.raw }))
                }
                None => Ok(Json::Object(
                    t.fields
                        .iter()
                        .map(|(f, s)| (f.clone(), s.raw.clone()))
                        .collect(),
                )),
            }
        }
        other => Err(na(format!("method {other} is not a schema read"))),
    }
}

#[cfg(test)]
pub(crate) mod tests;
