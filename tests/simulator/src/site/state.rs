//! The site's in-memory storage: one id-ordered table per entity type (EventLogEntry included), the
//! pending (reserved but not yet committed) events, and the small registries (display columns,
//! attachments, cascaded retirements). Implements the core's `EntitySource`/`EntityCollection` so the
//! shared reference evaluator reads the site directly.
//!
//! Rows are `shotgun_cache_core::model::Entity` values holding only *set* fields: an unset field is
//! simply absent (read as null, `false` for checkbox, `[]` for multi_entity). Links are stored as
//! `{type, id}` without a name; names are derived at read time from the target's `display_name`, so they
//! are always live (protocol §3.8).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use shotgun_cache_core::filter::EntitySource;
use shotgun_cache_core::model::{DataType, DateTime, Entity, EntityRef, SiteSchema, Value};
use shotgun_cache_core::query::EntityCollection;

use super::EventKnobs;

/// The rows of one entity type, in id order, and the type's id sequence.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub(crate) rows: BTreeMap<i64, Entity>,
    /// Entity ids are allocated per type (Shot 1 and Asset 1 may both exist); event ids are site-wide.
    pub(crate) next_id: i64,
}

/// An event whose id is reserved but which is not visible yet (out-of-order commit, visibility delay).
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) visible_at: Instant,
    pub(crate) row: Entity,
}

/// Retirement cascade settings (see `SimConfig::cascade_retire`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cascade {
    pub(crate) enabled: bool,
    pub(crate) logged: bool,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) schema: SiteSchema,
    pub(crate) tables: HashMap<String, Table>,
    /// The next EventLogEntry id to hand out (site-wide sequence).
    pub(crate) next_event_id: i64,
    /// Reserved events, keyed by their id, waiting for their commit time.
    pub(crate) pending: BTreeMap<i64, Pending>,
    pub(crate) knobs: EventKnobs,
    pub(crate) event_rng: StdRng,
    /// `(entity type, field)` → DisplayColumn id, for schema-edit events.
    pub(crate) display_columns: BTreeMap<(String, String), i64>,
    pub(crate) next_display_column_id: i64,
    pub(crate) next_attachment_id: i64,
    /// Attachment ids of thumbnails still being processed (read as the "pending" URL).
    pub(crate) transient_attachments: HashSet<i64>,
    /// When each retired row was retired (the `retirement_date` of its events).
    pub(crate) retired_at: HashMap<(String, i64), DateTime>,
    pub(crate) cascade: Cascade,
    /// Rows retired together with a parent, so reviving the parent revives them too.
    pub(crate) cascaded: HashMap<(String, i64), Vec<(String, i64)>>,
    /// Every event with an id below this has been archived (is gone from the API).
    pub(crate) archived_before: i64,
}

pub(crate) const EVENT_TYPE: &str = "EventLogEntry";

impl State {
    pub(crate) fn new(schema: SiteSchema, knobs: EventKnobs, cascade: Cascade) -> State {
        let tables = schema
            .types
            .keys()
            .map(|t| {
                (
                    t.clone(),
                    Table {
                        rows: BTreeMap::new(),
                        next_id: 1,
                    },
                )
            })
            .collect();
        let seed = knobs.seed;
        State {
            schema,
            tables,
            next_event_id: 1,
            pending: BTreeMap::new(),
            knobs,
            event_rng: StdRng::seed_from_u64(seed),
            display_columns: BTreeMap::new(),
            next_display_column_id: 1,
            next_attachment_id: 1,
            transient_attachments: HashSet::new(),
            retired_at: HashMap::new(),
            cascade,
            cascaded: HashMap::new(),
            archived_before: 0,
        }
    }

    pub(crate) fn row(&self, entity_type: &str, id: i64) -> Option<&Entity> {
        self.tables.get(entity_type)?.rows.get(&id)
    }

    pub(crate) fn row_mut(&mut self, entity_type: &str, id: i64) -> Option<&mut Entity> {
        self.tables.get_mut(entity_type)?.rows.get_mut(&id)
    }

    pub(crate) fn is_live(&self, entity_type: &str, id: i64) -> bool {
        self.row(entity_type, id).is_some_and(|e| !e.retired)
    }

    /// The data type of a plain field, if the field exists.
    pub(crate) fn data_type(&self, entity_type: &str, field: &str) -> Option<DataType> {
        if field == "id" {
            return Some(DataType::Number);
        }
        self.schema.field(entity_type, field).map(|f| f.data_type)
    }

    /// Applies the link rule: a link to a retired row is dropped; a link to a live row takes the row's
    /// current display name; a link to a type the site does not have (e.g. `DisplayColumn`) keeps its name.
    pub(crate) fn live_link(&self, link: &EntityRef) -> Option<EntityRef> {
        let Some(table) = self.tables.get(&link.entity_type) else {
            return Some(link.clone());
        };
        match table.rows.get(&link.id) {
            Some(e) if e.retired => None,
            Some(e) => Some(EntityRef {
                entity_type: link.entity_type.clone(),
                id: link.id,
                name: e.display_name.clone(),
            }),
            None => Some(link.clone()),
        }
    }

    /// A stored value as the API reads it: empty values for unset checkbox/multi_entity fields and
    /// the link rule applied to links.
    pub(crate) fn read_value(&self, entity: &Entity, field: &str, data_type: DataType) -> Value {
        if field == "id" {
            return Value::Int(entity.id);
        }
        match data_type {
            DataType::Summary
            | DataType::Calculated
            | DataType::PivotColumn
            | DataType::Password => return Value::Null,
            _ => {}
        }
        match entity.fields.get(field) {
            None => Value::empty_for(data_type),
            Some(Value::Entity(r)) => self.live_link(r).map(Value::Entity).unwrap_or(Value::Null),
            Some(Value::MultiEntity(v)) => {
                Value::MultiEntity(v.iter().filter_map(|r| self.live_link(r)).collect())
            }
            Some(v) => v.clone(),
        }
    }

    /// The display name a row should carry, from its type's display field.
    pub(crate) fn compute_display_name(&self, entity: &Entity) -> Option<String> {
        let t = self.schema.entity(&entity.entity_type)?;
        if entity.entity_type == "HumanUser" || entity.entity_type == "ApiUser" {
            if let Some(Value::Text(n)) = entity.fields.get("name") {
                return Some(n.clone());
            }
            let first = match entity.fields.get("firstname") {
                Some(Value::Text(s)) => s.as_str(),
                _ => "",
            };
            let last = match entity.fields.get("lastname") {
                Some(Value::Text(s)) => s.as_str(),
                _ => "",
            };
            let joined = format!("{first} {last}").trim().to_owned();
            return (!joined.is_empty()).then_some(joined);
        }
        let f = t.display_field()?;
        match entity.fields.get(f) {
            Some(Value::Text(s)) => Some(s.clone()),
            Some(v) if !v.is_null() => Some(v.to_json().to_string()),
            _ => None,
        }
    }

    /// Moves every reserved event whose commit time has come into the EventLogEntry table.
    pub(crate) fn commit_due(&mut self, now: Instant) {
        let due: Vec<i64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.visible_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(p) = self.pending.remove(&id)
                && id >= self.archived_before
            {
                self.tables
                    .entry(EVENT_TYPE.to_owned())
                    .or_default()
                    .rows
                    .insert(id, p.row);
            }
        }
    }
}

impl EntitySource for State {
    fn entity(&self, entity_type: &str, id: i64) -> Option<&Entity> {
        self.row(entity_type, id)
    }

    fn is_cached_type(&self, entity_type: &str) -> bool {
        self.tables.contains_key(entity_type)
    }
}

impl EntityCollection for State {
    fn all_of_type(&self, entity_type: &str) -> Vec<&Entity> {
        self.tables
            .get(entity_type)
            .map(|t| t.rows.values().collect())
            .unwrap_or_default()
    }
}

/// A pre-filtered view used to let the reference `find` sort a candidate set: `all_of_type` returns only
/// the given rows, every other lookup goes to the whole site.
pub(crate) struct Subset<'a> {
    pub(crate) state: &'a State,
    pub(crate) entity_type: &'a str,
    pub(crate) rows: Vec<&'a Entity>,
}

impl EntitySource for Subset<'_> {
    fn entity(&self, entity_type: &str, id: i64) -> Option<&Entity> {
        self.state.row(entity_type, id)
    }

    fn is_cached_type(&self, entity_type: &str) -> bool {
        self.state.is_cached_type(entity_type)
    }
}

impl EntityCollection for Subset<'_> {
    fn all_of_type(&self, entity_type: &str) -> Vec<&Entity> {
        if entity_type == self.entity_type {
            self.rows.clone()
        } else {
            self.state.all_of_type(entity_type)
        }
    }
}
