//! What serde found wrong with a body's shape, in words that repeat nothing the body said.

/// What serde found wrong with a well-formed body, kept apart from anything the body said.
/// serde's own text quotes the offending value (`invalid type: integer `4111…``) and the
/// raw name of an unknown field, and this text goes to the client and into the log; so
/// only words our types wrote survive: the field's name when it is a plain identifier, the
/// kind of problem, and what the type expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError {
    field: Option<String>,
    problem: ShapeProblem,
    name: Option<String>,
    expected: Option<String>,
}

/// The kind of shape problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeProblem {
    /// A string where a number belongs, an object for a string, …
    WrongType,
    /// An integer outside the field's type (`-1` for a `u64`).
    OutOfRange,
    /// A number with a fraction or an exponent where an integer belongs; serde_json also
    /// reads an integer too large for 64 bits this way.
    NotAnInteger,
    /// The right type, but a value the type refuses.
    InvalidValue,
    /// An array or tuple of the wrong length.
    WrongLength,
    /// A string that names no variant of an enum.
    UnknownVariant,
    /// A required field is absent.
    MissingField,
    /// A field appears twice.
    DuplicateField,
    /// A field the type does not have.
    UnknownField,
    /// Anything else serde refused; its text is not repeated.
    Other,
}

/// axum's wording around serde's message.
const AXUM_PREFIX: &str = "target type: ";

impl ShapeError {
    /// Where the problem is, e.g. `ttl_seconds`; `None` at the top level, or when the path
    /// is not plain enough to repeat.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What kind of problem it is.
    pub fn problem(&self) -> ShapeProblem {
        self.problem
    }

    /// The missing, duplicate or unknown field's name, when it is a plain identifier.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// What the field's type expected ("a string", "u64"), when it reads as plain words.
    pub fn expected(&self) -> Option<&str> {
        self.expected.as_deref()
    }

    /// Reads axum's rendering of serde_path_to_error's error: "Failed to deserialize the
    /// JSON body into the target type: [path: ]message at line L column C". The request's
    /// text can appear in the path (an unknown field's name) and inside the message, so
    /// every piece is found from the ends serde writes itself, and kept only if plain.
    pub(super) fn from_serde_text(text: &str) -> Self {
        let text = text.split_once(AXUM_PREFIX).map_or(text, |(_, tail)| tail);
        let text = text.rsplit_once(" at line ").map_or(text, |(head, _)| head);
        if let Some((name, expected)) = unknown_field_at_its_own_path(text) {
            return Self {
                field: None,
                problem: ShapeProblem::UnknownField,
                name: is_plain_name(name).then(|| name.to_owned()),
                expected: expected_if_plain(expected),
            };
        }
        let (path, message) = match text.split_once(": ") {
            Some((path, message)) if !starts_with_kind(text) => (Some(path), message),
            _ => (None, text),
        };
        let (problem, name, expected) = classify(message);
        Self {
            field: path.filter(|path| is_plain_path(path)).map(str::to_owned),
            problem,
            name: name.filter(|name| is_plain_name(name)).map(str::to_owned),
            expected: expected.and_then(expected_if_plain),
        }
    }
}

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(match self.problem {
            ShapeProblem::WrongType => "wrong type",
            ShapeProblem::OutOfRange => "out of range",
            ShapeProblem::NotAnInteger => "not an integer, or out of range",
            ShapeProblem::InvalidValue | ShapeProblem::Other => "invalid value",
            ShapeProblem::WrongLength => "wrong length",
            ShapeProblem::UnknownVariant => "unknown variant",
            ShapeProblem::MissingField => "missing field",
            ShapeProblem::DuplicateField => "duplicate field",
            ShapeProblem::UnknownField => "unknown field",
        })?;
        if let Some(name) = &self.name {
            write!(f, " `{name}`")?;
        }
        if let Some(expected) = &self.expected {
            write!(f, " (expected {expected})")?;
        }
        Ok(())
    }
}

/// serde's messages, each by the text it starts with (serde_core's `de::Error` defaults).
const KINDS: [(&str, ShapeProblem); 7] = [
    ("invalid type: ", ShapeProblem::WrongType),
    ("invalid value: ", ShapeProblem::InvalidValue),
    ("invalid length ", ShapeProblem::WrongLength),
    ("unknown variant `", ShapeProblem::UnknownVariant),
    ("unknown field `", ShapeProblem::UnknownField),
    ("missing field `", ShapeProblem::MissingField),
    ("duplicate field `", ShapeProblem::DuplicateField),
];

fn starts_with_kind(text: &str) -> bool {
    KINDS.iter().any(|(start, _)| text.starts_with(start))
}

/// The problem, the field name it quotes and the text after its last ", expected ": serde
/// writes what the type expected last, so whatever the value was cannot stand in for it.
fn classify(message: &str) -> (ShapeProblem, Option<&str>, Option<&str>) {
    let Some((start, problem)) = KINDS.iter().find(|(start, _)| message.starts_with(start)) else {
        return (ShapeProblem::Other, None, None);
    };
    let rest = &message[start.len()..];
    let (found, expected) = match rest.rsplit_once(", expected ") {
        Some((found, expected)) => (found, Some(expected)),
        None => (rest, None),
    };
    match problem {
        ShapeProblem::MissingField | ShapeProblem::DuplicateField => (*problem, rest.strip_suffix('`'), None),
        ShapeProblem::UnknownField => (*problem, found.strip_suffix('`'), expected),
        ShapeProblem::WrongType if found.starts_with("floating point") && expected.is_some_and(is_integer_type) => {
            (ShapeProblem::NotAnInteger, None, expected)
        }
        ShapeProblem::InvalidValue if found.starts_with("integer ") => (ShapeProblem::OutOfRange, None, expected),
        _ => (*problem, None, expected),
    }
}

/// serde_path_to_error puts an unknown field's own name in front as its path: "NAME:
/// unknown field `NAME`, expected …". Both copies are the request's text, so the split is
/// found by length, not by searching text the sender chose.
fn unknown_field_at_its_own_path<'a>(text: &'a str) -> Option<(&'a str, &'a str)> {
    const MIDDLE: &str = ": unknown field `";
    let split = |head: &'a str| {
        let name_len = head.len().checked_sub(MIDDLE.len())? / 2;
        let name = head.get(..name_len)?;
        let after = head.get(name_len..)?.strip_prefix(MIDDLE)?;
        (after == name).then_some(name)
    };
    if let Some((head, expected)) = text.rsplit_once("`, expected ")
        && let Some(name) = split(head)
    {
        return Some((name, expected));
    }
    let head = text.strip_suffix("`, there are no fields")?;
    split(head).map(|name| (name, ""))
}

/// A name worth repeating: short, an identifier, so neither a value nor markup.
fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A serde_path_to_error path of plain names and indices, e.g. `items[0].name`.
fn is_plain_path(path: &str) -> bool {
    path.len() <= 64
        && path
            .split('.')
            .all(|segment| is_plain_name(segment.split('[').next().unwrap_or_default()))
        && path.chars().all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c))
}

fn is_integer_type(expected: &str) -> bool {
    matches!(
        expected,
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128" | "isize"
    )
}

/// What a type said it expected ("a string", "u64", "one of `a`, `b`"), if it reads as such.
fn expected_if_plain(expected: &str) -> Option<String> {
    let plain = !expected.is_empty()
        && expected.len() <= 160
        && expected
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _`,".contains(c));
    plain.then(|| expected.to_owned())
}
