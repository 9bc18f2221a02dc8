//! OpenNebula's template syntax, as `onevm create` and `onevnet create` take it:
//!
//! ```text
//! NAME = "web1"                      # a single attribute
//! MEMORY = 512                       # unquoted values end at a blank, `,`, `]` or `#`
//! NIC = [ NETWORK = "public", IP = "192.0.2.10" ]
//! CONTEXT = [ SSH_PUBLIC_KEY = "$USER[SSH_PUBLIC_KEY]", NETWORK = "YES" ]
//! ```
//!
//! Names are case-insensitive and kept upper-case. Inside double quotes `\"`
//! stands for `"`; every other character, newlines included, is literal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::error::{Cursor, SyntaxError};

/// The attributes of a vector such as `NIC = [ ... ]`, by upper-case name.
pub type Vector = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    Single { name: String, value: String },
    Vector { name: String, values: Vector },
}

impl Attribute {
    pub fn name(&self) -> &str {
        match self {
            Attribute::Single { name, .. } | Attribute::Vector { name, .. } => name,
        }
    }
}

/// An OpenNebula template: attributes in file order; a name may repeat
/// (several `NIC` vectors).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    pub attributes: Vec<Attribute>,
}

impl Template {
    /// The first single attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Single { name: n, value } if n == name => Some(value.as_str()),
            _ => None,
        })
    }

    pub fn vectors<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Vector> + 'a {
        self.attributes.iter().filter_map(move |a| match a {
            Attribute::Vector { name: n, values } if n == name => Some(values),
            _ => None,
        })
    }

    pub fn vectors_mut<'a>(
        &'a mut self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a mut Vector> + 'a {
        self.attributes.iter_mut().filter_map(move |a| match a {
            Attribute::Vector { name: n, values } if n == name => Some(values),
            _ => None,
        })
    }

    /// Replaces the first single attribute called `name`, or adds it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        for attribute in &mut self.attributes {
            if let Attribute::Single { name: n, value: v } = attribute
                && n == name
            {
                *v = value;
                return;
            }
        }
        self.attributes.push(Attribute::Single {
            name: name.to_string(),
            value,
        });
    }

    pub fn push_vector(&mut self, name: &str, values: Vector) {
        self.attributes.push(Attribute::Vector {
            name: name.to_string(),
            values,
        });
    }

    /// Writes the template back in OpenNebula syntax; `parse` reads it back equal.
    pub fn to_one_syntax(&self) -> String {
        let mut out = String::new();
        for attribute in &self.attributes {
            match attribute {
                Attribute::Single { name, value } => {
                    let _ = writeln!(out, "{name} = {}", quote(value));
                }
                Attribute::Vector { name, values } => {
                    let _ = writeln!(out, "{name} = [");
                    let last = values.len().saturating_sub(1);
                    for (i, (key, value)) in values.iter().enumerate() {
                        let comma = if i == last { "" } else { "," };
                        let _ = writeln!(out, "  {key} = {}{comma}", quote(value));
                    }
                    out.push_str("]\n");
                }
            }
        }
        out
    }
}

fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\\\""))
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Characters that may appear in an unquoted value.
fn is_bare_value_char(c: char) -> bool {
    !(is_blank(c) || matches!(c, '=' | '#' | '\n' | '\r' | ',' | '[' | ']'))
}

/// Parses a whole template; errors name the line:column where parsing stopped.
pub fn parse(text: &str) -> Result<Template, SyntaxError> {
    let mut cursor = Cursor::new(text);
    let mut template = Template::default();
    loop {
        skip_blank_lines_and_comments(&mut cursor);
        if cursor.peek().is_none() {
            return Ok(template);
        }
        let name = cursor.name("an attribute name")?;
        cursor.take_while(is_blank);
        cursor.expect('=')?;
        cursor.take_while(is_blank);
        if cursor.peek() == Some('[') {
            cursor.bump();
            let values = parse_vector_body(&mut cursor)?;
            template.push_vector(&name, values);
        } else {
            let value = parse_value(&mut cursor, true)?;
            template.attributes.push(Attribute::Single { name, value });
        }
        end_of_attribute(&mut cursor)?;
    }
}

fn skip_blank_lines_and_comments(cursor: &mut Cursor) {
    loop {
        cursor.take_while(|c| is_blank(c) || c == '\n' || c == '\r');
        if cursor.peek() == Some('#') {
            cursor.take_while(|c| c != '\n');
        } else {
            return;
        }
    }
}

/// After an attribute only blanks and a comment may follow on its line.
fn end_of_attribute(cursor: &mut Cursor) -> Result<(), SyntaxError> {
    cursor.take_while(|c| is_blank(c) || c == '\r');
    match cursor.peek() {
        None | Some('\n') | Some('#') => Ok(()),
        Some(c) => Err(cursor.error(format!(
            "unexpected {c:?} after the value; expected a new line"
        ))),
    }
}

/// A quoted or bare value. `allow_empty`: a single attribute may be `NAME =`
/// with nothing before the end of the line.
fn parse_value(cursor: &mut Cursor, allow_empty: bool) -> Result<String, SyntaxError> {
    if cursor.peek() == Some('"') {
        return parse_quoted(cursor);
    }
    let bare = cursor.take_while(is_bare_value_char);
    if bare.is_empty() && !allow_empty {
        return Err(cursor.error("expected a value"));
    }
    Ok(bare.to_string())
}

fn parse_quoted(cursor: &mut Cursor) -> Result<String, SyntaxError> {
    let start = cursor.position();
    cursor.bump();
    let mut value = String::new();
    loop {
        match cursor.bump() {
            Some('"') => return Ok(value),
            Some('\\') if cursor.peek() == Some('"') => {
                cursor.bump();
                value.push('"');
            }
            Some(c) => value.push(c),
            None => {
                return Err(SyntaxError {
                    position: start,
                    message: "unterminated string: no closing '\"'".to_string(),
                });
            }
        }
    }
}

fn skip_vector_space(cursor: &mut Cursor) {
    cursor.take_while(|c| is_blank(c) || c == '\n' || c == '\r');
}

fn parse_vector_body(cursor: &mut Cursor) -> Result<Vector, SyntaxError> {
    let mut values = Vector::new();
    skip_vector_space(cursor);
    if cursor.peek() == Some(']') {
        cursor.bump();
        return Ok(values);
    }
    loop {
        skip_vector_space(cursor);
        let name = cursor.name("an attribute name")?;
        cursor.take_while(is_blank);
        cursor.expect('=')?;
        cursor.take_while(is_blank);
        let value = parse_value(cursor, false)?;
        // Like oned's std::map insert, the first of two equal names wins.
        values.entry(name).or_insert(value);
        skip_vector_space(cursor);
        match cursor.bump() {
            Some(',') => continue,
            Some(']') => return Ok(values),
            Some(c) => {
                return Err(error_before(
                    cursor,
                    format!("expected ',' or ']', found {c:?}"),
                ));
            }
            None => return Err(cursor.error("unterminated vector: expected ']'")),
        }
    }
}

/// An error about the character just consumed.
fn error_before(cursor: &Cursor, message: String) -> SyntaxError {
    let mut position = cursor.position();
    position.column = position.column.saturating_sub(1).max(1);
    SyntaxError { position, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Position;

    fn single(name: &str, value: &str) -> Attribute {
        Attribute::Single {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn singles_quoted_bare_and_empty() {
        let t = parse("name = \"web 1\"\nMEMORY=512 # comment\nEMPTY =\nLAST = x").unwrap();
        assert_eq!(
            t.attributes,
            vec![
                single("NAME", "web 1"),
                single("MEMORY", "512"),
                single("EMPTY", ""),
                single("LAST", "x")
            ]
        );
    }

    #[test]
    fn vectors_span_lines_and_upper_case_keys() {
        let text = "# a VM\nNIC = [\n  network = \"public\",\n  IP = 192.0.2.10 ]\nNIC = [ NETWORK = \"private\" ]\nDISK = [ ]\n";
        let t = parse(text).unwrap();
        let nics: Vec<_> = t.vectors("NIC").collect();
        assert_eq!(nics.len(), 2);
        assert_eq!(nics[0]["NETWORK"], "public");
        assert_eq!(nics[0]["IP"], "192.0.2.10");
        assert_eq!(nics[1]["NETWORK"], "private");
        assert_eq!(t.vectors("DISK").next(), Some(&Vector::new()));
    }

    #[test]
    fn quoted_values_keep_newlines_and_unescape_only_quotes() {
        let t =
            parse("CONTEXT = [ S = \"line1\nsay \\\"hi\\\" \\n $NIC[IP, NETWORK=\\\"a b\\\"]\" ]")
                .unwrap();
        let context = t.vectors("CONTEXT").next().unwrap();
        assert_eq!(
            context["S"],
            "line1\nsay \"hi\" \\n $NIC[IP, NETWORK=\"a b\"]"
        );
    }

    #[test]
    fn round_trips_through_its_own_syntax() {
        let text = "NAME = \"a \\\"b\\\"\"\nCONTEXT = [ A = \"x\ny\", B = \"\" ]\n";
        let t = parse(text).unwrap();
        assert_eq!(parse(&t.to_one_syntax()).unwrap(), t);
    }

    fn error_at(text: &str) -> (Position, String) {
        let e = parse(text).unwrap_err();
        (e.position, e.message)
    }

    #[test]
    fn errors_name_line_and_column() {
        let (pos, msg) = error_at("A = 1\nB 2\n");
        assert_eq!(pos, Position { line: 2, column: 3 });
        assert!(msg.contains("expected '='"), "{msg}");

        let (pos, msg) = error_at("A = 1\nNIC = [ IP = 1 IP2 = 2 ]");
        assert_eq!(
            pos,
            Position {
                line: 2,
                column: 16
            }
        );
        assert!(msg.contains("expected ',' or ']'"), "{msg}");

        let (pos, msg) = error_at("X = 1\n\n  C = \"never closed\n");
        assert_eq!(pos, Position { line: 3, column: 7 });
        assert!(msg.contains("unterminated string"), "{msg}");

        let (pos, _) = error_at("NIC = [ IP = ]");
        assert_eq!(
            pos,
            Position {
                line: 1,
                column: 14
            }
        );

        let (pos, msg) = error_at("A = \"x\" y");
        assert_eq!(pos, Position { line: 1, column: 9 });
        assert!(msg.contains("after the value"), "{msg}");

        let (pos, _) = error_at("NIC = [ IP = \"1\"");
        assert_eq!(
            pos,
            Position {
                line: 1,
                column: 17
            }
        );
    }
}
