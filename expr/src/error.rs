//! Errors of the expression language: compile errors with positions, and
//! run-time errors as values.

use std::fmt;
use std::ops::Range;

/// One problem found while compiling, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// Byte range in the source.
    pub span: Range<usize>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// What was wrong and what was expected.
    pub message: String,
}

impl CompileError {
    /// An error at `span` of `source`, with its line and column computed.
    pub fn at(source: &str, span: Range<usize>, message: impl Into<String>) -> CompileError {
        let (line, column) = line_column(source, span.start);
        CompileError { span, line, column, message: message.into() }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// 1-based line and character column of byte `offset` in `source`.
pub fn line_column(source: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() as u32 + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() as u32 + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Every error of one source, in order of position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileErrors(pub Vec<CompileError>);

impl CompileErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, CompileError> {
        self.0.iter()
    }
}

impl fmt::Display for CompileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CompileErrors {}

/// A failure while evaluating. Messages never include the values involved,
/// as those may be secrets or personal data that would end up in events.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// A function or operator got something it cannot work with.
    #[error("{0}")]
    Type(String),
    /// `$secret.NAME` names a secret that does not exist.
    #[error("secret `{0}` is not defined in this organization")]
    MissingSecret(String),
    /// The evaluation took more steps than allowed.
    #[error("expression exceeded {0} evaluation steps")]
    TooManySteps(u64),
    /// A value the expression produces would grow beyond the allowed size.
    #[error("expression output exceeded {0} bytes")]
    OutputTooLarge(usize),
    /// The values one execution's expressions produce would add up to
    /// more than allowed.
    #[error("the connector's expressions produced more than {0} bytes in this call")]
    TotalOutputTooLarge(usize),
}

impl EvalError {
    pub(crate) fn type_error(message: impl Into<String>) -> EvalError {
        EvalError::Type(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let source = "ab\nçd$x";
        assert_eq!(line_column(source, 0), (1, 1));
        assert_eq!(line_column(source, 3), (2, 1));
        assert_eq!(line_column(source, 6), (2, 3), "ç is one column though two bytes");
        assert_eq!(line_column(source, 99), (2, 5));
        let err = CompileError::at(source, 6..7, "boom");
        assert_eq!(err.to_string(), "2:3: boom");
    }
}
