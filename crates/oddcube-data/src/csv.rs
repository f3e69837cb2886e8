//! The CSV dialect of every oddcube artifact and input list (RFC 4180: comma-separated, fields
//! with a comma, quote or line break quoted, quotes doubled; `nan` for unknown numbers): one
//! writer ([`quote`], [`float`], [`record`]) and one reader, so what one stage writes the next
//! always reads back.
//!
//! Two ways in: [`parse`] turns a file oddcube wrote into plain records, as written; [`Table`]
//! reads a file a person may have written (labels, plate-ifu lists, embedded tables): a header row
//! whose columns are looked up by name, `#` comment lines and blank lines skipped, spaces around
//! unquoted fields trimmed, and every record carrying its line number so that an error can say
//! where the problem is.

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

/// One CSV line: the fields quoted as needed ([`quote`]), joined by commas, ending in `\n`.
pub fn record<S: AsRef<str>>(fields: impl IntoIterator<Item = S>) -> String {
    let mut line = fields
        .into_iter()
        .map(|f| quote(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

/// One field as the tokenizer saw it: whether any part of it was quoted decides whether the
/// human-input reader may trim it.
struct Field {
    text: String,
    quoted: bool,
}

/// A record as the tokenizer saw it, with the 1-based line it starts on.
struct RawRecord {
    line: usize,
    fields: Vec<Field>,
}

/// What the tokenizer found: the records, and the line of a quote left open at the end of the
/// text (the lenient [`parse`] keeps the text up to the end; [`Table`] reports it).
struct Tokens {
    records: Vec<RawRecord>,
    open_quote: Option<usize>,
}

/// The one CSV state machine behind [`parse`] and [`Table`]. With `comments`, a line whose first
/// character is `#` (outside quotes, at the start of a record) is skipped whole, so a comment may
/// hold quotes and commas freely.
fn tokenize(text: &str, comments: bool) -> Tokens {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = Field {
        text: String::new(),
        quoted: false,
    };
    let mut quoted = false;
    let mut line = 1;
    let mut record_line = 1;
    let mut quote_line = 1;
    let mut at_record_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if comments && at_record_start && !quoted && c == '#' {
            for c in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
            line += 1;
            record_line = line;
            continue;
        }
        at_record_start = false;
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.text.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.text.push(c);
            }
            (false, '"') => {
                // Spaces before an opening quote are layout, not content (`a, "b"`).
                if !field.quoted && field.text.trim().is_empty() {
                    field.text.clear();
                }
                field.quoted = true;
                quoted = true;
                quote_line = line;
            }
            (false, ',') => fields.push(std::mem::replace(
                &mut field,
                Field {
                    text: String::new(),
                    quoted: false,
                },
            )),
            (false, '\n') => {
                fields.push(std::mem::replace(
                    &mut field,
                    Field {
                        text: String::new(),
                        quoted: false,
                    },
                ));
                records.push(RawRecord {
                    line: record_line,
                    fields: std::mem::take(&mut fields),
                });
                line += 1;
                record_line = line;
                at_record_start = true;
            }
            (false, '\r') => {}
            (false, c) => field.text.push(c),
        }
    }
    if !field.text.is_empty() || field.quoted || !fields.is_empty() {
        fields.push(field);
        records.push(RawRecord {
            line: record_line,
            fields,
        });
    }
    Tokens {
        records,
        open_quote: quoted.then_some(quote_line),
    }
}

/// Parses a whole CSV text that oddcube wrote into records of fields, exactly as written. Quoted
/// fields may hold commas, doubled quotes and line breaks; `\r` outside quotes is dropped; a final
/// line without `\n` counts; a quote left open runs to the end of the text.
pub fn parse(text: &str) -> Vec<Vec<String>> {
    tokenize(text, false)
        .records
        .into_iter()
        .map(|r| r.fields.into_iter().map(|f| f.text).collect())
        .collect()
}

/// One data record of a [`Table`], with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// 1-based line number in the text (for error messages).
    pub line: usize,
    /// The fields, unquoted; unquoted ones trimmed of surrounding whitespace.
    pub fields: Vec<String>,
}

impl Record {
    /// Field `index` (a position from [`Table::column`]); the error says that the record is
    /// shorter than the header.
    pub fn get(&self, index: usize) -> Result<&str, String> {
        self.fields.get(index).map(String::as_str).ok_or_else(|| {
            format!(
                "line {}: {} fields, but column {} was expected",
                self.line,
                self.fields.len(),
                index + 1
            )
        })
    }
}

/// A CSV text with a header row, read for lookups by column name — the reader for files people
/// write or edit (label files, plate-ifu lists, embedded tables).
///
/// Accepted on top of [`parse`]'s dialect: a UTF-8 byte-order mark, blank lines and lines that
/// start with `#` (skipped), spaces around unquoted fields (trimmed).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names from the header row.
    pub columns: Vec<String>,
    /// Line number of the header row.
    pub header_line: usize,
    /// Data records in file order.
    pub records: Vec<Record>,
}

impl Table {
    /// Parses `text`. Errors (as a reason to prefix with the file name) when there is no header
    /// row or a quote is never closed.
    pub fn parse(text: &str) -> Result<Table, String> {
        let tokens = tokenize(text, true);
        if let Some(line) = tokens.open_quote {
            return Err(format!("line {line}: unterminated quote"));
        }
        let mut records = tokens.records.into_iter().filter_map(|r| {
            let blank = r
                .fields
                .iter()
                .all(|f| !f.quoted && f.text.trim().is_empty());
            (!blank).then(|| Record {
                line: r.line,
                fields: r
                    .fields
                    .into_iter()
                    .map(|f| {
                        if f.quoted {
                            f.text
                        } else {
                            f.text.trim().to_string()
                        }
                    })
                    .collect(),
            })
        });
        let header = records
            .next()
            .ok_or_else(|| "file is empty (no header row)".to_string())?;
        Ok(Table {
            columns: header.fields,
            header_line: header.line,
            records: records.collect(),
        })
    }

    /// Position of the column `name`; the error lists the columns present.
    pub fn column(&self, name: &str) -> Result<usize, String> {
        self.columns.iter().position(|c| c == name).ok_or_else(|| {
            format!(
                "no column named '{name}' (columns present: {})",
                self.columns.join(", ")
            )
        })
    }

    /// Checks that the header is exactly `expected` (for files with a fixed layout).
    pub fn expect_columns(&self, expected: &[&str]) -> Result<(), String> {
        if self
            .columns
            .iter()
            .map(String::as_str)
            .eq(expected.iter().copied())
        {
            Ok(())
        } else {
            Err(format!(
                "line {}: header must be {} (found {})",
                self.header_line,
                expected.join(","),
                self.columns.join(",")
            ))
        }
    }
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

    #[test]
    fn record_quotes_what_needs_it() {
        assert_eq!(record(["a", "b,c", ""]), "a,\"b,c\",\n");
        assert_eq!(parse(&record(["a", "b,c", ""])), vec![vec!["a", "b,c", ""]]);
    }

    #[test]
    fn table_skips_comments_and_blank_lines_and_keeps_line_numbers() {
        let text = "\u{feff}# made by hand, \"quoted\"\nid , kind\n\n 1 ,\" a, b \"\r\n# note\n2,x";
        let table = Table::parse(text).unwrap();
        assert_eq!(table.columns, ["id", "kind"]);
        assert_eq!(table.header_line, 2);
        let lines: Vec<usize> = table.records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [4, 6]);
        assert_eq!(table.records[0].fields, ["1", " a, b "]);
        assert_eq!(table.column("kind").unwrap(), 1);
        let missing = table.column("label").unwrap_err();
        assert!(
            missing.contains("label") && missing.contains("id, kind"),
            "{missing}"
        );
        let short = table.records[1].get(5).unwrap_err();
        assert!(short.starts_with("line 6:"), "{short}");
    }

    #[test]
    fn table_line_numbers_count_line_breaks_inside_quotes() {
        let table = Table::parse("a,b\n\"x\ny\",1\n2,3\n").unwrap();
        assert_eq!(table.records[0].fields, ["x\ny", "1"]);
        assert_eq!(table.records[1].line, 4);
    }

    #[test]
    fn table_errors_name_the_line() {
        assert_eq!(
            Table::parse("a,b\n1,\"open\n").unwrap_err(),
            "line 2: unterminated quote"
        );
        assert!(
            Table::parse("# only a comment\n\n")
                .unwrap_err()
                .contains("no header")
        );
        let t = Table::parse("plateifu,x\n").unwrap();
        let e = t.expect_columns(&["plateifu", "x", "y"]).unwrap_err();
        assert!(e.contains("plateifu,x,y"), "{e}");
        assert!(t.expect_columns(&["plateifu", "x"]).is_ok());
    }
}
