//! Query parameters read the way Nomad's Go handlers read them: the first value wins,
//! booleans by `strconv.ParseBool`, integers by `strconv.ParseInt`, with Go's error texts.

use std::collections::HashMap;

use super::wire::go_quote;

/// Decoded query parameters (first value of each name).
#[derive(Debug, Default, Clone)]
pub struct Query {
    values: HashMap<String, String>,
}

impl Query {
    pub fn parse(raw: &str) -> Self {
        let mut values = HashMap::new();
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            values.entry(key.into_owned()).or_insert_with(|| value.into_owned());
        }
        Self { values }
    }

    /// The value, or `""` when absent (Go's `Values.Get`).
    pub fn get(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// `?pretty`: on when present unless its value is `0`.
    pub fn pretty(&self) -> bool {
        self.has("pretty") && self.get("pretty") != "0"
    }
}

/// What a handler reads from the request: its query and its ACL token.
#[derive(Debug, Default, Clone)]
pub struct Request {
    pub query: Query,
    pub token: Option<String>,
}

/// `strconv.ParseBool`.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {}: invalid syntax", go_quote(value))),
    }
}

/// `strconv.ParseInt(value, 10, 64)`.
pub fn parse_int(value: &str) -> Result<i64, String> {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseInt: parsing {}: invalid syntax", go_quote(value)));
    }
    value
        .trim_start_matches('+')
        .parse::<i64>()
        .map_err(|_| format!("strconv.ParseInt: parsing {}: value out of range", go_quote(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_and_decodes() {
        let q = Query::parse("path=a%2Fb&path=c&x=1+2&pretty");
        assert_eq!(q.get("path"), "a/b");
        assert_eq!(q.get("x"), "1 2");
        assert!(q.pretty());
        assert!(!Query::parse("pretty=0").pretty());
        assert_eq!(q.get("missing"), "");
    }

    #[test]
    fn go_parsers_and_their_errors() {
        assert_eq!(parse_bool("True"), Ok(true));
        assert_eq!(parse_bool("yes").unwrap_err(), r#"strconv.ParseBool: parsing "yes": invalid syntax"#);
        assert_eq!(parse_int("+5"), Ok(5));
        assert_eq!(parse_int("-5"), Ok(-5));
        assert_eq!(parse_int("").unwrap_err(), r#"strconv.ParseInt: parsing "": invalid syntax"#);
        assert_eq!(parse_int("1_0").unwrap_err(), r#"strconv.ParseInt: parsing "1_0": invalid syntax"#);
        assert_eq!(
            parse_int("99999999999999999999").unwrap_err(),
            r#"strconv.ParseInt: parsing "99999999999999999999": value out of range"#
        );
    }

    proptest::proptest! {
        /// Query parsing takes any bytes without panicking, and the Go parsers accept
        /// exactly what Go accepts.
        #[test]
        fn query_parsing_never_panics(raw in "[a-z0-9=&%+._~\\-]{0,64}|\\PC{0,64}") {
            let query = Query::parse(&raw);
            let _ = (query.get("path"), query.pretty());
            let _ = (parse_int(query.get("offset")), parse_bool(query.get("follow")));
        }

        #[test]
        fn parse_int_agrees_with_go_on_decimals(sign in "[+-]?", digits in "[0-9]{1,25}") {
            let text = format!("{sign}{digits}");
            let expected = text.trim_start_matches('+').parse::<i64>().ok();
            proptest::prop_assert_eq!(parse_int(&text).ok(), expected);
        }
    }
}
