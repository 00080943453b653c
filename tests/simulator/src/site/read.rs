//! Reads: find (filter, sort, page, project), count, summarize, single-row reads and the truth dump.
//!
//! Filters are parsed and validated by the shared semantics (`filter::parse::parse_any`,
//! `filter::validate`) and evaluated with the reference evaluator (`filter::matches`), so the site
//! answers exactly as the cache must. Two shapes are served without the evaluator because the syncer
//! lives on them: an empty filter, and filters made only of integer `id` comparisons (`greater_than`,
//! `less_than`, `is`, `between`), which become a range scan of the id-ordered table (keyset paging and
//! event polling). Any other filter scans the type (narrowed to an id range when the top-level `and`
//! has `id` bounds). Sorting on anything but `id` is delegated to `query::reference_find` over the
//! pre-filtered rows.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde_json::Value as Json;
use shotgun_cache_core::filter::{
    self, FieldPath, Filter, FilterError, Hop, LogicalOp, Operand, Operator,
};
use shotgun_cache_core::model::{DataType, DateTime, Entity, SiteSchema, Value};
use shotgun_cache_core::query::{self, Direction, FindQuery, Sort};

use super::state::{EVENT_TYPE, State, Subset};
use super::{SiteError, TruthRow};

/// A filter as a caller has it.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryFilter {
    /// Every row.
    All,
    /// Any wire form the shared parser accepts (REST array/hash, api3 wire, shotgun_api3 list).
    Wire(Json),
    /// Already validated.
    Typed(Filter),
}

/// Which fields to return.
#[derive(Debug, Clone, PartialEq)]
pub enum Fields {
    /// Every field of the type.
    All,
    /// These fields (plain or dotted); unknown ones are silently dropped, as the site does.
    Only(Vec<String>),
}

/// One sort key; unknown fields are silently ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub field: String,
    pub direction: Direction,
}

/// A find request.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub entity_type: String,
    pub filter: QueryFilter,
    pub fields: Fields,
    pub sorts: Vec<SortKey>,
    /// Rows to skip (`(page - 1) * size`).
    pub offset: usize,
    /// Rows to return at most (the page size).
    pub limit: usize,
    /// Tombstones instead of live rows.
    pub retired_only: bool,
    /// When false, rows whose `project` is an archived Project are left out.
    pub include_archived_projects: bool,
}

impl Query {
    /// All live rows of a type, id order, all fields.
    pub fn all(entity_type: &str) -> Query {
        Query {
            entity_type: entity_type.to_owned(),
            filter: QueryFilter::All,
            fields: Fields::All,
            sorts: Vec::new(),
            offset: 0,
            limit: usize::MAX,
            retired_only: false,
            include_archived_projects: true,
        }
    }
}

/// One returned field: its name as requested, the data type of its leaf, whether it is dotted, and the
/// value as the API reads it (link names live, links to retired rows dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct RowField {
    pub name: String,
    pub data_type: DataType,
    pub deep: bool,
    pub value: Value,
}

/// One returned row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub entity_type: String,
    pub id: i64,
    pub fields: Vec<RowField>,
}

impl Row {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.value)
    }
}

/// `_summarize` result: the total and, when grouped, one count per distinct value.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: u64,
    /// `(group value as JSON, display name, count)`, ordered by value.
    pub groups: Vec<(Json, String, u64)>,
}

/// Resolves a REST path segment: the CamelCase type name or its plural snake_case slug.
pub(crate) fn resolve_type(schema: &SiteSchema, segment: &str) -> Option<String> {
    if schema.types.contains_key(segment) {
        return Some(segment.to_owned());
    }
    schema.types.keys().find(|t| slug(t) == segment).cloned()
}

/// The plural snake_case slug of a type: `Shot` → `shots`, `HumanUser` → `human_users`,
/// `EventLogEntry` → `event_log_entries`, `Status` → `statuses`.
pub fn slug(entity_type: &str) -> String {
    let mut s = String::with_capacity(entity_type.len() + 4);
    for (i, c) in entity_type.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    let bytes = s.as_bytes();
    let n = bytes.len();
    if n >= 2 && bytes[n - 1] == b'y' && !b"aeiou".contains(&bytes[n - 2]) {
        s.pop();
        s.push_str("ies");
    } else if s.ends_with('s') || s.ends_with('x') || s.ends_with("ch") || s.ends_with("sh") {
        s.push_str("es");
    } else {
        s.push('s');
    }
    s
}

/// A field path as the projection and the sorter need it, resolved against the schema.
fn resolve_path(schema: &SiteSchema, entity_type: &str, raw: &str) -> Option<FieldPath> {
    let parts: Vec<&str> = raw.split('.').collect();
    if parts.len().is_multiple_of(2) {
        return None;
    }
    let mut current = entity_type.to_owned();
    let mut hops = Vec::new();
    let mut i = 0;
    while i + 2 < parts.len() {
        let fs = schema.field(&current, parts[i])?;
        if !fs.data_type.is_link() {
            return None;
        }
        let target = parts[i + 1];
        schema.entity(target)?;
        if !fs.valid_types.is_empty() && !fs.valid_types.iter().any(|t| t == target) {
            return None;
        }
        hops.push(Hop {
            field: parts[i].to_owned(),
            multi: fs.data_type == DataType::MultiEntity,
            target_type: target.to_owned(),
        });
        current = target.to_owned();
        i += 2;
    }
    let leaf = parts[parts.len() - 1];
    let leaf_type = if leaf == "id" {
        DataType::Number
    } else {
        schema.field(&current, leaf)?.data_type
    };
    Some(FieldPath {
        raw: raw.to_owned(),
        hops,
        leaf: leaf.to_owned(),
        leaf_type,
        leaf_entity_type: current,
    })
}

/// A value as the API returns it: [`State::read_value`] plus image attachment ids rendered as signed,
/// expiring URLs (or the "pending" URL while the thumbnail is transient).
fn api_value(st: &State, e: &Entity, field: &str, dt: DataType) -> Value {
    let v = st.read_value(e, field, dt);
    match (dt, &v) {
        (DataType::Image, Value::Int(a)) => Value::Text(image_url(st, *a)),
        _ => v,
    }
}

/// The URL an image field reads as. Signed per read, valid for 900 s, like the real site's S3 links.
pub(crate) fn image_url(st: &State, attachment: i64) -> String {
    if st.transient_attachments.contains(&attachment) {
        return "http://sg-media.invalid/images/status/transient/thumbnail_pending.png".to_owned();
    }
    let now = DateTime::now();
    let sig = super::events::uuid_for("sig", attachment ^ now.0).replace('-', "");
    format!(
        "http://sg-media.invalid/files/{attachment}/thumbnail.jpg?X-Amz-Date={}&X-Amz-Expires=900&X-Amz-Signature={sig}",
        now.0
    )
}

/// Reads one requested field of a row. `None`: the field is silently absent.
fn project_field(st: &State, e: &Entity, raw: &str) -> Option<RowField> {
    if !raw.contains('.') {
        let dt = st.data_type(&e.entity_type, raw)?;
        return Some(RowField {
            name: raw.to_owned(),
            data_type: dt,
            deep: false,
            value: api_value(st, e, raw, dt),
        });
    }
    let path = resolve_path(&st.schema, &e.entity_type, raw)?;
    if path.hops.iter().any(|h| h.multi) {
        // Dotted reads through multi_entity are absent (GT 016).
        return None;
    }
    let mut current: Option<&Entity> = Some(e);
    for hop in &path.hops {
        current = current.and_then(|row| match row.fields.get(&hop.field) {
            Some(Value::Entity(r)) if r.entity_type == hop.target_type => {
                st.row(&r.entity_type, r.id).filter(|t| !t.retired)
            }
            _ => None,
        });
    }
    let value = match current {
        Some(target) => api_value(st, target, &path.leaf, path.leaf_type),
        None => Value::empty_for(path.leaf_type),
    };
    Some(RowField {
        name: raw.to_owned(),
        data_type: path.leaf_type,
        deep: true,
        value,
    })
}

/// A projection resolved once per query: each returned field's data type and, for dotted fields, its path.
struct Plan(Vec<(String, DataType, Option<FieldPath>)>);

impl Plan {
    fn new(st: &State, entity_type: &str, fields: &Fields) -> Plan {
        let mut out: Vec<(String, DataType, Option<FieldPath>)> = Vec::new();
        match fields {
            Fields::All => {
                if let Some(t) = st.schema.entity(entity_type) {
                    out.extend(
                        t.fields
                            .iter()
                            .filter(|(n, _)| *n != "id")
                            .map(|(n, fs)| (n.clone(), fs.data_type, None)),
                    );
                }
            }
            Fields::Only(names) => {
                for n in names {
                    if n == "id" || n == "type" || out.iter().any(|(x, _, _)| x == n) {
                        continue;
                    }
                    if !n.contains('.') {
                        if let Some(dt) = st.data_type(entity_type, n) {
                            out.push((n.clone(), dt, None));
                        }
                    } else if let Some(path) = resolve_path(&st.schema, entity_type, n) {
                        // Dotted reads through multi_entity are absent (GT 016).
                        if !path.hops.iter().any(|h| h.multi) {
                            out.push((n.clone(), path.leaf_type, Some(path)));
                        }
                    }
                }
            }
        }
        Plan(out)
    }

    fn project(&self, st: &State, e: &Entity) -> Row {
        let fields = self
            .0
            .iter()
            .map(|(name, dt, path)| match path {
                None => RowField {
                    name: name.clone(),
                    data_type: *dt,
                    deep: false,
                    value: api_value(st, e, name, *dt),
                },
                Some(path) => {
                    let mut current: Option<&Entity> = Some(e);
                    for hop in &path.hops {
                        current = current.and_then(|row| match row.fields.get(&hop.field) {
                            Some(Value::Entity(r)) if r.entity_type == hop.target_type => {
                                st.row(&r.entity_type, r.id).filter(|t| !t.retired)
                            }
                            _ => None,
                        });
                    }
                    let value = match current {
                        Some(target) => api_value(st, target, &path.leaf, path.leaf_type),
                        None => Value::empty_for(path.leaf_type),
                    };
                    RowField {
                        name: name.clone(),
                        data_type: *dt,
                        deep: true,
                        value,
                    }
                }
            })
            .collect();
        Row {
            entity_type: e.entity_type.clone(),
            id: e.id,
            fields,
        }
    }
}

fn project(st: &State, e: &Entity, fields: &Fields) -> Row {
    let out = match fields {
        Fields::All => {
            let mut v = Vec::new();
            if let Some(t) = st.schema.entity(&e.entity_type) {
                for (name, fs) in &t.fields {
                    if name == "id" {
                        continue;
                    }
                    v.push(RowField {
                        name: name.clone(),
                        data_type: fs.data_type,
                        deep: false,
                        value: api_value(st, e, name, fs.data_type),
                    });
                }
            }
            v
        }
        Fields::Only(names) => {
            let mut v: Vec<RowField> = Vec::with_capacity(names.len());
            for n in names {
                if n == "id" || n == "type" || v.iter().any(|f| f.name == *n) {
                    continue;
                }
                if let Some(f) = project_field(st, e, n) {
                    v.push(f);
                }
            }
            v
        }
    };
    Row {
        entity_type: e.entity_type.clone(),
        id: e.id,
        fields: out,
    }
}

/// Integer id bounds `[lo, hi]` from a filter made only of integer id comparisons, read from the wire
/// JSON without the shared parser. `None` when the filter has any other shape.
fn fast_id_bounds(v: &Json) -> Option<(i64, i64)> {
    let conditions: &Vec<Json> = match v {
        Json::Array(a) => a,
        Json::Object(o) => {
            if o.get("logical_operator").and_then(Json::as_str) != Some("and") || o.len() != 2 {
                return None;
            }
            o.get("conditions")?.as_array()?
        }
        _ => return None,
    };
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    for c in conditions {
        let c = c.as_array()?;
        if c.len() != 3 || c[0].as_str()? != "id" {
            return None;
        }
        match (c[1].as_str()?, &c[2]) {
            ("greater_than", Json::Number(n)) => lo = lo.max(n.as_i64()?.checked_add(1)?),
            ("less_than", Json::Number(n)) => hi = hi.min(n.as_i64()?.checked_sub(1)?),
            ("is", Json::Number(n)) => {
                let x = n.as_i64()?;
                lo = lo.max(x);
                hi = hi.min(x);
            }
            ("between", Json::Array(b)) if b.len() == 2 => {
                let (a, b) = (b[0].as_i64()?, b[1].as_i64()?);
                lo = lo.max(a.min(b));
                hi = hi.min(a.max(b));
            }
            _ => return None,
        }
    }
    Some((lo, hi))
}

/// Id bounds implied by a validated filter's top-level `and` (the filter itself is still evaluated),
/// and the listed ids when it holds an `id in [...]` of integers (re-reads by id): only those rows
/// can match, and they are looked up one by one, as a real site's primary-key index would, instead
/// of scanning every row between the smallest and the largest.
fn typed_id_bounds(f: &Filter) -> (i64, i64, Option<Vec<i64>>) {
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    let mut listed: Option<Vec<i64>> = None;
    let conds: Vec<&Filter> = match f {
        Filter::Group {
            op: LogicalOp::And,
            children,
        } => children.iter().collect(),
        c @ Filter::Condition(_) => vec![c],
        _ => Vec::new(),
    };
    for c in conds {
        let Filter::Condition(c) = c else { continue };
        if c.path.is_deep() || c.path.leaf != "id" {
            continue;
        }
        match (&c.operator, &c.operand) {
            (Operator::GreaterThan, Operand::One(Value::Int(n))) => {
                lo = lo.max(n.saturating_add(1))
            }
            (Operator::LessThan, Operand::One(Value::Int(n))) => hi = hi.min(n.saturating_sub(1)),
            (Operator::Is, Operand::One(Value::Int(n))) => {
                lo = lo.max(*n);
                hi = hi.min(*n);
            }
            // `id in [...]` (re-reads by id): only the rows between the smallest and the largest
            // listed id can match. A list with anything but integers keeps the full range.
            (Operator::In, Operand::Many(vals)) => {
                let ints: Option<Vec<i64>> = vals
                    .iter()
                    .map(|v| match v {
                        Value::Int(n) => Some(*n),
                        _ => None,
                    })
                    .collect();
                if let Some(mut ints) = ints
                    && let (Some(min), Some(max)) = (ints.iter().min(), ints.iter().max())
                {
                    lo = lo.max(*min);
                    hi = hi.min(*max);
                    ints.sort_unstable();
                    ints.dedup();
                    // Two `id in` conditions: the ids in both.
                    listed = Some(match listed {
                        Some(prev) => ints
                            .into_iter()
                            .filter(|i| prev.binary_search(i).is_ok())
                            .collect(),
                        None => ints,
                    });
                }
            }
            _ => {}
        }
    }
    (lo, hi, listed)
}

/// A validator error as a site error, naming the field at fault when there is one.
fn bad_filter(e: FilterError) -> SiteError {
    let field = match &e {
        FilterError::UnknownField { field, .. }
        | FilterError::NotFilterable { field, .. }
        | FilterError::BadOperator { field, .. }
        | FilterError::Arity { field, .. }
        | FilterError::EmptyIn { field, .. }
        | FilterError::BadValue { field, .. }
        | FilterError::BadDate { field, .. }
        | FilterError::NotSortable { field, .. } => Some(field.clone()),
        _ => None,
    };
    SiteError::BadFilter {
        message: e.to_string(),
        field,
    }
}

/// The compiled form of a request's filter.
enum Compiled {
    /// Only an id range: no evaluator needed.
    Range(i64, i64),
    /// A range to scan plus the filter to evaluate on each row; with listed ids (ascending), only
    /// those rows of the range are visited.
    Eval(i64, i64, Option<Vec<i64>>, Box<Filter>),
}

fn compile(st: &State, entity_type: &str, f: &QueryFilter) -> Result<Compiled, SiteError> {
    match f {
        QueryFilter::All => Ok(Compiled::Range(i64::MIN, i64::MAX)),
        QueryFilter::Wire(j) => {
            if let Some((lo, hi)) = fast_id_bounds(j) {
                return Ok(Compiled::Range(lo, hi));
            }
            let raw = filter::parse::parse_any(j).map_err(bad_filter)?;
            let typed = filter::validate(&st.schema, entity_type, &raw).map_err(bad_filter)?;
            let (lo, hi, ids) = typed_id_bounds(&typed);
            Ok(Compiled::Eval(lo, hi, ids, Box::new(typed)))
        }
        QueryFilter::Typed(t) => {
            if matches!(t, Filter::Group { op: LogicalOp::And, children } if children.is_empty()) {
                return Ok(Compiled::Range(i64::MIN, i64::MAX));
            }
            let (lo, hi, ids) = typed_id_bounds(t);
            Ok(Compiled::Eval(lo, hi, ids, Box::new(t.clone())))
        }
    }
}

/// Root-level checkbox/multi_entity fields a filter reads: rows store no value for them when unset, so
/// the evaluator is handed a copy with the empty value filled in.
fn fill_fields(f: &Filter, out: &mut Vec<(String, DataType)>) {
    match f {
        Filter::Condition(c) => {
            if !c.path.is_deep()
                && matches!(c.path.leaf_type, DataType::Checkbox | DataType::MultiEntity)
                && !out.iter().any(|(n, _)| *n == c.path.leaf)
            {
                out.push((c.path.leaf.clone(), c.path.leaf_type));
            }
        }
        Filter::Group { children, .. } => children.iter().for_each(|c| fill_fields(c, out)),
    }
}

fn archived_project(st: &State, e: &Entity) -> bool {
    match e.fields.get("project") {
        Some(Value::Entity(r)) => st
            .row("Project", r.id)
            .is_some_and(|p| matches!(p.fields.get("archived"), Some(Value::Bool(true)))),
        _ => false,
    }
}

/// Visits the candidate rows in id order (ascending or descending) that match; `visit` returns false to stop.
fn scan<'a>(
    st: &'a State,
    entity_type: &str,
    compiled: &Compiled,
    retired_only: bool,
    include_archived: bool,
    descending: bool,
    mut visit: impl FnMut(&'a Entity) -> bool,
) -> Result<(), SiteError> {
    let Some(table) = st.tables.get(entity_type) else {
        return Ok(());
    };
    let (lo, hi, ids, filter) = match compiled {
        Compiled::Range(lo, hi) => (*lo, *hi, None, None),
        Compiled::Eval(lo, hi, ids, f) => (*lo, *hi, ids.as_deref(), Some(&**f)),
    };
    if lo > hi {
        return Ok(());
    }
    let mut fill = Vec::new();
    if let Some(f) = filter {
        fill_fields(f, &mut fill);
    }
    let now = DateTime::now();
    let iter: Box<dyn Iterator<Item = &Entity>> = match ids {
        Some(ids) => {
            let listed = ids
                .iter()
                .filter(move |i| (lo..=hi).contains(*i))
                .filter_map(|i| table.rows.get(i));
            if descending {
                Box::new(listed.rev())
            } else {
                Box::new(listed)
            }
        }
        None => {
            let range = table
                .rows
                .range((Bound::Included(lo), Bound::Included(hi)))
                .map(|(_, e)| e);
            if descending {
                Box::new(range.rev())
            } else {
                Box::new(range)
            }
        }
    };
    for e in iter {
        if e.retired != retired_only {
            continue;
        }
        if !include_archived && archived_project(st, e) {
            continue;
        }
        if let Some(f) = filter {
            let ok = if fill.iter().any(|(n, _)| !e.fields.contains_key(n)) {
                let mut copy = e.clone();
                for (n, dt) in &fill {
                    copy.fields
                        .entry(n.clone())
                        .or_insert_with(|| Value::empty_for(*dt));
                }
                filter::matches(f, &copy, st, now)
            } else {
                filter::matches(f, e, st, now)
            };
            if !ok {
                continue;
            }
        }
        if !visit(e) {
            break;
        }
    }
    Ok(())
}

fn check_type(st: &State, t: &str) -> Result<(), SiteError> {
    if st.schema.entity(t).is_none() {
        return Err(SiteError::UnknownEntityType(t.to_owned()));
    }
    Ok(())
}

/// The effective sorts: unknown/unsortable-silently fields dropped, uuid/pivot_column rejected.
fn resolve_sorts(st: &State, q: &Query) -> Result<Vec<Sort>, SiteError> {
    let mut out = Vec::new();
    for s in &q.sorts {
        let Some(path) = resolve_path(&st.schema, &q.entity_type, &s.field) else {
            continue;
        };
        match path.leaf_type {
            DataType::Uuid | DataType::PivotColumn => {
                return Err(SiteError::Unsortable {
                    entity_type: path.leaf_entity_type.clone(),
                    field: path.leaf.clone(),
                    data_type: path.leaf_type.as_str(),
                });
            }
            DataType::Summary | DataType::Url | DataType::Serializable | DataType::Unknown => {
                continue;
            }
            _ => {}
        }
        out.push(Sort {
            path,
            direction: s.direction,
        });
    }
    Ok(out)
}

pub(crate) fn find(st: &State, q: &Query) -> Result<Vec<Row>, SiteError> {
    check_type(st, &q.entity_type)?;
    let compiled = compile(st, &q.entity_type, &q.filter)?;
    let sorts = resolve_sorts(st, q)?;
    let plan = Plan::new(st, &q.entity_type, &q.fields);
    let id_only = sorts
        .iter()
        .all(|s| !s.path.is_deep() && s.path.leaf == "id");
    let mut rows = Vec::new();
    if id_only {
        // The first id key decides; further keys on id cannot reorder.
        let descending = sorts
            .first()
            .is_some_and(|s| s.direction == Direction::Desc);
        let mut skipped = 0usize;
        scan(
            st,
            &q.entity_type,
            &compiled,
            q.retired_only,
            q.include_archived_projects,
            descending,
            |e| {
                if rows.len() >= q.limit {
                    return false;
                }
                if skipped < q.offset {
                    skipped += 1;
                    return true;
                }
                rows.push(plan.project(st, e));
                rows.len() < q.limit
            },
        )?;
        return Ok(rows);
    }
    let mut candidates = Vec::new();
    scan(
        st,
        &q.entity_type,
        &compiled,
        q.retired_only,
        q.include_archived_projects,
        false,
        |e| {
            candidates.push(e);
            true
        },
    )?;
    let subset = Subset {
        state: st,
        entity_type: &q.entity_type,
        rows: candidates,
    };
    let fq = FindQuery {
        entity_type: q.entity_type.clone(),
        filter: Filter::all(),
        fields: Vec::new(),
        sorts,
        offset: q.offset as u64,
        limit: Some(q.limit as u64),
        retired_only: q.retired_only,
    };
    for rec in query::reference_find(&subset, &fq, DateTime::now()) {
        if let Some(e) = st.row(&rec.entity_type, rec.id) {
            rows.push(plan.project(st, e));
        }
    }
    Ok(rows)
}

pub(crate) fn count(
    st: &State,
    entity_type: &str,
    f: &QueryFilter,
    retired_only: bool,
) -> Result<u64, SiteError> {
    check_type(st, entity_type)?;
    let compiled = compile(st, entity_type, f)?;
    let mut n = 0u64;
    scan(
        st,
        entity_type,
        &compiled,
        retired_only,
        true,
        false,
        |_| {
            n += 1;
            true
        },
    )?;
    Ok(n)
}

pub(crate) fn summarize(
    st: &State,
    entity_type: &str,
    f: &QueryFilter,
    group_by: Option<&str>,
) -> Result<Summary, SiteError> {
    check_type(st, entity_type)?;
    let compiled = compile(st, entity_type, f)?;
    let group = match group_by {
        None => None,
        Some(g) => {
            let dt = st
                .data_type(entity_type, g)
                .ok_or_else(|| SiteError::UnknownField {
                    verb: "summarize",
                    entity_type: entity_type.to_owned(),
                    field: g.to_owned(),
                })?;
            Some((g, dt))
        }
    };
    let mut n = 0u64;
    let mut groups: BTreeMap<String, (Json, String, u64)> = BTreeMap::new();
    scan(st, entity_type, &compiled, false, true, false, |e| {
        n += 1;
        if let Some((g, dt)) = group {
            let v = st.read_value(e, g, dt);
            let (key, display) = match &v {
                Value::Entity(r) => (
                    format!("{}:{}", r.entity_type, r.id),
                    r.name.clone().unwrap_or_default(),
                ),
                Value::Null => (String::new(), String::new()),
                other => {
                    let j = other.to_json();
                    let s = j
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| j.to_string());
                    (s.clone(), s)
                }
            };
            groups
                .entry(key)
                .or_insert_with(|| (v.to_json(), display, 0))
                .2 += 1;
        }
        true
    })?;
    Ok(Summary {
        count: n,
        groups: groups.into_values().collect(),
    })
}

pub(crate) fn read_one(
    st: &State,
    entity_type: &str,
    id: i64,
    fields: &Fields,
    retired: bool,
) -> Result<Row, SiteError> {
    check_type(st, entity_type)?;
    match st.row(entity_type, id) {
        Some(e) if e.retired == retired => Ok(project(st, e, fields)),
        _ => Err(SiteError::NotFound {
            entity_type: entity_type.to_owned(),
            id,
        }),
    }
}

fn truth_row(st: &State, e: &Entity) -> TruthRow {
    let mut fields = BTreeMap::new();
    if let Some(t) = st.schema.entity(&e.entity_type) {
        for (name, fs) in &t.fields {
            if name == "id"
                || matches!(
                    fs.data_type,
                    DataType::Summary
                        | DataType::Calculated
                        | DataType::PivotColumn
                        | DataType::Password
                )
            {
                continue;
            }
            fields.insert(name.clone(), st.read_value(e, name, fs.data_type));
        }
    }
    TruthRow {
        entity_type: e.entity_type.clone(),
        id: e.id,
        retired: e.retired,
        fields,
    }
}

pub(crate) fn truth(st: &State, types: Option<&[String]>) -> Vec<TruthRow> {
    let mut names: Vec<&String> = st.tables.keys().collect();
    names.sort();
    let mut out = Vec::new();
    for t in names {
        let wanted = match types {
            Some(list) => list.iter().any(|x| x == t),
            None => t != EVENT_TYPE,
        };
        if !wanted {
            continue;
        }
        if let Some(table) = st.tables.get(t) {
            out.extend(table.rows.values().map(|e| truth_row(st, e)));
        }
    }
    out
}

pub(crate) fn event_log(st: &State, after: i64) -> Vec<TruthRow> {
    st.tables
        .get(EVENT_TYPE)
        .map(|t| {
            t.rows
                .range((Bound::Excluded(after), Bound::Unbounded))
                .map(|(_, e)| truth_row(st, e))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_rest_api() {
        assert_eq!(slug("Shot"), "shots");
        assert_eq!(slug("HumanUser"), "human_users");
        assert_eq!(slug("EventLogEntry"), "event_log_entries");
        assert_eq!(slug("Status"), "statuses");
        assert_eq!(slug("Reply"), "replies");
        assert_eq!(slug("CustomEntity03"), "custom_entity03s");
    }

    #[test]
    fn fast_path_reads_only_integer_id_filters() {
        assert_eq!(
            fast_id_bounds(&serde_json::json!([["id", "greater_than", 10]])),
            Some((11, i64::MAX))
        );
        assert_eq!(
            fast_id_bounds(
                &serde_json::json!({"logical_operator": "and", "conditions": [["id", "greater_than", 10], ["id", "less_than", 20]]})
            ),
            Some((11, 19))
        );
        assert_eq!(
            fast_id_bounds(&serde_json::json!([])),
            Some((i64::MIN, i64::MAX))
        );
        assert_eq!(
            fast_id_bounds(&serde_json::json!([["id", "greater_than", "10"]])),
            None
        );
        assert_eq!(
            fast_id_bounds(&serde_json::json!([["code", "is", "x"]])),
            None
        );
        assert_eq!(
            fast_id_bounds(
                &serde_json::json!({"logical_operator": "or", "conditions": [["id", "is", 1]]})
            ),
            None
        );
    }
}
