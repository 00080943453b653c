//! The journal's entity snapshots in a compact binary form (a BLOB in `sc_journal.entity`).
//!
//! Every journaled change stores the entity as it was after the change, so the snapshot is most
//! of the journal's bytes and a large part of what a journaled commit writes. As JSON it was about
//! four times the size of the entity's own table row (field names, quotes and link objects
//! spelled out, dates as strings); this form is about half that JSON (store_bench's shots: 646
//! bytes of JSON, see the figures there), and it keeps every value's kind (a date stays a date
//! without asking the schema).
//!
//! Journals written before it hold JSON text; [`super::codec::JournalRow`] reads both.
//!
//! Layout (integers are LEB128 varints, signed ones zigzag-encoded; strings are a length and UTF-8):
//! `FORMAT`, id, flags (bit 0 retired, bit 1 a display name follows), retired_version,
//! last_event_id, [display name], the versions (count, then name and event id each), the fields
//! (count, then name and value each). A value is a tag byte and its payload (see [`Tag`]). The
//! entity type is not repeated: the journal row has it.

use crate::model::{Date, DateTime, Entity, EntityRef, Value};
use crate::store::StoreError;

/// The first byte of every snapshot: the layout version.
const FORMAT: u8 = 1;

/// Value tags.
#[repr(u8)]
enum Tag {
    Null = 0,
    False = 1,
    True = 2,
    Int = 3,
    /// The 8 bytes of the IEEE 754 bits, little-endian (exact for -0.0 and every NaN).
    Float = 4,
    Text = 5,
    /// Days since 1970-01-01.
    Date = 6,
    /// Seconds since the Unix epoch.
    DateTime = 7,
    /// Type, id, a byte (1: a name follows), [name].
    Entity = 8,
    /// A count, then links as for `Entity`.
    MultiEntity = 9,
    /// JSON text.
    Json = 10,
}

/// Encodes a snapshot.
pub(crate) fn encode(e: &Entity) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + e.fields.len() * 24);
    out.push(FORMAT);
    put_i64(&mut out, e.id);
    let flags = u8::from(e.retired) | (u8::from(e.display_name.is_some()) << 1);
    out.push(flags);
    put_i64(&mut out, e.retired_version);
    put_i64(&mut out, e.last_event_id);
    if let Some(n) = &e.display_name {
        put_str(&mut out, n);
    }
    put_len(&mut out, e.versions.len());
    for (k, v) in &e.versions {
        put_str(&mut out, k);
        put_i64(&mut out, *v);
    }
    put_len(&mut out, e.fields.len());
    for (k, v) in &e.fields {
        put_str(&mut out, k);
        put_value(&mut out, v);
    }
    out
}

/// Decodes a snapshot of an entity of `entity_type`.
pub(crate) fn decode(entity_type: &str, bytes: &[u8]) -> Result<Entity, StoreError> {
    let mut r = Reader { bytes, at: 0 };
    let format = r.byte()?;
    if format != FORMAT {
        return Err(r.bad(&format!("unknown snapshot format {format}")));
    }
    let mut e = Entity::new(entity_type, r.i64()?);
    let flags = r.byte()?;
    e.retired = flags & 1 != 0;
    e.retired_version = r.i64()?;
    e.last_event_id = r.i64()?;
    if flags & 2 != 0 {
        e.display_name = Some(r.string()?);
    }
    for _ in 0..r.len()? {
        let k = r.string()?;
        e.versions.insert(k, r.i64()?);
    }
    for _ in 0..r.len()? {
        let k = r.string()?;
        e.fields.insert(k, r.value()?);
    }
    if r.at != bytes.len() {
        return Err(r.bad("trailing bytes"));
    }
    Ok(e)
}

fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    put_u64(out, n as u64);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_link(out: &mut Vec<u8>, r: &EntityRef) {
    put_str(out, &r.entity_type);
    put_i64(out, r.id);
    match &r.name {
        Some(n) => {
            out.push(1);
            put_str(out, n);
        }
        None => out.push(0),
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(Tag::Null as u8),
        Value::Bool(false) => out.push(Tag::False as u8),
        Value::Bool(true) => out.push(Tag::True as u8),
        Value::Int(i) => {
            out.push(Tag::Int as u8);
            put_i64(out, *i);
        }
        Value::Float(f) => {
            out.push(Tag::Float as u8);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Text(s) => {
            out.push(Tag::Text as u8);
            put_str(out, s);
        }
        Value::Date(d) => {
            out.push(Tag::Date as u8);
            put_i64(out, d.days_since_epoch());
        }
        Value::DateTime(t) => {
            out.push(Tag::DateTime as u8);
            put_i64(out, t.0);
        }
        Value::Entity(r) => {
            out.push(Tag::Entity as u8);
            put_link(out, r);
        }
        Value::MultiEntity(list) => {
            out.push(Tag::MultiEntity as u8);
            put_len(out, list.len());
            for r in list {
                put_link(out, r);
            }
        }
        Value::Json(j) => {
            out.push(Tag::Json as u8);
            put_str(out, &j.to_string());
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn bad(&self, what: &str) -> StoreError {
        StoreError::Corrupt(format!(
            "journal entity snapshot: {what} at byte {}",
            self.at
        ))
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| self.bad("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.bad("a varint longer than 10 bytes"))
    }

    fn i64(&mut self) -> Result<i64, StoreError> {
        let u = self.u64()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    /// A count or length, checked against the bytes left (each item takes at least one byte).
    fn len(&mut self) -> Result<usize, StoreError> {
        let n = self.u64()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.bytes.len() - self.at => Ok(n),
            _ => Err(self.bad(&format!("a length of {n} past the end"))),
        }
    }

    fn string(&mut self) -> Result<String, StoreError> {
        let n = self.len()?;
        let s = std::str::from_utf8(&self.bytes[self.at..self.at + n])
            .map_err(|_| self.bad("a string that is not UTF-8"))?
            .to_owned();
        self.at += n;
        Ok(s)
    }

    fn link(&mut self) -> Result<EntityRef, StoreError> {
        let entity_type = self.string()?;
        let id = self.i64()?;
        let name = match self.byte()? {
            0 => None,
            1 => Some(self.string()?),
            b => return Err(self.bad(&format!("a link name flag of {b}"))),
        };
        Ok(EntityRef {
            entity_type,
            id,
            name,
        })
    }

    fn value(&mut self) -> Result<Value, StoreError> {
        let tag = self.byte()?;
        Ok(match tag {
            t if t == Tag::Null as u8 => Value::Null,
            t if t == Tag::False as u8 => Value::Bool(false),
            t if t == Tag::True as u8 => Value::Bool(true),
            t if t == Tag::Int as u8 => Value::Int(self.i64()?),
            t if t == Tag::Float as u8 => {
                let end = self.at + 8;
                let bits: [u8; 8] = self
                    .bytes
                    .get(self.at..end)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| self.bad("truncated"))?;
                self.at = end;
                Value::Float(f64::from_bits(u64::from_le_bytes(bits)))
            }
            t if t == Tag::Text as u8 => Value::Text(self.string()?),
            t if t == Tag::Date as u8 => {
                let days = self.i64()?;
                Value::Date(
                    Date::from_days_since_epoch(days)
                        .ok_or_else(|| self.bad(&format!("a date {days} days from 1970")))?,
                )
            }
            t if t == Tag::DateTime as u8 => Value::DateTime(DateTime(self.i64()?)),
            t if t == Tag::Entity as u8 => Value::Entity(self.link()?),
            t if t == Tag::MultiEntity as u8 => {
                let n = self.len()?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(self.link()?);
                }
                Value::MultiEntity(list)
            }
            t if t == Tag::Json as u8 => {
                let text = self.string()?;
                Value::Json(
                    serde_json::from_str(&text).map_err(|e| self.bad(&format!("JSON: {e}")))?,
                )
            }
            t => return Err(self.bad(&format!("unknown value tag {t}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Entity {
        let mut e = Entity::new("Shot", 1_234_567);
        e.retired = true;
        e.display_name = Some("sh \"quoted\" ∑".into());
        e.retired_version = 3;
        e.last_event_id = 9_876_543_210;
        e.versions.insert("code".into(), 9);
        e.versions.insert("sg_cut_in".into(), -1);
        let link = |id, name: Option<&str>| EntityRef {
            entity_type: "Sequence".into(),
            id,
            name: name.map(str::to_owned),
        };
        let f = &mut e.fields;
        f.insert("code".into(), Value::Text("sh\n010".into()));
        f.insert("empty".into(), Value::Text(String::new()));
        f.insert("sg_cut_in".into(), Value::Int(i64::MIN));
        f.insert("sg_cut_out".into(), Value::Int(i64::MAX));
        f.insert("sg_rate".into(), Value::Float(-0.0));
        f.insert("sg_nan".into(), Value::Float(f64::NAN));
        f.insert("sg_flag".into(), Value::Bool(true));
        f.insert("sg_off".into(), Value::Bool(false));
        f.insert(
            "sg_due".into(),
            Value::Date(Date::from_days_since_epoch(-20_000).expect("date")),
        );
        f.insert(
            "updated_at".into(),
            Value::DateTime(DateTime(1_700_000_000)),
        );
        f.insert("description".into(), Value::Null);
        f.insert("sg_sequence".into(), Value::Entity(link(7, Some("SQ010"))));
        f.insert(
            "assets".into(),
            Value::MultiEntity(vec![link(1, None), link(-2, Some(""))]),
        );
        f.insert("none".into(), Value::MultiEntity(Vec::new()));
        f.insert(
            "meta".into(),
            Value::Json(json!({"z": [1, {"b": null}], "a": 2.5})),
        );
        e
    }

    #[test]
    fn a_snapshot_reads_back_as_the_same_entity() {
        let e = sample();
        let bytes = encode(&e);
        let back = decode("Shot", &bytes).expect("decodes");
        // NaN is not equal to itself: compare its bits, then the rest.
        let bits = |e: &Entity| match e.fields.get("sg_nan") {
            Some(Value::Float(f)) => f.to_bits(),
            other => panic!("sg_nan: {other:?}"),
        };
        assert_eq!(bits(&back), bits(&e));
        let (mut a, mut b) = (e.clone(), back.clone());
        a.fields.remove("sg_nan");
        b.fields.remove("sg_nan");
        assert_eq!(a, b);
        match back.fields.get("sg_rate") {
            Some(Value::Float(f)) => assert!(f.is_sign_negative()),
            other => panic!("sg_rate: {other:?}"),
        }
        // JSON keeps its key order.
        assert_eq!(
            back.fields["meta"],
            Value::Json(json!({"z": [1, {"b": null}], "a": 2.5}))
        );
        let json = super::super::codec::entity_to_json_string(&e);
        assert!(
            bytes.len() * 5 < json.len() * 3,
            "{} bytes against {} of JSON",
            bytes.len(),
            json.len()
        );
    }

    #[test]
    fn damaged_snapshots_are_corrupt_errors_that_say_where() {
        let bytes = encode(&sample());
        // Every truncation is an error, never a panic or a wrong entity.
        for n in 0..bytes.len() {
            let e = decode("Shot", &bytes[..n]).expect_err("truncated");
            assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let e = decode("Shot", &longer).expect_err("trailing");
        assert!(e.to_string().contains("trailing bytes"), "{e}");
        let mut other = bytes.clone();
        other[0] = 9;
        let e = decode("Shot", &other).expect_err("format");
        assert!(e.to_string().contains("unknown snapshot format 9"), "{e}");
        // A huge length is refused before anything is allocated for it.
        let e =
            decode("Shot", &[FORMAT, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]).expect_err("len");
        assert!(e.to_string().contains("past the end"), "{e}");
    }
}
