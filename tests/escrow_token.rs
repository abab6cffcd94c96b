//! What escrow on a PKCS#11 token rests on, shown on SoftHSM: only the security officer can
//! install a trusted key; an escrowable master key leaves the token only wrapped under that key
//! (never under a key a user session makes, never in the clear); the blob it leaves as is the
//! key; the trusted key cannot be deleted or untrusted; a token without it makes no key.
//! One test in its own binary: SoftHSM reads SOFTHSM2_CONF once per process, and the SO and the
//! user log in to the same token here.

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use keyward::backend::pkcs11::{
    Installed, Pkcs11Options, Pkcs11Root, TokenSelector, context, ensure_token, install_escrow_key,
};
use keyward::backend::{BackendError, KeyKind, KeyProtection, RootOfTrust};
use keyward::config::{Config, DEV_TOKEN_LABEL, RootOfTrustConfig, read_secret};
use keyward::crypto::hex;
use keyward::escrow::Escrowed;
use keyward::escrow::keypair::EscrowPrivateKey;

fn oaep_sha1() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    ))
}

fn find(session: &Session, template: &[Attribute]) -> Vec<ObjectHandle> {
    session.find_objects(template).unwrap()
}

fn secret_keys(session: &Session) -> usize {
    find(
        session,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(true),
        ],
    )
    .len()
}

#[test]
fn only_the_so_makes_a_key_trusted_and_escrowable_keys_leave_only_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let (config, conf) = Config::development(dir.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    // SAFETY: set before this process loads the PKCS#11 module; the one test of this binary.
    unsafe { std::env::set_var("SOFTHSM2_CONF", conf) };
    let RootOfTrustConfig::Pkcs11(p) = &config.root_of_trust else {
        panic!("the development default is PKCS#11")
    };
    let user_pin = read_secret(None, p.pin_file.as_deref()).unwrap();
    let so_pin = read_secret(None, p.initialize_token_so_pin_file.as_deref()).unwrap();
    let ctx = context(&p.module).unwrap();
    ensure_token(&ctx, DEV_TOKEN_LABEL, &so_pin, &user_pin).unwrap();
    let token = TokenSelector::Label(DEV_TOKEN_LABEL.into());

    let escrow_private = EscrowPrivateKey::generate().unwrap();
    let escrow = escrow_private.public().unwrap();
    let other = EscrowPrivateKey::generate().unwrap().public().unwrap();

    // The SO installs the escrow key once; a second install finds it.
    assert_eq!(
        install_escrow_key(&p.module, &token, &so_pin, escrow.target()).unwrap(),
        Installed::Now {
            protected_from_deletion: true
        }
    );
    assert_eq!(
        install_escrow_key(&p.module, &token, &so_pin, escrow.target()).unwrap(),
        Installed::Already
    );

    let root = Pkcs11Root::connect(Pkcs11Options {
        module: p.module.clone(),
        token: token.clone(),
        pin: user_pin.clone(),
    })
    .unwrap();
    let (key, wrapped) = root
        .create_escrowed(
            KeyKind::Master,
            "escrowed",
            &KeyProtection::default(),
            escrow.target(),
        )
        .unwrap();

    // The blob is the key: what the token seals under it opens in software with the unwrapped
    // material.
    let blob = Escrowed {
        escrow_key: escrow.id(),
        oaep_hash: wrapped.hash,
        wrapped: wrapped.bytes.clone(),
        check: Vec::new(),
    };
    let material = escrow_private.unwrap(&blob).unwrap();
    let nonce = [7u8; 12];
    let sealed = root
        .seal(&key, &nonce, b"aad", b"escrowed plaintext")
        .unwrap();
    {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(material.expose()).unwrap();
        let opened = cipher
            .decrypt(
                (&nonce).into(),
                Payload {
                    msg: &sealed,
                    aad: b"aad",
                },
            )
            .unwrap();
        assert_eq!(opened, b"escrowed plaintext");
    }

    // A user session (the PIN an attacker on the host may have).
    let slot = ctx.get_slots_with_initialized_token().unwrap()[0];
    let session = ctx.open_rw_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&user_pin));
    let master = find(
        &session,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Id(hex::decode(&key.0).unwrap()),
        ],
    )[0];

    // It cannot create a trusted key, nor trust one it made.
    let (public, _private) = session
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::Token(false),
                Attribute::Wrap(true),
                Attribute::ModulusBits(3072.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
            ],
            &[Attribute::Token(false), Attribute::Unwrap(true)],
        )
        .unwrap();
    let made_trusted = session.create_object(&[
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(false),
        Attribute::Modulus(other.target().public.modulus.clone()),
        Attribute::PublicExponent(vec![1, 0, 1]),
        Attribute::Wrap(true),
        Attribute::Trusted(true),
    ]);
    assert!(made_trusted.is_err(), "a user session made a trusted key");
    assert!(
        session
            .update_attributes(public, &[Attribute::Trusted(true)])
            .is_err()
    );

    // The master key cannot be wrapped under any key the user holds, RSA or AES.
    assert!(session.wrap_key(&oaep_sha1(), public, master).is_err());
    let aes = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(32.into()),
                Attribute::Wrap(true),
            ],
        )
        .unwrap();
    assert!(
        session
            .wrap_key(&Mechanism::AesKeyWrap, aes, master)
            .is_err()
    );
    // Nor read, nor loosened.
    let readable = session
        .get_attributes(master, &[AttributeType::Value])
        .map(|a| a.iter().any(|a| matches!(a, Attribute::Value(_))))
        .unwrap_or(false);
    assert!(!readable, "the master key's value was readable");
    assert!(
        session
            .update_attributes(master, &[Attribute::WrapWithTrusted(false)])
            .is_err()
    );
    assert!(
        session
            .update_attributes(master, &[Attribute::Sensitive(false)])
            .is_err()
    );

    // The trusted key can be neither deleted nor changed by the user.
    let trusted = find(
        &session,
        &[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(escrow.target().id.to_vec()),
        ],
    )[0];
    assert!(session.destroy_object(trusted).is_err());
    assert!(
        session
            .update_attributes(trusted, &[Attribute::Trusted(false)])
            .is_err()
    );

    // Fail closed: escrow to a key the token does not hold makes nothing.
    let before = secret_keys(&session);
    match root.create_escrowed(
        KeyKind::Master,
        "x",
        &KeyProtection::default(),
        other.target(),
    ) {
        Err(BackendError::Unavailable(message)) => {
            assert!(message.contains("keyward escrow install"), "{message}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|(k, _)| k)),
    }
    assert_eq!(secret_keys(&session), before);

    // A key made before escrow was on can never leave: add-existing reports it.
    let plain = root.create_key("plain", &KeyProtection::default()).unwrap();
    match root.escrow_existing(KeyKind::Master, &plain, escrow.target()) {
        Err(BackendError::Unsupported(message)) => {
            assert!(message.contains("non-extractable"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // MAC keys are escrowed the same way.
    let (mac, wrapped) = root
        .create_escrowed(
            KeyKind::Mac,
            "mac",
            &KeyProtection::default(),
            escrow.target(),
        )
        .unwrap();
    let blob = Escrowed {
        wrapped: wrapped.bytes,
        oaep_hash: wrapped.hash,
        ..blob
    };
    let mac_material = escrow_private.unwrap(&blob).unwrap();
    assert_eq!(
        root.mac(&mac, b"message").unwrap(),
        keyward::crypto::hmac_sha256(mac_material.expose(), b"message")
    );
}
