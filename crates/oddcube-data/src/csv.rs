//! The CSV dialect of every oddcube artifact (RFC 4180: comma-separated, fields with a comma,
//! quote or line break quoted, quotes doubled; `nan` for unknown numbers): one writer and one
//! reader, so what one stage writes the next always reads back.

/// Quotes a field when it holds a comma, quote or line break.
pub fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Formats a float: shortest round-trip form, `nan` for unknown values.
pub fn float(v: f64) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else {
        format!("{v}")
    }
}

/// Parses a whole CSV text into records of fields. Quoted fields may hold commas, doubled
/// quotes and line breaks; `\r` outside quotes is dropped; a final line without `\n` counts.
pub fn parse(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_round_trip() {
        let fields = ["plain", "a,b", "say \"hi\"", "two\nlines", "", "nan"];
        let line: Vec<String> = fields.iter().map(|f| quote(f)).collect();
        let text = format!("{}\n", line.join(","));
        assert_eq!(parse(&text), vec![fields.map(str::to_string).to_vec()]);
    }

    #[test]
    fn crlf_and_missing_final_newline() {
        assert_eq!(
            parse("a,b\r\n1,2"),
            vec![
                vec!["a".to_string(), "b".into()],
                vec!["1".into(), "2".into()]
            ]
        );
    }

    #[test]
    fn floats_round_trip() {
        for v in [0.1, -3.25e-7, 1e300] {
            assert_eq!(float(v).parse::<f64>().unwrap(), v);
        }
        assert_eq!(float(f64::NAN), "nan");
    }
}
