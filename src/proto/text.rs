//! Protobuf text format ("prototxt"): parsing into the prost types and
//! printing exactly as protobuf's C++ `TextFormat::Printer` (what Caffe
//! writes), so files we write are byte-identical to Caffe's.
//!
//! Parsing goes through prost-reflect's text parser on a dynamic message and
//! is then transcoded (binary encode → prost decode) into the generated
//! struct; proto2 presence survives the trip because set fields are encoded
//! even when they hold their default value.
use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind, MessageDescriptor, ReflectMessage, Value,
};

use super::caffe::{NetParameter, SolverParameter};
use super::DESCRIPTOR_SET;
use crate::error::{Error, Result};

/// protobuf's C++ `TextFormat::Parser` default recursion limit; prost-reflect
/// has none, and `[type/url] { ... }` nesting would otherwise let a hostile
/// file overflow the stack.
const MAX_DEPTH: usize = 100;

fn pool() -> Result<&'static DescriptorPool> {
    static POOL: OnceLock<std::result::Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Other(format!("caffe.proto descriptor set is invalid: {e}")))
}

fn descriptor(full_name: &str) -> Result<MessageDescriptor> {
    pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| Error::Other(format!("unknown message type \"{full_name}\"")))
}

/// Parse `text` as the message `full_name` (e.g. `"caffe.NetParameter"`) into
/// the prost type `M`. `path` only labels errors.
pub fn parse_text<M: prost::Message + Default>(
    text: &str,
    path: &str,
    full_name: &str,
) -> Result<M> {
    let desc = descriptor(full_name)?;
    if let Some(offset) = too_deep(text) {
        let (line, col) = line_col(text, offset);
        return Err(Error::Parse {
            path: path.to_string(),
            line,
            col,
            msg: format!(
                "Message is too deep, the parser exceeded the configured recursion limit of {MAX_DEPTH}."
            ),
        });
    }
    let dynamic = DynamicMessage::parse_text_format(desc, text).map_err(|e| {
        let (offset, msg) = describe(&e, text);
        let (line, col) = line_col(text, offset);
        Error::Parse {
            path: path.to_string(),
            line,
            col,
            msg,
        }
    })?;
    if let Some((field, number)) = unknown_enum_number(&dynamic) {
        let (line, col) = line_col(text, enum_number_position(text, &field, number));
        return Err(Error::Parse {
            path: path.to_string(),
            line,
            col,
            msg: format!("Unknown enumeration value of \"{number}\" for field \"{field}\"."),
        });
    }
    let bytes = prost::Message::encode_to_vec(&dynamic);
    M::decode(bytes.as_slice()).map_err(|e| Error::format(path, format!("as {full_name}: {e}")))
}

pub fn parse_net_text(text: &str, path: &str) -> Result<NetParameter> {
    parse_text(text, path, "caffe.NetParameter")
}

pub fn parse_solver_text(text: &str, path: &str) -> Result<SolverParameter> {
    parse_text(text, path, "caffe.SolverParameter")
}

/// C++ reads bytes; a stray Latin-1 byte in a comment must not stop us, so
/// invalid UTF-8 becomes U+FFFD rather than an error.
fn read(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Read a net prototxt as written (no upgrade).
pub fn read_net_text(path: &Path) -> Result<NetParameter> {
    parse_net_text(&read(path)?, &path.display().to_string())
}

/// Read a solver prototxt as written (no upgrade).
pub fn read_solver_text(path: &Path) -> Result<SolverParameter> {
    parse_solver_text(&read(path)?, &path.display().to_string())
}

/// caffe.proto's enums are proto2 (closed): C++ rejects a number that names
/// no value, prost-reflect keeps it. Returns the first such field and number.
fn unknown_enum_number(msg: &DynamicMessage) -> Option<(String, i32)> {
    for (field, value) in msg.fields() {
        let values: &[Value] = match value {
            Value::List(list) => list,
            one => std::slice::from_ref(one),
        };
        for v in values {
            match v {
                Value::EnumNumber(n) => {
                    let known = field
                        .kind()
                        .as_enum()
                        .is_some_and(|e| e.get_value(*n).is_some());
                    if !known {
                        return Some((field.name().to_string(), *n));
                    }
                }
                Value::Message(m) => {
                    if let Some(bad) = unknown_enum_number(m) {
                        return Some(bad);
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// Where C++ reports an unknown enum number (the token after it), found by
/// looking for `field: number` in the text; the start of the text if the
/// value was written some other way (e.g. list syntax).
fn enum_number_position(text: &str, field: &str, number: i32) -> usize {
    let b = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    for (at, _) in text.match_indices(field) {
        if at > 0 && ident(b[at - 1]) {
            continue;
        }
        let colon = next_token(text, at + field.len());
        if b.get(colon) != Some(&b':') {
            continue;
        }
        let mut i = next_token(text, colon + 1);
        let negative = b.get(i) == Some(&b'-');
        if negative {
            i = next_token(text, i + 1);
        }
        let end = (i..b.len()).find(|&j| !ident(b[j])).unwrap_or(b.len());
        let digits = text.get(i..end).unwrap_or("");
        let parsed = if let Some(hex) = digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
            i64::from_str_radix(hex, 16)
        } else if digits.len() > 1 && digits.starts_with('0') {
            i64::from_str_radix(&digits[1..], 8)
        } else {
            digits.parse()
        };
        if parsed.map(|v| if negative { -v } else { v }) == Ok(i64::from(number)) {
            return next_token(text, end);
        }
    }
    0
}

/// Byte offset of the first `{`/`<` nested deeper than `MAX_DEPTH`, skipping
/// strings and comments like the lexer does. Over-counting stray `<` is
/// harmless: a file that deep is rejected by C++ protobuf too.
fn too_deep(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q && b[i] != b'\n' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'{' | b'<' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b'}' | b'>' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// 1-based line and column of a byte offset, counted like protobuf's C++
/// tokenizer (bytes, tabs advance to the next multiple of 8) so that our
/// `line:col` equals Caffe's.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let b = text.as_bytes();
    let offset = offset.min(b.len());
    let (mut line, mut col) = (0usize, 0usize);
    for &c in &b[..offset] {
        match c {
            b'\n' => {
                line += 1;
                col = 0;
            }
            b'\t' => col += 8 - col % 8,
            _ => col += 1,
        }
    }
    (line + 1, col + 1)
}

/// The error's byte offset and a message, both as protobuf C++ reports them
/// where we can tell.
///
/// prost-reflect keeps the error kind and its span private (they are public
/// only with the `miette` feature), so both are read from the derived `Debug`
/// text: `ParseError { kind: Variant { ..., span: A..B } }`. `span` is the
/// last field of every variant that has one, so the last `span: ` is it even
/// when an earlier (escaped) string field contains that text.
fn describe(e: &prost_reflect::text_format::ParseError, text: &str) -> (usize, String) {
    let dbg = format!("{e:?}");
    let span = dbg.rfind("span: ").and_then(|i| {
        let rest = &dbg[i + 6..];
        let num = |s: &str| -> Option<usize> {
            let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        let start = num(rest)?;
        let end = num(rest.split_once("..")?.1)?;
        // Spans are byte offsets from the lexer; clamp anyway, never panic.
        let end = end.clamp(start.min(text.len()), text.len());
        Some((start.min(text.len()), end))
    });
    let (start, end) = span.unwrap_or((text.len(), text.len()));
    let variant = dbg
        .split("kind: ")
        .nth(1)
        .map(|s| s.split([' ', '(', '}']).next().unwrap_or(""))
        .unwrap_or("");
    // Names below are identifiers (no quotes or escapes inside), so a plain
    // search for the closing quote is exact.
    let field = |name: &str| -> String {
        let key = format!("{name}: \"");
        dbg.find(&key)
            .map(|i| &dbg[i + key.len()..])
            .and_then(|s| s.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    match variant {
        // C++ reports at the field name.
        "FieldNotFound" => (
            start,
            format!(
                "Message type \"{}\" has no field named \"{}\".",
                field("message_name"),
                field("field_name")
            ),
        ),
        // C++ checks before reading the value, so it reports at the token
        // after the name (`:` or `{`); prost-reflect spans the value.
        "FieldAlreadySet" => {
            let at = match prev_non_space(text, start) {
                Some(i) if text.as_bytes()[i] == b':' => i,
                _ => start,
            };
            (
                at,
                format!(
                    "Non-repeated field \"{}\" is specified multiple times.",
                    field("field_name")
                ),
            )
        }
        // C++ reports after consuming the bad name, i.e. at the next token.
        "EnumValueNotFound" => {
            let msg = match field_name_before(text, start) {
                Some(f) => format!(
                    "Unknown enumeration value of \"{}\" for field \"{f}\".",
                    field("value_name")
                ),
                None => format!(
                    "Unknown enumeration value of \"{}\" for enum \"{}\".",
                    field("value_name"),
                    field("enum_name")
                ),
            };
            (next_token(text, end), msg)
        }
        // C++ reports at the digits, after any minus sign.
        "IntegerValueOutOfRange" => {
            let digits = if text.as_bytes().get(start) == Some(&b'-') {
                next_token(text, start + 1)
            } else {
                start
            };
            (
                digits,
                format!(
                    "Integer out of range ({}).",
                    text.get(digits..end).unwrap_or("")
                ),
            )
        }
        // C++ names the token as written: `Expected ":", found "3".`
        "UnexpectedToken" => {
            let expected = e
                .to_string()
                .strip_prefix("expected ")
                .and_then(|s| s.rsplit_once(", but found ").map(|(x, _)| x.to_string()))
                .unwrap_or_default();
            (
                start,
                format!(
                    "Expected {expected}, found \"{}\".",
                    text.get(start..end).unwrap_or("")
                ),
            )
        }
        _ => {
            let mut s = e.to_string();
            if let Some(first) = s.get(..1) {
                let upper = first.to_ascii_uppercase();
                s.replace_range(..1, &upper);
            }
            s.push('.');
            (start, s)
        }
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Start of the next token at or after `from`: skips whitespace and `#`
/// comments; the end of the text if there is none.
fn next_token(text: &str, from: usize) -> usize {
    let b = text.as_bytes();
    let mut i = from.min(b.len());
    while i < b.len() {
        if is_space(b[i]) {
            i += 1;
        } else if b[i] == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else {
            break;
        }
    }
    i
}

/// Index of the last non-whitespace byte before `before`.
fn prev_non_space(text: &str, before: usize) -> Option<usize> {
    let b = text.as_bytes();
    (0..before.min(b.len())).rev().find(|&i| !is_space(b[i]))
}

/// The field name in `name: VALUE` given VALUE's offset (for messages).
fn field_name_before(text: &str, value: usize) -> Option<&str> {
    let b = text.as_bytes();
    let colon = prev_non_space(text, value).filter(|&i| b[i] == b':')?;
    let end = prev_non_space(text, colon)? + 1;
    let start = (0..end)
        .rev()
        .take_while(|&i| b[i].is_ascii_alphanumeric() || b[i] == b'_')
        .last()?;
    text.get(start..end)
}

/// Print `msg` (of type `full_name`) exactly as protobuf C++
/// `TextFormat::Print` does.
pub fn print_text<M: prost::Message>(msg: &M, full_name: &str) -> String {
    let mut out = String::new();
    // The prost types are generated from the same schema, so decoding their
    // own encoding cannot fail; print nothing rather than panic if it does.
    if let Ok(desc) = descriptor(full_name) {
        if let Ok(dynamic) = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice()) {
            print_message(&dynamic, 0, &mut out);
        }
    }
    out
}

pub fn print_net(net: &NetParameter) -> String {
    print_text(net, "caffe.NetParameter")
}

pub fn print_solver(solver: &SolverParameter) -> String {
    print_text(solver, "caffe.SolverParameter")
}

fn print_message(msg: &DynamicMessage, depth: usize, out: &mut String) {
    // C++ `Reflection::ListFields` sorts set fields by number.
    let mut fields: Vec<_> = msg
        .descriptor()
        .fields()
        .filter(|f| msg.has_field(f))
        .collect();
    fields.sort_by_key(|f| f.number());
    for field in fields {
        let value = msg.get_field(&field);
        let values: &[Value] = match value.as_ref() {
            Value::List(list) => list,
            one => std::slice::from_ref(one),
        };
        // Group fields print under their type's name, as in C++.
        let name = match field.kind() {
            Kind::Message(m) if field.is_group() => m.name().to_string(),
            _ => field.name().to_string(),
        };
        for v in values {
            indent(depth, out);
            out.push_str(&name);
            match v {
                Value::Message(m) => {
                    out.push_str(" {\n");
                    print_message(m, depth + 1, out);
                    indent(depth, out);
                    out.push_str("}\n");
                }
                _ => {
                    out.push_str(": ");
                    print_scalar(v, &field.kind(), out);
                    out.push('\n');
                }
            }
        }
    }
}

fn indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn print_scalar(v: &Value, kind: &Kind, out: &mut String) {
    match v {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::I32(x) => write_num(out, x),
        Value::I64(x) => write_num(out, x),
        Value::U32(x) => write_num(out, x),
        Value::U64(x) => write_num(out, x),
        Value::F32(x) => out.push_str(&simple_ftoa(*x)),
        Value::F64(x) => out.push_str(&simple_dtoa(*x)),
        Value::String(s) => quote(s.as_bytes(), out),
        Value::Bytes(b) => quote(b, out),
        // Unknown numbers of a closed enum print as the number, as in C++.
        Value::EnumNumber(n) => match kind.as_enum().and_then(|e| e.get_value(*n)) {
            Some(ev) => out.push_str(ev.name()),
            None => write_num(out, n),
        },
        Value::Message(_) | Value::List(_) | Value::Map(_) => {}
    }
}

fn write_num(out: &mut String, x: impl std::fmt::Display) {
    let _ = write!(out, "{x}");
}

/// `"` + protobuf's `CEscape` + `"`: named escapes for \n \r \t " ' \\,
/// three-digit octal for every other byte outside printable ASCII (so UTF-8
/// text comes out as octal escapes, as Caffe writes it).
fn quote(bytes: &[u8], out: &mut String) {
    out.push('"');
    for &c in bytes {
        match c {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(c as char),
            _ => {
                let _ = write!(out, "\\{c:03o}");
            }
        }
    }
    out.push('"');
}

/// protobuf's `SimpleFtoa`: `%.6g` (FLT_DIG) if it reads back as the same
/// float, else `%.9g`.
pub fn simple_ftoa(v: f32) -> String {
    if let Some(s) = non_finite(f64::from(v)) {
        return s;
    }
    let short = format_g(f64::from(v), 6);
    // glibc's strtof flags ERANGE on subnormal results, which protobuf
    // treats as a failed round trip.
    if !is_subnormal32(v) && short.parse::<f32>().ok() == Some(v) {
        return short;
    }
    format_g(f64::from(v), 9)
}

/// protobuf's `SimpleDtoa`: `%.15g` (DBL_DIG) if it reads back as the same
/// double, else `%.17g`.
pub fn simple_dtoa(v: f64) -> String {
    if let Some(s) = non_finite(v) {
        return s;
    }
    let short = format_g(v, 15);
    if !v.is_subnormal() && short.parse::<f64>().ok() == Some(v) {
        return short;
    }
    format_g(v, 17)
}

fn is_subnormal32(v: f32) -> bool {
    v.is_subnormal()
}

fn non_finite(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("nan".into())
    } else if v == f64::INFINITY {
        Some("inf".into())
    } else if v == f64::NEG_INFINITY {
        Some("-inf".into())
    } else {
        None
    }
}

/// C's `printf("%.{prec}g", v)` for finite `v` (prec >= 1): round to `prec`
/// significant digits, use exponent form when the exponent is below -4 or
/// at least `prec`, drop trailing zeros. Rust's `{:e}` rounds exactly with ties to
/// even, like glibc, so the digits agree.
pub fn format_g(v: f64, prec: usize) -> String {
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= prec as i32 {
        out.push_str(&digits[..1]);
        let frac = digits[1..].trim_end_matches('0');
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    } else if exp >= 0 {
        let point = exp as usize + 1;
        out.push_str(&digits[..point]);
        let frac = digits[point..].trim_end_matches('0');
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
    } else {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g_format_matches_printf() {
        let cases: &[(f64, usize, &str)] = &[
            (0.0, 6, "0"),
            (-0.0, 6, "-0"),
            (1.0, 6, "1"),
            (0.0001, 6, "0.0001"),
            (0.00001, 6, "1e-05"),
            (1e-8, 6, "1e-08"),
            (1e10, 6, "1e+10"),
            (123456.0, 6, "123456"),
            (1234567.0, 6, "1.23457e+06"),
            (0.125, 2, "0.12"),
            (2.5, 1, "2"),
            (1e100, 6, "1e+100"),
            (999999.5, 6, "1e+06"),
            (-1.5, 6, "-1.5"),
        ];
        for &(v, p, want) in cases {
            assert_eq!(format_g(v, p), want, "%.{p}g of {v}");
        }
    }

    #[test]
    fn simple_ftoa_like_protobuf() {
        assert_eq!(simple_ftoa(0.1), "0.1");
        assert_eq!(simple_ftoa(0.9), "0.9");
        assert_eq!(simple_ftoa(1e-8), "1e-08");
        // 2^24 + 1 is not a float; it rounds to 2^24, which %.6g cannot hold.
        assert_eq!(simple_ftoa(16_777_216.0), "16777216");
        assert_eq!(simple_ftoa(0.123_456_79), "0.123456791");
        assert_eq!(simple_ftoa(f32::INFINITY), "inf");
        assert_eq!(simple_ftoa(f32::NEG_INFINITY), "-inf");
        assert_eq!(simple_ftoa(f32::NAN), "nan");
        assert_eq!(simple_dtoa(0.1), "0.1");
        assert_eq!(simple_dtoa(1.0 / 3.0), "0.33333333333333331");
    }

    #[test]
    fn cescape() {
        let mut s = String::new();
        quote("a\"b'c\\\n\t\r\u{1}é".as_bytes(), &mut s);
        assert_eq!(s, "\"a\\\"b\\'c\\\\\\n\\t\\r\\001\\303\\251\"");
    }

    #[test]
    fn line_col_counts_tabs_like_protobuf() {
        assert_eq!(line_col("a\n\tb", 3), (2, 9));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
