//! PKCS#11 URIs (RFC 7512): a strict parser; what a token or key option may name with one
//! is in [`selection`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

mod selection;
#[cfg(test)]
mod tests;

pub use selection::{ConfiguredPath, NameError, TokenSelection};

/// The scheme with its colon, matched ignoring ASCII case (RFC 3986 §3.1).
const SCHEME: &str = "pkcs11:";

/// Whether `value` is meant as a PKCS#11 URI rather than a plain label: it begins with
/// `pkcs11:`. (A label that itself begins so is given as `pkcs11:token=pkcs11%3A…`.)
pub fn is_pkcs11_uri(value: &str) -> bool {
    value
        .get(..SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
}

/// An attribute RFC 7512 defines (§2.3); vendor-specific attributes are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UriAttribute {
    /// `token`: the token's label.
    Token,
    /// `manufacturer`: the token's manufacturer ID.
    Manufacturer,
    /// `model`: the token's model.
    Model,
    /// `serial`: the token's serial number.
    Serial,
    /// `library-manufacturer`: the module's manufacturer ID.
    LibraryManufacturer,
    /// `library-description`: the module's description.
    LibraryDescription,
    /// `library-version`: the module's version, `MAJOR[.MINOR]`.
    LibraryVersion,
    /// `slot-manufacturer`: the slot's manufacturer ID.
    SlotManufacturer,
    /// `slot-description`: the slot's description.
    SlotDescription,
    /// `slot-id`: the slot's decimal CK_SLOT_ID.
    SlotId,
    /// `object`: the object's label (CKA_LABEL).
    Object,
    /// `type`: the object's class.
    Type,
    /// `id`: the object's CKA_ID, any bytes.
    Id,
    /// `pin-source` (query): where the PIN is read from.
    PinSource,
    /// `pin-value` (query): the PIN itself; always refused.
    PinValue,
    /// `module-name` (query): the module's name, for a platform-specific search.
    ModuleName,
    /// `module-path` (query): the module's path.
    ModulePath,
}

impl UriAttribute {
    const ALL: [Self; 17] = [
        Self::Token,
        Self::Manufacturer,
        Self::Model,
        Self::Serial,
        Self::LibraryManufacturer,
        Self::LibraryDescription,
        Self::LibraryVersion,
        Self::SlotManufacturer,
        Self::SlotDescription,
        Self::SlotId,
        Self::Object,
        Self::Type,
        Self::Id,
        Self::PinSource,
        Self::PinValue,
        Self::ModuleName,
        Self::ModulePath,
    ];

    /// The attribute's name in a URI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Manufacturer => "manufacturer",
            Self::Model => "model",
            Self::Serial => "serial",
            Self::LibraryManufacturer => "library-manufacturer",
            Self::LibraryDescription => "library-description",
            Self::LibraryVersion => "library-version",
            Self::SlotManufacturer => "slot-manufacturer",
            Self::SlotDescription => "slot-description",
            Self::SlotId => "slot-id",
            Self::Object => "object",
            Self::Type => "type",
            Self::Id => "id",
            Self::PinSource => "pin-source",
            Self::PinValue => "pin-value",
            Self::ModuleName => "module-name",
            Self::ModulePath => "module-path",
        }
    }

    /// The part of the URI it belongs in.
    pub fn component(self) -> UriComponent {
        match self {
            Self::PinSource | Self::PinValue | Self::ModuleName | Self::ModulePath => UriComponent::Query,
            _ => UriComponent::Path,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|attribute| attribute.name() == name)
    }
}

impl fmt::Display for UriAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The two parts of a PKCS#11 URI that hold attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriComponent {
    /// Before `?`, attributes separated by `;`: what is selected.
    Path,
    /// After `?`, attributes separated by `&`: how to reach it.
    Query,
}

impl fmt::Display for UriComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Path => "path (before '?')",
            Self::Query => "query (after '?')",
        })
    }
}

/// The object classes `type=` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    /// `public`: CKO_PUBLIC_KEY.
    Public,
    /// `private`: CKO_PRIVATE_KEY.
    Private,
    /// `cert`: CKO_CERTIFICATE.
    Cert,
    /// `secret-key`: CKO_SECRET_KEY.
    SecretKey,
    /// `data`: CKO_DATA.
    Data,
}

impl ObjectType {
    const ALL: [Self; 5] = [Self::Public, Self::Private, Self::Cert, Self::SecretKey, Self::Data];

    /// The value's name in a URI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Cert => "cert",
            Self::SecretKey => "secret-key",
            Self::Data => "data",
        }
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a text is not a PKCS#11 URI. No message quotes a value that could be a PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// It does not begin with `pkcs11:`.
    #[error("not a PKCS#11 URI: it does not begin with \"pkcs11:\"")]
    NotPkcs11Uri,
    /// It has a `pin-value`, which is refused before anything else is read.
    #[error(
        "PKCS#11 URI attribute pin-value is refused: a PIN never goes on a command line or into a \
         configuration value; put it in a file (mode 0600) and name that file with pin-source in the \
         URI, or with the PIN-file option (pin_file, --pin-file)"
    )]
    PinValue,
    /// Two separators with nothing between them (`a=1;;b=2`, a trailing `;`).
    #[error("PKCS#11 URI: attribute {position} of the {component} is empty")]
    EmptyAttribute {
        /// Where it is.
        component: UriComponent,
        /// 1-based, among that component's attributes.
        position: usize,
    },
    /// An attribute without `=`.
    #[error("PKCS#11 URI: attribute {position} of the {component} has no '='")]
    NoEquals {
        /// Where it is.
        component: UriComponent,
        /// 1-based, among that component's attributes.
        position: usize,
    },
    /// A name with characters no attribute name has; not quoted.
    #[error("PKCS#11 URI: attribute {position} of the {component} has a malformed name")]
    MalformedName {
        /// Where it is.
        component: UriComponent,
        /// 1-based, among that component's attributes.
        position: usize,
    },
    /// A well-formed name RFC 7512 does not define (a vendor's, or a typo).
    #[error("unknown PKCS#11 URI attribute {name:?} (vendor-specific attributes are not supported)")]
    UnknownAttribute {
        /// The name.
        name: String,
    },
    /// A path attribute in the query, or the other way round.
    #[error("PKCS#11 URI attribute {attribute} belongs in the {}", attribute.component())]
    WrongComponent {
        /// The attribute.
        attribute: UriAttribute,
    },
    /// The same attribute twice.
    #[error("PKCS#11 URI attribute {attribute} is given more than once")]
    Duplicate {
        /// The attribute.
        attribute: UriAttribute,
    },
    /// A character that must be percent-encoded where it is (a space, `/` in the path, …).
    #[error("PKCS#11 URI attribute {attribute}: {character:?} must be percent-encoded")]
    Unencoded {
        /// The attribute.
        attribute: UriAttribute,
        /// The character.
        character: char,
    },
    /// A `%` not followed by two hexadecimal digits.
    #[error("PKCS#11 URI attribute {attribute}: '%' must be followed by two hexadecimal digits")]
    BadPercentEncoding {
        /// The attribute.
        attribute: UriAttribute,
    },
    /// A text attribute whose decoded bytes are not UTF-8.
    #[error("PKCS#11 URI attribute {attribute} is not UTF-8 once percent-decoded")]
    NotUtf8 {
        /// The attribute.
        attribute: UriAttribute,
    },
    /// `type=` with a value RFC 7512 does not define.
    #[error("PKCS#11 URI attribute type is public, private, cert, secret-key or data, not {value:?}")]
    UnknownType {
        /// The value.
        value: String,
    },
    /// `slot-id` not decimal digits, or `library-version` not `MAJOR[.MINOR]`.
    #[error("PKCS#11 URI attribute {attribute} must be decimal digits (library-version: MAJOR or MAJOR.MINOR)")]
    NotANumber {
        /// The attribute.
        attribute: UriAttribute,
    },
}

/// An attribute's decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Text(String),
    Bytes(Vec<u8>),
    Type(ObjectType),
}

impl Value {
    /// `attribute`'s value from its decoded bytes.
    fn new(attribute: UriAttribute, bytes: Vec<u8>) -> Result<Self, UriError> {
        let attribute_text = |bytes| String::from_utf8(bytes).map_err(|_| UriError::NotUtf8 { attribute });
        let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        match attribute {
            UriAttribute::PinValue => Err(UriError::PinValue),
            UriAttribute::Id => Ok(Self::Bytes(bytes)),
            UriAttribute::Type => {
                let text = attribute_text(bytes)?;
                match ObjectType::ALL.into_iter().find(|t| t.name() == text) {
                    Some(found) => Ok(Self::Type(found)),
                    None => Err(UriError::UnknownType { value: text }),
                }
            }
            UriAttribute::SlotId | UriAttribute::LibraryVersion => {
                let text = attribute_text(bytes)?;
                let valid = match text.split_once('.') {
                    Some((major, minor)) => attribute == UriAttribute::LibraryVersion && digits(major) && digits(minor),
                    None => digits(&text),
                };
                if valid {
                    Ok(Self::Text(text))
                } else {
                    Err(UriError::NotANumber { attribute })
                }
            }
            _ => attribute_text(bytes).map(Self::Text),
        }
    }
}

/// A parsed PKCS#11 URI (RFC 7512): each attribute at most once, values percent-decoded.
///
/// Parsing is strict: characters that RFC 7512's grammar wants percent-encoded must be
/// (a space, `/` in the path, any non-ASCII character), escapes must be complete, text
/// attributes must decode to UTF-8, and a URI wrapped over lines must be joined first.
/// `Display` writes the canonical form, which parses back to an equal value.
///
/// ```
/// let uri: hsm::Pkcs11Uri = "pkcs11:token=vault;object=vault%20wrapping?module-path=/usr/lib/x.so"
///     .parse()
///     .expect("a URI");
/// assert_eq!(uri.text(hsm::UriAttribute::Object), Some("vault wrapping"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    attributes: BTreeMap<UriAttribute, Value>,
}

impl Pkcs11Uri {
    /// The value of a text attribute (all but `type` and `id`), if present.
    pub fn text(&self, attribute: UriAttribute) -> Option<&str> {
        match self.attributes.get(&attribute)? {
            Value::Text(text) => Some(text),
            Value::Bytes(_) | Value::Type(_) => None,
        }
    }

    /// `type`, if present.
    pub fn object_type(&self) -> Option<ObjectType> {
        match self.attributes.get(&UriAttribute::Type)? {
            Value::Type(found) => Some(*found),
            Value::Text(_) | Value::Bytes(_) => None,
        }
    }

    /// `id`, if present.
    pub fn id(&self) -> Option<&[u8]> {
        match self.attributes.get(&UriAttribute::Id)? {
            Value::Bytes(bytes) => Some(bytes),
            Value::Text(_) | Value::Type(_) => None,
        }
    }

    /// The attributes present, path ones first.
    pub fn attributes(&self) -> impl Iterator<Item = UriAttribute> + '_ {
        self.attributes.keys().copied()
    }

    /// This URI with `attribute` set to `value` as written before encoding (`id`: its bytes),
    /// replacing any earlier value.
    ///
    /// # Errors
    ///
    /// As parsing would for that value: never `pin-value`, a `type` it defines, digits for
    /// `slot-id` and `library-version`.
    pub fn with(mut self, attribute: UriAttribute, value: &str) -> Result<Self, UriError> {
        let value = Value::new(attribute, value.as_bytes().to_vec())?;
        self.attributes.insert(attribute, value);
        Ok(self)
    }
}

impl FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(uri: &str) -> Result<Self, UriError> {
        if !is_pkcs11_uri(uri) {
            return Err(UriError::NotPkcs11Uri);
        }
        let rest = &uri[SCHEME.len()..];
        let (path, query) = rest.split_once('?').map_or((rest, ""), |(path, query)| (path, query));
        let attributes: Vec<_> = split(path, ';', UriComponent::Path)
            .chain(split(query, '&', UriComponent::Query))
            .collect();
        // Before anything could quote the URI: a PIN in it is refused without being read.
        let pin_value = UriAttribute::PinValue.name();
        if attributes.iter().any(|(_, _, text)| {
            text.split('=')
                .next()
                .is_some_and(|name| name.eq_ignore_ascii_case(pin_value))
        }) {
            return Err(UriError::PinValue);
        }
        let mut parsed = Self::default();
        for (component, position, text) in attributes {
            let (name, raw) = text.split_once('=').ok_or(if text.is_empty() {
                UriError::EmptyAttribute { component, position }
            } else {
                UriError::NoEquals { component, position }
            })?;
            let attribute = UriAttribute::from_name(name).ok_or_else(|| unknown(name, component, position))?;
            if attribute.component() != component {
                return Err(UriError::WrongComponent { attribute });
            }
            let value = Value::new(attribute, percent_decode(attribute, raw)?)?;
            if parsed.attributes.insert(attribute, value).is_some() {
                return Err(UriError::Duplicate { attribute });
            }
        }
        Ok(parsed)
    }
}

/// `text`'s attributes with their component and 1-based position; none when it is empty.
fn split(text: &str, separator: char, component: UriComponent) -> impl Iterator<Item = (UriComponent, usize, &str)> {
    let attributes = if text.is_empty() {
        None
    } else {
        Some(text.split(separator))
    };
    attributes
        .into_iter()
        .flatten()
        .enumerate()
        .map(move |(index, attribute)| (component, index + 1, attribute))
}

/// The error for a name no attribute has: quoted only if it could be a vendor's name
/// (`1*(ALPHA / DIGIT / "-" / "_")`), so that no stray text of the URI is.
fn unknown(name: &str, component: UriComponent, position: usize) -> UriError {
    let vendor_like = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if vendor_like {
        UriError::UnknownAttribute { name: name.to_owned() }
    } else {
        UriError::MalformedName { component, position }
    }
}

/// Whether `c` may stand unencoded in a value in `component` (RFC 7512's `pk11-pchar` and
/// `pk11-qchar`, less `%`, which starts an escape).
fn unencoded_allowed(component: UriComponent, c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "-._~:[]@!$'()*+,=".contains(c)
        || match component {
            UriComponent::Path => c == '&',
            UriComponent::Query => "/?|".contains(c),
        }
}

/// `raw`'s bytes with `%XX` escapes decoded (RFC 3986 §2.1, as RFC 7512 §2.3 requires).
fn percent_decode(attribute: UriAttribute, raw: &str) -> Result<Vec<u8>, UriError> {
    let component = attribute.component();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if c == '%' {
            let escape = rest
                .get(1..3)
                .and_then(|hex| {
                    u8::from_str_radix(hex, 16)
                        .ok()
                        .filter(|_| hex.bytes().all(|b| b.is_ascii_hexdigit()))
                })
                .ok_or(UriError::BadPercentEncoding { attribute })?;
            bytes.push(escape);
            rest = &rest[3..];
        } else if unencoded_allowed(component, c) {
            bytes.push(c as u8);
            rest = &rest[1..];
        } else {
            return Err(UriError::Unencoded {
                attribute,
                character: c,
            });
        }
    }
    Ok(bytes)
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SCHEME)?;
        for component in [UriComponent::Path, UriComponent::Query] {
            let attributes = self.attributes.iter().filter(|(a, _)| a.component() == component);
            for (index, (attribute, value)) in attributes.enumerate() {
                let separator = match (component, index) {
                    (UriComponent::Path, 0) => "",
                    (UriComponent::Path, _) => ";",
                    (UriComponent::Query, 0) => "?",
                    (UriComponent::Query, _) => "&",
                };
                write!(f, "{separator}{attribute}=")?;
                match value {
                    Value::Text(text) => percent_encode(f, component, text.as_bytes())?,
                    Value::Bytes(bytes) => bytes.iter().try_for_each(|b| write!(f, "%{b:02X}"))?,
                    Value::Type(found) => f.write_str(found.name())?,
                }
            }
        }
        Ok(())
    }
}

/// Writes `bytes` with everything but unreserved characters escaped (and, in the query,
/// `/` and `:`, so that paths and `file:` stay readable).
fn percent_encode(f: &mut fmt::Formatter<'_>, component: UriComponent, bytes: &[u8]) -> fmt::Result {
    for &b in bytes {
        let plain = b.is_ascii_alphanumeric()
            || b"-._~".contains(&b)
            || (component == UriComponent::Query && b"/:".contains(&b));
        if plain {
            write!(f, "{}", char::from(b))?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}
