//! The deterministic dataset generator: projects, sequences, shots, assets, tasks (on shots and assets,
//! with pipeline steps, assignees and upstream/downstream chains), versions, published files,
//! playlists, notes and human users, with realistic link structure and value distributions, and about
//! 2% retired rows. The same `(scale, seed)` always gives the same site.
//!
//! Rows are written straight into the site's tables (no events: the generated data is the site's
//! state before the simulation starts; its event history is "archived"). Both ends of every link are
//! stored, as writes through the site keep them.
//!
//! Ratios per `scale` entities: Task 40%, Version 25%, PublishedFile 15%, Note 8.5%, Shot 7%,
//! Asset 3%, Sequence 0.5%, Playlist 0.5%, HumanUser 0.1% (at least 8), Project 0.005% (at least 2),
//! plus fixed reference rows (10 pipeline steps, 6 published-file types).

use std::collections::{BTreeMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use shotgun_cache_core::model::{Date, DateTime, Entity, EntityRef, Value};

use crate::site::Site;
use crate::site::state::State;

/// What the generator made.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GenerationReport {
    /// Rows generated (all types, retired included).
    pub entities: u64,
    pub per_type: BTreeMap<String, u64>,
    /// Wall time of schema load plus generation.
    pub seconds: f64,
}

/// The instant generated data is anchored at (2026-11-01T00:00:00Z), so a seed always gives the same dates.
pub const ANCHOR: i64 = 1_793_491_200;
const DAY: i64 = 86_400;

const WORDS: &[&str] = &[
    "final",
    "blocking",
    "polish",
    "lighting",
    "matchmove",
    "camera",
    "retime",
    "hero",
    "crowd",
    "fx",
    "smoke",
    "water",
    "render",
    "denoise",
    "plate",
    "cleanup",
    "roto",
    "paint",
    "key",
    "grade",
    "approved",
    "client",
    "notes",
    "fix",
    "edge",
    "motion",
    "blur",
    "detail",
    "texture",
    "shader",
    "rig",
    "deform",
    "sim",
    "cloth",
    "hair",
    "layout",
];
const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloe", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jun", "Kira", "Leo",
    "Mia", "Noor", "Omar", "Pia",
];
const LAST: &[&str] = &[
    "Abara", "Berg", "Costa", "Duval", "Endo", "Fox", "Garcia", "Holm", "Ito", "Jansen",
    "Kowalski", "Lind", "Moreau", "Nakamura",
];
const SHOT_STEPS: &[&str] = &["Layout", "Animation", "FX", "Lighting", "Comp"];
const ASSET_STEPS: &[&str] = &["Art", "Model", "Rig", "Surface"];
const ALL_STEPS: &[(&str, &str, &str)] = &[
    ("Art", "ART", "Asset"),
    ("Model", "MOD", "Asset"),
    ("Rig", "RIG", "Asset"),
    ("Surface", "SRF", "Asset"),
    ("Layout", "LAY", "Shot"),
    ("Animation", "ANM", "Shot"),
    ("FX", "FX", "Shot"),
    ("Lighting", "LGT", "Shot"),
    ("Comp", "CMP", "Shot"),
    ("Roto", "ROTO", "Shot"),
];

/// Which schema fields a type has, checked once per type.
struct TypeFields(HashSet<String>);

impl TypeFields {
    fn of(st: &State, t: &str) -> TypeFields {
        TypeFields(
            st.schema
                .entity(t)
                .map(|e| e.fields.keys().cloned().collect())
                .unwrap_or_default(),
        )
    }

    fn put(&self, e: &mut Entity, f: &str, v: Value) {
        if self.0.contains(f) && !matches!(v, Value::Null | Value::Bool(false)) {
            e.fields.insert(f.to_owned(), v);
        }
    }
}

struct Gen<'a> {
    st: &'a mut State,
    rng: StdRng,
    report: GenerationReport,
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

fn link(t: &str, id: i64) -> Value {
    Value::Entity(EntityRef::new(t, id))
}

impl Gen<'_> {
    fn has_type(&self, t: &str) -> bool {
        self.st.schema.entity(t).is_some()
    }

    fn next_id(&mut self, t: &str) -> i64 {
        let table = self.st.tables.entry(t.to_owned()).or_default();
        let id = table.next_id;
        table.next_id += 1;
        id
    }

    fn insert(&mut self, mut e: Entity, retire: bool) {
        e.display_name = self.st.compute_display_name(&e);
        if retire {
            e.retired = true;
            self.st.retired_at.insert(
                (e.entity_type.clone(), e.id),
                DateTime(ANCHOR - self.rng.random_range(0..30) * DAY),
            );
        }
        *self
            .report
            .per_type
            .entry(e.entity_type.clone())
            .or_default() += 1;
        self.report.entities += 1;
        self.st
            .tables
            .entry(e.entity_type.clone())
            .or_default()
            .rows
            .insert(e.id, e);
    }

    /// Appends a link to a multi_entity field of an existing row (the reverse side of a generated link).
    fn push_multi(&mut self, t: &str, id: i64, field: &str, target: EntityRef) {
        if self.st.schema.field(t, field).is_none() {
            return;
        }
        if let Some(row) = self.st.row_mut(t, id) {
            match row
                .fields
                .entry(field.to_owned())
                .or_insert_with(|| Value::MultiEntity(Vec::new()))
            {
                Value::MultiEntity(l) => l.push(target),
                other => *other = Value::MultiEntity(vec![target]),
            }
        }
    }

    fn words(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| WORDS[self.rng.random_range(0..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A creation time for row `i` of `n` of a type: spread over the two years before the anchor, rising with id.
    fn created(&mut self, i: usize, n: usize) -> DateTime {
        let span = 730 * DAY;
        let base = ANCHOR - span + (span as f64 * (i as f64 / n.max(1) as f64)) as i64;
        DateTime(base + self.rng.random_range(0..3600))
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.rng.random_range(0..items.len())])
        }
    }

    /// A value from a status/list field's valid values with weights by code (unknown codes weight 1).
    fn status(&mut self, t: &str, field: &str, weights: &[(&str, u32)]) -> Value {
        let Some(fs) = self.st.schema.field(t, field) else {
            return Value::Null;
        };
        let vals: Vec<(String, u32)> = fs
            .valid_values
            .iter()
            .map(|v| {
                (
                    v.clone(),
                    weights
                        .iter()
                        .find(|(c, _)| *c == v)
                        .map(|(_, w)| *w)
                        .unwrap_or(1),
                )
            })
            .collect();
        let total: u32 = vals.iter().map(|(_, w)| *w).sum();
        if total == 0 {
            return Value::Null;
        }
        let mut x = self.rng.random_range(0..total);
        for (v, w) in vals {
            if x < w {
                return Value::Text(v);
            }
            x -= w;
        }
        Value::Null
    }

    fn retire_roll(&mut self, pct: f64) -> bool {
        self.rng.random_bool(pct)
    }
}

fn count(scale: u64, frac: f64, min: u64) -> usize {
    ((scale as f64 * frac).round() as u64).max(min) as usize
}

/// Fills `site` with a dataset of about `scale` rows.
pub fn generate(site: &Site, scale: u64, seed: u64) -> GenerationReport {
    site.with_state_mut(|st| {
        let mut g = Gen {
            st,
            rng: StdRng::seed_from_u64(seed),
            report: GenerationReport::default(),
        };
        run(&mut g, scale);
        g.report
    })
}

#[allow(clippy::too_many_lines)]
fn run(g: &mut Gen<'_>, scale: u64) {
    let user_by = |g: &Gen<'_>| -> Value {
        link(
            "ApiUser",
            g.st.tables
                .get("ApiUser")
                .and_then(|t| t.rows.keys().next().copied())
                .unwrap_or(1),
        )
    };
    let creator = user_by(g);

    // Pipeline steps and published-file types: fixed reference rows.
    let mut steps: BTreeMap<&str, i64> = BTreeMap::new();
    if g.has_type("Step") {
        let f = TypeFields::of(g.st, "Step");
        for (i, (name, short, et)) in ALL_STEPS.iter().enumerate() {
            let id = g.next_id("Step");
            let mut e = Entity::new("Step", id);
            f.put(&mut e, "code", text(*name));
            f.put(&mut e, "short_name", text(*short));
            f.put(&mut e, "entity_type", text(*et));
            f.put(&mut e, "list_order", Value::Int(i as i64 + 1));
            f.put(
                &mut e,
                "color",
                text(format!("{},{},{}", 40 + i * 20, 120, 200 - i * 15)),
            );
            f.put(
                &mut e,
                "created_at",
                Value::DateTime(DateTime(ANCHOR - 900 * DAY)),
            );
            f.put(&mut e, "created_by", creator.clone());
            g.insert(e, false);
            steps.insert(name, id);
        }
    }
    let mut pf_types = Vec::new();
    if g.has_type("PublishedFileType") {
        let f = TypeFields::of(g.st, "PublishedFileType");
        for name in [
            "Maya Scene",
            "Alembic Cache",
            "Rendered Image",
            "Nuke Script",
            "Movie",
            "Texture",
        ] {
            let id = g.next_id("PublishedFileType");
            let mut e = Entity::new("PublishedFileType", id);
            f.put(&mut e, "code", text(name));
            f.put(
                &mut e,
                "created_at",
                Value::DateTime(DateTime(ANCHOR - 900 * DAY)),
            );
            g.insert(e, false);
            pf_types.push(id);
        }
    }
    if scale == 0 {
        return;
    }

    // Human users.
    let n_users = count(scale, 0.001, 8);
    let mut users = Vec::with_capacity(n_users);
    if g.has_type("HumanUser") {
        let f = TypeFields::of(g.st, "HumanUser");
        for i in 0..n_users {
            let id = g.next_id("HumanUser");
            let first = FIRST[g.rng.random_range(0..FIRST.len())];
            let last = LAST[g.rng.random_range(0..LAST.len())];
            let mut e = Entity::new("HumanUser", id);
            f.put(&mut e, "firstname", text(first));
            f.put(&mut e, "lastname", text(last));
            f.put(&mut e, "name", text(format!("{first} {last}")));
            f.put(
                &mut e,
                "login",
                text(format!(
                    "{}.{}{}",
                    first.to_lowercase(),
                    last.to_lowercase(),
                    id
                )),
            );
            f.put(
                &mut e,
                "email",
                text(format!(
                    "{}.{}{}@studio.invalid",
                    first.to_lowercase(),
                    last.to_lowercase(),
                    id
                )),
            );
            let status = if g.rng.random_bool(0.9) { "act" } else { "dis" };
            f.put(&mut e, "sg_status_list", text(status));
            let c = g.created(i, n_users);
            f.put(&mut e, "created_at", Value::DateTime(c));
            f.put(&mut e, "updated_at", Value::DateTime(c));
            f.put(&mut e, "created_by", creator.clone());
            g.insert(e, false);
            users.push(id);
        }
    }
    let user = |g: &mut Gen<'_>, users: &[i64]| -> Value {
        g.pick(users)
            .map(|u| link("HumanUser", u))
            .unwrap_or(Value::Null)
    };

    // Projects.
    let n_projects = count(scale, 0.00005, 2);
    let mut projects = Vec::with_capacity(n_projects);
    if g.has_type("Project") {
        let f = TypeFields::of(g.st, "Project");
        for i in 0..n_projects {
            let id = g.next_id("Project");
            let mut e = Entity::new("Project", id);
            f.put(
                &mut e,
                "name",
                text(format!("Project {:03} {}", i + 1, WORDS[i % WORDS.len()])),
            );
            f.put(&mut e, "tank_name", text(format!("proj{:03}", i + 1)));
            let status = if i % 7 == 6 { "Hold" } else { "Active" };
            f.put(&mut e, "sg_status", text(status));
            f.put(
                &mut e,
                "sg_type",
                text(if i % 3 == 0 {
                    "Feature Film"
                } else {
                    "Commercial"
                }),
            );
            f.put(&mut e, "archived", Value::Bool(i > 0 && i % 10 == 9));
            let c = DateTime(ANCHOR - 760 * DAY + i as i64 * DAY);
            f.put(&mut e, "created_at", Value::DateTime(c));
            f.put(
                &mut e,
                "start_date",
                Date::from_days_since_epoch(c.0 / DAY)
                    .map(Value::Date)
                    .unwrap_or(Value::Null),
            );
            f.put(&mut e, "created_by", creator.clone());
            g.insert(e, false);
            projects.push(id);
        }
        // Every user works on one or two projects.
        for &u in &users {
            let k = g.rng.random_range(1..=2usize).min(projects.len());
            let mut chosen: Vec<i64> = Vec::new();
            while chosen.len() < k {
                if let Some(p) = g.pick(&projects)
                    && !chosen.contains(&p)
                {
                    chosen.push(p);
                }
            }
            for p in chosen {
                g.push_multi("HumanUser", u, "projects", EntityRef::new("Project", p));
                g.push_multi("Project", p, "users", EntityRef::new("HumanUser", u));
            }
        }
    }
    let proj = |id: i64| link("Project", id);
    let n_proj = projects.len().max(1);

    // Sequences.
    let n_seq = count(scale, 0.005, 1);
    let mut seqs: Vec<(i64, usize, String)> = Vec::with_capacity(n_seq);
    if g.has_type("Sequence") {
        let f = TypeFields::of(g.st, "Sequence");
        for i in 0..n_seq {
            let id = g.next_id("Sequence");
            let pi = i % n_proj;
            let code = format!("SQ{:03}", i / n_proj + 1);
            let mut e = Entity::new("Sequence", id);
            f.put(&mut e, "code", text(code.clone()));
            if let Some(&p) = projects.get(pi) {
                f.put(&mut e, "project", proj(p));
            }
            let st = g.status(
                "Sequence",
                "sg_status_list",
                &[("ip", 5), ("fin", 3), ("hld", 1), ("omt", 1)],
            );
            f.put(&mut e, "sg_status_list", st);
            let desc = if g.rng.random_bool(0.6) {
                text(g.words(5))
            } else {
                Value::Null
            };
            f.put(&mut e, "description", desc);
            let c = g.created(i, n_seq);
            f.put(&mut e, "created_at", Value::DateTime(c));
            f.put(&mut e, "updated_at", Value::DateTime(c));
            f.put(&mut e, "created_by", creator.clone());
            let retire = g.retire_roll(0.01);
            g.insert(e, retire);
            seqs.push((id, pi, code));
        }
    }

    // Shots, each in a sequence of its project.
    let n_shots = count(scale, 0.07, 1);
    let mut shots: Vec<(i64, usize, String)> = Vec::with_capacity(n_shots);
    if g.has_type("Shot") {
        let f = TypeFields::of(g.st, "Shot");
        let mut per_seq = vec![0u32; seqs.len()];
        for i in 0..n_shots {
            let id = g.next_id("Shot");
            let si = if seqs.is_empty() {
                None
            } else {
                Some(g.rng.random_range(0..seqs.len()))
            };
            let (pi, code) = match si {
                Some(si) => {
                    per_seq[si] += 1;
                    (
                        seqs[si].1,
                        format!("{}_{:04}", seqs[si].2, per_seq[si] * 10),
                    )
                }
                None => (i % n_proj, format!("SH{:05}", i + 1)),
            };
            let mut e = Entity::new("Shot", id);
            f.put(&mut e, "code", text(code.clone()));
            if let Some(&p) = projects.get(pi) {
                f.put(&mut e, "project", proj(p));
            }
            if let Some(si) = si {
                f.put(&mut e, "sg_sequence", link("Sequence", seqs[si].0));
            }
            let st = g.status(
                "Shot",
                "sg_status_list",
                &[
                    ("wtg", 3),
                    ("rdy", 2),
                    ("ip", 5),
                    ("fin", 4),
                    ("hld", 1),
                    ("omt", 1),
                    ("cbb", 1),
                ],
            );
            f.put(&mut e, "sg_status_list", st);
            let cut_in = 1001;
            let dur = g.rng.random_range(24..240);
            f.put(&mut e, "sg_cut_in", Value::Int(cut_in));
            f.put(&mut e, "sg_cut_out", Value::Int(cut_in + dur - 1));
            f.put(&mut e, "sg_cut_duration", Value::Int(dur));
            f.put(&mut e, "sg_cut_order", Value::Int(i as i64 + 1));
            let desc = if g.rng.random_bool(0.7) {
                text(g.words(8))
            } else {
                Value::Null
            };
            f.put(&mut e, "description", desc);
            let c = g.created(i, n_shots);
            f.put(&mut e, "created_at", Value::DateTime(c));
            f.put(
                &mut e,
                "updated_at",
                Value::DateTime(DateTime(c.0 + g.rng.random_range(0..60) * DAY)),
            );
            f.put(&mut e, "created_by", creator.clone());
            f.put(&mut e, "updated_by", creator.clone());
            let retire = g.retire_roll(0.02);
            g.insert(e, retire);
            if let Some(si) = si {
                g.push_multi("Sequence", seqs[si].0, "shots", EntityRef::new("Shot", id));
            }
            shots.push((id, pi, code));
        }
    }

    // Assets, and shot ↔ asset links within a project.
    let n_assets = count(scale, 0.03, 1);
    let mut assets: Vec<(i64, usize, String)> = Vec::with_capacity(n_assets);
    let mut assets_by_project: Vec<Vec<i64>> = vec![Vec::new(); n_proj];
    if g.has_type("Asset") {
        let f = TypeFields::of(g.st, "Asset");
        let kinds = [
            "Character",
            "Prop",
            "Environment",
            "Vehicle",
            "Matte Painting",
        ];
        for i in 0..n_assets {
            let id = g.next_id("Asset");
            let pi = i % n_proj;
            let kind = kinds[g.rng.random_range(0..kinds.len())];
            let code = format!(
                "{}{:04}",
                kind.split(' ').next().unwrap_or(kind).to_lowercase(),
                i + 1
            );
            let mut e = Entity::new("Asset", id);
            f.put(&mut e, "code", text(code.clone()));
            f.put(&mut e, "sg_asset_type", text(kind));
            if let Some(&p) = projects.get(pi) {
                f.put(&mut e, "project", proj(p));
            }
            let st = g.status(
                "Asset",
                "sg_status_list",
                &[
                    ("wtg", 2),
                    ("rdy", 2),
                    ("ip", 5),
                    ("fin", 5),
                    ("hld", 1),
                    ("omt", 1),
                ],
            );
            f.put(&mut e, "sg_status_list", st);
            let desc = if g.rng.random_bool(0.5) {
                text(g.words(6))
            } else {
                Value::Null
            };
            f.put(&mut e, "description", desc);
            let c = g.created(i, n_assets);
            f.put(&mut e, "created_at", Value::DateTime(c));
            f.put(&mut e, "updated_at", Value::DateTime(c));
            f.put(&mut e, "created_by", creator.clone());
            let retire = g.retire_roll(0.02);
            g.insert(e, retire);
            assets_by_project[pi].push(id);
            assets.push((id, pi, code));
        }
        if g.has_type("Shot") {
            for &(shot, pi, _) in &shots {
                let k = g.rng.random_range(0..=3usize);
                let pool = &assets_by_project[pi];
                if pool.is_empty() {
                    continue;
                }
                let mut chosen: Vec<i64> = Vec::new();
                for _ in 0..k {
                    let a = pool[g.rng.random_range(0..pool.len())];
                    if !chosen.contains(&a) {
                        chosen.push(a);
                    }
                }
                for a in chosen {
                    g.push_multi("Shot", shot, "assets", EntityRef::new("Asset", a));
                    g.push_multi("Asset", a, "shots", EntityRef::new("Shot", shot));
                }
            }
        }
    }

    // Tasks: a pipeline of steps on each shot and asset, chained upstream → downstream.
    let n_tasks_target = count(scale, 0.40, 1);
    let owners = shots.len() + assets.len();
    let per_owner = if owners == 0 {
        0.0
    } else {
        n_tasks_target as f64 / owners as f64
    };
    let mut tasks: Vec<(i64, usize, &'static str, i64, String)> =
        Vec::with_capacity(n_tasks_target);
    if g.has_type("Task") && owners > 0 {
        let f = TypeFields::of(g.st, "Task");
        let total = owners;
        let mut made = 0usize;
        for oi in 0..total {
            let (otype, (oid, pi, ocode), step_list): (
                &'static str,
                (i64, usize, String),
                &[&str],
            ) = if oi < shots.len() {
                ("Shot", shots[oi].clone(), SHOT_STEPS)
            } else {
                ("Asset", assets[oi - shots.len()].clone(), ASSET_STEPS)
            };
            // Spread the remaining budget evenly so the total lands on the target.
            let want = (per_owner * (oi + 1) as f64).round() as usize - made;
            let mut prev: Option<i64> = None;
            for k in 0..want {
                let step = step_list[k % step_list.len()];
                let id = g.next_id("Task");
                let mut e = Entity::new("Task", id);
                let content = if k < step_list.len() {
                    step.to_owned()
                } else {
                    format!("{step} {}", k / step_list.len() + 1)
                };
                f.put(&mut e, "content", text(content));
                f.put(&mut e, "entity", link(otype, oid));
                if let Some(&s) = steps.get(step) {
                    f.put(&mut e, "step", link("Step", s));
                }
                if let Some(&p) = projects.get(pi) {
                    f.put(&mut e, "project", proj(p));
                }
                let st = g.status(
                    "Task",
                    "sg_status_list",
                    &[("wtg", 4), ("rdy", 2), ("ip", 4), ("fin", 6), ("hld", 1)],
                );
                f.put(&mut e, "sg_status_list", st);
                let mut assignees = Vec::new();
                if let Some(u) = g.pick(&users) {
                    assignees.push(EntityRef::new("HumanUser", u));
                }
                if g.rng.random_bool(0.2)
                    && let Some(u) = g.pick(&users)
                    && !assignees.iter().any(|a| a.id == u)
                {
                    assignees.push(EntityRef::new("HumanUser", u));
                }
                f.put(&mut e, "task_assignees", Value::MultiEntity(assignees));
                let c = g.created(made + k, n_tasks_target);
                let start = c.0 / DAY + g.rng.random_range(0..30);
                let due = start + g.rng.random_range(3..40);
                f.put(
                    &mut e,
                    "start_date",
                    Date::from_days_since_epoch(start)
                        .map(Value::Date)
                        .unwrap_or(Value::Null),
                );
                f.put(
                    &mut e,
                    "due_date",
                    Date::from_days_since_epoch(due)
                        .map(Value::Date)
                        .unwrap_or(Value::Null),
                );
                f.put(
                    &mut e,
                    "est_in_mins",
                    Value::Int(g.rng.random_range(1..40) * 60),
                );
                f.put(&mut e, "sg_task_order", Value::Int(k as i64));
                f.put(&mut e, "created_at", Value::DateTime(c));
                f.put(
                    &mut e,
                    "updated_at",
                    Value::DateTime(DateTime(c.0 + g.rng.random_range(0..90) * DAY)),
                );
                f.put(&mut e, "created_by", creator.clone());
                if let Some(p) = prev {
                    f.put(
                        &mut e,
                        "upstream_tasks",
                        Value::MultiEntity(vec![EntityRef::new("Task", p)]),
                    );
                }
                let retire = g.retire_roll(0.01);
                g.insert(e, retire);
                g.push_multi(otype, oid, "tasks", EntityRef::new("Task", id));
                if let Some(p) = prev {
                    g.push_multi("Task", p, "downstream_tasks", EntityRef::new("Task", id));
                }
                prev = Some(id);
                tasks.push((
                    id,
                    pi,
                    otype,
                    oid,
                    format!("{ocode}_{}", step.to_lowercase()),
                ));
            }
            made += want;
        }
    }

    // Versions, each made for a task.
    let n_versions = count(scale, 0.25, 1);
    let mut versions: Vec<(i64, usize, usize)> = Vec::with_capacity(n_versions);
    let mut versions_by_project: Vec<Vec<i64>> = vec![Vec::new(); n_proj];
    if g.has_type("Version") && !tasks.is_empty() {
        let f = TypeFields::of(g.st, "Version");
        let mut per_task: Vec<u16> = vec![0; tasks.len()];
        for i in 0..n_versions {
            let id = g.next_id("Version");
            let ti = g.rng.random_range(0..tasks.len());
            per_task[ti] += 1;
            let (tid, pi, otype, oid, ref stem) = tasks[ti];
            let mut e = Entity::new("Version", id);
            f.put(&mut e, "code", text(format!("{stem}_v{:03}", per_task[ti])));
            f.put(&mut e, "entity", link(otype, oid));
            f.put(&mut e, "sg_task", link("Task", tid));
            if let Some(&p) = projects.get(pi) {
                f.put(&mut e, "project", proj(p));
            }
            let u = user(g, &users);
            f.put(&mut e, "user", u);
            let st = g.status(
                "Version",
                "sg_status_list",
                &[("rev", 5), ("vwd", 4), ("na", 1)],
            );
            f.put(&mut e, "sg_status_list", st);
            let first = 1001;
            let last = first + g.rng.random_range(24..200);
            f.put(&mut e, "sg_first_frame", Value::Int(first));
            f.put(&mut e, "sg_last_frame", Value::Int(last));
            f.put(&mut e, "frame_count", Value::Int(last - first + 1));
            f.put(&mut e, "frame_range", text(format!("{first}-{last}")));
            f.put(
                &mut e,
                "sg_uploaded_movie_frame_rate",
                Value::Float([23.976, 24.0, 25.0][g.rng.random_range(0..3)]),
            );
            f.put(
                &mut e,
                "sg_path_to_movie",
                text(format!(
                    "/prod/proj{:03}/{stem}/v{:03}/{stem}.mov",
                    pi + 1,
                    per_task[ti]
                )),
            );
            let desc = if g.rng.random_bool(0.6) {
                text(g.words(7))
            } else {
                Value::Null
            };
            f.put(&mut e, "description", desc);
            f.put(&mut e, "flagged", Value::Bool(g.rng.random_bool(0.05)));
            let c = g.created(i, n_versions);
            f.put(&mut e, "created_at", Value::DateTime(c));
            f.put(&mut e, "updated_at", Value::DateTime(c));
            f.put(&mut e, "created_by", creator.clone());
            let retire = g.retire_roll(0.02);
            g.insert(e, retire);
            versions_by_project[pi].push(id);
            versions.push((id, pi, ti));
        }
    }

    // Published files, each from a version.
    let n_pf = count(scale, 0.15, 1);
    if g.has_type("PublishedFile") && !versions.is_empty() {
        let f = TypeFields::of(g.st, "PublishedFile");
        for i in 0..n_pf {
            let id = g.next_id("PublishedFile");
            let (vid, pi, ti) = versions[g.rng.random_range(0..versions.len())];
            let (tid, _, otype, oid, ref stem) = tasks[ti];
            let ext = ["ma", "abc", "exr", "nk", "mov", "tif"][i % 6];
            let name = format!("{stem}.{ext}");
            let vn = g.rng.random_range(1..30);
            let mut e = Entity::new("PublishedFile", id);
            f.put(&mut e, "code", text(name.clone()));
            f.put(&mut e, "name", text(name.clone()));
            f.put(&mut e, "version_number", Value::Int(vn));
            f.put(&mut e, "entity", link(otype, oid));
            f.put(&mut e, "task", link("Task", tid));
            f.put(&mut e, "version", link("Version", vid));
            if let Some(&p) = projects.get(pi) {
                f.put(&mut e, "project", proj(p));
            }
            if let Some(&t) = pf_types.get(i % pf_types.len().max(1)) {
                f.put(&mut e, "published_file_type", link("PublishedFileType", t));
            }
            let path = format!("/prod/proj{:03}/publish/{stem}/v{vn:03}/{name}", pi + 1);
            f.put(&mut e, "path_cache", text(path.clone()));
            f.put(
                &mut e,
                "path",
                Value::Json(json!({"local_path": path, "local_path_linux": path, "name": name, "link_type": "local", "content_type": null, "type": "Attachment", "id": id})),
            );
            let st = g.status(
                "PublishedFile",
                "sg_status_list",
                &[("cmpt", 8), ("ip", 1), ("wtg", 1)],
            );
            f.put(&mut e, "sg_status_list", st);
            let c = g.created(i, n_pf);
            f.put(&mut e, "created_at", Value::DateTime(c));
            f.put(&mut e, "created_by", creator.clone());
            let retire = g.retire_roll(0.01);
            g.insert(e, retire);
            g.push_multi(
                "Version",
                vid,
                "published_files",
                EntityRef::new("PublishedFile", id),
            );
        }
    }

    // Playlists of versions of their project.
    let n_playlists = count(scale, 0.005, 1);
    if g.has_type("Playlist") {
        let f = TypeFields::of(g.st, "Playlist");
        for i in 0..n_playlists {
            let id = g.next_id("Playlist");
            let pi = i % n_proj;
            let c = g.created(i, n_playlists);
            let mut e = Entity::new("Playlist", id);
            f.put(
                &mut e,
                "code",
                text(format!(
                    "Dailies {} #{}",
                    Date::from_days_since_epoch(c.0 / DAY)
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    i + 1
                )),
            );
            if let Some(&p) = projects.get(pi) {
                f.put(&mut e, "project", proj(p));
            }
            let st = g.status(
                "Playlist",
                "sg_status",
                &[("clsd", 6), ("opn", 3), ("ip", 1)],
            );
            f.put(&mut e, "sg_status", st);
            f.put(&mut e, "sg_date_and_time", Value::DateTime(c));
            f.put(&mut e, "created_at", Value::DateTime(c));
            f.put(&mut e, "created_by", creator.clone());
            let pool = versions_by_project[pi].clone();
            let mut chosen: Vec<i64> = Vec::new();
            if !pool.is_empty() {
                for _ in 0..g.rng.random_range(3..15) {
                    let v = pool[g.rng.random_range(0..pool.len())];
                    if !chosen.contains(&v) {
                        chosen.push(v);
                    }
                }
            }
            f.put(
                &mut e,
                "versions",
                Value::MultiEntity(
                    chosen
                        .iter()
                        .map(|v| EntityRef::new("Version", *v))
                        .collect(),
                ),
            );
            let retire = g.retire_roll(0.01);
            g.insert(e, retire);
            for v in chosen {
                g.push_multi("Version", v, "playlists", EntityRef::new("Playlist", id));
            }
        }
    }

    // Notes on shots, assets and versions.
    let n_notes = count(scale, 0.085, 1);
    if g.has_type("Note") {
        let f = TypeFields::of(g.st, "Note");
        for i in 0..n_notes {
            let id = g.next_id("Note");
            let target: Option<(&str, i64, usize)> = match g.rng.random_range(0..3) {
                0 if !shots.is_empty() => {
                    let s = &shots[g.rng.random_range(0..shots.len())];
                    Some(("Shot", s.0, s.1))
                }
                1 if !assets.is_empty() => {
                    let a = &assets[g.rng.random_range(0..assets.len())];
                    Some(("Asset", a.0, a.1))
                }
                _ if !versions.is_empty() => {
                    let v = versions[g.rng.random_range(0..versions.len())];
                    Some(("Version", v.0, v.1))
                }
                _ => None,
            };
            let pi = target.map(|t| t.2).unwrap_or(i % n_proj);
            let mut e = Entity::new("Note", id);
            let subject = format!(
                "{} {}",
                ["Feedback on", "Re:", "Client note:", "Dailies:"][i % 4],
                g.words(3)
            );
            f.put(&mut e, "subject", text(subject));
            let content = g.words(20);
            f.put(&mut e, "content", text(content));
            if let Some(&p) = projects.get(pi) {
                f.put(&mut e, "project", proj(p));
            }
            let u = user(g, &users);
            f.put(&mut e, "user", u);
            if let Some(u) = g.pick(&users) {
                f.put(
                    &mut e,
                    "addressings_to",
                    Value::MultiEntity(vec![EntityRef::new("HumanUser", u)]),
                );
            }
            let st = g.status(
                "Note",
                "sg_status_list",
                &[("opn", 3), ("clsd", 6), ("ip", 1)],
            );
            f.put(&mut e, "sg_status_list", st);
            f.put(
                &mut e,
                "sg_note_type",
                text(if i % 5 == 0 { "Client" } else { "Internal" }),
            );
            if let Some((t, tid, _)) = target {
                f.put(
                    &mut e,
                    "note_links",
                    Value::MultiEntity(vec![EntityRef::new(t, tid)]),
                );
            }
            let c = g.created(i, n_notes);
            f.put(&mut e, "created_at", Value::DateTime(c));
            f.put(&mut e, "created_by", creator.clone());
            let retire = g.retire_roll(0.02);
            g.insert(e, retire);
            if let Some((t, tid, _)) = target {
                g.push_multi(t, tid, "notes", EntityRef::new("Note", id));
            }
        }
    }
}
