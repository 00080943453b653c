//! The configuration shared by both services: one TOML file, environment overrides, secrets from the
//! environment or files. The contract is `docs/config-contract.md`.
//!
//! Loading (file + env + `_FILE` secrets, unknown-key errors naming the key) is implemented in [`Config::load`].

use std::collections::BTreeMap;

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
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Api3Config {
    pub forward: bool,
    #[serde(skip)]
    pub clients: Vec<(String, Secret)>,
}

impl Default for Api3Config {
    fn default() -> Self {
        Api3Config { forward: true, clients: Vec::new() }
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
