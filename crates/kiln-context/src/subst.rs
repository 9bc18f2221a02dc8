//! The substitution language of OpenNebula CONTEXT values (oned's
//! vm_var_parser): `$VAR`, `$VEC[ATTR]`, `$VEC[ATTR, KEY=VALUE]`,
//! `$VEC[ATTR, KEY="v w"]` and `\$` for a literal dollar.
//!
//! Names are case-insensitive; the character that ends a variable is kept;
//! a name that resolves to nothing becomes the empty string. What the names
//! mean (`$NIC`, `$NETWORK`, `$USER`…) is the [`Lookup`]'s business.

use crate::error::{Cursor, Position, SyntaxError};

/// A filter `KEY=VALUE` that picks one of several vectors of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `$NAME`
    Single {
        name: String,
    },
    /// `$VEC[ATTR]` or `$VEC[ATTR, KEY=VALUE]`
    Vector {
        name: String,
        attribute: String,
        filter: Option<Filter>,
    },
}

/// Resolves variables to values; unknown names give "".
pub trait Lookup {
    fn single(&self, name: &str) -> String;
    fn vector(&self, name: &str, attribute: &str, filter: Option<&Filter>) -> String;
}

/// Parses and resolves a template string in one go.
pub fn expand(text: &str, lookup: &impl Lookup) -> Result<String, SyntaxError> {
    let parts = parse(text)?;
    Ok(parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => text.clone(),
            Part::Single { name } => lookup.single(name),
            Part::Vector {
                name,
                attribute,
                filter,
            } => lookup.vector(name, attribute, filter.as_ref()),
        })
        .collect())
}

/// Splits a template string into literal text and variables.
pub fn parse(text: &str) -> Result<Vec<Part>, SyntaxError> {
    let mut cursor = Cursor::new(text);
    let mut parts = Vec::new();
    let mut literal = String::new();
    while let Some(c) = cursor.bump() {
        match c {
            '\\' if cursor.peek() == Some('$') => {
                cursor.bump();
                literal.push('$');
            }
            '$' => {
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(parse_variable(&mut cursor)?);
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(parts)
}

/// After the `$`: NAME, then optionally `[ATTR]` or `[ATTR, KEY=VALUE]`.
fn parse_variable(cursor: &mut Cursor) -> Result<Part, SyntaxError> {
    let name = cursor.name("a variable name after '$'")?;
    if cursor.peek() != Some('[') {
        return Ok(Part::Single { name });
    }
    cursor.bump();
    skip_blanks(cursor);
    let attribute = cursor.name("an attribute name")?;
    skip_blanks(cursor);
    let filter = if cursor.peek() == Some(',') {
        cursor.bump();
        skip_blanks(cursor);
        let key = cursor.name("an attribute name")?;
        skip_blanks(cursor);
        cursor.expect('=')?;
        skip_blanks(cursor);
        let value = filter_value(cursor)?;
        skip_blanks(cursor);
        Some(Filter { key, value })
    } else {
        None
    };
    cursor.expect(']')?;
    Ok(Part::Vector {
        name,
        attribute,
        filter,
    })
}

fn skip_blanks(cursor: &mut Cursor) {
    cursor.take_while(|c| c == ' ' || c == '\t');
}

/// `"anything but a quote"` or `[[:alnum:]]+`.
fn filter_value(cursor: &mut Cursor) -> Result<String, SyntaxError> {
    if cursor.peek() == Some('"') {
        let start: Position = cursor.position();
        cursor.bump();
        let value = cursor.take_while(|c| c != '"');
        if cursor.bump() != Some('"') {
            return Err(SyntaxError {
                position: start,
                message: "unterminated quoted value".into(),
            });
        }
        return Ok(value.to_string());
    }
    let value = cursor.take_while(|c| c.is_ascii_alphanumeric());
    if value.is_empty() {
        return Err(cursor.error("expected a value: letters and digits, or a quoted string"));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoes what it was asked, so each test sees exactly what was parsed.
    struct Echo;

    impl Lookup for Echo {
        fn single(&self, name: &str) -> String {
            if name == "UNKNOWN" {
                String::new()
            } else {
                format!("<{name}>")
            }
        }
        fn vector(&self, name: &str, attribute: &str, filter: Option<&Filter>) -> String {
            match filter {
                None => format!("<{name}.{attribute}>"),
                Some(f) => format!("<{name}.{attribute}|{}={}>", f.key, f.value),
            }
        }
    }

    fn expanded(text: &str) -> String {
        expand(text, &Echo).unwrap()
    }

    #[test]
    fn plain_text_is_kept() {
        assert_eq!(
            expanded("no variables, \"quotes\" and \\n"),
            "no variables, \"quotes\" and \\n"
        );
        assert_eq!(expanded(""), "");
    }

    #[test]
    fn single_variables_keep_the_character_that_ends_them() {
        assert_eq!(expanded("$name"), "<NAME>");
        assert_eq!(expanded("id=$VMID."), "id=<VMID>.");
        assert_eq!(expanded("$A$b c"), "<A><B> c");
        assert_eq!(expanded("$UNKNOWN-x"), "-x");
        assert_eq!(expanded("$ETH0_IP\n"), "<ETH0_IP>\n");
    }

    #[test]
    fn vector_variables() {
        assert_eq!(expanded("$NIC[ip]"), "<NIC.IP>");
        assert_eq!(expanded("$NIC[ IP ]!"), "<NIC.IP>!");
        assert_eq!(
            expanded("$NIC[IP, NETWORK=public]"),
            "<NIC.IP|NETWORK=public>"
        );
        assert_eq!(expanded("$NIC[IP,network_id=3]"), "<NIC.IP|NETWORK_ID=3>");
        assert_eq!(
            expanded("$NETWORK[GATEWAY, NETWORK=\"my net\"]/x"),
            "<NETWORK.GATEWAY|NETWORK=my net>/x"
        );
        assert_eq!(expanded("$USER[SSH_PUBLIC_KEY]"), "<USER.SSH_PUBLIC_KEY>");
        assert_eq!(
            expanded("$IMAGE[SIZE, IMAGE_ID=7]"),
            "<IMAGE.SIZE|IMAGE_ID=7>"
        );
    }

    #[test]
    fn escaped_dollar_is_literal() {
        assert_eq!(expanded("cost: \\$5 and $X"), "cost: $5 and <X>");
        assert_eq!(parse("\\$HOME").unwrap(), vec![Part::Text("$HOME".into())]);
    }

    fn error(text: &str) -> SyntaxError {
        parse(text).unwrap_err()
    }

    #[test]
    fn syntax_errors_name_their_position() {
        let e = error("abc $ def");
        assert_eq!((e.position.line, e.position.column), (1, 6));
        assert!(e.message.contains("variable name"), "{}", e.message);

        let e = error("line1\n  $NIC[IP");
        assert_eq!((e.position.line, e.position.column), (2, 10));
        assert!(e.message.contains("expected ']'"), "{}", e.message);

        let e = error("$NIC[IP, NETWORK]");
        assert_eq!((e.position.line, e.position.column), (1, 17));
        assert!(e.message.contains("expected '='"), "{}", e.message);

        let e = error("$NIC[IP, NETWORK=\"open");
        assert_eq!((e.position.line, e.position.column), (1, 18));
        assert!(e.message.contains("unterminated"), "{}", e.message);

        let e = error("$NIC[IP, NETWORK=a-b]");
        assert_eq!((e.position.line, e.position.column), (1, 19));

        let e = error("$NIC[]");
        assert_eq!((e.position.line, e.position.column), (1, 6));
    }
}
