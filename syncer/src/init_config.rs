//! `init-config`: reads the site's schema and writes a starter config with every cacheable field of
//! the chosen types (the 2015 tool's `setup`), non-interactively.

use std::fmt::Write as _;

use shotgun_cache_core::model::{Cacheability, SiteSchema};

/// What to write.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub site_url: String,
    pub script_name: String,
    /// The entity types to cache.
    pub types: Vec<String>,
    pub sqlite_path: String,
}

/// Why no config could be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    #[error("--types: entity type '{0}' does not exist on the site{1}")]
    UnknownType(String, String),
    #[error("--types: give at least one entity type (e.g. --types Shot,Asset)")]
    NoTypes,
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders the starter config. Uncacheable fields are listed as comments with the reason.
pub fn render(schema: &SiteSchema, opts: &InitOptions) -> Result<String, InitError> {
    if opts.types.is_empty() {
        return Err(InitError::NoTypes);
    }
    let mut out = String::new();
    out.push_str("# Shotgun Cache configuration, written by `shotgun-cache-syncer init-config`.\n");
    out.push_str(
        "# Secrets are not written here: set SHOTGUN_CACHE_SITE__SCRIPT_KEY (or ..._FILE).\n\n",
    );
    let _ = writeln!(
        out,
        "[site]\nurl = {}\nscript_name = {}\n",
        toml_str(&opts.site_url),
        toml_str(&opts.script_name)
    );
    let _ = writeln!(
        out,
        "[store]\nbackend = \"sqlite\"\nsqlite_path = {}\n",
        toml_str(&opts.sqlite_path)
    );
    out.push_str("[syncer]\npoll_interval_ms = 1000\npage_size = 500\nimport_concurrency = 4\n\n");
    for t in &opts.types {
        let Some(ty) = schema.entity(t) else {
            let hint = schema
                .types
                .keys()
                .find(|x| x.eq_ignore_ascii_case(t))
                .map(|x| format!(" (did you mean '{x}'?)"))
                .unwrap_or_default();
            return Err(InitError::UnknownType(t.clone(), hint));
        };
        let _ = writeln!(out, "[types.{t}]");
        out.push_str("fields = [\n");
        let mut skipped = Vec::new();
        for (name, f) in &ty.fields {
            if name == "id" {
                continue;
            }
            match f.cacheability() {
                Cacheability::Cacheable => {
                    let _ = writeln!(out, "    {}, # {}", toml_str(name), f.data_type.as_str());
                }
                Cacheability::NotCacheable(reason) => skipped.push((name.clone(), reason)),
            }
        }
        out.push_str("]\n");
        for (name, reason) in skipped {
            let _ = writeln!(out, "# not cacheable: {name}: {reason}");
        }
        out.push_str("# filter = [[\"sg_status_list\", \"is_not\", \"omt\"]]   # optional: only cache matching rows\n\n");
    }
    Ok(out)
}
