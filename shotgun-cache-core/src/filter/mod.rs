//! Shotgun filter semantics: one definition, used by every part of the system.
//!
//! - [`parse`]: every wire form → [`RawFilter`].
//! - [`validate`](mod@validate): [`RawFilter`] + schema → [`Filter`], with errors as precise as Shotgun's.
//! - [`eval`]: the pure in-memory reference evaluator. It *defines* the semantics; store backends
//!   are tested against it (the differential test), and the simulator, Watch filters and per-type
//!   cache filters use it directly.
//!
//! - [`testkit`]: the fixed dataset (on the real site schema) and the table of semantics cases, for
//!   this module's tests and for store backends to run the same cases.
//!
//! Decisions on rules the protocol marks unverified are listed in one table in [`eval`]'s docs.

pub mod ast;
pub mod eval;
pub mod parse;
pub mod testkit;
pub mod validate;

pub use ast::{
    Condition, FieldPath, Filter, Hop, LogicalOp, Operand, Operator, RawCondition, RawFilter,
    TimeUnit,
};
pub use eval::{EntitySource, matches};
pub use parse::{parse_any, parse_with_operator};
pub use validate::{
    FilterError, MAX_FILTER_DEPTH, MAX_PATH_HOPS, valid_relations, validate, validate_path,
    validate_return_field, validate_sort_field,
};

#[cfg(test)]
mod tests;
