//! What sealing one RTP packet costs with the AES-GCM the hub's sessions use
//! (`diemcau_sfu::crypto_provider`: aws-lc-rs sealing from the payload into the datagram),
//! with str0m's aws-lc-rs provider as published (a copy of the payload, then a seal in place;
//! both through str0m's cipher interface) and with ring's, whose
//! BoringSSL-derived code seals with VAES and VPCLMULQDQ on 256-bit registers (AMD Zen 3 and
//! later, Intel Ice Lake and later) where aws-lc 0.47 has that code only in its AVX-512 form.
//! AEAD-AES-256-GCM (the profile the hub and browsers negotiate first), 20 bytes of additional
//! data (an RTP header with one extension word), payloads of a sound packet (160 bytes) and
//! of video packets (1,000 and 1,200 bytes), sealed from the payload into an output buffer as
//! str0m's SRTP calls it.
//!
//! `cargo bench -p diemcau-sfu --bench srtp`. Under valgrind the processor's VAES is not seen,
//! so this is read in time, not in instructions (BENCHMARKS.md, "AES-GCM through ring").

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const KEY: [u8; 32] = [7; 32];
const AAD: [u8; 20] = [0x90; 20];

fn seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_seal_aes_256_gcm");
    group.throughput(Throughput::Elements(1));
    for len in [160usize, 1000, 1200] {
        let payload = vec![0x5Au8; len];
        let mut out = vec![0u8; len + 16];

        let mut counter = 0u32;
        // Both through str0m's cipher interface: the provider as published, and the hub's.
        let providers = [
            (
                "aws-lc-rs, copied",
                diemcau_sfu::str0m::crypto::from_feature_flags().srtp_provider,
            ),
            (
                "aws-lc-rs, hub",
                diemcau_sfu::crypto_provider().srtp_provider,
            ),
        ];
        for (name, srtp) in providers {
            let mut cipher = srtp.aead_aes_256_gcm().create_cipher(KEY, true);
            group.bench_with_input(BenchmarkId::new(name, len), &len, |b, _| {
                b.iter(|| {
                    counter = counter.wrapping_add(1);
                    cipher
                        .encrypt(&iv(counter), &AAD, &payload, &mut out)
                        .expect("a packet sealed");
                })
            });
        }

        let ring_key =
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).expect("an AES-256 key"));
        group.bench_with_input(BenchmarkId::new("ring", len), &len, |b, _| {
            b.iter(|| {
                counter = counter.wrapping_add(1);
                let (sealed, tag_out) = out.split_at_mut(len);
                sealed.copy_from_slice(&payload);
                let tag = ring_key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(iv(counter)),
                        Aad::from(&AAD),
                        sealed,
                    )
                    .expect("a packet sealed");
                tag_out.copy_from_slice(tag.as_ref());
            })
        });
    }
    group.finish();
}

fn iv(counter: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[..4].copy_from_slice(&counter.to_be_bytes());
    iv
}

criterion_group!(benches, seal);
criterion_main!(benches);
