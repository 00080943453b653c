//! The configuration shared by both services: one TOML file, environment overrides, secrets from the
//! environment or files. The contract is `docs/config-contract.md`.
//!
//! Loading (file + env + `_FILE` secrets, unknown-key errors naming the key) is implemented in [`Config::load`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

/// A secret: never printed (Debug shows `***`), never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "<unset>" } else { "***" })
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub url: String,
    pub script_name: String,
    #[serde(skip)]
    pub script_key: Secret,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Sqlite,
    Rethinkdb,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: Backend,
    pub sqlite_path: String,
    pub rethinkdb_address: String,
    pub rethinkdb_database: String,
    pub rethinkdb_user: String,
    /// How long one RethinkDB call may take before it fails (a stalled server is then reported
    /// unavailable).
    pub rethinkdb_timeout_secs: u64,
    #[serde(skip)]
    pub rethinkdb_password: Secret,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Sqlite,
            sqlite_path: "shotgun-cache.db".into(),
            rethinkdb_address: "127.0.0.1:28015".into(),
            rethinkdb_database: "shotgun_cache".into(),
            rethinkdb_user: "admin".into(),
            rethinkdb_timeout_secs: 10,
            rethinkdb_password: Secret::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub required: bool,
    #[serde(skip)]
    pub tokens: Vec<Secret>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncerConfig {
    pub admin_listen: String,
    pub grpc_listen: String,
    pub poll_interval_ms: u64,
    pub page_size: u32,
    pub import_concurrency: u32,
    pub gap_timeout_secs: u64,
    pub reconcile_interval_secs: u64,
    pub journal_retention_hours: u64,
    pub request_timeout_secs: u64,
    #[serde(skip)]
    pub webhook_secret: Secret,
}

impl Default for SyncerConfig {
    fn default() -> Self {
        SyncerConfig {
            admin_listen: "0.0.0.0:9090".into(),
            grpc_listen: "0.0.0.0:50052".into(),
            poll_interval_ms: 1000,
            page_size: 500,
            import_concurrency: 4,
            gap_timeout_secs: 300,
            reconcile_interval_secs: 300,
            journal_retention_hours: 168,
            request_timeout_secs: 30,
            webhook_secret: Secret::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueryServerConfig {
    pub grpc_listen: String,
    pub admin_listen: String,
    pub http_listen: String,
    pub max_connection_age_secs: u64,
    pub drain_secs: u64,
    pub tls_cert_file: String,
    pub tls_key_file: String,
    /// MiB of memory for answers of finds and counts served again while the store's data has not
    /// changed (SQLite store; 0 turns it off). See `store::sqlite::SqliteStore::enable_result_cache`.
    pub result_cache_mb: u64,
}

impl Default for QueryServerConfig {
    fn default() -> Self {
        QueryServerConfig {
            grpc_listen: "0.0.0.0:50051".into(),
            admin_listen: "0.0.0.0:9091".into(),
            http_listen: "0.0.0.0:8080".into(),
            max_connection_age_secs: 300,
            drain_secs: 5,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            result_cache_mb: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Api3Config {
    pub forward: bool,
    /// The syncer's gRPC address (`http://host:50052`), asked to re-read entities after a forwarded
    /// write so the writer reads its own write at once. Empty: wait for the event log instead.
    pub syncer_url: String,
    #[serde(skip)]
    pub clients: Vec<(String, Secret)>,
}

impl Default for Api3Config {
    fn default() -> Self {
        Api3Config {
            forward: true,
            syncer_url: String::new(),
            clients: Vec::new(),
        }
    }
}

/// `fields = "all"` or a list.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum FieldSelection {
    All(AllMarker),
    List(Vec<String>),
}

/// The literal string `"all"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum AllMarker {
    All,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TypeConfig {
    pub fields: FieldSelection,
    /// A REST array or hash filter; only matching entities are cached.
    #[serde(default)]
    pub filter: Option<toml::Value>,
    #[serde(default)]
    pub filterable: Vec<String>,
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub site: SiteConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub syncer: SyncerConfig,
    #[serde(default)]
    pub query_server: QueryServerConfig,
    #[serde(default)]
    pub api3: Api3Config,
    #[serde(default)]
    pub types: BTreeMap<String, TypeConfig>,
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Why the configuration could not be loaded. Every variant names the key (or environment
/// variable, or file) at fault and says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    /// The config file is not valid TOML.
    #[error("config file {path} is not valid TOML: {reason}")]
    Syntax { path: String, reason: String },
    /// A key that is not part of the configuration (in the file or as an environment variable).
    #[error("unknown config key `{key}`{origin}{hint}")]
    UnknownKey {
        key: String,
        origin: String,
        hint: String,
    },
    /// A required key is missing.
    #[error("missing config key `{key}`: {reason}")]
    Missing { key: String, reason: String },
    /// A key is present but its value is wrong.
    #[error("invalid config key `{key}`{origin}: {reason}")]
    Invalid {
        key: String,
        origin: String,
        reason: String,
    },
    /// A secret was written into the config file.
    #[error(
        "config key `{key}` is a secret and must not be in the config file; set {var} or {var}_FILE instead"
    )]
    SecretInFile { key: String, var: String },
    /// An environment variable (a secret or its `_FILE` variant) is unusable.
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
}

/// The prefix of every environment variable the configuration reads.
pub const ENV_PREFIX: &str = "SHOTGUN_CACHE_";

/// The shape a key's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
    StrList,
    /// `"all"` or a list of field names.
    Fields,
    /// A REST array or hash filter.
    Filter,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Int => "an integer",
            Kind::Bool => "true or false",
            Kind::StrList => "a list of strings",
            Kind::Fields => "\"all\" or a list of field names",
            Kind::Filter => {
                "a filter (a list of [field, operator, value] conditions or a {logical_operator, conditions} table)"
            }
        }
    }
}

/// One section: its name, its plain keys with their kinds, and its secret keys.
type SectionSpec = (
    &'static str,
    &'static [(&'static str, Kind)],
    &'static [&'static str],
);

/// Every section with its plain keys and its secrets (key, variable suffix).
const SECTIONS: &[SectionSpec] = &[
    (
        "site",
        &[("url", Kind::Str), ("script_name", Kind::Str)],
        &["script_key"],
    ),
    (
        "store",
        &[
            ("backend", Kind::Str),
            ("sqlite_path", Kind::Str),
            ("rethinkdb_address", Kind::Str),
            ("rethinkdb_database", Kind::Str),
            ("rethinkdb_user", Kind::Str),
            ("rethinkdb_timeout_secs", Kind::Int),
        ],
        &["rethinkdb_password"],
    ),
    ("auth", &[("required", Kind::Bool)], &["tokens"]),
    (
        "syncer",
        &[
            ("admin_listen", Kind::Str),
            ("grpc_listen", Kind::Str),
            ("poll_interval_ms", Kind::Int),
            ("page_size", Kind::Int),
            ("import_concurrency", Kind::Int),
            ("gap_timeout_secs", Kind::Int),
            ("reconcile_interval_secs", Kind::Int),
            ("journal_retention_hours", Kind::Int),
            ("request_timeout_secs", Kind::Int),
        ],
        &["webhook_secret"],
    ),
    (
        "query_server",
        &[
            ("grpc_listen", Kind::Str),
            ("admin_listen", Kind::Str),
            ("http_listen", Kind::Str),
            ("max_connection_age_secs", Kind::Int),
            ("drain_secs", Kind::Int),
            ("tls_cert_file", Kind::Str),
            ("tls_key_file", Kind::Str),
            ("result_cache_mb", Kind::Int),
        ],
        &[],
    ),
    (
        "api3",
        &[("forward", Kind::Bool), ("syncer_url", Kind::Str)],
        &["clients"],
    ),
];

/// The keys of one `[types.X]` table.
const TYPE_KEYS: &[(&str, Kind)] = &[
    ("fields", Kind::Fields),
    ("filter", Kind::Filter),
    ("filterable", Kind::StrList),
];

/// Integer ranges (inclusive) of the numeric keys.
const RANGES: &[(&str, i64, i64)] = &[
    ("syncer.poll_interval_ms", 100, 60_000),
    ("syncer.page_size", 1, 5_000),
    ("syncer.import_concurrency", 1, 64),
    ("syncer.gap_timeout_secs", 1, 86_400),
    ("syncer.reconcile_interval_secs", 1, 86_400),
    ("syncer.journal_retention_hours", 1, 87_600),
    ("syncer.request_timeout_secs", 1, 600),
    ("query_server.max_connection_age_secs", 1, 86_400),
    ("query_server.drain_secs", 0, 600),
    ("query_server.result_cache_mb", 0, 65_536),
    ("store.rethinkdb_timeout_secs", 1, 600),
];

fn env_var_for(section: &str, key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}__{}",
        section.to_uppercase(),
        key.to_uppercase()
    )
}

fn section_spec(name: &str) -> Option<&'static SectionSpec> {
    SECTIONS.iter().find(|(s, _, _)| *s == name)
}

fn short_toml(v: &toml::Value) -> String {
    let mut s = match v {
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn toml_type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Checks that `v` has the shape `kind` asks for; the error text follows "invalid config key `k`: ".
fn check_kind(kind: Kind, v: &toml::Value) -> Result<(), String> {
    let ok = match (kind, v) {
        (Kind::Str, toml::Value::String(_)) => true,
        (Kind::Int, toml::Value::Integer(_)) => true,
        (Kind::Bool, toml::Value::Boolean(_)) => true,
        (Kind::StrList, toml::Value::Array(a)) => a.iter().all(toml::Value::is_str),
        (Kind::Fields, toml::Value::String(s)) => {
            if s == "all" {
                true
            } else {
                return Err(format!(
                    "expected {}, got the string {s:?}",
                    kind.describe()
                ));
            }
        }
        (Kind::Fields, toml::Value::Array(a)) => {
            if a.is_empty() {
                return Err(
                    "the field list is empty; list at least one field, or write \"all\"".into(),
                );
            }
            a.iter().all(toml::Value::is_str)
        }
        (Kind::Filter, toml::Value::Array(_) | toml::Value::Table(_)) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected {}, got {} ({})",
            kind.describe(),
            toml_type_name(v),
            short_toml(v)
        ))
    }
}

/// Parses an environment override into a TOML value of `kind`.
fn parse_env_value(kind: Kind, raw: &str) -> Result<toml::Value, String> {
    let trimmed = raw.trim();
    let list = |s: &str| -> Result<toml::Value, String> {
        if s.starts_with('[') {
            let json: serde_json::Value = serde_json::from_str(s)
                .map_err(|e| format!("expected a JSON list of strings: {e}"))?;
            json_to_toml(&json)
        } else {
            Ok(toml::Value::Array(
                s.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(|x| toml::Value::String(x.to_owned()))
                    .collect(),
            ))
        }
    };
    match kind {
        Kind::Str => Ok(toml::Value::String(raw.to_owned())),
        Kind::Int => trimmed
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("expected an integer, got {raw:?}")),
        Kind::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        Kind::StrList => list(trimmed),
        Kind::Fields => {
            if trimmed == "all" {
                Ok(toml::Value::String("all".into()))
            } else {
                list(trimmed)
            }
        }
        Kind::Filter => {
            let json: serde_json::Value = serde_json::from_str(trimmed)
                .map_err(|e| format!("expected a JSON filter: {e}"))?;
            json_to_toml(&json)
        }
    }
}

/// Converts JSON into TOML (TOML has no null, so a null is refused).
pub fn json_to_toml(v: &serde_json::Value) -> Result<toml::Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => return Err("null cannot be written in TOML".into()),
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(
                n.as_f64()
                    .ok_or_else(|| format!("number {n} is out of range"))?,
            ),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(a) => toml::Value::Array(a.iter().map(json_to_toml).collect::<Result<_, _>>()?),
        J::Object(o) => {
            let mut t = toml::Table::new();
            for (k, v) in o {
                t.insert(k.clone(), json_to_toml(v)?);
            }
            toml::Value::Table(t)
        }
    })
}

/// Converts TOML into JSON (datetimes become strings).
pub fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or(J::Null),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// Reads a secret from `var` or from the file named by `var_FILE` (trailing newline removed).
fn read_secret(env: &HashMap<String, String>, var: &str) -> Result<Option<String>, ConfigError> {
    let file_var = format!("{var}_FILE");
    match (env.get(var), env.get(&file_var)) {
        (Some(_), Some(_)) => Err(ConfigError::Env {
            var: var.to_owned(),
            reason: format!("both {var} and {file_var} are set; set only one"),
        }),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Env {
                var: file_var.clone(),
                reason: format!("cannot read the secret file {path:?}: {e}"),
            })?;
            Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
        }
        (None, None) => Ok(None),
    }
}

impl Config {
    /// Loads the configuration: the TOML file at `path`, then `SHOTGUN_CACHE_<SECTION>__<KEY>`
    /// overrides from `env`, then secrets from `env` (or the files named by their `_FILE`
    /// variants), then validation. See `docs/config-contract.md`.
    ///
    /// `[types.X]` tables are only checked for shape here; whether `X` and its fields exist and can
    /// be cached is checked by the syncer against the site schema.
    pub fn load(path: &Path, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Config::from_toml_str(&text, &path.display().to_string(), env)
    }

    /// [`Config::load`] on the text of a config file; `origin` names it in errors.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            reason: e.to_string().trim().to_owned(),
        })?;
        let in_file = format!(" in {origin}");
        check_table(&table, &in_file)?;
        apply_env_overrides(&mut table, env)?;
        for (key, why) in [
            ("url", "the Shotgun site URL is required"),
            ("script_name", "the API script name is required"),
        ] {
            let present =
                matches!(table.get("site"), Some(toml::Value::Table(t)) if t.contains_key(key));
            if !present {
                return Err(ConfigError::Missing {
                    key: format!("site.{key}"),
                    reason: format!("{why} (in {origin} or {})", env_var_for("site", key)),
                });
            }
        }

        let mut config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    key: "(file)".into(),
                    origin: in_file.clone(),
                    reason: e.message().to_owned(),
                })?;

        if let Some(v) = read_secret(env, &env_var_for("site", "script_key"))? {
            config.site.script_key = Secret(v);
        }
        if let Some(v) = read_secret(env, &env_var_for("store", "rethinkdb_password"))? {
            config.store.rethinkdb_password = Secret(v);
        }
        if let Some(v) = read_secret(env, &env_var_for("syncer", "webhook_secret"))? {
            config.syncer.webhook_secret = Secret(v);
        }
        let tokens_var = env_var_for("auth", "tokens");
        if let Some(v) = env.get(&tokens_var) {
            if env.contains_key(&format!("{tokens_var}_FILE")) {
                return Err(ConfigError::Env {
                    var: tokens_var.clone(),
                    reason: format!(
                        "both {tokens_var} and {tokens_var}_FILE are set; set only one"
                    ),
                });
            }
            config.auth.tokens = v
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| Secret(t.to_owned()))
                .collect();
        } else if let Some(v) = read_secret(env, &tokens_var)? {
            config.auth.tokens = v
                .lines()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| Secret(t.to_owned()))
                .collect();
        }
        let clients_var = env_var_for("api3", "clients");
        if let Some(v) = read_secret(env, &clients_var)? {
            let mut clients = Vec::new();
            for pair in v
                .split([',', '\n'])
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                let (name, key) = pair.split_once(':').ok_or_else(|| ConfigError::Env {
                    var: clients_var.clone(),
                    reason: "expected comma-separated name:key pairs; one entry has no ':'".into(),
                })?;
                if name.trim().is_empty() || key.is_empty() {
                    return Err(ConfigError::Env {
                        var: clients_var.clone(),
                        reason: "expected comma-separated name:key pairs; one entry has an empty name or key".into(),
                    });
                }
                clients.push((name.trim().to_owned(), Secret(key.to_owned())));
            }
            config.api3.clients = clients;
        }

        config.validate()?;
        Ok(config)
    }

    /// Semantic checks of the loaded values (ranges, addresses, required keys).
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: key.to_owned(),
            origin: String::new(),
            reason,
        };
        if self.site.url.trim().is_empty() {
            return Err(ConfigError::Missing {
                key: "site.url".into(),
                reason: "the Shotgun site URL is required".into(),
            });
        }
        if !(self.site.url.starts_with("http://") || self.site.url.starts_with("https://")) {
            return Err(invalid(
                "site.url",
                format!("{:?} must start with http:// or https://", self.site.url),
            ));
        }
        if self.site.script_name.trim().is_empty() {
            return Err(ConfigError::Missing {
                key: "site.script_name".into(),
                reason: "the API script name is required".into(),
            });
        }
        let ints: [(&str, i64); 11] = [
            (
                "syncer.poll_interval_ms",
                self.syncer.poll_interval_ms as i64,
            ),
            ("syncer.page_size", i64::from(self.syncer.page_size)),
            (
                "syncer.import_concurrency",
                i64::from(self.syncer.import_concurrency),
            ),
            (
                "syncer.gap_timeout_secs",
                self.syncer.gap_timeout_secs as i64,
            ),
            (
                "syncer.reconcile_interval_secs",
                self.syncer.reconcile_interval_secs as i64,
            ),
            (
                "syncer.journal_retention_hours",
                self.syncer.journal_retention_hours as i64,
            ),
            (
                "syncer.request_timeout_secs",
                self.syncer.request_timeout_secs as i64,
            ),
            (
                "query_server.max_connection_age_secs",
                self.query_server.max_connection_age_secs as i64,
            ),
            (
                "query_server.drain_secs",
                self.query_server.drain_secs as i64,
            ),
            (
                "query_server.result_cache_mb",
                i64::try_from(self.query_server.result_cache_mb).unwrap_or(i64::MAX),
            ),
            (
                "store.rethinkdb_timeout_secs",
                i64::try_from(self.store.rethinkdb_timeout_secs).unwrap_or(i64::MAX),
            ),
        ];
        for (key, value) in ints {
            if let Some((_, lo, hi)) = RANGES.iter().find(|(k, _, _)| *k == key)
                && !(*lo..=*hi).contains(&value)
            {
                return Err(invalid(
                    key,
                    format!("{value} is out of range; allowed {lo}..={hi}"),
                ));
            }
        }
        for (key, addr) in [
            ("syncer.admin_listen", &self.syncer.admin_listen),
            ("syncer.grpc_listen", &self.syncer.grpc_listen),
            ("query_server.grpc_listen", &self.query_server.grpc_listen),
            ("query_server.admin_listen", &self.query_server.admin_listen),
            ("query_server.http_listen", &self.query_server.http_listen),
        ] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid(
                    key,
                    format!("{addr:?} is not a listen address like 0.0.0.0:9090"),
                ));
            }
        }
        if self.query_server.tls_cert_file.is_empty() != self.query_server.tls_key_file.is_empty() {
            let missing = if self.query_server.tls_cert_file.is_empty() {
                "query_server.tls_cert_file"
            } else {
                "query_server.tls_key_file"
            };
            return Err(ConfigError::Missing {
                key: missing.into(),
                reason: "tls_cert_file and tls_key_file must be set together".into(),
            });
        }
        match self.store.backend {
            Backend::Sqlite => {
                if self.store.sqlite_path.trim().is_empty() {
                    return Err(invalid(
                        "store.sqlite_path",
                        "the SQLite file path is empty".into(),
                    ));
                }
            }
            Backend::Rethinkdb => {
                if self.store.rethinkdb_address.trim().is_empty() {
                    return Err(invalid(
                        "store.rethinkdb_address",
                        "the RethinkDB address is empty".into(),
                    ));
                }
                if self.store.rethinkdb_database.trim().is_empty() {
                    return Err(invalid(
                        "store.rethinkdb_database",
                        "the RethinkDB database name is empty".into(),
                    ));
                }
            }
        }
        if self.auth.required && self.auth.tokens.is_empty() {
            return Err(ConfigError::Missing {
                key: "auth.tokens".into(),
                reason: format!(
                    "auth.required is true but no token is set; set {} or {}_FILE",
                    env_var_for("auth", "tokens"),
                    env_var_for("auth", "tokens")
                ),
            });
        }
        for (name, t) in &self.types {
            let key = |k: &str| format!("types.{name}.{k}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid(
                    &format!("types.{name}"),
                    "an entity type name is letters, digits and '_' only".into(),
                ));
            }
            if let FieldSelection::List(fields) = &t.fields {
                let mut seen = std::collections::BTreeSet::new();
                for f in fields {
                    if f.is_empty() {
                        return Err(invalid(&key("fields"), "a field name is empty".into()));
                    }
                    if f.contains('.') {
                        return Err(invalid(
                            &key("fields"),
                            format!("{f:?} is a deep-link path; list the type's own fields only"),
                        ));
                    }
                    if !seen.insert(f) {
                        return Err(invalid(&key("fields"), format!("{f:?} is listed twice")));
                    }
                }
            }
        }
        Ok(())
    }

    /// The secret script key, or an error naming where to set it.
    pub fn require_script_key(&self) -> Result<&str, ConfigError> {
        if self.site.script_key.expose().is_empty() {
            let var = env_var_for("site", "script_key");
            return Err(ConfigError::Missing {
                key: "site.script_key".into(),
                reason: format!("the API script key is required; set {var} or {var}_FILE"),
            });
        }
        Ok(self.site.script_key.expose())
    }
}

/// Checks every key of the file against the known keys and their shapes.
fn check_table(table: &toml::Table, origin: &str) -> Result<(), ConfigError> {
    for (section, value) in table {
        if section == "types" {
            let toml::Value::Table(types) = value else {
                return Err(ConfigError::Invalid {
                    key: "types".into(),
                    origin: origin.to_owned(),
                    reason: format!(
                        "expected a table of [types.<EntityType>] tables, got {}",
                        toml_type_name(value)
                    ),
                });
            };
            for (type_name, tv) in types {
                let toml::Value::Table(t) = tv else {
                    return Err(ConfigError::Invalid {
                        key: format!("types.{type_name}"),
                        origin: origin.to_owned(),
                        reason: format!(
                            "expected a table with `fields` (and optional `filter`, `filterable`), got {}",
                            toml_type_name(tv)
                        ),
                    });
                };
                if !t.contains_key("fields") {
                    return Err(ConfigError::Missing {
                        key: format!("types.{type_name}.fields"),
                        reason:
                            "every cached type needs `fields` (a list of field names, or \"all\")"
                                .into(),
                    });
                }
                for (k, v) in t {
                    let full = format!("types.{type_name}.{k}");
                    let Some((_, kind)) = TYPE_KEYS.iter().find(|(name, _)| name == k) else {
                        return Err(ConfigError::UnknownKey {
                            key: full,
                            origin: origin.to_owned(),
                            hint: "; known keys of a [types.X] table: fields, filter, filterable"
                                .into(),
                        });
                    };
                    check_kind(*kind, v).map_err(|reason| ConfigError::Invalid {
                        key: full,
                        origin: origin.to_owned(),
                        reason,
                    })?;
                }
            }
            continue;
        }
        let Some((_, keys, secrets)) = section_spec(section) else {
            let known: Vec<&str> = SECTIONS
                .iter()
                .map(|(s, _, _)| *s)
                .chain(["types"])
                .collect();
            return Err(ConfigError::UnknownKey {
                key: section.clone(),
                origin: origin.to_owned(),
                hint: format!("; known sections: {}", known.join(", ")),
            });
        };
        let toml::Value::Table(t) = value else {
            return Err(ConfigError::Invalid {
                key: section.clone(),
                origin: origin.to_owned(),
                reason: format!(
                    "expected a [{section}] table, got {}",
                    toml_type_name(value)
                ),
            });
        };
        for (k, v) in t {
            let full = format!("{section}.{k}");
            if secrets.contains(&k.as_str()) {
                return Err(ConfigError::SecretInFile {
                    key: full,
                    var: env_var_for(section, k),
                });
            }
            let Some((_, kind)) = keys.iter().find(|(name, _)| name == k) else {
                let known: Vec<&str> = keys.iter().map(|(n, _)| *n).collect();
                return Err(ConfigError::UnknownKey {
                    key: full,
                    origin: origin.to_owned(),
                    hint: format!("; known keys in [{section}]: {}", known.join(", ")),
                });
            };
            check_kind(*kind, v).map_err(|reason| ConfigError::Invalid {
                key: full.clone(),
                origin: origin.to_owned(),
                reason,
            })?;
            if full == "store.backend"
                && let toml::Value::String(s) = v
                && s != "sqlite"
                && s != "rethinkdb"
            {
                return Err(ConfigError::Invalid {
                    key: full,
                    origin: origin.to_owned(),
                    reason: format!("{s:?} is not a backend; use \"sqlite\" or \"rethinkdb\""),
                });
            }
            if let toml::Value::Integer(i) = v
                && *i < 0
            {
                return Err(ConfigError::Invalid {
                    key: full,
                    origin: origin.to_owned(),
                    reason: format!("{i} is negative"),
                });
            }
        }
    }
    Ok(())
}

/// Applies `SHOTGUN_CACHE_<SECTION>__<KEY>` (and `SHOTGUN_CACHE_TYPES__<TYPE>__<KEY>`) overrides.
/// Variables without `__` (e.g. `SHOTGUN_CACHE_CONFIG`) are not overrides and are ignored.
fn apply_env_overrides(
    table: &mut toml::Table,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(&String, &String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let rest = &var[ENV_PREFIX.len()..];
        let parts: Vec<&str> = rest.split("__").collect();
        let origin = format!(" (from environment variable {var})");
        let section = parts[0].to_ascii_lowercase();
        if section == "types" {
            let [_, type_upper, key_upper] = parts.as_slice() else {
                return Err(ConfigError::UnknownKey {
                    key: rest.to_ascii_lowercase().replace("__", "."),
                    origin,
                    hint: "; type overrides are SHOTGUN_CACHE_TYPES__<TYPE>__<KEY>".into(),
                });
            };
            let key = key_upper.to_ascii_lowercase();
            let Some((_, kind)) = TYPE_KEYS.iter().find(|(k, _)| *k == key) else {
                return Err(ConfigError::UnknownKey {
                    key: format!("types.{type_upper}.{key}"),
                    origin,
                    hint: "; known keys of a [types.X] table: fields, filter, filterable".into(),
                });
            };
            let types = table
                .entry("types")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(types) = types else {
                return Err(ConfigError::Invalid {
                    key: "types".into(),
                    origin,
                    reason: "expected a table".into(),
                });
            };
            // Entity type names are case-sensitive and environment names are upper case, so an
            // override can only change a type the file already lists.
            let Some(type_name) = types
                .keys()
                .find(|t| t.eq_ignore_ascii_case(type_upper))
                .cloned()
            else {
                return Err(ConfigError::UnknownKey {
                    key: format!("types.{type_upper}"),
                    origin,
                    hint: "; an environment override can only change a [types.X] table that the config file declares".into(),
                });
            };
            let value = parse_env_value(*kind, raw).map_err(|reason| ConfigError::Invalid {
                key: format!("types.{type_name}.{key}"),
                origin: origin.clone(),
                reason,
            })?;
            let full = format!("types.{type_name}.{key}");
            check_kind(*kind, &value).map_err(|reason| ConfigError::Invalid {
                key: full,
                origin: origin.clone(),
                reason,
            })?;
            if let Some(toml::Value::Table(t)) = types.get_mut(&type_name) {
                t.insert(key, value);
            }
            continue;
        }
        let Some((_, keys, secrets)) = section_spec(&section) else {
            return Err(ConfigError::UnknownKey {
                key: rest.to_ascii_lowercase().replacen("__", ".", 1),
                origin,
                hint: format!(
                    "; known sections: {}",
                    SECTIONS
                        .iter()
                        .map(|(s, _, _)| *s)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        let [_, key_upper] = parts.as_slice() else {
            return Err(ConfigError::UnknownKey {
                key: rest.to_ascii_lowercase().replace("__", "."),
                origin,
                hint: "; overrides are SHOTGUN_CACHE_<SECTION>__<KEY>".into(),
            });
        };
        let key = key_upper.to_ascii_lowercase();
        let is_secret = secrets
            .iter()
            .any(|s| *s == key || format!("{s}_file") == key);
        if is_secret {
            continue;
        }
        let Some((_, kind)) = keys.iter().find(|(k, _)| *k == key) else {
            let known: Vec<&str> = keys.iter().map(|(n, _)| *n).collect();
            return Err(ConfigError::UnknownKey {
                key: format!("{section}.{key}"),
                origin,
                hint: format!("; known keys in [{section}]: {}", known.join(", ")),
            });
        };
        let full = format!("{section}.{key}");
        let value = parse_env_value(*kind, raw).map_err(|reason| ConfigError::Invalid {
            key: full.clone(),
            origin: origin.clone(),
            reason,
        })?;
        if full == "store.backend"
            && let toml::Value::String(s) = &value
            && s != "sqlite"
            && s != "rethinkdb"
        {
            return Err(ConfigError::Invalid {
                key: full,
                origin,
                reason: format!("{s:?} is not a backend; use \"sqlite\" or \"rethinkdb\""),
            });
        }
        if let toml::Value::Integer(i) = value
            && i < 0
        {
            return Err(ConfigError::Invalid {
                key: full,
                origin,
                reason: format!("{i} is negative"),
            });
        }
        let sec = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = sec {
            t.insert(key, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const MINIMAL: &str = "[site]\nurl = \"https://x.example\"\nscript_name = \"cache\"\n";

    fn load(text: &str, e: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, "test.toml", &env(e))
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = load(MINIMAL, &[]).expect("minimal config loads");
        assert_eq!(c.site.url, "https://x.example");
        assert_eq!(c.syncer.poll_interval_ms, 1000);
        assert_eq!(c.store.backend, Backend::Sqlite);
        assert!(c.types.is_empty());
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load(&format!("{MINIMAL}[syncer]\npol_interval_ms = 5\n"), &[])
            .expect_err("unknown key");
        let msg = e.to_string();
        assert!(msg.contains("`syncer.pol_interval_ms`"), "{msg}");
        assert!(
            msg.contains("poll_interval_ms"),
            "hint lists known keys: {msg}"
        );
        let e = load(&format!("{MINIMAL}[sycner]\n"), &[]).expect_err("unknown section");
        assert!(e.to_string().contains("`sycner`"), "{e}");
        let e = load(
            &format!("{MINIMAL}[types.Shot]\nfields = \"all\"\nfliter = []\n"),
            &[],
        )
        .expect_err("unknown type key");
        assert!(e.to_string().contains("`types.Shot.fliter`"), "{e}");
        let e =
            load(MINIMAL, &[("SHOTGUN_CACHE_SYNCER__PAGESIZE", "5")]).expect_err("unknown env key");
        let msg = e.to_string();
        assert!(
            msg.contains("`syncer.pagesize`") && msg.contains("SHOTGUN_CACHE_SYNCER__PAGESIZE"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_types_and_ranges_name_the_key() {
        let e = load(
            &format!("{MINIMAL}[syncer]\npoll_interval_ms = \"fast\"\n"),
            &[],
        )
        .expect_err("bad type");
        assert!(
            e.to_string().contains("`syncer.poll_interval_ms`")
                && e.to_string().contains("an integer"),
            "{e}"
        );
        let e = load(&format!("{MINIMAL}[syncer]\npoll_interval_ms = 50\n"), &[])
            .expect_err("out of range");
        assert!(
            e.to_string().contains("`syncer.poll_interval_ms`")
                && e.to_string().contains("100..=60000"),
            "{e}"
        );
        let e =
            load(&format!("{MINIMAL}[syncer]\npage_size = 5001\n"), &[]).expect_err("out of range");
        assert!(e.to_string().contains("`syncer.page_size`"), "{e}");
        let e = load(
            &format!("{MINIMAL}[query_server]\nresult_cache_mb = 100000\n"),
            &[],
        )
        .expect_err("out of range");
        assert!(
            e.to_string().contains("`query_server.result_cache_mb`")
                && e.to_string().contains("0..=65536"),
            "{e}"
        );
        let c = load(
            MINIMAL,
            &[("SHOTGUN_CACHE_QUERY_SERVER__RESULT_CACHE_MB", "0")],
        )
        .expect("0 turns the result cache off");
        assert_eq!(c.query_server.result_cache_mb, 0);
        assert_eq!(
            load(MINIMAL, &[])
                .expect("default")
                .query_server
                .result_cache_mb,
            64
        );
        let e = load(MINIMAL, &[("SHOTGUN_CACHE_SYNCER__PAGE_SIZE", "0")])
            .expect_err("env out of range");
        assert!(e.to_string().contains("`syncer.page_size`"), "{e}");
        let e = load(
            MINIMAL,
            &[("SHOTGUN_CACHE_STORE__RETHINKDB_TIMEOUT_SECS", "0")],
        )
        .expect_err("env out of range");
        assert!(
            e.to_string().contains("`store.rethinkdb_timeout_secs`")
                && e.to_string().contains("1..=600"),
            "{e}"
        );
        let c = load(
            &format!("{MINIMAL}[store]\nrethinkdb_timeout_secs = 3\n"),
            &[],
        )
        .expect("a timeout in range");
        assert_eq!(c.store.rethinkdb_timeout_secs, 3);
        let e = load(&format!("{MINIMAL}[store]\nbackend = \"mysql\"\n"), &[])
            .expect_err("bad backend");
        assert!(e.to_string().contains("`store.backend`"), "{e}");
        let e = load(
            &format!("{MINIMAL}[syncer]\nadmin_listen = \"nowhere\"\n"),
            &[],
        )
        .expect_err("bad address");
        assert!(e.to_string().contains("`syncer.admin_listen`"), "{e}");
        let e = load("[site]\nscript_name = \"x\"\n", &[]).expect_err("missing url");
        assert!(e.to_string().contains("site.url"), "{e}");
        let e = load(&format!("{MINIMAL}[types.Shot]\nfields = \"some\"\n"), &[])
            .expect_err("bad fields");
        assert!(e.to_string().contains("`types.Shot.fields`"), "{e}");
        let e =
            load(&format!("{MINIMAL}[types.Shot]\nfields = []\n"), &[]).expect_err("empty fields");
        assert!(e.to_string().contains("`types.Shot.fields`"), "{e}");
        let e = load(&format!("{MINIMAL}[types.Shot]\nfilter = []\n"), &[])
            .expect_err("missing fields");
        assert!(e.to_string().contains("types.Shot.fields"), "{e}");
        let e = load("[site\n", &[]).expect_err("syntax");
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    }

    #[test]
    fn env_overrides_and_types() {
        let text = format!(
            "{MINIMAL}[types.Shot]\nfields = [\"code\"]\nfilter = [[\"sg_status_list\", \"is_not\", \"omt\"]]\n"
        );
        let c = load(
            &text,
            &[
                ("SHOTGUN_CACHE_SITE__URL", "http://127.0.0.1:1"),
                ("SHOTGUN_CACHE_SYNCER__POLL_INTERVAL_MS", "100"),
                ("SHOTGUN_CACHE_AUTH__REQUIRED", "true"),
                ("SHOTGUN_CACHE_AUTH__TOKENS", "a, b"),
                ("SHOTGUN_CACHE_TYPES__SHOT__FIELDS", "code,sg_status_list"),
                ("SHOTGUN_CACHE_CONFIG", "/ignored"),
            ],
        )
        .expect("overrides load");
        assert_eq!(c.site.url, "http://127.0.0.1:1");
        assert_eq!(c.syncer.poll_interval_ms, 100);
        assert_eq!(c.auth.tokens, vec![Secret("a".into()), Secret("b".into())]);
        let shot = &c.types["Shot"];
        assert_eq!(
            shot.fields,
            FieldSelection::List(vec!["code".into(), "sg_status_list".into()])
        );
        assert!(shot.filter.is_some());
        let e = load(&text, &[("SHOTGUN_CACHE_TYPES__ASSET__FIELDS", "all")])
            .expect_err("undeclared type");
        assert!(e.to_string().contains("types.ASSET"), "{e}");
        let c = load(
            &text,
            &[(
                "SHOTGUN_CACHE_TYPES__SHOT__FILTER",
                r#"{"logical_operator": "or", "conditions": []}"#,
            )],
        )
        .expect("json filter override");
        assert!(matches!(
            c.types["Shot"].filter,
            Some(toml::Value::Table(_))
        ));
    }

    #[test]
    fn secrets_come_from_env_or_file_never_the_file() {
        let e = load(
            "[site]\nurl = \"https://x\"\nscript_name = \"s\"\nscript_key = \"k\"\n",
            &[],
        )
        .expect_err("secret in file");
        assert!(
            e.to_string().contains("SHOTGUN_CACHE_SITE__SCRIPT_KEY"),
            "{e}"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "s3cret\n").expect("write key file");
        let c = load(
            MINIMAL,
            &[(
                "SHOTGUN_CACHE_SITE__SCRIPT_KEY_FILE",
                key_file.to_str().expect("utf-8 path"),
            )],
        )
        .expect("file secret");
        assert_eq!(c.site.script_key.expose(), "s3cret");
        assert_eq!(format!("{:?}", c.site.script_key), "***");
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = load(
            MINIMAL,
            &[("SHOTGUN_CACHE_SITE__SCRIPT_KEY_FILE", "/nonexistent/key")],
        )
        .expect_err("missing file");
        assert!(
            e.to_string()
                .contains("SHOTGUN_CACHE_SITE__SCRIPT_KEY_FILE"),
            "{e}"
        );
        let e = load(
            MINIMAL,
            &[
                ("SHOTGUN_CACHE_SITE__SCRIPT_KEY", "a"),
                ("SHOTGUN_CACHE_SITE__SCRIPT_KEY_FILE", "b"),
            ],
        )
        .expect_err("both set");
        assert!(e.to_string().contains("only one"), "{e}");
        let c = load(
            MINIMAL,
            &[("SHOTGUN_CACHE_API3__CLIENTS", "tool:k1,other:k2")],
        )
        .expect("clients");
        assert_eq!(c.api3.clients.len(), 2);
        assert_eq!(c.api3.clients[0].0, "tool");
        let e =
            load(&format!("{MINIMAL}[auth]\nrequired = true\n"), &[]).expect_err("tokens required");
        assert!(e.to_string().contains("auth.tokens"), "{e}");
        assert!(
            load(MINIMAL, &[])
                .expect("loads")
                .require_script_key()
                .is_err()
        );
    }

    #[test]
    fn load_reads_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("c.toml");
        std::fs::write(&p, MINIMAL).expect("write config");
        assert!(Config::load(&p, &HashMap::new()).is_ok());
        let e = Config::load(&dir.path().join("missing.toml"), &HashMap::new())
            .expect_err("missing file");
        assert!(e.to_string().contains("missing.toml"), "{e}");
    }
}
