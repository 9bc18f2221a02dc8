//! Errors that point into a file. Every problem carries its file, a byte span,
//! a message and a hint; a check collects all of them before giving up.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{
    Diagnostic, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents,
};

/// One file read by a loader or importer, kept whole so errors can quote it.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(SourceFile {
            path: path.into(),
            text: text.into(),
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// Byte offset of a 1-based line and column (in characters), clamped to the text.
    pub fn offset_of(&self, line: usize, col: usize) -> usize {
        let line_start: usize = self
            .text
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum();
        let rest = &self.text[line_start.min(self.text.len())..];
        line_start
            + rest
                .char_indices()
                .nth(col.saturating_sub(1))
                .map_or(rest.len(), |(i, _)| i)
    }
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

impl SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self
            .text
            .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.path.display().to_string(),
            inner.data(),
            *inner.span(),
            inner.line(),
            inner.column(),
            inner.line_count(),
        )))
    }
}

/// One error in a template, at a place in a file, with a hint on how to fix it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub source: Arc<SourceFile>,
    pub span: Range<usize>,
    pub message: String,
    pub hint: String,
}

impl Problem {
    pub fn new(
        source: &Arc<SourceFile>,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Problem {
            source: Arc::clone(source),
            span,
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn line_col(&self) -> (usize, usize) {
        self.source.line_col(self.span.start)
    }

    /// `file:line:column: message` and the hint on a second line: the form for
    /// logs, pipes and tests.
    pub fn plain(&self) -> String {
        let (line, col) = self.line_col();
        format!(
            "{}:{line}:{col}: error: {}\n  hint: {}",
            self.source.path.display(),
            self.message,
            self.hint
        )
    }
}

impl fmt::Display for Problem {
    // The message alone: miette's graphical report shows the place and the hint itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.hint))
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&*self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = SourceSpan::from(self.span.start..self.span.end.max(self.span.start));
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some("here".into()),
            span,
        ))))
    }
}

/// Everything wrong with a template; never empty.
#[derive(Debug, Clone)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn plain(&self) -> String {
        self.0.iter().map(|p| p.plain() + "\n").collect()
    }
}

impl From<Problem> for Problems {
    fn from(p: Problem) -> Self {
        Problems(vec![p])
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{}", one.plain()),
            many => write!(f, "{} errors, the first: {}", many.len(), many[0].plain()),
        }
    }
}

impl std::error::Error for Problems {}

/// Collects problems while a reader carries on past each of them.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<Problem>);

impl Errors {
    pub fn push(&mut self, p: Problem) {
        self.0.push(p);
    }

    /// `Ok(value)` when nothing went wrong, else every problem found.
    pub fn finish<T>(self, value: T) -> Result<T, Problems> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(Problems(self.0))
        }
    }
}

/// "did you mean `x`?" when a candidate is close, else the list of candidates.
pub fn suggest(word: &str, candidates: &[&str]) -> String {
    let best = candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&word.to_lowercase(), c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, c)) => format!("did you mean `{c}`?"),
        None => format!("expected one of: {}", candidates.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let src = SourceFile::new("t.yaml", "a: 1\nbé: x\n");
        assert_eq!(src.line_col(0), (1, 1));
        let x = src.text.find('x').unwrap();
        assert_eq!(src.line_col(x), (2, 5));
        assert_eq!(src.offset_of(2, 5), x);
    }

    #[test]
    fn suggestion_names_the_close_key_or_lists_all() {
        assert_eq!(
            suggest("pakages", &["packages", "files"]),
            "did you mean `packages`?"
        );
        assert_eq!(
            suggest("zzz", &["packages", "files"]),
            "expected one of: packages, files"
        );
    }
}
