//! Every key and scalar of a JSON document, duplicates included: what a refusal must not
//! repeat.

use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Unexpected, Visitor};

/// Shorter texts ("u", "1") occur in any sentence; they prove nothing either way.
const MIN_NEEDLE: usize = 3;

/// The keys and the renderings of the scalars of one document, in document order.
#[derive(Debug, Default)]
pub(super) struct Scalars {
    /// Every object key.
    pub(super) keys: Vec<String>,
    /// Every scalar as the document wrote it and as serde renders it in its messages.
    values: Vec<String>,
}

impl Scalars {
    /// Walks `data` as serde_json reads it, as far as it is JSON: a type refuses a value
    /// before serde reads on, so a refusal may stand on a document that breaks off later.
    pub(super) fn of(data: &[u8]) -> Self {
        let mut scalars = Scalars::default();
        let mut deserializer = serde_json::Deserializer::from_slice(data);
        let _up_to_the_first_syntax_error = Collect(&mut scalars).deserialize(&mut deserializer);
        scalars
    }

    /// Texts a refusal must not contain: every scalar (digit runs of numbers too, which
    /// serde may print in another notation) and every key that is not a plain name.
    pub(super) fn needles(&self) -> impl Iterator<Item = String> + '_ {
        let keys = self
            .keys
            .iter()
            .filter(|key| !super::is_plain(key))
            .flat_map(|key| [key.clone(), key.escape_debug().to_string()]);
        let digit_runs = self.values.iter().flat_map(|value| {
            value
                .split(|c: char| !c.is_ascii_digit())
                .filter(|run| run.len() > MIN_NEEDLE)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
        self.values
            .iter()
            .cloned()
            .chain(keys)
            .chain(digit_runs)
            .filter(|needle| needle.chars().count() >= MIN_NEEDLE)
    }

    fn number(&mut self, shown: impl fmt::Display, unexpected: Unexpected<'_>) {
        self.values.push(shown.to_string());
        let serde_text = unexpected.to_string();
        if let Some((_, quoted)) = serde_text.split_once('`') {
            self.values.push(quoted.trim_end_matches('`').to_owned());
        }
    }
}

struct Collect<'a>(&'a mut Scalars);

impl<'de> DeserializeSeed<'de> for Collect<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Collect<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.values.push(v.to_string());
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.0.number(v, Unexpected::Signed(v));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.number(v, Unexpected::Unsigned(v));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.0.number(v, Unexpected::Float(v));
        self.0.values.push(format!("{v:?}"));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.values.push(v.to_owned());
        // serde quotes a string it refuses with Rust's escapes.
        self.0.values.push(v.escape_debug().to_string());
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.values.push("null".to_owned());
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Collect(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            self.0.keys.push(key);
            map.next_value_seed(Collect(&mut *self.0))?;
        }
        Ok(())
    }
}
