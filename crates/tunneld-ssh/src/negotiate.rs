//! SSH_MSG_KEXINIT and the algorithm choice rules of RFC 4253 §7.1.
//!
//! [`KexInit::decode`] is bounded: each name-list is at most [`MAX_NAME_LIST_BYTES`] long and
//! holds at most [`MAX_NAMES_PER_LIST`] names, so a hostile server cannot make us hold more
//! than ten such lists. [`choose`] picks, per category, the first of our names that the
//! server also lists, and explains a failure with both lists.

// Nothing outside the tests calls in until the transport state machine does.

use crate::error::WireError;
use crate::msg;
use crate::wire::{Reader, Writer};

/// Most names we accept in one name-list. OpenSSH 9.2's longest default list (MACs) has 10,
/// its key exchange list 12; 64 leaves room for any real server.
pub(crate) const MAX_NAMES_PER_LIST: usize = 64;

/// Longest name-list we accept, in bytes. OpenSSH 9.2's longest default list (host key
/// algorithms with certificates) is about 470 bytes.
pub(crate) const MAX_NAME_LIST_BYTES: usize = 4096;

/// Names that signal an extension and are never an algorithm to choose (RFC 8308 §2.1,
/// OpenSSH PROTOCOL "strict key exchange").
pub(crate) const PSEUDO_ALGORITHMS: &[&str] = &[
    "ext-info-c",
    "ext-info-s",
    "kex-strict-c-v00@openssh.com",
    "kex-strict-s-v00@openssh.com",
];

/// SSH_MSG_KEXINIT (20).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KexInit {
    /// 16 random bytes.
    pub cookie: [u8; 16],
    /// Key exchange methods.
    pub kex: Vec<String>,
    /// Host key (signature) algorithms.
    pub host_key: Vec<String>,
    /// Ciphers, client to server.
    pub cipher_c2s: Vec<String>,
    /// Ciphers, server to client.
    pub cipher_s2c: Vec<String>,
    /// MACs, client to server.
    pub mac_c2s: Vec<String>,
    /// MACs, server to client.
    pub mac_s2c: Vec<String>,
    /// Compression, client to server.
    pub compression_c2s: Vec<String>,
    /// Compression, server to client.
    pub compression_s2c: Vec<String>,
    /// Languages, client to server (RFC 4253 §7.1: usually empty).
    pub languages_c2s: Vec<String>,
    /// Languages, server to client.
    pub languages_s2c: Vec<String>,
    /// Whether a guessed key exchange packet follows.
    pub first_kex_follows: bool,
}

/// The name of each list of a KEXINIT, in wire order, for error messages.
const LIST_NAMES: [&str; 10] = [
    "key exchange",
    "host key",
    "cipher (client to server)",
    "cipher (server to client)",
    "MAC (client to server)",
    "MAC (server to client)",
    "compression (client to server)",
    "compression (server to client)",
    "language (client to server)",
    "language (server to client)",
];

impl KexInit {
    /// From a payload starting with the message number. Bounded: refuse more than
    /// MAX_NAMES_PER_LIST names or a list longer than MAX_NAME_LIST_BYTES, reserved u32 must
    /// be read, and nothing may follow it.
    pub(crate) fn decode(payload: &[u8]) -> Result<KexInit, NegotiationError> {
        let mut r = Reader::new(payload);
        let number = r.u8()?;
        if number != msg::KEXINIT {
            return Err(NegotiationError::NotKexInit(number));
        }
        let cookie = r.array::<16>()?;
        let mut lists: [Vec<String>; 10] = Default::default();
        for (list, name) in lists.iter_mut().zip(LIST_NAMES) {
            *list = bounded_name_list(&mut r, name)?;
        }
        let first_kex_follows = r.bool()?;
        // Reserved for future extension (RFC 4253 §7.1): read, value ignored.
        let _reserved = r.u32()?;
        r.finish()?;
        let [
            kex,
            host_key,
            cipher_c2s,
            cipher_s2c,
            mac_c2s,
            mac_s2c,
            compression_c2s,
            compression_s2c,
            languages_c2s,
            languages_s2c,
        ] = lists;
        Ok(KexInit {
            cookie,
            kex,
            host_key,
            cipher_c2s,
            cipher_s2c,
            mac_c2s,
            mac_s2c,
            compression_c2s,
            compression_s2c,
            languages_c2s,
            languages_s2c,
            first_kex_follows,
        })
    }

    /// The payload, with the message number, reserved 0.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::message(msg::KEXINIT);
        w.raw(&self.cookie)
            .name_list(&self.kex)
            .name_list(&self.host_key)
            .name_list(&self.cipher_c2s)
            .name_list(&self.cipher_s2c)
            .name_list(&self.mac_c2s)
            .name_list(&self.mac_s2c)
            .name_list(&self.compression_c2s)
            .name_list(&self.compression_s2c)
            .name_list(&self.languages_c2s)
            .name_list(&self.languages_s2c)
            .bool(self.first_kex_follows)
            .u32(0);
        w.into_vec()
    }
}

/// One name-list, its byte length and name count checked before the names are kept.
fn bounded_name_list(
    r: &mut Reader<'_>,
    list: &'static str,
) -> Result<Vec<String>, NegotiationError> {
    // Look at the length first: an over-long list is refused before it is split.
    let raw = r.clone().string()?;
    if raw.len() > MAX_NAME_LIST_BYTES {
        return Err(NegotiationError::ListTooLong {
            list,
            len_bytes: raw.len(),
        });
    }
    let names = r.name_list()?;
    if names.len() > MAX_NAMES_PER_LIST {
        return Err(NegotiationError::TooManyNames {
            list,
            count: names.len(),
        });
    }
    Ok(names.into_iter().map(str::to_owned).collect())
}

/// What was agreed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// The key exchange method.
    pub kex: String,
    /// The host key (signature) algorithm.
    pub host_key: String,
    /// The cipher, client to server.
    pub cipher_c2s: String,
    /// The cipher, server to client.
    pub cipher_s2c: String,
    /// The MAC, client to server; `None` for an AEAD cipher.
    pub mac_c2s: Option<String>,
    /// The MAC, server to client; `None` for an AEAD cipher.
    pub mac_s2c: Option<String>,
}

/// RFC 4253 §7.1: per category, the first of the client's names the server also lists.
/// Compression must be "none". Pseudo-algorithms (ext-info-c, ext-info-s,
/// kex-strict-c-v00@openssh.com, kex-strict-s-v00@openssh.com) are never chosen. For an AEAD
/// cipher the MAC is None (not negotiated). `is_aead` decides which ciphers are AEAD.
/// The error names the category, what we offered and what the server offered.
pub(crate) fn choose(
    ours: &KexInit,
    theirs: &KexInit,
    is_aead: impl Fn(&str) -> bool,
) -> Result<Chosen, NegotiationError> {
    let kex = pick("key exchange method", &ours.kex, &theirs.kex)?;
    let host_key = pick("host key algorithm", &ours.host_key, &theirs.host_key)?;
    let cipher_c2s = pick(
        "cipher (client to server)",
        &ours.cipher_c2s,
        &theirs.cipher_c2s,
    )?;
    let cipher_s2c = pick(
        "cipher (server to client)",
        &ours.cipher_s2c,
        &theirs.cipher_s2c,
    )?;
    let mac_c2s = if is_aead(&cipher_c2s) {
        None
    } else {
        Some(pick(
            "MAC (client to server)",
            &ours.mac_c2s,
            &theirs.mac_c2s,
        )?)
    };
    let mac_s2c = if is_aead(&cipher_s2c) {
        None
    } else {
        Some(pick(
            "MAC (server to client)",
            &ours.mac_s2c,
            &theirs.mac_s2c,
        )?)
    };
    // We implement no compression: "none" is the only name of ours that can be chosen.
    let none = ["none".to_owned()];
    let ours_c2s = only_none(&ours.compression_c2s, &none);
    let ours_s2c = only_none(&ours.compression_s2c, &none);
    pick(
        "compression (client to server)",
        ours_c2s,
        &theirs.compression_c2s,
    )?;
    pick(
        "compression (server to client)",
        ours_s2c,
        &theirs.compression_s2c,
    )?;
    Ok(Chosen {
        kex,
        host_key,
        cipher_c2s,
        cipher_s2c,
        mac_c2s,
        mac_s2c,
    })
}

/// `none` if our list holds "none", else nothing.
fn only_none<'a>(ours: &[String], none: &'a [String; 1]) -> &'a [String] {
    if ours.iter().any(|n| n == "none") {
        none
    } else {
        &[]
    }
}

/// The first of `ours` that `theirs` lists too, pseudo-algorithms skipped.
fn pick(
    category: &'static str,
    ours: &[String],
    theirs: &[String],
) -> Result<String, NegotiationError> {
    ours.iter()
        .filter(|name| !PSEUDO_ALGORITHMS.contains(&name.as_str()))
        .find(|name| theirs.contains(name))
        .cloned()
        .ok_or_else(|| NegotiationError::NoCommon {
            category,
            ours: shown(ours),
            theirs: shown(theirs),
        })
}

/// A name-list for an error message; "nothing" when empty.
fn shown(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(",")
    }
}

/// Whether the server's guessed first kex packet (first_kex_follows) must be ignored
/// (RFC 4253 §7: the guess is wrong when the first kex or the first host key algorithm of the
/// two lists differ). False when the server sent no guess.
pub(crate) fn guess_is_wrong(ours: &KexInit, theirs: &KexInit) -> bool {
    theirs.first_kex_follows
        && (ours.kex.first() != theirs.kex.first()
            || ours.host_key.first() != theirs.host_key.first())
}

/// Why the algorithm negotiation failed.
#[derive(Debug, thiserror::Error)]
pub enum NegotiationError {
    /// The KEXINIT does not parse.
    #[error("malformed KEXINIT: {0}")]
    Malformed(#[from] WireError),
    /// The message is not a KEXINIT.
    #[error("expected KEXINIT (20), got message {0}")]
    NotKexInit(u8),
    /// A name-list longer than [`MAX_NAME_LIST_BYTES`].
    #[error("KEXINIT {list} list is {len_bytes} bytes, at most {MAX_NAME_LIST_BYTES} allowed")]
    ListTooLong {
        /// Which list.
        list: &'static str,
        /// Its length in bytes.
        len_bytes: usize,
    },
    /// A name-list with more than [`MAX_NAMES_PER_LIST`] names.
    #[error("KEXINIT {list} list has {count} names, at most {MAX_NAMES_PER_LIST} allowed")]
    TooManyNames {
        /// Which list.
        list: &'static str,
        /// How many names it has.
        count: usize,
    },
    /// No algorithm of a category that both sides list.
    #[error("no common {category}: we offer {ours}; the server offers {theirs}")]
    NoCommon {
        /// The category, e.g. "cipher (client to server)".
        category: &'static str,
        /// Our names, comma-separated ("nothing" for none).
        ours: String,
        /// The server's names, comma-separated ("nothing" for none).
        theirs: String,
    },
}

/// The first packet's payload of OpenSSH 9.2p1 (Debian 2+deb12u10) with one ed25519
/// host key: `sshd -i -e -f CONF` over a socket pair, CONF setting only HostKey,
/// `UsePAM no`, `PidFile none` and `StrictModes no`; we sent our version line and read
/// the binary packet after the server's (payload = packet less padding).
#[cfg(test)]
pub(crate) const OPENSSH_9_2_KEXINIT_HEX: &str = concat!(
    "141cb7d2c20480a48a26d49e5246fc58200000013d736e747275703736317832353531392d7368613531322c736e7472",
    "75703736317832353531392d736861353132406f70656e7373682e636f6d2c637572766532353531392d736861323536",
    "2c637572766532353531392d736861323536406c69627373682e6f72672c656364682d736861322d6e69737470323536",
    "2c656364682d736861322d6e697374703338342c656364682d736861322d6e697374703532312c6469666669652d6865",
    "6c6c6d616e2d67726f75702d65786368616e67652d7368613235362c6469666669652d68656c6c6d616e2d67726f7570",
    "31362d7368613531322c6469666669652d68656c6c6d616e2d67726f757031382d7368613531322c6469666669652d68",
    "656c6c6d616e2d67726f757031342d7368613235362c6b65782d7374726963742d732d763030406f70656e7373682e63",
    "6f6d0000000b7373682d656432353531390000006c63686163686132302d706f6c7931333035406f70656e7373682e63",
    "6f6d2c6165733132382d6374722c6165733139322d6374722c6165733235362d6374722c6165733132382d67636d406f",
    "70656e7373682e636f6d2c6165733235362d67636d406f70656e7373682e636f6d0000006c63686163686132302d706f",
    "6c7931333035406f70656e7373682e636f6d2c6165733132382d6374722c6165733139322d6374722c6165733235362d",
    "6374722c6165733132382d67636d406f70656e7373682e636f6d2c6165733235362d67636d406f70656e7373682e636f",
    "6d000000d5756d61632d36342d65746d406f70656e7373682e636f6d2c756d61632d3132382d65746d406f70656e7373",
    "682e636f6d2c686d61632d736861322d3235362d65746d406f70656e7373682e636f6d2c686d61632d736861322d3531",
    "322d65746d406f70656e7373682e636f6d2c686d61632d736861312d65746d406f70656e7373682e636f6d2c756d6163",
    "2d3634406f70656e7373682e636f6d2c756d61632d313238406f70656e7373682e636f6d2c686d61632d736861322d32",
    "35362c686d61632d736861322d3531322c686d61632d73686131000000d5756d61632d36342d65746d406f70656e7373",
    "682e636f6d2c756d61632d3132382d65746d406f70656e7373682e636f6d2c686d61632d736861322d3235362d65746d",
    "406f70656e7373682e636f6d2c686d61632d736861322d3531322d65746d406f70656e7373682e636f6d2c686d61632d",
    "736861312d65746d406f70656e7373682e636f6d2c756d61632d3634406f70656e7373682e636f6d2c756d61632d3132",
    "38406f70656e7373682e636f6d2c686d61632d736861322d3235362c686d61632d736861322d3531322c686d61632d73",
    "686131000000156e6f6e652c7a6c6962406f70656e7373682e636f6d000000156e6f6e652c7a6c6962406f70656e7373",
    "682e636f6d00000000000000000000000000",
);

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> Vec<String> {
        if list.is_empty() {
            Vec::new()
        } else {
            list.split(',').map(str::to_owned).collect()
        }
    }

    fn openssh_kexinit() -> Vec<u8> {
        hex::decode(OPENSSH_9_2_KEXINIT_HEX).unwrap()
    }

    const OPENSSH_CIPHERS: &str = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,\
        aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com";
    const OPENSSH_MACS: &str = "umac-64-etm@openssh.com,umac-128-etm@openssh.com,\
        hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,\
        umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1";

    #[test]
    fn an_openssh_9_2_kexinit_decodes_to_its_exact_lists() {
        let bytes = openssh_kexinit();
        assert_eq!(bytes.len(), 1074);
        let k = KexInit::decode(&bytes).unwrap();
        assert_eq!(hex::encode(k.cookie), "1cb7d2c20480a48a26d49e5246fc5820");
        assert_eq!(
            k.kex,
            names(
                "sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,\
                 curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,\
                 ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,\
                 diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,\
                 diffie-hellman-group14-sha256,kex-strict-s-v00@openssh.com"
            )
        );
        assert_eq!(k.host_key, names("ssh-ed25519"));
        assert_eq!(k.cipher_c2s, names(OPENSSH_CIPHERS));
        assert_eq!(k.cipher_s2c, names(OPENSSH_CIPHERS));
        assert_eq!(k.mac_c2s, names(OPENSSH_MACS));
        assert_eq!(k.mac_s2c, names(OPENSSH_MACS));
        assert_eq!(k.compression_c2s, names("none,zlib@openssh.com"));
        assert_eq!(k.compression_s2c, names("none,zlib@openssh.com"));
        assert!(k.languages_c2s.is_empty());
        assert!(k.languages_s2c.is_empty());
        assert!(!k.first_kex_follows);
        // OpenSSH writes reserved 0, as we do: the round trip is byte for byte.
        assert_eq!(k.encode(), bytes);
    }

    fn ours() -> KexInit {
        KexInit {
            cookie: [0xab; 16],
            kex: names(
                "mlkem768x25519-sha256,sntrup761x25519-sha512,\
                 sntrup761x25519-sha512@openssh.com,curve25519-sha256,\
                 curve25519-sha256@libssh.org,ext-info-c,kex-strict-c-v00@openssh.com",
            ),
            host_key: names("ssh-ed25519,rsa-sha2-512,rsa-sha2-256"),
            cipher_c2s: names("aes128-gcm@openssh.com,chacha20-poly1305@openssh.com"),
            cipher_s2c: names("aes128-gcm@openssh.com,chacha20-poly1305@openssh.com"),
            mac_c2s: names("hmac-sha2-256-etm@openssh.com,hmac-sha2-256"),
            mac_s2c: names("hmac-sha2-256-etm@openssh.com,hmac-sha2-256"),
            compression_c2s: names("none"),
            compression_s2c: names("none"),
            languages_c2s: Vec::new(),
            languages_s2c: Vec::new(),
            first_kex_follows: false,
        }
    }

    fn is_aead(name: &str) -> bool {
        matches!(
            name,
            "aes128-gcm@openssh.com" | "aes256-gcm@openssh.com" | "chacha20-poly1305@openssh.com"
        )
    }

    #[test]
    fn encode_then_decode_is_the_identity() {
        let mut k = ours();
        k.first_kex_follows = true;
        k.languages_s2c = names("en-US");
        let bytes = k.encode();
        assert_eq!(bytes[0], msg::KEXINIT);
        assert_eq!(&bytes[bytes.len() - 5..], &[1, 0, 0, 0, 0]);
        assert_eq!(KexInit::decode(&bytes).unwrap(), k);
    }

    #[test]
    fn our_choice_against_openssh_9_2() {
        let theirs = KexInit::decode(&openssh_kexinit()).unwrap();
        let chosen = choose(&ours(), &theirs, is_aead).unwrap();
        assert_eq!(
            chosen,
            Chosen {
                kex: "sntrup761x25519-sha512".into(),
                host_key: "ssh-ed25519".into(),
                cipher_c2s: "aes128-gcm@openssh.com".into(),
                cipher_s2c: "aes128-gcm@openssh.com".into(),
                mac_c2s: None,
                mac_s2c: None,
            }
        );
    }

    #[test]
    fn the_first_client_preference_wins_even_if_the_server_prefers_another() {
        let mut theirs = ours();
        theirs.kex = names("curve25519-sha256,mlkem768x25519-sha256");
        theirs.cipher_c2s = names("chacha20-poly1305@openssh.com,aes128-gcm@openssh.com");
        theirs.mac_s2c = names("hmac-sha2-256,hmac-sha2-256-etm@openssh.com");
        let mut mine = ours();
        mine.cipher_s2c = names("aes128-ctr");
        theirs.cipher_s2c = names("aes256-ctr,aes128-ctr");
        let chosen = choose(&mine, &theirs, is_aead).unwrap();
        assert_eq!(chosen.kex, "mlkem768x25519-sha256");
        assert_eq!(chosen.cipher_c2s, "aes128-gcm@openssh.com");
        assert_eq!(chosen.cipher_s2c, "aes128-ctr");
        // A non-AEAD cipher negotiates its MAC, again by our order; the AEAD one does not.
        assert_eq!(chosen.mac_c2s, None);
        assert_eq!(
            chosen.mac_s2c.as_deref(),
            Some("hmac-sha2-256-etm@openssh.com")
        );
    }

    #[test]
    fn an_aead_cipher_needs_no_common_mac() {
        let mut theirs = ours();
        theirs.mac_c2s = names("hmac-md5");
        theirs.mac_s2c = Vec::new();
        let chosen = choose(&ours(), &theirs, is_aead).unwrap();
        assert_eq!((chosen.mac_c2s, chosen.mac_s2c), (None, None));
        // Without AEAD the same lists fail on the MAC.
        let err = choose(&ours(), &theirs, |_| false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no common MAC (client to server): we offer \
             hmac-sha2-256-etm@openssh.com,hmac-sha2-256; the server offers hmac-md5"
        );
    }

    #[test]
    fn no_common_cipher_names_both_lists() {
        let mut mine = ours();
        mine.cipher_c2s =
            names("chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes256-gcm@openssh.com");
        let mut theirs = ours();
        theirs.cipher_c2s = names("3des-cbc,aes128-cbc");
        let err = choose(&mine, &theirs, is_aead).unwrap_err();
        assert!(matches!(
            err,
            NegotiationError::NoCommon {
                category: "cipher (client to server)",
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "no common cipher (client to server): we offer chacha20-poly1305@openssh.com,\
             aes128-gcm@openssh.com,aes256-gcm@openssh.com; the server offers 3des-cbc,aes128-cbc"
        );
        theirs.cipher_c2s = Vec::new();
        assert_eq!(
            choose(&mine, &theirs, is_aead).unwrap_err().to_string(),
            "no common cipher (client to server): we offer chacha20-poly1305@openssh.com,\
             aes128-gcm@openssh.com,aes256-gcm@openssh.com; the server offers nothing"
        );
    }

    #[test]
    fn every_category_fails_on_its_own() {
        type Field = fn(&mut KexInit) -> &mut Vec<String>;
        let cases: [(Field, &str); 5] = [
            (|k| &mut k.kex, "key exchange method"),
            (|k| &mut k.host_key, "host key algorithm"),
            (|k| &mut k.cipher_s2c, "cipher (server to client)"),
            (|k| &mut k.compression_c2s, "compression (client to server)"),
            (|k| &mut k.compression_s2c, "compression (server to client)"),
        ];
        for (field, category) in cases {
            let mut theirs = ours();
            *field(&mut theirs) = names("something-else");
            match choose(&ours(), &theirs, is_aead) {
                Err(NegotiationError::NoCommon { category: c, .. }) => assert_eq!(c, category),
                other => panic!("{category}: {other:?}"),
            }
        }
    }

    #[test]
    fn compression_is_none_even_when_both_offer_zlib_first() {
        let mut mine = ours();
        mine.compression_c2s = names("zlib@openssh.com,none");
        let mut theirs = ours();
        theirs.compression_c2s = names("zlib@openssh.com,none");
        assert!(choose(&mine, &theirs, is_aead).is_ok());
        theirs.compression_c2s = names("zlib@openssh.com");
        let err = choose(&mine, &theirs, is_aead).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no common compression (client to server): we offer none; \
             the server offers zlib@openssh.com"
        );
        // Without "none" we have nothing to offer, whatever else our list says.
        mine.compression_c2s = names("zlib@openssh.com");
        assert_eq!(
            choose(&mine, &theirs, is_aead).unwrap_err().to_string(),
            "no common compression (client to server): we offer nothing; \
             the server offers zlib@openssh.com"
        );
    }

    #[test]
    fn pseudo_algorithms_are_never_chosen_even_when_both_list_them() {
        let mut mine = ours();
        mine.kex = names(
            "ext-info-c,kex-strict-c-v00@openssh.com,ext-info-s,\
             kex-strict-s-v00@openssh.com,curve25519-sha256",
        );
        let mut theirs = ours();
        theirs.kex = mine.kex.clone();
        assert_eq!(
            choose(&mine, &theirs, is_aead).unwrap().kex,
            "curve25519-sha256"
        );
        theirs.kex = names(
            "ext-info-c,kex-strict-c-v00@openssh.com,ext-info-s,kex-strict-s-v00@openssh.com",
        );
        let err = choose(&mine, &theirs, is_aead).unwrap_err();
        assert!(matches!(
            err,
            NegotiationError::NoCommon {
                category: "key exchange method",
                ..
            }
        ));
    }

    #[test]
    fn a_guess_is_wrong_when_the_first_kex_or_host_key_differ() {
        let mut theirs = ours();
        assert!(!guess_is_wrong(&ours(), &theirs), "no guess sent");
        theirs.first_kex_follows = true;
        assert!(!guess_is_wrong(&ours(), &theirs), "same first names");
        theirs.kex = names("curve25519-sha256,mlkem768x25519-sha256");
        assert!(guess_is_wrong(&ours(), &theirs), "first kex differs");
        theirs.kex = ours().kex;
        theirs.host_key = names("rsa-sha2-512,ssh-ed25519");
        assert!(guess_is_wrong(&ours(), &theirs), "first host key differs");
        theirs.host_key = ours().host_key;
        theirs.cipher_c2s = names("aes256-ctr");
        assert!(
            !guess_is_wrong(&ours(), &theirs),
            "other lists do not count"
        );
    }

    #[test]
    fn every_strict_prefix_of_a_kexinit_fails() {
        let bytes = openssh_kexinit();
        for cut in 0..bytes.len() {
            assert!(
                KexInit::decode(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            KexInit::decode(&longer),
            Err(NegotiationError::Malformed(WireError::Trailing(1)))
        ));
    }

    #[test]
    fn another_message_number_is_refused() {
        let mut bytes = openssh_kexinit();
        bytes[0] = 21;
        assert_eq!(
            KexInit::decode(&bytes).unwrap_err().to_string(),
            "expected KEXINIT (20), got message 21"
        );
    }

    #[test]
    fn oversized_lists_are_refused() {
        // 64 names pass, 65 do not.
        let mut k = ours();
        k.mac_s2c = (0..64).map(|i| format!("m{i}")).collect();
        assert_eq!(KexInit::decode(&k.encode()).unwrap(), k);
        k.mac_s2c.push("m64".into());
        assert_eq!(
            KexInit::decode(&k.encode()).unwrap_err().to_string(),
            "KEXINIT MAC (server to client) list has 65 names, at most 64 allowed"
        );

        // 4096 bytes pass, 4097 do not.
        let mut k = ours();
        k.kex = vec!["a".repeat(4096)];
        assert_eq!(KexInit::decode(&k.encode()).unwrap(), k);
        k.kex = vec!["a".repeat(4097)];
        assert!(matches!(
            KexInit::decode(&k.encode()),
            Err(NegotiationError::ListTooLong {
                list: "key exchange",
                len_bytes: 4097
            })
        ));

        // A length field that claims far more than the payload holds.
        let mut bytes = vec![msg::KEXINIT];
        bytes.extend([0; 16]);
        bytes.extend(u32::MAX.to_be_bytes());
        assert!(matches!(
            KexInit::decode(&bytes),
            Err(NegotiationError::Malformed(WireError::Short {
                wanted: 0xffff_ffff,
                left: 0
            }))
        ));
    }
}
