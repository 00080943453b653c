//! The data model: values, schema, entities.

pub mod entity;
pub mod schema;
pub mod value;

pub use entity::{Entity, FieldVersions};
pub use schema::{Cacheability, DataType, EntitySchema, FieldSchema, SiteSchema};
pub use value::{Date, DateTime, EntityRef, Value, ValueError};

#[cfg(test)]
mod tests;
