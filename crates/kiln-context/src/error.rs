//! Errors of the context library. Syntax errors carry a line:column position.

use std::fmt;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A parse failure inside one text: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{position}: {message}")]
pub struct SyntaxError {
    pub position: Position,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `origin` names the text: a file, or an attribute such as `CONTEXT/SSH_KEY`.
    #[error("{origin}:{error}")]
    Syntax { origin: String, error: SyntaxError },
    /// The description is well-formed but does not make sense (an unknown network…).
    #[error("{0}")]
    Invalid(String),
    #[error("{origin}: {source}")]
    Io {
        origin: String,
        source: std::io::Error,
    },
}

impl Error {
    pub fn syntax(origin: impl Into<String>, error: SyntaxError) -> Self {
        Error::Syntax {
            origin: origin.into(),
            error,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Walks a text and tracks the line:column of its cursor.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    text: &'a str,
    offset: usize,
    position: Position,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str) -> Self {
        Cursor {
            text,
            offset: 0,
            position: Position { line: 1, column: 1 },
        }
    }

    pub fn position(&self) -> Position {
        self.position
    }

    pub fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub fn rest(&self) -> &'a str {
        &self.text[self.offset..]
    }

    pub fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.offset += c.len_utf8();
        if c == '\n' {
            self.position.line += 1;
            self.position.column = 1;
        } else {
            self.position.column += 1;
        }
        Some(c)
    }

    /// Consumes characters while `keep` holds and returns them.
    pub fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let start = self.offset;
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
        &self.text[start..self.offset]
    }

    /// Consumes `wanted` or fails naming what was found instead.
    pub fn expect(&mut self, wanted: char) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(c) if c == wanted => {
                self.bump();
                Ok(())
            }
            found => Err(self.error(format!("expected {wanted:?}, found {}", describe(found)))),
        }
    }

    /// An `[A-Za-z0-9_]+` name, upper-cased (OpenNebula names are
    /// case-insensitive); `what` says what was expected.
    pub fn name(&mut self, what: &str) -> Result<String, SyntaxError> {
        let name = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
        if name.is_empty() {
            return Err(self.error(format!("expected {what}, found {}", describe(self.peek()))));
        }
        Ok(name.to_ascii_uppercase())
    }

    pub fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            position: self.position,
            message: message.into(),
        }
    }
}

fn describe(found: Option<char>) -> String {
    found.map_or("end of text".to_string(), |c| format!("{c:?}"))
}
