//! Cryptographic operations over gRPC against a real server on SoftHSM: round trips, tamper
//! resistance, encryption context binding and many clients at once.

mod common;

use common::*;
use keyward::api::pb;
use tonic::Code;

#[tokio::test]
async fn data_keys_round_trip_in_every_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "k").await;
    let ctx = [("tenant", "acme"), ("purpose", "backup")];

    for (spec, bytes, len) in [
        ("AES_256", None, 32),
        ("AES_128", None, 16),
        ("", Some(1), 1),
        ("", Some(1024), 1024),
    ] {
        let generated = kms
            .generate_data_key(pb::GenerateDataKeyRequest {
                key_id: key.key_id.clone(),
                encryption_context: context(&ctx),
                number_of_bytes: bytes,
                key_spec: spec.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(generated.plaintext.len(), len);
        assert_eq!(generated.key_id, key.arn);
        // Context given in another order decrypts the same.
        let reversed = [("purpose", "backup"), ("tenant", "acme")];
        assert_eq!(
            decrypt(&mut kms, &generated.ciphertext_blob, &reversed)
                .await
                .unwrap(),
            generated.plaintext
        );
    }

    let without = kms
        .generate_data_key_without_plaintext(pb::GenerateDataKeyWithoutPlaintextRequest {
            key_id: key.key_id.clone(),
            key_spec: "AES_256".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(without.key_id, key.arn);
    let plaintext = decrypt(&mut kms, &without.ciphertext_blob, &[])
        .await
        .unwrap();
    assert_eq!(plaintext.len(), 32);

    // Two data keys are never the same.
    let a = decrypt(&mut kms, &without.ciphertext_blob, &[])
        .await
        .unwrap();
    let other = kms
        .generate_data_key(pb::GenerateDataKeyRequest {
            key_id: key.key_id.clone(),
            key_spec: "AES_256".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(a, other.plaintext);
}

#[tokio::test]
async fn encrypt_decrypt_re_encrypt_and_random() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let source = create_key(&mut kms, "source").await;
    let destination = create_key(&mut kms, "destination").await;
    kms.create_alias(pb::CreateAliasRequest {
        alias_name: "alias/dest".into(),
        target_key_id: destination.key_id.clone(),
    })
    .await
    .unwrap();

    let plaintext: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let encrypted = kms
        .encrypt(pb::EncryptRequest {
            key_id: source.key_id.clone(),
            plaintext: plaintext.clone(),
            encryption_context: context(&[("a", "1")]),
            encryption_algorithm: "SYMMETRIC_DEFAULT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(encrypted.key_id, source.arn);
    assert_eq!(encrypted.encryption_algorithm, "SYMMETRIC_DEFAULT");
    let decrypted = kms
        .decrypt(pb::DecryptRequest {
            ciphertext_blob: encrypted.ciphertext_blob.clone(),
            encryption_context: context(&[("a", "1")]),
            key_id: source.key_id.clone(),
            encryption_algorithm: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decrypted.plaintext, plaintext);
    assert_eq!(decrypted.key_id, source.arn);

    // Naming another key than the one that encrypted the blob is refused.
    let err = kms
        .decrypt(pb::DecryptRequest {
            ciphertext_blob: encrypted.ciphertext_blob.clone(),
            encryption_context: context(&[("a", "1")]),
            key_id: destination.key_id.clone(),
            encryption_algorithm: String::new(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "IncorrectKeyException");

    let re = kms
        .re_encrypt(pb::ReEncryptRequest {
            ciphertext_blob: encrypted.ciphertext_blob.clone(),
            source_encryption_context: context(&[("a", "1")]),
            source_key_id: String::new(),
            destination_key_id: "alias/dest".into(),
            destination_encryption_context: context(&[("b", "2")]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(re.source_key_id, source.arn);
    assert_eq!(re.key_id, destination.arn);
    assert_eq!(&re.ciphertext_blob[1..17], uuid_bytes(&destination.key_id));
    assert_eq!(
        decrypt(&mut kms, &re.ciphertext_blob, &[("b", "2")])
            .await
            .unwrap(),
        plaintext
    );
    let err = decrypt(&mut kms, &re.ciphertext_blob, &[("a", "1")])
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidCiphertextException");

    let err = kms
        .re_encrypt(pb::ReEncryptRequest {
            ciphertext_blob: encrypted.ciphertext_blob.clone(),
            source_encryption_context: context(&[("a", "wrong")]),
            destination_key_id: destination.key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidCiphertextException");

    let mut seen = std::collections::HashSet::new();
    for n in [1, 32, 1024] {
        let random = kms
            .generate_random(pb::GenerateRandomRequest { number_of_bytes: n })
            .await
            .unwrap()
            .into_inner()
            .plaintext;
        assert_eq!(random.len(), n as usize);
        assert!(seen.insert(random));
    }
}

fn uuid_bytes(id: &str) -> Vec<u8> {
    uuid::Uuid::parse_str(id).unwrap().as_bytes().to_vec()
}

#[tokio::test]
async fn every_flipped_bit_truncation_and_wrong_context_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "k").await;
    // A second key, so that a flipped key id may land on a key that exists.
    let other = create_key(&mut kms, "other").await;
    let ctx = [("tenant", "acme")];
    let blob = encrypt(
        &mut kms,
        &key.key_id,
        b"0123456789abcdef0123456789abcdef",
        &ctx,
    )
    .await;
    assert_eq!(
        decrypt(&mut kms, &blob, &ctx).await.unwrap(),
        b"0123456789abcdef0123456789abcdef"
    );

    for position in 0..blob.len() {
        for bit in [0x01u8, 0x80] {
            let mut tampered = blob.clone();
            tampered[position] ^= bit;
            let err = decrypt(&mut kms, &tampered, &ctx).await.unwrap_err();
            assert_error(&err, Code::InvalidArgument, "InvalidCiphertextException");
        }
    }

    // The blob re-addressed to the other existing key.
    let mut readdressed = blob.clone();
    readdressed[1..17].copy_from_slice(&uuid_bytes(&other.key_id));
    let err = decrypt(&mut kms, &readdressed, &ctx).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidCiphertextException");

    for len in 1..blob.len() {
        let err = decrypt(&mut kms, &blob[..len], &ctx).await.unwrap_err();
        assert_error(&err, Code::InvalidArgument, "InvalidCiphertextException");
    }
    let mut extended = blob.clone();
    extended.push(0);
    let err = decrypt(&mut kms, &extended, &ctx).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidCiphertextException");

    for wrong in [
        vec![],
        vec![("tenant", "acme2")],
        vec![("Tenant", "acme")],
        vec![("tenant", "acme"), ("extra", "")],
    ] {
        let err = decrypt(&mut kms, &blob, &wrong).await.unwrap_err();
        assert_error(&err, Code::InvalidArgument, "InvalidCiphertextException");
        // One message for every cause: nothing to learn from the failure.
        assert_eq!(
            err.message(),
            "the ciphertext is invalid or does not match the encryption context"
        );
    }

    let err = decrypt(&mut kms, &[], &ctx).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "ValidationException");
    assert!(err.message().starts_with("ciphertext_blob"));

    // The server is still fine.
    assert_eq!(server.health().await, SERVING);
    assert_eq!(
        decrypt(&mut kms, &blob, &ctx).await.unwrap(),
        b"0123456789abcdef0123456789abcdef"
    );
}

#[tokio::test]
async fn sixty_four_clients_in_flight_get_correct_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "busy").await;

    let mut tasks = Vec::new();
    for client in 0..64 {
        let endpoint = server.endpoint.clone();
        let key_id = key.key_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut kms = keyward::api::pb::key_management_service_client::KeyManagementServiceClient::connect(endpoint)
                .await
                .unwrap();
            let tag = client.to_string();
            for round in 0..10 {
                let generated = kms
                    .generate_data_key(pb::GenerateDataKeyRequest {
                        key_id: key_id.clone(),
                        key_spec: "AES_256".into(),
                        encryption_context: context(&[("client", &tag)]),
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("client {client} round {round}: {e:?}"))
                    .into_inner();
                let plaintext = decrypt(&mut kms, &generated.ciphertext_blob, &[("client", &tag)])
                    .await
                    .unwrap_or_else(|e| panic!("client {client} round {round}: {e:?}"));
                assert_eq!(plaintext, generated.plaintext);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(server.health().await, SERVING);
}
