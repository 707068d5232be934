//! Content-type sniffing that mirrors Go's `net/http.DetectContentType`.
//!
//! Nomad's filesystem `stat` and `cat` endpoints report a file's content type
//! as sniffed by Go's standard library (`net/http/sniff.go`, Go's rendering of
//! the WHATWG MIME Sniffing Standard). Clients compare those strings verbatim,
//! so this module reproduces Go's algorithm exactly rather than using a richer
//! sniffer:
//!
//! * at most the first [`SNIFF_LEN`] (512) bytes are examined;
//! * signatures are tried in Go's table order and the first match wins;
//! * only the HTML signatures, the `<?xml` signature and the text check look
//!   past leading whitespace (`\t`, `\n`, `\x0c`, `\r`, space); every other
//!   signature is anchored at byte 0;
//! * the MIME strings are Go's, byte for byte (e.g. `text/html; charset=utf-8`,
//!   `application/x-gzip`, `image/x-icon`);
//! * data that matches nothing yields `application/octet-stream`, while empty
//!   input (which contains no binary bytes) is `text/plain; charset=utf-8`.
//!
//! Go's current table has no `audio/basic` (`.snd`) entry, so neither does
//! this one.

/// The number of leading bytes the algorithm looks at.
pub const SNIFF_LEN: usize = 512;

/// The result when nothing more specific matches.
const OCTET_STREAM: &str = "application/octet-stream";
const TEXT_HTML: &str = "text/html; charset=utf-8";
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// One row of the signature table.
enum Sig {
    /// `data` starts with `prefix` (no whitespace skipping).
    Exact { prefix: &'static [u8], ct: &'static str },
    /// `data[i] & mask[i] == pat[i]` for every `i`, optionally after skipping
    /// leading whitespace.
    Masked { mask: &'static [u8], pat: &'static [u8], skip_ws: bool, ct: &'static str },
    /// An upper-case HTML tag prefix, matched case-insensitively after
    /// leading whitespace and followed by a tag-terminating byte.
    Html(&'static [u8]),
    /// The WHATWG "signature for MP4" (an `ftyp` box naming an `mp4` brand).
    Mp4,
    /// No binary bytes after leading whitespace; must be last.
    Text,
}

/// 34 ignored bytes followed by `\xFF\xFF` — the Embedded OpenType mask.
const EOT_MASK: [u8; 36] = {
    let mut m = [0u8; 36];
    m[34] = 0xFF;
    m[35] = 0xFF;
    m
};

/// 34 zero bytes followed by `LP` — the Embedded OpenType pattern.
const EOT_PAT: [u8; 36] = {
    let mut p = [0u8; 36];
    p[34] = b'L';
    p[35] = b'P';
    p
};

/// Mask for a RIFF container: the four-byte chunk size is ignored.
const RIFF_MASK: &[u8] = b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF";

const fn exact(prefix: &'static [u8], ct: &'static str) -> Sig {
    Sig::Exact { prefix, ct }
}

const fn masked(mask: &'static [u8], pat: &'static [u8], ct: &'static str) -> Sig {
    Sig::Masked { mask, pat, skip_ws: false, ct }
}

/// Go's `sniffSignatures`, in Go's order.
static SIGNATURES: &[Sig] = &[
    // HTML (whitespace-skipping, case-insensitive).
    Sig::Html(b"<!DOCTYPE HTML"),
    Sig::Html(b"<HTML"),
    Sig::Html(b"<HEAD"),
    Sig::Html(b"<SCRIPT"),
    Sig::Html(b"<IFRAME"),
    Sig::Html(b"<H1"),
    Sig::Html(b"<DIV"),
    Sig::Html(b"<FONT"),
    Sig::Html(b"<TABLE"),
    Sig::Html(b"<A"),
    Sig::Html(b"<STYLE"),
    Sig::Html(b"<TITLE"),
    Sig::Html(b"<B"),
    Sig::Html(b"<BODY"),
    Sig::Html(b"<BR"),
    Sig::Html(b"<P"),
    Sig::Html(b"<!--"),
    // XML (whitespace-skipping).
    Sig::Masked { mask: b"\xFF\xFF\xFF\xFF\xFF", pat: b"<?xml", skip_ws: true, ct: "text/xml; charset=utf-8" },
    exact(b"%PDF-", "application/pdf"),
    exact(b"%!PS-Adobe-", "application/postscript"),
    // Byte-order marks.
    masked(b"\xFF\xFF\x00\x00", b"\xFE\xFF\x00\x00", "text/plain; charset=utf-16be"),
    masked(b"\xFF\xFF\x00\x00", b"\xFF\xFE\x00\x00", "text/plain; charset=utf-16le"),
    masked(b"\xFF\xFF\xFF\x00", b"\xEF\xBB\xBF\x00", TEXT_PLAIN),
    // Images.
    exact(b"\x00\x00\x01\x00", "image/x-icon"),
    exact(b"\x00\x00\x02\x00", "image/x-icon"),
    exact(b"BM", "image/bmp"),
    exact(b"GIF87a", "image/gif"),
    exact(b"GIF89a", "image/gif"),
    masked(b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF\xFF\xFF", b"RIFF\x00\x00\x00\x00WEBPVP", "image/webp"),
    exact(b"\x89PNG\x0D\x0A\x1A\x0A", "image/png"),
    exact(b"\xFF\xD8\xFF", "image/jpeg"),
    // Audio and video.
    masked(RIFF_MASK, b"FORM\x00\x00\x00\x00AIFF", "audio/aiff"),
    masked(b"\xFF\xFF\xFF", b"ID3", "audio/mpeg"),
    masked(b"\xFF\xFF\xFF\xFF\xFF", b"OggS\x00", "application/ogg"),
    masked(b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", b"MThd\x00\x00\x00\x06", "audio/midi"),
    masked(RIFF_MASK, b"RIFF\x00\x00\x00\x00AVI ", "video/avi"),
    masked(RIFF_MASK, b"RIFF\x00\x00\x00\x00WAVE", "audio/wave"),
    Sig::Mp4,
    exact(b"\x1A\x45\xDF\xA3", "video/webm"),
    // Fonts.
    masked(&EOT_MASK, &EOT_PAT, "application/vnd.ms-fontobject"),
    exact(b"\x00\x01\x00\x00", "font/ttf"),
    exact(b"OTTO", "font/otf"),
    exact(b"ttcf", "font/collection"),
    exact(b"wOFF", "font/woff"),
    exact(b"wOF2", "font/woff2"),
    // Archives.
    exact(b"\x1F\x8B\x08", "application/x-gzip"),
    exact(b"PK\x03\x04", "application/zip"),
    exact(b"Rar!\x1A\x07\x00", "application/x-rar-compressed"), // RAR 1.5 - 4.0
    exact(b"Rar!\x1A\x07\x01\x00", "application/x-rar-compressed"), // RAR 5+
    exact(b"\x00asm", "application/wasm"),
    // Must be last.
    Sig::Text,
];

/// Whitespace bytes (WHATWG "0xWS").
const fn is_ws(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0C | b'\r' | b' ')
}

/// Tag-terminating bytes (WHATWG "0xTT").
const fn is_tt(b: u8) -> bool {
    matches!(b, b' ' | b'>')
}

/// Bytes that mark data as binary (WHATWG "binary data byte").
const fn is_binary(b: u8) -> bool {
    matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F)
}

impl Sig {
    /// The content type if `data` matches this signature. `rest` is `data`
    /// with leading whitespace removed.
    fn matches(&self, data: &[u8], rest: &[u8]) -> Option<&'static str> {
        match *self {
            Sig::Exact { prefix, ct } => data.starts_with(prefix).then_some(ct),
            Sig::Masked { mask, pat, skip_ws, ct } => {
                let data = if skip_ws { rest } else { data };
                let hit = mask.len() == pat.len()
                    && data.len() >= pat.len()
                    && data.iter().zip(mask.iter().zip(pat)).all(|(&d, (&m, &p))| d & m == p);
                hit.then_some(ct)
            }
            Sig::Html(tag) => {
                let (&term, head) = rest.get(..=tag.len())?.split_last()?;
                let hit = head.iter().zip(tag).all(|(&d, &t)| {
                    // Upper-case the data byte only where the tag has a letter.
                    let d = if t.is_ascii_uppercase() { d & 0xDF } else { d };
                    d == t
                }) && is_tt(term);
                hit.then_some(TEXT_HTML)
            }
            Sig::Mp4 => match_mp4(data),
            Sig::Text => (!rest.iter().copied().any(is_binary)).then_some(TEXT_PLAIN),
        }
    }
}

/// The WHATWG MP4 signature as Go implements it: a big-endian box size
/// (a multiple of 4 that fits in `data`), `ftyp`, then any brand other than
/// the minor-version slot at offset 12 starting with `mp4`.
fn match_mp4(data: &[u8]) -> Option<&'static str> {
    let header: [u8; 4] = data.get(..4)?.try_into().ok()?;
    if data.len() < 12 {
        return None;
    }
    let box_size = usize::try_from(u32::from_be_bytes(header)).ok()?;
    if data.len() < box_size || box_size % 4 != 0 || &data[4..8] != b"ftyp" {
        return None;
    }
    (8..box_size).step_by(4).filter(|&st| st != 12).any(|st| &data[st..st + 3] == b"mp4").then_some("video/mp4")
}

/// Returns the MIME type Go's `net/http.DetectContentType` would report for
/// `data`, looking at no more than its first 512 bytes. Always returns a valid
/// MIME type, falling back to `application/octet-stream`.
pub fn detect_content_type(data: &[u8]) -> &'static str {
    let data = &data[..data.len().min(SNIFF_LEN)];
    let first_non_ws = data.iter().position(|&b| !is_ws(b)).unwrap_or(data.len());
    let rest = &data[first_non_ws..];
    SIGNATURES.iter().find_map(|sig| sig.matches(data, rest)).unwrap_or(OCTET_STREAM)
}

#[cfg(test)]
mod tests {
    use super::detect_content_type;

    fn check(cases: &[(&str, &[u8], &str)]) {
        for &(desc, data, want) in cases {
            assert_eq!(detect_content_type(data), want, "{desc}: {data:?}");
        }
    }

    #[test]
    fn basics() {
        check(&[
            ("empty", b"", "text/plain; charset=utf-8"),
            ("binary", &[1, 2, 3], "application/octet-stream"),
            ("plain text", "This is not HTML. It has \u{2603} though.".as_bytes(), "text/plain; charset=utf-8"),
            ("only whitespace", b" \t\r\n\x0c", "text/plain; charset=utf-8"),
            ("utf-8 bom", b"\xEF\xBB\xBFhello", "text/plain; charset=utf-8"),
            ("utf-16be bom", b"\xFE\xFF\x00h", "text/plain; charset=utf-16be"),
            ("utf-16le bom", b"\xFF\xFEh\x00", "text/plain; charset=utf-16le"),
            ("pdf", b"%PDF-1.7\n", "application/pdf"),
            ("postscript", b"%!PS-Adobe-3.0\n", "application/postscript"),
        ]);
    }

    #[test]
    fn html() {
        check(&[
            ("mixed case", b"<HtMl><bOdY>blah blah blah</body></html>", "text/html; charset=utf-8"),
            ("upper case", b"<HTML></HTML>", "text/html; charset=utf-8"),
            ("leading whitespace", b"   <!DOCTYPE HTML>...", "text/html; charset=utf-8"),
            ("leading CRLF", b"\r\n<html>...", "text/html; charset=utf-8"),
            ("script", b"<script>alert(1)</script>", "text/html; charset=utf-8"),
            ("comment", b"<!-- a comment -->", "text/html; charset=utf-8"),
            ("h1 with space", b"<h1 class=x>t</h1>", "text/html; charset=utf-8"),
            ("not a tag terminator", b"<abbr>x</abbr>", "text/plain; charset=utf-8"),
            ("tag at end of data", b"<html", "text/plain; charset=utf-8"),
            ("comment without terminator", b"<!--x-->", "text/plain; charset=utf-8"),
        ]);
    }

    #[test]
    fn xml() {
        check(&[
            ("xml", b"\n<?xml!", "text/xml; charset=utf-8"),
            ("xml decl", b"<?xml version=\"1.0\"?><a/>", "text/xml; charset=utf-8"),
            ("xml is case-sensitive", b"<?XML", "text/plain; charset=utf-8"),
        ]);
    }

    #[test]
    fn images() {
        check(&[
            ("windows icon", b"\x00\x00\x01\x00", "image/x-icon"),
            ("windows cursor", b"\x00\x00\x02\x00", "image/x-icon"),
            ("bmp", b"BM...", "image/bmp"),
            ("gif 87a", b"GIF87a", "image/gif"),
            ("gif 89a", b"GIF89a...", "image/gif"),
            ("webp", b"RIFF\x00\x00\x00\x00WEBPVP", "image/webp"),
            ("webp with size", b"RIFF\x24\x01\x00\x00WEBPVP8 ", "image/webp"),
            ("png", b"\x89PNG\x0D\x0A\x1A\x0A", "image/png"),
            ("jpeg", b"\xFF\xD8\xFF", "image/jpeg"),
        ]);
    }

    #[test]
    fn audio_video() {
        check(&[
            ("midi", b"MThd\x00\x00\x00\x06\x00\x01", "audio/midi"),
            ("mp3", b"ID3\x03\x00\x00\x00\x00\x0f", "audio/mpeg"),
            ("wav #1", b"RIFFb\xb8\x00\x00WAVEfmt \x12\x00\x00\x00\x06", "audio/wave"),
            ("wav #2", b"RIFF,\x00\x00\x00WAVEfmt \x12\x00\x00\x00\x06", "audio/wave"),
            (
                "aiff",
                b"FORM\x00\x00\x00\x00AIFFCOMM\x00\x00\x00\x12\x00\x01\x00\x00\x57\x55\x00\x10\x40\x0d\xf3\x34",
                "audio/aiff",
            ),
            (
                "ogg",
                b"OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x7e\x46\x00\x00\x00\x00\x00\x00\x1f\xf6\xb4\xfc\x01\x1e\x01\x76\x6f\x72",
                "application/ogg",
            ),
            ("not ogg #1", b"owow\x00", "application/octet-stream"),
            ("not ogg #2", b"oooS\x00", "application/octet-stream"),
            ("not ogg #3", b"oggS\x00", "application/octet-stream"),
            (
                "mp4",
                b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom<\x06t\xbfmdat",
                "video/mp4",
            ),
            (
                "mp4 brand only in minor-version slot",
                b"\x00\x00\x00\x10ftypisommp41",
                "application/octet-stream",
            ),
            (
                "mp4 box size not a multiple of 4",
                b"\x00\x00\x00\x11ftypmp42\x00\x00\x00\x00mp42",
                "application/octet-stream",
            ),
            (
                "mp4 box larger than data",
                b"\x00\x00\x00\x40ftypmp42\x00\x00\x00\x00",
                "application/octet-stream",
            ),
            ("avi #1", "RIFF,O\n\x00AVI LIST\u{c0}".as_bytes(), "video/avi"),
            ("avi #2", "RIFF,\n\x00\x00AVI LIST\u{c0}".as_bytes(), "video/avi"),
            ("webm", b"\x1A\x45\xDF\xA3\x01\x00", "video/webm"),
        ]);
    }

    #[test]
    fn fonts() {
        let mut eot = vec![0u8; 34];
        eot.extend_from_slice(b"LP");
        let mut eot_nonzero = vec![0xAAu8; 34];
        eot_nonzero.extend_from_slice(b"LP\x01\x00");
        check(&[
            ("eot", &eot, "application/vnd.ms-fontobject"),
            ("eot ignores first 34 bytes", &eot_nonzero, "application/vnd.ms-fontobject"),
            ("ttf #1", b"\x00\x01\x00\x00\x00\x17\x01\x00\x00\x04\x01\x60\x4f", "font/ttf"),
            ("ttf #2", b"\x00\x01\x00\x00\x00\x0e\x00\x80\x00\x03\x00\x60\x46", "font/ttf"),
            ("otf", b"OTTO\x00\x0e\x00\x80\x00\x03\x00\x60BASE", "font/otf"),
            ("collection", b"ttcf\x00\x01\x00\x00", "font/collection"),
            ("woff", b"wOFF\x00\x01\x00\x00\x00\x00\x30\x54\x00\x0d\x00\x00", "font/woff"),
            ("woff2", b"wOF2\x00\x01\x00\x00\x00", "font/woff2"),
        ]);
    }

    #[test]
    fn archives() {
        check(&[
            ("gzip", b"\x1F\x8B\x08\x00\x00\x00\x00\x00", "application/x-gzip"),
            ("zip", b"PK\x03\x04\x14\x00", "application/zip"),
            ("rar 1.5-4.0", b"Rar!\x1A\x07\x00", "application/x-rar-compressed"),
            ("rar 5+", b"Rar!\x1A\x07\x01\x00", "application/x-rar-compressed"),
            ("bad rar 1.5-4.0", b"Rar \x1A\x07\x00", "application/octet-stream"),
            ("bad rar 5+", b"Rar \x1A\x07\x01\x00", "application/octet-stream"),
            ("wasm", b"\x00\x61\x73\x6d\x01\x00", "application/wasm"),
        ]);
    }

    #[test]
    fn only_exact_and_masked_sigs_are_anchored() {
        // Leading whitespace defeats every signature except HTML and XML.
        check(&[
            (" png", b" \x89PNG\x0D\x0A\x1A\x0A", "application/octet-stream"),
            (" pdf", b" %PDF-1.4", "text/plain; charset=utf-8"),
            (" gif", b"\nGIF89a", "text/plain; charset=utf-8"),
        ]);
    }

    #[test]
    fn only_first_512_bytes_are_considered() {
        let mut data = vec![b'a'; 512];
        data.push(0x00);
        assert_eq!(detect_content_type(&data), "text/plain; charset=utf-8");
        data[511] = 0x00;
        assert_eq!(detect_content_type(&data), "application/octet-stream");

        // Leading whitespace counts toward the 512 bytes.
        let mut padded = vec![b' '; 508];
        padded.extend_from_slice(b"<html>");
        assert_eq!(detect_content_type(&padded), "text/plain; charset=utf-8");
        let mut padded = vec![b' '; 506];
        padded.extend_from_slice(b"<html>");
        assert_eq!(detect_content_type(&padded), "text/html; charset=utf-8");
    }
}
