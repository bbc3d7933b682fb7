//! The parser's tests: RFC 7512's examples, round trips, and each refusal.

use super::*;

type Result<T = (), E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// An RFC 7512 §3 example, whose line breaks and indentation are not part of the URI.
fn joined(example: &str) -> String {
    example.split_whitespace().collect()
}

fn parse(uri: &str) -> std::result::Result<Pkcs11Uri, UriError> {
    joined(uri).parse()
}

#[test]
fn the_rfc_examples_parse_to_their_attributes() -> Result {
    assert_eq!(parse("pkcs11:")?, Pkcs11Uri::default());
    let uri = parse("pkcs11:object=my-pubkey;type=public")?;
    assert_eq!(uri.text(UriAttribute::Object), Some("my-pubkey"));
    assert_eq!(uri.object_type(), Some(ObjectType::Public));
    let uri = parse("pkcs11:object=my-key;type=private?pin-source=file:/etc/token")?;
    assert_eq!(uri.text(UriAttribute::PinSource), Some("file:/etc/token"));
    let uri = parse(
        "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;
                manufacturer=Snake%20Oil,%20Inc.;
                model=1.0;
                object=my-certificate;
                type=cert;
                id=%69%95%3E%5C%F4%BD%EC%91;
                serial=
                ?pin-source=file:/etc/token_pin",
    )?;
    assert_eq!(uri.text(UriAttribute::Token), Some("The Software PKCS#11 Softtoken"));
    assert_eq!(uri.text(UriAttribute::Manufacturer), Some("Snake Oil, Inc."));
    assert_eq!(uri.text(UriAttribute::Model), Some("1.0"));
    assert_eq!(uri.object_type(), Some(ObjectType::Cert));
    assert_eq!(uri.id(), Some(&[0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91][..]));
    assert_eq!(uri.text(UriAttribute::Serial), Some(""));
    let uri = parse("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11")?;
    assert_eq!(uri.text(UriAttribute::ModuleName), Some("mypkcs11"));
    let uri = parse("pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1")?;
    assert_eq!(uri.text(UriAttribute::ModulePath), Some("/mnt/libmypkcs11.so.1"));
    let uri = parse("pkcs11:slot-description=Sun%20Metaslot")?;
    assert_eq!(uri.text(UriAttribute::SlotDescription), Some("Sun Metaslot"));
    let uri = parse(
        "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;
                library-description=Soft%20Token%20Library;
                library-version=1.23",
    )?;
    assert_eq!(uri.text(UriAttribute::LibraryVersion), Some("1.23"));
    let uri = parse(
        "pkcs11:token=My%20token%25%20created%20by%20Joe;
                library-version=3;
                id=%01%02%03%Ba%dd%Ca%fe%04%05%06",
    )?;
    assert_eq!(uri.text(UriAttribute::Token), Some("My token% created by Joe"));
    assert_eq!(uri.id(), Some(&[1, 2, 3, 0xba, 0xdd, 0xca, 0xfe, 4, 5, 6][..]));
    let uri = parse("pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert")?;
    assert_eq!(uri.text(UriAttribute::Token), Some("A name with a substring %;"));
    let uri =
        parse("pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert")?;
    assert_eq!(uri.text(UriAttribute::Token), Some("Name with a small A with acute: á"));
    Ok(())
}

#[test]
fn the_rfc_examples_with_a_pin_value_or_vendor_attributes_are_refused() {
    let with_pin = "pkcs11:token=Software%20PKCS%2311%20softtoken;
                    manufacturer=Snake%20Oil,%20Inc.
                    ?pin-value=the-pin";
    assert_eq!(parse(with_pin), Err(UriError::PinValue));
    let vendor = "pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a
                  ?pin-source=file:/etc/token_pin&vendor-bbb=value-b";
    assert_eq!(
        parse(vendor),
        Err(UriError::UnknownAttribute {
            name: "vendor-aaa".into()
        })
    );
}

#[test]
fn labels_with_separators_escapes_and_spaces_round_trip() -> Result {
    for label in ["a;b", "dir/key", "100%", "my key", "a&b=c?d", "pkcs11:x", "ключ"] {
        for attribute in [UriAttribute::Token, UriAttribute::Object, UriAttribute::PinSource] {
            let uri = Pkcs11Uri::default().with(attribute, label)?;
            let text = uri.to_string();
            assert_eq!(text.parse::<Pkcs11Uri>()?, uri, "{text}");
            assert_eq!(text.parse::<Pkcs11Uri>()?.text(attribute), Some(label), "{text}");
        }
    }
    let uri = Pkcs11Uri::default()
        .with(UriAttribute::Object, "k")?
        .with(UriAttribute::Type, "private")?
        .with(UriAttribute::ModulePath, "/usr/lib/softhsm/libsofthsm2.so")?;
    assert_eq!(
        uri.to_string(),
        "pkcs11:object=k;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so"
    );
    Ok(())
}

#[test]
fn a_pin_value_is_refused_wherever_it_is_and_never_quoted() {
    for uri in [
        "pkcs11:token=t?pin-value=s3cret-9",
        "pkcs11:pin-value=s3cret-9",
        "pkcs11:token=t?PIN-VALUE=s3cret-9",
        "pkcs11:token=t?pin-value=s3cret-9&pin-value=s3cret-9",
        "pkcs11:token=a b?pin-value=s3cret-9",
    ] {
        let error = uri.parse::<Pkcs11Uri>().expect_err(uri);
        assert_eq!(error, UriError::PinValue, "{uri}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
    assert_eq!(
        Pkcs11Uri::default().with(UriAttribute::PinValue, "1234"),
        Err(UriError::PinValue)
    );
}

#[test]
fn malformed_uris_are_refused_naming_the_attribute() {
    use UriAttribute as A;
    let cases = [
        ("token=t", UriError::NotPkcs11Uri),
        (
            "pkcs11:token=t;",
            UriError::EmptyAttribute {
                component: UriComponent::Path,
                position: 2,
            },
        ),
        (
            "pkcs11:token",
            UriError::NoEquals {
                component: UriComponent::Path,
                position: 1,
            },
        ),
        (
            "pkcs11:to ken=t",
            UriError::MalformedName {
                component: UriComponent::Path,
                position: 1,
            },
        ),
        ("pkcs11:token=a;token=b", UriError::Duplicate { attribute: A::Token }),
        (
            "pkcs11:token=a b",
            UriError::Unencoded {
                attribute: A::Token,
                character: ' ',
            },
        ),
        (
            "pkcs11:object=a/b",
            UriError::Unencoded {
                attribute: A::Object,
                character: '/',
            },
        ),
        (
            "pkcs11:object=á",
            UriError::Unencoded {
                attribute: A::Object,
                character: 'á',
            },
        ),
        (
            "pkcs11:object=100%",
            UriError::BadPercentEncoding { attribute: A::Object },
        ),
        (
            "pkcs11:object=%G1",
            UriError::BadPercentEncoding { attribute: A::Object },
        ),
        (
            "pkcs11:object=%+1",
            UriError::BadPercentEncoding { attribute: A::Object },
        ),
        ("pkcs11:object=%FF", UriError::NotUtf8 { attribute: A::Object }),
        ("pkcs11:type=key", UriError::UnknownType { value: "key".into() }),
        ("pkcs11:slot-id=1a", UriError::NotANumber { attribute: A::SlotId }),
        ("pkcs11:slot-id=1.2", UriError::NotANumber { attribute: A::SlotId }),
        (
            "pkcs11:library-version=1.",
            UriError::NotANumber {
                attribute: A::LibraryVersion,
            },
        ),
        ("pkcs11:?token=t", UriError::WrongComponent { attribute: A::Token }),
        (
            "pkcs11:module-path=/x.so",
            UriError::WrongComponent {
                attribute: A::ModulePath,
            },
        ),
        (
            "pkcs11:token=t#frag",
            UriError::Unencoded {
                attribute: A::Token,
                character: '#',
            },
        ),
    ];
    for (uri, expected) in cases {
        assert_eq!(uri.parse::<Pkcs11Uri>(), Err(expected), "{uri}");
    }
    assert_eq!(
        "PKCS11:id=%00".parse::<Pkcs11Uri>().map(|u| u.id().map(<[u8]>::to_vec)),
        Ok(Some(vec![0]))
    );
}
