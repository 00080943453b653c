//! The workload driver: realistic random edits (status changes, new versions and notes, playlist
//! edits, reassignments, renames, thumbnails, deletes and revives) at a given rate for a given time or
//! count, through the same `Site` write path as every other writer, so every edit logs its events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use shotgun_cache_core::model::{EntityRef, Value};

use crate::site::{Actor, Fields, Site, SiteError};

/// A workload to run in the background.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Edits per second.
    pub rate_per_sec: f64,
    /// Stop after this long (seconds).
    pub duration_secs: Option<f64>,
    /// Stop after this many edits.
    pub count: Option<u64>,
    pub seed: u64,
    /// The script the edits are made as (default: the first configured script).
    pub script: Option<String>,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            rate_per_sec: 100.0,
            duration_secs: Some(10.0),
            count: None,
            seed: 3,
            script: None,
        }
    }
}

/// Progress of one workload.
#[derive(Debug, Default)]
pub struct WorkloadStatus {
    pub done: AtomicU64,
    pub errors: AtomicU64,
    pub finished: AtomicBool,
    stop: AtomicBool,
}

/// A snapshot of a workload's progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkloadReport {
    pub id: u64,
    pub done: u64,
    pub errors: u64,
    pub finished: bool,
}

/// The running workloads of a site.
#[derive(Debug, Default)]
pub struct Workloads {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, Arc<WorkloadStatus>>>,
}

impl Workloads {
    /// Starts a workload on the current tokio runtime; returns its id.
    pub fn start(&self, site: Arc<Site>, cfg: WorkloadConfig) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let status = Arc::new(WorkloadStatus::default());
        self.running.lock().insert(id, status.clone());
        tokio::spawn(run(site, cfg, status));
        id
    }

    pub fn report(&self, id: u64) -> Option<WorkloadReport> {
        let g = self.running.lock();
        let s = g.get(&id)?;
        Some(WorkloadReport {
            id,
            done: s.done.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            finished: s.finished.load(Ordering::Relaxed),
        })
    }

    /// Asks a workload to stop; returns false for an unknown id.
    pub fn stop(&self, id: u64) -> bool {
        match self.running.lock().get(&id) {
            Some(s) => {
                s.stop.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    pub fn stop_all(&self) {
        for s in self.running.lock().values() {
            s.stop.store(true, Ordering::Relaxed);
        }
    }
}

async fn run(site: Arc<Site>, cfg: WorkloadConfig, status: Arc<WorkloadStatus>) {
    let actor = cfg
        .script
        .as_deref()
        .and_then(|s| site.script_actor(s))
        .unwrap_or_else(|| site.default_actor());
    let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(cfg.seed)));
    let started = Instant::now();
    let rate = cfg.rate_per_sec.max(0.001);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        let elapsed = started.elapsed().as_secs_f64();
        let done = status.done.load(Ordering::Relaxed) + status.errors.load(Ordering::Relaxed);
        let over_time = cfg.duration_secs.is_some_and(|d| elapsed >= d);
        let over_count = cfg.count.is_some_and(|c| done >= c);
        if status.stop.load(Ordering::Relaxed) || over_time || over_count {
            break;
        }
        let mut due = (rate * elapsed).floor() as u64;
        if let Some(c) = cfg.count {
            due = due.min(c);
        }
        let n = due.saturating_sub(done);
        if n == 0 {
            continue;
        }
        let (site, rng, actor, status2) =
            (site.clone(), rng.clone(), actor.clone(), status.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let mut rng = rng.lock();
            for _ in 0..n {
                match random_edit(&site, &mut rng, &actor) {
                    Ok(_) => status2.done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => status2.errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
        .await;
    }
    status.finished.store(true, Ordering::Relaxed);
}

/// Runs `n` edits now (synchronously); returns `(succeeded, failed)`.
pub fn run_edits(site: &Site, n: u64, seed: u64, actor: &Actor) -> (u64, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ok = 0;
    let mut failed = 0;
    for _ in 0..n {
        match random_edit(site, &mut rng, actor) {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    (ok, failed)
}

fn pick_live(site: &Site, t: &str, rng: &mut StdRng) -> Option<i64> {
    site.random_row(t, false, rng.random())
}

fn pick_retired(site: &Site, t: &str, rng: &mut StdRng) -> Option<i64> {
    site.random_row(t, true, rng.random())
}

fn other_status(
    site: &Site,
    t: &str,
    field: &str,
    current: Option<&Value>,
    rng: &mut StdRng,
) -> Option<String> {
    let values = site.with_schema(|s| s.field(t, field).map(|f| f.valid_values.clone()))?;
    let choices: Vec<&String> = values
        .iter()
        .filter(|v| !matches!(current, Some(Value::Text(c)) if c == *v))
        .collect();
    if choices.is_empty() {
        None
    } else {
        Some(choices[rng.random_range(0..choices.len())].clone())
    }
}

fn field(site: &Site, t: &str, id: i64, f: &str) -> Option<Value> {
    site.read_one(t, id, &Fields::Only(vec![f.to_owned()]), false)
        .ok()?
        .get(f)
        .cloned()
}

fn link_json(v: &Value) -> Json {
    match v {
        Value::Entity(r) => json!({"type": r.entity_type, "id": r.id}),
        _ => Json::Null,
    }
}

const WORDS: &[&str] = &[
    "tweak",
    "approved",
    "more contrast",
    "fix edge",
    "new plate",
    "client ok",
    "retime",
    "denoise",
    "final",
];

/// One random edit. Returns a short description of what it did.
///
/// # Errors
/// When the site refuses the edit (rare: e.g. no candidate row of a type).
pub fn random_edit(site: &Site, rng: &mut StdRng, actor: &Actor) -> Result<String, SiteError> {
    let roll = rng.random_range(0..100u32);
    let none = || SiteError::BadRequest("no candidate row".into());
    match roll {
        0..35 => {
            let id = pick_live(site, "Task", rng).ok_or_else(none)?;
            let cur = field(site, "Task", id, "sg_status_list");
            let s =
                other_status(site, "Task", "sg_status_list", cur.as_ref(), rng).ok_or_else(none)?;
            site.update(
                actor,
                "Task",
                id,
                json!({"sg_status_list": s}).as_object().ok_or_else(none)?,
            )?;
            Ok(format!("Task {id} status {s}"))
        }
        35..50 => {
            let id = pick_live(site, "Version", rng).ok_or_else(none)?;
            let cur = field(site, "Version", id, "sg_status_list");
            let s = other_status(site, "Version", "sg_status_list", cur.as_ref(), rng)
                .ok_or_else(none)?;
            let desc = WORDS[rng.random_range(0..WORDS.len())];
            site.update(
                actor,
                "Version",
                id,
                json!({"sg_status_list": s, "description": desc})
                    .as_object()
                    .ok_or_else(none)?,
            )?;
            Ok(format!("Version {id} status {s}"))
        }
        50..60 => {
            let task = pick_live(site, "Task", rng).ok_or_else(none)?;
            let row = site.read_one(
                "Task",
                task,
                &Fields::Only(vec!["entity".into(), "project".into(), "content".into()]),
                false,
            )?;
            let entity = row.get("entity").map(link_json).unwrap_or(Json::Null);
            let project = row.get("project").map(link_json).unwrap_or(Json::Null);
            let code = format!(
                "{}_v{:03}",
                match row.get("content") {
                    Some(Value::Text(c)) => c.to_lowercase().replace(' ', "_"),
                    _ => "take".into(),
                },
                rng.random_range(1..999)
            );
            let id = site.create(
                actor,
                "Version",
                json!({"code": code, "entity": entity, "project": project, "sg_task": {"type": "Task", "id": task}, "description": "new take"})
                    .as_object()
                    .ok_or_else(none)?,
            )?;
            Ok(format!("Version {id} created"))
        }
        60..68 => {
            let shot = pick_live(site, "Shot", rng).ok_or_else(none)?;
            let project = field(site, "Shot", shot, "project")
                .map(|v| link_json(&v))
                .unwrap_or(Json::Null);
            let text = WORDS[rng.random_range(0..WORDS.len())];
            let id = site.create(
                actor,
                "Note",
                json!({"subject": format!("Note on shot {shot}"), "content": text, "project": project, "note_links": [{"type": "Shot", "id": shot}]})
                    .as_object()
                    .ok_or_else(none)?,
            )?;
            Ok(format!("Note {id} created"))
        }
        68..75 => {
            let id = pick_live(site, "Shot", rng).ok_or_else(none)?;
            let cur = field(site, "Shot", id, "sg_status_list");
            let s =
                other_status(site, "Shot", "sg_status_list", cur.as_ref(), rng).ok_or_else(none)?;
            site.update(
                actor,
                "Shot",
                id,
                json!({"sg_status_list": s}).as_object().ok_or_else(none)?,
            )?;
            Ok(format!("Shot {id} status {s}"))
        }
        75..80 => {
            let pl = pick_live(site, "Playlist", rng).ok_or_else(none)?;
            let v = pick_live(site, "Version", rng).ok_or_else(none)?;
            site.link_add(
                actor,
                "Playlist",
                pl,
                "versions",
                &[EntityRef::new("Version", v)],
            )?;
            Ok(format!("Playlist {pl} + Version {v}"))
        }
        80..85 => {
            let t = pick_live(site, "Task", rng).ok_or_else(none)?;
            let u = pick_live(site, "HumanUser", rng).ok_or_else(none)?;
            site.update(
                actor,
                "Task",
                t,
                json!({"task_assignees": [{"type": "HumanUser", "id": u}]})
                    .as_object()
                    .ok_or_else(none)?,
            )?;
            Ok(format!("Task {t} assigned to {u}"))
        }
        85..89 => {
            let id = pick_live(site, "Shot", rng).ok_or_else(none)?;
            let code = match field(site, "Shot", id, "code") {
                Some(Value::Text(c)) => format!(
                    "{}_{}",
                    c.split('_').take(2).collect::<Vec<_>>().join("_"),
                    rng.random_range(0..100)
                ),
                _ => format!("shot{id}"),
            };
            site.update(
                actor,
                "Shot",
                id,
                json!({"code": code}).as_object().ok_or_else(none)?,
            )?;
            Ok(format!("Shot {id} renamed"))
        }
        89..93 => {
            let id = pick_live(site, "Version", rng).ok_or_else(none)?;
            site.delete(actor, "Version", id)?;
            Ok(format!("Version {id} deleted"))
        }
        93..96 => {
            let id = pick_retired(site, "Version", rng).ok_or_else(none)?;
            site.revive(actor, "Version", id)?;
            Ok(format!("Version {id} revived"))
        }
        96..98 => {
            let shot = pick_live(site, "Shot", rng).ok_or_else(none)?;
            let project = field(site, "Shot", shot, "project")
                .map(|v| link_json(&v))
                .unwrap_or(Json::Null);
            let id = site.create(
                actor,
                "Task",
                json!({"content": "Paint", "entity": {"type": "Shot", "id": shot}, "project": project}).as_object().ok_or_else(none)?,
            )?;
            Ok(format!("Task {id} created"))
        }
        _ => {
            let id = pick_live(site, "Shot", rng).ok_or_else(none)?;
            let a = site.set_image(actor, "Shot", id, "image", true)?;
            Ok(format!("Shot {id} thumbnail {a}"))
        }
    }
}
