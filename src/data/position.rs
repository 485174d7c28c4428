//! Where a data layer's stream stands, so that a run resumed from a
//! snapshot reads exactly the batches the uninterrupted run would have
//! read (rcaffe's `.datapos` files; Caffe's solver states have no data
//! position).
//!
//! A prefetching layer reads ahead of the net, so the position that counts
//! is not the reader's but the one after the last batch the net consumed:
//! every prefetched [`Batch`](super::Batch) carries the position its
//! loader reached after making it, and the layer keeps the one of the batch
//! it handed out last.
//!
//! Positions are JSON objects (`to_json` / `from_json`); every field is
//! checked on the way back in, so a damaged file is an error naming the
//! field, never a panic.
use serde_json::{json, Map, Value};

use super::rng::{GlibcRand, Mt19937};
use crate::error::{Error, Result};

/// A record reader's place (`ShardedReader`): the records visited so far
/// (across wrap-arounds; sharding counts them), the wrap-arounds, and the
/// key of the record under the cursor (the next one visited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderPos {
    pub offset: u64,
    pub restarts: u64,
    pub key: Vec<u8>,
}

/// Where the next batch of a prefetching layer comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamPos {
    /// `Data`: the database cursor and the transformer's random stream.
    Records { reader: ReaderPos, rng: Mt19937 },
    /// `ImageData`: completed passes over the list (each reshuffles it when
    /// `shuffle` is set, so the list order follows from the count), the
    /// index into the list, the items visited (sharding) and the
    /// transformer's random stream.
    List {
        passes: u64,
        pos: usize,
        offset: u64,
        rng: Mt19937,
    },
}

fn bad(what: &str) -> Error {
    Error::Data(format!("data position: {what}"))
}

/// `obj[field]` as an unsigned integer.
pub fn get_u64(obj: &Value, field: &str) -> Result<u64> {
    obj.get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(&format!("'{field}' is missing or not an unsigned integer")))
}

/// `obj[field]` as a string.
pub fn get_str<'a>(obj: &'a Value, field: &str) -> Result<&'a str> {
    obj.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&format!("'{field}' is missing or not a string")))
}

/// `obj[field]` as a list of unsigned integers that fit `T`.
pub fn get_list<T: TryFrom<u64>>(obj: &Value, field: &str) -> Result<Vec<T>> {
    let err = || bad(&format!("'{field}' is missing or not a list of indices"));
    obj.get(field)
        .and_then(Value::as_array)
        .ok_or_else(err)?
        .iter()
        .map(|v| v.as_u64().and_then(|u| T::try_from(u).ok()).ok_or_else(err))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn mt_to_json(g: &Mt19937) -> Value {
    let (words, idx) = g.state();
    json!({ "mt19937": words, "index": idx })
}

pub fn mt_from_json(v: &Value, field: &str) -> Result<Mt19937> {
    let o = v
        .get(field)
        .ok_or_else(|| bad(&format!("'{field}' is missing")))?;
    let words: Vec<u32> = get_list(o, "mt19937")?;
    let idx = get_u64(o, "index")? as usize;
    Mt19937::from_state(&words, idx)
        .ok_or_else(|| bad(&format!("'{field}' is not an mt19937 state")))
}

pub fn glibc_to_json(g: &GlibcRand) -> Value {
    let (words, idx) = g.state();
    json!({ "glibc_rand": words, "index": idx })
}

pub fn glibc_from_json(v: &Value, field: &str) -> Result<GlibcRand> {
    let o = v
        .get(field)
        .ok_or_else(|| bad(&format!("'{field}' is missing")))?;
    let words: Vec<u32> = get_list(o, "glibc_rand")?;
    let idx = get_u64(o, "index")? as usize;
    GlibcRand::from_state(&words, idx)
        .ok_or_else(|| bad(&format!("'{field}' is not a glibc rand() state")))
}

impl StreamPos {
    /// The position as a JSON object (layers add their own identifying
    /// fields to it).
    pub fn to_json(&self) -> Map<String, Value> {
        let v = match self {
            StreamPos::Records { reader, rng } => json!({
                "offset": reader.offset,
                "restarts": reader.restarts,
                "key_hex": hex(&reader.key),
                "transformer_rng": mt_to_json(rng),
            }),
            StreamPos::List {
                passes,
                pos,
                offset,
                rng,
            } => json!({
                "passes": passes,
                "pos": pos,
                "offset": offset,
                "transformer_rng": mt_to_json(rng),
            }),
        };
        match v {
            Value::Object(m) => m,
            _ => unreachable!("json! of an object literal"),
        }
    }

    /// A `Records` position written by `to_json`.
    pub fn records_from_json(v: &Value) -> Result<StreamPos> {
        let key = unhex(get_str(v, "key_hex")?)
            .ok_or_else(|| bad("'key_hex' is not a hexadecimal string"))?;
        Ok(StreamPos::Records {
            reader: ReaderPos {
                offset: get_u64(v, "offset")?,
                restarts: get_u64(v, "restarts")?,
                key,
            },
            rng: mt_from_json(v, "transformer_rng")?,
        })
    }

    /// A `List` position written by `to_json`.
    pub fn list_from_json(v: &Value) -> Result<StreamPos> {
        Ok(StreamPos::List {
            passes: get_u64(v, "passes")?,
            pos: get_u64(v, "pos")? as usize,
            offset: get_u64(v, "offset")?,
            rng: mt_from_json(v, "transformer_rng")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_bad_fields_are_errors() {
        let mut rng = Mt19937::new(5);
        rng.next_u32();
        let p = StreamPos::Records {
            reader: ReaderPos {
                offset: 1234,
                restarts: 2,
                key: b"00000042\xff".to_vec(),
            },
            rng: rng.clone(),
        };
        let v = Value::Object(p.to_json());
        assert_eq!(StreamPos::records_from_json(&v).unwrap(), p);
        let l = StreamPos::List {
            passes: 3,
            pos: 7,
            offset: 99,
            rng,
        };
        let v = Value::Object(l.to_json());
        assert_eq!(StreamPos::list_from_json(&v).unwrap(), l);

        let mut broken = v.clone();
        broken["pos"] = json!("seven");
        let e = StreamPos::list_from_json(&broken).unwrap_err().to_string();
        assert!(e.contains("'pos'"), "{e}");
        broken = v.clone();
        broken["transformer_rng"]["mt19937"] = json!([1, 2, 3]);
        let e = StreamPos::list_from_json(&broken).unwrap_err().to_string();
        assert!(e.contains("not an mt19937 state"), "{e}");
        let e = StreamPos::records_from_json(&json!({"key_hex": "0g"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hexadecimal"), "{e}");

        let mut g = GlibcRand::new(1);
        g.rand();
        let v = json!({ "r": glibc_to_json(&g) });
        assert_eq!(glibc_from_json(&v, "r").unwrap(), g);
    }
}
