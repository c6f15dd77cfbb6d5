//! The crypto provider of the worker's sessions: str0m's aws-lc-rs provider, with AES-GCM
//! sealing each RTP packet from its payload straight into the datagram.
//!
//! str0m writes a packet's header into the datagram and hands the cipher the header as
//! additional data, the payload (the producer's shared bytes) as input and the rest of the
//! datagram as output. The aws-lc-rs provider copies the payload into the output and seals it
//! there; an SFU seals each packet once per consumer, so that copy (a kilobyte per video
//! packet and site) is paid hundreds of times per packet received. aws-lc's scatter seal
//! encrypts an extra input into a separate output in the same pass as the in-place part: with
//! no in-place part, that is a seal from the payload into the datagram, the same bytes. Every
//! other cipher (the key derivation, AES-CM, the opening of received packets) is the aws-lc-rs
//! provider's own.

use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, Algorithm, LessSafeKey, Nonce, UnboundKey};
use str0m::crypto::{
    AeadAes128GcmCipher, AeadAes256GcmCipher, CryptoError, CryptoProvider, SrtpProvider,
    SupportedAeadAes128Gcm, SupportedAeadAes256Gcm, SupportedAes128CmSha1_80,
};

/// The provider every session of a worker is built with (one for the process); a cascade's
/// bridge and the load generator's floor seal with it too.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let base = str0m::crypto::from_feature_flags();
            let srtp: &'static OutOfPlaceSrtp = Box::leak(Box::new(OutOfPlaceSrtp {
                base: base.srtp_provider,
            }));
            Arc::new(CryptoProvider {
                srtp_provider: srtp,
                ..base
            })
        })
        .clone()
}

/// The base provider's SRTP ciphers, with [`OutOfPlaceGcm`] for both AES-GCM profiles.
#[derive(Debug)]
struct OutOfPlaceSrtp {
    base: &'static dyn SrtpProvider,
}

impl SrtpProvider for OutOfPlaceSrtp {
    fn aes_128_cm_sha1_80(&self) -> &'static dyn SupportedAes128CmSha1_80 {
        self.base.aes_128_cm_sha1_80()
    }

    fn aead_aes_128_gcm(&self) -> &'static dyn SupportedAeadAes128Gcm {
        &GcmFactory
    }

    fn aead_aes_256_gcm(&self) -> &'static dyn SupportedAeadAes256Gcm {
        &GcmFactory
    }

    fn srtp_aes_128_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        self.base.srtp_aes_128_ecb_round(key, input, output)
    }

    fn srtp_aes_256_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        self.base.srtp_aes_256_ecb_round(key, input, output)
    }
}

/// Makes [`OutOfPlaceGcm`] ciphers of both key sizes.
#[derive(Debug)]
struct GcmFactory;

impl SupportedAeadAes128Gcm for GcmFactory {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn AeadAes128GcmCipher> {
        Box::new(OutOfPlaceGcm::new(&AES_128_GCM, &key))
    }
}

impl SupportedAeadAes256Gcm for GcmFactory {
    fn create_cipher(&self, key: [u8; 32], _encrypt: bool) -> Box<dyn AeadAes256GcmCipher> {
        Box::new(OutOfPlaceGcm::new(&AES_256_GCM, &key))
    }
}

/// An AES-GCM key that seals from its input into its output, and opens the same way.
struct OutOfPlaceGcm {
    key: LessSafeKey,
}

impl fmt::Debug for OutOfPlaceGcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutOfPlaceGcm")
            .field("algorithm", self.key.algorithm())
            .finish_non_exhaustive()
    }
}

/// GCM's tag, after the sealed bytes.
const TAG_LEN: usize = 16;

impl OutOfPlaceGcm {
    fn new(algorithm: &'static Algorithm, key: &[u8]) -> OutOfPlaceGcm {
        // The key's length is the algorithm's by the factories' types.
        let key = UnboundKey::new(algorithm, key).expect("an AES key of the algorithm's length");
        OutOfPlaceGcm {
            key: LessSafeKey::new(key),
        }
    }

    /// Seals `input` into `output`, the tag after it: `output` holds at least the input and
    /// the tag (str0m's SRTP sizes it so).
    fn seal(
        &self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        let sealed = output.get_mut(..input.len() + TAG_LEN).ok_or_else(|| {
            CryptoError::Other("AES-GCM output shorter than input and tag".into())
        })?;
        self.key
            .seal_in_place_scatter(
                Nonce::assume_unique_for_key(*iv),
                Aad::from(aad),
                &mut [],
                input,
                sealed,
            )
            .map_err(|_| CryptoError::Other("AES-GCM seal failed".into()))
    }

    /// Opens `input` (sealed bytes and tag) into `output` with the additional data `aads`
    /// joined; answers the opened length.
    fn open(
        &self,
        iv: &[u8; 12],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let Some(len) = input.len().checked_sub(TAG_LEN) else {
            return Err(CryptoError::Other(
                "AES-GCM input shorter than its tag".into(),
            ));
        };
        let (sealed, tag) = input.split_at(len);
        let opened = output
            .get_mut(..len)
            .ok_or_else(|| CryptoError::Other("AES-GCM output shorter than input".into()))?;
        let joined;
        let aad = match aads {
            [one] => Aad::from(*one),
            _ => {
                joined = aads.concat();
                Aad::from(joined.as_slice())
            }
        };
        self.key
            .open_separate_gather(Nonce::assume_unique_for_key(*iv), aad, sealed, tag, opened)
            .map_err(|_| CryptoError::Other("AES-GCM open failed".into()))?;
        Ok(len)
    }
}

/// Both AES-GCM cipher traits, whose methods are the same: seal and open.
macro_rules! gcm_cipher {
    ($($cipher:ident),*) => {$(
        impl $cipher for OutOfPlaceGcm {
            fn encrypt(
                &mut self,
                iv: &[u8; 12],
                aad: &[u8],
                input: &[u8],
                output: &mut [u8],
            ) -> Result<(), CryptoError> {
                self.seal(iv, aad, input, output)
            }

            fn decrypt(
                &mut self,
                iv: &[u8; 12],
                aads: &[&[u8]],
                input: &[u8],
                output: &mut [u8],
            ) -> Result<usize, CryptoError> {
                self.open(iv, aads, input, output)
            }
        }
    )*};
}

gcm_cipher!(AeadAes128GcmCipher, AeadAes256GcmCipher);

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(n: u8) -> [u8; 12] {
        let mut iv = [0x11u8; 12];
        iv[11] = n;
        iv
    }

    /// Every length a packet may have around the cipher's 16-byte blocks, and header-sized
    /// additional data: the same datagram as the aws-lc-rs provider's seal, and each opens
    /// the other's.
    #[test]
    fn seals_and_opens_as_the_base_provider_does() {
        let base = str0m::crypto::from_feature_flags().srtp_provider;
        let ours = provider().srtp_provider;
        for len in [0usize, 1, 15, 16, 17, 160, 1000, 1199, 1200] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let aad = [0x90u8; 20];

            let mut theirs = vec![0u8; len + TAG_LEN];
            base.aead_aes_256_gcm()
                .create_cipher([5; 32], true)
                .encrypt(&iv(1), &aad, &payload, &mut theirs)
                .expect("the base seals");
            // A longer output than needed, as str0m's kept datagram buffers are.
            let mut mine = vec![0xEEu8; len + TAG_LEN + 9];
            ours.aead_aes_256_gcm()
                .create_cipher([5; 32], true)
                .encrypt(&iv(1), &aad, &payload, &mut mine)
                .expect("ours seals");
            assert_eq!(
                mine[..len + TAG_LEN],
                theirs[..],
                "256-bit seal of {len} bytes"
            );
            assert!(mine[len + TAG_LEN..].iter().all(|&b| b == 0xEE));

            let mut opened = vec![0u8; len];
            let n = ours
                .aead_aes_256_gcm()
                .create_cipher([5; 32], false)
                .decrypt(&iv(1), &[&aad[..12], &aad[12..]], &theirs, &mut opened)
                .expect("ours opens the base's seal");
            assert_eq!((n, &opened[..]), (len, &payload[..]));
            let n = base
                .aead_aes_256_gcm()
                .create_cipher([5; 32], false)
                .decrypt(&iv(1), &[&aad], &mine[..len + TAG_LEN], &mut opened)
                .expect("the base opens our seal");
            assert_eq!((n, &opened[..]), (len, &payload[..]));

            let mut theirs = vec![0u8; len + TAG_LEN];
            base.aead_aes_128_gcm()
                .create_cipher([6; 16], true)
                .encrypt(&iv(2), &aad, &payload, &mut theirs)
                .expect("the base seals");
            let mut mine = vec![0u8; len + TAG_LEN];
            ours.aead_aes_128_gcm()
                .create_cipher([6; 16], true)
                .encrypt(&iv(2), &aad, &payload, &mut mine)
                .expect("ours seals");
            assert_eq!(mine, theirs, "128-bit seal of {len} bytes");
        }
    }

    #[test]
    fn a_tampered_packet_or_short_buffer_is_an_error_not_a_panic() {
        let ours = provider().srtp_provider.aead_aes_256_gcm();
        let mut sealed = vec![0u8; 100 + TAG_LEN];
        ours.create_cipher([9; 32], true)
            .encrypt(&iv(3), &[1; 12], &[2; 100], &mut sealed)
            .expect("sealed");
        sealed[40] ^= 1;
        let mut opened = vec![0u8; 100];
        let mut opener = ours.create_cipher([9; 32], false);
        assert!(
            opener
                .decrypt(&iv(3), &[&[1; 12]], &sealed, &mut opened)
                .is_err()
        );
        assert!(
            opener
                .decrypt(&iv(3), &[&[1; 12]], &sealed[..10], &mut opened)
                .is_err()
        );
        assert!(
            opener
                .decrypt(&iv(3), &[&[1; 12]], &sealed, &mut opened[..50])
                .is_err()
        );
        let mut short = vec![0u8; 100];
        assert!(
            ours.create_cipher([9; 32], true)
                .encrypt(&iv(3), &[1; 12], &[2; 100], &mut short)
                .is_err()
        );
    }
}
