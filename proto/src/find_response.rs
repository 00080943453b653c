//! `FindResponse`, written by hand instead of generated, so a server can send records it encoded
//! once before (the query-server keeps a cached answer's encoding beside it and sends it on every
//! hit, instead of converting and encoding the same 50 records each time: a quarter of a cached
//! Find's CPU).
//!
//! The wire format is exactly `query.proto`'s `FindResponse` (field 1: repeated `Record`, field 2:
//! `next_cursor`): [`FindResponse::encoded_records`] holds field-1 entries already encoded, which
//! are written first, then [`FindResponse::records`], then the cursor. Protobuf allows a repeated
//! field's entries to be split like this, and encoding only `records` gives the bytes prost would
//! give for the generated type (the tests check both). Decoding fills `records` and leaves
//! `encoded_records` empty, so clients see the generated type's fields.
//!
//! It implements `prost::Message` by hand with `prost::encoding`, as the derive does: that module
//! and `encode_raw`/`merge_field` are public but hidden from prost's docs, because they are what
//! the derive's output calls; prost is pinned to 0.14 in the workspace.

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};

use crate::v1::Record;

#[derive(Clone, PartialEq, Default, Debug)]
pub struct FindResponse {
    /// The matching records of this page, in sort order (after `encoded_records`).
    pub records: Vec<Record>,
    /// A cursor for the next page; empty when this page was not full (there are no more rows).
    pub next_cursor: String,
    /// Records already encoded as field-1 entries (see [`FindResponse::encode_records`]), sent
    /// before `records`. Always empty in a decoded response.
    pub encoded_records: Bytes,
}

impl FindResponse {
    /// The field-1 entries for `records`, for [`FindResponse::encoded_records`].
    pub fn encode_records(records: &[Record]) -> Bytes {
        let len: usize = records
            .iter()
            .map(|r| encoding::message::encoded_len(1, r))
            .sum();
        let mut buf = Vec::with_capacity(len);
        encoding::message::encode_repeated(1, records, &mut buf);
        Bytes::from(buf)
    }
}

impl prost::Message for FindResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.encoded_records);
        encoding::message::encode_repeated(1, &self.records, buf);
        if !self.next_cursor.is_empty() {
            encoding::string::encode(2, &self.next_cursor, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => encoding::message::merge_repeated(wire_type, &mut self.records, buf, ctx).map_err(
                |mut e| {
                    e.push("FindResponse", "records");
                    e
                },
            ),
            2 => encoding::string::merge(wire_type, &mut self.next_cursor, buf, ctx).map_err(
                |mut e| {
                    e.push("FindResponse", "next_cursor");
                    e
                },
            ),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.encoded_records.len()
            + encoding::message::encoded_len_repeated(1, &self.records)
            + if self.next_cursor.is_empty() {
                0
            } else {
                encoding::string::encoded_len(2, &self.next_cursor)
            }
    }

    fn clear(&mut self) {
        self.records.clear();
        self.next_cursor.clear();
        self.encoded_records = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::Message;

    use super::*;
    use crate::v1::{Value, value};

    /// `query.proto`'s `FindResponse` as prost generates it, to compare bytes with.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Generated {
        #[prost(message, repeated, tag = "1")]
        records: Vec<Record>,
        #[prost(string, tag = "2")]
        next_cursor: String,
    }

    fn record(id: i64) -> Record {
        Record {
            r#type: "Shot".into(),
            id,
            fields: BTreeMap::from([
                (
                    "code".to_owned(),
                    Value {
                        kind: Some(value::Kind::StringValue(format!("sh{id:04}"))),
                    },
                ),
                (
                    "sg_status_list".to_owned(),
                    Value {
                        kind: Some(value::Kind::NullValue(0)),
                    },
                ),
            ]),
        }
    }

    #[test]
    fn encodes_as_the_generated_type_whichever_way_the_records_are_given() {
        let records: Vec<Record> = (1..=5).map(record).collect();
        for cursor in ["", "next-page"] {
            let generated = Generated {
                records: records.clone(),
                next_cursor: cursor.into(),
            }
            .encode_to_vec();
            let plain = FindResponse {
                records: records.clone(),
                next_cursor: cursor.into(),
                encoded_records: Bytes::new(),
            };
            let pre = FindResponse {
                records: Vec::new(),
                next_cursor: cursor.into(),
                encoded_records: FindResponse::encode_records(&records),
            };
            let split = FindResponse {
                records: records[3..].to_vec(),
                next_cursor: cursor.into(),
                encoded_records: FindResponse::encode_records(&records[..3]),
            };
            for (name, r) in [("plain", &plain), ("pre-encoded", &pre), ("split", &split)] {
                assert_eq!(
                    r.encoded_len(),
                    generated.len(),
                    "{name}, cursor {cursor:?}"
                );
                assert_eq!(r.encode_to_vec(), generated, "{name}, cursor {cursor:?}");
            }
            let decoded = FindResponse::decode(generated.as_slice()).expect("decode");
            assert_eq!(decoded, plain, "decoding gives the records, not bytes");
        }
    }

    #[test]
    fn decoding_skips_unknown_fields_and_names_a_bad_one() {
        let mut bytes = Generated {
            records: vec![record(7)],
            next_cursor: "c".into(),
        }
        .encode_to_vec();
        // Field 9, varint 1: unknown to this version, skipped.
        bytes.extend_from_slice(&[9 << 3, 1]);
        let decoded = FindResponse::decode(bytes.as_slice()).expect("decode");
        assert_eq!(
            (decoded.records.len(), decoded.next_cursor.as_str()),
            (1, "c")
        );
        // Field 2 as a varint: the wrong wire type for a string.
        let err = FindResponse::decode([2 << 3, 1].as_slice()).expect_err("bad wire type");
        assert!(err.to_string().contains("next_cursor"), "{err}");
    }
}
