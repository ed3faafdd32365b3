//! Key exchange and re-exchange (RFC 4253 §§7–8): our KEXINIT and the server's, the
//! ECDH reply and its host key signature, NEWKEYS in each direction, OpenSSH's strict mode
//! (PROTOCOL §1.10), and re-keying by volume or by time.

use rand::RngCore;
use tracing::{debug, trace};
use zeroize::Zeroizing;

use super::{Transport, TransportError};
use crate::cipher::{self, DirectionKeys};
use crate::hostkey;
use crate::kex::{self, ExchangeHashInput, KexMethod};
use crate::msg;
use crate::negotiate::{self, Chosen, KexInit};
use crate::wire::{Reader, Writer};

/// The pseudo-algorithm that asks for EXT_INFO (RFC 8308 §2.1).
const EXT_INFO_C: &str = "ext-info-c";
/// The pseudo-algorithms of strict key exchange (OpenSSH PROTOCOL §1.10).
const STRICT_KEX_C: &str = "kex-strict-c-v00@openssh.com";
const STRICT_KEX_S: &str = "kex-strict-s-v00@openssh.com";

/// The state of the current key exchange.
pub(super) enum Kex {
    /// None in progress.
    Idle,
    /// We sent our KEXINIT (`ours`, its payload) and wait for the server's.
    Sent { ours: Vec<u8>, parsed: KexInit },
    /// Both KEXINITs are known and our ECDH_INIT is sent; waiting for the reply.
    AwaitReply {
        ours: Vec<u8>,
        theirs: Vec<u8>,
        chosen: Chosen,
        method: Box<dyn KexMethod>,
        /// The server announced a guessed kex packet that guessed wrong: skip it.
        skip_guess: bool,
    },
    /// We sent NEWKEYS; waiting for the server's.
    AwaitNewKeys {
        opener: Box<dyn cipher::Opener>,
        chosen: Chosen,
    },
}

impl Transport {
    pub(super) fn check_rekey_by_volume(&mut self) {
        let limit = self.config.rekey_after_bytes;
        let out_limit = limit.min(self.outgoing.volume_limit_bytes());
        let in_limit = limit.min(self.incoming.volume_limit_bytes());
        if self.outgoing.bytes_since_kex >= out_limit || self.incoming.bytes_since_kex >= in_limit {
            self.rekey_due = true;
            self.maybe_rekey();
        }
    }

    pub(super) fn maybe_rekey(&mut self) {
        if self.rekey_due && self.established && matches!(self.kex, Kex::Idle) {
            self.rekey_due = false;
            self.send_kexinit();
        }
    }

    fn our_kexinit(&self) -> KexInit {
        let mut cookie = [0u8; 16];
        rand::rng().fill_bytes(&mut cookie);
        let mut kex = self.config.kex.clone();
        if self.session_id.is_none() {
            // Only in the first KEXINIT (RFC 8308 §2.1; PROTOCOL §1.10).
            kex.push(EXT_INFO_C.to_string());
            kex.push(STRICT_KEX_C.to_string());
        }
        KexInit {
            cookie,
            kex,
            host_key: self.config.host_key_algorithms.clone(),
            cipher_c2s: self.config.ciphers.clone(),
            cipher_s2c: self.config.ciphers.clone(),
            mac_c2s: self.config.macs.clone(),
            mac_s2c: self.config.macs.clone(),
            compression_c2s: vec!["none".into()],
            compression_s2c: vec!["none".into()],
            languages_c2s: Vec::new(),
            languages_s2c: Vec::new(),
            first_kex_follows: false,
        }
    }

    pub(super) fn send_kexinit(&mut self) {
        let parsed = self.our_kexinit();
        let ours = parsed.encode();
        trace!(rekey = self.session_id.is_some(), "sending KEXINIT");
        self.outgoing.packet(|b| b.extend_from_slice(&ours));
        self.kex = Kex::Sent { ours, parsed };
    }

    pub(super) fn kex_message(
        &mut self,
        number: u8,
        seq: u32,
        payload: &[u8],
    ) -> Result<(), TransportError> {
        match (number, std::mem::replace(&mut self.kex, Kex::Idle)) {
            (msg::KEXINIT, Kex::Idle) => {
                if !self.established {
                    return Err(TransportError::Protocol("a second KEXINIT".into()));
                }
                // The server starts a re-exchange: answer with ours first.
                self.send_kexinit();
                let Kex::Sent { ours, parsed } = std::mem::replace(&mut self.kex, Kex::Idle) else {
                    unreachable!("send_kexinit sets Sent");
                };
                self.their_kexinit(ours, &parsed, seq, payload)
            }
            (msg::KEXINIT, Kex::Sent { ours, parsed }) => {
                self.their_kexinit(ours, &parsed, seq, payload)
            }
            (
                msg::KEX_ECDH_REPLY,
                Kex::AwaitReply {
                    ours,
                    theirs,
                    chosen,
                    method,
                    skip_guess: false,
                },
            ) => self.ecdh_reply(ours, theirs, chosen, method, payload),
            (
                _,
                Kex::AwaitReply {
                    ours,
                    theirs,
                    chosen,
                    method,
                    skip_guess: true,
                },
            ) if number != msg::KEXINIT && number != msg::NEWKEYS => {
                // RFC 4253 §7: a wrongly guessed kex packet is ignored.
                self.kex = Kex::AwaitReply {
                    ours,
                    theirs,
                    chosen,
                    method,
                    skip_guess: false,
                };
                Ok(())
            }
            (msg::NEWKEYS, Kex::AwaitNewKeys { opener, chosen }) => {
                if payload.len() != 1 {
                    return Err(TransportError::Protocol("NEWKEYS with a body".into()));
                }
                self.incoming.set_opener(opener, self.strict);
                trace!("received NEWKEYS: the server's direction uses the new keys");
                self.chosen = Some(chosen);
                self.established = true;
                self.kex_count += 1;
                self.kex = Kex::Idle;
                Ok(())
            }
            (n, _) => Err(TransportError::Protocol(format!(
                "unexpected key exchange message {n}"
            ))),
        }
    }

    fn their_kexinit(
        &mut self,
        ours: Vec<u8>,
        parsed: &KexInit,
        seq: u32,
        payload: &[u8],
    ) -> Result<(), TransportError> {
        let theirs = KexInit::decode(payload)?;
        if self.session_id.is_none() {
            self.strict = theirs.kex.iter().any(|k| k == STRICT_KEX_S);
            if self.strict && seq != 0 {
                return Err(TransportError::Protocol(
                    "strict key exchange: KEXINIT was not the server's first packet".into(),
                ));
            }
        }
        let chosen = negotiate::choose(parsed, &theirs, cipher::is_aead)?;
        debug!(
            kex = %chosen.kex,
            host_key = %chosen.host_key,
            cipher_c2s = %chosen.cipher_c2s,
            cipher_s2c = %chosen.cipher_s2c,
            mac_c2s = chosen.mac_c2s.as_deref().unwrap_or("implicit"),
            mac_s2c = chosen.mac_s2c.as_deref().unwrap_or("implicit"),
            strict = self.strict,
            "algorithms negotiated"
        );
        let skip_guess = theirs.first_kex_follows && negotiate::guess_is_wrong(parsed, &theirs);
        let method = kex::start(&chosen.kex).ok_or_else(|| {
            TransportError::Protocol(format!("negotiated unknown kex {}", chosen.kex))
        })?;
        let mut w = Writer::message(msg::KEX_ECDH_INIT);
        w.string(method.client_public());
        self.outgoing.packet(|b| b.extend_from_slice(w.as_slice()));
        self.kex = Kex::AwaitReply {
            ours,
            theirs: payload.to_vec(),
            chosen,
            method,
            skip_guess,
        };
        Ok(())
    }

    fn ecdh_reply(
        &mut self,
        ours: Vec<u8>,
        theirs: Vec<u8>,
        chosen: Chosen,
        method: Box<dyn KexMethod>,
        payload: &[u8],
    ) -> Result<(), TransportError> {
        let bad = TransportError::malformed("KEX_ECDH_REPLY");
        let mut r = Reader::new(payload);
        r.u8().map_err(bad)?;
        let bad = TransportError::malformed("KEX_ECDH_REPLY");
        let (host_key_blob, server_public, signature) = (|| {
            let k = r.string()?;
            let q = r.string()?;
            let s = r.string()?;
            r.finish()?;
            Ok((k, q, s))
        })()
        .map_err(bad)?;
        if let Some(first) = &self.host_key_blob
            && first.as_slice() != host_key_blob
        {
            return Err(TransportError::HostKeyRejected(
                "the server presented a different host key in a key re-exchange".into(),
            ));
        }
        let key = hostkey::decode(host_key_blob)?;
        trace!(host_key = %key.fingerprint(), "key exchange reply");
        let hash = method.hash();
        let client_public = method.client_public().to_vec();
        let shared: Zeroizing<Vec<u8>> = method.agree(server_public)?;
        let client_version = self.config.client_version.as_bytes();
        let server_version = self
            .server_version
            .as_deref()
            .unwrap_or_default()
            .as_bytes();
        let h = kex::exchange_hash(
            hash,
            &ExchangeHashInput {
                client_version,
                server_version,
                client_kexinit: &ours,
                server_kexinit: &theirs,
                host_key: host_key_blob,
                client_public: &client_public,
                server_public,
                shared_secret: &shared,
            },
        );
        hostkey::verify(&key, &chosen.host_key, &h, signature)?;
        if self.session_id.is_none() {
            if let Some(mut check) = self.check.take() {
                check(&key).map_err(TransportError::HostKeyRejected)?;
            }
            self.session_id = Some(h.clone());
            self.host_key_blob = Some(host_key_blob.to_vec());
            self.host_key = Some(key);
        }
        let session_id = self.session_id.clone().unwrap_or_default();
        let keys = |iv: u8, key: u8, mac: u8, cipher: &str, mac_name: Option<&str>| {
            let sizes = cipher::key_sizes(cipher, mac_name)
                .ok_or_else(|| TransportError::Protocol(format!("no key sizes for {cipher}")))?;
            let derive = |letter, len| kex::derive_key(hash, &shared, &h, letter, &session_id, len);
            Ok::<_, TransportError>(DirectionKeys {
                iv: derive(iv, sizes.iv),
                key: derive(key, sizes.key),
                mac_key: derive(mac, sizes.mac_key),
            })
        };
        let c2s = keys(
            b'A',
            b'C',
            b'E',
            &chosen.cipher_c2s,
            chosen.mac_c2s.as_deref(),
        )?;
        let s2c = keys(
            b'B',
            b'D',
            b'F',
            &chosen.cipher_s2c,
            chosen.mac_s2c.as_deref(),
        )?;
        let sealer = cipher::sealer(&chosen.cipher_c2s, chosen.mac_c2s.as_deref(), &c2s)
            .ok_or_else(|| TransportError::Protocol("no sealer for the cipher".into()))?;
        let opener = cipher::opener(&chosen.cipher_s2c, chosen.mac_s2c.as_deref(), &s2c)
            .ok_or_else(|| TransportError::Protocol("no opener for the cipher".into()))?;
        self.outgoing.packet(|b| b.push(msg::NEWKEYS));
        self.outgoing.set_sealer(sealer, self.strict);
        trace!("sent NEWKEYS: our direction uses the new keys");
        self.kex = Kex::AwaitNewKeys { opener, chosen };
        // Our direction is re-keyed: what was held back may go now.
        while let Some(payload) = self.queued.pop_front() {
            self.outgoing.packet(|b| b.extend_from_slice(&payload));
        }
        self.queued_bytes = 0;
        Ok(())
    }
}

/// Key exchange messages allowed during the initial strict exchange.
pub(super) fn is_kex_message(number: u8) -> bool {
    matches!(number, msg::KEXINIT..=49 | msg::DISCONNECT)
}
