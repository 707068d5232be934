//! Nomad's wire format, spelled out in one place.
//!
//! Nomad encodes with go-msgpack's JSON handle, not Go's `encoding/json`: floats always carry a
//! decimal point (`0.0`) and switch to Go-style exponents only below 1e-6 or from 1e21 on
//! (`1e-07`); U+2028/U+2029 are escaped; `?pretty` means 4-space indentation plus a trailing
//! newline. File modes are Go's `FileMode.String()` and times RFC 3339 with trimmed
//! nanoseconds in the agent's local zone. The response structs ([`super::model`]) declare
//! their fields in the order Nomad emits them: sorted by name. Values quoted in error texts
//! are quoted as Go's `%q` does ([`go_quote`]).

use std::io;

use chrono::{Local, TimeZone};
use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter, PrettyFormatter};

/// Serializes `value` as Nomad does, compact or pretty.
pub fn to_json<T: Serialize>(value: &T, pretty: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let result = if pretty {
        let mut ser =
            serde_json::Serializer::with_formatter(&mut out, GoFormatter(PrettyFormatter::with_indent(b"    ")));
        value.serialize(&mut ser)
    } else {
        let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter(CompactFormatter));
        value.serialize(&mut ser)
    };
    result.expect("serializing to memory cannot fail");
    if pretty {
        out.push(b'\n');
    }
    out
}

/// Go's shortest round-trip float text, always with a decimal point or an exponent.
pub fn format_float(value: f64) -> String {
    if !value.is_finite() {
        return "0.0".to_string(); // Nomad's collectors never emit these; JSON cannot carry them.
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let text = format!("{value}");
    if text.contains('.') { text } else { text + ".0" }
}

/// Wraps a serde_json formatter with Go's float and string rules.
struct GoFormatter<F>(F);

impl<F: Formatter> Formatter for GoFormatter<F> {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(format_float(value).as_bytes())
    }
    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(['\u{2028}', '\u{2029}']) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let escape: &[u8] = if rest[at..].starts_with('\u{2028}') { b"\\u2028" } else { b"\\u2029" };
            writer.write_all(escape)?;
            rest = &rest[at + 3..];
        }
        writer.write_all(rest.as_bytes())
    }
    fn write_char_escape<W: ?Sized + io::Write>(&mut self, writer: &mut W, escape: CharEscape) -> io::Result<()> {
        self.0.write_char_escape(writer, escape)
    }
    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_array(writer)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array(writer)
    }
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(writer, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_array_value(writer)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object(writer)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object(writer)
    }
    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(writer, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.begin_object_value(writer)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.0.end_object_value(writer)
    }
}

/// Go's `strconv.Quote` (`%q`): `\"` and `\\`, short escapes for `\a\b\f\n\r\t\v`,
/// `\xHH` for other ASCII controls, `\uHHHH` or `\UHHHHHHHH` for other characters that are not
/// printable (printable: letters, marks, numbers, punctuation, symbols and the ASCII space).
pub fn go_quote(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            '\0'..='\x7f' => write!(out, "\\x{:02x}", c as u32).expect("writing to a String"),
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => write!(out, "\\u{:04x}", c as u32).expect("writing to a String"),
            c => write!(out, "\\U{:08x}", c as u32).expect("writing to a String"),
        }
    }
    out.push('"');
    out
}

/// Unicode's printable characters as Go's `strconv.IsPrint` sees them (not the categories
/// C and Z). Rust's own table agrees; `str::escape_debug` consults it for every character
/// after the first (without also escaping combining marks, which Go prints).
fn is_printable(c: char) -> bool {
    let mut buf = [0u8; 5];
    buf[0] = b'x';
    let len = 1 + c.encode_utf8(&mut buf[1..]).len();
    let text = std::str::from_utf8(&buf[..len]).expect("valid UTF-8 by construction");
    text.escape_debug().nth(1) == Some(c)
}

/// Go's `os.FileMode.String()` for a Unix `st_mode`.
pub fn file_mode_string(mode: u32) -> String {
    const S_IFMT: u32 = 0o170000;
    let kind = mode & S_IFMT;
    let mut out = String::with_capacity(12);
    // Go's letter order: d a l T L D p S u g c t ?
    let letters = [
        (kind == 0o040000, 'd'),
        (kind == 0o120000, 'L'),
        (kind == 0o060000 || kind == 0o020000, 'D'),
        (kind == 0o010000, 'p'),
        (kind == 0o140000, 'S'),
        (mode & 0o4000 != 0, 'u'),
        (mode & 0o2000 != 0, 'g'),
        (kind == 0o020000, 'c'),
        (mode & 0o1000 != 0, 't'),
    ];
    out.extend(letters.iter().filter(|(set, _)| *set).map(|(_, letter)| letter));
    if out.is_empty() {
        out.push('-');
    }
    for (bit, letter) in (0..9).rev().zip("rwxrwxrwx".chars()) {
        out.push(if mode & (1 << bit) != 0 { letter } else { '-' });
    }
    out
}

/// Go's `time.RFC3339Nano` in the local zone: fraction trimmed, `Z` for UTC.
pub fn rfc3339_nano(unix_ns: i64) -> String {
    let time = Local.timestamp_nanos(unix_ns);
    let mut out = time.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = time.timestamp_subsec_nanos();
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    let offset = time.offset().local_minus_utc();
    if offset == 0 {
        out.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let minutes = offset.abs() / 60;
        out.push_str(&format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_go_msgpack() {
        assert_eq!(format_float(0.0), "0.0");
        assert_eq!(format_float(100.0), "100.0");
        assert_eq!(format_float(12.5), "12.5");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(1e-7), "1e-07");
        assert_eq!(format_float(-2.5e-9), "-2.5e-09");
        assert_eq!(format_float(1.5e21), "1.5e+21");
        assert_eq!(format_float(123456789.0), "123456789.0");
        assert_eq!(format_float(0.000001), "0.000001");
    }

    #[test]
    fn json_uses_go_floats_and_escapes() {
        #[derive(Serialize)]
        struct S {
            a: f64,
            b: &'static str,
        }
        let value = S { a: 0.0, b: "<&>\u{2028}\n" };
        assert_eq!(String::from_utf8(to_json(&value, false)).unwrap(), r#"{"a":0.0,"b":"<&>\u2028\n"}"#);
        assert_eq!(
            String::from_utf8(to_json(&value, true)).unwrap(),
            "{\n    \"a\": 0.0,\n    \"b\": \"<&>\\u2028\\n\"\n}\n"
        );
    }

    #[test]
    fn quoting_matches_go() {
        assert_eq!(go_quote("plain /path"), r#""plain /path""#);
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\x07\x08\x0c\n\r\t\x0b\0\x1b\x7f"), r#""\a\b\f\n\r\t\v\x00\x1b\x7f""#);
        assert_eq!(go_quote("nb\u{a0}sp\u{200b}"), r#""nb\u00a0sp\u200b""#);
        assert_eq!(go_quote("\u{e0001}"), r#""\U000e0001""#);
        assert_eq!(go_quote("héllo e\u{301} 日本 😀 'q'"), "\"héllo e\u{301} 日本 😀 'q'\"");
    }

    #[test]
    fn file_modes_match_go() {
        assert_eq!(file_mode_string(0o100644), "-rw-r--r--");
        assert_eq!(file_mode_string(0o040777), "drwxrwxrwx");
        assert_eq!(file_mode_string(0o041777), "dtrwxrwxrwx");
        assert_eq!(file_mode_string(0o120777), "Lrwxrwxrwx");
        assert_eq!(file_mode_string(0o104755), "urwxr-xr-x");
        assert_eq!(file_mode_string(0o020666), "Dcrw-rw-rw-");
        assert_eq!(file_mode_string(0o010600), "prw-------");
    }

    #[test]
    fn times_trim_the_fraction() {
        let text = rfc3339_nano(1_458_056_400_414_236_700);
        assert!(text.contains(".4142367"), "{text}");
        assert!(!rfc3339_nano(1_458_056_400_000_000_000).contains('.'));
    }
}
