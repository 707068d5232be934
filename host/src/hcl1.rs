//! HCL1 leniency for operators' files.
//!
//! Nomad reads its agent config and ACL policies with HCL1, which accepts one-line blocks
//! holding several attributes or nested blocks (`namespace "default" { policy = "read"
//! capabilities = ["read-fs"] }`). HCL2 parsers refuse them. [`normalize`] puts every
//! attribute and block body of such a line on lines of its own, so the files Nomad users
//! already write parse unchanged. Strings, lists, comments and heredocs are left alone.

/// Rewrites one-line blocks into multi-line HCL2.
pub fn normalize(text: &str) -> String {
    if text.contains("<<") {
        return text.to_string(); // heredocs: leave the text to the parser as it is
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 32);
    let mut i = 0;
    let mut nesting = 0usize; // inside [] or (): no rewriting there
    let mut after_value = false; // a value just ended on this line, outside lists
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '"' => {
                let end = string_end(&chars, i);
                out.extend(&chars[i..end]);
                i = end;
                after_value = nesting == 0;
                continue;
            }
            '#' => i = copy_until(&chars, i, "\n", &mut out),
            '/' if next == Some('/') => i = copy_until(&chars, i, "\n", &mut out),
            '/' if next == Some('*') => i = copy_until(&chars, i, "*/", &mut out),
            '[' | '(' => {
                nesting += 1;
                out.push(c);
                after_value = false;
            }
            ']' | ')' => {
                nesting = nesting.saturating_sub(1);
                out.push(c);
                after_value = nesting == 0;
            }
            '{' if nesting == 0 => {
                out.push_str("{\n");
                after_value = false;
            }
            '}' if nesting == 0 => {
                out.push_str("\n}");
                after_value = true;
            }
            '\n' => {
                out.push(c);
                after_value = false;
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '-' | '.')) {
                    i += 1;
                }
                if after_value && nesting == 0 {
                    out.push('\n');
                }
                out.extend(&chars[start..i]);
                let following = chars[i..].iter().find(|c| !matches!(c, ' ' | '\t'));
                // A key (`name =`) or a block type (`name "label" {` / `name {`) is not a value.
                after_value = nesting == 0 && !matches!(following, Some('=' | '"' | '{'));
                continue;
            }
            c => {
                out.push(c);
                if !c.is_whitespace() {
                    after_value = false;
                }
            }
        }
        i += 1;
    }
    out
}

/// Index just past the string literal starting at `start`: escapes are skipped, and template
/// sequences (`${ ... }`, `%{ ... }`) may hold braces and strings of their own.
fn string_end(chars: &[char], start: usize) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            // `$${` and `%%{` are literal text.
            c @ ('$' | '%') if chars.get(i + 1) == Some(&c) => i += 2,
            '$' | '%' if chars.get(i + 1) == Some(&'{') => i = template_end(chars, i + 2),
            _ => i += 1,
        }
    }
    chars.len()
}

/// Index just past the `}` that closes a template sequence whose body starts at `start`.
fn template_end(chars: &[char], start: usize) -> usize {
    let mut depth = 1;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' => {
                i = string_end(chars, i);
                continue;
            }
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// Copies from `start` through `end` (or to the end of the text); returns the next index
/// minus one (the caller advances by one).
fn copy_until(chars: &[char], start: usize, end: &str, out: &mut String) -> usize {
    let end: Vec<char> = end.chars().collect();
    let mut i = start;
    while i < chars.len() {
        if chars[i..].starts_with(&end) {
            if end != ['\n'] {
                out.extend(&end);
                return i + end.len() - 1;
            }
            return i - 1;
        }
        out.push(chars[i]);
        i += 1;
    }
    i - 1
}

#[cfg(test)]
mod tests {
    use super::normalize;

    fn parses(text: &str) -> hcl::Body {
        hcl::from_str(&normalize(text)).unwrap_or_else(|e| panic!("{e}\n--- normalized:\n{}", normalize(text)))
    }

    #[test]
    fn one_line_blocks_become_valid_hcl2() {
        let body = parses(r#"namespace "default" { policy = "read" capabilities = ["read-fs", "read-logs"] }"#);
        let text = hcl::to_string(&body).unwrap();
        assert!(text.contains("policy = \"read\"") && text.contains("read-logs"), "{text}");
        parses(r#"token "ops" { secret_id = "a-b" type = "client" policies = ["fs"] }"#);
        parses("plugin \"local-disk\"   { config { alloc_dir = \"/var/lib/allocd/alloc\" } }\nports { http = 4646 }\n");
        parses("acl { enabled = false }\ntls { http = false }\nnode { policy = \"write\" } # trailing comment { x }\n");
        parses("a = -5\nb = true c = 1.5\nlist = [ { x = 1 }, 2 ]\n");
    }

    #[test]
    fn strings_comments_and_multiline_files_are_untouched() {
        let text =
            "# a { comment } x = 1\nname = \"{ not a block } y = 2\" // tail { }\n/* { block } */\nb {\n  c = 1\n}\n";
        let body = parses(text);
        let name = body.attributes().find(|a| a.key.as_str() == "name").unwrap();
        assert_eq!(name.expr.to_string(), "\"{ not a block } y = 2\"");
        let heredoc = "x = <<EOF\n{ a = 1 b = 2 }\nEOF\n";
        assert_eq!(normalize(heredoc), heredoc);
    }

    #[test]
    fn quoted_strings_keep_their_contents() {
        let strings = [
            r#""{ a = 1 b = 2 }""#,
            r#""} x = {""#,
            r#""a = b""#,
            r#""line\nnext\t\"quoted { \" }""#,
            r##""# not a comment // nor this /* or this */""##,
            r#""${lookup({ k = "v { w }" }, "k")} %{ if true }{ y = 1 }%{ endif }""#,
            r#""$${literal { x = 1 } and %%{ too }""#,
            r#""back\\slash { z = 2 }""#,
        ];
        for string in strings {
            for text in [format!("block {{ s = {string} t = 1 }}\n"), format!("s = {string}\nt = 1\n")] {
                let normalized = normalize(&text);
                assert!(normalized.contains(string), "{string} changed:\n{normalized}");
                let body = parses(&text);
                let attributes: Vec<_> = match body.blocks().next() {
                    Some(block) => block.body.attributes().map(|a| a.key.to_string()).collect(),
                    None => body.attributes().map(|a| a.key.to_string()).collect(),
                };
                assert_eq!(attributes, ["s", "t"], "{normalized}");
            }
        }
    }
}
