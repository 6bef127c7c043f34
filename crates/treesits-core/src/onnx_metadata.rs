//! The `metadata_props` of an ONNX model file, read without ONNX Runtime: tools that only need a
//! model's contract (`cube-extract --model`) read it here, so they need no ONNX Runtime library.
//!
//! An ONNX file is one protobuf `ModelProto`; `metadata_props` is its repeated field 14 of
//! `StringStringEntryProto` (key = field 1, value = field 2). Every other field (the graph and its
//! weights, usually nearly all of the file) is skipped by its length, never read.

use std::io::{Read, Seek, SeekFrom};

/// Why a file is not a readable ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum OnnxMetadataError {
    #[error("reading the model: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an ONNX model (damaged protobuf at byte {offset}: {problem})")]
    Format { offset: u64, problem: &'static str },
}

const METADATA_PROPS: u64 = 14;

fn format(offset: u64, problem: &'static str) -> OnnxMetadataError {
    OnnxMetadataError::Format { offset, problem }
}

/// A protobuf varint from `r`; `None` at a clean end of input (before its first byte).
fn varint<R: Read>(r: &mut R, at: &mut u64) -> Result<Option<u64>, OnnxMetadataError> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut b = [0u8];
        if r.read(&mut b)? == 0 {
            return if i == 0 {
                Ok(None)
            } else {
                Err(format(*at, "truncated varint"))
            };
        }
        *at += 1;
        value |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(format(*at, "varint longer than 10 bytes"))
}

/// Reads the (key, value) pairs of `metadata_props`, in file order.
pub fn read_metadata_props<R: Read + Seek>(mut r: R) -> Result<Vec<(String, String)>, OnnxMetadataError> {
    let len = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(0))?;
    let mut at = 0u64;
    let mut props = Vec::new();
    while let Some(tag) = varint(&mut r, &mut at)? {
        let (field, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => {
                varint(&mut r, &mut at)?.ok_or_else(|| format(at, "truncated varint"))?;
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                at += n;
                if at > len {
                    return Err(format(at, "truncated fixed-size field"));
                }
                r.seek(SeekFrom::Start(at))?;
            }
            2 => {
                let n = varint(&mut r, &mut at)?.ok_or_else(|| format(at, "truncated length"))?;
                if n > len - at {
                    return Err(format(at, "field longer than the file"));
                }
                if field == METADATA_PROPS {
                    let mut entry = vec![0u8; n as usize];
                    r.read_exact(&mut entry)?;
                    props.push(entry_of(&entry, at)?);
                    at += n;
                } else {
                    at += n;
                    r.seek(SeekFrom::Start(at))?;
                }
            }
            _ => return Err(format(at, "unknown wire type")),
        }
        if field == 0 {
            return Err(format(at, "field number 0"));
        }
    }
    Ok(props)
}

/// One `StringStringEntryProto`.
fn entry_of(bytes: &[u8], offset: u64) -> Result<(String, String), OnnxMetadataError> {
    let mut r = std::io::Cursor::new(bytes);
    let mut at = offset;
    let (mut key, mut value) = (String::new(), String::new());
    while let Some(tag) = varint(&mut r, &mut at)? {
        if tag & 7 != 2 {
            return Err(format(at, "metadata entry field is not a string"));
        }
        let n = varint(&mut r, &mut at)?.ok_or_else(|| format(at, "truncated length"))? as usize;
        let start = r.position() as usize;
        let Some(s) = bytes.get(start..start + n) else {
            return Err(format(at, "metadata entry longer than its field"));
        };
        let s = std::str::from_utf8(s).map_err(|_| format(at, "metadata string is not UTF-8"))?;
        match tag >> 3 {
            1 => key = s.to_string(),
            2 => value = s.to_string(),
            _ => {}
        }
        r.set_position((start + n) as u64);
        at += n as u64;
    }
    Ok((key, value))
}

/// The value of metadata key `key`, if the model has it.
pub fn metadata_value<R: Read + Seek>(r: R, key: &str) -> Result<Option<String>, OnnxMetadataError> {
    Ok(read_metadata_props(r)?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn varint_bytes(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn string_field(field: u64, s: &[u8], out: &mut Vec<u8>) {
        varint_bytes(field << 3 | 2, out);
        varint_bytes(s.len() as u64, out);
        out.extend_from_slice(s);
    }

    /// A ModelProto with ir_version, a graph of `graph_bytes` opaque bytes and the given metadata.
    fn model(graph_bytes: usize, props: &[(&str, &str)]) -> Vec<u8> {
        let mut m = Vec::new();
        varint_bytes(1 << 3, &mut m);
        varint_bytes(8, &mut m);
        string_field(2, b"treesits-testdata", &mut m);
        string_field(7, &vec![0xffu8; graph_bytes], &mut m);
        for (k, v) in props {
            let mut e = Vec::new();
            string_field(1, k.as_bytes(), &mut e);
            string_field(2, v.as_bytes(), &mut e);
            string_field(METADATA_PROPS, &e, &mut m);
        }
        m
    }

    #[test]
    fn metadata_props_are_found_past_the_graph() {
        let long = "x".repeat(300);
        let m = model(100_000, &[("a", "1"), ("treesits.contract", &long)]);
        assert_eq!(
            read_metadata_props(Cursor::new(&m)).unwrap(),
            vec![
                ("a".to_string(), "1".to_string()),
                ("treesits.contract".into(), long.clone())
            ]
        );
        assert_eq!(
            metadata_value(Cursor::new(&m), "treesits.contract").unwrap(),
            Some(long)
        );
        assert_eq!(metadata_value(Cursor::new(&m), "b").unwrap(), None);
        assert_eq!(metadata_value(Cursor::new(model(10, &[])), "a").unwrap(), None);
    }

    #[test]
    fn damaged_files_are_errors_not_guesses() {
        let m = model(1000, &[("a", "1")]);
        let e = read_metadata_props(Cursor::new(&m[..500])).unwrap_err();
        assert!(e.to_string().contains("field longer than the file"), "{e}");
        let e = read_metadata_props(Cursor::new(b"\x0f\x01".to_vec())).unwrap_err();
        assert!(e.to_string().starts_with("not an ONNX model"), "{e}");
        let e = read_metadata_props(Cursor::new(b"PK\x03\x04 a zip file".to_vec())).unwrap_err();
        assert!(e.to_string().starts_with("not an ONNX model"), "{e}");
    }

    /// The committed test models, written by the `onnx` package: their contracts are found.
    #[test]
    fn committed_test_models_carry_their_contracts() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/testdata");
        let f = std::fs::File::open(dir.join("linear_left.onnx")).unwrap();
        let json = metadata_value(f, crate::contract::METADATA_KEY).unwrap().unwrap();
        let c = crate::contract::ModelContract::from_json(&json).unwrap();
        assert_eq!(c.model_id, "test-linear-left");
        let f = std::fs::File::open(dir.join("no_contract.onnx")).unwrap();
        assert_eq!(metadata_value(f, crate::contract::METADATA_KEY).unwrap(), None);
    }
}
