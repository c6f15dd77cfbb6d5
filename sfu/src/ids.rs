//! Identifiers. Each is a newtype so a producer id can never be passed where a peer id belongs.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;

/// A map keyed by ids the hub gives out itself (its peers, meetings, producers, consumers),
/// hashed with FxHash: a multiply and a rotate for a `u64`. The standard map's SipHash costs
/// about 140 instructions a lookup, which guards against keys an attacker chooses; these keys
/// are counters of the hub's own, and the forwarding path looks up three of them for every
/// packet and site. Maps keyed by what arrives from the network (addresses, ICE usernames)
/// keep the standard hasher.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// One WebRTC connection (one browser tab, one site, the studio).
    PeerId,
    "p"
);
id_type!(
    /// One incoming track: what a peer publishes on one m-line.
    ProducerId,
    "producer"
);
id_type!(
    /// One outgoing track: a producer forwarded to one peer.
    ConsumerId,
    "consumer"
);
id_type!(
    /// One meeting's routing domain.
    RouterId,
    "router"
);
