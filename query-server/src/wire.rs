//! Find's records encoded straight from the domain type, for
//! [`FindResponse::encoded_records`](shotgun_cache_proto::v1::FindResponse).
//!
//! Converting records into prost's types first ([`convert::record_to_pb`](crate::convert)) copies
//! every string and builds a map per record, then frees it all after encoding; that was half of a
//! Find's CPU in the query-server. This writes the same bytes (the tests compare them over random
//! records of every value kind) from borrowed data: a length pass, then a write pass, as prost's
//! own derive does, with its `encoding` helpers.
//!
//! The bytes follow proto3 as prost writes it: a message's scalar fields are left out when they
//! hold their default (0, empty), `optional` fields and oneof members are written whenever set, and
//! a map entry leaves out an empty key.

use bytes::{BufMut, Bytes};
use prost::encoding::{self, WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use shotgun_cache_core::model::{Date, DateTime, EntityRef, Value};
use shotgun_cache_core::query::Record;

/// The records as repeated field 1 of `FindResponse`.
pub(crate) fn encode_records(records: &[Record]) -> Bytes {
    // JSON values are the one kind not held as text already: serialised once, in order of
    // appearance, for both passes.
    let json: Vec<String> = records
        .iter()
        .flat_map(|r| r.fields.values())
        .filter_map(|v| match v {
            Value::Json(j) => Some(j.to_string()),
            _ => None,
        })
        .collect();
    let mut lens = Vec::with_capacity(records.len());
    let mut next_json = json.iter();
    let mut total = 0;
    for r in records {
        let len = record_len(r, &mut next_json);
        total += nested_len(1, len);
        lens.push(len);
    }
    let mut buf = Vec::with_capacity(total);
    let mut next_json = json.iter();
    for (r, len) in records.iter().zip(lens) {
        nested_head(1, len, &mut buf);
        write_record(r, &mut next_json, &mut buf);
    }
    debug_assert_eq!(buf.len(), total);
    Bytes::from(buf)
}

/// A length-delimited field of `body` bytes: its key, its length, the body.
fn nested_len(tag: u32, body: usize) -> usize {
    key_len(tag) + encoded_len_varint(body as u64) + body
}

fn nested_head(tag: u32, body: usize, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(body as u64, buf);
}

type Json<'a> = std::slice::Iter<'a, String>;

// pb.Record: string type = 1; int64 id = 2; map<string, Value> fields = 3.
fn record_len(r: &Record, json: &mut Json<'_>) -> usize {
    string_len(1, &r.entity_type)
        + int64_len(2, r.id)
        + r.fields
            .iter()
            .map(|(k, v)| nested_len(3, entry_len(k, v, json)))
            .sum::<usize>()
}

fn write_record(r: &Record, json: &mut Json<'_>, buf: &mut impl BufMut) {
    write_string(1, &r.entity_type, buf);
    write_int64(2, r.id, buf);
    for (k, v) in &r.fields {
        // Measuring peeks at the value's JSON text through a copy of the iterator; writing takes it.
        let vlen = value_len(v, &mut json.clone());
        nested_head(3, string_len(1, k) + nested_len(2, vlen), buf);
        write_string(1, k, buf);
        nested_head(2, vlen, buf);
        write_value(v, json, buf);
    }
}

/// A map entry: key = 1 (left out when empty), value = 2 (never the default: `kind` is set).
fn entry_len(k: &str, v: &Value, json: &mut Json<'_>) -> usize {
    string_len(1, k) + nested_len(2, value_len(v, json))
}

// pb.Value: oneof kind { NullValue null_value = 1; bool = 2; int64 = 3; double = 4;
// string = 5; Date = 6; Timestamp = 7; EntityRef = 8; EntityRefList = 9; string json = 10 }.
fn value_len(v: &Value, json: &mut Json<'_>) -> usize {
    match v {
        // A oneof member is written even when it holds its default.
        Value::Null => key_len(1) + 1,
        Value::Bool(_) => key_len(2) + 1,
        Value::Int(i) => key_len(3) + encoded_len_varint(*i as u64),
        Value::Float(_) => key_len(4) + 8,
        Value::Text(s) => key_len(5) + encoded_len_varint(s.len() as u64) + s.len(),
        Value::Date(d) => nested_len(6, date_len(*d)),
        Value::DateTime(t) => nested_len(7, timestamp_len(*t)),
        Value::Entity(r) => nested_len(8, ref_len(r)),
        Value::MultiEntity(list) => {
            nested_len(9, list.iter().map(|r| nested_len(1, ref_len(r))).sum())
        }
        Value::Json(_) => {
            let s = json.next().map_or("", String::as_str);
            key_len(10) + encoded_len_varint(s.len() as u64) + s.len()
        }
    }
}

fn write_value(v: &Value, json: &mut Json<'_>, buf: &mut impl BufMut) {
    match v {
        Value::Null => {
            encode_key(1, WireType::Varint, buf);
            encode_varint(prost_types::NullValue::NullValue as u64, buf);
        }
        Value::Bool(b) => encoding::bool::encode(2, b, buf),
        Value::Int(i) => encoding::int64::encode(3, i, buf),
        Value::Float(f) => encoding::double::encode(4, f, buf),
        Value::Text(s) => encoding::string::encode(5, s, buf),
        Value::Date(d) => {
            nested_head(6, date_len(*d), buf);
            write_date(*d, buf);
        }
        Value::DateTime(t) => {
            nested_head(7, timestamp_len(*t), buf);
            write_int64(1, t.0, buf);
        }
        Value::Entity(r) => {
            nested_head(8, ref_len(r), buf);
            write_ref(r, buf);
        }
        Value::MultiEntity(list) => {
            let len = list.iter().map(|r| nested_len(1, ref_len(r))).sum();
            nested_head(9, len, buf);
            for r in list {
                nested_head(1, ref_len(r), buf);
                write_ref(r, buf);
            }
        }
        Value::Json(_) => {
            let s = json.next().map_or("", String::as_str);
            encode_key(10, WireType::LengthDelimited, buf);
            encode_varint(s.len() as u64, buf);
            buf.put_slice(s.as_bytes());
        }
    }
}

/// pb.Date: int32 year = 1, month = 2, day = 3.
fn date_parts(d: Date) -> [i32; 3] {
    [
        d.0.year(),
        i32::from(u8::from(d.0.month())),
        i32::from(d.0.day()),
    ]
}

fn date_len(d: Date) -> usize {
    date_parts(d)
        .iter()
        .zip(1..)
        .map(|(v, tag)| int32_len(tag, *v))
        .sum()
}

fn write_date(d: Date, buf: &mut impl BufMut) {
    for (v, tag) in date_parts(d).iter().zip(1..) {
        if *v != 0 {
            encoding::int32::encode(tag, v, buf);
        }
    }
}

/// google.protobuf.Timestamp: int64 seconds = 1; int32 nanos = 2 (always 0 here).
fn timestamp_len(t: DateTime) -> usize {
    int64_len(1, t.0)
}

/// pb.EntityRef: string type = 1; int64 id = 2; optional string name = 3.
fn ref_len(r: &EntityRef) -> usize {
    string_len(1, &r.entity_type)
        + int64_len(2, r.id)
        + r.name.as_ref().map_or(0, |n| {
            key_len(3) + encoded_len_varint(n.len() as u64) + n.len()
        })
}

fn write_ref(r: &EntityRef, buf: &mut impl BufMut) {
    write_string(1, &r.entity_type, buf);
    write_int64(2, r.id, buf);
    if let Some(n) = &r.name {
        encoding::string::encode(3, n, buf);
    }
}

/// A proto3 string field: left out when empty.
fn string_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        key_len(tag) + encoded_len_varint(s.len() as u64) + s.len()
    }
}

fn write_string(tag: u32, s: &str, buf: &mut impl BufMut) {
    if !s.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(s.len() as u64, buf);
        buf.put_slice(s.as_bytes());
    }
}

/// A proto3 int64 field: left out when 0; negative values take ten bytes.
fn int64_len(tag: u32, v: i64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v as u64)
    }
}

fn write_int64(tag: u32, v: i64, buf: &mut impl BufMut) {
    if v != 0 {
        encoding::int64::encode(tag, &v, buf);
    }
}

/// A proto3 int32 field: left out when 0; a negative value is sign-extended to ten bytes.
fn int32_len(tag: u32, v: i32) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(i64::from(v) as u64)
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use shotgun_cache_proto::v1 as pb;

    use super::*;
    use crate::convert::record_to_pb;

    fn text(rng: &mut StdRng) -> String {
        let n = match rng.random_range(0..10) {
            0 => 0,
            1 => rng.random_range(120..400),
            _ => rng.random_range(1..12),
        };
        (0..n)
            .map(|_| match rng.random_range(0..20) {
                0 => 'é',
                1 => '🎬',
                _ => char::from(rng.random_range(b'a'..=b'z')),
            })
            .collect()
    }

    fn int(rng: &mut StdRng) -> i64 {
        match rng.random_range(0..6) {
            0 => 0,
            1 => -rng.random_range(1..1_000_000),
            2 => i64::MIN,
            3 => i64::MAX,
            _ => rng.random_range(1..100_000),
        }
    }

    fn link(rng: &mut StdRng) -> EntityRef {
        EntityRef {
            entity_type: ["Shot", "Asset", ""][rng.random_range(0..3)].into(),
            id: int(rng),
            name: rng.random_bool(0.7).then(|| text(rng)),
        }
    }

    fn value(rng: &mut StdRng) -> Value {
        match rng.random_range(0..10) {
            0 => Value::Null,
            1 => Value::Bool(rng.random_bool(0.5)),
            2 => Value::Int(int(rng)),
            3 => Value::Float([0.0, -0.0, 1.5, -1e300, f64::INFINITY][rng.random_range(0..5)]),
            4 => Value::Text(text(rng)),
            5 => Value::Date(
                Date::parse(&format!(
                    "{:04}-{:02}-{:02}",
                    rng.random_range(1..=9999),
                    rng.random_range(1..=12),
                    rng.random_range(1..=28)
                ))
                .expect("a valid date"),
            ),
            6 => Value::DateTime(DateTime(int(rng) % 253_402_300_799)),
            7 => Value::Entity(link(rng)),
            8 => Value::MultiEntity((0..rng.random_range(0..4)).map(|_| link(rng)).collect()),
            _ => Value::Json(serde_json::json!({"k": text(rng), "n": [int(rng), null, true]})),
        }
    }

    fn record(rng: &mut StdRng) -> Record {
        Record {
            entity_type: ["Shot", ""][usize::from(rng.random_bool(0.05))].into(),
            id: int(rng),
            fields: (0..rng.random_range(0..14))
                .map(|_| {
                    let key = if rng.random_bool(0.03) {
                        String::new()
                    } else {
                        text(rng)
                    };
                    (key, value(rng))
                })
                .collect(),
        }
    }

    /// The same bytes as converting to prost's types and encoding those, over random records of
    /// every value kind, with defaults (0, empty, false, the epoch), negatives and extremes.
    #[test]
    fn encodes_exactly_as_prost_does() {
        let seed: u64 = std::env::var("WIRE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| rand::rng().random());
        let mut rng = StdRng::seed_from_u64(seed);
        for round in 0..400 {
            let records: Vec<Record> = (0..rng.random_range(0..8))
                .map(|_| record(&mut rng))
                .collect();
            let pb: Vec<pb::Record> = records.iter().map(record_to_pb).collect();
            let want = pb::FindResponse::encode_records(&pb);
            let got = encode_records(&records);
            assert!(
                got == want,
                "seed {seed} (WIRE_SEED={seed} to repeat), round {round}: records {records:?}"
            );
            // What the result cache charges for this encoding is not less than its size.
            let estimate = shotgun_cache_core::store::FoundRows::new(records).wire_estimate();
            assert!(
                got.len() <= estimate,
                "seed {seed}, round {round}: {} bytes, estimated {estimate}",
                got.len()
            );
        }
    }

    #[test]
    fn no_records_encode_to_nothing() {
        assert!(encode_records(&[]).is_empty());
    }
}
